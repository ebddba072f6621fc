//! The recent incidents of one objective, for the incident figures of its metric
//! snapshots (SPEC §3): incidents open, incidents opened, mean time to acknowledge (MTTA)
//! and mean time to resolve (MTTR), over the same window as the snapshot's value.
//!
//! An incident counts for MTTA in the window where it was acknowledged and for MTTR in the
//! window where it was resolved (automatically or by an ack). An ack between two instants
//! counts from the next instant on, the first whose snapshot follows it; the times
//! themselves stay exact. The whole model's figures (empty segment key) cover the
//! incidents of every segment.

use serde::{Deserialize, Serialize};

use crate::time::Millis;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Entry {
    key: Box<[u32]>,
    id: String,
    opened_at: Millis,
    /// When, and the instant from which it counts.
    acknowledged: Option<(Millis, Millis)>,
    resolved: Option<(Millis, Millis)>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IncidentLog {
    entries: Vec<Entry>,
}

/// Incident figures of one objective and segment at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct IncidentFigures {
    pub open: u64,
    pub opened: u64,
    /// Mean seconds from opening to acknowledgement, over the acknowledgements in the window.
    pub mtta_seconds: Option<f64>,
    /// Mean seconds from opening to resolution, over the resolutions in the window.
    pub mttr_seconds: Option<f64>,
}

fn mean_seconds(spans: impl Iterator<Item = Millis>) -> Option<f64> {
    let (n, sum) = spans.fold((0u64, 0i64), |(n, s), d| (n + 1, s + d));
    (n > 0).then(|| sum as f64 / n as f64 / 1000.0)
}

impl IncidentLog {
    pub fn opened(&mut self, key: &[u32], id: &str, at: Millis) {
        self.entries.push(Entry {
            key: key.into(),
            id: id.to_string(),
            opened_at: at,
            acknowledged: None,
            resolved: None,
        });
    }

    /// Acknowledged at `at`, counting from instant `counted_at`.
    pub fn acknowledged(&mut self, id: &str, at: Millis, counted_at: Millis) {
        if let Some(e) = self.entry(id) {
            e.acknowledged.get_or_insert((at, counted_at));
        }
    }

    /// Resolved at `at`, counting from instant `counted_at`.
    pub fn resolved(&mut self, id: &str, at: Millis, counted_at: Millis) {
        if let Some(e) = self.entry(id) {
            e.resolved.get_or_insert((at, counted_at));
        }
    }

    fn entry(&mut self, id: &str) -> Option<&mut Entry> {
        self.entries
            .iter_mut()
            .rev()
            .find(|e| e.id == id && e.resolved.is_none())
    }

    /// Forgets incidents resolved before the window ending at `at` began.
    pub fn prune(&mut self, at: Millis, window: Millis) {
        self.entries
            .retain(|e| e.resolved.is_none_or(|(_, c)| c > at - window));
    }

    /// The figures at `at` over `(at − window, at]` for segment `key` (all segments when
    /// `key` is empty).
    pub fn figures(&self, key: &[u32], at: Millis, window: Millis) -> IncidentFigures {
        let inside = |t: Millis| t > at - window && t <= at;
        let mine = || {
            self.entries
                .iter()
                .filter(move |e| key.is_empty() || *e.key == *key)
                .filter(move |e| e.opened_at <= at)
        };
        IncidentFigures {
            open: mine()
                .filter(|e| e.resolved.is_none_or(|(_, c)| c > at))
                .count() as u64,
            opened: mine().filter(|e| inside(e.opened_at)).count() as u64,
            mtta_seconds: mean_seconds(mine().filter_map(|e| {
                e.acknowledged
                    .filter(|(_, c)| inside(*c))
                    .map(|(t, _)| t - e.opened_at)
            })),
            mttr_seconds: mean_seconds(mine().filter_map(|e| {
                e.resolved
                    .filter(|(_, c)| inside(*c))
                    .map(|(t, _)| t - e.opened_at)
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: Millis = 60_000;

    #[test]
    fn figures_cover_the_window_and_every_segment_for_the_whole_model() {
        let mut log = IncidentLog::default();
        log.opened(&[1], "a", 0);
        log.acknowledged("a", 4 * M, 4 * M);
        log.resolved("a", 10 * M, 10 * M);
        log.opened(&[2], "b", 20 * M);
        // Acknowledged between instants: exact time for MTTA, counted from the next one.
        log.acknowledged("b", 22 * M, 25 * M);
        // At 25m over 30m: both opened, b open, MTTA (4 + 2)/2 = 3m, MTTR 10m.
        assert_eq!(log.figures(&[], 24 * M, 30 * M).mtta_seconds, Some(240.0));
        let all = log.figures(&[], 25 * M, 30 * M);
        assert_eq!(all.open, 1);
        assert_eq!(all.opened, 2);
        assert_eq!(all.mtta_seconds, Some(180.0));
        assert_eq!(all.mttr_seconds, Some(600.0));
        let seg = log.figures(&[1], 25 * M, 30 * M);
        assert_eq!((seg.open, seg.opened), (0, 1));
        assert_eq!(seg.mtta_seconds, Some(240.0));
        // At 35m over 30m: a's opening and acknowledgement left the window, its
        // resolution (10m) is still in it.
        let later = log.figures(&[], 35 * M, 30 * M);
        assert_eq!(later.opened, 1);
        assert_eq!(later.mtta_seconds, Some(120.0));
        assert_eq!(later.mttr_seconds, Some(600.0));
        log.prune(45 * M, 30 * M);
        assert_eq!(
            log.entries.len(),
            1,
            "a resolved before the window: forgotten"
        );
        assert!(log.figures(&[], 45 * M, 30 * M).mttr_seconds.is_none());
    }
}
