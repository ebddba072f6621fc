//! The `slaguard` command line: parses arguments, runs a shell, reports errors.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::Layer as _;

use slaguard::config::{self, ConfigError};
use slaguard::http::HttpServer;
use slaguard::kafka::processor::{self, RunOptions};
use slaguard::kafka::reload::{reload_on_signal, ConfigReloader};
use slaguard::kafka::topic_replay::{replay_topics, ReplayTarget, TopicReplayOptions};
use slaguard::kafka::{self, KafkaSettings};
use slaguard::otel::Otel;
use slaguard::progress::Progress;
use slaguard::replay::{replay_files, ReplayCounts, ReplayInputs};
use slaguard::report::{BreachLine, EscalationLine, Period, ReplayOutputs, Report, SnapshotLine};
use slaguard::scenario::{self, ScenarioSpec};
use slaguard::telemetry::Telemetry;
use slaguard::time::{parse_duration, parse_instant};

#[derive(Parser)]
#[command(
    name = "slaguard",
    version,
    about = "Service-level agreements for ML models, enforced on the event stream"
)]
struct Cli {
    /// Log lines as text for people, or as JSON objects (one per line) for a log pipeline.
    /// The level comes from SLAGUARD_LOG (default: info for run, warn otherwise).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Connection and topics, shared by the Kafka commands.
#[derive(clap::Args, Clone)]
struct KafkaArgs {
    /// Bootstrap servers, HOST:PORT[,HOST:PORT…].
    #[arg(long)]
    brokers: String,
    /// A librdkafka setting, e.g. -X security.protocol=SASL_SSL (repeatable).
    #[arg(short = 'X', value_name = "KEY=VALUE")]
    settings: Vec<String>,
    #[arg(long, default_value = "inferences")]
    inferences_topic: String,
    #[arg(long, default_value = "labels")]
    labels_topic: String,
    #[arg(long, default_value = "acks")]
    acks_topic: String,
    /// Prefix of the output topics (breaches, metrics, escalations, dead_letters); `run`
    /// defaults to `sla.`, a topic replay needs it or --out.
    #[arg(long)]
    output_prefix: Option<String>,
    /// Encoding of a topic: ROLE=json|avro|confluent[:ID] (repeatable; roles: inferences,
    /// labels, acks, breaches, escalations, metrics).
    #[arg(long = "format", value_name = "ROLE=FORMAT")]
    formats: Vec<String>,
}

impl KafkaArgs {
    fn settings(&self) -> anyhow::Result<KafkaSettings> {
        let mut s = KafkaSettings::new(&self.brokers);
        s.overrides = kafka::parse_overrides(&self.settings).map_err(anyhow::Error::msg)?;
        s.inferences_topic.clone_from(&self.inferences_topic);
        s.labels_topic.clone_from(&self.labels_topic);
        s.acks_topic.clone_from(&self.acks_topic);
        if let Some(prefix) = &self.output_prefix {
            s.output_prefix.clone_from(prefix);
        }
        for f in &self.formats {
            s.formats.set(f).map_err(anyhow::Error::msg)?;
        }
        Ok(s)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Validate an SLA file: list every problem with its YAML path, or summarise it.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
    /// The whole system on an in-process Kafka: scripted traffic, live view, then exit.
    Demo {
        /// Wall-clock length of the demo.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Where to serve the live status page, /metrics, /healthz and /readyz
        /// (127.0.0.1:0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:9464")]
        http: SocketAddr,
    },
    /// Run the SLA on the live topics as a Kafka consumer group: shards summarise their
    /// partitions, an evaluator merges every partition's summaries (group <group>.evaluator).
    Run {
        #[arg(long)]
        config: PathBuf,
        #[command(flatten)]
        kafka: KafkaArgs,
        /// Consumer group id (the evaluator's group is <group>.evaluator).
        #[arg(long, default_value = "slaguard")]
        group: String,
        /// Folder for the engine checkpoints (keep it across restarts).
        #[arg(long, default_value = "slaguard-state")]
        state_dir: PathBuf,
        /// How often outputs are flushed, state checkpointed and offsets committed; the
        /// shards' summaries reach the evaluator at each commit.
        #[arg(long, default_value = "5s")]
        commit_interval: String,
        /// A stable name for this instance (e.g. the pod name): static group membership,
        /// so that a restart takes its partitions back without a rebalance.
        #[arg(long)]
        instance_id: Option<String>,
        /// Kafka transactions for the outputs too: each checkpoint commits them with the
        /// offsets they came from, so read_committed readers see every output exactly
        /// once, even across crashes (visible at each commit, every --commit-interval).
        #[arg(long)]
        exactly_once: bool,
        /// How often each pair's join state is snapshotted to <prefix>join-state (also
        /// whenever partitions are given up): after a crash, whoever takes a pair over
        /// re-reads at most this much of its input.
        #[arg(long, default_value = "1m")]
        snapshot_interval: String,
        /// Where to serve /metrics (Prometheus), /healthz, /readyz and the live SLA status
        /// page at / (0.0.0.0:9464 to reach it from other hosts; port 0 picks a free one).
        #[arg(long, default_value = "127.0.0.1:9464")]
        http: SocketAddr,
        /// Reload the SLA file whenever it changes (checked every 2 s), as on SIGHUP: a valid
        /// file is in force from the next evaluation instant and recorded on
        /// <prefix>changes; an invalid one is logged and the running SLA stays.
        #[arg(long)]
        watch_config: bool,
    },
    /// Backtest an SLA: on exported JSONL files (each in event-time order) with --inferences,
    /// --labels and --out, or on the topics of a cluster with --brokers.
    Replay {
        #[arg(long)]
        config: PathBuf,
        #[arg(long, conflicts_with = "brokers", requires_all = ["labels", "out"])]
        inferences: Option<PathBuf>,
        #[arg(long, conflicts_with = "brokers")]
        labels: Option<PathBuf>,
        #[arg(long, conflicts_with = "brokers")]
        acks: Option<PathBuf>,
        /// Folder for metrics.jsonl, breaches.jsonl, escalations.jsonl, dead_letters.jsonl.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        kafka: Option<KafkaArgs>,
        /// Start of the event-time range (RFC 3339 or epoch ms), topics only.
        #[arg(long, requires = "brokers")]
        from: Option<String>,
        /// End of the event-time range (exclusive), topics only.
        #[arg(long, requires = "brokers")]
        to: Option<String>,
    },
    /// The SLA report of a period: attainment, error budget, incidents with their
    /// timelines, MTTA/MTTR and service credits, as report.json and report.md in --out
    /// (the replay's outputs go to --out/replay). Replays files or topics, as `replay` does.
    Report {
        #[arg(long)]
        config: PathBuf,
        #[arg(long, conflicts_with = "brokers", requires = "labels")]
        inferences: Option<PathBuf>,
        #[arg(long, conflicts_with = "brokers")]
        labels: Option<PathBuf>,
        #[arg(long, conflicts_with = "brokers")]
        acks: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        kafka: Option<KafkaArgs>,
        /// Start of the period (RFC 3339 or epoch ms); a topic replay reads from there.
        #[arg(long)]
        from: Option<String>,
        /// End of the period (exclusive).
        #[arg(long)]
        to: Option<String>,
    },
    /// Build a reference profile (drift baseline) from inference events in a JSONL file.
    Profile {
        #[arg(long)]
        inferences: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Profile only this model's events (required when the file holds several models).
        #[arg(long)]
        model: Option<String>,
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
    let cli = Cli::parse();
    let level = if matches!(cli.command, Command::Run { .. }) {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLAGUARD_LOG")
        .unwrap_or_else(|_| level.into());
    // Built before any async runtime: its exporters run on threads of their own.
    let mut otel = match Otel::from_env() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let logs = match cli.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
    };
    // The log level filters the log lines only: evaluation spans go to OTLP whatever it is.
    let spans = otel.as_ref().map(|o| {
        o.tracing_layer()
            .with_filter(tracing_subscriber::filter::filter_fn(|m| {
                m.is_span() && m.name() == "evaluation"
            }))
    });
    tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(spans)
        .init();
    let code = match run(cli, otel.as_mut()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    };
    if let Some(o) = otel {
        o.shutdown();
    }
    code
}

fn run(cli: Cli, otel: Option<&mut Otel>) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check { config } => Ok(check(&config)),
        Command::Profile {
            inferences,
            out,
            model,
        } => {
            profile(&inferences, &out, model.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { seconds, http } => {
            let runtime = tokio::runtime::Runtime::new()?;
            let tty = std::io::stdout().is_terminal();
            let summary = runtime.block_on(async {
                let server = HttpServer::bind(http).await?;
                anyhow::Ok(
                    slaguard::demo::demo(seconds, std::io::stdout(), tty, Some(server), otel)
                        .await?,
                )
            })?;
            println!(
                "\ndemo finished: {} events produced, {} messages processed, {} breaches opened, {} resolved, {} checkpoints",
                summary.produced, summary.run.messages, summary.opened, summary.resolved, summary.run.checkpoints
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            config,
            kafka,
            group,
            state_dir,
            commit_interval,
            instance_id,
            exactly_once,
            snapshot_interval,
            http,
            watch_config,
        } => {
            let cfg = Arc::new(config::load(&config)?);
            let settings = kafka.settings()?;
            let commit_interval = parse_duration(&commit_interval).map_err(anyhow::Error::msg)?;
            let snapshot_interval =
                parse_duration(&snapshot_interval).map_err(anyhow::Error::msg)?;
            let options = RunOptions {
                group,
                state_dir,
                commit_interval: Duration::from_millis(commit_interval.max(100) as u64),
                shutdown_timeout: Duration::from_secs(10),
                instance_id,
                exactly_once,
                snapshot_interval: Duration::from_millis(snapshot_interval.max(100) as u64),
            };
            let runtime = tokio::runtime::Runtime::new()?;
            let summary = runtime.block_on(async {
                let server = HttpServer::bind(http).await?;
                tracing::info!(addr = %server.local_addr(), sla_version = %cfg.sla_version, "serving the status page at /, /metrics, /healthz and /readyz");
                let telemetry = Arc::new(Telemetry::new(&cfg));
                if let Some(o) = otel {
                    o.observe(&telemetry);
                }
                let instance = options.instance_id.clone().unwrap_or_else(|| {
                    format!("{}-{}", options.group, std::process::id())
                });
                let (reloader, sla) = ConfigReloader::new(
                    config.clone(),
                    cfg,
                    &settings,
                    &instance,
                    Arc::clone(&telemetry),
                )?;
                reloader.ensure_topic(&settings).await?;
                let shutdown = CancellationToken::new();
                tokio::spawn(cancel_on_signal(shutdown.clone()));
                let served = shutdown.child_token();
                tokio::spawn(reload_on_signal(reloader, watch_config, served.clone()));
                let serving = tokio::spawn(server.serve(Arc::clone(&telemetry), served.clone()));
                let result = processor::run_live(sla, settings, options, shutdown, telemetry).await;
                served.cancel();
                if let Ok(Err(e)) = serving.await {
                    tracing::warn!(error = %e, "status server stopped");
                }
                anyhow::Ok(result?)
            })?;
            println!(
                "run stopped: {} messages, {} snapshots, {} breach events, {} dead letters, {} checkpoints",
                summary.messages, summary.outputs.metrics, summary.outputs.breaches, summary.outputs.dead_letters, summary.checkpoints
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay {
            config,
            inferences,
            labels,
            acks,
            out,
            kafka,
            from,
            to,
        } => {
            let cfg = Arc::new(config::load(&config)?);
            match (kafka, inferences, labels, out) {
                (Some(kafka), _, _, out) => {
                    let settings = kafka.settings()?;
                    let target = match (out, &kafka.output_prefix) {
                        (Some(dir), _) => ReplayTarget::Dir(dir),
                        (None, Some(prefix)) => ReplayTarget::Topics(prefix.clone()),
                        (None, None) => anyhow::bail!(
                            "a topic replay writes to --out DIR or to topics named with --output-prefix (e.g. replay.), never to the live sla. topics by default"
                        ),
                    };
                    let options = TopicReplayOptions {
                        from: instant(from, "from")?,
                        to: instant(to, "to")?,
                        target,
                    };
                    replay_from_topics(cfg, &settings, options)?;
                }
                (None, Some(inferences), Some(labels), Some(out)) => {
                    let inputs = ReplayInputs {
                        inferences,
                        labels,
                        acks,
                    };
                    replay(cfg, &inputs, &out)?;
                }
                _ => anyhow::bail!(
                    "replay needs either --brokers, or --inferences, --labels and --out"
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Report {
            config,
            inferences,
            labels,
            acks,
            out,
            kafka,
            from,
            to,
        } => {
            let cfg = Arc::new(config::load(&config)?);
            let period = Period {
                from: instant(from, "from")?,
                to: instant(to, "to")?,
            };
            let source = match (kafka, inferences, labels) {
                (Some(kafka), _, _) => ReportSource::Topics(kafka.settings()?),
                (None, Some(inferences), Some(labels)) => ReportSource::Files(ReplayInputs {
                    inferences,
                    labels,
                    acks,
                }),
                _ => anyhow::bail!("report needs either --brokers, or --inferences and --labels"),
            };
            report(cfg, &source, period, &out)?;
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
    let total: u64 = [
        Some(&inputs.inferences),
        Some(&inputs.labels),
        inputs.acks.as_ref(),
    ]
    .into_iter()
    .flatten()
    .filter_map(|p| std::fs::metadata(p).ok())
    .map(|m| m.len())
    .sum();
    let mut progress = Progress::new(total, "lines", std::io::stderr().is_terminal());
    let tail = |c: &ReplayCounts| {
        format!(
            "{} snapshots, {} breach events, {} dead letters",
            c.metrics, c.breaches, c.dead_letters
        )
    };
    let (engine, counts) = replay_files(cfg, inputs, out, 10_000, |c| {
        progress.update(c.bytes, c.lines, c.event_time, &tail(c));
    })?;
    progress.finish(
        counts.bytes,
        counts.lines,
        counts.event_time,
        &tail(&counts),
    );
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
        "  outputs       {} snapshots, {} breach events, {} escalation events in {}",
        counts.metrics,
        counts.breaches,
        counts.escalations,
        out.display()
    );
    // A closed stdout (a pipe into `head`) is not an error of the replay.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    Ok(())
}

/// `--from` / `--to`: RFC 3339 or epoch milliseconds.
fn instant(t: Option<String>, flag: &str) -> anyhow::Result<Option<i64>> {
    t.map(|t| {
        parse_instant(&t)
            .with_context(|| format!("--{flag} `{t}` is not RFC 3339 or epoch milliseconds"))
    })
    .transpose()
}

enum ReportSource {
    Files(ReplayInputs),
    Topics(KafkaSettings),
}

/// Replays the source twice — with the SLA, then with its ledger form — and writes the
/// report of `period` from their outputs.
fn report(
    cfg: Arc<config::SlaConfig>,
    source: &ReportSource,
    period: Period,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    let replay_dir = out.join("replay");
    let ledger_dir = out.join(".ledger");
    let ledger = Arc::new(slaguard::report::ledger_config(&cfg));
    match source {
        ReportSource::Files(inputs) => {
            replay(Arc::clone(&cfg), inputs, &replay_dir)?;
            replay_files(ledger, inputs, &ledger_dir, u64::MAX, |_| {})?;
        }
        ReportSource::Topics(settings) => {
            let options = |dir: &std::path::Path| TopicReplayOptions {
                from: period.from,
                to: period.to,
                target: ReplayTarget::Dir(dir.to_path_buf()),
            };
            replay_from_topics(Arc::clone(&cfg), settings, options(&replay_dir))?;
            replay_topics(ledger, settings, options(&ledger_dir), |_| {})?;
        }
    }
    let snapshots: Vec<SnapshotLine> = read_jsonl(&replay_dir.join("metrics.jsonl"))?;
    let ledger_snapshots: Vec<SnapshotLine> = read_jsonl(&ledger_dir.join("metrics.jsonl"))?;
    let breaches: Vec<BreachLine> = read_jsonl(&replay_dir.join("breaches.jsonl"))?;
    let escalations: Vec<EscalationLine> = read_jsonl(&replay_dir.join("escalations.jsonl"))?;
    let report = Report::build(
        &cfg,
        period,
        &ReplayOutputs {
            snapshots: &snapshots,
            ledger: &ledger_snapshots,
            breaches: &breaches,
            escalations: &escalations,
        },
    )?;
    std::fs::remove_dir_all(&ledger_dir)
        .with_context(|| format!("cannot remove {}", ledger_dir.display()))?;
    let json = serde_json::to_string_pretty(&report)?;
    std::fs::write(out.join("report.json"), json + "\n")
        .with_context(|| format!("cannot write {}", out.join("report.json").display()))?;
    std::fs::write(
        out.join("report.md"),
        slaguard::report::markdown::render(&report, &cfg),
    )
    .with_context(|| format!("cannot write {}", out.join("report.md").display()))?;
    let held = report
        .objectives
        .iter()
        .filter(|o| o.met == Some(true))
        .count();
    println!(
        "report written to {}: {held} of {} objectives held, {} incidents, {} credits owed",
        out.join("report.md").display(),
        report.objectives.len(),
        report.incidents.len(),
        report.credits.len()
    );
    Ok(())
}

/// Reads one JSON value per line.
fn read_jsonl<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> anyhow::Result<Vec<T>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| {
                format!("{}:{}: not a slaguard output line", path.display(), i + 1)
            })
        })
        .collect()
}

fn generate(spec: &ScenarioSpec, out: &std::path::Path) -> anyhow::Result<()> {
    let counts = scenario::write_dir(spec, out)
        .with_context(|| format!("cannot write the scenario to {}", out.display()))?;
    println!(
        "wrote {}: {} inferences (+{} duplicates), {} labels (+{} duplicates), {} acks, {} malformed lines, sla.yaml, fraud-reference.json",
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

/// Cancels `token` on SIGINT or SIGTERM.
async fn cancel_on_signal(token: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    eprintln!("signal received: draining and committing, then exiting");
    token.cancel();
}

fn replay_from_topics(
    cfg: Arc<config::SlaConfig>,
    settings: &KafkaSettings,
    options: TopicReplayOptions,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let mut progress: Option<Progress> = None;
    let tail = |c: &slaguard::kafka::topic_replay::TopicReplayCounts| {
        format!(
            "{} snapshots, {} breach events",
            c.outputs.metrics, c.outputs.breaches
        )
    };
    let (engine, counts) = replay_topics(cfg, settings, options, |c| {
        progress
            .get_or_insert_with(|| Progress::new(c.total, "messages", tty))
            .update(c.messages, c.messages, c.outputs.event_time, &tail(c));
    })?;
    if let Some(p) = &mut progress {
        p.finish(
            counts.messages,
            counts.messages,
            counts.outputs.event_time,
            &tail(&counts),
        );
    }
    let secs = started.elapsed().as_secs_f64();
    let s = engine.stats();
    println!(
        "replay finished in {secs:.2}s: {:.0} messages/s",
        counts.messages as f64 / secs.max(1e-9)
    );
    println!(
        "  messages      {} ({} outside the time range)",
        counts.messages, counts.outside
    );
    println!(
        "  events        {} inferences, {} labels, {} acks",
        s.inferences, s.labels, s.acks
    );
    println!("  dead letters  {}", counts.outputs.dead_letters);
    println!(
        "  joined        {}, unlabeled {}",
        engine.join_stats().matched,
        engine.join_stats().unlabeled
    );
    println!(
        "  incidents     {} opened, {} resolved",
        s.incidents_opened, s.incidents_resolved
    );
    println!(
        "  outputs       {} snapshots, {} breach events, {} escalation events",
        counts.outputs.metrics, counts.outputs.breaches, counts.outputs.escalations
    );
    Ok(())
}

fn profile(
    inferences: &std::path::Path,
    out: &std::path::Path,
    model: Option<&str>,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(inferences)
        .with_context(|| format!("cannot read {}", inferences.display()))?;
    let mut events = Vec::new();
    let mut skipped = 0u64;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match slaguard::decode::inference(line.as_bytes()) {
            Ok(e) if model.is_none_or(|m| m == e.model_id) => events.push(e),
            Ok(_) => {}
            Err(_) => skipped += 1,
        }
    }
    let models: std::collections::BTreeSet<&str> =
        events.iter().map(|e| e.model_id.as_str()).collect();
    anyhow::ensure!(
        !events.is_empty(),
        "no inference events{} in {}",
        model.map_or(String::new(), |m| format!(" of model `{m}`")),
        inferences.display()
    );
    anyhow::ensure!(
        models.len() == 1,
        "{} holds events of several models ({}): choose one with --model",
        inferences.display(),
        models.into_iter().collect::<Vec<_>>().join(", ")
    );
    let p = slaguard::profile::Profile::build(&events);
    std::fs::write(out, serde_json::to_string_pretty(&p)?)
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!(
        "wrote {}: {} features and {} from {} events ({} unreadable lines skipped)",
        out.display(),
        p.features.len(),
        if p.score.is_some() {
            "the score"
        } else {
            "no score"
        },
        events.len(),
        skipped
    );
    Ok(())
}
