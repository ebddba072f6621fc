//! OpenTelemetry export (SPEC §6). When `OTEL_EXPORTER_OTLP_ENDPOINT` is set, `run` and
//! `demo` send the figures of `/metrics` over OTLP/HTTP (protobuf) — every
//! `OTEL_METRIC_EXPORT_INTERVAL` ms, 60 s by default — under the same names, and each
//! evaluation (a partial batch merged and the instants it made due evaluated) as a trace
//! span named `evaluation`. The standard `OTEL_*` variables (headers, timeouts, service
//! name) apply. Without the variable nothing is set up.
//!
//! The exporters run on threads of their own (the SDK's periodic reader and batch span
//! processor, with a blocking HTTP client): build and shut this down outside the async
//! runtime.

use std::sync::Arc;

use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;

use crate::telemetry::{Kind, Telemetry, EVALUATION, METRICS};

/// The environment variable that turns the export on.
pub const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OtelError {
    #[error("cannot set up the OTLP exporter for {ENDPOINT}={endpoint}: {detail}")]
    Exporter { endpoint: String, detail: String },
}

/// The OTLP pipelines, alive until [`Otel::shutdown`].
pub struct Otel {
    meters: SdkMeterProvider,
    tracers: SdkTracerProvider,
    meter: Meter,
    /// The instruments registered by [`Otel::observe`], kept with their callbacks.
    instruments: Vec<Box<dyn std::any::Any + Send + Sync>>,
}

impl Otel {
    /// The pipelines, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
    pub fn from_env() -> Result<Option<Otel>, OtelError> {
        let Ok(endpoint) = std::env::var(ENDPOINT) else {
            return Ok(None);
        };
        let error = |e: &dyn std::fmt::Display| OtelError::Exporter {
            endpoint: endpoint.clone(),
            detail: e.to_string(),
        };
        let resource = Resource::builder().with_service_name("slaguard").build();
        let metrics = opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .build()
            .map_err(|e| error(&e))?;
        let spans = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
            .map_err(|e| error(&e))?;
        let meters = SdkMeterProvider::builder()
            .with_resource(resource.clone())
            .with_periodic_exporter(metrics)
            .build();
        let tracers = SdkTracerProvider::builder()
            .with_resource(resource)
            .with_batch_exporter(spans)
            .build();
        let meter = meters.meter("slaguard");
        Ok(Some(Otel {
            meters,
            tracers,
            meter,
            instruments: Vec::new(),
        }))
    }

    /// A tracing layer that exports spans (the `evaluation` spans) to the collector.
    pub fn tracing_layer<S>(&self) -> impl tracing_subscriber::Layer<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        tracing_opentelemetry::layer().with_tracer(self.tracers.tracer("slaguard"))
    }

    /// Exports `telemetry`'s figures: each sampled one as an observable instrument read
    /// at every export, and the evaluation time as a histogram recorded as it happens.
    pub fn observe(&mut self, telemetry: &Arc<Telemetry>) {
        for m in METRICS {
            let name = format!("slaguard_{}", m.name);
            let t = Arc::clone(telemetry);
            let callback = move |observer: &dyn opentelemetry::metrics::AsyncInstrument<f64>| {
                for s in t.samples(now()) {
                    if std::ptr::eq(s.metric, m) {
                        let attributes: Vec<KeyValue> = s
                            .labels
                            .iter()
                            .map(|(k, v)| KeyValue::new(*k, v.clone()))
                            .collect();
                        observer.observe(s.value, &attributes);
                    }
                }
            };
            match m.kind {
                Kind::Counter => self.instruments.push(Box::new(
                    self.meter
                        .f64_observable_counter(name)
                        .with_description(m.help)
                        .with_callback(callback)
                        .build(),
                )),
                Kind::Gauge | Kind::Histogram => self.instruments.push(Box::new(
                    self.meter
                        .f64_observable_gauge(name)
                        .with_description(m.help)
                        .with_callback(callback)
                        .build(),
                )),
            }
        }
        let histogram = self
            .meter
            .f64_histogram(format!("slaguard_{}", EVALUATION.name))
            .with_description(EVALUATION.help)
            .with_unit("s")
            .build();
        telemetry.also_record_evaluations(move |seconds| histogram.record(seconds, &[]));
    }

    /// Exports what is left and stops the pipelines.
    pub fn shutdown(self) {
        if let Err(e) = self.meters.shutdown() {
            tracing::warn!(error = %e, "OTLP metrics: the last export failed");
        }
        if let Err(e) = self.tracers.shutdown() {
            tracing::warn!(error = %e, "OTLP traces: the last export failed");
        }
    }
}

fn now() -> crate::time::Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
