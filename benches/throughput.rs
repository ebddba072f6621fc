//! File replay against its floor, and memory per waiting prediction: one table.
//!
//!     cargo bench --bench throughput
//!     cargo bench --bench throughput -- --hours 6 --rate 10 --runs 3 --pending 10000000
//!
//! Generates the scripted two-model scenario, then measures, each phase in a child process
//! of its own (so one phase's allocations do not colour the next one's resident memory):
//!
//! - `floor`: a single thread that reads both files, parses every line into typed events
//!   and does the request_id hash join (inferences wait in a map, labels take them out),
//!   nothing else: the least any replay has to do;
//! - `replay`: `slaguard replay` as the binary runs it, outputs written;
//! - `engine`: the engine alone, in one thread, on the events decoded and merged
//!   beforehand (not timed): what the replay's main thread costs beyond taking events;
//! - `pending`: `--pending` predictions that never get a label, through the engine; the
//!   resident memory it grew by, per prediction waiting.
//!
//! Runs alternate (floor, replay, floor, replay, …) and the best of each is kept, so
//! machine noise hits both alike.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use slaguard::decode;
use slaguard::event::{Event, Inference, Prediction, Status};
use slaguard::replay::{replay_files, ReplayInputs};
use slaguard::scenario::{self, ScenarioSpec};

struct Args {
    hours: f64,
    rate: f64,
    runs: usize,
    pending: u64,
    phase: Option<String>,
    dir: Option<PathBuf>,
    /// Run by `cargo bench` (which passes `--bench`); under `cargo test` the same phases
    /// run once on a small scenario, to show they work.
    bench: bool,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        hours: 6.0,
        rate: 10.0,
        runs: 3,
        pending: 10_000_000,
        phase: None,
        dir: None,
        bench: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--hours" => a.hours = value()?.parse()?,
            "--rate" => a.rate = value()?.parse()?,
            "--runs" => a.runs = value()?.parse()?,
            "--pending" => a.pending = value()?.parse()?,
            "--phase" => a.phase = Some(value()?),
            "--dir" => a.dir = Some(PathBuf::from(value()?)),
            // What `cargo bench` passes to every bench binary.
            "--bench" => a.bench = true,
            other if other.starts_with("--") => bail!("unknown option {other}"),
            _ => {}
        }
    }
    Ok(a)
}

/// Resident and peak resident memory of this process, in bytes.
fn memory() -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("{name} not in /proc/self/status"))?;
        let kb: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()?;
        Ok(kb * 1024)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// One phase's result, printed by the child as one line for the parent.
#[derive(Debug, Default, Clone, Copy)]
struct Measured {
    events: u64,
    seconds: f64,
    peak_rss: u64,
    /// For `pending`: predictions waiting and resident growth.
    waiting: u64,
    grown: u64,
}

impl Measured {
    fn line(&self) -> String {
        format!(
            "measured {} {} {} {} {}",
            self.events, self.seconds, self.peak_rss, self.waiting, self.grown
        )
    }

    fn parse(text: &str) -> anyhow::Result<Measured> {
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("measured "))
            .context("the phase printed no result")?;
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() != 5 {
            bail!("malformed result {line:?}");
        }
        Ok(Measured {
            events: f[0].parse()?,
            seconds: f[1].parse()?,
            peak_rss: f[2].parse()?,
            waiting: f[3].parse()?,
            grown: f[4].parse()?,
        })
    }

    fn rate(&self) -> f64 {
        self.events as f64 / self.seconds
    }
}

/// The lines of one JSONL file, decoded one at a time.
struct Lines {
    reader: BufReader<File>,
    buf: Vec<u8>,
}

impl Lines {
    fn open(path: &Path) -> anyhow::Result<Lines> {
        Ok(Lines {
            reader: BufReader::with_capacity(1 << 20, File::open(path)?),
            buf: Vec::with_capacity(1024),
        })
    }

    /// The next non-blank line, without its line end.
    fn next(&mut self) -> anyhow::Result<Option<&[u8]>> {
        loop {
            self.buf.clear();
            if self.reader.read_until(b'\n', &mut self.buf)? == 0 {
                return Ok(None);
            }
            while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
                self.buf.pop();
            }
            if !self.buf.iter().all(u8::is_ascii_whitespace) {
                return Ok(Some(&self.buf));
            }
        }
    }
}

/// The floor: decode every line, merged by event time as a replay reads them, and join
/// labels to waiting inferences by request_id. Returns the lines read.
fn floor(dir: &Path) -> anyhow::Result<u64> {
    let mut inferences = Lines::open(&dir.join("inferences.jsonl"))?;
    let mut labels = Lines::open(&dir.join("labels.jsonl"))?;
    let mut waiting: HashMap<String, Inference> = HashMap::new();
    let (mut lines, mut joined) = (0u64, 0u64);
    let mut next_inference = || -> anyhow::Result<Option<Option<Inference>>> {
        Ok(inferences.next()?.map(|l| decode::inference(l).ok()))
    };
    let mut inference = next_inference()?;
    let mut label = labels.next()?.map(|l| decode::label(l).ok());
    loop {
        let take_inference = match (&inference, &label) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(i), Some(l)) => {
                i.as_ref().map_or(i64::MIN, |i| i.timestamp)
                    <= l.as_ref().map_or(i64::MIN, |l| l.timestamp)
            }
        };
        lines += 1;
        if take_inference {
            if let Some(Some(mut i)) = inference.take() {
                waiting.insert(std::mem::take(&mut i.request_id), i);
            }
            inference = next_inference()?;
        } else {
            if let Some(Some(l)) = label.take() {
                joined += u64::from(waiting.remove(&l.request_id).is_some());
            }
            label = labels.next()?.map(|l| decode::label(l).ok());
        }
    }
    std::hint::black_box((joined, waiting.len()));
    Ok(lines)
}

/// An event decoded as a replay's reading thread decodes it: its input, the event, its
/// keys and (an inference's) drift and data-quality facts.
type Decoded = (
    usize,
    Event,
    slaguard::engine::EventKeys,
    Vec<slaguard::series::Fact>,
);

/// Every event of both files, decoded and merged by event time, with its keys and facts:
/// what the `engine` phase feeds the engine, so that it times the engine alone.
fn decoded(dir: &Path, cfg: &slaguard::config::SlaConfig) -> anyhow::Result<Vec<Decoded>> {
    let mut events = Vec::new();
    for (input, file) in ["inferences.jsonl", "labels.jsonl"].into_iter().enumerate() {
        let mut lines = Lines::open(&dir.join(file))?;
        while let Some(line) = lines.next()? {
            let event = if input == 0 {
                decode::inference(line).map(Event::Inference)
            } else {
                decode::label(line).map(Event::Label)
            };
            let Ok(e) = event else { continue };
            let mut facts = Vec::new();
            if let (Some(keys), _) = slaguard::engine::prepare(cfg, Some(&e), &mut facts) {
                events.push((input, e, keys, facts));
            }
        }
    }
    // Stable: events of one time keep their file order, inferences first, as a replay
    // takes them.
    events.sort_by_key(|(input, e, _, _)| (e.time(), *input));
    Ok(events)
}

/// The engine alone on events decoded beforehand, one thread, outputs taken and dropped.
/// Returns the events applied and the seconds it took.
fn engine_alone(dir: &Path) -> anyhow::Result<(u64, f64)> {
    let cfg = Arc::new(slaguard::config::load(&dir.join("sla.yaml"))?);
    let events = decoded(dir, &cfg)?;
    let mut engine = slaguard::engine::Engine::new(Arc::clone(&cfg));
    let sources = [engine.add_source(), engine.add_source()];
    let start = Instant::now();
    for (input, event, keys, facts) in &events {
        let _ = match event {
            Event::Inference(e) => {
                engine.handle_inference_prepared(sources[*input], e, *keys, facts)
            }
            Event::Label(e) => engine.handle_label_keyed(sources[*input], e, *keys),
            Event::Ack(_) => Ok(()),
        };
        while let Some(o) = engine.poll_output() {
            std::hint::black_box(o);
        }
    }
    engine.finish();
    while let Some(o) = engine.poll_output() {
        std::hint::black_box(o);
    }
    Ok((events.len() as u64, start.elapsed().as_secs_f64()))
}

fn replay(dir: &Path) -> anyhow::Result<u64> {
    let cfg = Arc::new(slaguard::config::load(&dir.join("sla.yaml"))?);
    let inputs = ReplayInputs {
        inferences: dir.join("inferences.jsonl"),
        labels: dir.join("labels.jsonl"),
        acks: None,
    };
    let (_, counts) = replay_files(cfg, &inputs, &dir.join("out"), u64::MAX, |_| {})?;
    Ok(counts.lines)
}

const PENDING_SLA: &str = r#"
sla_version: "pending-1"
defaults: {evaluate_every: 1m, label_ttl: 30d, max_pending: 50000000}
models:
  - model_id: fraud
    task: binary_classification
    segment_by: [region]
    objectives:
      - {name: accuracy, metric: accuracy, op: ">=", target: 0.9, window: 1h}
      - {name: auc, metric: roc_auc, op: ">=", target: 0.85, window: 1h, segment_by: []}
"#;

/// `n` predictions over one day that never get a label: how much resident memory the
/// engine grows by. Request ids are UUIDs, as model servers usually send them.
fn pending(n: u64) -> anyhow::Result<Measured> {
    let cfg = Arc::new(slaguard::config::parse(PENDING_SLA, "pending.yaml", None)?);
    let mut engine = slaguard::engine::Engine::new(cfg);
    let source = engine.add_source();
    let regions = ["eu-west", "us-east", "ap-south", "sa-east"];
    let t0 = 1_793_491_200_000i64;
    let step = 86_400_000.0 / n.max(1) as f64;
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let (before, _) = memory()?;
    let start = Instant::now();
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let ev = Inference {
            request_id: format!(
                "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
                x >> 32,
                (x >> 16) & 0xffff,
                x & 0xfff,
                i & 0xfff,
                i
            ),
            model_id: "fraud".to_string(),
            model_version: None,
            timestamp: t0 + (i as f64 * step) as i64,
            latency_ms: Some(40.0),
            status: Status::Ok,
            prediction: Some(Prediction {
                score: Some((x >> 11) as f64 / (1u64 << 53) as f64),
                label: None,
                value: None,
            }),
            attributes: vec![("region".to_string(), regions[(x % 4) as usize].to_string())],
            features: Vec::new(),
        };
        engine
            .handle(source, Event::Inference(ev))
            .map_err(|r| anyhow::anyhow!("rejected: {r:?}"))?;
        while engine.poll_output().is_some() {}
    }
    let seconds = start.elapsed().as_secs_f64();
    let (after, peak) = memory()?;
    let waiting = engine.pending_predictions() as u64;
    std::hint::black_box(&engine);
    Ok(Measured {
        events: n,
        seconds,
        peak_rss: peak,
        waiting,
        grown: after.saturating_sub(before),
    })
}

fn child(phase: &str, a: &Args) -> anyhow::Result<Measured> {
    let dir = a.dir.as_deref().context("--dir")?;
    let m = match phase {
        "floor" | "replay" => {
            let start = Instant::now();
            let events = if phase == "floor" {
                floor(dir)?
            } else {
                replay(dir)?
            };
            let seconds = start.elapsed().as_secs_f64();
            Measured {
                events,
                seconds,
                peak_rss: memory()?.1,
                ..Measured::default()
            }
        }
        "engine" => {
            let (events, seconds) = engine_alone(dir)?;
            Measured {
                events,
                seconds,
                peak_rss: memory()?.1,
                ..Measured::default()
            }
        }
        "pending" => pending(a.pending)?,
        other => bail!("unknown phase {other}"),
    };
    Ok(m)
}

fn run_phase(phase: &str, dir: &Path, a: &Args) -> anyhow::Result<Measured> {
    let out = Command::new(std::env::current_exe()?)
        .args(["--phase", phase, "--dir"])
        .arg(dir)
        .args(["--pending", &a.pending.to_string()])
        .output()?;
    if !out.status.success() {
        bail!(
            "phase {phase} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Measured::parse(&String::from_utf8_lossy(&out.stdout))
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn main() -> anyhow::Result<()> {
    let a = args()?;
    if let Some(phase) = &a.phase {
        println!("{}", child(phase, &a)?.line());
        return Ok(());
    }
    let mut a = a;
    if !a.bench {
        a.hours = a.hours.min(0.25);
        a.runs = 1;
        a.pending = a.pending.min(100_000);
    }
    let dir = tempfile::tempdir()?;
    let spec = ScenarioSpec {
        duration_ms: (a.hours * 3_600_000.0) as i64,
        rate: a.rate,
        ..ScenarioSpec::default()
    };
    let counts = scenario::write_dir(&spec, dir.path())?;
    let bytes = std::fs::metadata(dir.path().join("inferences.jsonl"))?.len()
        + std::fs::metadata(dir.path().join("labels.jsonl"))?.len();
    println!(
        "scenario: {} h, two models, {} inferences + {} labels ({:.0} MB of JSON)",
        a.hours,
        counts.inferences,
        counts.labels,
        mb(bytes)
    );
    let best = |best: &mut Option<Measured>, m: Measured| {
        if best.is_none_or(|b| m.rate() > b.rate()) {
            *best = Some(m);
        }
    };
    let (mut best_floor, mut best_replay, mut best_engine) = (None, None, None);
    for run in 1..=a.runs.max(1) {
        let f = run_phase("floor", dir.path(), &a)?;
        let r = run_phase("replay", dir.path(), &a)?;
        let e = run_phase("engine", dir.path(), &a)?;
        eprintln!(
            "run {run}: floor {:.0} events/s, replay {:.0} events/s, engine alone {:.0} events/s",
            f.rate(),
            r.rate(),
            e.rate()
        );
        best(&mut best_floor, f);
        best(&mut best_replay, r);
        best(&mut best_engine, e);
    }
    let (f, r, e) = (
        best_floor.context("no run")?,
        best_replay.context("no run")?,
        best_engine.context("no run")?,
    );
    if f.events != r.events {
        bail!("the floor read {} lines, the replay {}", f.events, r.events);
    }
    let p = run_phase("pending", dir.path(), &a)?;
    if p.waiting != p.events {
        bail!("{} predictions sent, {} waiting", p.events, p.waiting);
    }
    println!();
    println!(
        "| {:<44} | {:>12} | {:>8} | {:>9} |",
        "phase", "events/s", "ratio", "peak RSS"
    );
    println!("|{:-<46}|{:->14}|{:->10}|{:->11}|", "", "", "", "");
    println!(
        "| {:<44} | {:>12.0} | {:>8.2} | {:>6.0} MB |",
        "decode + request_id join (floor, 1 thread)",
        f.rate(),
        1.0,
        mb(f.peak_rss)
    );
    println!(
        "| {:<44} | {:>12.0} | {:>8.2} | {:>6.0} MB |",
        "slaguard replay (outputs written)",
        r.rate(),
        r.rate() / f.rate(),
        mb(r.peak_rss)
    );
    println!(
        "| {:<44} | {:>12.0} | {:>8.2} | {:>6.0} MB |",
        "engine alone (decoded beforehand, 1 thread)",
        e.rate(),
        e.rate() / f.rate(),
        mb(e.peak_rss)
    );
    println!(
        "| {:<44} | {:>12.0} | {:>8} | {:>6.0} MB |",
        format!("engine, {} predictions left waiting", p.events),
        p.rate(),
        "",
        mb(p.peak_rss)
    );
    println!();
    println!(
        "waiting predictions: {}; resident memory grew {:.0} MB: {:.1} bytes per waiting prediction",
        p.waiting,
        mb(p.grown),
        p.grown as f64 / p.waiting.max(1) as f64
    );
    Ok(())
}
