//! The HTTP endpoints of a running instance, during a demo run (librdkafka's mock
//! cluster): `/readyz` once the stages have taken their assignments, `/healthz`,
//! `/metrics` parsed as Prometheus text with counters that move as events flow, and the
//! status page in headless Chromium (Debian's `chromium`, installed by `.ci/run`) showing
//! an open incident, with a screenshot.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `slaguard demo` child and the address its status server listens on.
struct Demo {
    child: Child,
    addr: String,
}

impl Demo {
    fn start(seconds: u32) -> Demo {
        let mut child = Command::new(env!("CARGO_BIN_EXE_slaguard"))
            .args(["demo", "--seconds", &seconds.to_string()])
            .args(["--http", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn slaguard demo");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().expect("a first line").expect("utf-8");
        let addr = first
            .strip_prefix("status page: http://")
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("no status page address in {first:?}"))
            .to_string();
        // Keep reading the live view so the demo never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Demo { child, addr }
    }

    fn get(&self, path: &str) -> (u16, String) {
        get(&self.addr, path)
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 GET, the connection closed after the response.
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let (head, body) = response.split_once("\r\n\r\n").expect("head and body");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (code, body.to_string())
}

/// Polls `probe` every 200 ms until it gives a value, for at most `deadline`.
fn until<T>(deadline: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            start.elapsed() < deadline,
            "{what}: not within {deadline:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn scrape(demo: &Demo) -> prometheus_parse::Scrape {
    let (code, body) = demo.get("/metrics");
    assert_eq!(code, 200);
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
        .expect("Prometheus text")
}

/// The value of the sample named `name` whose labels include `labels`.
fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .and_then(|s| number(&s.value))
}

/// A sample's number. The exposition is OpenMetrics text, whose counters (`# TYPE x
/// counter` over `x_total` samples) this parser reads as untyped.
fn number(v: &prometheus_parse::Value) -> Option<f64> {
    match v {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => Some(*v),
        _ => None,
    }
}

#[test]
fn health_readiness_and_metrics_move_as_events_flow() {
    let demo = Demo::start(30);
    let ready = until(Duration::from_secs(30), "/readyz 200", || {
        let (code, body) = demo.get("/readyz");
        (code == 200).then_some(body)
    });
    let r: serde_json::Value = serde_json::from_str(&ready).expect("JSON");
    assert_eq!(r["ready"], true);
    assert_eq!(r["stages"]["shard"], "ready");
    assert_eq!(demo.get("/healthz"), (200, "ok\n".to_string()));

    let applied = [("topic", "inferences"), ("outcome", "applied")];
    let first = until(Duration::from_secs(30), "inferences applied", || {
        value(&scrape(&demo), "slaguard_messages_total", &applied).filter(|v| *v > 0.0)
    });
    let later = until(Duration::from_secs(30), "more inferences applied", || {
        let s = scrape(&demo);
        value(&s, "slaguard_messages_total", &applied)
            .filter(|v| *v > first)
            .map(|v| (v, s))
    });
    let (moved, s) = later;
    assert!(moved > first, "{moved} after {first}");
    // The scenario's malformed lines are dead-lettered, counted by reason.
    until(Duration::from_secs(30), "dead letters by reason", || {
        let s = scrape(&demo);
        let dead: f64 = s
            .samples
            .iter()
            .filter(|x| {
                x.metric == "slaguard_dead_letters_total" && x.labels.get("reason").is_some()
            })
            .filter_map(|x| number(&x.value))
            .sum();
        let topic = value(&s, "slaguard_messages_total", &[("outcome", "dead_letter")]);
        (dead > 0.0 && topic.is_some()).then_some(())
    });
    assert!(
        value(&s, "slaguard_join_outcomes_total", &[("kind", "joined")]).is_some_and(|v| v > 0.0)
    );
    assert!(value(&s, "slaguard_pending", &[("kind", "predictions")]).is_some());
    assert!(
        value(&s, "slaguard_watermark_seconds", &[("stage", "shard")]).is_some_and(|v| v > 1.7e9)
    );
    assert_eq!(
        value(&s, "slaguard_stage_ready", &[("stage", "evaluator")]),
        Some(1.0)
    );
    assert!(value(&s, "slaguard_incidents_open", &[("severity", "critical")]).is_some());
    assert_eq!(
        value(&s, "slaguard_sla_info", &[("sla_version", "scenario-1")]),
        Some(1.0)
    );
    // Each evaluation's time lands in the histogram (the evaluator merges a batch at each
    // of the shard's commits).
    until(Duration::from_secs(30), "an evaluation timed", || {
        let s = scrape(&demo);
        let evaluations = s
            .samples
            .iter()
            .find(|x| x.metric == "slaguard_evaluation_seconds")
            .expect("the evaluation time histogram");
        match &evaluations.value {
            prometheus_parse::Value::Histogram(buckets) => {
                buckets.iter().any(|b| b.count > 0.0).then_some(())
            }
            other => panic!("not a histogram: {other:?}"),
        }
    });
    // Consumer lag comes from librdkafka's statistics, every 5 s.
    until(Duration::from_secs(20), "consumer lag", || {
        value(
            &scrape(&demo),
            "slaguard_consumer_lag",
            &[("stage", "shard")],
        )
    });
}

#[test]
fn the_status_page_shows_an_open_incident_in_a_browser() {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(chromium) = chromium else {
        assert!(
            std::env::var_os("CI").is_none(),
            "headless Chromium is needed (apt-get install chromium); .ci/run installs it"
        );
        eprintln!("skipped: no chromium on this machine (apt-get install chromium)");
        return;
    };
    let demo = Demo::start(45);
    let (code, html) = demo.get("/");
    assert_eq!(code, 200);
    assert!(html.contains("<title>slaguard — SLA status</title>"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external assets"
    );
    // The status data first: an incident opens about a third into the scenario.
    let incident = until(Duration::from_secs(40), "an open incident", || {
        let (_, body) = demo.get("/api/status");
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["incidents"].as_array()?.first().cloned()
    });
    let model = incident["model_id"].as_str().expect("model").to_string();
    let objective = incident["objective"]
        .as_str()
        .expect("objective")
        .to_string();

    let profile = tempfile::tempdir().expect("profile dir");
    let url = format!("http://{}/", demo.addr);
    let browser = |extra: &[&str]| {
        Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--virtual-time-budget=4000",
                "--window-size=1400,1000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(&url)
            .output()
            .expect("run chromium")
    };
    // The page renders what it fetched: an incident row, every model, the SLA version.
    let dom = until(
        Duration::from_secs(30),
        "an incident row on the page",
        || {
            let out = browser(&["--dump-dom"]);
            let dom = String::from_utf8_lossy(&out.stdout).to_string();
            dom.contains("class=\"incident\"").then_some(dom)
        },
    );
    assert!(dom.contains("SLA version scenario-1"), "the SLA version");
    for m in ["fraud", "eta"] {
        assert!(dom.contains(&format!("data-model=\"{m}\"")), "model {m}");
    }
    assert!(dom.contains("Open incidents"));
    assert!(
        dom.contains(&model) && dom.contains(&objective),
        "the incident {model}/{objective}"
    );
    assert!(dom.contains("<svg class=\"trend\""), "a trend chart");

    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let out = browser(&[&format!("--screenshot={}", shot.display())]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    assert!(
        png.len() > 10_000,
        "a page, not a blank: {} bytes",
        png.len()
    );
    eprintln!("screenshot: {}", shot.display());
}
