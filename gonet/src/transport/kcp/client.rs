//! The KCP client, run by gonet over the `kcp` protocol crate instead of tokio_kcp's
//! `KcpStream`.
//!
//! tokio_kcp's client keeps its update and receive tasks alive until every segment it
//! sent has been acknowledged. When the server is gone that never happens: the tasks
//! retransmit and tick (every 10 ms with the fast preset) until the process exits,
//! and a client that redials a dead server piles them up. This engine belongs to its
//! session: when the session's reader and writer are gone, it stops.
//!
//! It speaks plain KCP (a random non-zero conversation id, stream mode), the same as
//! tokio_kcp's `KcpStream::connect` and Go's kcp-go without FEC or encryption.

use std::hash::{BuildHasher, Hasher};
use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use kcp::Kcp;
use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

use super::KcpSettings;
use crate::driver::link::{FrameSink, MAX_BATCH, PacketSource, ReadEnd};
use crate::session::error::SessionErrorKind;
use crate::session::outbound::{Batch, OutQueue};
use crate::session::{CloseReason, Session};
use crate::wire;
use crate::wire::frame::{FrameCodec, Packet};

/// How long a closing client waits for its bye to be acknowledged.
const LINGER: Duration = Duration::from_secs(1);

/// Hands KCP's output to the socket without waiting: a datagram the socket cannot take
/// now is lost, and KCP sends it again.
struct Output(Arc<UdpSocket>);

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.0.try_send(buf) {
            Ok(n) => Ok(n),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::ConnectionRefused
                ) =>
            {
                Ok(buf.len())
            }
            Err(e) => Err(e),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct Engine {
    kcp: Mutex<Kcp<Output>>,
    /// Data arrived: the reader may find a frame.
    readable: Notify,
    /// Acknowledgements arrived: the send window may have room.
    writable: Notify,
    epoch: Instant,
    /// Cancelled when the session no longer reads nor writes: the driver task ends.
    stop: CancellationToken,
}

impl Engine {
    fn lock(&self) -> MutexGuard<'_, Kcp<Output>> {
        // No user code runs under this lock; a poisoned one holds consistent state.
        self.kcp.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> u32 {
        // KCP clocks are u32 milliseconds that wrap; it compares them with wrapping
        // differences.
        self.epoch.elapsed().as_millis() as u32
    }
}

/// Stops the engine when the last of the source and sink is dropped.
struct StopOnDrop(CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

fn random_conv() -> u32 {
    // Non-zero: a zero id asks the server to allocate one, which Go's kcp-go does not.
    loop {
        let conv = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish() as u32;
        if conv != 0 {
            return conv;
        }
    }
}

/// A connected client: the packet source and frame sink of its session.
pub(super) fn connect(
    socket: UdpSocket,
    settings: KcpSettings,
    max_frame_len: usize,
) -> io::Result<(ClientSource, ClientSink)> {
    let socket = Arc::new(socket);
    let mut kcp = Kcp::new_stream(random_conv(), Output(socket.clone()));
    kcp.set_mtu(settings.mtu)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    kcp.set_nodelay(
        settings.nodelay,
        settings.interval_ms.clamp(10, 5000) as i32,
        settings.fast_resend.min(i32::MAX as u32) as i32,
        settings.no_congestion_control,
    );
    kcp.set_wndsize(settings.send_window, settings.recv_window);
    let engine = Arc::new(Engine {
        kcp: Mutex::new(kcp),
        readable: Notify::new(),
        writable: Notify::new(),
        epoch: Instant::now(),
        stop: CancellationToken::new(),
    });
    engine
        .lock()
        .update(engine.now())
        .map_err(|e| io::Error::other(e.to_string()))?;
    tokio::spawn(drive(engine.clone(), socket));
    let stop = Arc::new(StopOnDrop(engine.stop.clone()));
    Ok((
        ClientSource {
            engine: engine.clone(),
            codec: FrameCodec::new(max_frame_len),
            buf: BytesMut::new(),
            _stop: stop.clone(),
        },
        ClientSink {
            engine,
            buf: BytesMut::new(),
            _stop: stop,
        },
    ))
}

/// Feeds datagrams into KCP and runs its timer, until the session is gone.
async fn drive(engine: Arc<Engine>, socket: Arc<UdpSocket>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let wait = {
            let mut kcp = engine.lock();
            let now = engine.now();
            if let Err(err) = kcp.update(now) {
                tracing::debug!(error = %err, "kcp update failed");
            }
            // `check` may name a time already past (then update at once); the clock
            // wraps, so the difference is read as signed.
            (kcp.check(now).wrapping_sub(now) as i32).clamp(0, 100) as u32
        };
        tokio::select! {
            _ = engine.stop.cancelled() => return,
            received = socket.recv(&mut buf) => match received {
                Ok(n) => {
                    let mut kcp = engine.lock();
                    match kcp.input(&buf[..n]) {
                        Ok(_) => {
                            // Acknowledge at once: the peer's next send waits for it.
                            let _ = kcp.flush_ack();
                        }
                        Err(err) => tracing::debug!(error = %err, "kcp datagram ignored"),
                    }
                    drop(kcp);
                    engine.readable.notify_one();
                    engine.writable.notify_one();
                }
                // The server's port is closed; heartbeats end the session.
                Err(err) => tracing::debug!(error = %err, "kcp receive error"),
            },
            _ = tokio::time::sleep(Duration::from_millis(u64::from(wait))) => {}
        }
    }
}

pub(super) struct ClientSource {
    engine: Arc<Engine>,
    codec: FrameCodec,
    buf: BytesMut,
    _stop: Arc<StopOnDrop>,
}

impl PacketSource for ClientSource {
    fn try_next(&mut self, _: &Session) -> Option<Result<Packet, ReadEnd>> {
        match self.codec.decode(&mut self.buf) {
            Ok(Some(packet)) => Some(Ok(packet)),
            Ok(None) => None,
            Err(err) => Some(Err(SessionErrorKind::Frame(err).into())),
        }
    }

    async fn next_packet(&mut self, _: &Session) -> Result<Packet, ReadEnd> {
        loop {
            match self.codec.decode(&mut self.buf) {
                Ok(Some(packet)) => return Ok(packet),
                Ok(None) => {}
                Err(err) => return Err(SessionErrorKind::Frame(err).into()),
            }
            let got = {
                let mut kcp = self.engine.lock();
                match kcp.peeksize() {
                    Ok(size) if size > 0 => {
                        let start = self.buf.len();
                        self.buf.resize(start + size, 0);
                        match kcp.recv(&mut self.buf[start..]) {
                            Ok(n) => {
                                self.buf.truncate(start + n);
                                true
                            }
                            Err(_) => {
                                self.buf.truncate(start);
                                false
                            }
                        }
                    }
                    _ => false,
                }
            };
            if !got {
                // Cancel safe: nothing is taken from KCP while waiting, and a
                // notification sent meanwhile is kept as a permit.
                self.engine.readable.notified().await;
            }
        }
    }
}

pub(super) struct ClientSink {
    engine: Arc<Engine>,
    buf: BytesMut,
    _stop: Arc<StopOnDrop>,
}

impl ClientSink {
    /// Queues `data` in KCP, waiting while the send window is full (that wait is what
    /// the write timeout measures), and flushes it out now.
    async fn send(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let sent = {
                let mut kcp = self.engine.lock();
                let window = usize::from(kcp.snd_wnd().min(kcp.rmt_wnd()));
                if kcp.wait_snd() < window {
                    // One send may not need more fragments than the receive window.
                    let chunk = data.len().min(kcp.mss() * 64);
                    kcp.send(&data[..chunk])
                        .map_err(|e| io::Error::other(e.to_string()))?;
                    kcp.flush().map_err(|e| io::Error::other(e.to_string()))?;
                    Some(chunk)
                } else {
                    None
                }
            };
            match sent {
                Some(n) => data = &data[n..],
                None => self.engine.writable.notified().await,
            }
        }
        Ok(())
    }
}

impl FrameSink for ClientSink {
    async fn take(&mut self, out: &OutQueue) -> Batch {
        self.buf.clear();
        if self.buf.capacity() > MAX_BATCH * 2 {
            self.buf = BytesMut::new();
        }
        out.next_batch(&mut self.buf, MAX_BATCH).await
    }

    fn pending(&self) -> usize {
        self.buf.len()
    }

    async fn write(&mut self) -> io::Result<()> {
        self.send(&self.buf).await
    }

    async fn shutdown(&mut self, reason: Option<&CloseReason>, bye: bool) {
        if matches!(
            reason,
            Some(CloseReason::PeerClosed | CloseReason::IdleTimeout)
        ) {
            return;
        }
        let _ = tokio::time::timeout(LINGER, async {
            if bye {
                self.send(&wire::encode_control(wire::ID_BYE)).await?;
            }
            // Wait until everything, the bye included, is acknowledged.
            while self.engine.lock().wait_snd() > 0 {
                self.engine.writable.notified().await;
            }
            Ok::<_, io::Error>(())
        })
        .await;
    }
}
