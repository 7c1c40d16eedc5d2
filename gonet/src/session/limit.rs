//! Rate limits: per session ([`RateLimit`]: messages and bytes per second, with a
//! burst, and what happens past them, [`RatePolicy`]) and per remote IP address
//! ([`IpLimit`]: new connections per second and live sessions).
//!
//! Token buckets. A session's bucket is refilled once per batch of messages (what one
//! read brought), so the clock is read once per read, never per message; a session
//! without a limit has no bucket at all.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What happens to a message past its session's rate limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RatePolicy {
    /// A caller gets a [`ResourceExhausted`](crate::Code::ResourceExhausted) status;
    /// a plain message is dropped. The default.
    Reject,
    /// The message is dropped, counted and logged; a caller gets no answer (its call
    /// times out).
    Drop,
    /// As [`Reject`](Self::Reject), and the session is closed once it has gone past
    /// the limit this many times.
    CloseAfter(u32),
}

/// A rate limit per session (see [`Builder::rate_limit`](crate::Builder::rate_limit)):
/// messages per second and bytes per second, each with a burst, and a policy.
///
/// ```
/// use gonet::{RateLimit, RatePolicy};
///
/// // 50 messages a second, bursts of 100; 64 KiB a second, bursts of 256 KiB; a
/// // session past it 1,000 times is closed.
/// let limit = RateLimit::new()
///     .messages(50.0, 100)
///     .bytes(64.0 * 1024.0, 256 * 1024)
///     .policy(RatePolicy::CloseAfter(1_000));
/// let server = gonet::Builder::new().rate_limit(limit);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct RateLimit {
    pub(crate) messages: Option<(f64, u32)>,
    pub(crate) bytes: Option<(f64, u32)>,
    pub(crate) policy: RatePolicy,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self::new()
    }
}

impl RateLimit {
    /// No limit yet, policy [`RatePolicy::Reject`].
    pub fn new() -> Self {
        Self {
            messages: None,
            bytes: None,
            policy: RatePolicy::Reject,
        }
    }

    /// At most `per_second` application messages a second, `burst` at once.
    pub fn messages(mut self, per_second: f64, burst: u32) -> Self {
        self.messages = Some((per_second.max(0.0), burst.max(1)));
        self
    }

    /// At most `per_second` bytes of application messages a second (header and body),
    /// `burst` at once.
    pub fn bytes(mut self, per_second: f64, burst: u32) -> Self {
        self.bytes = Some((per_second.max(0.0), burst.max(1)));
        self
    }

    /// What happens past the limit.
    pub fn policy(mut self, policy: RatePolicy) -> Self {
        self.policy = policy;
        self
    }
}

/// A limit per remote IP address (see
/// [`Builder::ip_limit`](crate::Builder::ip_limit)): new connections per second, with a
/// burst, and live sessions. A connection past it is refused before it is a session,
/// counted and logged at a bounded rate.
///
/// ```
/// let limit = gonet::IpLimit::new().connections(5.0, 20).sessions(100);
/// let server = gonet::Builder::new().ip_limit(limit);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct IpLimit {
    pub(crate) connections: Option<(f64, u32)>,
    pub(crate) sessions: Option<usize>,
}

impl IpLimit {
    /// No limit yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// At most `per_second` new connections a second from one address, `burst` at
    /// once.
    pub fn connections(mut self, per_second: f64, burst: u32) -> Self {
        self.connections = Some((per_second.max(0.0), burst.max(1)));
        self
    }

    /// At most `max` live sessions from one address.
    pub fn sessions(mut self, max: usize) -> Self {
        self.sessions = Some(max);
        self
    }
}

/// A token bucket.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
}

impl Bucket {
    pub(crate) fn new((rate, burst): (f64, u32)) -> Self {
        let burst = f64::from(burst);
        Bucket {
            rate,
            burst,
            tokens: burst,
        }
    }

    /// Adds what `elapsed` earned.
    pub(crate) fn refill(&mut self, elapsed: Duration) {
        self.tokens = (self.tokens + self.rate * elapsed.as_secs_f64()).min(self.burst);
    }

    /// Takes `n` tokens if there are that many.
    pub(crate) fn take(&mut self, n: f64) -> bool {
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}

/// A session's limiter, kept by its driver.
#[derive(Debug)]
pub(crate) struct Limiter {
    messages: Option<Bucket>,
    bytes: Option<Bucket>,
    pub(crate) policy: RatePolicy,
    last: Instant,
    /// Times the session went past its limit.
    pub(crate) violations: u32,
}

impl Limiter {
    pub(crate) fn new(limit: &RateLimit) -> Self {
        Limiter {
            messages: limit.messages.map(Bucket::new),
            bytes: limit.bytes.map(Bucket::new),
            policy: limit.policy,
            last: Instant::now(),
            violations: 0,
        }
    }

    /// Refills the buckets; called once per batch of messages.
    pub(crate) fn refill(&mut self) {
        let now = Instant::now();
        let elapsed = now - self.last;
        self.last = now;
        for bucket in [&mut self.messages, &mut self.bytes].into_iter().flatten() {
            bucket.refill(elapsed);
        }
    }

    /// Admits one message of `len` bytes, or counts a violation.
    pub(crate) fn admit(&mut self, len: usize) -> bool {
        let messages_ok = self.messages.as_mut().is_none_or(|b| b.tokens >= 1.0);
        let bytes_ok = self.bytes.as_mut().is_none_or(|b| b.tokens >= len as f64);
        if messages_ok && bytes_ok {
            if let Some(b) = &mut self.messages {
                b.take(1.0);
            }
            if let Some(b) = &mut self.bytes {
                b.take(len as f64);
            }
            true
        } else {
            self.violations = self.violations.saturating_add(1);
            false
        }
    }
}

/// Why a connection was refused before it became a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The server holds its most sessions.
    Full,
    /// The address opens connections too fast.
    IpRate,
    /// The address holds its most sessions.
    IpSessions,
}

impl Refusal {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Refusal::Full => "full",
            Refusal::IpRate => "ip_rate",
            Refusal::IpSessions => "ip_sessions",
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Refusal::Full => "session limit reached",
            Refusal::IpRate => "too many new connections from this address",
            Refusal::IpSessions => "too many sessions from this address",
        }
    }
}

#[derive(Debug)]
struct IpState {
    live: usize,
    bucket: Option<Bucket>,
    last: Instant,
}

/// Addresses a table holds before it first sweeps out the idle ones.
const SWEEP_AT: usize = 4096;

/// The per-address table of a pool.
#[derive(Debug)]
pub(crate) struct IpTable {
    limit: IpLimit,
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    addrs: HashMap<IpAddr, IpState>,
    /// The size at which idle addresses are swept out.
    sweep_at: usize,
}

impl IpState {
    /// No session, and a bucket full again: nothing to remember.
    fn is_idle(&self, now: Instant) -> bool {
        self.live == 0
            && self.bucket.is_none_or(|mut b| {
                b.refill(now - self.last);
                b.tokens >= b.burst
            })
    }
}

impl IpTable {
    pub(crate) fn new(limit: IpLimit) -> Self {
        IpTable {
            limit,
            table: Mutex::new(Table {
                addrs: HashMap::new(),
                sweep_at: SWEEP_AT,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a new session from `ip`.
    pub(crate) fn admit(&self, ip: IpAddr) -> Result<(), Refusal> {
        let now = Instant::now();
        let mut table = self.lock();
        if table.addrs.len() >= table.sweep_at {
            // Many addresses: forget the idle ones, so the table holds only addresses
            // with sessions or recent connections.
            table.addrs.retain(|_, state| !state.is_idle(now));
            table.sweep_at = (table.addrs.len() * 2).max(SWEEP_AT);
        }
        let state = table.addrs.entry(ip).or_insert_with(|| IpState {
            live: 0,
            bucket: self.limit.connections.map(Bucket::new),
            last: now,
        });
        if let Some(bucket) = &mut state.bucket {
            bucket.refill(now - state.last);
            state.last = now;
            if !bucket.take(1.0) {
                return Err(Refusal::IpRate);
            }
        }
        if self.limit.sessions.is_some_and(|max| state.live >= max) {
            return Err(Refusal::IpSessions);
        }
        state.live += 1;
        Ok(())
    }

    /// A session from `ip` ended. An idle address (no session, a full bucket) is
    /// forgotten at once; others when the table is swept.
    pub(crate) fn release(&self, ip: IpAddr) {
        let mut table = self.lock();
        if let Some(state) = table.addrs.get_mut(&ip) {
            state.live = state.live.saturating_sub(1);
            if state.is_idle(Instant::now()) {
                table.addrs.remove(&ip);
            }
        }
    }

    /// Addresses with an entry.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().addrs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let mut b = Bucket::new((10.0, 5));
        for _ in 0..5 {
            assert!(b.take(1.0));
        }
        assert!(!b.take(1.0));
        b.refill(Duration::from_millis(200));
        assert!(b.take(1.0) && b.take(1.0));
        assert!(!b.take(1.0));
        b.refill(Duration::from_secs(60));
        assert_eq!(b.tokens, 5.0, "never more than the burst");
    }

    #[test]
    fn a_limiter_counts_violations_and_checks_both_buckets() {
        let limit = RateLimit::new().messages(1.0, 3).bytes(1.0, 100);
        let mut l = Limiter::new(&limit);
        assert!(l.admit(60));
        assert!(!l.admit(60), "bytes exhausted");
        assert!(l.admit(40));
        assert!(!l.admit(1), "bytes again");
        assert_eq!(l.violations, 2);
    }

    #[test]
    fn an_address_is_held_to_its_sessions_and_rate() {
        let ip: IpAddr = [127, 0, 0, 1].into();
        let t = IpTable::new(IpLimit::new().sessions(2).connections(0.0, 3));
        assert_eq!(t.admit(ip), Ok(()));
        assert_eq!(t.admit(ip), Ok(()));
        assert_eq!(t.admit(ip), Err(Refusal::IpSessions));
        t.release(ip);
        assert_eq!(
            t.admit(ip),
            Err(Refusal::IpRate),
            "three connections, no refill"
        );
        let other: IpAddr = [127, 0, 0, 2].into();
        assert_eq!(t.admit(other), Ok(()), "another address has its own");
        t.release(other);
        t.release(ip);
        t.release(ip);
        assert_eq!(t.len(), 2, "kept while their buckets are not full");
    }

    #[test]
    fn idle_addresses_are_forgotten() {
        let t = IpTable::new(IpLimit::new().sessions(1));
        for n in 0..10_000u32 {
            let ip = IpAddr::from(n.to_be_bytes());
            t.admit(ip).unwrap();
            if n % 2 == 0 {
                t.release(ip);
            }
        }
        assert_eq!(t.len(), 5_000, "released at once without a bucket");
        let t = IpTable::new(IpLimit::new().connections(1e9, 1));
        for n in 0..10_000u32 {
            let ip = IpAddr::from(n.to_be_bytes());
            t.admit(ip).unwrap();
            t.release(ip);
        }
        assert!(t.len() < 2 * SWEEP_AT, "swept: {}", t.len());
    }
}
