//! UDP (`udp://host:port`): one gonet packet per datagram.
//!
//! **UDP loses and reorders.** A datagram may never arrive, may arrive twice, and two
//! datagrams may arrive in the other order; gonet does not retransmit or reorder them.
//! Messages of one session are still *handled* in the order they *arrived*, but that
//! may not be the order they were sent. Use it for data where the latest value wins
//! (positions, telemetry); use KCP or QUIC for reliable, ordered delivery over UDP.
//! A [`Session::call`] over UDP fails with a timeout when either datagram is lost.
//!
//! - The server has one socket, read with `recvmmsg` (up to 32 datagrams a call, through
//!   quinn-udp where the system has it); a session's replies to its peer leave together,
//!   consecutive ones of one size in one `sendmsg` with segmentation offload (GSO). The
//!   first well-formed packet from an address starts a session for it (a datagram that is not a packet starts nothing), up to the
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

/// Datagrams taken by one receive call.
const RECV_BATCH: usize = quinn_udp::BATCH_SIZE;

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
    // Batched reads and segmented sends where the system has them; plain ones else.
    let state = match quinn_udp::UdpSocketState::new((&*socket).into()) {
        Ok(state) => Some(Arc::new(state)),
        Err(err) => {
            tracing::debug!(error = %err, "udp socket without batched reads and sends");
            None
        }
    };
    let mut server = Receiver {
        peers: HashMap::new(),
        sweep_at: 1024,
        socket: socket.clone(),
        state: state.clone(),
        shared,
        local,
        tracker,
    };
    // One buffer per datagram of a batch, each with room for the largest datagram (or
    // for the datagrams of one peer the system coalesced, at most 64 KiB too).
    let slots = if state.is_some() { RECV_BATCH } else { 1 };
    let mut storage = vec![0u8; slots * RECV_BUF];
    let mut meta = [quinn_udp::RecvMeta::default(); RECV_BATCH];
    loop {
        let received = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            received = receive(&socket, state.as_deref(), &mut storage, &mut meta) => received,
        };
        let n = match received {
            Ok(n) => n,
            Err(err) => {
                // An ICMP error for an earlier send (a client that went away) shows up
                // here on some systems; it concerns one peer, never the socket.
                tracing::debug!(error = %err, "udp receive error");
                continue;
            }
        };
        for (m, buf) in meta[..n].iter().zip(storage.chunks(RECV_BUF)) {
            // Datagrams of one peer coalesced by the system come as one buffer of
            // equal parts (the last may be shorter).
            // An empty datagram is one too: its session reports it as malformed.
            if m.len == 0 {
                server.arrived(m.addr, &[]);
                continue;
            }
            let stride = if m.stride == 0 { m.len } else { m.stride };
            for datagram in buf[..m.len].chunks(stride) {
                server.arrived(m.addr, datagram);
            }
        }
    }
}

/// Receives a batch of datagrams into `storage` (one [`RECV_BUF`] slot each), their
/// sizes and senders in `meta`; how many.
async fn receive(
    socket: &UdpSocket,
    state: Option<&quinn_udp::UdpSocketState>,
    storage: &mut [u8],
    meta: &mut [quinn_udp::RecvMeta; RECV_BATCH],
) -> io::Result<usize> {
    let Some(state) = state else {
        let (len, addr) = socket.recv_from(&mut storage[..RECV_BUF]).await?;
        meta[0] = quinn_udp::RecvMeta {
            addr,
            len,
            stride: len,
            ..quinn_udp::RecvMeta::default()
        };
        return Ok(1);
    };
    let mut slots = storage.chunks_mut(RECV_BUF);
    let mut bufs: [io::IoSliceMut<'_>; RECV_BATCH] =
        std::array::from_fn(|_| io::IoSliceMut::new(slots.next().unwrap_or_default()));
    socket
        .async_io(tokio::io::Interest::READABLE, || {
            state.recv(socket.into(), &mut bufs, meta)
        })
        .await
}

/// The receive loop's sessions, and what it needs to start new ones.
struct Receiver {
    peers: HashMap<SocketAddr, Peer>,
    /// The number of peers at which those gone are swept out.
    sweep_at: usize,
    socket: Arc<UdpSocket>,
    state: Option<Arc<quinn_udp::UdpSocketState>>,
    shared: Arc<Shared>,
    local: SocketAddr,
    tracker: TaskTracker,
}

impl Receiver {
    /// Hands a datagram from `from` to its session, starting one for a new address.
    fn arrived(&mut self, from: SocketAddr, datagram: &[u8]) {
        let shared = &self.shared;
        // One small copy into an exact-size buffer: receiving in place would need room
        // for the largest datagram each time, and every queued datagram would pin it.
        let datagram = Bytes::copy_from_slice(datagram);
        if let Some(peer) = self.peers.get(&from) {
            if !peer.tx.is_closed() {
                offer(peer, datagram);
                return;
            }
            self.peers.remove(&from);
        }
        // A new address: only a well-formed packet starts a session, so stray or
        // spoofed datagrams cost nothing but this check.
        if let Err(err) = split_message(datagram.clone(), shared.settings.max_frame_len) {
            tracing::debug!(%from, error = %err, "datagram from an unknown address ignored");
            return;
        }
        if self.peers.len() >= self.sweep_at {
            self.peers.retain(|_, p| !p.tx.is_closed());
            self.sweep_at = (self.peers.len() * 2).max(1024);
        }
        if let Some(pool) = &shared.pool {
            // Cheap refusal first: a flood from new addresses must not cost a session
            // each while the server is full.
            if pool.len() >= pool.limit() {
                pool.refused(from, Refusal::Full);
                return;
            }
        }
        let session = Session::new(shared.clone(), from, self.local, Transport::Udp);
        if let Some(pool) = &shared.pool {
            if let Err(why) = pool.try_insert(&session) {
                pool.refused(from, why);
                return;
            }
        }
        let (tx, rx) = mpsc::channel(shared.settings.inbound_queue);
        let source = QueueSource {
            rx,
            max_frame_len: session.max_frame_len(),
        };
        let sink = UdpSink {
            socket: self.socket.clone(),
            to: Some(from),
            batch: MessageBatch::default(),
            gso: self.state.clone(),
            run: Vec::new(),
        };
        driver::spawn(session.clone(), source, sink, Some(&self.tracker));
        let peer = Peer { tx, session };
        offer(&peer, datagram);
        self.peers.insert(from, peer);
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
        gso: None,
        run: Vec::new(),
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
    /// The server socket's batched sends, where the system has them.
    gso: Option<Arc<quinn_udp::UdpSocketState>>,
    /// Consecutive frames of one size, copied together for one segmented send.
    run: Vec<u8>,
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

    /// Sends `frames` to `to` as one datagram each, consecutive frames of one size in
    /// one segmented send (as many as the system takes at once, 64 KiB at most).
    async fn send_segmented(
        &mut self,
        state: &quinn_udp::UdpSocketState,
        to: SocketAddr,
        frames: &[Bytes],
    ) -> io::Result<()> {
        let most = state.max_gso_segments().max(1);
        let mut rest = frames;
        while !rest.is_empty() {
            let count = run_len(rest, most);
            let (run, later) = rest.split_at(count);
            rest = later;
            let contents: &[u8] = if count == 1 {
                &run[0]
            } else {
                self.run.clear();
                for frame in run {
                    self.run.extend_from_slice(frame);
                }
                &self.run
            };
            let transmit = quinn_udp::Transmit {
                destination: to,
                ecn: None,
                contents,
                segment_size: (count > 1).then_some(run[0].len()),
                src_ip: None,
            };
            let socket = &*self.socket;
            let sent = socket
                .async_io(tokio::io::Interest::WRITABLE, || {
                    state.send(socket.into(), &transmit)
                })
                .await;
            match sent {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {}
                // A system that turns segmentation down at the first try (the library
                // then stops offering it): the same frames one by one.
                Err(err) if count > 1 => {
                    tracing::debug!(error = %err, "segmented udp send refused; sending one by one");
                    for frame in run {
                        self.send(frame).await?;
                    }
                }
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }
}

/// The most bytes one segmented send carries: the largest UDP payload over IPv4.
const MAX_SEGMENTED: usize = 65_507;

/// How many frames from the front of `frames` leave in one send: the consecutive ones of
/// the first one's size, at most `most` of them and [`MAX_SEGMENTED`] bytes together; at
/// least one.
fn run_len(frames: &[Bytes], most: usize) -> usize {
    let Some(first) = frames.first() else {
        return 0;
    };
    let size = first.len();
    let fit = (MAX_SEGMENTED / size.max(1)).clamp(1, most.max(1));
    frames
        .iter()
        .take(fit)
        .take_while(|frame| frame.len() == size)
        .count()
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
        match (self.gso.clone(), self.to) {
            (Some(state), Some(to)) if frames.len() > 1 => {
                result = self.send_segmented(&state, to, &frames).await;
            }
            _ => {
                for frame in &frames {
                    result = self.send(frame).await;
                    if result.is_err() {
                        break;
                    }
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(sizes: &[usize]) -> Vec<Bytes> {
        sizes.iter().map(|&n| Bytes::from(vec![0u8; n])).collect()
    }

    #[test]
    fn a_run_is_the_frames_of_one_size_that_fit_one_datagram_train() {
        assert_eq!(run_len(&frames(&[64, 64, 64, 80, 64]), 64), 3);
        assert_eq!(run_len(&frames(&[80, 64]), 64), 1);
        assert_eq!(
            run_len(&frames(&[64; 100]), 64),
            64,
            "no more than the system takes"
        );
        assert_eq!(
            run_len(&frames(&[64; 10]), 1),
            1,
            "one by one without offload"
        );
        assert_eq!(run_len(&[], 64), 0);
    }

    #[test]
    fn a_run_never_carries_more_than_one_udp_payload() {
        // 64 frames of 1 KiB would be 65,536 bytes: one more than fits.
        let n = run_len(&frames(&[1024; 64]), 64);
        assert_eq!(n, 63);
        assert!(n * 1024 <= MAX_SEGMENTED);
        for size in [1, 100, 1000, 1023, 1024, 1025, 4096, 65_000] {
            let n = run_len(&frames(&vec![size; 200]), 128);
            assert!(n >= 1 && n * size <= MAX_SEGMENTED.max(size), "{size}: {n}");
        }
    }
}
