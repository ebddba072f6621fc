//! Sliding windows built from per-interval summaries.
//!
//! Interval `k` holds the events with event time in `[k·e, (k+1)·e)` where `e` is
//! `evaluate_every`. The window of instant `T = n·e` is the half-open `[T − window, T)`,
//! i.e. intervals `n − len .. n`. The window keeps a running aggregate: advancing merges
//! the intervals that enter and unmerges those that leave, so evaluating costs the same
//! whatever the number of events in the window. Intervals are stored sparsely: a gap in
//! the data costs nothing.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::summary::Summary;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlidingWindow<S> {
    /// Window length in intervals.
    len: i64,
    /// Oldest interval any future window can include; older events are too late.
    base: i64,
    /// Aggregate covers the stored intervals in `[base, hi)`.
    hi: i64,
    /// (interval, summary), in interval order. Events mostly go to the newest interval, at
    /// the back; stored as a map.
    #[serde(with = "as_map")]
    intervals: VecDeque<(i64, S)>,
    aggregate: S,
}

/// What happened to a recorded event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Stored; it will count in every window that covers its interval.
    Stored,
    /// Its interval has left every window still to be evaluated.
    TooLate,
}

impl<S: Summary> SlidingWindow<S> {
    pub fn new(len: i64) -> Self {
        SlidingWindow {
            len: len.max(1),
            base: i64::MIN,
            hi: i64::MIN,
            intervals: VecDeque::new(),
            aggregate: S::default(),
        }
    }

    /// Applies `update` to interval `k` (and to the aggregate when `k` is inside it).
    pub fn record(&mut self, k: i64, update: impl Fn(&mut S)) -> Recorded {
        if k < self.base {
            return Recorded::TooLate;
        }
        let summary = match self.intervals.back_mut() {
            Some((last, s)) if *last == k => s,
            _ => {
                let i = match self.intervals.binary_search_by_key(&k, |(j, _)| *j) {
                    Ok(i) => i,
                    Err(i) => {
                        self.intervals.insert(i, (k, S::default()));
                        i
                    }
                };
                &mut self.intervals[i].1
            }
        };
        update(summary);
        if k < self.hi {
            update(&mut self.aggregate);
        }
        Recorded::Stored
    }

    /// Moves the window to instant `n` (intervals `n − len .. n`) and returns its aggregate.
    /// Instants must not go backwards.
    pub fn advance_to(&mut self, n: i64) -> &S {
        if n > self.hi {
            let from = self.hi.max(self.base);
            let start = self.intervals.partition_point(|(k, _)| *k < from);
            let end = self.intervals.partition_point(|(k, _)| *k < n);
            for (_, s) in self.intervals.range(start..end.max(start)) {
                self.aggregate.merge(s);
            }
            self.hi = n;
        }
        let lo = n - self.len;
        while self.intervals.front().is_some_and(|(k, _)| *k < lo) {
            let Some((k, s)) = self.intervals.pop_front() else {
                break;
            };
            if k < self.hi {
                self.aggregate.unmerge(&s);
            }
        }
        self.base = self.base.max(lo);
        if self.intervals.is_empty() {
            // Exact arithmetic makes this a no-op; it also frees any empty buckets.
            self.aggregate = S::default();
        }
        self.aggregate.index();
        &self.aggregate
    }

    pub fn aggregate(&self) -> &S {
        &self.aggregate
    }

    /// No stored interval: the window is empty now and will stay so without new events.
    pub fn is_idle(&self) -> bool {
        self.intervals.is_empty()
    }
}

/// The intervals as a map from interval to summary, in order.
mod as_map {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serialize, Z: Serializer>(
        intervals: &VecDeque<(i64, S)>,
        z: Z,
    ) -> Result<Z::Ok, Z::Error> {
        z.collect_map(intervals.iter().map(|(k, s)| (k, s)))
    }

    pub fn deserialize<'de, S: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<VecDeque<(i64, S)>, D::Error> {
        Ok(BTreeMap::<i64, S>::deserialize(d)?.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::ReliabilitySummary;

    #[test]
    fn half_open_window_and_late_events() {
        let mut w: SlidingWindow<ReliabilitySummary> = SlidingWindow::new(3);
        for k in 0..10 {
            assert_eq!(w.record(k, |s| s.record(true)), Recorded::Stored);
        }
        assert_eq!(w.advance_to(5).total, 3); // intervals 2, 3, 4
                                              // a late event in interval 3 lands in the aggregate immediately
        assert_eq!(w.record(3, |s| s.record(false)), Recorded::Stored);
        assert_eq!(w.aggregate().total, 4);
        assert_eq!(w.advance_to(6).total, 4); // 3 (two events), 4, 5
        assert_eq!(w.record(2, |s| s.record(true)), Recorded::TooLate);
        assert_eq!(w.advance_to(20).total, 0);
        assert!(w.is_idle());
    }

    #[test]
    fn intervals_out_of_order_and_stored_as_a_map() {
        let mut w: SlidingWindow<ReliabilitySummary> = SlidingWindow::new(3);
        for k in [5, 3, 7, 3, 6, 4] {
            assert_eq!(w.record(k, |s| s.record(true)), Recorded::Stored);
        }
        // The bytes a map of the intervals gives (as snapshots have always stored them).
        #[derive(Serialize)]
        struct AsMap<'a> {
            len: i64,
            base: i64,
            hi: i64,
            intervals: BTreeMap<i64, &'a ReliabilitySummary>,
            aggregate: &'a ReliabilitySummary,
        }
        let map = AsMap {
            len: w.len,
            base: w.base,
            hi: w.hi,
            intervals: w.intervals.iter().map(|(k, s)| (*k, s)).collect(),
            aggregate: &w.aggregate,
        };
        let keys: Vec<i64> = map.intervals.keys().copied().collect();
        assert_eq!(keys, [3, 4, 5, 6, 7]);
        let bytes = postcard::to_stdvec(&w).expect("serialize");
        assert_eq!(bytes, postcard::to_stdvec(&map).expect("serialize"));
        let json = serde_json::to_value(&w).expect("serialize");
        assert_eq!(json, serde_json::to_value(&map).expect("serialize"));
        let mut back: SlidingWindow<ReliabilitySummary> =
            serde_json::from_value(json).expect("deserialize");
        for w in [&mut w, &mut back] {
            assert_eq!(w.advance_to(6).total, 4, "intervals 3 (two events), 4, 5");
            assert_eq!(w.advance_to(8).total, 3, "intervals 5, 6, 7");
        }
    }
}
