//! KCP (`kcp://host:port`): a reliable, ordered byte stream over UDP through tokio_kcp,
//! framed like TCP. Plain KCP (no FEC, no encryption) interoperates with Go's kcp-go.
//!
//! tokio_kcp 0.9.8 falls short in places; this adapter works around each:
//!
//! | problem in tokio_kcp | what gonet does |
//! |---|---|
//! | every write waits for the next update tick (~40 ms a round trip by default) | [`KcpSettings::fast`] turns on `nodelay`, a 10 ms interval, fast resend, no congestion window, `flush_write` and `flush_acks_input`, and the writer flushes after every batch |
//! | no end of stream: closing a `KcpStream` sends nothing | a session that closes sends a bye packet (a reserved-id frame), so its peer ends at once |
//! | a client never notices a dead or restarted server (it retransmits forever) | gonet heartbeats are on by default on KCP (ping after 5 s of silence, close after 15 s): both ends close a silent peer with `CloseReason::IdleTimeout` |
//! | a client's tasks outlive a dead server: they retransmit until acknowledged, forever | the client side is replaced: gonet drives the `kcp` protocol crate itself (module `client`), and the engine stops with its session |
//! | the listener makes a session for any datagram of 24+ bytes | the server's session limit bounds them, sessions that never send a packet end at the idle timeout, and tokio_kcp's own expiry is set to the idle timeout |
//! | the send queue is bounded only by the KCP window | gonet's outbound queue stays the bound: a write that cannot enter the window waits, and a peer that acknowledges nothing for the write timeout is closed as slow |
//!
//! So the server side is tokio_kcp's `KcpListener`, the client side is gonet's own.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt, ReadHalf};
use tokio_kcp::{KcpConfig, KcpListener, KcpNoDelayConfig, KcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod client;

use super::{Listening, TransportSettings};
use crate::driver;
use crate::driver::link::{FrameSink, StreamSink, StreamSource};
use crate::session::outbound::{Batch, OutQueue};
use crate::session::{CloseReason, Session};
use crate::settings::Shared;
use crate::transport::error::{DialError, ServeError};
use crate::url::{Transport, Url};
use crate::wire;

/// KCP tuning. Both ends should use the same settings.
///
/// ```
/// # #[cfg(feature = "kcp")] {
/// let mut settings = gonet::KcpSettings::fast();
/// settings.mtu = 1200;
/// let builder = gonet::Builder::new().kcp(settings);
/// # let _ = builder;
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KcpSettings {
    /// Send segments without waiting for the next tick and resend early.
    pub nodelay: bool,
    /// The internal update interval in milliseconds (10 to 100).
    pub interval_ms: u32,
    /// Resend a segment after this many later segments were acknowledged (0: off).
    pub fast_resend: u32,
    /// Turn off KCP's congestion window (only the send and receive windows limit).
    pub no_congestion_control: bool,
    /// Send window in segments.
    pub send_window: u16,
    /// Receive window in segments.
    pub recv_window: u16,
    /// Maximum transmission unit: the largest UDP payload KCP sends.
    pub mtu: usize,
}

impl Default for KcpSettings {
    fn default() -> Self {
        Self::fast()
    }
}

impl KcpSettings {
    /// The fast preset (the default): nodelay, 10 ms interval, fast resend after 2, no
    /// congestion window, 512-segment windows, 1,400-byte MTU. Latency is about one
    /// network round trip; bandwidth use is higher than TCP's on a lossy path.
    pub const fn fast() -> Self {
        Self {
            nodelay: true,
            interval_ms: 10,
            fast_resend: 2,
            no_congestion_control: true,
            send_window: 512,
            recv_window: 512,
            mtu: 1400,
        }
    }

    /// KCP's conservative preset: no nodelay, 40 ms interval, congestion control on.
    pub const fn normal() -> Self {
        Self {
            nodelay: false,
            interval_ms: 40,
            fast_resend: 0,
            no_congestion_control: false,
            send_window: 256,
            recv_window: 256,
            mtu: 1400,
        }
    }

    pub(crate) fn to_config(self, expire: Duration) -> KcpConfig {
        KcpConfig {
            mtu: self.mtu,
            nodelay: KcpNoDelayConfig {
                nodelay: self.nodelay,
                interval: self.interval_ms.clamp(10, 5000) as i32,
                resend: self.fast_resend.min(i32::MAX as u32) as i32,
                nc: self.no_congestion_control,
            },
            wnd_size: (self.send_window, self.recv_window),
            session_expire: expire,
            // Push every write out now instead of at the next tick, and acknowledge at
            // once: otherwise each round trip costs an update interval or two.
            flush_write: true,
            flush_acks_input: true,
            // Stream mode packs small frames into full segments.
            stream: true,
            allow_recv_empty_packet: false,
        }
    }
}

fn config(shared: &Shared, kcp: &KcpSettings) -> KcpConfig {
    let (_, idle) = crate::settings::default_heartbeat(Transport::Kcp);
    let expire = shared
        .settings
        .idle_timeout
        .filter(|d| !d.is_zero())
        .or(idle)
        .unwrap_or(Duration::from_secs(90));
    kcp.to_config(expire)
}

pub(super) async fn listen(
    url: &Url,
    raw: &str,
    shared: Arc<Shared>,
    options: &TransportSettings,
    stop: CancellationToken,
    tracker: TaskTracker,
) -> Result<Listening, ServeError> {
    let bind_err = |source| ServeError::Bind {
        url: raw.to_owned(),
        source,
    };
    let socket = tokio::net::UdpSocket::bind(url.authority())
        .await
        .map_err(bind_err)?;
    let local_addr = socket.local_addr().map_err(bind_err)?;
    let listener = KcpListener::from_socket(config(&shared, &options.kcp), socket)
        .await
        .map_err(|e| bind_err(io::Error::from(e)))?;
    // Dropping a KcpListener closes every session it made at once, before a bye could
    // be sent; a stopping server keeps it until its sessions have closed.
    let keep = Arc::new(std::sync::Mutex::new(None));
    let mut listening = Listening::spawn(
        Transport::Kcp,
        local_addr,
        accept_loop(listener, local_addr, shared, stop, tracker, keep.clone()),
    );
    listening.finish = Some(Box::pin(async move {
        drop(keep.lock().unwrap_or_else(|e| e.into_inner()).take());
    }));
    Ok(listening)
}

async fn accept_loop(
    mut listener: KcpListener,
    local: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
    tracker: TaskTracker,
    keep: Arc<std::sync::Mutex<Option<KcpListener>>>,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.cancelled() => {
                *keep.lock().unwrap_or_else(|e| e.into_inner()) = Some(listener);
                return;
            }
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let session = Session::new(shared.clone(), peer, local, Transport::Kcp);
                if let Some(pool) = &shared.pool {
                    if let Err(why) = pool.try_insert(&session) {
                        pool.refused(peer, why);
                        continue;
                    }
                }
                start(session, stream, Some(&tracker));
            }
            Err(err) => {
                tracing::warn!(error = %err, "kcp accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

fn start(session: Session, stream: KcpStream, tracker: Option<&TaskTracker>) {
    let (reader, writer) = tokio::io::split(stream);
    let source: StreamSource<ReadHalf<KcpStream>> = StreamSource::for_session(reader, &session);
    let sink = KcpSink {
        stream: StreamSink::new(writer),
    };
    driver::spawn(session, source, sink, tracker);
}

pub(super) async fn dial(
    url: &Url,
    raw: &str,
    shared: Arc<Shared>,
    options: &TransportSettings,
) -> Result<Session, DialError> {
    let connect_err = |source| DialError::Connect {
        url: raw.to_owned(),
        source,
    };
    let target = tokio::net::lookup_host(url.authority())
        .await
        .map_err(connect_err)?
        .next()
        .ok_or_else(|| connect_err(io::Error::new(io::ErrorKind::NotFound, "no address")))?;
    let bind = super::client_bind_addr(target).await.map_err(connect_err)?;
    let socket = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(connect_err)?;
    socket.connect(target).await.map_err(connect_err)?;
    let local = socket.local_addr().map_err(connect_err)?;
    let session = Session::new(shared.clone(), target, local, Transport::Kcp);
    let (source, sink) =
        client::connect(socket, options.kcp, session.max_frame_len()).map_err(connect_err)?;
    // KCP has no handshake: a pong (which a reader ignores), sent first, makes the
    // server's session start now rather than at the first message. Not to a plain peer.
    if session.may_extend() {
        let _ = session.queue_frame(wire::encode_control(wire::ID_PONG));
    }
    driver::spawn(session.clone(), source, sink, None);
    Ok(session)
}

/// A KCP stream sink: writes like any stream, and says bye on close because KCP has no
/// end of stream.
struct KcpSink<W> {
    stream: StreamSink<W>,
}

impl<W: AsyncWrite + Unpin + Send + 'static> FrameSink for KcpSink<W> {
    async fn take(&mut self, out: &OutQueue) -> Batch {
        self.stream.take(out).await
    }

    fn pending(&self) -> usize {
        self.stream.pending()
    }

    async fn write(&mut self) -> io::Result<()> {
        self.stream.write().await
    }

    async fn shutdown(&mut self, _: Option<&CloseReason>, bye: bool) {
        if bye {
            let writer = self.stream.writer_mut();
            let _ = writer.write_all(&wire::encode_control(wire::ID_BYE)).await;
            let _ = writer.flush().await;
        }
    }
}
