//! The join of predictions with their delayed labels (SPEC §3), keyed by model and
//! `request_id`.
//!
//! A prediction waits up to `label_ttl` (event time) for its label; a label that arrives
//! first waits up to `early_label_ttl` for its prediction. After a join, or for a failed
//! request, a small guard entry stays until the prediction's deadline so that duplicates
//! are recognised and counted, never double-counted. The total is bounded (the engine
//! allows `max_pending` per input source), and overflow evicts the entry nearest its
//! deadline, counted by kind.
//!
//! Millions of entries wait for days, so the layout is chosen for memory:
//! - a request is known by the 128-bit XXH3 hash of its `request_id` ([`RequestKey`]),
//!   not by the string: 16 bytes whatever the id's length, no allocation per entry. Two
//!   ids collide with probability about n²/2¹²⁹ (1 in 10²⁴ with 10M requests waiting);
//! - entries live in one slab, found through a table of 4-byte slab indexes;
//! - the expiry order is kept in one-second buckets of (slab index, generation) pairs,
//!   sorted when their turn comes; a pair whose slot has been freed or reused since (its
//!   generation moved on) is skipped there, so a removal costs nothing in the index.
//!
//! Entries with the same deadline expire in the order they were put, as a (deadline,
//! sequence) index would give. Time only moves through [`JoinState::expire_before`],
//! called by the engine as the watermark advances.

use std::collections::BTreeMap;

use hashbrown::HashTable;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::time::Millis;

/// A `request_id` as the join keys it: its 128-bit XXH3 hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RequestKey([u64; 2]);

impl RequestKey {
    pub fn of(request_id: &str) -> RequestKey {
        let h = xxhash_rust::xxh3::xxh3_128(request_id.as_bytes());
        RequestKey([(h >> 64) as u64, h as u64])
    }
}

/// Width of an expiry bucket.
const BUCKET_MS: Millis = 1_000;

/// An entry as it is stored and as it moves between join states.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Entry<P, L> {
    /// A prediction waiting for its label.
    Prediction {
        payload: P,
        /// The source (input partition) it was read from: state moves with it.
        origin: u32,
        time: Millis,
        deadline: Millis,
    },
    /// A label waiting for its prediction.
    Label {
        payload: L,
        origin: u32,
        time: Millis,
        deadline: Millis,
    },
    /// A request already joined, or one that failed (no prediction): later copies are
    /// duplicates.
    Guard {
        failed: bool,
        deadline: Millis,
        origin: u32,
    },
}

/// What a slot holds.
#[derive(Debug, Clone)]
enum Kind<P, L> {
    Free,
    Prediction(P),
    Label(L),
    Guard { failed: bool },
}

/// One slab slot.
#[derive(Debug, Clone)]
struct Slot<P, L> {
    key: RequestKey,
    time: Millis,
    deadline: Millis,
    model: u32,
    origin: u32,
    /// Moves on each time the slot is freed: expiry pairs naming an older generation
    /// are stale.
    generation: u32,
    kind: Kind<P, L>,
}

impl<P: Clone, L: Clone> Slot<P, L> {
    fn live(&self) -> bool {
        !matches!(self.kind, Kind::Free)
    }

    fn entry(&self) -> Option<Entry<P, L>> {
        let (origin, time, deadline) = (self.origin, self.time, self.deadline);
        Some(match &self.kind {
            Kind::Free => return None,
            Kind::Prediction(p) => Entry::Prediction {
                payload: p.clone(),
                origin,
                time,
                deadline,
            },
            Kind::Label(l) => Entry::Label {
                payload: l.clone(),
                origin,
                time,
                deadline,
            },
            Kind::Guard { failed } => Entry::Guard {
                failed: *failed,
                deadline,
                origin,
            },
        })
    }
}

/// One slot's place in the expiry order.
#[derive(Debug, Clone, Copy)]
struct Due {
    index: u32,
    /// The slot's generation when it was put: a later one makes this stale.
    generation: u32,
    /// The deadline's millisecond within its bucket: items sort without reading the slab.
    offset: u16,
}

/// The slots whose deadlines fall in one second, in the order they were put.
#[derive(Debug, Clone, Default)]
struct Bucket {
    items: Vec<Due>,
    /// Items before this one are gone.
    cursor: usize,
    /// Whether `items[cursor..]` is in deadline order.
    sorted: bool,
    /// The latest deadline put.
    latest: Millis,
}

impl Bucket {
    fn push(&mut self, index: u32, generation: u32, deadline: Millis) {
        if self.items.is_empty() {
            self.sorted = true;
        } else if deadline < self.latest {
            self.sorted = false;
        }
        self.latest = self.latest.max(deadline);
        self.items.push(Due {
            index,
            generation,
            offset: deadline.rem_euclid(BUCKET_MS) as u16,
        });
    }

    /// Orders the items still ahead by deadline, stably: equal deadlines keep the order
    /// they were put in.
    fn sort(&mut self) {
        if !self.sorted {
            let cursor = self.cursor;
            self.items[cursor..].sort_by_key(|d| d.offset);
            self.sorted = true;
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
    pub key: RequestKey,
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
            } => Entry::Prediction {
                payload: prediction(model, payload),
                origin: origin(o),
                time,
                deadline,
            },
            Entry::Label {
                payload,
                origin: o,
                time,
                deadline,
            } => Entry::Label {
                payload: label(model, payload),
                origin: origin(o),
                time,
                deadline,
            },
            Entry::Guard {
                failed,
                deadline,
                origin: o,
            } => Entry::Guard {
                failed,
                deadline,
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

/// Whether an expiry pair (slab index, generation) still names a live entry: its slot has
/// been neither freed nor reused since the pair was put.
fn is_current<P: Clone, L: Clone>(slots: &[Slot<P, L>], index: u32, generation: u32) -> bool {
    slots
        .get(index as usize)
        .is_some_and(|s| s.generation == generation && s.live())
}

fn table_hash(model: u32, key: RequestKey) -> u64 {
    key.0[1] ^ u64::from(model).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

#[derive(Debug, Clone)]
pub struct JoinState<P, L> {
    max_pending: usize,
    slots: Vec<Slot<P, L>>,
    free: Vec<u32>,
    /// Slab indexes of the live slots, by (model, key).
    table: HashTable<u32>,
    /// Bucket (deadline / BUCKET_MS) → slots, for expiry in deadline order.
    expiry: BTreeMap<Millis, Bucket>,
    len: usize,
    predictions: usize,
    pub stats: JoinStats,
}

impl<P: Clone, L: Clone> JoinState<P, L> {
    pub fn new(max_pending: usize) -> Self {
        JoinState {
            max_pending: max_pending.max(1),
            slots: Vec::new(),
            free: Vec::new(),
            table: HashTable::new(),
            expiry: BTreeMap::new(),
            len: 0,
            predictions: 0,
            stats: JoinStats::default(),
        }
    }

    /// Sets the bound on entries held, evicting at once if it shrank.
    pub fn set_capacity(&mut self, max_pending: usize) {
        self.max_pending = max_pending.max(1);
        self.enforce_bound();
    }

    /// Entries held: waiting predictions and labels, and duplicate guards.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Predictions waiting for a label.
    pub fn pending_predictions(&self) -> usize {
        self.predictions
    }

    /// The live slots in expiry order.
    fn expiry_order(&self) -> Vec<u32> {
        let mut order = Vec::with_capacity(self.len);
        let mut ahead: Vec<Due> = Vec::new();
        for bucket in self.expiry.values() {
            ahead.clear();
            ahead.extend(
                bucket.items[bucket.cursor..]
                    .iter()
                    .filter(|d| self.is_current(d.index, d.generation))
                    .copied(),
            );
            if !bucket.sorted {
                ahead.sort_by_key(|d| d.offset);
            }
            order.extend(ahead.iter().map(|d| d.index));
        }
        order
    }

    fn is_current(&self, index: u32, generation: u32) -> bool {
        is_current(&self.slots, index, generation)
    }

    fn moved(&self, index: u32) -> Option<Moved<P, L>> {
        let slot = self.slots.get(index as usize)?;
        Some(Moved {
            model: slot.model,
            key: slot.key,
            entry: slot.entry()?,
        })
    }

    /// A copy of every entry read from one of `origins`, in expiry order.
    pub fn copy_origins(&self, origins: &[u32]) -> Vec<Moved<P, L>> {
        self.expiry_order()
            .into_iter()
            .filter(|&i| origins.contains(&self.slots[i as usize].origin))
            .filter_map(|i| self.moved(i))
            .collect()
    }

    /// Removes, without counting anything, the entries read from `origin` whose deadline
    /// is before `time` (another join state already expired and counted them).
    pub fn drop_before(&mut self, origin: u32, time: Millis) {
        let mut gone = Vec::new();
        for bucket in self
            .expiry
            .range(..=time.div_euclid(BUCKET_MS))
            .map(|(_, b)| b)
        {
            for d in &bucket.items[bucket.cursor..] {
                if self.is_current(d.index, d.generation) {
                    let s = &self.slots[d.index as usize];
                    if s.origin == origin && s.deadline < time {
                        gone.push(d.index);
                    }
                }
            }
        }
        for i in gone {
            self.remove(i);
        }
    }

    /// Holds entries another join state gave up, in their expiry order, as if they had
    /// been read here (the bound applies).
    pub fn put_moved(&mut self, moved: Vec<Moved<P, L>>) {
        for Moved { model, key, entry } in moved {
            // Keyed by request_id, a request's events share a partition: nothing here
            // holds the key yet, but a stale entry must not stay beside it.
            if let Some(i) = self.find(model, key) {
                self.remove(i);
            }
            let (kind, origin, time, deadline) = match entry {
                Entry::Prediction {
                    payload,
                    origin,
                    time,
                    deadline,
                } => (Kind::Prediction(payload), origin, time, deadline),
                Entry::Label {
                    payload,
                    origin,
                    time,
                    deadline,
                } => (Kind::Label(payload), origin, time, deadline),
                Entry::Guard {
                    failed,
                    deadline,
                    origin,
                } => (Kind::Guard { failed }, origin, deadline, deadline),
            };
            self.put(model, key, time, deadline, origin, kind);
        }
    }

    fn find(&self, model: u32, key: RequestKey) -> Option<u32> {
        let slots = &self.slots;
        self.table
            .find(table_hash(model, key), |&i| {
                slots
                    .get(i as usize)
                    .is_some_and(|s| s.key == key && s.model == model)
            })
            .copied()
    }

    fn put(
        &mut self,
        model: u32,
        key: RequestKey,
        time: Millis,
        deadline: Millis,
        origin: u32,
        kind: Kind<P, L>,
    ) {
        if matches!(kind, Kind::Prediction(_)) {
            self.predictions += 1;
        }
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    key,
                    time,
                    deadline,
                    model,
                    origin,
                    generation: 0,
                    kind: Kind::Free,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.key = key;
        slot.time = time;
        slot.deadline = deadline;
        slot.model = model;
        slot.origin = origin;
        slot.kind = kind;
        let generation = slot.generation;
        let slots = &self.slots;
        self.table
            .insert_unique(table_hash(model, key), index, |&i| {
                slots
                    .get(i as usize)
                    .map_or(0, |s| table_hash(s.model, s.key))
            });
        self.expiry
            .entry(deadline.div_euclid(BUCKET_MS))
            .or_default()
            .push(index, generation, deadline);
        self.len += 1;
        self.enforce_bound();
    }

    /// Frees slot `index`, returning what it held.
    fn remove(&mut self, index: u32) -> Option<(Slot<P, L>, Kind<P, L>)> {
        let slot = self.slots.get_mut(index as usize)?;
        if !slot.live() {
            return None;
        }
        let kind = std::mem::replace(&mut slot.kind, Kind::Free);
        let before = slot.clone();
        slot.generation = slot.generation.wrapping_add(1);
        if let Ok(found) = self
            .table
            .find_entry(table_hash(before.model, before.key), |&i| i == index)
        {
            found.remove();
        }
        self.free.push(index);
        self.len -= 1;
        if matches!(kind, Kind::Prediction(_)) {
            self.predictions -= 1;
        }
        Some((before, kind))
    }

    /// The live slot nearest its deadline.
    fn first(&mut self) -> Option<u32> {
        loop {
            let mut bucket = self.expiry.first_entry()?;
            let b = bucket.get_mut();
            b.sort();
            while let Some(d) = b.items.get(b.cursor) {
                if is_current(&self.slots, d.index, d.generation) {
                    return Some(d.index);
                }
                b.cursor += 1;
            }
            bucket.remove();
        }
    }

    fn enforce_bound(&mut self) {
        while self.len > self.max_pending {
            let Some(index) = self.first() else {
                break;
            };
            match self.remove(index).map(|(_, kind)| kind) {
                Some(Kind::Prediction(_)) => self.stats.evicted_predictions += 1,
                Some(Kind::Label(_)) => self.stats.evicted_labels += 1,
                Some(Kind::Guard { .. }) => self.stats.evicted_guards += 1,
                Some(Kind::Free) | None => {}
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

    /// Turns live slot `index` into a guard until `deadline`, filed in the expiry order
    /// as a new entry (its generation moves on, so its earlier place there is stale): what
    /// freeing the slot and putting a guard for its key would leave, since the slot freed
    /// is the one taken next, without touching the table.
    fn guard_until(&mut self, index: u32, failed: bool, deadline: Millis, origin: u32) {
        let Some(slot) = self.slots.get_mut(index as usize) else {
            return;
        };
        if matches!(slot.kind, Kind::Prediction(_)) {
            self.predictions -= 1;
        }
        slot.generation = slot.generation.wrapping_add(1);
        slot.kind = Kind::Guard { failed };
        slot.time = deadline;
        slot.deadline = deadline;
        slot.origin = origin;
        let generation = slot.generation;
        self.expiry
            .entry(deadline.div_euclid(BUCKET_MS))
            .or_default()
            .push(index, generation, deadline);
    }

    /// Turns the prediction in slot `index` into a guard until its deadline: the slot
    /// keeps its place in the table and in the expiry order, whose deadline is unchanged.
    fn guard_in_place(&mut self, index: u32, origin: u32) {
        let Some(slot) = self.slots.get_mut(index as usize) else {
            return;
        };
        if matches!(slot.kind, Kind::Prediction(_)) {
            self.predictions -= 1;
        }
        slot.kind = Kind::Guard { failed: false };
        slot.time = slot.deadline;
        slot.origin = origin;
    }

    /// The live slot for `key`, and its index.
    fn lookup(&self, model: u32, key: RequestKey) -> Option<(u32, &Slot<P, L>)> {
        let i = self.find(model, key)?;
        Some((i, &self.slots[i as usize]))
    }

    /// A prediction arrives. `ttl` is the model's `label_ttl`.
    pub fn insert_prediction(
        &mut self,
        model: u32,
        key: RequestKey,
        time: Millis,
        ttl: Millis,
        payload: P,
        origin: u32,
    ) -> Joined<P, L> {
        let deadline = time.saturating_add(ttl);
        let Some((index, slot)) = self.lookup(model, key) else {
            self.put(
                model,
                key,
                time,
                deadline,
                origin,
                Kind::Prediction(payload),
            );
            return Joined::Pending;
        };
        let Kind::Label(label) = &slot.kind else {
            self.stats.duplicate_predictions += 1;
            return Joined::Duplicate;
        };
        let (label, label_time, label_deadline) = (label.clone(), slot.time, slot.deadline);
        if label_time > deadline {
            // The label came after this prediction's TTL: in event time the prediction
            // waited in vain and the label finds no prediction. A guard keeps later copies
            // of either from counting again.
            self.stats.unlabeled += 1;
            self.stats.unmatched_labels += 1;
            self.guard_until(index, false, deadline.max(label_deadline), origin);
            Joined::AfterTtl(Unlabeled {
                prediction: payload,
                prediction_time: time,
                deadline,
            })
        } else if time <= label_deadline {
            self.guard_until(index, false, deadline, origin);
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
            self.remove(index);
            self.put(
                model,
                key,
                time,
                deadline,
                origin,
                Kind::Prediction(payload),
            );
            Joined::Pending
        }
    }

    /// An inference that failed (no prediction): guards against duplicates and explains a
    /// label that may still arrive for it.
    pub fn insert_failed(
        &mut self,
        model: u32,
        key: RequestKey,
        time: Millis,
        ttl: Millis,
        origin: u32,
    ) -> Joined<P, L> {
        let deadline = time.saturating_add(ttl);
        match self.lookup(model, key).map(|(i, s)| (i, &s.kind)) {
            None => {
                let guard = Kind::Guard { failed: true };
                self.put(model, key, deadline, deadline, origin, guard);
                Joined::Pending
            }
            Some((index, Kind::Label(_))) => {
                self.stats.labels_for_failed += 1;
                self.guard_until(index, true, deadline, origin);
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
        key: RequestKey,
        time: Millis,
        early_ttl: Millis,
        payload: L,
        origin: u32,
    ) -> Joined<P, L> {
        let label_deadline = time.saturating_add(early_ttl);
        let Some((index, slot)) = self.lookup(model, key) else {
            self.put(
                model,
                key,
                time,
                label_deadline,
                origin,
                Kind::Label(payload),
            );
            return Joined::Pending;
        };
        match &slot.kind {
            Kind::Prediction(prediction) => {
                let (prediction, prediction_time, deadline) =
                    (prediction.clone(), slot.time, slot.deadline);
                if prediction_time > label_deadline {
                    // In event time this label's wait ended before its prediction existed.
                    self.stats.unmatched_labels += 1;
                    Joined::Unmatched
                } else if time <= deadline {
                    self.guard_in_place(index, origin);
                    self.stats.matched += 1;
                    Joined::Matched(Match {
                        prediction,
                        prediction_time,
                        label: payload,
                        label_time: time,
                    })
                } else {
                    self.remove(index);
                    self.stats.unlabeled += 1;
                    self.put(
                        model,
                        key,
                        time,
                        label_deadline,
                        origin,
                        Kind::Label(payload),
                    );
                    Joined::AfterTtl(Unlabeled {
                        prediction,
                        prediction_time,
                        deadline,
                    })
                }
            }
            Kind::Guard { failed: true } => {
                self.stats.labels_for_failed += 1;
                Joined::ForFailedRequest
            }
            Kind::Label(_) | Kind::Guard { failed: false } | Kind::Free => {
                self.stats.duplicate_labels += 1;
                Joined::Duplicate
            }
        }
    }

    /// Removes every entry whose deadline is before `time`, returning the predictions that
    /// expired unlabeled in deadline order.
    pub fn expire_before(&mut self, time: Millis) -> Vec<Expired<P>> {
        let mut out = Vec::new();
        while let Some(index) = self.first() {
            if self.slots[index as usize].deadline >= time {
                break;
            }
            match self.remove(index) {
                Some((slot, Kind::Prediction(payload))) => {
                    self.stats.unlabeled += 1;
                    out.push(Expired {
                        model: slot.model,
                        origin: slot.origin,
                        unlabeled: Unlabeled {
                            prediction: payload,
                            prediction_time: slot.time,
                            deadline: slot.deadline,
                        },
                    });
                }
                Some((_, Kind::Label(_))) => self.stats.unmatched_labels += 1,
                Some((_, Kind::Guard { .. } | Kind::Free)) | None => {}
            }
        }
        out
    }
}

/// The stored form: every entry in expiry order; the slab, table and buckets are rebuilt
/// on restore.
impl<P: Clone + Serialize, L: Clone + Serialize> Serialize for JoinState<P, L> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let order = self.expiry_order();
        let mut st = s.serialize_struct("JoinState", 3)?;
        st.serialize_field("max_pending", &self.max_pending)?;
        st.serialize_field(
            "entries",
            &InOrder {
                state: self,
                order: &order,
            },
        )?;
        st.serialize_field("stats", &self.stats)?;
        st.end()
    }
}

struct InOrder<'a, P, L> {
    state: &'a JoinState<P, L>,
    order: &'a [u32],
}

impl<P: Clone + Serialize, L: Clone + Serialize> Serialize for InOrder<'_, P, L> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.order.len()))?;
        for &i in self.order {
            if let Some(m) = self.state.moved(i) {
                seq.serialize_element(&m)?;
            }
        }
        seq.end()
    }
}

#[derive(Deserialize)]
struct Stored<P, L> {
    max_pending: usize,
    entries: Vec<Moved<P, L>>,
    stats: JoinStats,
}

impl<'de, P: Clone + Deserialize<'de>, L: Clone + Deserialize<'de>> Deserialize<'de>
    for JoinState<P, L>
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let stored = Stored::<P, L>::deserialize(d)?;
        let mut state = JoinState::new(stored.max_pending.max(stored.entries.len()));
        state.put_moved(stored.entries);
        state.max_pending = stored.max_pending.max(1);
        state.stats = stored.stats;
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type J = JoinState<&'static str, &'static str>;

    fn k(id: &str) -> RequestKey {
        RequestKey::of(id)
    }

    #[test]
    fn label_after_prediction_and_before() {
        let mut j = J::new(100);
        assert_eq!(
            j.insert_prediction(0, k("a"), 1_000, 10_000, "p", 0),
            Joined::Pending
        );
        let m = j.insert_label(0, k("a"), 5_000, 1_000, "l", 0);
        assert!(matches!(
            m,
            Joined::Matched(Match {
                prediction: "p",
                label: "l",
                ..
            })
        ));
        assert_eq!(
            j.insert_label(0, k("a"), 6_000, 1_000, "l2", 0),
            Joined::Duplicate
        );
        assert_eq!(
            j.insert_prediction(0, k("a"), 1_000, 10_000, "p2", 0),
            Joined::Duplicate
        );
        // early label
        assert_eq!(
            j.insert_label(0, k("b"), 2_000, 1_000, "l", 0),
            Joined::Pending
        );
        assert!(matches!(
            j.insert_prediction(0, k("b"), 2_500, 10_000, "p", 0),
            Joined::Matched(_)
        ));
        assert_eq!(j.stats.matched, 2);
        assert_eq!(j.stats.duplicate_labels, 1);
        assert_eq!(j.stats.duplicate_predictions, 1);
    }

    #[test]
    fn ttl_expiry_and_eviction() {
        let mut j = J::new(3);
        j.insert_prediction(0, k("a"), 0, 100, "pa", 0);
        j.insert_prediction(1, k("a"), 10, 100, "pb", 0); // same id, other model: separate
        j.insert_label(0, k("x"), 20, 50, "lx", 0);
        let expired = j.expire_before(101);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].unlabeled.deadline, 100);
        assert_eq!(j.stats.unmatched_labels, 1, "x waited until 70");
        j.insert_prediction(0, k("c"), 200, 100, "pc", 0);
        j.insert_prediction(0, k("d"), 201, 100, "pd", 0);
        j.insert_prediction(0, k("e"), 202, 100, "pe", 0);
        j.insert_prediction(0, k("f"), 203, 100, "pf", 0);
        assert_eq!(j.len(), 3);
        assert_eq!(
            j.stats.evicted_predictions, 2,
            "pb and pc, nearest their deadlines"
        );
        // a label after its prediction's TTL but before the watermark expired it
        let late = j.insert_label(0, k("d"), 400, 50, "ld", 0);
        assert!(matches!(
            late,
            Joined::AfterTtl(Unlabeled { deadline: 301, .. })
        ));
    }

    #[test]
    fn a_guard_left_by_an_early_label_lasts_until_the_prediction_deadline() {
        let mut j = J::new(100);
        // The label waits until 3 000; its prediction's guard must last until 12 500.
        assert_eq!(
            j.insert_label(0, k("b"), 2_000, 1_000, "l", 0),
            Joined::Pending
        );
        assert!(matches!(
            j.insert_prediction(0, k("b"), 2_500, 10_000, "p", 1),
            Joined::Matched(_)
        ));
        // Same deadline, put after the guard: it expires after the guard.
        j.insert_prediction(0, k("c"), 2_500, 10_000, "pc", 1);
        assert!(j.expire_before(3_001).is_empty());
        assert_eq!(
            j.len(),
            2,
            "the label's place in the expiry order went with it"
        );
        assert_eq!(
            j.insert_label(0, k("b"), 4_000, 1_000, "l2", 0),
            Joined::Duplicate
        );
        let order: Vec<(RequestKey, u32)> = j
            .copy_origins(&[1])
            .into_iter()
            .map(|m| (m.key, m.model))
            .collect();
        assert_eq!(order, vec![(k("b"), 0), (k("c"), 0)]);
        let expired = j.expire_before(12_501);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].unlabeled.prediction, "pc");
        assert!(j.is_empty());
        assert_eq!(j.stats.duplicate_labels, 1);
    }

    #[test]
    fn a_failed_request_guards_its_labels_before_and_after_it() {
        let mut j = J::new(100);
        // Failed first: its label is for a failed request.
        assert_eq!(
            j.insert_failed(0, k("a"), 1_000, 10_000, 0),
            Joined::Pending
        );
        assert_eq!(
            j.insert_label(0, k("a"), 2_000, 1_000, "l", 0),
            Joined::ForFailedRequest
        );
        // Label first (it waits until 3 000); the failed request's guard lasts until 12 500.
        assert_eq!(
            j.insert_label(0, k("b"), 2_000, 1_000, "l", 0),
            Joined::Pending
        );
        assert_eq!(
            j.insert_failed(0, k("b"), 2_500, 10_000, 0),
            Joined::ForFailedRequest
        );
        assert!(j.expire_before(3_001).is_empty());
        assert_eq!(j.len(), 2);
        assert_eq!(
            j.insert_label(0, k("b"), 4_000, 1_000, "l2", 0),
            Joined::ForFailedRequest
        );
        assert_eq!(
            j.insert_failed(0, k("b"), 2_500, 10_000, 0),
            Joined::Duplicate
        );
        assert_eq!(j.stats.labels_for_failed, 3);
        assert!(j.expire_before(12_501).is_empty());
        assert!(j.is_empty());
        assert_eq!(j.pending_predictions(), 0);
    }
}
