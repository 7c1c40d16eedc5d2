//! [`LogEvery`]: a warning that may fire thousands of times a second under attack (a
//! refused connection) is logged once per interval, with the count of what happened
//! since the last line.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How often a throttled warning is logged at most.
pub(crate) const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Counts events and says when one should be logged: the first at once, then at most
/// one per interval, carrying the count of events since the last line. Events after
/// the last line are carried by the next line, which comes with the next event after
/// the interval.
#[derive(Debug)]
pub(crate) struct LogEvery {
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    last: Option<Instant>,
    /// Events not logged yet.
    count: u64,
}

/// A line due: the events it stands for and the time since the previous line (`None`
/// for the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Due {
    pub(crate) count: u64,
    pub(crate) since: Option<Duration>,
}

impl Default for LogEvery {
    fn default() -> Self {
        Self::new(LOG_INTERVAL)
    }
}

impl LogEvery {
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::new(State::default()),
        }
    }

    /// Counts one event; `Some` when a line is due for it.
    pub(crate) fn hit(&self) -> Option<Due> {
        self.hit_at(Instant::now())
    }

    fn hit_at(&self, now: Instant) -> Option<Due> {
        // Held for a few instructions, and only on the refusal path.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.count += 1;
        let since = match state.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => return None,
            Some(last) => Some(now.saturating_duration_since(last)),
            None => None,
        };
        state.last = Some(now);
        Some(Due {
            count: std::mem::take(&mut state.count),
            since,
        })
    }
}

impl Due {
    /// "in the last 10s", or nothing for the first line.
    pub(crate) fn window(&self) -> String {
        match self.since {
            Some(since) => format!(" in the last {}s", since.as_secs()),
            None => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_event_is_logged_then_one_line_per_interval_with_the_count() {
        let log = LogEvery::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(
            log.hit_at(t0),
            Some(Due {
                count: 1,
                since: None
            })
        );
        for ms in 1..=999 {
            assert_eq!(log.hit_at(t0 + Duration::from_millis(ms * 10)), None);
        }
        assert_eq!(
            log.hit_at(t0 + Duration::from_secs(12)),
            Some(Due {
                count: 1_000,
                since: Some(Duration::from_secs(12))
            })
        );
        assert_eq!(log.hit_at(t0 + Duration::from_secs(13)), None);
    }
}
