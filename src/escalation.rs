//! Escalation policies in event time (SPEC §3): who is notified as an incident stays
//! unacknowledged. Level 0 fires when the incident opens; level i fires `after_i` after
//! the opening; with `repeat: n` the levels loop n more times, a cycle lasting the last
//! level's `after` plus the gap between the first two levels. An acknowledgement stops
//! the escalation; with `ack_timeout` it resumes at the next level that long after the
//! acknowledgement if the incident is still open. Pure schedule arithmetic, no clock.

use serde::{Deserialize, Serialize};

use crate::config::EscalationPolicy;
use crate::time::Millis;

/// Where an incident is in its policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escalation {
    /// The level that fired last and its cycle (0 = the first pass).
    pub level: usize,
    pub cycle: u32,
    /// Level i of cycle c is due at `base + c·period + after_i`.
    base: Millis,
    /// When the next level is due, if any.
    pub due: Option<Millis>,
}

fn period(policy: &EscalationPolicy) -> Millis {
    let last = policy.levels.last().map_or(0, |l| l.after);
    let gap = match policy.levels.as_slice() {
        [a, b, ..] => b.after - a.after,
        _ => last,
    };
    last + gap
}

fn due(policy: &EscalationPolicy, base: Millis, level: usize, cycle: u32) -> Millis {
    base + Millis::from(cycle) * period(policy) + policy.levels[level].after
}

/// The level after (`level`, `cycle`), if the policy has one.
fn following(policy: &EscalationPolicy, level: usize, cycle: u32) -> Option<(usize, u32)> {
    if level + 1 < policy.levels.len() {
        Some((level + 1, cycle))
    } else if cycle < policy.repeat && period(policy) > 0 {
        Some((0, cycle + 1))
    } else {
        None
    }
}

impl Escalation {
    /// An incident opened at `opened_at`: level 0 fires now.
    pub fn open(policy: &EscalationPolicy, opened_at: Millis) -> Option<Escalation> {
        if policy.levels.is_empty() {
            return None;
        }
        let mut e = Escalation {
            level: 0,
            cycle: 0,
            base: opened_at,
            due: None,
        };
        e.schedule(policy);
        Some(e)
    }

    fn schedule(&mut self, policy: &EscalationPolicy) {
        self.due =
            following(policy, self.level, self.cycle).map(|(l, c)| due(policy, self.base, l, c));
    }

    /// The due level fires: returns it (level, cycle) and schedules the one after.
    pub fn fire(&mut self, policy: &EscalationPolicy) -> Option<(usize, u32)> {
        let (level, cycle) = following(policy, self.level, self.cycle)?;
        self.level = level;
        self.cycle = cycle;
        self.schedule(policy);
        Some((level, cycle))
    }

    /// Acknowledged at `at`: nothing more is due, unless the policy resumes after
    /// `ack_timeout`, in which case the next level is due then and the rest keeps its
    /// spacing from there.
    pub fn acknowledge(&mut self, policy: &EscalationPolicy, at: Millis) {
        self.due = None;
        let Some(timeout) = policy.ack_timeout else {
            return;
        };
        if let Some((level, cycle)) = following(policy, self.level, self.cycle) {
            let resume = at + timeout;
            self.base =
                resume - (Millis::from(cycle) * period(policy) + policy.levels[level].after);
            self.due = Some(resume);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EscalationLevel;

    fn policy(repeat: u32, ack_timeout: Option<Millis>) -> EscalationPolicy {
        let level = |after: Millis| EscalationLevel {
            after,
            notify: vec!["x".into()],
        };
        EscalationPolicy {
            repeat,
            ack_timeout,
            levels: vec![level(0), level(15), level(45)],
        }
    }

    /// Fires everything due up to `until`, returning (time, level, cycle).
    fn run(p: &EscalationPolicy, e: &mut Escalation, until: Millis) -> Vec<(Millis, usize, u32)> {
        let mut out = Vec::new();
        while let Some(t) = e.due.filter(|t| *t <= until) {
            let (l, c) = e.fire(p).expect("due level");
            out.push((t, l, c));
        }
        out
    }

    #[test]
    fn levels_fire_at_their_after() {
        let p = policy(0, None);
        let mut e = Escalation::open(&p, 100).expect("levels");
        assert_eq!(run(&p, &mut e, 1000), vec![(115, 1, 0), (145, 2, 0)]);
        assert_eq!(e.due, None);
    }

    #[test]
    fn repeat_loops_the_levels() {
        let p = policy(1, None);
        let mut e = Escalation::open(&p, 0).expect("levels");
        // A cycle lasts 45 + 15 = 60.
        assert_eq!(
            run(&p, &mut e, 1000),
            vec![(15, 1, 0), (45, 2, 0), (60, 0, 1), (75, 1, 1), (105, 2, 1)]
        );
    }

    #[test]
    fn an_ack_stops_and_an_ack_timeout_resumes() {
        let p = policy(0, None);
        let mut e = Escalation::open(&p, 0).expect("levels");
        e.acknowledge(&p, 10);
        assert_eq!(run(&p, &mut e, 1000), vec![]);
        let p = policy(0, Some(20));
        let mut e = Escalation::open(&p, 0).expect("levels");
        assert_eq!(run(&p, &mut e, 16), vec![(15, 1, 0)]);
        e.acknowledge(&p, 16);
        assert_eq!(run(&p, &mut e, 1000), vec![(36, 2, 0)]);
    }
}
