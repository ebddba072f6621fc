//! The one-screen summary `slaguard check` prints for a valid SLA file.

use std::fmt::Write;

use crate::config::SlaConfig;
use crate::time::format_duration;

/// Renders the models, objectives and policies of a valid configuration for people.
pub fn summary(config: &SlaConfig) -> String {
    let d = &config.defaults;
    let mut s = String::new();
    let objectives: usize = config.models.iter().map(|m| m.objectives.len()).sum();
    let _ = writeln!(
        s,
        "SLA {}: {} model(s), {} objective(s), evaluated every {} (allowed lateness {}, label TTL {})",
        config.sla_version,
        config.models.len(),
        objectives,
        format_duration(d.evaluate_every),
        format_duration(d.allowed_lateness),
        format_duration(d.label_ttl),
    );
    for m in &config.models {
        let _ = write!(s, "\n{} ({}", m.model_id, m.task.name());
        if let Some(owner) = &m.owner {
            let _ = write!(s, ", owner {owner}");
        }
        if let Some(policy) = &m.escalation {
            let _ = write!(s, ", escalation {policy}");
        }
        let _ = writeln!(s, ", label TTL {})", format_duration(m.label_ttl));
        for o in &m.objectives {
            let metric = match &o.feature {
                Some(f) => format!("{}({f})", o.metric),
                None => o.metric.to_string(),
            };
            let mut line = format!("  {:<16} {} {} {}", o.name, metric, o.op.symbol(), o.target);
            if let Some(w) = o.warn_at {
                let _ = write!(line, " (warn at {w})");
            }
            let _ = write!(line, " over {}", o.window_text);
            if !o.segment_by.is_empty() {
                let _ = write!(line, ", per {}", o.segment_by.join("+"));
            }
            if o.for_count > 1 || o.clear_for > 1 {
                let _ = write!(
                    line,
                    ", opens after {} / clears after {}",
                    o.for_count, o.clear_for
                );
            }
            if !o.inhibits.is_empty() {
                let _ = write!(line, ", inhibits {}", o.inhibits.join("+"));
            }
            if let Some(r) = o.resolve_at {
                let _ = write!(line, ", resolves at {r}");
            }
            if o.min_samples > 1 {
                let _ = write!(line, ", min {} samples", o.min_samples);
            }
            let _ = writeln!(s, "{line}");
            if let Some(pairs) = &o.burn_rate {
                let rules: Vec<String> = pairs
                    .iter()
                    .map(|p| format!("{} {} > {}", p.severity.name(), p.name(), p.factor))
                    .collect();
                let _ = writeln!(s, "  {:<16} burn rate: {}", "", rules.join("; "));
            }
        }
    }
    for (name, p) in &config.escalation_policies {
        let levels: Vec<String> = p
            .levels
            .iter()
            .map(|l| format!("{} → {}", format_duration(l.after), l.notify.join(", ")))
            .collect();
        let _ = writeln!(s, "\nescalation {name}: {}", levels.join("; "));
    }
    s
}
