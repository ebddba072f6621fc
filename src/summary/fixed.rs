//! Fixed-point sums: floating-point values summed exactly, so that merging and unmerging
//! summaries in any order gives bit-identical results.

use serde::{Deserialize, Serialize};

/// Fractional bits kept: a resolution of 2^-32 (about 2.3e-10) per added value.
const SCALE: f64 = 4_294_967_296.0;

/// A sum of f64 values in 96.32 fixed point. Values are clamped to ±1e15.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixedSum(i128);

impl FixedSum {
    /// The sum of `x` alone.
    pub fn of(x: f64) -> FixedSum {
        FixedSum(Self::quantize(x))
    }

    pub fn add(&mut self, x: f64) {
        self.0 += Self::quantize(x);
    }

    pub fn merge(&mut self, other: FixedSum) {
        self.0 += other.0;
    }

    pub fn unmerge(&mut self, other: FixedSum) {
        self.0 -= other.0;
    }

    pub fn value(self) -> f64 {
        self.0 as f64 / SCALE
    }

    fn quantize(x: f64) -> i128 {
        let x = if x.is_nan() {
            0.0
        } else {
            x.clamp(-1e15, 1e15)
        };
        (x * SCALE).round() as i128
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_under_reordering() {
        let xs = [0.1, 1e9, -3.7, 2.5e-7, 42.0];
        let mut a = FixedSum::default();
        xs.iter().for_each(|&x| a.add(x));
        let mut b = FixedSum::default();
        xs.iter().rev().for_each(|&x| b.add(x));
        assert_eq!(a, b);
        let exact: f64 = xs.iter().sum();
        assert!((a.value() - exact).abs() < 1e-8);
    }
}
