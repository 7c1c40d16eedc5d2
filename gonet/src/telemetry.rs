//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`): what the runtime counts, under the names of the README's table. The
//! application installs the recorder (a Prometheus exporter, statsd, ...) and turns
//! the runtime's metrics on with [`Builder::metrics`](crate::Builder::metrics).
//!
//! Every function here is a no-op without the feature, and costs one relaxed atomic
//! load while metrics are off.

#[cfg(feature = "metrics")]
use std::sync::atomic::{AtomicBool, Ordering};

use crate::url::Transport;

#[cfg(feature = "metrics")]
static ON: AtomicBool = AtomicBool::new(false);

/// Turns the runtime's metrics on (or off) for the whole process.
#[cfg_attr(not(feature = "metrics"), allow(dead_code, reason = "metrics only"))]
pub(crate) fn enable(on: bool) {
    #[cfg(feature = "metrics")]
    ON.store(on, Ordering::Relaxed);
    #[cfg(not(feature = "metrics"))]
    let _ = on;
}

/// Whether metrics are being recorded.
#[inline(always)]
pub(crate) fn on() -> bool {
    #[cfg(feature = "metrics")]
    {
        ON.load(Ordering::Relaxed)
    }
    #[cfg(not(feature = "metrics"))]
    {
        false
    }
}

/// Runs `$body` only when the feature is compiled in and metrics are on.
macro_rules! when_on {
    ($($body:tt)*) => {
        #[cfg(feature = "metrics")]
        if on() {
            $($body)*
        }
    };
}

/// A session opened (it was accepted, or dialed).
pub(crate) fn session_opened(transport: Transport) {
    when_on! {
        metrics::counter!("gonet_sessions_opened_total", "transport" => transport.scheme()).increment(1);
        metrics::gauge!("gonet_sessions_open", "transport" => transport.scheme()).increment(1.0);
    }
    let _ = transport;
}

/// A session closed, for `reason`.
pub(crate) fn session_closed(transport: Transport, reason: &'static str) {
    when_on! {
        metrics::counter!("gonet_sessions_closed_total", "transport" => transport.scheme(), "reason" => reason).increment(1);
        metrics::gauge!("gonet_sessions_open", "transport" => transport.scheme()).decrement(1.0);
    }
    let _ = (transport, reason);
}

/// The per-message handles, by message name, cached per thread: registering a
/// labelled metric looks it up in the recorder's registry, which costs more than the
/// message itself; a handle, once had, is an atomic add. Within a batch of messages
/// (see [`batch`]) the counts of a run of messages of one name are added up first and
/// recorded once.
#[cfg(feature = "metrics")]
mod cache {
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;

    use crate::url::Transport;

    /// Which per-message metric.
    #[derive(Clone, Copy, PartialEq, Eq)]
    pub(super) enum Which {
        In = 0,
        Out = 1,
    }

    /// Hashes the address of a message name: addresses need no SipHash.
    #[derive(Default)]
    struct AddressHasher(u64);

    impl std::hash::Hasher for AddressHasher {
        fn finish(&self) -> u64 {
            self.0
        }

        fn write(&mut self, bytes: &[u8]) {
            for &b in bytes {
                self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            }
        }

        fn write_usize(&mut self, n: usize) {
            self.0 = (self.0 ^ n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    type ByAddress<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<AddressHasher>>;

    /// Bytes in, bytes out and the write-size histogram of one transport.
    type Bytes = (metrics::Counter, metrics::Counter, metrics::Histogram);

    #[derive(Default)]
    struct Handles {
        /// By metric (in: 0, out: 1) and message name.
        counters: [ByAddress<usize, metrics::Counter>; 2],
        histograms: ByAddress<usize, metrics::Histogram>,
        /// By transport.
        bytes: [Option<Bytes>; 6],
    }

    /// The counts of a batch not yet recorded: a message name and how many.
    type Pending = Cell<(Option<&'static str>, u64)>;

    #[derive(Default)]
    struct Local {
        handles: RefCell<Handles>,
        /// Inside [`batch`](super::batch): counts wait in `pending`.
        in_batch: Cell<bool>,
        pending: [Pending; 2],
    }

    thread_local! {
        static LOCAL: Local = Local::default();
    }

    fn record(local: &Local, which: Which, name: &'static str, n: u64) {
        let mut h = local.handles.borrow_mut();
        h.counters[which as usize]
            .entry(name.as_ptr() as usize)
            .or_insert_with(|| match which {
                Which::In => metrics::counter!("gonet_messages_in_total", "message" => name),
                Which::Out => metrics::counter!("gonet_messages_out_total", "message" => name),
            })
            .increment(n);
    }

    /// Counts `n` messages `name` (names are `&'static str`: their address is their
    /// identity here).
    pub(super) fn count(which: Which, name: &'static str, n: u64) {
        LOCAL.with(|local| {
            if !local.in_batch.get() {
                return record(local, which, name, n);
            }
            let slot = &local.pending[which as usize];
            match slot.get() {
                (Some(last), k) if std::ptr::eq(last, name) => slot.set((Some(last), k + n)),
                (last, k) => {
                    if let Some(last) = last {
                        record(local, which, last, k);
                    }
                    slot.set((Some(name), n));
                }
            }
        });
    }

    /// Runs `f` as one batch: the counts it makes are recorded when it ends.
    pub(super) fn batch<R>(f: impl FnOnce() -> R) -> R {
        /// Records what waits, even if `f` unwinds.
        struct End;
        impl Drop for End {
            fn drop(&mut self) {
                let _ = LOCAL.try_with(|local| {
                    local.in_batch.set(false);
                    for which in [Which::In, Which::Out] {
                        if let (Some(name), n) = local.pending[which as usize].take() {
                            record(local, which, name, n);
                        }
                    }
                });
            }
        }
        if LOCAL.with(|local| local.in_batch.replace(true)) {
            // Already in one (not expected): the outer batch records.
            return f();
        }
        let _end = End;
        f()
    }

    /// Records a handler's time.
    pub(super) fn handler_time(name: &'static str, seconds: f64) {
        LOCAL.with(|local| {
            local
                .handles
                .borrow_mut()
                .histograms
                .entry(name.as_ptr() as usize)
                .or_insert_with(|| metrics::histogram!("gonet_handler_seconds", "message" => name))
                .record(seconds);
        });
    }

    /// Records bytes read (`written` false) or one write of `bytes` bytes.
    pub(super) fn bytes(transport: Transport, written: bool, bytes: u64) {
        LOCAL.with(|local| {
            let mut h = local.handles.borrow_mut();
            let scheme = transport.scheme();
            let Some(slot) = h.bytes.get_mut(transport as usize) else {
                return;
            };
            let (bytes_in, bytes_out, writes) = slot.get_or_insert_with(|| {
                (
                    metrics::counter!("gonet_bytes_in_total", "transport" => scheme),
                    metrics::counter!("gonet_bytes_out_total", "transport" => scheme),
                    metrics::histogram!("gonet_outbound_queue_bytes", "transport" => scheme),
                )
            });
            if written {
                bytes_out.increment(bytes);
                writes.record(bytes as f64);
            } else {
                bytes_in.increment(bytes);
            }
        });
    }
}

/// Runs `f`, one batch of a session's messages: while metrics are on, the per-message
/// counts it makes are added up and recorded when it ends.
#[inline]
pub(crate) fn batch<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(feature = "metrics")]
    if on() {
        return cache::batch(f);
    }
    f()
}

/// One message in this many of a batch has its handler timed (the first of each batch
/// always): a clock read and a histogram sample per message cost about as much as a
/// small message itself.
pub(crate) const TIME_ONE_IN: u32 = 16;

/// A message arrived for a handler.
pub(crate) fn message_in(name: &'static str) {
    when_on! {
        cache::count(cache::Which::In, name, 1);
    }
    let _ = name;
}

/// A message was queued for a peer (a send, a reply, a call).
pub(crate) fn message_out(name: &'static str) {
    when_on! {
        cache::count(cache::Which::Out, name, 1);
    }
    let _ = name;
}

/// A broadcast was queued for `recipients` sessions.
pub(crate) fn broadcast(name: &'static str, recipients: usize) {
    when_on! {
        metrics::counter!("gonet_broadcasts_total", "message" => name).increment(1);
        metrics::counter!("gonet_broadcast_deliveries_total", "message" => name).increment(recipients as u64);
    }
    let _ = (name, recipients);
}

/// A handler took `seconds`.
pub(crate) fn handler_time(name: &'static str, seconds: f64) {
    when_on! {
        cache::handler_time(name, seconds);
    }
    let _ = (name, seconds);
}

/// Bytes read from a peer.
pub(crate) fn bytes_in(transport: Transport, bytes: u64) {
    when_on! {
        cache::bytes(transport, false, bytes);
    }
    let _ = (transport, bytes);
}

/// Bytes handed to a connection in one write, all that was queued then.
pub(crate) fn bytes_out(transport: Transport, bytes: usize) {
    when_on! {
        cache::bytes(transport, true, bytes as u64);
    }
    let _ = (transport, bytes);
}

/// Messages waiting behind running handlers, over all sessions, went up or down.
pub(crate) fn inbound_waiting(delta: f64) {
    when_on! {
        metrics::gauge!("gonet_inbound_waiting").increment(delta);
    }
    let _ = delta;
}

/// A session stopped reading because its inbound queue was full (`inbound`), or was
/// closed because its outbound queue was (`outbound`).
pub(crate) fn backpressure(side: &'static str) {
    when_on! {
        metrics::counter!("gonet_backpressure_total", "side" => side).increment(1);
    }
    let _ = side;
}

/// A datagram was dropped on arrival (UDP's full inbound queue).
#[cfg_attr(not(feature = "udp"), allow(dead_code, reason = "udp only"))]
pub(crate) fn dropped(transport: Transport) {
    when_on! {
        metrics::counter!("gonet_dropped_total", "transport" => transport.scheme()).increment(1);
    }
    let _ = transport;
}

/// A message went past its session's rate limit.
pub(crate) fn rate_limited(name: &'static str) {
    when_on! {
        metrics::counter!("gonet_rate_limited_total", "message" => name).increment(1);
    }
    let _ = name;
}

/// A connection was refused before it became a session.
pub(crate) fn connection_refused(reason: &'static str) {
    when_on! {
        metrics::counter!("gonet_connections_refused_total", "reason" => reason).increment(1);
    }
    let _ = reason;
}

/// A handshake was refused.
pub(crate) fn handshake_refused() {
    when_on! {
        metrics::counter!("gonet_handshakes_refused_total").increment(1);
    }
}

/// A key of a JSON body matched no field of message `name` and was skipped.
#[cfg_attr(not(feature = "json"), allow(dead_code, reason = "json only"))]
pub(crate) fn json_key_ignored(name: &'static str) {
    when_on! {
        metrics::counter!("gonet_codec_ignored_keys_total", "message" => name).increment(1);
    }
    let _ = name;
}

/// A handler panicked.
pub(crate) fn panicked(name: &'static str) {
    when_on! {
        metrics::counter!("gonet_handler_panics_total", "message" => name).increment(1);
    }
    let _ = name;
}

/// A resumable session's connection dropped, came back, or was given up.
pub(crate) fn link_event(event: &'static str) {
    when_on! {
        metrics::counter!("gonet_link_events_total", "event" => event).increment(1);
    }
    let _ = event;
}
