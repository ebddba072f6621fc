//! Sparse counters keyed by bucket: the storage shared by the score histogram, the latency
//! histograms and the multiclass confusion matrix. An empty bucket costs nothing, so an
//! interval with few events stays small however fine the buckets are.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A count that can be added and removed exactly.
pub trait Count: Copy + Default + PartialEq {
    fn add(&mut self, other: Self);
    fn sub(&mut self, other: Self);
}

impl Count for u64 {
    fn add(&mut self, other: Self) {
        *self += other;
    }
    fn sub(&mut self, other: Self) {
        *self -= other;
    }
}

impl Count for [u64; 2] {
    fn add(&mut self, other: Self) {
        self[0] += other[0];
        self[1] += other[1];
    }
    fn sub(&mut self, other: Self) {
        self[0] -= other[0];
        self[1] -= other[1];
    }
}

/// Bucket → count, in bucket order. Buckets whose count returns to zero are removed.
#[derive(Debug, Clone, PartialEq)]
pub struct SparseCounts<K: Ord, V> {
    map: BTreeMap<K, V>,
}

impl<K: Ord, V> Default for SparseCounts<K, V> {
    fn default() -> Self {
        SparseCounts {
            map: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Copy, V: Count> SparseCounts<K, V> {
    pub fn add(&mut self, key: K, count: V) {
        self.map.entry(key).or_default().add(count);
    }

    pub fn merge(&mut self, other: &Self) {
        for (k, v) in &other.map {
            self.add(*k, *v);
        }
    }

    pub fn unmerge(&mut self, other: &Self) {
        for (k, v) in &other.map {
            if let Some(e) = self.map.get_mut(k) {
                e.sub(*v);
                if *e == V::default() {
                    self.map.remove(k);
                }
            }
        }
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, &V)> {
        self.map.iter()
    }

    /// The buckets whose keys are in `keys`, in order.
    pub fn range(
        &self,
        keys: impl std::ops::RangeBounds<K>,
    ) -> impl DoubleEndedIterator<Item = (&K, &V)> {
        self.map.range(keys)
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl<K: Ord + Serialize, V: Serialize> Serialize for SparseCounts<K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.map.iter())
    }
}

impl<'de, K: Ord + Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de> for SparseCounts<K, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let pairs: Vec<(K, V)> = Vec::deserialize(d)?;
        Ok(SparseCounts {
            map: pairs.into_iter().collect(),
        })
    }
}
