//! How a session's errors reach the log: every one goes to the error hook, but the log
//! gets the first, then at most a few per interval, with a count of the rest. A peer
//! that sends ten thousand bad frames costs a few lines, not ten thousand.
//!
//! The state is three atomics in the session, touched only when it has an error: a
//! session without errors pays nothing, one with many pays an atomic add per error.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// The interval over which a session's error lines are counted.
pub(crate) const LOG_INTERVAL: Duration = Duration::from_secs(10);
/// The most error lines one session logs per interval.
pub(crate) const LOG_BURST: u64 = 5;

/// What to do with an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Log it, with the count of errors not logged before it, which came during
    /// `over` (zero when none were suppressed).
    Log {
        /// Errors suppressed since the last line.
        suppressed: u64,
        /// The span of time they came in.
        over: Duration,
    },
    /// Count it, do not log it.
    Suppress,
}

/// The log rate limit of one session.
#[derive(Debug, Default)]
pub(crate) struct ErrorLog {
    /// When the current interval started, in milliseconds since [`epoch`], plus one;
    /// zero before the first error.
    window: AtomicU64,
    /// Errors met in the current interval (logged or not).
    seen: AtomicU64,
    /// Errors not logged since the last line.
    suppressed: AtomicU64,
}

/// The process's reference point for interval starts.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
}

impl ErrorLog {
    /// Decides about an error that happens now.
    pub(crate) fn admit(&self) -> Verdict {
        self.admit_at(now_ms())
    }

    /// Decides about an error at `now` (milliseconds, above zero). Races between
    /// threads reporting errors of one session at once cost at most a line more or
    /// less, never a lock.
    fn admit_at(&self, now: u64) -> Verdict {
        let interval = LOG_INTERVAL.as_millis() as u64;
        let window = self.window.load(Relaxed);
        let over = Duration::from_millis(if window == 0 {
            0
        } else {
            now - window.min(now)
        });
        if (window == 0 || now.saturating_sub(window) >= interval)
            && self
                .window
                .compare_exchange(window, now, Relaxed, Relaxed)
                .is_ok()
        {
            self.seen.store(1, Relaxed);
            return Verdict::Log {
                suppressed: self.suppressed.swap(0, Relaxed),
                over,
            };
        }
        if self.seen.fetch_add(1, Relaxed) < LOG_BURST {
            return Verdict::Log {
                suppressed: self.suppressed.swap(0, Relaxed),
                over,
            };
        }
        self.suppressed.fetch_add(1, Relaxed);
        Verdict::Suppress
    }

    /// The errors suppressed since the last line and the span they came in, taken;
    /// `None` when there are none. For a last line when the session closes.
    pub(crate) fn take_suppressed(&self) -> Option<(u64, Duration)> {
        self.take_suppressed_at(now_ms())
    }

    fn take_suppressed_at(&self, now: u64) -> Option<(u64, Duration)> {
        let suppressed = self.suppressed.swap(0, Relaxed);
        (suppressed > 0).then(|| {
            let window = self.window.load(Relaxed);
            (
                suppressed,
                Duration::from_millis(now.saturating_sub(window)),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(suppressed: u64, over: u64) -> Verdict {
        Verdict::Log {
            suppressed,
            over: Duration::from_millis(over),
        }
    }

    #[test]
    fn the_first_errors_are_logged_then_counted() {
        let errors = ErrorLog::default();
        let t0 = 5;
        assert_eq!(errors.admit_at(t0), log(0, 0), "the first is always logged");
        for _ in 1..LOG_BURST {
            assert_eq!(errors.admit_at(t0 + 1), log(0, 1));
        }
        for _ in 0..1_000 {
            assert_eq!(errors.admit_at(t0 + 2), Verdict::Suppress);
        }
        // The next interval: one line, carrying the count.
        assert_eq!(errors.admit_at(t0 + 10_000), log(1_000, 10_000));
        assert_eq!(errors.admit_at(t0 + 10_001), log(0, 1));
    }

    #[test]
    fn what_was_suppressed_is_told_at_the_end() {
        let errors = ErrorLog::default();
        assert_eq!(errors.take_suppressed_at(1), None);
        for _ in 0..LOG_BURST + 7 {
            errors.admit_at(100);
        }
        assert_eq!(
            errors.take_suppressed_at(2_100),
            Some((7, Duration::from_secs(2)))
        );
        assert_eq!(errors.take_suppressed_at(2_200), None, "told once");
    }

    #[test]
    fn a_quiet_interval_resets_the_count() {
        let errors = ErrorLog::default();
        for _ in 0..LOG_BURST {
            assert!(matches!(errors.admit_at(1), Verdict::Log { .. }));
        }
        assert_eq!(errors.admit_at(2), Verdict::Suppress);
        assert_eq!(errors.admit_at(60_001), log(1, 60_000));
        for _ in 1..LOG_BURST {
            assert!(matches!(errors.admit_at(60_002), Verdict::Log { .. }));
        }
        assert_eq!(errors.admit_at(60_003), Verdict::Suppress);
    }
}
