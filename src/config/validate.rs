//! Turns a parsed YAML document into an [`SlaConfig`], collecting every problem with its
//! YAML path instead of stopping at the first. Each model, objective and policy is read on
//! its own, so one broken entry does not hide the problems of the others.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;

use super::raw::{RawCreditTier, RawDefaults, RawModel, RawObjective, RawPolicy};
use super::{
    CreditTier, Defaults, EscalationLevel, EscalationPolicy, ModelSla, Objective, Problem,
    SlaConfig,
};
use crate::metric::{Family, Metric, Op, Task, ALL_FEATURES, SCORE};
use crate::profile::{FeatureProfile, Profile};
use crate::time::{parse_duration, Millis};

const TOP_LEVEL: [&str; 5] = [
    "sla_version",
    "defaults",
    "models",
    "escalation_policies",
    "service_credits",
];

struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Deserializes `value` as `T`; on failure records the error at `path` + serde's inner path.
    fn read<T: DeserializeOwned>(&mut self, value: &Value, path: &str) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(v) => Some(v),
            Err(e) => {
                let inner = e.path().to_string();
                let full = match (path.is_empty(), inner.as_str()) {
                    (_, ".") | (_, "?") => path.to_string(),
                    (true, _) => inner,
                    (false, _) => format!("{path}.{inner}"),
                };
                self.add(full, e.into_inner().to_string());
                None
            }
        }
    }

    fn duration(&mut self, text: Option<&str>, path: &str, default: Millis) -> Millis {
        match text {
            None => default,
            Some(t) => match parse_duration(t) {
                Ok(ms) => ms,
                Err(msg) => {
                    self.add(path, msg);
                    default
                }
            },
        }
    }
}

/// Validates a whole SLA document. `base_dir` resolves the models' reference files.
pub fn validate(root: &Value, base_dir: Option<&Path>) -> Result<SlaConfig, Vec<Problem>> {
    let mut p = Problems(Vec::new());
    let Some(map) = root.as_mapping() else {
        p.add(
            "",
            "an SLA file must be a YAML mapping with sla_version and models",
        );
        return Err(p.0);
    };
    for key in map.keys() {
        let known = key.as_str().is_some_and(|k| TOP_LEVEL.contains(&k));
        if !known {
            p.add(
                yaml_key(key),
                format!("unknown field, expected one of {}", TOP_LEVEL.join(", ")),
            );
        }
    }

    let sla_version = match map.get("sla_version") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) | None => {
            p.add(
                "sla_version",
                "missing: every SLA file needs a version string, stamped on every output",
            );
            String::new()
        }
        Some(other) => {
            p.add(
                "sla_version",
                format!("must be a string (quote it), found {}", kind(other)),
            );
            String::new()
        }
    };

    let defaults = read_defaults(&mut p, map.get("defaults"));

    let mut policies = BTreeMap::new();
    if let Some(v) = map.get("escalation_policies") {
        if let Some(raw) = p.read::<BTreeMap<String, Value>>(v, "escalation_policies") {
            for (name, v) in raw {
                let path = format!("escalation_policies.{name}");
                if let Some(policy) = read_policy(&mut p, &v, &path) {
                    policies.insert(name, policy);
                }
            }
        }
    }

    let mut models = Vec::new();
    let mut seen_models = BTreeSet::new();
    match map.get("models") {
        None => p.add("models", "missing: list at least one model"),
        Some(v) => {
            if let Some(list) = p.read::<Vec<Value>>(v, "models") {
                if list.is_empty() {
                    p.add("models", "empty: list at least one model");
                }
                for (i, mv) in list.iter().enumerate() {
                    let path = format!("models[{i}]");
                    let declared = map.get("escalation_policies").is_some();
                    if let Some(m) =
                        read_model(&mut p, mv, &path, &defaults, &policies, declared, base_dir)
                    {
                        if !seen_models.insert(m.model_id.clone()) {
                            p.add(
                                format!("{path}.model_id"),
                                format!("model `{}` is defined twice", m.model_id),
                            );
                        }
                        models.push(m);
                    }
                }
            }
        }
    }

    let mut service_credits = BTreeMap::new();
    if let Some(v) = map.get("service_credits") {
        if let Some(raw) = p.read::<BTreeMap<String, Vec<Value>>>(v, "service_credits") {
            for (objective, tiers) in raw {
                let path = format!("service_credits.{objective}");
                let exists = models
                    .iter()
                    .any(|m| m.objectives.iter().any(|o| o.name == objective));
                if !exists {
                    p.add(
                        &path,
                        format!("names objective `{objective}`, which no model defines"),
                    );
                }
                let mut out = Vec::new();
                for (j, t) in tiers.iter().enumerate() {
                    let tpath = format!("{path}[{j}]");
                    if let Some(t) = p.read::<RawCreditTier>(t, &tpath) {
                        if !(t.below > 0.0 && t.below <= 1.0) {
                            p.add(
                                format!("{tpath}.below"),
                                "must be an attainment share in (0, 1], e.g. 0.999",
                            );
                        }
                        if !(0.0..=100.0).contains(&t.credit) {
                            p.add(format!("{tpath}.credit"), "must be a percentage in 0..100");
                        }
                        out.push(CreditTier {
                            below: t.below,
                            credit: t.credit,
                        });
                    }
                }
                service_credits.insert(objective, out);
            }
        }
    }

    if p.0.is_empty() {
        Ok(SlaConfig {
            sla_version,
            defaults,
            models,
            escalation_policies: policies,
            service_credits,
        })
    } else {
        Err(p.0)
    }
}

fn yaml_key(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

fn read_defaults(p: &mut Problems, v: Option<&Value>) -> Defaults {
    let base = Defaults::default();
    let Some(v) = v else { return base };
    let Some(raw) = p.read::<RawDefaults>(v, "defaults") else {
        return base;
    };
    let evaluate_every = p.duration(
        raw.evaluate_every.as_deref(),
        "defaults.evaluate_every",
        base.evaluate_every,
    );
    if evaluate_every <= 0 {
        p.add("defaults.evaluate_every", "must be longer than zero");
    }
    let positive = |p: &mut Problems, n: Option<u64>, path: &str, d: usize| match n {
        None => d,
        Some(0) => {
            p.add(path, "must be at least 1");
            d
        }
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
    };
    Defaults {
        evaluate_every: evaluate_every.max(1),
        allowed_lateness: p.duration(
            raw.allowed_lateness.as_deref(),
            "defaults.allowed_lateness",
            base.allowed_lateness,
        ),
        label_ttl: p.duration(
            raw.label_ttl.as_deref(),
            "defaults.label_ttl",
            base.label_ttl,
        ),
        early_label_ttl: p.duration(
            raw.early_label_ttl.as_deref(),
            "defaults.early_label_ttl",
            base.early_label_ttl,
        ),
        idle_timeout: p.duration(
            raw.idle_timeout.as_deref(),
            "defaults.idle_timeout",
            base.idle_timeout,
        ),
        max_time_jump: p.duration(
            raw.max_time_jump.as_deref(),
            "defaults.max_time_jump",
            base.max_time_jump,
        ),
        max_pending: positive(p, raw.max_pending, "defaults.max_pending", base.max_pending),
        max_segments: positive(
            p,
            raw.max_segments,
            "defaults.max_segments",
            base.max_segments,
        ),
    }
}

fn read_policy(p: &mut Problems, v: &Value, path: &str) -> Option<EscalationPolicy> {
    let raw = p.read::<RawPolicy>(v, path)?;
    if raw.levels.is_empty() {
        p.add(
            format!("{path}.levels"),
            "empty: a policy needs at least one level",
        );
    }
    let mut levels = Vec::new();
    let mut previous: Option<Millis> = None;
    for (i, l) in raw.levels.iter().enumerate() {
        let lpath = format!("{path}.levels[{i}]");
        let after = p.duration(Some(&l.after), &format!("{lpath}.after"), 0);
        if previous.is_some_and(|prev| after < prev) {
            p.add(
                format!("{lpath}.after"),
                "levels must be in order of `after` (time since the incident opened)",
            );
        }
        previous = Some(after);
        if l.notify.is_empty() {
            p.add(
                format!("{lpath}.notify"),
                "empty: name who is notified at this level",
            );
        }
        levels.push(EscalationLevel {
            after,
            notify: l.notify.clone(),
        });
    }
    let ack_timeout = raw
        .ack_timeout
        .as_deref()
        .map(|t| p.duration(Some(t), &format!("{path}.ack_timeout"), 0));
    Some(EscalationPolicy {
        repeat: raw.repeat.unwrap_or(0),
        ack_timeout,
        levels,
    })
}

fn check_dimensions(p: &mut Problems, dims: &[String], path: &str) {
    let mut seen = BTreeSet::new();
    for (i, d) in dims.iter().enumerate() {
        if d.trim().is_empty() {
            p.add(format!("{path}[{i}]"), "empty dimension name");
        } else if !seen.insert(d) {
            p.add(
                format!("{path}[{i}]"),
                format!("dimension `{d}` listed twice"),
            );
        }
    }
}

fn read_model(
    p: &mut Problems,
    v: &Value,
    path: &str,
    defaults: &Defaults,
    policies: &BTreeMap<String, EscalationPolicy>,
    policies_declared: bool,
    base_dir: Option<&Path>,
) -> Option<ModelSla> {
    let raw = p.read::<RawModel>(v, path)?;
    if raw.model_id.trim().is_empty() {
        p.add(format!("{path}.model_id"), "empty model_id");
    }
    let task = Task::parse(&raw.task);
    if task.is_none() {
        p.add(
            format!("{path}.task"),
            format!("unknown task `{}`: use binary_classification, multiclass_classification or regression", raw.task),
        );
    }
    let decision_threshold = raw.decision_threshold.unwrap_or(0.5);
    if !(0.0..=1.0).contains(&decision_threshold) {
        p.add(
            format!("{path}.decision_threshold"),
            "must be a score threshold in 0..1",
        );
    }
    if raw.decision_threshold.is_some() && task != Some(Task::BinaryClassification) {
        p.add(
            format!("{path}.decision_threshold"),
            "applies only to binary_classification models",
        );
    }
    if raw.positive_label.is_some() && task != Some(Task::BinaryClassification) {
        p.add(
            format!("{path}.positive_label"),
            "applies only to binary_classification models",
        );
    }
    check_dimensions(p, &raw.segment_by, &format!("{path}.segment_by"));
    if let Some(policy) = &raw.escalation {
        if !policies.contains_key(policy) {
            let known: Vec<&str> = policies.keys().map(String::as_str).collect();
            let hint = if known.is_empty() && !policies_declared {
                "no escalation_policies are defined".to_string()
            } else {
                format!("known policies: {}", known.join(", "))
            };
            p.add(
                format!("{path}.escalation"),
                format!("unknown escalation policy `{policy}` ({hint})"),
            );
        }
    }
    let reference = raw.reference.as_ref().map(|r| match base_dir {
        Some(dir) => dir.join(&r.file),
        None => r.file.clone().into(),
    });
    let profile = reference.as_ref().and_then(|file| {
        let at = format!("{path}.reference.file");
        if !file.is_file() {
            p.add(
                &at,
                format!("reference profile {} not found", file.display()),
            );
            return None;
        }
        match Profile::load(file) {
            Err(e) => {
                p.add(&at, e.to_string());
                None
            }
            Ok(profile) => {
                let problems = profile.problems();
                for (inner, message) in &problems {
                    p.add(&at, format!("{}: {inner}: {message}", file.display()));
                }
                problems.is_empty().then(|| std::sync::Arc::new(profile))
            }
        }
    });
    let label_ttl = p.duration(
        raw.label_ttl.as_deref(),
        &format!("{path}.label_ttl"),
        defaults.label_ttl,
    );
    let early_label_ttl = p.duration(
        raw.early_label_ttl.as_deref(),
        &format!("{path}.early_label_ttl"),
        defaults.early_label_ttl,
    );

    if raw.objectives.is_empty() {
        p.add(
            format!("{path}.objectives"),
            "empty: a model needs at least one objective",
        );
    }
    let mut objectives: Vec<Objective> = Vec::new();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for (i, ov) in raw.objectives.iter().enumerate() {
        let opath = format!("{path}.objectives[{i}]");
        // Names are checked on the raw entry so that a duplicate is found even when
        // either objective has other problems.
        if let Some(name) = ov.get("name").and_then(Value::as_str) {
            if let Some(first) = names.insert(name.to_string(), i) {
                p.add(
                    format!("{opath}.name"),
                    format!("objective `{name}` is already defined at {path}.objectives[{first}]"),
                );
            }
        }
        let Some(task) = task else {
            // Still report the objective's own shape problems.
            let _ = p.read::<RawObjective>(ov, &opath);
            continue;
        };
        if let Some(o) = read_objective(
            p,
            ov,
            &opath,
            &ModelContext {
                task,
                segments: &raw.segment_by,
                defaults,
                profile: profile.as_deref(),
                has_reference: reference.is_some(),
            },
        ) {
            objectives.push(o);
        }
    }
    // `inhibits` names objectives of the same model.
    for (i, o) in objectives.iter().enumerate() {
        for (j, name) in o.inhibits.iter().enumerate() {
            let at = format!("{path}.objectives[{i}].inhibits[{j}]");
            if *name == o.name {
                p.add(at, "an objective cannot inhibit itself");
            } else if !names.contains_key(name) {
                p.add(
                    at,
                    format!(
                        "names objective `{name}`, which model `{}` does not define",
                        raw.model_id
                    ),
                );
            }
        }
    }
    Some(ModelSla {
        model_id: raw.model_id,
        task: task?,
        owner: raw.owner,
        runbook: raw.runbook,
        decision_threshold,
        positive_label: raw.positive_label.unwrap_or_else(|| "1".to_string()),
        segment_by: raw.segment_by,
        reference,
        profile,
        escalation: raw.escalation,
        label_ttl,
        early_label_ttl,
        objectives,
    })
}

/// What an objective's checks need to know of its model.
struct ModelContext<'a> {
    task: Task,
    segments: &'a [String],
    defaults: &'a Defaults,
    profile: Option<&'a Profile>,
    has_reference: bool,
}

fn read_objective(
    p: &mut Problems,
    v: &Value,
    path: &str,
    model: &ModelContext<'_>,
) -> Option<Objective> {
    let (task, model_segments, defaults, profile, has_reference) = (
        model.task,
        model.segments,
        model.defaults,
        model.profile,
        model.has_reference,
    );
    let raw = p.read::<RawObjective>(v, path)?;
    let at = |field: &str| format!("{path}.{field}");
    if raw.name.trim().is_empty() {
        p.add(at("name"), "empty objective name");
    }
    let metric = Metric::parse(&raw.metric);
    let threshold_ms = raw.threshold_ms;
    let family = match metric {
        None => {
            let known: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
            p.add(
                at("metric"),
                format!(
                    "unknown metric `{}`; known metrics: {}",
                    raw.metric,
                    known.join(" ")
                ),
            );
            None
        }
        Some(m) if m.is_drift() || m.is_quality() => {
            profile_family(p, m, &raw, profile, has_reference, path)
        }
        Some(m) => match m.family(task, threshold_ms.unwrap_or(0.0)) {
            Ok(f) => Some(f),
            Err(why) => {
                p.add(at("metric"), why.to_string());
                None
            }
        },
    };
    if let Some(m) = metric {
        match (m == Metric::LatencyUnder, threshold_ms) {
            (true, None) => p.add(
                at("threshold_ms"),
                "missing: latency_under needs threshold_ms, the latency that counts as fast enough",
            ),
            (true, Some(t)) if !(t.is_finite() && t > 0.0) => p.add(
                at("threshold_ms"),
                "must be a positive number of milliseconds",
            ),
            (false, Some(_)) => p.add(at("threshold_ms"), "applies only to metric latency_under"),
            _ => {}
        }
    }
    let profiled = metric.is_some_and(|m| m.is_drift() || m.is_quality());
    if raw.feature.is_some() && metric.is_some() && !profiled {
        p.add(
            at("feature"),
            "applies only to drift and data-quality metrics",
        );
    }
    if raw.range.is_some() && metric.is_some_and(|m| m != Metric::OutOfRangeRate) {
        p.add(at("range"), "applies only to out_of_range_rate");
    }
    let burn_rate = match raw.alerting.as_deref() {
        None | Some("threshold") => false,
        Some("burn_rate") => true,
        Some(other) => {
            p.add(
                at("alerting"),
                format!("unknown alerting `{other}`: use threshold or burn_rate"),
            );
            false
        }
    };

    let op = match raw.op.as_deref() {
        None => {
            p.add(
                at("op"),
                "missing: say which side of the target is healthy (>=, >, <= or <)",
            );
            None
        }
        Some(s) => {
            let op = Op::parse(s);
            if op.is_none() {
                p.add(at("op"), format!("unknown op `{s}`: use >=, >, <= or <"));
            }
            op
        }
    };
    let target = match raw.target {
        None => {
            p.add(at("target"), "missing: the value the objective promises");
            None
        }
        Some(t) if !t.is_finite() => {
            p.add(at("target"), "must be a finite number");
            None
        }
        Some(t) => Some(t),
    };
    if let (Some(op), Some(target)) = (op, target) {
        if let Some(w) = raw.warn_at {
            let healthy_side = if op.higher_is_better() {
                w > target
            } else {
                w < target
            };
            if !healthy_side {
                let want = if op.higher_is_better() {
                    "above"
                } else {
                    "below"
                };
                p.add(
                    at("warn_at"),
                    format!("warn_at {w} must be {want} the target {target} (a warning comes before the target is missed, for op {})", op.symbol()),
                );
            }
        }
        if let Some(r) = raw.resolve_at {
            let ok = if op.higher_is_better() {
                r >= target
            } else {
                r <= target
            };
            if !ok {
                let want = if op.higher_is_better() {
                    "at or above"
                } else {
                    "at or below"
                };
                p.add(
                    at("resolve_at"),
                    format!(
                        "resolve_at {r} must be {want} the target {target} for op {}",
                        op.symbol()
                    ),
                );
            }
        }
    }
    if burn_rate {
        check_burn_rate(p, &raw, metric, op, target, &at);
    }
    let window = match raw.window.as_deref() {
        None => {
            p.add(
                at("window"),
                "missing: the sliding window the metric is computed over, e.g. 1h",
            );
            None
        }
        Some(t) => match parse_duration(t) {
            Err(msg) => {
                p.add(at("window"), msg);
                None
            }
            Ok(w) if w <= 0 => {
                p.add(at("window"), "must be longer than zero");
                None
            }
            Ok(w) if w % defaults.evaluate_every != 0 => {
                p.add(
                    at("window"),
                    format!(
                        "window {t} is not a multiple of evaluate_every ({})",
                        crate::time::format_duration(defaults.evaluate_every)
                    ),
                );
                None
            }
            Ok(w) => Some((w, t.to_string())),
        },
    };
    if raw.for_count == Some(0) {
        p.add(at("for"), "must be at least 1");
    }
    if raw.clear_for == Some(0) {
        p.add(at("clear_for"), "must be at least 1");
    }
    // The model's own list was checked with the model.
    if let Some(own) = &raw.segment_by {
        check_dimensions(p, own, &at("segment_by"));
    }
    let range = range_of(&raw);
    let segment_by = raw.segment_by.unwrap_or_else(|| model_segments.to_vec());

    let metric = metric?;
    let (window, window_text) = window?;
    Some(Objective {
        name: raw.name,
        metric,
        family: family?,
        op: op?,
        target: target?,
        warn_at: raw.warn_at,
        resolve_at: raw.resolve_at,
        window,
        window_text,
        min_samples: raw
            .min_samples
            .unwrap_or_else(|| metric.default_min_samples()),
        for_count: raw.for_count.unwrap_or(1).max(1),
        clear_for: raw.clear_for.unwrap_or(1).max(1),
        segment_by,
        threshold_ms,
        inhibits: raw.inhibits.clone().unwrap_or_default(),
        feature: raw.feature.clone(),
        range,
        description: raw.description,
        burn_rate: burn_rate
            .then(|| crate::burn_rate::scaled_pairs(window, defaults.evaluate_every)),
    })
}

/// What `alerting: burn_rate` needs: a ratio metric, the op that metric's healthy side
/// takes, a target that leaves a budget, and no thresholds of its own (the burn rate sets
/// the severity).
fn check_burn_rate(
    p: &mut Problems,
    raw: &RawObjective,
    metric: Option<Metric>,
    op: Option<Op>,
    target: Option<f64>,
    at: &dyn Fn(&str) -> String,
) {
    use crate::burn_rate::RATIO_METRICS;
    if let Some(m) = metric {
        if !RATIO_METRICS.contains(&m) {
            let names: Vec<&str> = RATIO_METRICS.iter().map(|m| m.name()).collect();
            p.add(
                at("alerting"),
                format!(
                    "burn_rate needs a ratio metric with an error budget ({}), not {}",
                    names.join(", "),
                    m.name()
                ),
            );
        } else if let Some(op) = op {
            let good_ratio = m != Metric::ErrorRate;
            if op.higher_is_better() != good_ratio {
                let want = if good_ratio { ">=" } else { "<=" };
                p.add(
                    at("op"),
                    format!("{} with burn_rate takes op {want}", m.name()),
                );
            }
        }
    }
    if let Some(t) = target {
        if !(t > 0.0 && t < 1.0) {
            p.add(
                at("target"),
                format!(
                    "burn_rate needs a target strictly between 0 and 1 (a budget to burn), not {t}"
                ),
            );
        }
    }
    for (field, set) in [
        ("warn_at", raw.warn_at.is_some()),
        ("resolve_at", raw.resolve_at.is_some()),
    ] {
        if set {
            p.add(
                at(field),
                "does not apply with burn_rate: fast burns are critical, slow burns warnings, and an incident resolves when no pair burns",
            );
        }
    }
}

/// `range: [low, high]` of an out_of_range_rate objective.
fn range_of(raw: &RawObjective) -> Option<(f64, f64)> {
    let list = raw.range.as_ref()?.as_sequence()?;
    match list.as_slice() {
        [lo, hi] => Some((lo.as_f64()?, hi.as_f64()?)),
        _ => None,
    }
}

/// The family of a drift or data-quality objective: its feature must be in the model's
/// reference profile.
fn profile_family(
    p: &mut Problems,
    metric: Metric,
    raw: &RawObjective,
    profile: Option<&Profile>,
    has_reference: bool,
    path: &str,
) -> Option<Family> {
    let at = |field: &str| format!("{path}.{field}");
    let Some(profile) = profile else {
        if has_reference {
            // The reference file's own problems are reported with the model.
            return None;
        }
        p.add(at("metric"), format!("metric `{metric}` compares with the model's reference profile: set `reference: {{file: …}}` on the model"));
        return None;
    };
    if raw.range.is_some() && range_of(raw).is_none_or(|(lo, hi)| lo >= hi) {
        p.add(at("range"), "must be [low, high] with low < high");
    }
    let index = |name: &str| {
        profile
            .features
            .keys()
            .position(|k| k == name)
            .map(|i| i as u32)
    };
    if metric.is_drift() {
        let Some(feature) = raw.feature.as_deref() else {
            p.add(
                at("feature"),
                format!("missing: name the feature `{metric}` watches (or `score`)"),
            );
            return None;
        };
        let (f, numeric) = if feature == "score" {
            match &profile.score {
                Some(s) => (SCORE, s.is_numeric()),
                None => {
                    p.add(
                        at("feature"),
                        "the reference profile has no score distribution",
                    );
                    return None;
                }
            }
        } else {
            match index(feature) {
                Some(i) => (i, profile.features[feature].is_numeric()),
                None => {
                    let known: Vec<&str> = profile.features.keys().map(String::as_str).collect();
                    p.add(
                        at("feature"),
                        format!(
                            "feature `{feature}` is not in the reference profile (it has: {})",
                            known.join(", ")
                        ),
                    );
                    return None;
                }
            }
        };
        if metric == Metric::Ks && !numeric {
            p.add(at("metric"), format!("ks needs a numeric feature; `{feature}` is categorical (use psi or js_distance)"));
            return None;
        }
        return Some(Family::Drift(f));
    }
    let feature = match raw.feature.as_deref() {
        None => ALL_FEATURES,
        Some(name) => match index(name) {
            Some(i) => i,
            None => {
                p.add(
                    at("feature"),
                    format!("feature `{name}` is not in the reference profile"),
                );
                return None;
            }
        },
    };
    if metric == Metric::OutOfRangeRate && raw.range.is_none() {
        let bounded = |f: &FeatureProfile| {
            matches!(
                f,
                FeatureProfile::Numeric {
                    min: Some(_),
                    max: Some(_),
                    ..
                }
            )
        };
        let has_bounds = match raw.feature.as_deref() {
            Some(name) => bounded(&profile.features[name]),
            None => profile.features.values().any(bounded),
        };
        if !has_bounds {
            p.add(
                at("range"),
                "missing: give range: [low, high], or use a profile with observed min and max",
            );
        }
    }
    let range = range_of(raw).map(|(lo, hi)| (lo.to_bits(), hi.to_bits()));
    Some(Family::Quality { feature, range })
}
