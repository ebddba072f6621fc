//! Progress of a long replay (SPEC §6), on stderr: a bar with the share of the input read,
//! events per second and the event time reached when stderr is a terminal; otherwise a
//! plain line at most once a second, for logs. Processing time only: the figures say how
//! the replay goes, never what it computes.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::time::{format_rfc3339, Millis};

pub struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    unit: &'static str,
    started: Instant,
    last_line: Option<Instant>,
}

impl Progress {
    /// Progress over `total` (bytes or messages to read), counting `unit`s (lines,
    /// messages) for the rate; a bar when `tty`.
    pub fn new(total: u64, unit: &'static str, tty: bool) -> Progress {
        let bar = tty.then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template("{bar:30} {percent:>3}% {msg}") {
                bar.set_style(style);
            }
            bar
        });
        Progress {
            bar,
            total,
            unit,
            started: Instant::now(),
            last_line: None,
        }
    }

    /// `position` of the total read, `count` units done, event time reached, and a tail
    /// of counts to show.
    pub fn update(&mut self, position: u64, count: u64, event_time: Option<Millis>, tail: &str) {
        let rate = count as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        let time = event_time.map_or("-".to_string(), format_rfc3339);
        let msg = format!(
            "{count} {} ({rate:.0}/s), event time {time}, {tail}",
            self.unit
        );
        match &self.bar {
            Some(bar) => {
                bar.set_position(position.min(self.total));
                bar.set_message(msg);
            }
            None => {
                if self
                    .last_line
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
                {
                    let pct = if self.total > 0 {
                        100.0 * position.min(self.total) as f64 / self.total as f64
                    } else {
                        100.0
                    };
                    eprintln!("replay {pct:.0}%: {msg}");
                    self.last_line = Some(Instant::now());
                }
            }
        }
    }

    /// The last figures, and the bar closed.
    pub fn finish(&mut self, position: u64, count: u64, event_time: Option<Millis>, tail: &str) {
        self.last_line = None;
        self.update(position, count, event_time, tail);
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}
