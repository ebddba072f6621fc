//! The metric vocabulary of SPEC §3: every name usable in an objective, which task it
//! applies to, and which mergeable summary family computes it.

use std::fmt;

/// A model's task, which decides how predictions and labels are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    BinaryClassification,
    MulticlassClassification,
    Regression,
}

impl Task {
    pub fn parse(name: &str) -> Option<Task> {
        Some(match name {
            "binary_classification" => Task::BinaryClassification,
            "multiclass_classification" => Task::MulticlassClassification,
            "regression" => Task::Regression,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Task::BinaryClassification => "binary_classification",
            Task::MulticlassClassification => "multiclass_classification",
            Task::Regression => "regression",
        }
    }
}

/// The summary family a metric is computed from. Objectives of one model that share a
/// family, a window and segment dimensions share one sliding window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Family {
    /// Joined outcomes of a binary classifier: confusion counts, score histogram, loss sums.
    Binary,
    /// Joined outcomes of a multiclass classifier: confusion matrix.
    Multiclass,
    /// Joined outcomes of a regressor: error sums.
    Regression,
    /// Inference latencies (HdrHistogram).
    Latency,
    /// Share of inferences at or under a latency threshold (the threshold's f64 bits).
    LatencyUnder(u64),
    /// Inference counts by status.
    Reliability,
    /// Label arrival: joined and expired predictions, label delay histogram.
    Labels,
    /// Bin counts of one profiled feature (index into the model's profile features, or
    /// [`SCORE`] for the prediction score).
    Drift(u32),
    /// Missing, wrong-type and out-of-range counts of one profiled feature, or of all
    /// ([`ALL_FEATURES`]); `range` is the objective's (low, high) as f64 bits.
    Quality {
        feature: u32,
        range: Option<(u64, u64)>,
    },
}

/// Feature index of the prediction score in [`Family::Drift`].
pub const SCORE: u32 = u32::MAX - 1;
/// Feature index meaning "every feature of the profile" in [`Family::Quality`].
pub const ALL_FEATURES: u32 = u32::MAX;

macro_rules! metrics {
    ($($variant:ident => $name:literal),* $(,)?) => {
        /// One metric name of SPEC §3.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Metric { $($variant),* }

        impl Metric {
            pub const ALL: &'static [Metric] = &[$(Metric::$variant),*];

            pub fn name(self) -> &'static str {
                match self { $(Metric::$variant => $name),* }
            }

            pub fn parse(name: &str) -> Option<Metric> {
                match name { $($name => Some(Metric::$variant),)* _ => None }
            }
        }
    };
}

metrics! {
    Accuracy => "accuracy",
    Precision => "precision",
    Recall => "recall",
    F1 => "f1",
    RocAuc => "roc_auc",
    LogLoss => "log_loss",
    Brier => "brier",
    PositiveRate => "positive_rate",
    MacroPrecision => "macro_precision",
    MacroRecall => "macro_recall",
    MacroF1 => "macro_f1",
    Mae => "mae",
    Rmse => "rmse",
    Mape => "mape",
    LatencyP50 => "latency_p50",
    LatencyP90 => "latency_p90",
    LatencyP95 => "latency_p95",
    LatencyP99 => "latency_p99",
    LatencyP999 => "latency_p999",
    LatencyMax => "latency_max",
    LatencyMean => "latency_mean",
    LatencyUnder => "latency_under",
    ErrorRate => "error_rate",
    Availability => "availability",
    Throughput => "throughput",
    RequestCount => "request_count",
    LabelCoverage => "label_coverage",
    LabelDelayP50 => "label_delay_p50",
    LabelDelayP95 => "label_delay_p95",
    MissingRate => "missing_rate",
    SchemaViolationRate => "schema_violation_rate",
    OutOfRangeRate => "out_of_range_rate",
    Psi => "psi",
    Ks => "ks",
    JsDistance => "js_distance",
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a metric cannot be used for a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// The metric exists but does not apply to this task.
    WrongTask { metric: Metric, task: Task },
    /// Drift and data-quality metrics are placed by the configuration, which knows the
    /// model's reference profile.
    NeedsProfile(Metric),
}

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unusable::WrongTask { metric, task } => write!(
                f,
                "metric `{metric}` does not apply to a {} model",
                task.name()
            ),
            Unusable::NeedsProfile(metric) => {
                write!(f, "metric `{metric}` needs the model's reference profile")
            }
        }
    }
}

impl Metric {
    /// The summary family that computes this metric for a model of `task`.
    /// `threshold_ms` is the objective's threshold for `latency_under`.
    pub fn family(self, task: Task, threshold_ms: f64) -> Result<Family, Unusable> {
        use Metric::*;
        let wrong = Err(Unusable::WrongTask { metric: self, task });
        Ok(match self {
            Accuracy => match task {
                Task::BinaryClassification => Family::Binary,
                Task::MulticlassClassification => Family::Multiclass,
                Task::Regression => return wrong,
            },
            Precision | Recall | F1 | RocAuc | LogLoss | Brier | PositiveRate => {
                if task != Task::BinaryClassification {
                    return wrong;
                }
                Family::Binary
            }
            MacroPrecision | MacroRecall | MacroF1 => {
                if task != Task::MulticlassClassification {
                    return wrong;
                }
                Family::Multiclass
            }
            Mae | Rmse | Mape => {
                if task != Task::Regression {
                    return wrong;
                }
                Family::Regression
            }
            LatencyP50 | LatencyP90 | LatencyP95 | LatencyP99 | LatencyP999 | LatencyMax
            | LatencyMean => Family::Latency,
            LatencyUnder => Family::LatencyUnder(threshold_ms.to_bits()),
            ErrorRate | Availability | Throughput | RequestCount => Family::Reliability,
            LabelCoverage | LabelDelayP50 | LabelDelayP95 => Family::Labels,
            MissingRate | SchemaViolationRate | OutOfRangeRate | Psi | Ks | JsDistance => {
                return Err(Unusable::NeedsProfile(self))
            }
        })
    }

    /// Drift scores, computed against a reference profile.
    pub fn is_drift(self) -> bool {
        matches!(self, Metric::Psi | Metric::Ks | Metric::JsDistance)
    }

    /// Data-quality rates, per feature or over every feature of the profile.
    pub fn is_quality(self) -> bool {
        matches!(
            self,
            Metric::MissingRate | Metric::SchemaViolationRate | Metric::OutOfRangeRate
        )
    }

    /// Metrics whose value is a share of events (0..1), eligible for burn-rate alerting.
    pub fn is_ratio(self) -> bool {
        matches!(
            self,
            Metric::Availability | Metric::ErrorRate | Metric::LatencyUnder | Metric::Accuracy
        )
    }

    /// Counts and rates of requests: unknown until the stream has covered a whole window.
    pub fn is_volume(self) -> bool {
        matches!(self, Metric::Throughput | Metric::RequestCount)
    }

    /// The default `min_samples`: counts are meaningful at zero, everything else needs one.
    pub fn default_min_samples(self) -> u64 {
        match self {
            Metric::Throughput | Metric::RequestCount => 0,
            _ => 1,
        }
    }
}

/// The comparison an objective promises: `value op target` is healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Ge,
    Gt,
    Le,
    Lt,
}

impl Op {
    pub fn parse(text: &str) -> Option<Op> {
        Some(match text {
            ">=" => Op::Ge,
            ">" => Op::Gt,
            "<=" => Op::Le,
            "<" => Op::Lt,
            _ => return None,
        })
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Op::Ge => ">=",
            Op::Gt => ">",
            Op::Le => "<=",
            Op::Lt => "<",
        }
    }

    /// Whether `value op threshold` holds.
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Ge => value >= threshold,
            Op::Gt => value > threshold,
            Op::Le => value <= threshold,
            Op::Lt => value < threshold,
        }
    }

    /// Whether higher values are the healthy direction.
    pub fn higher_is_better(self) -> bool {
        matches!(self, Op::Ge | Op::Gt)
    }
}
