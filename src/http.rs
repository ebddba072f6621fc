//! The HTTP shell of `run` and `demo` (SPEC §6), on `--http ADDR`: `/metrics`
//! (Prometheus text), `/healthz`, `/readyz`, the live SLA status page at `/` and the data
//! it polls at `/api/status`. Everything it serves is read from a [`Telemetry`]; it
//! changes nothing. The page is one self-contained file: no external assets, so it works
//! offline.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::telemetry::Telemetry;

/// The status page: HTML, CSS and script in one file.
const STATUS_PAGE: &str = include_str!("status_page.html");

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    #[error("cannot listen on {addr} (--http): {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP server on {addr} failed: {source}")]
    Serve {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A bound listener, serving once [`HttpServer::serve`] runs.
pub struct HttpServer {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
}

impl HttpServer {
    /// Binds `addr` now, so that a taken port is an error at start, not later.
    pub async fn bind(addr: SocketAddr) -> Result<HttpServer, HttpError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| HttpError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| HttpError::Bind { addr, source })?;
        Ok(HttpServer { listener, addr })
    }

    /// The address bound (with the port chosen when `:0` was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `stop` is cancelled.
    pub async fn serve(
        self,
        telemetry: Arc<Telemetry>,
        stop: CancellationToken,
    ) -> Result<(), HttpError> {
        let app = Router::new()
            .route("/", get(page))
            .route("/api/status", get(status))
            .route("/metrics", get(metrics))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .with_state(telemetry);
        let addr = self.addr;
        axum::serve(self.listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
            .map_err(|source| HttpError::Serve { addr, source })
    }
}

async fn page() -> Html<&'static str> {
    Html(STATUS_PAGE)
}

async fn status(State(t): State<Arc<Telemetry>>) -> Response {
    match t.status_json() {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn metrics(State(t): State<Arc<Telemetry>>) -> Response {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    match t.prometheus(now) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn healthz(State(t): State<Arc<Telemetry>>) -> Response {
    match t.health() {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("failed: {why}\n")).into_response(),
    }
}

async fn readyz(State(t): State<Arc<Telemetry>>) -> Response {
    let r = t.readiness();
    let code = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::to_string(&r).unwrap_or_default();
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}
