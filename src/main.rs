//! The `slaguard` command line: parses arguments, runs a shell, reports errors.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};

use slaguard::config::{self, ConfigError};
use slaguard::replay::{replay_files, ReplayCounts, ReplayInputs};
use slaguard::scenario::{self, ScenarioSpec};
use slaguard::time::{format_rfc3339, parse_duration, parse_instant};

#[derive(Parser)]
#[command(
    name = "slaguard",
    version,
    about = "Service-level agreements for ML models, enforced on the event stream"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate an SLA file: list every problem with its YAML path, or summarise it.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
    /// Backtest an SLA on exported JSONL files (each in event-time order).
    Replay {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        inferences: PathBuf,
        #[arg(long)]
        labels: PathBuf,
        #[arg(long)]
        acks: Option<PathBuf>,
        /// Folder for metrics.jsonl, breaches.jsonl, escalations.jsonl, dead_letters.jsonl.
        #[arg(long)]
        out: PathBuf,
    },
    /// Write the scripted two-model scenario (inferences, labels, acks, sla.yaml) to a folder.
    Generate {
        #[arg(long)]
        out: PathBuf,
        /// Length of the scenario in event time, e.g. 6h.
        #[arg(long, default_value = "6h")]
        duration: String,
        /// Inferences per second, per model.
        #[arg(long, default_value_t = 10.0)]
        rate: f64,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Event time of the first request (RFC 3339 or epoch ms).
        #[arg(long, default_value = "2026-11-01T00:00:00Z")]
        start: String,
        /// Leave out the malformed lines.
        #[arg(long)]
        clean: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLAGUARD_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .init();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check { config } => Ok(check(&config)),
        Command::Replay {
            config,
            inferences,
            labels,
            acks,
            out,
        } => {
            let cfg = Arc::new(config::load(&config)?);
            let inputs = ReplayInputs {
                inferences,
                labels,
                acks,
            };
            replay(cfg, &inputs, &out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate {
            out,
            duration,
            rate,
            seed,
            start,
            clean,
        } => {
            let duration_ms = parse_duration(&duration).map_err(anyhow::Error::msg)?;
            let start = parse_instant(&start).with_context(|| {
                format!("--start `{start}` is not RFC 3339 or epoch milliseconds")
            })?;
            anyhow::ensure!(
                rate > 0.0 && rate.is_finite(),
                "--rate must be a positive number of inferences per second"
            );
            let spec = ScenarioSpec {
                start,
                duration_ms,
                rate,
                seed,
                bad_lines: !clean,
            };
            generate(&spec, &out)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    match config::load(path) {
        Ok(cfg) => {
            print!("{}", slaguard::check::summary(&cfg));
            println!("\n{}: OK", path.display());
            ExitCode::SUCCESS
        }
        Err(ConfigError::Invalid { path, problems }) => {
            eprintln!("{path}: {} problem(s)", problems.len());
            for p in &problems {
                eprintln!("  {p}");
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn replay(
    cfg: Arc<config::SlaConfig>,
    inputs: &ReplayInputs,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let mut last = Instant::now();
    let show = |c: &ReplayCounts, end: &str| {
        let secs = started.elapsed().as_secs_f64().max(1e-9);
        eprint!(
            "{}replayed {} lines ({:.0}/s), event time {}, {} snapshots, {} breach events, {} dead letters{end}",
            if tty { "\r" } else { "" },
            c.lines,
            c.lines as f64 / secs,
            c.event_time.map_or("-".to_string(), format_rfc3339),
            c.metrics,
            c.breaches,
            c.dead_letters,
        );
    };
    let (engine, counts) = replay_files(cfg, inputs, out, 10_000, |c| {
        if last.elapsed().as_secs_f64() >= 1.0 {
            show(c, if tty { "" } else { "\n" });
            last = Instant::now();
        }
    })?;
    show(&counts, "\n");
    let secs = started.elapsed().as_secs_f64();
    let s = engine.stats();
    let j = engine.join_stats();
    let mut text = String::new();
    let _ = writeln!(
        text,
        "replay finished in {secs:.2}s: {:.0} events/s",
        counts.lines as f64 / secs.max(1e-9)
    );
    let _ = writeln!(
        text,
        "  events        {} inferences, {} labels, {} acks",
        s.inferences, s.labels, s.acks
    );
    let _ = writeln!(text, "  dead letters  {}", counts.dead_letters);
    let _ = writeln!(
        text,
        "  late          {} inferences, {} labels ({} facts missed every window)",
        s.late_inferences, s.late_labels, s.too_late
    );
    let _ = writeln!(text, "  joined        {}", j.matched);
    let _ = writeln!(text, "  unlabeled     {} (label TTL ran out)", j.unlabeled);
    let _ = writeln!(
        text,
        "  duplicates    {} predictions, {} labels",
        j.duplicate_predictions, j.duplicate_labels
    );
    let _ = writeln!(
        text,
        "  unmatched     {} labels without a prediction, {} for failed requests",
        j.unmatched_labels, j.labels_for_failed
    );
    let _ = writeln!(
        text,
        "  evicted       {} predictions, {} labels (max_pending)",
        j.evicted_predictions, j.evicted_labels
    );
    let _ = writeln!(
        text,
        "  pending       {} predictions still waiting at the end",
        engine.pending_predictions()
    );
    let _ = writeln!(
        text,
        "  incidents     {} opened, {} resolved",
        s.incidents_opened, s.incidents_resolved
    );
    let _ = writeln!(
        text,
        "  outputs       {} snapshots, {} breach events in {}",
        counts.metrics,
        counts.breaches,
        out.display()
    );
    // A closed stdout (a pipe into `head`) is not an error of the replay.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    Ok(())
}

fn generate(spec: &ScenarioSpec, out: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let create = |name: &str| -> anyhow::Result<BufWriter<File>> {
        let path = out.join(name);
        Ok(BufWriter::new(File::create(&path).with_context(|| {
            format!("cannot create {}", path.display())
        })?))
    };
    let (mut inf, mut lab, mut ack) = (
        create("inferences.jsonl")?,
        create("labels.jsonl")?,
        create("acks.jsonl")?,
    );
    let counts = scenario::generate(spec, &mut inf, &mut lab, &mut ack)?;
    inf.flush()?;
    lab.flush()?;
    ack.flush()?;
    std::fs::write(out.join("sla.yaml"), scenario::sla_yaml(spec))?;
    println!(
        "wrote {}: {} inferences (+{} duplicates), {} labels (+{} duplicates), {} acks, {} malformed lines, sla.yaml",
        out.display(),
        counts.inferences,
        counts.duplicate_inferences,
        counts.labels,
        counts.duplicate_labels,
        counts.acks,
        counts.bad_lines
    );
    Ok(())
}
