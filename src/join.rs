//! The join of predictions with their delayed labels (SPEC §3), keyed by model and
//! `request_id`.
//!
//! A prediction waits up to `label_ttl` (event time) for its label; a label that arrives
//! first waits up to `early_label_ttl` for its prediction. After a join, or for a failed
//! request, a small guard entry stays until the prediction's deadline so that duplicates
//! are recognised and counted, never double-counted. Every entry lives in one expiry index
//! ordered by deadline; the total is bounded (the engine allows `max_pending` per input
//! source), and overflow evicts the entry nearest its deadline, counted by kind.
//!
//! Time only moves through [`JoinState::expire_before`], called by the engine as the
//! watermark advances.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::time::Millis;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Entry<P, L> {
    /// A prediction waiting for its label.
    Prediction {
        payload: P,
        /// The source (input partition) it was read from: state moves with it.
        origin: u32,
        time: Millis,
        deadline: Millis,
        seq: u64,
    },
    /// A label waiting for its prediction.
    Label {
        payload: L,
        origin: u32,
        time: Millis,
        deadline: Millis,
        seq: u64,
    },
    /// A request already joined, or one that failed (no prediction): later copies are
    /// duplicates.
    Guard {
        failed: bool,
        deadline: Millis,
        seq: u64,
        origin: u32,
    },
}

impl<P, L> Entry<P, L> {
    fn origin(&self) -> u32 {
        match self {
            Entry::Prediction { origin, .. }
            | Entry::Label { origin, .. }
            | Entry::Guard { origin, .. } => *origin,
        }
    }

    fn slot(&self) -> (Millis, u64) {
        match self {
            Entry::Prediction { deadline, seq, .. }
            | Entry::Label { deadline, seq, .. }
            | Entry::Guard { deadline, seq, .. } => (*deadline, *seq),
        }
    }
}

/// A prediction and its label, matched.
#[derive(Debug, Clone, PartialEq)]
pub struct Match<P, L> {
    pub prediction: P,
    pub prediction_time: Millis,
    pub label: L,
    pub label_time: Millis,
}

/// A prediction whose label did not arrive within its TTL.
#[derive(Debug, Clone, PartialEq)]
pub struct Unlabeled<P> {
    pub prediction: P,
    pub prediction_time: Millis,
    /// When the TTL ran out: the event time of this outcome.
    pub deadline: Millis,
}

/// What happened to an inserted prediction or label.
#[derive(Debug, Clone, PartialEq)]
pub enum Joined<P, L> {
    /// Waiting for its counterpart.
    Pending,
    /// Matched with its counterpart.
    Matched(Match<P, L>),
    /// Same request already seen: the first is kept.
    Duplicate,
    /// A label for a request whose inference failed (no prediction to score).
    ForFailedRequest,
    /// A label older than its prediction by more than `early_label_ttl`: in event time its
    /// wait ended before the prediction existed. Counted as unmatched.
    Unmatched,
    /// A label and prediction whose times are further apart than the prediction's TTL,
    /// met before the watermark expired either: the prediction is unlabeled and the label
    /// unmatched (counted when its own wait ends, or at once if it came first).
    AfterTtl(Unlabeled<P>),
}

/// Counters of the join, cumulative.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinStats {
    pub matched: u64,
    pub duplicate_predictions: u64,
    pub duplicate_labels: u64,
    pub unlabeled: u64,
    pub unmatched_labels: u64,
    pub labels_for_failed: u64,
    pub evicted_predictions: u64,
    pub evicted_labels: u64,
    pub evicted_guards: u64,
}

/// Expired entries handed back by [`JoinState::expire_before`].
#[derive(Debug)]
pub struct Expired<P> {
    pub model: u32,
    /// The source the prediction was read from.
    pub origin: u32,
    pub unlabeled: Unlabeled<P>,
}

/// An entry leaving with the partition it was read from ([`JoinState::copy_origins`]),
/// for another join state to hold ([`JoinState::put_moved`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Moved<P, L> {
    pub model: u32,
    pub key: Box<str>,
    entry: Entry<P, L>,
}

impl<P, L> Moved<P, L> {
    /// The same entry with its payloads and origin translated (e.g. interned ids to names
    /// and back).
    pub fn map<P2, L2>(
        self,
        prediction: impl FnOnce(u32, P) -> P2,
        label: impl FnOnce(u32, L) -> L2,
        origin: impl FnOnce(u32) -> u32,
    ) -> Moved<P2, L2> {
        let model = self.model;
        let entry = match self.entry {
            Entry::Prediction {
                payload,
                origin: o,
                time,
                deadline,
                seq,
            } => Entry::Prediction {
                payload: prediction(model, payload),
                origin: origin(o),
                time,
                deadline,
                seq,
            },
            Entry::Label {
                payload,
                origin: o,
                time,
                deadline,
                seq,
            } => Entry::Label {
                payload: label(model, payload),
                origin: origin(o),
                time,
                deadline,
                seq,
            },
            Entry::Guard {
                failed,
                deadline,
                seq,
                origin: o,
            } => Entry::Guard {
                failed,
                deadline,
                seq,
                origin: origin(o),
            },
        };
        Moved {
            model,
            key: self.key,
            entry,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinState<P, L> {
    max_pending: usize,
    /// Per model: request_id → entry.
    entries: Vec<HashMap<Box<str>, Entry<P, L>>>,
    /// (deadline, seq) → (model, request_id); derived from `entries`, rebuilt on restore.
    #[serde(skip)]
    index: BTreeMap<(Millis, u64), (u32, Box<str>)>,
    next_seq: u64,
    pub stats: JoinStats,
}

impl<P: Clone, L: Clone> JoinState<P, L> {
    pub fn new(models: usize, max_pending: usize) -> Self {
        JoinState {
            max_pending: max_pending.max(1),
            entries: (0..models).map(|_| HashMap::new()).collect(),
            index: BTreeMap::new(),
            next_seq: 0,
            stats: JoinStats::default(),
        }
    }

    /// Sets the bound on entries held, evicting at once if it shrank.
    pub fn set_capacity(&mut self, max_pending: usize) {
        self.max_pending = max_pending.max(1);
        self.enforce_bound();
    }

    /// Rebuilds the expiry index after deserialization.
    pub fn rebuild_index(&mut self) {
        self.index.clear();
        for (m, map) in self.entries.iter().enumerate() {
            for (k, e) in map {
                self.index.insert(e.slot(), (m as u32, k.clone()));
            }
        }
    }

    /// A copy of every entry read from one of `origins`, in expiry order.
    pub fn copy_origins(&self, origins: &[u32]) -> Vec<Moved<P, L>> {
        self.index
            .values()
            .filter_map(|(model, key)| {
                let entry = self.entries.get(*model as usize)?.get(key)?;
                origins.contains(&entry.origin()).then(|| Moved {
                    model: *model,
                    key: key.clone(),
                    entry: entry.clone(),
                })
            })
            .collect()
    }

    /// Removes, without counting anything, the entries read from `origin` whose deadline
    /// is before `time` (another join state already expired and counted them).
    pub fn drop_before(&mut self, origin: u32, time: Millis) {
        let slots: Vec<(Millis, u64)> = self
            .index
            .range(..(time, 0))
            .filter(|(_, (m, k))| {
                self.entries
                    .get(*m as usize)
                    .and_then(|map| map.get(k))
                    .is_some_and(|e| e.origin() == origin)
            })
            .map(|(slot, _)| *slot)
            .collect();
        for slot in slots {
            if let Some((model, key)) = self.index.remove(&slot) {
                if let Some(map) = self.entries.get_mut(model as usize) {
                    map.remove(&key);
                }
            }
        }
    }

    /// Holds entries another join state gave up, in their expiry order, as if they had
    /// been read here (the bound applies).
    pub fn put_moved(&mut self, moved: Vec<Moved<P, L>>) {
        for Moved {
            model,
            key,
            mut entry,
        } in moved
        {
            let seq = self.seq();
            match &mut entry {
                Entry::Prediction { seq: s, .. }
                | Entry::Label { seq: s, .. }
                | Entry::Guard { seq: s, .. } => *s = seq,
            }
            // Keyed by request_id, a request's events share a partition: nothing here
            // holds the key yet, but a stale entry must not keep its expiry slot.
            self.take(model, &key);
            self.put(model, &key, entry);
        }
    }

    /// Entries held: waiting predictions and labels, and duplicate guards.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Predictions waiting for a label.
    pub fn pending_predictions(&self) -> usize {
        self.entries
            .iter()
            .flat_map(|m| m.values())
            .filter(|e| matches!(e, Entry::Prediction { .. }))
            .count()
    }

    /// The earliest deadline held, when something waits.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.index.keys().next().map(|(d, _)| *d)
    }

    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    fn put(&mut self, model: u32, key: &str, entry: Entry<P, L>) {
        let slot = entry.slot();
        let key: Box<str> = key.into();
        self.index.insert(slot, (model, key.clone()));
        if let Some(map) = self.entries.get_mut(model as usize) {
            map.insert(key, entry);
        }
        self.enforce_bound();
    }

    fn enforce_bound(&mut self) {
        while self.index.len() > self.max_pending {
            let Some((_, (model, key))) = self.index.pop_first() else {
                break;
            };
            match self
                .entries
                .get_mut(model as usize)
                .and_then(|m| m.remove(&key))
            {
                Some(Entry::Prediction { .. }) => self.stats.evicted_predictions += 1,
                Some(Entry::Label { .. }) => self.stats.evicted_labels += 1,
                Some(Entry::Guard { .. }) => self.stats.evicted_guards += 1,
                None => {}
            }
            let evicted = self.stats.evicted_predictions
                + self.stats.evicted_labels
                + self.stats.evicted_guards;
            // Logged at 1, 2, 4, 8, … evictions: visible at once, bounded in volume.
            if evicted.is_power_of_two() {
                tracing::warn!(
                    evicted,
                    max_pending = self.max_pending,
                    "join state full: evicting the entry nearest its deadline (raise defaults.max_pending)"
                );
            }
        }
    }

    /// Removes the entry for `key`, with its place in the expiry index.
    fn take(&mut self, model: u32, key: &str) -> Option<Entry<P, L>> {
        let old = self.entries.get_mut(model as usize)?.remove(key)?;
        self.index.remove(&old.slot());
        Some(old)
    }

    fn replace_with_guard(
        &mut self,
        model: u32,
        key: &str,
        failed: bool,
        deadline: Millis,
        origin: u32,
    ) {
        self.take(model, key);
        let seq = self.seq();
        self.put(
            model,
            key,
            Entry::Guard {
                failed,
                deadline,
                seq,
                origin,
            },
        );
    }

    /// A prediction arrives. `ttl` is the model's `label_ttl`.
    pub fn insert_prediction(
        &mut self,
        model: u32,
        key: &str,
        time: Millis,
        ttl: Millis,
        payload: P,
        origin: u32,
    ) -> Joined<P, L> {
        let deadline = time.saturating_add(ttl);
        let existing = self
            .entries
            .get(model as usize)
            .and_then(|m| m.get(key))
            .cloned();
        match existing {
            None => {
                let seq = self.seq();
                self.put(
                    model,
                    key,
                    Entry::Prediction {
                        payload,
                        origin,
                        time,
                        deadline,
                        seq,
                    },
                );
                Joined::Pending
            }
            Some(Entry::Label {
                payload: label,
                time: label_time,
                deadline: label_deadline,
                ..
            }) => {
                if label_time > deadline {
                    // The label came after this prediction's TTL: in event time the
                    // prediction waited in vain and the label finds no prediction. A
                    // guard keeps later copies of either from counting again.
                    self.stats.unlabeled += 1;
                    self.stats.unmatched_labels += 1;
                    self.replace_with_guard(
                        model,
                        key,
                        false,
                        deadline.max(label_deadline),
                        origin,
                    );
                    Joined::AfterTtl(Unlabeled {
                        prediction: payload,
                        prediction_time: time,
                        deadline,
                    })
                } else if time <= label_deadline {
                    self.replace_with_guard(model, key, false, deadline, origin);
                    self.stats.matched += 1;
                    Joined::Matched(Match {
                        prediction: payload,
                        prediction_time: time,
                        label,
                        label_time,
                    })
                } else {
                    // The early label's wait is over: it is unmatched, the prediction waits anew.
                    self.stats.unmatched_labels += 1;
                    self.take(model, key);
                    let seq = self.seq();
                    self.put(
                        model,
                        key,
                        Entry::Prediction {
                            payload,
                            origin,
                            time,
                            deadline,
                            seq,
                        },
                    );
                    Joined::Pending
                }
            }
            Some(_) => {
                self.stats.duplicate_predictions += 1;
                Joined::Duplicate
            }
        }
    }

    /// An inference that failed (no prediction): guards against duplicates and explains a
    /// label that may still arrive for it.
    pub fn insert_failed(
        &mut self,
        model: u32,
        key: &str,
        time: Millis,
        ttl: Millis,
        origin: u32,
    ) -> Joined<P, L> {
        let existing = self
            .entries
            .get(model as usize)
            .and_then(|m| m.get(key))
            .cloned();
        match existing {
            None => {
                self.replace_with_guard(model, key, true, time.saturating_add(ttl), origin);
                Joined::Pending
            }
            Some(Entry::Label { .. }) => {
                self.stats.labels_for_failed += 1;
                self.replace_with_guard(model, key, true, time.saturating_add(ttl), origin);
                Joined::ForFailedRequest
            }
            Some(_) => {
                self.stats.duplicate_predictions += 1;
                Joined::Duplicate
            }
        }
    }

    /// A label arrives. `early_ttl` is the model's `early_label_ttl`.
    pub fn insert_label(
        &mut self,
        model: u32,
        key: &str,
        time: Millis,
        early_ttl: Millis,
        payload: L,
        origin: u32,
    ) -> Joined<P, L> {
        let existing = self
            .entries
            .get(model as usize)
            .and_then(|m| m.get(key))
            .cloned();
        match existing {
            Some(Entry::Prediction {
                payload: prediction,
                time: prediction_time,
                deadline,
                ..
            }) => {
                if prediction_time > time.saturating_add(early_ttl) {
                    // In event time this label's wait ended before its prediction existed.
                    self.stats.unmatched_labels += 1;
                    Joined::Unmatched
                } else if time <= deadline {
                    self.replace_with_guard(model, key, false, deadline, origin);
                    self.stats.matched += 1;
                    Joined::Matched(Match {
                        prediction,
                        prediction_time,
                        label: payload,
                        label_time: time,
                    })
                } else {
                    self.take(model, key);
                    self.stats.unlabeled += 1;
                    let seq = self.seq();
                    let label_deadline = time.saturating_add(early_ttl);
                    self.put(
                        model,
                        key,
                        Entry::Label {
                            payload,
                            origin,
                            time,
                            deadline: label_deadline,
                            seq,
                        },
                    );
                    Joined::AfterTtl(Unlabeled {
                        prediction,
                        prediction_time,
                        deadline,
                    })
                }
            }
            None => {
                let seq = self.seq();
                let deadline = time.saturating_add(early_ttl);
                self.put(
                    model,
                    key,
                    Entry::Label {
                        payload,
                        origin,
                        time,
                        deadline,
                        seq,
                    },
                );
                Joined::Pending
            }
            Some(Entry::Guard { failed: true, .. }) => {
                self.stats.labels_for_failed += 1;
                Joined::ForFailedRequest
            }
            Some(Entry::Label { .. }) | Some(Entry::Guard { failed: false, .. }) => {
                self.stats.duplicate_labels += 1;
                Joined::Duplicate
            }
        }
    }

    /// Removes every entry whose deadline is before `time`, returning the predictions that
    /// expired unlabeled in deadline order.
    pub fn expire_before(&mut self, time: Millis) -> Vec<Expired<P>> {
        let mut out = Vec::new();
        while let Some(entry) = self.index.first_entry() {
            if entry.key().0 >= time {
                break;
            }
            let (model, key) = entry.remove();
            match self
                .entries
                .get_mut(model as usize)
                .and_then(|m| m.remove(&key))
            {
                Some(Entry::Prediction {
                    payload,
                    origin,
                    time,
                    deadline,
                    ..
                }) => {
                    self.stats.unlabeled += 1;
                    out.push(Expired {
                        model,
                        origin,
                        unlabeled: Unlabeled {
                            prediction: payload,
                            prediction_time: time,
                            deadline,
                        },
                    });
                }
                Some(Entry::Label { .. }) => self.stats.unmatched_labels += 1,
                Some(Entry::Guard { .. }) | None => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type J = JoinState<&'static str, &'static str>;

    #[test]
    fn label_after_prediction_and_before() {
        let mut j = J::new(1, 100);
        assert_eq!(
            j.insert_prediction(0, "a", 1_000, 10_000, "p", 0),
            Joined::Pending
        );
        let m = j.insert_label(0, "a", 5_000, 1_000, "l", 0);
        assert!(matches!(
            m,
            Joined::Matched(Match {
                prediction: "p",
                label: "l",
                ..
            })
        ));
        assert_eq!(
            j.insert_label(0, "a", 6_000, 1_000, "l2", 0),
            Joined::Duplicate
        );
        assert_eq!(
            j.insert_prediction(0, "a", 1_000, 10_000, "p2", 0),
            Joined::Duplicate
        );
        // early label
        assert_eq!(
            j.insert_label(0, "b", 2_000, 1_000, "l", 0),
            Joined::Pending
        );
        assert!(matches!(
            j.insert_prediction(0, "b", 2_500, 10_000, "p", 0),
            Joined::Matched(_)
        ));
        assert_eq!(j.stats.matched, 2);
        assert_eq!(j.stats.duplicate_labels, 1);
        assert_eq!(j.stats.duplicate_predictions, 1);
    }

    #[test]
    fn ttl_expiry_and_eviction() {
        let mut j = J::new(2, 3);
        j.insert_prediction(0, "a", 0, 100, "pa", 0);
        j.insert_prediction(1, "a", 10, 100, "pb", 0); // same id, other model: separate
        j.insert_label(0, "x", 20, 50, "lx", 0);
        let expired = j.expire_before(101);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].unlabeled.deadline, 100);
        assert_eq!(j.stats.unmatched_labels, 1, "x waited until 70");
        j.insert_prediction(0, "c", 200, 100, "pc", 0);
        j.insert_prediction(0, "d", 201, 100, "pd", 0);
        j.insert_prediction(0, "e", 202, 100, "pe", 0);
        j.insert_prediction(0, "f", 203, 100, "pf", 0);
        assert_eq!(j.len(), 3);
        assert_eq!(
            j.stats.evicted_predictions, 2,
            "pb and pc, nearest their deadlines"
        );
        // a label after its prediction's TTL but before the watermark expired it
        let late = j.insert_label(0, "d", 400, 50, "ld", 0);
        assert!(matches!(
            late,
            Joined::AfterTtl(Unlabeled { deadline: 301, .. })
        ));
    }
}
