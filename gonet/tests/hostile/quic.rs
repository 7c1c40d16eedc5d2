//! QUIC: one session's inbound bound holds whatever the number of channels its peer
//! opens.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use gonet::{Codec, Session};

use crate::canary;
use crate::canary::{Say, SayAck};
use crate::support::{Seq, until, within};

const QUEUE: usize = 8;
const CHANNELS: u32 = 16;
const PER_CHANNEL: u64 = 50;

/// A router whose `Seq` handler waits until `gate` opens, then logs the message's
/// number; `Say` is echoed at once (the canary).
fn gated_router(
    gate: tokio::sync::watch::Receiver<bool>,
    entered: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<u64>>>,
) -> gonet::Router {
    gonet::Router::new()
        .route(|_: Session, msg: Say| async move {
            SayAck {
                content: msg.content,
            }
        })
        .route(move |_: Session, msg: Seq| {
            let mut gate = gate.clone();
            let entered = entered.clone();
            let log = log.clone();
            async move {
                entered.fetch_add(1, Ordering::SeqCst);
                let _ = gate.wait_for(|open| *open).await;
                log.lock().unwrap().push(msg.n);
            }
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_flood_is_held_to_the_sessions_inbound_bound() {
    let (open, gate) = tokio::sync::watch::channel(false);
    let entered = Arc::new(AtomicUsize::new(0));
    let log = Arc::new(Mutex::new(Vec::new()));
    let server = gonet::Builder::new()
        .codec(Codec::Json)
        .inbound_queue(QUEUE)
        .quic_max_channels(CHANNELS)
        .router(gated_router(gate, entered.clone(), log.clone()))
        .serve("quic://127.0.0.1:0")
        .await
        .expect("serve");
    let canary = canary::quic_client(&server, Codec::Json).await;
    canary::still_served(&canary, "the start").await;

    let attacker = canary::quic_client(&server, Codec::Json).await;
    let mut channels = Vec::new();
    for _ in 0..CHANNELS {
        channels.push(
            within("a channel", attacker.open_channel())
                .await
                .expect("open"),
        );
    }
    // The limit is the server's: the next channel is not granted.
    assert!(
        attacker.open_channel().now_or_never().is_none(),
        "a channel past the limit of {CHANNELS} was opened"
    );
    for (c, channel) in channels.iter().enumerate() {
        for i in 0..PER_CHANNEL {
            let n = c as u64 * 1_000 + i;
            channel
                .send(&Seq {
                    n,
                    pad: "x".repeat(200),
                })
                .expect("queued on the channel");
        }
    }

    let session = {
        let local = attacker.local_addr();
        let found = server
            .pool()
            .sessions()
            .into_iter()
            .find(|s| s.peer_addr() == local);
        found.expect("the attacker's session on the server")
    };
    // Every channel's reader has a handler waiting, and the session's queue is full:
    // from here on nothing more may be read.
    until("a handler running on every channel", || {
        entered.load(Ordering::SeqCst) == CHANNELS as usize
    })
    .await;
    let bound = QUEUE as u64 + CHANNELS as u64;
    until("the session's queue to fill", || {
        session.stats().received >= bound
    })
    .await;
    canary::still_served(&canary, "a channel flood").await;
    canary::still_served(&canary, "a channel flood, twice").await;
    // The documented bound: `inbound_queue` waiting in all, one running per channel,
    // and one more per channel read at the same moment as another's.
    let held = session.stats().received - session.stats().handled;
    assert!(
        held < bound + u64::from(CHANNELS),
        "the session holds {held} messages; its bound is {bound} (+{} at most)",
        CHANNELS - 1
    );

    // Released, everything sent is handled, in order on each channel.
    open.send(true).expect("the gate is watched");
    let total = u64::from(CHANNELS) * PER_CHANNEL;
    until("every message handled", || {
        log.lock().unwrap().len() as u64 == total
    })
    .await;
    let mut per_channel: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for n in log.lock().unwrap().iter() {
        per_channel.entry(n / 1_000).or_default().push(n % 1_000);
    }
    assert_eq!(per_channel.len(), CHANNELS as usize);
    for (c, ns) in per_channel {
        assert_eq!(ns, (0..PER_CHANNEL).collect::<Vec<_>>(), "channel {c}");
    }
    assert!(!session.is_closed(), "the flooding session is still open");
    canary::still_served(&canary, "the flood was released").await;
    drop(channels);
    attacker.close("done");
    canary.close("done");
    within("shutdown", server.shutdown()).await;
}

async fn quic_echo_server(timeout: std::time::Duration) -> gonet::Server {
    gonet::Builder::new()
        .codec(Codec::Json)
        .router(canary::echo_router())
        .max_pending_handshakes(4)
        .handshake_timeout(timeout)
        .serve("quic://127.0.0.1:0")
        .await
        .expect("serve")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_handshakes_past_the_limit_are_refused_and_stalled_ones_time_out() {
    // Pending handshakes are held up to the limit; the next is refused.
    let server = quic_echo_server(std::time::Duration::from_secs(600)).await;
    let canary = canary::quic_client(&server, Codec::Json).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(canary::raw_quic(&server).await.expect("under the limit"));
    }
    match canary::raw_quic(&server).await {
        Err(quinn::ConnectionError::ConnectionClosed(close)) => {
            assert_eq!(
                close.error_code,
                quinn::TransportErrorCode::CONNECTION_REFUSED
            );
        }
        Err(other) => panic!("refused with {other}"),
        Ok(_) => panic!("a handshake past the limit of 4 was accepted"),
    }
    canary::still_served(&canary, "a QUIC handshake flood").await;
    // They leave: their places come back.
    for (endpoint, conn) in held.drain(..) {
        conn.close(0u32.into(), b"bye");
        endpoint.wait_idle().await;
    }
    let late = within("a client after the flood", async {
        loop {
            if let Ok(session) = canary::dial_trusting(&server).await {
                return session;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    canary::still_served(&late, "the flood ended").await;
    late.close("done");
    canary.close("done");
    within("shutdown", server.shutdown()).await;

    // A connection that never opens its stream is closed at the handshake timeout.
    let server = quic_echo_server(std::time::Duration::from_millis(300)).await;
    let canary = canary::quic_client(&server, Codec::Json).await;
    let (_endpoint, conn) = canary::raw_quic(&server).await.expect("under the limit");
    match within("the stalled connection to be closed", conn.closed()).await {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(&close.reason[..], b"handshake timeout");
        }
        other => panic!("closed with {other}"),
    }
    canary::still_served(&canary, "a stalled QUIC handshake").await;
    canary.close("done");
    within("shutdown", server.shutdown()).await;
}
