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
/// message itself; a handle, once had, is an atomic add.
#[cfg(feature = "metrics")]
mod cache {
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// Which per-message metric.
    #[derive(Clone, Copy, PartialEq, Eq, Hash)]
    pub(super) enum Which {
        In,
        Out,
    }

    #[derive(Default)]
    struct Handles {
        counters: HashMap<(Which, usize), metrics::Counter>,
        histograms: HashMap<usize, metrics::Histogram>,
    }

    thread_local! {
        static HANDLES: RefCell<Handles> = RefCell::new(Handles::default());
    }

    /// The counter `which` of message `name` (names are `&'static str`: their address
    /// is their identity here).
    pub(super) fn count(which: Which, name: &'static str, n: u64) {
        HANDLES.with(|h| {
            let mut h = h.borrow_mut();
            let counter = h
                .counters
                .entry((which, name.as_ptr() as usize))
                .or_insert_with(|| match which {
                    Which::In => metrics::counter!("gonet_messages_in_total", "message" => name),
                    Which::Out => metrics::counter!("gonet_messages_out_total", "message" => name),
                });
            counter.increment(n);
        });
    }

    /// Records a handler's time.
    pub(super) fn handler_time(name: &'static str, seconds: f64) {
        HANDLES.with(|h| {
            let mut h = h.borrow_mut();
            h.histograms
                .entry(name.as_ptr() as usize)
                .or_insert_with(|| metrics::histogram!("gonet_handler_seconds", "message" => name))
                .record(seconds);
        });
    }
}

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
        metrics::counter!("gonet_bytes_in_total", "transport" => transport.scheme()).increment(bytes);
    }
    let _ = (transport, bytes);
}

/// Bytes handed to a connection in one write, all that was queued then.
pub(crate) fn bytes_out(transport: Transport, bytes: usize) {
    when_on! {
        metrics::counter!("gonet_bytes_out_total", "transport" => transport.scheme()).increment(bytes as u64);
        metrics::histogram!("gonet_outbound_queue_bytes", "transport" => transport.scheme()).record(bytes as f64);
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
