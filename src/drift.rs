//! Drift scores between a reference distribution and the current one, over the same bins
//! (SPEC §4): PSI with proportions floored at 1e-4, KS as the largest gap between the
//! cumulative distributions at the bin edges, and the Jensen-Shannon distance in base 2.
//! Inputs are proportions in bin order; pure functions, no state.

/// Proportions below this count as this much in PSI (an empty bin would be infinite).
pub const FLOOR: f64 = 1e-4;

/// Shares of each bin; `None` when there are no counts.
pub fn proportions(counts: &[u64]) -> Option<Vec<f64>> {
    let n: u64 = counts.iter().sum();
    (n > 0).then(|| counts.iter().map(|c| *c as f64 / n as f64).collect())
}

/// Population stability index: Σ (a − e)·ln(a/e).
pub fn psi(expected: &[f64], actual: &[f64]) -> f64 {
    expected
        .iter()
        .zip(actual)
        .map(|(e, a)| {
            let (e, a) = (e.max(FLOOR), a.max(FLOOR));
            (a - e) * (a / e).ln()
        })
        .sum()
}

/// Kolmogorov-Smirnov statistic on binned data: max |CDF_ref − CDF_cur| over the edges.
pub fn ks(expected: &[f64], actual: &[f64]) -> f64 {
    let (mut ce, mut ca, mut worst) = (0.0f64, 0.0f64, 0.0f64);
    for (e, a) in expected.iter().zip(actual) {
        ce += e;
        ca += a;
        worst = worst.max((ce - ca).abs());
    }
    worst
}

/// Jensen-Shannon distance (the square root of the divergence), base 2: 0..1.
pub fn js_distance(expected: &[f64], actual: &[f64]) -> f64 {
    let kl = |p: f64, m: f64| if p > 0.0 { p * (p / m).log2() } else { 0.0 };
    let divergence: f64 = expected
        .iter()
        .zip(actual)
        .map(|(p, q)| {
            let m = (p + q) / 2.0;
            0.5 * kl(*p, m) + 0.5 * kl(*q, m)
        })
        .sum();
    divergence.max(0.0).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_distributions_do_not_drift() {
        let p = [0.1, 0.4, 0.3, 0.2];
        assert_eq!(psi(&p, &p), 0.0);
        assert_eq!(ks(&p, &p), 0.0);
        assert_eq!(js_distance(&p, &p), 0.0);
    }

    #[test]
    fn disjoint_distributions_are_one_apart() {
        assert!((js_distance(&[1.0, 0.0], &[0.0, 1.0]) - 1.0).abs() < 1e-12);
        assert_eq!(ks(&[1.0, 0.0], &[0.0, 1.0]), 1.0);
    }
}
