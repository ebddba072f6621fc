//! The file replay shell (SPEC §6): reads exported JSONL files of inferences, labels and
//! acks, merges them by event time (each file is in time order), drives the engine, and
//! writes `metrics.jsonl`, `breaches.jsonl`, `escalations.jsonl` and `dead_letters.jsonl`.
//!
//! Every line is accounted for: decoded and handed to the engine, or written as a dead
//! letter with its file, line number and reason. Blank lines are skipped.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::SlaConfig;
use crate::dead_letter::{DeadLetter, InputKind, Origin, Position};
use crate::decode;
use crate::engine::Engine;
use crate::event::Event;
use crate::output::Output;
use crate::time::Millis;
use crate::watermark::SourceId;

/// Why a replay could not run. Bad lines are not errors: they become dead letters.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    #[error("cannot open {kind} file {path}: {source}")]
    Open {
        kind: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("cannot read {path} at line {line}: {source}")]
    Read {
        path: PathBuf,
        line: u64,
        source: io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// The input files of a replay.
#[derive(Debug, Clone)]
pub struct ReplayInputs {
    pub inferences: PathBuf,
    pub labels: PathBuf,
    pub acks: Option<PathBuf>,
}

/// Counts reported while a replay runs and at its end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayCounts {
    /// Lines read (not blank), all inputs.
    pub lines: u64,
    pub dead_letters: u64,
    pub metrics: u64,
    pub breaches: u64,
    pub escalations: u64,
    /// Event time reached by the merge.
    pub event_time: Option<Millis>,
    /// Bytes read, all inputs.
    pub bytes: u64,
}

/// One input file, holding its next decoded event (and that event's raw line).
struct Cursor {
    kind: InputKind,
    path: PathBuf,
    name: String,
    reader: BufReader<File>,
    line_no: u64,
    buf: Vec<u8>,
    next: Option<Event>,
    done: bool,
}

impl Cursor {
    fn open(kind: InputKind, path: &Path) -> Result<Cursor, ReplayError> {
        let file = File::open(path).map_err(|source| ReplayError::Open {
            kind: kind.name(),
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Cursor {
            kind,
            path: path.to_path_buf(),
            name: path.display().to_string(),
            reader: BufReader::with_capacity(1 << 20, file),
            line_no: 0,
            buf: Vec::with_capacity(1024),
            next: None,
            done: false,
        })
    }

    fn origin(&self) -> Origin {
        Origin {
            input: self.kind,
            position: Position::Line {
                file: self.name.clone(),
                line: self.line_no,
            },
            raw: self.buf.clone(),
        }
    }

    /// Reads until the next decodable event, sending undecodable lines to `dead`.
    fn fill(
        &mut self,
        counts: &mut ReplayCounts,
        dead: &mut Vec<DeadLetter>,
    ) -> Result<(), ReplayError> {
        while self.next.is_none() && !self.done {
            self.buf.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.buf)
                .map_err(|source| ReplayError::Read {
                    path: self.path.clone(),
                    line: self.line_no + 1,
                    source,
                })?;
            if n == 0 {
                self.done = true;
                break;
            }
            self.line_no += 1;
            counts.bytes += n as u64;
            while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
                self.buf.pop();
            }
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            counts.lines += 1;
            let decoded = match self.kind {
                InputKind::Inferences => decode::inference(&self.buf).map(Event::Inference),
                InputKind::Labels => decode::label(&self.buf).map(Event::Label),
                InputKind::Acks => decode::ack(&self.buf).map(Event::Ack),
            };
            match decoded {
                Ok(d) => self.next = Some(d),
                Err(reason) => dead.push(DeadLetter {
                    origin: self.origin(),
                    reason,
                }),
            }
        }
        Ok(())
    }

    fn exhausted(&self) -> bool {
        self.done && self.next.is_none()
    }
}

/// The output files of a replay.
pub struct OutputFiles {
    dir: PathBuf,
    metrics: BufWriter<File>,
    breaches: BufWriter<File>,
    escalations: BufWriter<File>,
    dead_letters: BufWriter<File>,
    sla_version: String,
}

impl OutputFiles {
    pub fn create(dir: &Path, sla_version: &str) -> Result<OutputFiles, ReplayError> {
        let open = |name: &str| -> Result<BufWriter<File>, ReplayError> {
            let path = dir.join(name);
            File::create(&path)
                .map(|f| BufWriter::with_capacity(1 << 20, f))
                .map_err(|source| ReplayError::Write { path, source })
        };
        std::fs::create_dir_all(dir).map_err(|source| ReplayError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        let files = OutputFiles {
            dir: dir.to_path_buf(),
            metrics: open("metrics.jsonl")?,
            breaches: open("breaches.jsonl")?,
            escalations: open("escalations.jsonl")?,
            dead_letters: open("dead_letters.jsonl")?,
            sla_version: sla_version.to_string(),
        };
        Ok(files)
    }

    pub fn write(&mut self, output: &Output, counts: &mut ReplayCounts) -> Result<(), ReplayError> {
        let (writer, name, result) = match output {
            Output::Metric(m) => {
                counts.metrics += 1;
                (&mut self.metrics, "metrics.jsonl", serde_json::to_vec(m))
            }
            Output::Breach(b) => {
                counts.breaches += 1;
                (&mut self.breaches, "breaches.jsonl", serde_json::to_vec(b))
            }
            Output::Escalation(e) => {
                counts.escalations += 1;
                (
                    &mut self.escalations,
                    "escalations.jsonl",
                    serde_json::to_vec(e),
                )
            }
            Output::DeadLetter(d) => {
                counts.dead_letters += 1;
                (
                    &mut self.dead_letters,
                    "dead_letters.jsonl",
                    serde_json::to_vec(&d.record(&self.sla_version)),
                )
            }
        };
        let path = self.dir.join(name);
        let mut line = result.map_err(|e| ReplayError::Write {
            path: path.clone(),
            source: io::Error::other(e),
        })?;
        line.push(b'\n');
        writer
            .write_all(&line)
            .map_err(|source| ReplayError::Write { path, source })
    }

    pub fn flush(&mut self) -> Result<(), ReplayError> {
        for (w, name) in [
            (&mut self.metrics, "metrics.jsonl"),
            (&mut self.breaches, "breaches.jsonl"),
            (&mut self.escalations, "escalations.jsonl"),
            (&mut self.dead_letters, "dead_letters.jsonl"),
        ] {
            w.flush().map_err(|source| ReplayError::Write {
                path: self.dir.join(name),
                source,
            })?;
        }
        Ok(())
    }
}

/// The input files merged by event time: yields each decoded event once, in order (ties go
/// to inferences, then labels, then acks), and sends undecodable lines to dead letters.
pub struct MergedInputs {
    cursors: Vec<Cursor>,
    sources: Vec<Option<SourceId>>,
}

/// One step of a merged replay.
pub enum Step {
    /// A decoded event; apply it with [`MergedInputs::apply`].
    Event(usize, Box<Event>),
    /// The input file that registered this source has ended.
    Ended(SourceId),
}

impl MergedInputs {
    /// Opens the inputs; `register` gives each data input (inferences, labels) its source.
    pub fn open(
        inputs: &ReplayInputs,
        mut register: impl FnMut() -> SourceId,
    ) -> Result<MergedInputs, ReplayError> {
        let mut cursors = vec![
            Cursor::open(InputKind::Inferences, &inputs.inferences)?,
            Cursor::open(InputKind::Labels, &inputs.labels)?,
        ];
        if let Some(acks) = &inputs.acks {
            cursors.push(Cursor::open(InputKind::Acks, acks)?);
        }
        let sources = cursors
            .iter()
            .map(|c| (c.kind != InputKind::Acks).then(&mut register))
            .collect();
        Ok(MergedInputs { cursors, sources })
    }

    /// The next step, or `None` when every input is exhausted. `dead` collects the lines
    /// that could not be decoded, in reading order.
    pub fn next(
        &mut self,
        counts: &mut ReplayCounts,
        dead: &mut Vec<DeadLetter>,
    ) -> Result<Option<Step>, ReplayError> {
        for (i, c) in self.cursors.iter_mut().enumerate() {
            let was_exhausted = c.exhausted();
            c.fill(counts, dead)?;
            if c.exhausted() && !was_exhausted {
                if let Some(s) = self.sources[i] {
                    return Ok(Some(Step::Ended(s)));
                }
            }
        }
        let Some(i) = self
            .cursors
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.next.as_ref().map(|d| (d.time(), i)))
            .min()
            .map(|(_, i)| i)
        else {
            return Ok(None);
        };
        let Some(event) = self.cursors[i].next.take() else {
            return Ok(None);
        };
        counts.event_time = Some(
            counts
                .event_time
                .map_or(event.time(), |t| t.max(event.time())),
        );
        Ok(Some(Step::Event(i, Box::new(event))))
    }

    /// Hands `event` (from input `i`) to the engine; a rejection becomes a dead letter.
    pub fn apply(&self, engine: &mut Engine, i: usize, event: Box<Event>) -> Option<DeadLetter> {
        let c = &self.cursors[i];
        let source = self.sources[i].unwrap_or(SourceId(i));
        let event = match *event {
            Event::Ack(mut a) => {
                a.origin = Some(c.origin());
                Event::Ack(a)
            }
            other => other,
        };
        engine.handle(source, event).err().map(|reason| DeadLetter {
            origin: c.origin(),
            reason,
        })
    }
}

/// Replays `inputs` through a new engine, writing outputs to `out_dir`. `progress` is called
/// every `progress_every` lines with the counts so far. Returns the engine (for its
/// counters) and the final counts.
pub fn replay_files(
    config: Arc<SlaConfig>,
    inputs: &ReplayInputs,
    out_dir: &Path,
    progress_every: u64,
    mut progress: impl FnMut(&ReplayCounts),
) -> Result<(Engine, ReplayCounts), ReplayError> {
    let mut engine = Engine::new(Arc::clone(&config));
    let mut out = OutputFiles::create(out_dir, &config.sla_version)?;
    let mut merged = MergedInputs::open(inputs, || engine.add_source())?;
    let mut counts = ReplayCounts::default();
    let mut next_progress = progress_every.max(1);
    let mut dead = Vec::new();
    loop {
        let step = merged.next(&mut counts, &mut dead)?;
        for d in dead.drain(..) {
            out.write(&Output::DeadLetter(d), &mut counts)?;
        }
        match step {
            None => break,
            Some(Step::Ended(s)) => engine.end_source(s),
            Some(Step::Event(i, event)) => {
                if let Some(d) = merged.apply(&mut engine, i, event) {
                    out.write(&Output::DeadLetter(d), &mut counts)?;
                }
            }
        }
        while let Some(o) = engine.poll_output() {
            out.write(&o, &mut counts)?;
        }
        if counts.lines >= next_progress {
            progress(&counts);
            next_progress = counts.lines + progress_every.max(1);
        }
    }
    engine.finish();
    while let Some(o) = engine.poll_output() {
        out.write(&o, &mut counts)?;
    }
    out.flush()?;
    progress(&counts);
    Ok((engine, counts))
}
