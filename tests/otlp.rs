//! OpenTelemetry export: a demo run with `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at a
//! collector stand-in on 127.0.0.1 (an HTTP server decoding OTLP protobuf with the
//! `opentelemetry-proto` messages) sends the `/metrics` figures under the same names,
//! with values that grow, the evaluation time histogram, and a span per evaluation.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use prost::Message;

/// Requests received: (path, body).
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// Serves HTTP/1.1 POSTs on a free port (keep-alive included), answering 200 to each.
fn collector() -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let received: Received = Arc::default();
    let store = Arc::clone(&received);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().expect("clone");
                let mut reader = BufReader::new(stream);
                loop {
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = request_line
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or("")
                        .to_string();
                    let mut length = 0usize;
                    loop {
                        let mut header = String::new();
                        if reader.read_line(&mut header).unwrap_or(0) == 0 {
                            return;
                        }
                        let header = header.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = header.split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                length = v.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    store.lock().expect("lock").push((path, body));
                    let _ = writer.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n",
                    );
                }
            });
        }
    });
    (addr, received)
}

#[test]
fn a_demo_run_exports_its_figures_and_evaluation_spans_over_otlp() {
    let (addr, received) = collector();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_slaguard"))
        .args(["demo", "--seconds", "12", "--http", "127.0.0.1:0"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"))
        .env("OTEL_METRIC_EXPORT_INTERVAL", "1000")
        .env("OTEL_BSP_SCHEDULE_DELAY", "500")
        .output()
        .expect("run demo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let received = received.lock().expect("lock").clone();
    let metrics: Vec<ExportMetricsServiceRequest> = received
        .iter()
        .filter(|(p, _)| p == "/v1/metrics")
        .map(|(_, b)| ExportMetricsServiceRequest::decode(b.as_slice()).expect("OTLP metrics"))
        .collect();
    let traces: Vec<ExportTraceServiceRequest> = received
        .iter()
        .filter(|(p, _)| p == "/v1/traces")
        .map(|(_, b)| ExportTraceServiceRequest::decode(b.as_slice()).expect("OTLP traces"))
        .collect();
    assert!(metrics.len() >= 3, "{} metric exports", metrics.len());

    // The applied inferences, export after export: a cumulative sum that grows.
    let applied: Vec<f64> = metrics
        .iter()
        .filter_map(|r| {
            r.resource_metrics
                .iter()
                .flat_map(|rm| &rm.scope_metrics)
                .flat_map(|sm| &sm.metrics)
                .find(|m| m.name == "slaguard_messages")
                .and_then(|m| match &m.data {
                    Some(Data::Sum(sum)) => {
                        assert!(sum.is_monotonic, "a counter");
                        sum.data_points
                            .iter()
                            .find(|p| {
                                let has = |k: &str, v: &str| {
                                    p.attributes.iter().any(|a| {
                                        a.key == k
                                            && format!("{:?}", a.value).contains(&format!("{v:?}"))
                                    })
                                };
                                has("topic", "inferences") && has("outcome", "applied")
                            })
                            .map(|p| match p.value {
                                Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsDouble(v)) => v,
                                _ => f64::NAN,
                            })
                    }
                    _ => None,
                })
        })
        .collect();
    assert!(applied.len() >= 2, "{applied:?}");
    assert!(
        applied.last() > applied.first(),
        "the count grows: {applied:?}"
    );

    let names: std::collections::BTreeSet<String> = metrics
        .iter()
        .flat_map(|r| &r.resource_metrics)
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .map(|m| m.name.clone())
        .collect();
    for name in [
        "slaguard_dead_letters",
        "slaguard_join_outcomes",
        "slaguard_pending",
        "slaguard_watermark_seconds",
        "slaguard_incidents_open",
        "slaguard_evaluation_seconds",
    ] {
        assert!(names.contains(name), "{name} in {names:?}");
    }

    let spans: Vec<_> = traces
        .iter()
        .flat_map(|t| &t.resource_spans)
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .collect();
    assert!(
        spans.iter().filter(|s| s.name == "evaluation").count() >= 5,
        "{} spans",
        spans.len()
    );
    assert!(spans
        .iter()
        .filter(|s| s.name == "evaluation")
        .all(|s| s.attributes.iter().any(|a| a.key == "items")));
}
