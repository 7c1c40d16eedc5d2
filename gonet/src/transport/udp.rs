//! UDP (`udp://host:port`): one gonet packet per datagram.
//!
//! **UDP loses and reorders.** A datagram may never arrive, may arrive twice, and two
//! datagrams may arrive in the other order; gonet does not retransmit or reorder them.
//! Messages of one session are still *handled* in the order they *arrived*, but that
//! may not be the order they were sent. Use it for data where the latest value wins
//! (positions, telemetry); use KCP or QUIC for reliable, ordered delivery over UDP.
//! A [`Session::call`] over UDP fails with a timeout when either datagram is lost.
//!
//! - The server has one socket. The first well-formed packet from an address starts a
//!   session for it (a datagram that is not a packet starts nothing), up to the
//!   server's session limit.
//! - The receive loop never waits for a session: when a session's inbound queue is
//!   full, the datagram is **dropped** for that session only, counted in
//!   [`SessionStats::dropped`](crate::SessionStats) and reported to the error hook.
//!   Closing the session instead would turn a burst into a disconnect, and
//!   backpressure is impossible: the one socket is shared by every session.
//! - A datagram that is not exactly one packet, or is longer than the frame limit, is
//!   reported and skipped; the session goes on (the next datagram is independent).
//! - Sessions have no connection to lose, so by default a peer is pinged after 5 s of
//!   silence and its session ends after 15 s with
//!   [`CloseReason::IdleTimeout`](crate::CloseReason::IdleTimeout) (see
//!   `Builder::heartbeat` and `Builder::idle_timeout`). A session closed on purpose
//!   sends a bye packet, so its peer learns at once.
//! - A datagram carries at most 65,507 bytes, so a UDP session's frame limit is at most
//!   65,505 (sends over it fail with `SendError::TooLarge`). On real networks keep
//!   messages under about 1,400 bytes: a larger datagram is fragmented, and losing any
//!   fragment loses all of it. `Builder::max_frame_len` lowers the limit for both
//!   directions.
//! - A client dials with a connected socket: the kernel drops datagrams from other
//!   addresses, and a closed server port is reported (ICMP) as the peer closing.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Listening;
use crate::driver;
use crate::driver::link::{FrameSink, MessageBatch, PacketSource, ReadEnd};
use crate::session::error::SessionErrorKind;
use crate::session::limit::Refusal;
use crate::session::outbound::{Batch, OutQueue};
use crate::session::{CloseReason, Session};
use crate::settings::Shared;
use crate::transport::error::{DialError, ServeError};
use crate::url::{Transport, Url};
use crate::wire;
use crate::wire::frame::{Packet, split_message};

/// Room for the largest UDP payload, so that no datagram is silently truncated.
const RECV_BUF: usize = 64 * 1024;

pub(super) async fn listen(
    url: &Url,
    raw: &str,
    shared: Arc<Shared>,
    stop: CancellationToken,
    tracker: TaskTracker,
) -> Result<Listening, ServeError> {
    let bind_err = |source| ServeError::Bind {
        url: raw.to_owned(),
        source,
    };
    let socket = UdpSocket::bind(url.authority()).await.map_err(bind_err)?;
    let local_addr = socket.local_addr().map_err(bind_err)?;
    Ok(Listening::spawn(
        Transport::Udp,
        local_addr,
        recv_loop(Arc::new(socket), shared, stop, tracker),
    ))
}

/// The receive loop's view of one session.
struct Peer {
    tx: mpsc::Sender<Bytes>,
    session: Session,
}

async fn recv_loop(
    socket: Arc<UdpSocket>,
    shared: Arc<Shared>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    let local = match socket.local_addr() {
        Ok(addr) => addr,
        Err(err) => {
            tracing::error!(error = %err, "udp socket has no local address");
            return;
        }
    };
    let mut peers: HashMap<SocketAddr, Peer> = HashMap::new();
    let mut sweep_at = 1024;
    let mut buf = vec![0u8; RECV_BUF];
    loop {
        let received = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            received = socket.recv_from(&mut buf) => received,
        };
        let (len, from) = match received {
            Ok(r) => r,
            Err(err) => {
                // An ICMP error for an earlier send (a client that went away) shows up
                // here on some systems; it concerns one peer, never the socket.
                tracing::debug!(error = %err, "udp receive error");
                continue;
            }
        };
        // One small copy into an exact-size buffer: receiving in place would need room
        // for the largest datagram each time, and every queued datagram would pin it.
        let datagram = Bytes::copy_from_slice(&buf[..len]);
        if let Some(peer) = peers.get(&from) {
            if !peer.tx.is_closed() {
                offer(peer, datagram);
                continue;
            }
            peers.remove(&from);
        }
        // A new address: only a well-formed packet starts a session, so stray or
        // spoofed datagrams cost nothing but this check.
        if let Err(err) = split_message(datagram.clone(), shared.settings.max_frame_len) {
            tracing::debug!(%from, error = %err, "datagram from an unknown address ignored");
            continue;
        }
        if peers.len() >= sweep_at {
            peers.retain(|_, p| !p.tx.is_closed());
            sweep_at = (peers.len() * 2).max(1024);
        }
        if let Some(pool) = &shared.pool {
            // Cheap refusal first: a flood from new addresses must not cost a session
            // each while the server is full.
            if pool.len() >= pool.limit() {
                pool.refused(from, Refusal::Full);
                continue;
            }
        }
        let session = Session::new(shared.clone(), from, local, Transport::Udp);
        if let Some(pool) = &shared.pool {
            if let Err(why) = pool.try_insert(&session) {
                pool.refused(from, why);
                continue;
            }
        }
        let (tx, rx) = mpsc::channel(shared.settings.inbound_queue);
        let source = QueueSource {
            rx,
            max_frame_len: session.max_frame_len(),
        };
        let sink = UdpSink {
            socket: socket.clone(),
            to: Some(from),
            batch: MessageBatch::default(),
        };
        driver::spawn(session.clone(), source, sink, Some(&tracker));
        let peer = Peer { tx, session };
        offer(&peer, datagram);
        peers.insert(from, peer);
    }
}

/// Hands a datagram to its session without waiting: a full queue drops it.
fn offer(peer: &Peer, datagram: Bytes) {
    if let Err(mpsc::error::TrySendError::Full(_)) = peer.tx.try_send(datagram) {
        let dropped = peer
            .session
            .inner
            .counters
            .dropped
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        crate::telemetry::dropped(Transport::Udp);
        // Report the 1st, 2nd, 4th, 8th... drop: a flood must not flood the log too.
        if dropped.is_power_of_two() {
            peer.session.report(SessionErrorKind::Dropped { dropped });
        }
    }
}

/// Datagrams of one server-side session, handed over by the receive loop.
struct QueueSource {
    rx: mpsc::Receiver<Bytes>,
    max_frame_len: usize,
}

impl PacketSource for QueueSource {
    fn try_next(&mut self, session: &Session) -> Option<Result<Packet, ReadEnd>> {
        loop {
            let datagram = self.rx.try_recv().ok()?;
            match split_message(datagram, self.max_frame_len) {
                Ok(packet) => return Some(Ok(packet)),
                Err(err) => {
                    session.report(SessionErrorKind::Frame(err));
                }
            }
        }
    }

    async fn next_packet(&mut self, session: &Session) -> Result<Packet, ReadEnd> {
        loop {
            // Cancel safe: a datagram leaves the channel only in a completed poll.
            let Some(datagram) = self.rx.recv().await else {
                // Only a stopping server drops the sending side.
                return Err(ReadEnd::Closed(CloseReason::ServerShutdown));
            };
            match split_message(datagram, self.max_frame_len) {
                Ok(packet) => return Ok(packet),
                Err(err) => {
                    session.report(SessionErrorKind::Frame(err));
                }
            }
        }
    }
}

pub(super) async fn dial(url: &Url, raw: &str, shared: Arc<Shared>) -> Result<Session, DialError> {
    let connect_err = |source| DialError::Connect {
        url: raw.to_owned(),
        source,
    };
    let target = tokio::net::lookup_host(url.authority())
        .await
        .map_err(connect_err)?
        .next()
        .ok_or_else(|| {
            connect_err(io::Error::new(
                io::ErrorKind::NotFound,
                "host has no address",
            ))
        })?;
    let any: SocketAddr = if target.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(any).await.map_err(connect_err)?;
    socket.connect(target).await.map_err(connect_err)?;
    let local = socket.local_addr().map_err(connect_err)?;
    let socket = Arc::new(socket);
    let session = Session::new(shared, target, local, Transport::Udp);
    let source = SocketSource {
        socket: socket.clone(),
        buf: vec![0u8; RECV_BUF],
        max_frame_len: session.max_frame_len(),
    };
    let sink = UdpSink {
        socket,
        to: None,
        batch: MessageBatch::default(),
    };
    driver::spawn(session.clone(), source, sink, None);
    Ok(session)
}

/// A client's connected socket.
struct SocketSource {
    socket: Arc<UdpSocket>,
    buf: Vec<u8>,
    max_frame_len: usize,
}

impl PacketSource for SocketSource {
    async fn next_packet(&mut self, session: &Session) -> Result<Packet, ReadEnd> {
        loop {
            // Cancel safe: a datagram is taken only by a completed receive.
            let received = self.socket.recv(&mut self.buf).await;
            if let Some(next) = self.packet(received, session) {
                return next;
            }
        }
    }

    fn try_next(&mut self, session: &Session) -> Option<Result<Packet, ReadEnd>> {
        // Datagrams already received, so that a batch of them is handled together.
        loop {
            let received = match self.socket.try_recv(&mut self.buf) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return None,
                received => received,
            };
            if let Some(next) = self.packet(received, session) {
                return Some(next);
            }
        }
    }
}

impl SocketSource {
    /// The packet in a received datagram; `None` for a bad one (reported and skipped).
    fn packet(
        &self,
        received: io::Result<usize>,
        session: &Session,
    ) -> Option<Result<Packet, ReadEnd>> {
        match received {
            Ok(len) => {
                let datagram = Bytes::copy_from_slice(&self.buf[..len]);
                match split_message(datagram, self.max_frame_len) {
                    Ok(packet) => Some(Ok(packet)),
                    Err(err) => {
                        session.report(SessionErrorKind::Frame(err));
                        None
                    }
                }
            }
            // The server's port is closed: it is gone.
            Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {
                Some(Err(ReadEnd::Closed(CloseReason::PeerClosed)))
            }
            Err(err) => Some(Err(SessionErrorKind::Io(err).into())),
        }
    }
}

/// Sends each frame as one datagram: to `to` on the shared server socket, or on the
/// client's connected socket.
struct UdpSink {
    socket: Arc<UdpSocket>,
    to: Option<SocketAddr>,
    batch: MessageBatch,
}

impl UdpSink {
    async fn send(&self, datagram: &[u8]) -> io::Result<()> {
        let sent = match self.to {
            Some(to) => self.socket.send_to(datagram, to).await,
            None => self.socket.send(datagram).await,
        };
        match sent {
            Ok(_) => Ok(()),
            // The peer's port is closed (ICMP); the datagram is lost as UDP allows, and
            // the session ends by its idle timeout or its peer's bye.
            Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => Ok(()),
            Err(err) => Err(err),
        }
    }
}

impl FrameSink for UdpSink {
    async fn take(&mut self, out: &OutQueue) -> Batch {
        self.batch.take(out).await
    }

    fn pending(&self) -> usize {
        self.batch.bytes
    }

    async fn write(&mut self) -> io::Result<()> {
        let mut frames = std::mem::take(&mut self.batch.frames);
        let mut result = Ok(());
        for frame in frames.drain(..) {
            result = self.send(&frame).await;
            if result.is_err() {
                break;
            }
        }
        frames.clear();
        self.batch.frames = frames;
        result
    }

    async fn shutdown(&mut self, _: Option<&CloseReason>, bye: bool) {
        if !bye {
            return;
        }
        let bye = wire::encode_control(wire::ID_BYE);
        let _ = tokio::time::timeout(Duration::from_secs(1), self.send(&bye)).await;
    }
}
