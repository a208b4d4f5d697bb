//! A session's log budget: `log()` and `print` lines per second (LogLinesPerSecond). A script
//! logging in a loop once wrote hundreds of MB into the Redis log in seconds; past the budget
//! lines are dropped, and the next second starts with one line saying how many were.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct LogLimit {
    window: Option<Instant>,
    written: u64,
    dropped: u64,
}

/// What to do with one line.
#[derive(Debug, PartialEq)]
pub struct Decision {
    pub write: bool,
    /// Lines dropped in the last window, to report before this one.
    pub dropped_before: u64,
}

impl LogLimit {
    pub const fn new() -> LogLimit {
        LogLimit { window: None, written: 0, dropped: 0 }
    }

    /// Lines dropped and not yet reported (reported now by the caller).
    pub fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }

    /// One line at `now`, with at most `per_second` lines written per window.
    pub fn line(&mut self, now: Instant, per_second: u64) -> Decision {
        let mut dropped_before = 0;
        let fresh = self.window.is_none_or(|start| now.duration_since(start) >= Duration::from_secs(1));
        if fresh {
            dropped_before = std::mem::take(&mut self.dropped);
            self.window = Some(now);
            self.written = 0;
        }
        if self.written >= per_second {
            self.dropped += 1;
            return Decision { write: false, dropped_before };
        }
        self.written += 1;
        Decision { write: true, dropped_before }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_past_the_budget_are_dropped_and_counted_once() {
        let mut limit = LogLimit::new();
        let t0 = Instant::now();
        let written = (0..10).filter(|_| limit.line(t0, 3).write).count();
        assert_eq!(written, 3);
        let next = limit.line(t0 + Duration::from_millis(1001), 3);
        assert_eq!(next, Decision { write: true, dropped_before: 7 });
        assert_eq!(limit.line(t0 + Duration::from_millis(1002), 3).dropped_before, 0);
    }
}
