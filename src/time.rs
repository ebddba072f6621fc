//! Event time: instants as milliseconds since the Unix epoch, durations as milliseconds.
//!
//! Everything in slaguard runs on event time carried by the events themselves. This module
//! parses and prints it; it never reads a clock.

use chrono::{DateTime, SecondsFormat, Utc};

/// Milliseconds since the Unix epoch, in event time.
pub type Millis = i64;

/// Parses a duration such as `250ms`, `30s`, `5m`, `1h`, `7d` or `2w` into milliseconds.
/// A bare `0` is accepted as zero.
pub fn parse_duration(text: &str) -> Result<Millis, String> {
    let t = text.trim();
    if t == "0" {
        return Ok(0);
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let unit_ms: i64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 604_800_000,
        _ => {
            return Err(format!(
                "`{text}` is not a duration: write a whole number and a unit (ms, s, m, h, d, w), e.g. 30s, 5m, 1h, 7d"
            ))
        }
    };
    let n: i64 = digits.parse().map_err(|_| {
        format!("`{text}` is not a duration: it needs a whole number before the unit, e.g. 5m")
    })?;
    n.checked_mul(unit_ms)
        .ok_or_else(|| format!("`{text}` is too long a duration"))
}

/// Prints a duration in the largest unit that divides it exactly (`3600000` → `1h`).
pub fn format_duration(ms: Millis) -> String {
    const UNITS: [(i64, &str); 6] = [
        (604_800_000, "w"),
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1_000, "s"),
        (1, "ms"),
    ];
    if ms == 0 {
        return "0s".to_string();
    }
    for (unit, name) in UNITS {
        if ms % unit == 0 {
            return format!("{}{}", ms / unit, name);
        }
    }
    format!("{ms}ms")
}

/// Parses an RFC 3339 timestamp (`2026-11-01T12:00:00.123Z`, any offset) to epoch milliseconds.
pub fn parse_rfc3339(text: &str) -> Option<Millis> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Prints epoch milliseconds as RFC 3339 in UTC with millisecond precision.
pub fn format_rfc3339(ms: Millis) -> String {
    match DateTime::<Utc>::from_timestamp_millis(ms) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => ms.to_string(),
    }
}

/// Parses a command-line or config time: RFC 3339, or integer epoch milliseconds.
pub fn parse_instant(text: &str) -> Option<Millis> {
    parse_rfc3339(text).or_else(|| text.trim().parse::<i64>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip() {
        for (text, ms) in [
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("7d", 604_800_000),
            ("250ms", 250),
        ] {
            assert_eq!(parse_duration(text), Ok(ms));
        }
        assert_eq!(format_duration(90_000), "90s");
        assert_eq!(format_duration(3_600_000), "1h");
        assert_eq!(format_duration(86_400_000 * 30), "30d");
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("-5m").is_err());
    }

    #[test]
    fn timestamps() {
        let t = parse_rfc3339("2026-11-01T12:00:00.123Z").expect("valid");
        assert_eq!(t, 1_793_534_400_123);
        assert_eq!(format_rfc3339(t), "2026-11-01T12:00:00.123Z");
        assert_eq!(parse_rfc3339("2026-11-01T13:00:00.123+01:00"), Some(t));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
