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

/// New buckets wait in a short sorted tail before they join the main run: a bucket
/// inserted into the run moves every pair after it, so an interval filling up with new
/// buckets would move its pairs once per bucket; the tail moves them once per `TAIL`.
const TAIL: usize = 32;

/// Bucket → count, in bucket order: a vector of (bucket, count) pairs sorted by bucket,
/// found by binary search, and a tail of up to [`TAIL`] new buckets, sorted too, whose
/// keys the main run does not hold. An interval holds tens to a few thousand buckets; a
/// sorted vector records and merges them several times faster than an ordered map's
/// nodes. A bucket whose count returns to zero in `unmerge` is removed.
#[derive(Debug, Clone)]
pub struct SparseCounts<K: Ord, V> {
    pairs: Vec<(K, V)>,
    tail: Vec<(K, V)>,
}

impl<K: Ord, V> Default for SparseCounts<K, V> {
    fn default() -> Self {
        SparseCounts {
            pairs: Vec::new(),
            tail: Vec::new(),
        }
    }
}

impl<K: Ord + Copy, V: Count> PartialEq for SparseCounts<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl<K: Ord + Copy, V: Count> SparseCounts<K, V> {
    fn position(&self, key: &K) -> Result<usize, usize> {
        self.pairs.binary_search_by(|(k, _)| k.cmp(key))
    }

    pub fn add(&mut self, key: K, count: V) {
        if let Ok(i) = self.position(&key) {
            self.pairs[i].1.add(count);
            return;
        }
        match self.tail.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(i) => self.tail[i].1.add(count),
            Err(i) => {
                let mut v = V::default();
                v.add(count);
                self.tail.insert(i, (key, v));
                if self.tail.len() >= TAIL {
                    self.settle();
                }
            }
        }
    }

    /// Moves the tail into the main run: one backward merge pass, no allocation once the
    /// run has grown.
    fn settle(&mut self) {
        if self.tail.is_empty() {
            return;
        }
        let n = self.pairs.len();
        self.pairs.extend_from_slice(&self.tail);
        let (mut i, mut j, mut w) = (n, self.tail.len(), self.pairs.len());
        while j > 0 {
            if i > 0 && self.pairs[i - 1].0 > self.tail[j - 1].0 {
                self.pairs[w - 1] = self.pairs[i - 1];
                i -= 1;
            } else {
                self.pairs[w - 1] = self.tail[j - 1];
                j -= 1;
            }
            w -= 1;
        }
        self.tail.clear();
    }

    pub fn merge(&mut self, other: &Self) {
        self.settle();
        // A few buckets into many: insert each. Otherwise one pass over both.
        if other.len().saturating_mul(8) < self.pairs.len() {
            for (k, v) in other.iter() {
                self.add(*k, *v);
            }
            return;
        }
        let mut merged = Vec::with_capacity(self.pairs.len() + other.len());
        let (mut a, mut b) = (self.pairs.iter().peekable(), other.iter().peekable());
        let fresh = |k: K, v: V| {
            let mut c = V::default();
            c.add(v);
            (k, c)
        };
        loop {
            let next = match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some(_), None) => a.next().copied(),
                (None, Some(_)) => b.next().map(|(k, v)| fresh(*k, *v)),
                (Some(x), Some(y)) => match x.0.cmp(y.0) {
                    std::cmp::Ordering::Less => a.next().copied(),
                    std::cmp::Ordering::Greater => b.next().map(|(k, v)| fresh(*k, *v)),
                    std::cmp::Ordering::Equal => {
                        let (k, mut c) = **x;
                        c.add(*y.1);
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
        self.settle();
        let mut emptied = false;
        for (k, v) in other.iter() {
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
        Interleaved {
            a: &self.pairs,
            b: &self.tail,
        }
    }

    /// The buckets whose keys are in `keys`, in order.
    pub fn range(
        &self,
        keys: impl std::ops::RangeBounds<K>,
    ) -> impl DoubleEndedIterator<Item = (&K, &V)> {
        Interleaved {
            a: within(&self.pairs, &keys),
            b: within(&self.tail, &keys),
        }
    }

    /// Buckets held.
    pub fn len(&self) -> usize {
        self.pairs.len() + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty() && self.tail.is_empty()
    }
}

/// The pairs of sorted `pairs` whose keys are in `keys`.
fn within<'a, K: Ord, V>(
    pairs: &'a [(K, V)],
    keys: &impl std::ops::RangeBounds<K>,
) -> &'a [(K, V)] {
    use std::ops::Bound;
    let start = match keys.start_bound() {
        Bound::Included(k) => pairs.partition_point(|(x, _)| x < k),
        Bound::Excluded(k) => pairs.partition_point(|(x, _)| x <= k),
        Bound::Unbounded => 0,
    };
    let end = match keys.end_bound() {
        Bound::Included(k) => pairs.partition_point(|(x, _)| x <= k),
        Bound::Excluded(k) => pairs.partition_point(|(x, _)| x < k),
        Bound::Unbounded => pairs.len(),
    };
    pairs.get(start..end.max(start)).unwrap_or_default()
}

/// Two sorted runs with no key in common, read as one in key order, from either end.
struct Interleaved<'a, K, V> {
    a: &'a [(K, V)],
    b: &'a [(K, V)],
}

impl<'a, K: Ord, V> Iterator for Interleaved<'a, K, V> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        let take_a = match (self.a.first(), self.b.first()) {
            (None, None) => return None,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(x), Some(y)) => x.0 < y.0,
        };
        let run = if take_a { &mut self.a } else { &mut self.b };
        let (first, rest) = run.split_first()?;
        *run = rest;
        Some((&first.0, &first.1))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.a.len() + self.b.len();
        (n, Some(n))
    }
}

impl<K: Ord, V> DoubleEndedIterator for Interleaved<'_, K, V> {
    fn next_back(&mut self) -> Option<Self::Item> {
        let take_a = match (self.a.last(), self.b.last()) {
            (None, None) => return None,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(x), Some(y)) => x.0 > y.0,
        };
        let run = if take_a { &mut self.a } else { &mut self.b };
        let (last, rest) = run.split_last()?;
        *run = rest;
        Some((&last.0, &last.1))
    }
}

impl<K: Ord + Copy + Serialize, V: Count + Serialize> Serialize for SparseCounts<K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de, K: Ord + Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de> for SparseCounts<K, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let pairs: Vec<(K, V)> = Vec::deserialize(d)?;
        // Stored in bucket order; a pair repeated or out of order is taken as a map would.
        let map: BTreeMap<K, V> = pairs.into_iter().collect();
        Ok(SparseCounts {
            pairs: map.into_iter().collect(),
            tail: Vec::new(),
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
            // Read with new buckets still in the tail, from both ends and by range.
            let got: Vec<(u64, u64)> = s.iter().map(|(k, v)| (*k, *v)).collect();
            let expect: Vec<(u64, u64)> = m.iter().map(|(k, v)| (*k, *v)).collect();
            assert_eq!(got, expect, "interval {n}");
            let got: Vec<u64> = s.iter().rev().map(|(k, _)| *k).collect();
            let expect: Vec<u64> = m.keys().rev().copied().collect();
            assert_eq!(got, expect, "interval {n} backwards");
            let got: Vec<u64> = s.range(3..=40).rev().map(|(k, _)| *k).collect();
            let expect: Vec<u64> = m.range(3..=40).rev().map(|(k, _)| *k).collect();
            assert_eq!(got, expect, "interval {n}, a range backwards");
            assert_eq!(s.len(), m.len());
            // Equal whatever part of it is in the tail; stored as the map's pairs.
            let json = serde_json::to_string(&s).expect("serialize");
            let expect: Vec<(u64, u64)> = m.iter().map(|(k, v)| (*k, *v)).collect();
            assert_eq!(json, serde_json::to_string(&expect).expect("serialize"));
            let back: SparseCounts<u64, u64> = serde_json::from_str(&json).expect("deserialize");
            assert!(back.tail.is_empty());
            assert_eq!(back, s);
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
