//! The Markdown form of a [`Report`], written for someone who never saw the SLA file:
//! every promise in plain words, what held and what did not, each incident's story, what
//! is owed, and a short glossary.

use std::fmt::Write;

use super::{IncidentReport, ObjectiveReport, Report};
use crate::config::{Objective, SlaConfig};
use crate::metric::{Metric, Op};
use crate::time::parse_rfc3339;

/// A number as people write it: up to four significant decimals, no trailing zeros.
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let text = format!("{v:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_string()
    } else {
        text.to_string()
    }
}

/// A share as a percentage with up to two decimals (three when two would round a
/// shortfall up to 100%).
pub fn percent(share: f64) -> String {
    let p = share * 100.0;
    let trim = |t: String| {
        if t.contains('.') {
            t.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            t
        }
    };
    let text = trim(format!("{p:.2}"));
    if text == "100" && share < 1.0 {
        return format!("{}%", trim(format!("{p:.3}")));
    }
    format!("{text}%")
}

/// A length of time in words: `45 s`, `14 min`, `2 h 5 min`, `3 d 4 h`.
pub fn duration(seconds: f64) -> String {
    let s = seconds.round() as i64;
    match s {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => {
            let (m, r) = (s / 60, s % 60);
            if r == 0 {
                format!("{m} min")
            } else {
                format!("{m} min {r} s")
            }
        }
        s if s < 86_400 => {
            let (h, m) = (s / 3600, (s % 3600) / 60);
            if m == 0 {
                format!("{h} h")
            } else {
                format!("{h} h {m} min")
            }
        }
        s => {
            let (d, h) = (s / 86_400, (s % 86_400) / 3600);
            if h == 0 {
                format!("{d} d")
            } else {
                format!("{d} d {h} h")
            }
        }
    }
}

/// `2026-11-01 01:02 UTC` (seconds shown only when not zero).
fn when(rfc3339: &str) -> String {
    let Some(t) = parse_rfc3339(rfc3339) else {
        return rfc3339.to_string();
    };
    let Some(dt) = chrono::DateTime::from_timestamp_millis(t) else {
        return rfc3339.to_string();
    };
    if t % 60_000 == 0 {
        dt.format("%Y-%m-%d %H:%M UTC").to_string()
    } else {
        dt.format("%Y-%m-%d %H:%M:%S UTC").to_string()
    }
}

/// What a metric measures, in words.
fn what(metric: Metric, threshold_ms: Option<f64>, feature: Option<&str>) -> String {
    use Metric as M;
    let feature = feature.unwrap_or("the inputs");
    match metric {
        M::Accuracy => "share of predictions that were right".into(),
        M::Precision => "share of positive predictions that were right".into(),
        M::Recall => "share of real positives the model caught".into(),
        M::F1 => "F1 score (balance of precision and recall, 0 to 1)".into(),
        M::RocAuc => "ranking quality, ROC AUC (0.5 is guessing, 1 is perfect)".into(),
        M::LogLoss => "log loss (lower is better)".into(),
        M::Brier => "Brier score (lower is better)".into(),
        M::PositiveRate => "share of predictions that were positive".into(),
        M::MacroPrecision => "precision averaged over the classes".into(),
        M::MacroRecall => "recall averaged over the classes".into(),
        M::MacroF1 => "F1 score averaged over the classes".into(),
        M::Mae => "average error of the predictions".into(),
        M::Rmse => "root-mean-square error of the predictions".into(),
        M::Mape => "average percentage error of the predictions".into(),
        M::LatencyP50 => "median response time".into(),
        M::LatencyP90 => "response time that 90% of requests beat".into(),
        M::LatencyP95 => "response time that 95% of requests beat".into(),
        M::LatencyP99 => "response time that 99% of requests beat".into(),
        M::LatencyP999 => "response time that 99.9% of requests beat".into(),
        M::LatencyMax => "slowest response time".into(),
        M::LatencyMean => "average response time".into(),
        M::LatencyUnder => format!(
            "share of requests answered within {} ms",
            number(threshold_ms.unwrap_or(0.0))
        ),
        M::ErrorRate => "share of requests that failed".into(),
        M::Availability => "share of requests served without error".into(),
        M::Throughput => "requests per second".into(),
        M::RequestCount => "number of requests".into(),
        M::LabelCoverage => "share of predictions whose true outcome arrived".into(),
        M::LabelDelayP50 => "median wait for the true outcome".into(),
        M::LabelDelayP95 => "wait for the true outcome that 95% of outcomes beat".into(),
        M::MissingRate => format!("share of requests with {feature} missing"),
        M::SchemaViolationRate => format!("share of requests with {feature} of the wrong type"),
        M::OutOfRangeRate => format!("share of requests with {feature} out of range"),
        M::Psi => format!("drift of {feature} from its reference (PSI)"),
        M::Ks => format!("drift of {feature} from its reference (KS distance)"),
        M::JsDistance => format!("drift of {feature} from its reference (JS distance)"),
    }
}

fn is_share(metric: Metric) -> bool {
    use Metric as M;
    matches!(
        metric,
        M::Accuracy
            | M::Precision
            | M::Recall
            | M::PositiveRate
            | M::MacroPrecision
            | M::MacroRecall
            | M::LatencyUnder
            | M::ErrorRate
            | M::Availability
            | M::LabelCoverage
            | M::MissingRate
            | M::SchemaViolationRate
            | M::OutOfRangeRate
    )
}

fn value_text(metric: Metric, v: f64) -> String {
    use Metric as M;
    if is_share(metric) {
        percent(v)
    } else if matches!(metric, M::LabelDelayP50 | M::LabelDelayP95) {
        duration(v / 1000.0)
    } else if matches!(
        metric,
        M::LatencyP50
            | M::LatencyP90
            | M::LatencyP95
            | M::LatencyP99
            | M::LatencyP999
            | M::LatencyMax
            | M::LatencyMean
    ) {
        format!("{} ms", number(v))
    } else {
        number(v)
    }
}

/// An objective as a sentence: "share of requests served without error at least 99.9%,
/// over any 30 d".
pub fn promise(o: &Objective) -> String {
    let op = match o.op {
        Op::Ge => "at least",
        Op::Gt => "above",
        Op::Le => "at most",
        Op::Lt => "below",
    };
    let mut text = format!(
        "{} {op} {}, over any {}",
        what(o.metric, o.threshold_ms, o.feature.as_deref()),
        value_text(o.metric, o.target),
        duration(o.window as f64 / 1000.0)
    );
    if let Some(first) = text.get(..1) {
        text = first.to_uppercase() + &text[1..];
    }
    text
}

fn threshold_of(config: &SlaConfig, r: &ObjectiveReport) -> Option<f64> {
    config
        .model(&r.model_id)
        .and_then(|(_, m)| m.objectives.iter().find(|o| o.name == r.objective))
        .and_then(|o| o.threshold_ms)
}

fn yes_no(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "yes",
        Some(false) => "**no**",
        None => "no data",
    }
}

/// A count with thousands separators: `21,480`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Renders the report for people.
pub fn render(report: &Report, config: &SlaConfig) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# SLA report: {}\n", report.sla_version);
    match (&report.from, &report.to) {
        (Some(f), Some(t)) => {
            let span = match (parse_rfc3339(f), parse_rfc3339(t)) {
                (Some(a), Some(b)) => format!(" ({})", duration((b - a) as f64 / 1000.0)),
                _ => String::new(),
            };
            let _ = writeln!(s, "Period: {} to {}{span}.\n", when(f), when(t));
        }
        _ => {
            let _ = writeln!(s, "Period: no check fell in the period.\n");
        }
    }
    summary(&mut s, report);
    let mut models: Vec<&str> = report
        .objectives
        .iter()
        .map(|o| o.model_id.as_str())
        .collect();
    models.dedup();
    for model in models {
        let rows: Vec<&ObjectiveReport> = report
            .objectives
            .iter()
            .filter(|o| o.model_id == model)
            .collect();
        model_section(&mut s, model, &rows, config);
    }
    let _ = writeln!(s, "\n## Incidents\n");
    if report.incidents.is_empty() {
        let _ = writeln!(s, "None.");
    }
    for (k, i) in report.incidents.iter().enumerate() {
        incident(&mut s, k + 1, i);
    }
    glossary(&mut s, config);
    s
}

fn summary(s: &mut String, report: &Report) {
    let _ = writeln!(s, "## In short\n");
    let judged = report.objectives.iter().filter(|o| o.met.is_some()).count();
    let held = report
        .objectives
        .iter()
        .filter(|o| o.met == Some(true))
        .count();
    let unjudged = report.objectives.len() - judged;
    let _ = writeln!(
        s,
        "- {held} of {judged} promises held over the period{}.",
        if unjudged > 0 {
            format!(" ({unjudged} more had no data to judge)")
        } else {
            String::new()
        }
    );
    for o in report.objectives.iter().filter(|o| o.met == Some(false)) {
        let _ = writeln!(
            s,
            "  - Not held: {} **{}**: {}.",
            o.model_id, o.objective, o.promise
        );
    }
    let n = report.incidents.len();
    let mut line = format!(
        "- {n} incident{} in the period",
        if n == 1 { "" } else { "s" }
    );
    if let Some(a) = report.mtta_seconds {
        let _ = write!(
            line,
            "; on average someone acknowledged an incident {} after it opened",
            duration(a)
        );
    }
    if let Some(r) = report.mttr_seconds {
        let _ = write!(line, "; on average an incident lasted {}", duration(r));
    }
    let _ = writeln!(s, "{line}.");
    if report.credits.is_empty() {
        let _ = writeln!(s, "- Service credits owed: none.");
    } else {
        let _ = writeln!(s, "- Service credits owed:");
        for c in &report.credits {
            let attained = if c.attainment_basis == "events" {
                format!("attained {}", percent(c.attainment))
            } else {
                format!("met at {} of checks", percent(c.attainment))
            };
            let _ = writeln!(
                s,
                "  - **{}%** for {} {} ({attained}).",
                number(c.credit_percent),
                c.model_id,
                c.objective,
            );
        }
    }
}

fn model_section(s: &mut String, model: &str, rows: &[&ObjectiveReport], config: &SlaConfig) {
    let owner = rows
        .first()
        .and_then(|o| o.owner.as_deref())
        .map(|o| format!(" (owner: {o})"))
        .unwrap_or_default();
    let _ = writeln!(s, "\n## Model {model}{owner}\n");
    let _ = writeln!(
        s,
        "| Promise | Held over the period? | Checks that met it | Error budget used | Incidents |"
    );
    let _ = writeln!(s, "| --- | --- | --- | --- | --- |");
    for o in rows {
        let checks = match o.compliance {
            Some(c) => format!(
                "{} of {} checks",
                percent(c),
                count(o.instants - o.instants_insufficient)
            ),
            None => "no data".to_string(),
        };
        let budget = o
            .ratio
            .as_ref()
            .and_then(|r| r.budget_consumed)
            .map_or("—".to_string(), percent);
        let _ = writeln!(
            s,
            "| **{}**: {} | {} | {checks} | {budget} | {} |",
            o.objective,
            o.promise,
            yes_no(o.met),
            o.incidents
        );
    }
    for o in rows {
        let (Some(r), Some(metric)) = (&o.ratio, Metric::parse(o.metric)) else {
            continue;
        };
        let Some(v) = r.value else { continue };
        let (unit, bad) = match metric {
            Metric::Accuracy => ("predictions with a known outcome", "were wrong"),
            Metric::LatencyUnder => ("requests", "were too slow"),
            _ => ("requests", "failed"),
        };
        let _ = write!(
            s,
            "\n**{}**: {} {unit}, {} of which {bad}: {} was {}. The promise allows {} of them \
             to go wrong over the period; {} of that error budget was used",
            o.objective,
            count(r.events),
            count(r.bad_events),
            what(metric, threshold_of(config, o), None),
            percent(v),
            count(r.budget_events.floor().max(0.0) as u64),
            r.budget_consumed.map_or("none".to_string(), percent),
        );
        let _ = writeln!(
            s,
            "{}",
            match r.budget_remaining {
                Some(rem) if rem < 0.0 => " (overspent).",
                _ => ".",
            }
        );
        if let (Some(c), Some(a)) = (o.credit_percent, o.attainment) {
            let _ = writeln!(
                s,
                "Attained {}: a service credit of {}% is owed for this promise.",
                percent(a),
                number(c)
            );
        }
    }
}

fn incident(s: &mut String, k: usize, i: &IncidentReport) {
    let segment = if i.segment.is_empty() {
        String::new()
    } else {
        let parts: Vec<String> = i.segment.iter().map(|(d, v)| format!("{d} {v}")).collect();
        format!(", {}", parts.join(", "))
    };
    let _ = writeln!(
        s,
        "### {k}. {} {}{segment} ({})\n",
        i.model_id, i.objective, i.severity
    );
    let mut story = format!("Opened {}", when(&i.opened_at));
    match (&i.acknowledged_at, i.seconds_to_acknowledge) {
        (Some(_), Some(secs)) => {
            let _ = write!(
                story,
                "; acknowledged {} later by {}",
                duration(secs),
                i.acknowledged_by.as_deref().unwrap_or("someone")
            );
        }
        (Some(at), None) => {
            let _ = write!(story, "; acknowledged {}", when(at));
        }
        _ => story.push_str("; never acknowledged"),
    }
    match (&i.resolved_at, i.seconds_to_resolve) {
        (Some(_), Some(secs)) => {
            let how = match &i.resolved_by {
                Some(by) => format!("by {by}"),
                None => "by itself".to_string(),
            };
            let _ = write!(story, "; resolved {how} {} after opening", duration(secs));
        }
        (Some(at), None) => {
            let _ = write!(story, "; resolved {}", when(at));
        }
        _ => story.push_str("; still open at the end of the period"),
    }
    if i.inhibited {
        story.push_str(
            ". It opened while a related, more important incident was open, so nobody was paged for it",
        );
    }
    let _ = writeln!(s, "{story}.\n");
    let metric = Metric::parse(&i.metric);
    let measured = |v: Option<f64>| match (v, metric) {
        (Some(v), Some(m)) => format!(", measured {}", value_text(m, v)),
        _ => String::new(),
    };
    for e in &i.timeline {
        let line = match e.what {
            "opened" => format!(
                "opened as {}{}",
                e.severity.as_deref().unwrap_or("an incident"),
                measured(e.observed)
            ),
            "severity_changed" => format!(
                "became {}{}",
                e.severity.as_deref().unwrap_or("different"),
                measured(e.observed)
            ),
            "notified" if e.level == Some(0) => format!("paged {}", e.notify.join(", ")),
            "notified" => format!("not acknowledged yet: escalated to {}", e.notify.join(", ")),
            "acknowledged" => format!("acknowledged by {}", e.by.as_deref().unwrap_or("someone")),
            "resolved" => match &e.by {
                Some(by) => format!("resolved by {by}"),
                None => format!("resolved: the metric recovered{}", measured(e.observed)),
            },
            other => other.replace('_', " "),
        };
        let _ = writeln!(s, "- {}: {line}", when(&e.at));
    }
    s.push('\n');
}

fn glossary(s: &mut String, config: &SlaConfig) {
    let every = crate::time::format_duration(config.defaults.evaluate_every);
    let _ = writeln!(
        s,
        "\n## How to read this report\n\n\
         - A **promise** is a target the model's owners agreed to, measured over a sliding \
         window: \"over any 1 h\" means over the hour before each check.\n\
         - A **check** happens every {every}. A check without enough data to judge is left \
         out rather than counted as a miss.\n\
         - **Held over the period**: for promises about a share of requests or predictions, \
         whether that share over the whole period met the target; for the others, whether \
         every check met it.\n\
         - The **error budget** of a share promise is how many requests or predictions may \
         go wrong over the period while still keeping it. 100% used means the promise was \
         only just kept; more means it was missed.\n\
         - An **incident** opens when checks miss a promise (or, for error-budget alerts, \
         when the budget is being spent too fast) and closes when checks are healthy again or \
         someone resolves it. **Critical** means the promise is missed, **warning** that it \
         is at risk. People are paged by the escalation policy until someone acknowledges.\n\
         - **MTTA** (mean time to acknowledge) is how long people took to respond to an \
         incident; **MTTR** (mean time to resolve) how long incidents lasted.\n\
         - **Service credits** are what the SLA says is owed when the share a promise \
         attained over the period falls below one of its tiers."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_percentages_and_durations_read_naturally() {
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(3.0), "3");
        assert_eq!(percent(0.5), "50%");
        assert_eq!(percent(0.9985), "99.85%");
        assert_eq!(percent(0.123456), "12.35%");
        assert_eq!(percent(0.99999), "99.999%");
        assert_eq!(percent(1.0), "100%");
        assert_eq!(duration(42.0), "42 s");
        assert_eq!(duration(14.0 * 60.0), "14 min");
        assert_eq!(duration(2.0 * 3600.0 + 300.0), "2 h 5 min");
        assert_eq!(duration(3.0 * 86_400.0), "3 d");
        assert_eq!(when("2026-11-01T01:02:00.000Z"), "2026-11-01 01:02 UTC");
        assert_eq!(count(21_480), "21,480");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000_000), "1,000,000");
    }
}
