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

/// Bucket → count, in bucket order: a vector of (bucket, count) pairs sorted by bucket,
/// found by binary search. An interval holds tens to a few thousand buckets; a sorted
/// vector records and merges them several times faster than an ordered map's nodes. A
/// bucket whose count returns to zero in `unmerge` is removed.
#[derive(Debug, Clone, PartialEq)]
pub struct SparseCounts<K: Ord, V> {
    pairs: Vec<(K, V)>,
}

impl<K: Ord, V> Default for SparseCounts<K, V> {
    fn default() -> Self {
        SparseCounts { pairs: Vec::new() }
    }
}

impl<K: Ord + Copy, V: Count> SparseCounts<K, V> {
    fn position(&self, key: &K) -> Result<usize, usize> {
        self.pairs.binary_search_by(|(k, _)| k.cmp(key))
    }

    pub fn add(&mut self, key: K, count: V) {
        match self.position(&key) {
            Ok(i) => self.pairs[i].1.add(count),
            Err(i) => {
                let mut v = V::default();
                v.add(count);
                self.pairs.insert(i, (key, v));
            }
        }
    }

    pub fn merge(&mut self, other: &Self) {
        // A few buckets into many: insert each. Otherwise one pass over both.
        if other.pairs.len().saturating_mul(8) < self.pairs.len() {
            for (k, v) in &other.pairs {
                self.add(*k, *v);
            }
            return;
        }
        let mut merged = Vec::with_capacity(self.pairs.len() + other.pairs.len());
        let (mut a, mut b) = (self.pairs.iter().peekable(), other.pairs.iter().peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some(_), None) => a.next().copied(),
                (None, Some(_)) => b.next().map(|&(k, v)| {
                    let mut c = V::default();
                    c.add(v);
                    (k, c)
                }),
                (Some(x), Some(y)) => match x.0.cmp(&y.0) {
                    std::cmp::Ordering::Less => a.next().copied(),
                    std::cmp::Ordering::Greater => b.next().map(|&(k, v)| {
                        let mut c = V::default();
                        c.add(v);
                        (k, c)
                    }),
                    std::cmp::Ordering::Equal => {
                        let (k, mut c) = **x;
                        c.add(y.1);
                        a.next();
                        b.next();
                        Some((k, c))
                    }
                },
            };
            merged.extend(next);
        }
        self.pairs = merged;
    }

    pub fn unmerge(&mut self, other: &Self) {
        let mut emptied = false;
        for (k, v) in &other.pairs {
            if let Ok(i) = self.position(k) {
                let e = &mut self.pairs[i].1;
                e.sub(*v);
                emptied |= *e == V::default();
            }
        }
        if emptied {
            self.pairs.retain(|(_, v)| *v != V::default());
        }
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, &V)> {
        self.pairs.iter().map(|(k, v)| (k, v))
    }

    /// The buckets whose keys are in `keys`, in order.
    pub fn range(
        &self,
        keys: impl std::ops::RangeBounds<K>,
    ) -> impl DoubleEndedIterator<Item = (&K, &V)> {
        use std::ops::Bound;
        let start = match keys.start_bound() {
            Bound::Included(k) => self.pairs.partition_point(|(x, _)| x < k),
            Bound::Excluded(k) => self.pairs.partition_point(|(x, _)| x <= k),
            Bound::Unbounded => 0,
        };
        let end = match keys.end_bound() {
            Bound::Included(k) => self.pairs.partition_point(|(x, _)| x <= k),
            Bound::Excluded(k) => self.pairs.partition_point(|(x, _)| x < k),
            Bound::Unbounded => self.pairs.len(),
        };
        self.pairs
            .get(start..end.max(start))
            .unwrap_or_default()
            .iter()
            .map(|(k, v)| (k, v))
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

impl<K: Ord + Serialize, V: Serialize> Serialize for SparseCounts<K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.pairs.iter())
    }
}

impl<'de, K: Ord + Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de> for SparseCounts<K, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let pairs: Vec<(K, V)> = Vec::deserialize(d)?;
        // Stored in bucket order; a pair repeated or out of order is taken as a map would.
        let map: BTreeMap<K, V> = pairs.into_iter().collect();
        Ok(SparseCounts {
            pairs: map.into_iter().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against an ordered map doing the same adds, merges and unmerges.
    #[test]
    fn behaves_as_an_ordered_map() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut intervals: Vec<(SparseCounts<u64, u64>, BTreeMap<u64, u64>)> = Vec::new();
        for n in 0..40 {
            let (mut s, mut m) = (SparseCounts::default(), BTreeMap::new());
            let spread = [4, 60, 2_000][n % 3];
            for _ in 0..(next() % 300) {
                let k = next() % spread;
                s.add(k, 1);
                *m.entry(k).or_insert(0) += 1;
            }
            intervals.push((s, m));
        }
        let (mut agg, mut want) = (SparseCounts::<u64, u64>::default(), BTreeMap::new());
        for (i, (s, m)) in intervals.iter().enumerate() {
            agg.merge(s);
            for (k, v) in m {
                *want.entry(*k).or_insert(0) += v;
            }
            if i >= 5 {
                let (old, old_m) = &intervals[i - 5];
                agg.unmerge(old);
                for (k, v) in old_m {
                    let e = want.get_mut(k).expect("merged before");
                    *e -= v;
                    if *e == 0 {
                        want.remove(k);
                    }
                }
            }
            let got: Vec<(u64, u64)> = agg.iter().map(|(k, v)| (*k, *v)).collect();
            let expect: Vec<(u64, u64)> = want.iter().map(|(k, v)| (*k, *v)).collect();
            assert_eq!(got, expect, "after interval {i}");
            let got: Vec<u64> = agg.range(10..=500).map(|(k, _)| *k).collect();
            let expect: Vec<u64> = want.range(10..=500).map(|(k, _)| *k).collect();
            assert_eq!(got, expect);
            let got: Vec<u64> = agg.range(..7).map(|(k, _)| *k).collect();
            let expect: Vec<u64> = want.range(..7).map(|(k, _)| *k).collect();
            assert_eq!(got, expect);
        }
    }
}
