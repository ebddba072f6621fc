//! The event-time watermark (SPEC §3): the minimum over active input sources of the latest
//! event time each has delivered, minus `allowed_lateness`. A source that has ended (end of
//! file, end offset of a bounded replay) or that the shell has marked idle no longer holds
//! the watermark back. When every source has ended, the watermark is the latest event time
//! seen, so a replay evaluates every instant up to its last event.
//!
//! When every live source is idle, the watermark moves to the latest event time any of
//! them delivered, less the lateness, so a quiet stream still evaluates its last instants.
//!
//! Idleness is decided by the shell, which owns processing time; this module has no clock.

use serde::{Deserialize, Serialize};

use crate::time::Millis;

/// Identifies one input source (a file, or a topic partition), as returned by `add_source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SourceId(pub usize);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Source {
    max_time: Option<Millis>,
    ended: bool,
    idle: bool,
}

/// How far one source has got: what a shard tells the evaluator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceProgress {
    pub source: SourceId,
    pub max_time: Option<Millis>,
    pub idle: bool,
    pub ended: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Watermark {
    allowed_lateness: Millis,
    sources: Vec<Source>,
    max_seen: Option<Millis>,
    current: Option<Millis>,
}

impl Watermark {
    pub fn new(allowed_lateness: Millis) -> Self {
        Watermark {
            allowed_lateness,
            sources: Vec::new(),
            max_seen: None,
            current: None,
        }
    }

    pub fn add_source(&mut self) -> SourceId {
        self.sources.push(Source::default());
        SourceId(self.sources.len() - 1)
    }

    /// The watermark: events with an earlier time are late. `None` until every active
    /// source has delivered an event.
    pub fn current(&self) -> Option<Millis> {
        self.current
    }

    /// The latest event time seen on any source.
    pub fn max_seen(&self) -> Option<Millis> {
        self.max_seen
    }

    /// Every source's progress.
    pub fn progress(&self) -> Vec<SourceProgress> {
        self.sources
            .iter()
            .enumerate()
            .map(|(i, s)| SourceProgress {
                source: SourceId(i),
                max_time: s.max_time,
                idle: s.idle,
                ended: s.ended,
            })
            .collect()
    }

    /// Takes each `(source, p)` (`p` another watermark's source) as the progress of
    /// `source`, all at once: a report that makes several idle sources active again must
    /// not let the first of them, applied alone, run the watermark ahead of the rest.
    pub fn apply_progress(
        &mut self,
        updates: impl IntoIterator<Item = (SourceId, SourceProgress)>,
    ) {
        for (source, p) in updates {
            if source.0 < self.sources.len() {
                if let Some(t) = p.max_time {
                    self.reach(source, t);
                }
                let s = &mut self.sources[source.0];
                s.idle = p.idle;
                s.ended = p.ended;
            }
        }
        self.recompute();
    }

    pub fn observe(&mut self, source: SourceId, time: Millis) {
        self.reach(source, time);
        if let Some(s) = self.sources.get_mut(source.0) {
            s.idle = false;
        }
        self.recompute();
    }

    /// `source` (and so the stream) has got to `time`.
    fn reach(&mut self, source: SourceId, time: Millis) {
        if let Some(s) = self.sources.get_mut(source.0) {
            s.max_time = Some(s.max_time.map_or(time, |m| m.max(time)));
        }
        self.max_seen = Some(self.max_seen.map_or(time, |m| m.max(time)));
    }

    pub fn end(&mut self, source: SourceId) {
        if let Some(s) = self.sources.get_mut(source.0) {
            s.ended = true;
        }
        self.recompute();
    }

    pub fn set_idle(&mut self, source: SourceId, idle: bool) {
        if let Some(s) = self.sources.get_mut(source.0) {
            s.idle = idle;
        }
        self.recompute();
    }

    fn recompute(&mut self) {
        let mut active = self
            .sources
            .iter()
            .filter(|s| !s.ended && !s.idle)
            .peekable();
        let candidate = if self.sources.iter().all(|s| s.ended) {
            self.max_seen
        } else if active.peek().is_none() {
            // Every live source is idle: nothing is on its way, so the latest event time
            // any of them delivered (less the lateness) is as far as the data goes.
            self.sources
                .iter()
                .filter_map(|s| s.max_time)
                .max()
                .map(|t| t.saturating_sub(self.allowed_lateness))
        } else {
            active
                .map(|s| s.max_time)
                .try_fold(Millis::MAX, |acc, t| t.map(|t| acc.min(t)))
                .map(|t| t.saturating_sub(self.allowed_lateness))
        };
        if let Some(c) = candidate {
            self.current = Some(self.current.map_or(c, |w| w.max(c)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_over_active_sources() {
        let mut w = Watermark::new(10);
        let a = w.add_source();
        let b = w.add_source();
        w.observe(a, 100);
        assert_eq!(w.current(), None, "b has not delivered yet");
        w.observe(b, 50);
        assert_eq!(w.current(), Some(40));
        w.observe(b, 500);
        assert_eq!(w.current(), Some(90));
        w.set_idle(a, true);
        assert_eq!(w.current(), Some(490));
        w.set_idle(b, true);
        assert_eq!(
            w.current(),
            Some(490),
            "all idle: the latest event time less lateness"
        );
        w.observe(b, 600);
        assert_eq!(w.current(), Some(590));
        w.observe(a, 200); // a is active again; the watermark never goes back
        assert_eq!(w.current(), Some(590));
        w.end(a);
        w.end(b);
        assert_eq!(w.current(), Some(600), "all ended: the last event time");
    }

    #[test]
    fn progress_applies_at_once() {
        let mut w = Watermark::new(10);
        let a = w.add_source();
        let b = w.add_source();
        w.observe(a, 100);
        w.observe(b, 100);
        w.set_idle(a, true);
        w.set_idle(b, true);
        assert_eq!(w.current(), Some(90));
        // Both active again, one far ahead: the one behind holds the watermark.
        let at = |source: SourceId, t| SourceProgress {
            source,
            max_time: Some(t),
            idle: false,
            ended: false,
        };
        w.apply_progress([(a, at(a, 1_000)), (b, at(b, 100))]);
        assert_eq!(w.current(), Some(90));
        w.apply_progress([(b, at(b, 500))]);
        assert_eq!(w.current(), Some(490));
    }
}
