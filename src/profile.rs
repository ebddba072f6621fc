//! Reference profiles (SPEC §4): the baseline distribution of each feature and of the
//! score, against which drift is measured. Built from inference events with
//! `slaguard profile`, or written by hand; validated on load.
//!
//! Numeric value v falls in bin i when `edges[i-1] <= v < edges[i]`; the first and last bins
//! are open-ended. Categorical values not in the profile fall in `__other__`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::event::{FeatureValue, Inference};
use crate::summary::QualityCounts;

/// The category that collects rare (profile) and unseen (live) values.
pub const OTHER: &str = "__other__";
/// Categories rarer than this share go to `__other__` when a profile is built.
const RARE: f64 = 0.01;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub features: BTreeMap<String, FeatureProfile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<FeatureProfile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum FeatureProfile {
    Numeric {
        edges: Vec<f64>,
        proportions: Vec<f64>,
        /// Smallest and largest value observed when the profile was built.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<f64>,
    },
    Categorical {
        proportions: BTreeMap<String, f64>,
    },
}

/// Why a profile cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    #[error("cannot read reference profile {path}: {detail}")]
    Read { path: String, detail: String },
    #[error("reference profile {path} is not a valid profile: {detail}")]
    Parse { path: String, detail: String },
}

/// The bin of a numeric value: the number of edges at or below it.
pub fn bin(edges: &[f64], v: f64) -> usize {
    edges.partition_point(|e| *e <= v)
}

impl FeatureProfile {
    /// Reference proportions of the bins live values are counted in: the profile's, plus
    /// an "unseen" bin (reference share 0) for a categorical profile without `__other__`.
    pub fn drift_bins(&self) -> Vec<f64> {
        let mut e = self.expected();
        if let FeatureProfile::Categorical { proportions } = self {
            if !proportions.contains_key(OTHER) {
                e.push(0.0);
            }
        }
        e
    }

    /// The bin a live value falls in; `None` for a missing or wrongly typed value.
    pub fn bin_of(&self, v: &FeatureValue) -> Option<u32> {
        match (self, v) {
            (FeatureProfile::Numeric { edges, .. }, FeatureValue::Number(x)) if x.is_finite() => {
                Some(bin(edges, *x) as u32)
            }
            (FeatureProfile::Numeric { .. }, _) => None,
            (FeatureProfile::Categorical { proportions }, v) => {
                let text: std::borrow::Cow<'_, str> = match v {
                    FeatureValue::Text(t) => t.as_str().into(),
                    FeatureValue::Bool(b) => b.to_string().into(),
                    FeatureValue::Number(x) => x.to_string().into(),
                    FeatureValue::Missing | FeatureValue::Other => return None,
                };
                let index = proportions
                    .keys()
                    .position(|k| *k == text)
                    .or_else(|| proportions.keys().position(|k| k == OTHER))
                    .unwrap_or(proportions.len());
                Some(index as u32)
            }
        }
    }

    /// Quality counts of one value (`None`: the feature is absent). `range` overrides the
    /// observed min and max of a numeric profile.
    pub fn quality_of(&self, v: Option<&FeatureValue>, range: Option<(f64, f64)>) -> QualityCounts {
        let mut c = QualityCounts {
            units: 1,
            ..QualityCounts::default()
        };
        match (self, v) {
            (_, None | Some(FeatureValue::Missing)) => c.missing = 1,
            (FeatureProfile::Numeric { min, max, .. }, Some(FeatureValue::Number(x))) => {
                let bounds = range.or(min.zip(*max));
                if let Some((lo, hi)) = bounds {
                    c.range_checked = 1;
                    c.out_of_range = u32::from(!(lo..=hi).contains(x));
                }
            }
            (FeatureProfile::Numeric { .. }, Some(_))
            | (FeatureProfile::Categorical { .. }, Some(FeatureValue::Other)) => c.violations = 1,
            (FeatureProfile::Categorical { .. }, Some(_)) => {}
        }
        c
    }

    /// Number of bins (numeric) or categories (categorical).
    pub fn len(&self) -> usize {
        match self {
            FeatureProfile::Numeric { proportions, .. } => proportions.len(),
            FeatureProfile::Categorical { proportions } => proportions.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reference proportions in bin order (categories in name order).
    pub fn expected(&self) -> Vec<f64> {
        match self {
            FeatureProfile::Numeric { proportions, .. } => proportions.clone(),
            FeatureProfile::Categorical { proportions } => proportions.values().copied().collect(),
        }
    }

    pub fn is_numeric(&self) -> bool {
        matches!(self, FeatureProfile::Numeric { .. })
    }

    /// Problems with this profile, each with its path below `path`.
    pub fn problems(&self, path: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let sum: f64 = self.expected().iter().sum();
        if (sum - 1.0).abs() > 1e-6 {
            out.push((
                format!("{path}.proportions"),
                format!("sum to {sum}, not 1 (within 1e-6)"),
            ));
        }
        if self
            .expected()
            .iter()
            .any(|p| !(p.is_finite() && *p >= 0.0))
        {
            out.push((
                format!("{path}.proportions"),
                "must be non-negative numbers".to_string(),
            ));
        }
        if let FeatureProfile::Numeric {
            edges, proportions, ..
        } = self
        {
            let increasing = edges.windows(2).all(|w| w[0] < w[1]);
            if !increasing || edges.iter().any(|e| !e.is_finite()) {
                out.push((
                    format!("{path}.edges"),
                    "must be finite and strictly increasing".to_string(),
                ));
            }
            if proportions.len() != edges.len() + 1 {
                out.push((
                    format!("{path}.proportions"),
                    format!(
                        "{} edges make {} bins, but there are {} proportions",
                        edges.len(),
                        edges.len() + 1,
                        proportions.len()
                    ),
                ));
            }
        }
        if self.is_empty() {
            out.push((format!("{path}.proportions"), "empty".to_string()));
        }
        out
    }
}

impl Profile {
    /// Every problem of the profile, with its JSON path.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .features
            .iter()
            .flat_map(|(name, f)| f.problems(&format!("features.{name}")))
            .collect();
        if let Some(s) = &self.score {
            out.extend(s.problems("score"));
        }
        out
    }

    /// Quality counts of one inference over every feature of the profile; a feature the
    /// profile does not know is a schema violation.
    pub fn quality_all(
        &self,
        features: &[(String, FeatureValue)],
        range: Option<(f64, f64)>,
    ) -> QualityCounts {
        let mut total = QualityCounts::default();
        for (name, profile) in &self.features {
            let v = features.iter().find(|(k, _)| k == name).map(|(_, v)| v);
            let c = profile.quality_of(v, range);
            total.units += c.units;
            total.missing += c.missing;
            total.violations += c.violations;
            total.range_checked += c.range_checked;
            total.out_of_range += c.out_of_range;
        }
        let unknown = features
            .iter()
            .filter(|(k, _)| !self.features.contains_key(k))
            .count() as u32;
        total.units += unknown;
        total.violations += unknown;
        total
    }

    pub fn load(path: &Path) -> Result<Profile, ProfileError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ProfileError::Read {
            path: name.clone(),
            detail: e.to_string(),
        })?;
        let mut de = serde_json::Deserializer::from_str(&text);
        serde_path_to_error::deserialize(&mut de).map_err(|e| ProfileError::Parse {
            path: name,
            detail: format!("{}: {}", e.path(), e.inner()),
        })
    }

    /// Builds a profile from inference events: 10 quantile bins per numeric feature and for
    /// the score (edges at the nearest-rank deciles, duplicates merged), category shares
    /// for other features with categories under 1% folded into `__other__`.
    pub fn build<'a>(events: impl IntoIterator<Item = &'a Inference>) -> Profile {
        let mut numbers: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut texts: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut scores = Vec::new();
        for e in events {
            for (name, v) in &e.features {
                match v {
                    FeatureValue::Number(x) if x.is_finite() => {
                        numbers.entry(name.clone()).or_default().push(*x)
                    }
                    FeatureValue::Text(t) => texts.entry(name.clone()).or_default().push(t.clone()),
                    FeatureValue::Bool(b) => {
                        texts.entry(name.clone()).or_default().push(b.to_string())
                    }
                    _ => {}
                }
            }
            if let Some(s) = e.prediction.as_ref().and_then(|p| p.score) {
                scores.push(s);
            }
        }
        let mut features = BTreeMap::new();
        for (name, values) in texts {
            // A feature seen with text is categorical; its numbers count as categories too.
            let mut all = values;
            if let Some(n) = numbers.remove(&name) {
                all.extend(n.iter().map(|x| x.to_string()));
            }
            features.insert(name, categorical(&all));
        }
        for (name, values) in numbers {
            features.insert(name, numeric(values));
        }
        Profile {
            features,
            score: (!scores.is_empty()).then(|| numeric(scores)),
        }
    }
}

fn numeric(mut values: Vec<f64>) -> FeatureProfile {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let mut edges: Vec<f64> = Vec::new();
    for k in 1..10 {
        let rank = ((k as f64 / 10.0) * n as f64).ceil() as usize;
        let e = values[rank.clamp(1, n) - 1];
        // An edge equal to the smallest value would leave the first bin empty by construction.
        if edges.last().is_none_or(|l| e > *l) && e > values[0] {
            edges.push(e);
        }
    }
    let mut counts = vec![0u64; edges.len() + 1];
    for v in &values {
        counts[bin(&edges, *v)] += 1;
    }
    FeatureProfile::Numeric {
        proportions: counts.iter().map(|c| *c as f64 / n as f64).collect(),
        edges,
        min: values.first().copied(),
        max: values.last().copied(),
    }
}

fn categorical(values: &[String]) -> FeatureProfile {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for v in values {
        *counts.entry(v.as_str()).or_default() += 1;
    }
    let n = values.len() as f64;
    let mut proportions: BTreeMap<String, f64> = BTreeMap::new();
    for (k, c) in counts {
        let p = c as f64 / n;
        let key = if p < RARE { OTHER } else { k };
        *proportions.entry(key.to_string()).or_default() += p;
    }
    FeatureProfile::Categorical { proportions }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_follow_the_spec() {
        let edges = [5.0, 10.0, 20.0];
        assert_eq!(bin(&edges, 4.9), 0);
        assert_eq!(bin(&edges, 5.0), 1);
        assert_eq!(bin(&edges, 19.99), 2);
        assert_eq!(bin(&edges, 20.0), 3);
        assert_eq!(bin(&edges, 1e9), 3);
    }

    #[test]
    fn the_spec_example_is_valid_and_broken_ones_are_explained() {
        let p: Profile = serde_json::from_str(r#"{"features": {"amount":  {"type": "numeric", "edges": [5, 10, 20], "proportions": [0.1, 0.4, 0.3, 0.2]},
              "country": {"type": "categorical", "proportions": {"DE": 0.6, "US": 0.3, "__other__": 0.1}}},
 "score": {"type": "numeric", "edges": [0.1, 0.5], "proportions": [0.7, 0.2, 0.1]}}"#).expect("spec example");
        assert!(p.problems().is_empty(), "{:?}", p.problems());
        let bad: Profile = serde_json::from_str(
            r#"{"features": {"a": {"type": "numeric", "edges": [5, 5], "proportions": [0.5, 0.4]},
              "b": {"type": "categorical", "proportions": {"x": 0.5}}}}"#,
        )
        .expect("parses");
        let problems = bad.problems();
        assert!(
            problems
                .iter()
                .any(|(p, m)| p == "features.a.edges" && m.contains("increasing")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|(p, m)| p == "features.a.proportions" && m.contains("3 bins")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|(p, m)| p == "features.b.proportions" && m.contains("sum to 0.5")),
            "{problems:?}"
        );
    }
}
