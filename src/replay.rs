//! The file replay shell (SPEC §6): reads exported JSONL files of inferences, labels and
//! acks, merges them by event time (each file is in time order), drives the engine, and
//! writes `metrics.jsonl`, `breaches.jsonl`, `escalations.jsonl` and `dead_letters.jsonl`.
//!
//! Every line is accounted for: decoded and handed to the engine, or written as a dead
//! letter with its file, line number and reason. Blank lines are skipped.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, SyncSender};
use std::sync::Arc;

use crate::config::SlaConfig;
use crate::dead_letter::{DeadLetter, InputKind, Origin, Position, Reason};
use crate::decode;
use crate::engine::{prepare, Engine, EventKeys};
use crate::event::Event;
use crate::output::Output;
use crate::series::Fact;
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

/// Lines decoded per message from a reading thread to the merge.
const CHUNK_LINES: usize = 1024;

/// One decoded line of a [`Chunk`].
struct DecodedLine {
    line_no: u64,
    /// Where the line (without its line end) lies in the chunk's text.
    start: usize,
    end: usize,
    /// Bytes read for it, with the blank lines before it and its line end.
    bytes: u64,
    outcome: Result<Event, Reason>,
    /// The event's model index and request key, for inferences and labels.
    keys: Option<EventKeys>,
    /// Where an inference's drift and data-quality facts lie in the chunk's facts.
    facts: Range<usize>,
}

/// Consecutive lines of one file, read and decoded on that file's own thread: their
/// text (kept for dead letters and acks) and what each decoded to.
struct Chunk {
    text: Vec<u8>,
    lines: Vec<DecodedLine>,
    /// The inferences' drift and data-quality facts ([`prepare`]).
    facts: Vec<Fact>,
    /// Bytes of trailing blank lines, counted when the file ends.
    trailing: u64,
}

/// What a reading thread sends.
enum Read {
    Lines(Chunk),
    Failed(ReplayError),
}

/// Reads `path` to its end, decoding each non-blank line as `kind`, in chunks. Chunks the
/// merge is done with come back on `recycled`: their events are dropped here, on the
/// thread that allocated them, and their buffers filled again.
fn read_file(
    kind: InputKind,
    config: &SlaConfig,
    path: PathBuf,
    file: File,
    tx: SyncSender<Read>,
    recycled: Receiver<Chunk>,
) {
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut line_no = 0u64;
    let mut buf = Vec::with_capacity(1024);
    let mut blank_bytes = 0u64;
    loop {
        let mut chunk = match recycled.try_recv() {
            Ok(mut c) => {
                c.text.clear();
                c.lines.clear();
                c.facts.clear();
                c
            }
            Err(_) => Chunk {
                text: Vec::with_capacity(CHUNK_LINES * 256),
                lines: Vec::with_capacity(CHUNK_LINES),
                facts: Vec::new(),
                trailing: 0,
            },
        };
        let mut ended = false;
        while chunk.lines.len() < CHUNK_LINES {
            buf.clear();
            let n = match reader.read_until(b'\n', &mut buf) {
                Ok(n) => n,
                Err(source) => {
                    let _ = tx.send(Read::Failed(ReplayError::Read {
                        path,
                        line: line_no + 1,
                        source,
                    }));
                    return;
                }
            };
            if n == 0 {
                ended = true;
                break;
            }
            line_no += 1;
            blank_bytes += n as u64;
            let mut line: &[u8] = &buf;
            while let [rest @ .., b'\n' | b'\r'] = line {
                line = rest;
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let outcome = match kind {
                InputKind::Inferences => decode::inference(line).map(Event::Inference),
                InputKind::Labels => decode::label(line).map(Event::Label),
                InputKind::Acks => decode::ack(line).map(Event::Ack),
            };
            let (keys, facts) = prepare(config, outcome.as_ref().ok(), &mut chunk.facts);
            let start = chunk.text.len();
            chunk.text.extend_from_slice(line);
            chunk.lines.push(DecodedLine {
                line_no,
                start,
                end: chunk.text.len(),
                bytes: std::mem::take(&mut blank_bytes),
                outcome,
                keys,
                facts,
            });
        }
        if ended {
            chunk.trailing = blank_bytes;
        }
        if tx.send(Read::Lines(chunk)).is_err() || ended {
            return;
        }
    }
}

/// One input file and its next decoded event, which stays in its chunk (with its raw
/// line) until the engine has taken it. The file is read and decoded on a thread of its
/// own, a few chunks ahead of the merge.
struct Cursor {
    kind: InputKind,
    name: String,
    lines: Receiver<Read>,
    /// Chunks done with, back to the reading thread.
    recycle: Sender<Chunk>,
    chunk: Option<Chunk>,
    /// The line of `chunk` that the next event (or the last one taken) came from.
    at: usize,
    /// The next line of `chunk` to look at.
    pos: usize,
    line_no: u64,
    /// Whether line `at` holds an event not yet taken.
    ready: bool,
    /// That event's time, while `ready`: the merge compares it without touching the event.
    time: Millis,
    done: bool,
}

impl Cursor {
    fn open(kind: InputKind, config: &Arc<SlaConfig>, path: &Path) -> Result<Cursor, ReplayError> {
        let file = File::open(path).map_err(|source| ReplayError::Open {
            kind: kind.name(),
            path: path.to_path_buf(),
            source,
        })?;
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        let (recycle, recycled) = std::sync::mpsc::channel();
        let owned = path.to_path_buf();
        let config = Arc::clone(config);
        std::thread::Builder::new()
            .name(format!("read-{}", kind.name()))
            .spawn(move || read_file(kind, &config, owned, file, tx, recycled))
            .map_err(|source| ReplayError::Open {
                kind: kind.name(),
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Cursor {
            kind,
            name: path.display().to_string(),
            lines: rx,
            recycle,
            chunk: None,
            at: 0,
            pos: 0,
            line_no: 0,
            ready: false,
            time: 0,
            done: false,
        })
    }

    fn raw(&self) -> Vec<u8> {
        self.chunk
            .as_ref()
            .and_then(|c| {
                let l = c.lines.get(self.at)?;
                c.text.get(l.start..l.end)
            })
            .map(<[u8]>::to_vec)
            .unwrap_or_default()
    }

    fn origin(&self) -> Origin {
        Origin {
            input: self.kind,
            position: Position::Line {
                file: self.name.clone(),
                line: self.line_no,
            },
            raw: self.raw(),
        }
    }

    /// The event not yet taken, if any, its keys and its facts.
    fn next_keyed(&self) -> Option<(&Event, Option<EventKeys>, &[Fact])> {
        if !self.ready {
            return None;
        }
        let chunk = self.chunk.as_ref()?;
        let line = chunk.lines.get(self.at)?;
        let facts = chunk.facts.get(line.facts.clone()).unwrap_or_default();
        Some((line.outcome.as_ref().ok()?, line.keys, facts))
    }

    /// Takes lines until the next decodable event, sending undecodable ones to `dead`.
    fn fill(
        &mut self,
        counts: &mut ReplayCounts,
        dead: &mut Vec<DeadLetter>,
    ) -> Result<(), ReplayError> {
        while !self.ready && !self.done {
            if self
                .chunk
                .as_ref()
                .is_none_or(|c| self.pos >= c.lines.len())
            {
                match self.lines.recv() {
                    Ok(Read::Lines(chunk)) => {
                        counts.bytes += chunk.trailing;
                        if let Some(old) = self.chunk.replace(chunk) {
                            // The reader may have ended; then the chunk is dropped here.
                            let _ = self.recycle.send(old);
                        }
                        self.pos = 0;
                    }
                    Ok(Read::Failed(e)) => return Err(e),
                    // The reader has sent its last chunk.
                    Err(_) => self.done = true,
                }
                continue;
            }
            let Some(line) = self.chunk.as_mut().and_then(|c| c.lines.get_mut(self.pos)) else {
                break;
            };
            self.at = self.pos;
            self.pos += 1;
            self.line_no = line.line_no;
            counts.bytes += line.bytes;
            counts.lines += 1;
            match &mut line.outcome {
                Ok(event) => {
                    self.time = event.time();
                    self.ready = true;
                }
                Err(reason) => {
                    // Taken once: the placeholder left behind is never read.
                    let reason = std::mem::replace(reason, Reason::NotJson(String::new()));
                    dead.push(DeadLetter {
                        origin: self.origin(),
                        reason,
                    })
                }
            }
        }
        Ok(())
    }

    fn exhausted(&self) -> bool {
        self.done && !self.ready
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
    /// Input `i` holds the next event; apply it with [`MergedInputs::apply`].
    Event(usize),
    /// The input file that registered this source has ended.
    Ended(SourceId),
}

impl MergedInputs {
    /// Opens the inputs, to be replayed through an engine running `config`; `register`
    /// gives each data input (inferences, labels) its source.
    pub fn open(
        inputs: &ReplayInputs,
        config: &Arc<SlaConfig>,
        mut register: impl FnMut() -> SourceId,
    ) -> Result<MergedInputs, ReplayError> {
        let mut cursors = vec![
            Cursor::open(InputKind::Inferences, config, &inputs.inferences)?,
            Cursor::open(InputKind::Labels, config, &inputs.labels)?,
        ];
        if let Some(acks) = &inputs.acks {
            cursors.push(Cursor::open(InputKind::Acks, config, acks)?);
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
        let Some((time, i)) = self
            .cursors
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.ready.then_some((c.time, i)))
            .min()
        else {
            return Ok(None);
        };
        counts.event_time = Some(counts.event_time.map_or(time, |t| t.max(time)));
        Ok(Some(Step::Event(i)))
    }

    /// Hands the next event of input `i` to the engine; a rejection becomes a dead letter.
    pub fn apply(&mut self, engine: &mut Engine, i: usize) -> Option<DeadLetter> {
        let source = self
            .sources
            .get(i)
            .copied()
            .flatten()
            .unwrap_or(SourceId(i));
        let c = self.cursors.get_mut(i)?;
        let result = match c.next_keyed()? {
            (Event::Inference(e), Some(keys), facts) => {
                engine.handle_inference_prepared(source, e, keys, facts)
            }
            (Event::Inference(e), None, _) => engine.handle_inference(source, e),
            (Event::Label(e), Some(keys), _) => engine.handle_label_keyed(source, e, keys),
            (Event::Label(e), None, _) => engine.handle_label(source, e),
            (Event::Ack(a), _, _) => {
                let mut a = a.clone();
                a.origin = Some(c.origin());
                engine.handle_ack(a)
            }
        };
        c.ready = false;
        result.err().map(|reason| DeadLetter {
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
    let mut merged = MergedInputs::open(inputs, &config, || engine.add_source())?;
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
            Some(Step::Event(i)) => {
                if let Some(d) = merged.apply(&mut engine, i) {
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
