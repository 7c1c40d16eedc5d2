//! The KCP engine: one UDP socket, the conversations on it, one task.
//!
//! - **Table.** Conversations are keyed by (peer address, conversation id). A datagram
//!   reaches its conversation only if it decrypts (when a crypt is set), passes its CRC
//!   and parses as KCP segments of that conversation. Another id from a known address
//!   is another conversation, never a replacement: a spoofed segment cannot end or take
//!   over a victim's session.
//! - **Admission** (server). A datagram from an unknown (address, id) opens a
//!   conversation only if it is well-formed and starts one (a data segment with
//!   sequence number 0, which every KCP sender's first message has), and only if the
//!   session pool has room — checked before anything is allocated or spawned. Anything
//!   else is counted and dropped: it costs a parse.
//! - **One timer.** The engine's task ticks, every KCP interval, only the conversations
//!   with something in flight (the *active* set); an idle conversation costs nothing
//!   until a datagram or a write wakes it. Incoming datagrams are taken in batches and
//!   each conversation they touched is flushed once (its acknowledgements leave at
//!   once, in as few datagrams as fit).
//! - **No per-session buffers while idle.** A conversation holds its KCP state (the
//!   `kcp` crate's control block with its one MTU-sized output buffer); the engine's
//!   receive buffer and the sealing scratch are shared.
//! - **Linger.** When a session ends its conversation stays in the table for a moment
//!   (until what it sent, its bye included, is acknowledged, at least a second on a
//!   server, at most [`LINGER_MAX_MS`]): late segments of the peer are acknowledged
//!   instead of opening a phantom session.
//! - **Ends.** A peer that acknowledges nothing for KCP's dead-link count of resends
//!   ends its session with an error; silence is the session's idle timeout.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::{Duration, Instant};

use kcp::Kcp;
use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::crypt::{self, Cipher, Nonce};
use super::fec;
use super::link::{KcpReader, KcpSink, Release};
use super::{KcpMode, KcpSettings};
use crate::driver;
use crate::driver::link::StreamSource;
use crate::session::Session;
use crate::session::limit::Refusal;
use crate::settings::Shared;
use crate::url::Transport;

/// KCP's segment header.
pub(super) const KCP_OVERHEAD: usize = 24;
const CMD_PUSH: u8 = 81;
const CMD_WINS: u8 = 84;
/// At most this many conversations per peer address (a client has one; a second one is
/// a restart or a spoof, and must not crowd out the server).
const MAX_CONVS_PER_ADDR: usize = 4;
/// How long a server keeps an ended conversation at least, acknowledging what its peer
/// still sends.
const LINGER_MIN_MS: u32 = 1_000;
/// And at most, however much is still unacknowledged.
pub(super) const LINGER_MAX_MS: u32 = 10_000;
/// The most datagrams read in one batch before the conversations they touched are
/// flushed.
const BATCH: usize = 64;
/// Room for any datagram: a larger one than kcp-go's 1,500 bytes is refused, but it
/// must be read whole to be told apart.
const RECV_BUF: usize = 64 * 1024;

pub(super) type Key = (SocketAddr, u32);

/// What every conversation of an engine shares: settings, cipher, FEC code.
#[derive(Debug)]
pub(super) struct Config {
    pub(super) settings: KcpSettings,
    pub(super) cipher: Option<Cipher>,
    pub(super) fec: Option<fec::Code>,
}

impl Config {
    pub(super) fn new(settings: KcpSettings) -> Result<Self, (&'static str, String)> {
        settings.validate()?;
        let fec = match settings.fec {
            Some(f) => Some(
                fec::Code::new(usize::from(f.data_shards), usize::from(f.parity_shards))
                    .map_err(|e| ("fec", e))?,
            ),
            None => None,
        };
        Ok(Self {
            cipher: settings.crypt.spec.cipher(),
            fec,
            settings,
        })
    }

    fn crypt_len(&self) -> usize {
        if self.cipher.is_some() {
            crypt::HEADER_LEN
        } else {
            0
        }
    }

    fn fec_len(&self) -> usize {
        if self.fec.is_some() {
            fec::HEADER_LEN_PLUS_SIZE
        } else {
            0
        }
    }

    /// The MTU handed to KCP: the datagram's, less the crypt and FEC headers.
    fn kcp_mtu(&self) -> usize {
        self.settings.mtu - self.crypt_len() - self.fec_len()
    }
}

/// A parsed datagram's KCP part: one conversation's segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Segments {
    pub(super) conv: u32,
    /// It carries data with sequence number 0: the start of a conversation.
    pub(super) opens: bool,
}

/// Checks that `buf` is one or more whole KCP segments of one conversation, with known
/// commands. Allocates nothing.
pub(super) fn parse(mut buf: &[u8]) -> Option<Segments> {
    if buf.len() < KCP_OVERHEAD {
        return None;
    }
    let conv = u32::from_le_bytes(buf[..4].try_into().ok()?);
    let mut opens = false;
    while !buf.is_empty() {
        if buf.len() < KCP_OVERHEAD {
            return None;
        }
        let cmd = buf[4];
        let sn = u32::from_le_bytes(buf[12..16].try_into().ok()?);
        let len = u32::from_le_bytes(buf[20..24].try_into().ok()?) as usize;
        if u32::from_le_bytes(buf[..4].try_into().ok()?) != conv
            || !(CMD_PUSH..=CMD_WINS).contains(&cmd)
            || buf.len() - KCP_OVERHEAD < len
            || (cmd != CMD_PUSH && len != 0)
        {
            return None;
        }
        opens |= cmd == CMD_PUSH && sn == 0 && len > 0;
        buf = &buf[KCP_OVERHEAD + len..];
    }
    Some(Segments { conv, opens })
}

/// Why a conversation ended under its session.
#[derive(Debug, Clone, Copy)]
pub(super) enum End {
    /// A segment was resent KCP's dead-link count of times, never acknowledged.
    DeadLink,
    /// The engine stopped (its server finished).
    Stopped,
}

impl End {
    pub(super) fn error(self) -> io::Error {
        match self {
            End::DeadLink => io::Error::new(
                io::ErrorKind::TimedOut,
                "kcp: the peer acknowledged nothing after 20 resends of a segment",
            ),
            End::Stopped => io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "kcp: the listener stopped",
            ),
        }
    }
}

/// Hands KCP's datagrams to the socket, sealed as the settings ask (FEC header, nonce,
/// CRC, encryption), without waiting: one the socket cannot take now is lost, and KCP
/// sends it again.
pub(super) struct Output {
    /// A clone of the engine's socket, not registered with tokio: a send is tried at
    /// once, where tokio's `try_send` would give up until its reactor has seen the
    /// socket writable (which a new socket has not, yet).
    socket: Arc<std::net::UdpSocket>,
    /// `None`: the socket is connected (a client).
    to: Option<SocketAddr>,
    config: Arc<Config>,
    fec: Option<fec::Encoder>,
    nonce: Nonce,
}

thread_local! {
    /// The datagram being sealed: one buffer per thread, not one per conversation.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Output {
    fn send(&self, datagram: &[u8]) {
        let sent = match self.to {
            Some(to) => self.socket.send_to(datagram, to),
            None => self.socket.send(datagram),
        };
        if let Err(err) = sent {
            // Full socket buffer, closed port (ICMP), unreachable: the datagram is lost
            // and KCP resends it.
            tracing::trace!(error = %err, "kcp datagram not sent");
        }
    }
}

impl Write for Output {
    fn write(&mut self, kcp: &[u8]) -> io::Result<usize> {
        let crypt_len = self.config.crypt_len();
        let fec_len = self.config.fec_len();
        SCRATCH.with(|scratch| {
            let mut buf = scratch.borrow_mut();
            buf.clear();
            buf.resize(crypt_len + fec_len, 0);
            buf.extend_from_slice(kcp);
            let mut parity: Vec<Vec<u8>> = Vec::new();
            if let Some(encoder) = &mut self.fec {
                encoder.encode(&mut buf[crypt_len..], |p| {
                    let mut datagram = vec![0u8; crypt_len];
                    datagram.extend_from_slice(p);
                    parity.push(datagram);
                });
            }
            if let Some(cipher) = &self.config.cipher {
                cipher.seal(&mut buf, &mut self.nonce);
            }
            self.send(&buf);
            for mut datagram in parity {
                if let Some(cipher) = &self.config.cipher {
                    cipher.seal(&mut datagram, &mut self.nonce);
                }
                self.send(&datagram);
            }
        });
        Ok(kcp.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One conversation: its KCP state, shared by the engine (input, timer) and its
/// session's reader and writer.
pub(super) struct Conv {
    pub(super) key: Key,
    state: Mutex<State>,
    /// In the engine's active set (ticked every interval).
    pub(super) active: AtomicBool,
}

impl std::fmt::Debug for Conv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conv").field("key", &self.key).finish()
    }
}

pub(super) struct State {
    pub(super) kcp: Kcp<Output>,
    fec: Option<fec::Decoder>,
    /// The session's reader, waiting for a message.
    pub(super) reader: Option<Waker>,
    /// The session's writer, waiting for room in the send window.
    pub(super) writer: Option<Waker>,
    pub(super) end: Option<End>,
    /// When the session let go of it (ms).
    released: Option<u32>,
    /// The peer said bye or went silent: nothing sent is waited for after the linger.
    pub(super) abandoned: bool,
    /// Touched by the batch being read: flushed at its end.
    touched: bool,
    /// Acknowledgements are owed: they leave with the next flush (a reply's, or the
    /// next tick's).
    pub(super) acks_owed: bool,
    /// An input of this batch acknowledged something sent (the window moved).
    slid: bool,
}

impl State {
    /// The room KCP leaves in the send window: what may be queued before waiting.
    pub(super) fn window_open(&self) -> bool {
        let window = usize::from(self.kcp.snd_wnd().min(self.kcp.rmt_wnd()));
        self.kcp.wait_snd() < window
    }
}

impl Conv {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // No user code runs under this lock; a poisoned one still holds consistent state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn wake(slot: &mut Option<Waker>) {
    if let Some(waker) = slot.take() {
        waker.wake();
    }
}

/// Counters of an engine, read by `Server::kcp_stats`.
#[derive(Debug, Default)]
pub(super) struct Stats {
    pub(super) conversations: AtomicUsize,
    pub(super) invalid: AtomicU64,
    pub(super) refused: AtomicU64,
}

#[derive(Default)]
struct Inbox {
    /// Conversations that became active (a write queued segments).
    wake: Vec<Arc<Conv>>,
    /// Conversations whose session let go of them.
    released: Vec<Arc<Conv>>,
}

/// The part of an engine that sessions reach.
pub(super) struct Engine {
    socket: Arc<UdpSocket>,
    sender: Arc<std::net::UdpSocket>,
    pub(super) config: Arc<Config>,
    epoch: Instant,
    inbox: Mutex<Inbox>,
    notify: Notify,
    pub(super) stats: Stats,
    /// Set by the server's finish: end once the table is empty, or after a second.
    finishing: CancellationToken,
    /// Cancelled when the task has ended.
    done: CancellationToken,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.config)
            .field("stats", &self.stats)
            .finish()
    }
}

impl Engine {
    /// An engine on `socket` (bound, and connected on a client).
    pub(super) fn new(socket: UdpSocket, config: Arc<Config>) -> io::Result<Arc<Self>> {
        let std = socket.into_std()?;
        let sender = Arc::new(std.try_clone()?);
        let socket = Arc::new(UdpSocket::from_std(std)?);
        Ok(Arc::new(Self {
            socket,
            sender,
            config,
            epoch: Instant::now(),
            inbox: Mutex::default(),
            notify: Notify::new(),
            stats: Stats::default(),
            finishing: CancellationToken::new(),
            done: CancellationToken::new(),
        }))
    }

    /// KCP's clock: u32 milliseconds that wrap (KCP compares them with wrapping
    /// differences).
    pub(super) fn now(&self) -> u32 {
        self.epoch.elapsed().as_millis() as u32
    }

    fn inbox(&self) -> MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts `conv` in the active set: called by a writer that queued segments.
    pub(super) fn activate(&self, conv: &Arc<Conv>) {
        if !conv.active.swap(true, Ordering::AcqRel) {
            self.inbox().wake.push(conv.clone());
            self.notify.notify_one();
        }
    }

    /// The session let go of `conv` (its reader and writer are gone).
    pub(super) fn release(&self, conv: &Arc<Conv>) {
        self.inbox().released.push(conv.clone());
        self.notify.notify_one();
    }

    /// Asks the task to end once every conversation is gone (at most a second), and
    /// waits for it.
    pub(super) async fn finish(&self) {
        self.finishing.cancel();
        self.done.cancelled().await;
    }

    /// A new conversation with its KCP state, sending to `to` (`None`: the connected
    /// peer).
    pub(super) fn conversation(&self, key: Key, to: Option<SocketAddr>) -> Arc<Conv> {
        let settings = &self.config.settings;
        let output = Output {
            socket: self.sender.clone(),
            to,
            config: self.config.clone(),
            fec: self.config.fec.clone().map(fec::Encoder::new),
            nonce: Nonce::new(),
        };
        let mut kcp = match settings.mode {
            KcpMode::Stream => Kcp::new_stream(key.1, output),
            KcpMode::Message => Kcp::new(key.1, output),
        };
        kcp.set_mtu(self.config.kcp_mtu())
            .expect("the MTU was validated");
        kcp.set_nodelay(
            settings.nodelay,
            settings.interval_ms.clamp(10, 5000) as i32,
            settings.fast_resend.min(i32::MAX as u32) as i32,
            settings.no_congestion_control,
        );
        kcp.set_wndsize(settings.send_window, settings.recv_window);
        // `flush` needs one update first.
        let _ = kcp.update(self.now());
        Arc::new(Conv {
            key,
            state: Mutex::new(State {
                kcp,
                fec: None,
                reader: None,
                writer: None,
                end: None,
                released: None,
                abandoned: false,
                touched: false,
                acks_owed: false,
                slid: false,
            }),
            active: AtomicBool::new(false),
        })
    }

    fn interval(&self) -> Duration {
        Duration::from_millis(u64::from(self.config.settings.interval_ms.clamp(10, 5000)))
    }
}

/// A server's side of the task: what admitting a conversation needs.
pub(super) struct Admit {
    pub(super) shared: Arc<Shared>,
    pub(super) local: SocketAddr,
    pub(super) tracker: TaskTracker,
    pub(super) stop: CancellationToken,
}

/// The engine's task and its table.
struct Task {
    engine: Arc<Engine>,
    table: HashMap<SocketAddr, Vec<Arc<Conv>>>,
    active: Vec<Arc<Conv>>,
    lingering: Vec<Arc<Conv>>,
    touched: Vec<Arc<Conv>>,
    /// `None` on a client.
    admit: Option<Admit>,
    admitting: bool,
}

/// Runs a server's engine until it is stopped and its conversations are gone (or it is
/// finished).
pub(super) async fn serve(engine: Arc<Engine>, admit: Admit) {
    let mut task = Task::new(engine, Some(admit));
    task.run(None).await;
}

/// Runs a client's engine over its connected socket until its one conversation is
/// gone.
pub(super) async fn client(engine: Arc<Engine>, conv: Arc<Conv>) {
    let peer = conv.key.0;
    let mut task = Task::new(engine, None);
    task.table.insert(peer, vec![conv]);
    task.engine.stats.conversations.store(1, Ordering::Relaxed);
    task.run(Some(peer)).await;
}

impl Task {
    fn new(engine: Arc<Engine>, admit: Option<Admit>) -> Self {
        Self {
            engine,
            table: HashMap::new(),
            active: Vec::new(),
            lingering: Vec::new(),
            touched: Vec::new(),
            admitting: admit.is_some(),
            admit,
        }
    }

    /// `connected`: the client's peer, its socket connected to it.
    async fn run(&mut self, connected: Option<SocketAddr>) {
        let engine = self.engine.clone();
        let socket = engine.socket.clone();
        let mut buf = vec![0u8; RECV_BUF];
        let interval = engine.interval();
        let tick = tokio::time::sleep(interval);
        tokio::pin!(tick);
        let stop = self
            .admit
            .as_ref()
            .map_or_else(CancellationToken::new, |a| a.stop.clone());
        let mut finish_by: Option<tokio::time::Instant> = None;
        loop {
            let ticking = !self.active.is_empty() || !self.lingering.is_empty();
            tokio::select! {
                biased;
                () = engine.notify.notified() => self.take_inbox(),
                received = recv(&socket, &mut buf, connected) => {
                    let now = engine.now();
                    let mut received = received;
                    for _ in 0..BATCH {
                        match received {
                            Ok((n, from)) => self.datagram(from, &mut buf[..n], now),
                            Err(err) => tracing::debug!(error = %err, "kcp receive error"),
                        }
                        received = match try_recv(&socket, &mut buf, connected) {
                            Some(r) => r,
                            None => break,
                        };
                    }
                    self.flush_touched(now);
                }
                () = &mut tick, if ticking => {
                    self.tick(engine.now(), finish_by.is_some());
                    tick.as_mut().reset(tokio::time::Instant::now() + interval);
                }
                () = stop.cancelled(), if self.admitting => self.admitting = false,
                () = engine.finishing.cancelled(), if finish_by.is_none() => {
                    finish_by = Some(tokio::time::Instant::now() + Duration::from_secs(1));
                }
                () = sleep_until(finish_by), if finish_by.is_some() => break,
            }
            if !ticking && (!self.active.is_empty() || !self.lingering.is_empty()) {
                tick.as_mut().reset(tokio::time::Instant::now() + interval);
            }
            let stopped = self.admit.is_none() || !self.admitting;
            if stopped && self.table.is_empty() {
                break;
            }
        }
        // Whatever is left (a finish that timed out) ends now.
        for conv in self.table.values().flatten() {
            let mut state = conv.lock();
            state.end.get_or_insert(End::Stopped);
            wake(&mut state.reader);
            wake(&mut state.writer);
        }
        self.table.clear();
        engine.stats.conversations.store(0, Ordering::Relaxed);
        engine.done.cancel();
    }

    fn take_inbox(&mut self) {
        let (wake, released) = {
            let mut inbox = self.engine.inbox();
            (
                std::mem::take(&mut inbox.wake),
                std::mem::take(&mut inbox.released),
            )
        };
        self.active.extend(wake);
        let now = self.engine.now();
        for conv in released {
            conv.lock().released = Some(now);
            self.lingering.push(conv);
        }
    }

    fn find(&self, from: SocketAddr, conv: u32) -> Option<&Arc<Conv>> {
        self.table.get(&from)?.iter().find(|c| c.key.1 == conv)
    }

    fn invalid(&self) {
        self.engine.stats.invalid.fetch_add(1, Ordering::Relaxed);
    }

    fn datagram(&mut self, from: SocketAddr, buf: &mut [u8], now: u32) {
        if buf.len() > crypt::MTU_LIMIT {
            // kcp-go never sends more (and reads no more); nothing of ours does either.
            return self.invalid();
        }
        let config = self.engine.config.clone();
        let payload = match &config.cipher {
            Some(cipher) => match cipher.open(buf) {
                Some(payload) => payload,
                None => return self.invalid(),
            },
            None => buf,
        };
        let (kcp_bytes, fec_part) = match fec::header(payload) {
            Some((seqid, fec::TYPE_PARITY)) => {
                // Parity names no conversation: it goes to the latest of its address.
                let (Some(code), Some(conv)) = (
                    &config.fec,
                    self.table
                        .get(&from)
                        .and_then(|convs| convs.last())
                        .cloned(),
                ) else {
                    return self.invalid();
                };
                let mut state = conv.lock();
                let _ = state.kcp.update(now);
                let recovered = state.fec.get_or_insert_default().decode(
                    code,
                    seqid,
                    fec::TYPE_PARITY,
                    &payload[fec::HEADER_LEN..],
                    now,
                );
                input_recovered(&mut state, conv.key.1, recovered);
                drop(state);
                self.touch(&conv);
                return;
            }
            Some((seqid, flag)) => {
                if payload.len() < fec::HEADER_LEN_PLUS_SIZE {
                    return self.invalid();
                }
                let (head, kcp_bytes) = payload.split_at(fec::HEADER_LEN_PLUS_SIZE);
                (kcp_bytes, Some((seqid, flag, &head[fec::HEADER_LEN..])))
            }
            None => (&*payload, None),
        };
        let Some(segments) = parse(kcp_bytes) else {
            return self.invalid();
        };
        let conv = match self.find(from, segments.conv) {
            Some(conv) => conv.clone(),
            None => match self.admit(from, segments) {
                Some(conv) => conv,
                None => return,
            },
        };
        let mut state = conv.lock();
        let _ = state.kcp.update(now);
        let waiting = state.kcp.wait_snd();
        if let Err(err) = state.kcp.input(kcp_bytes) {
            tracing::trace!(error = %err, "kcp segment refused");
        }
        if let (Some((seqid, flag, size)), Some(code)) = (fec_part, &config.fec) {
            // The decoder keeps the shard from its size field on.
            let mut shard = Vec::with_capacity(size.len() + kcp_bytes.len());
            shard.extend_from_slice(size);
            shard.extend_from_slice(kcp_bytes);
            let recovered = state
                .fec
                .get_or_insert_default()
                .decode(code, seqid, flag, &shard, now);
            input_recovered(&mut state, conv.key.1, recovered);
        }
        state.slid |= state.kcp.wait_snd() < waiting;
        // Acknowledgements, or a window probe's answer.
        state.acks_owed = true;
        drop(state);
        self.touch(&conv);
    }

    fn touch(&mut self, conv: &Arc<Conv>) {
        let mut state = conv.lock();
        if !state.touched {
            state.touched = true;
            self.touched.push(conv.clone());
        }
    }

    /// Opens a conversation for a datagram from an unknown (address, id), if it starts
    /// one and the server has room.
    fn admit(&mut self, from: SocketAddr, segments: Segments) -> Option<Arc<Conv>> {
        let refused = |task: &Self| {
            task.engine.stats.refused.fetch_add(1, Ordering::Relaxed);
            None
        };
        let admit = self.admit.as_ref()?;
        if !segments.opens {
            // A segment of a conversation that ended, or a stray: nothing to resume.
            return refused(self);
        }
        if !self.admitting
            || self
                .table
                .get(&from)
                .is_some_and(|convs| convs.len() >= MAX_CONVS_PER_ADDR)
        {
            return refused(self);
        }
        if let Some(pool) = &admit.shared.pool {
            // Refused before anything is allocated: a flood from new addresses must
            // not cost a session each while the server is full.
            if pool.len() >= pool.limit() {
                pool.refused(from, Refusal::Full);
                return refused(self);
            }
        }
        let session = Session::new(admit.shared.clone(), from, admit.local, Transport::Kcp);
        if let Some(pool) = &admit.shared.pool {
            if let Err(why) = pool.try_insert(&session) {
                pool.refused(from, why);
                return refused(self);
            }
        }
        let conv = self.engine.conversation((from, segments.conv), Some(from));
        self.table.entry(from).or_default().push(conv.clone());
        self.engine
            .stats
            .conversations
            .fetch_add(1, Ordering::Relaxed);
        let (reader, sink) = link(&self.engine, &conv, false);
        let source = StreamSource::for_session(reader, &session);
        driver::spawn(session, source, sink, Some(&admit.tracker));
        Some(conv)
    }

    /// Flushes each conversation the batch touched (acknowledgements, data the window
    /// now lets out) and wakes its reader and writer.
    fn flush_touched(&mut self, now: u32) {
        for conv in std::mem::take(&mut self.touched) {
            let mut state = conv.lock();
            state.touched = false;
            let _ = state.kcp.update(now);
            // Acknowledgements alone wait for the tick (or ride on the session's reply,
            // which is usually written before it): one datagram instead of two. When the
            // window moved, what it lets out goes now, the acknowledgements with it.
            if std::mem::take(&mut state.slid) {
                let _ = state.kcp.flush();
                state.acks_owed = false;
            }
            if state.kcp.peeksize().is_ok() {
                wake(&mut state.reader);
            }
            if state.window_open() {
                wake(&mut state.writer);
            }
            let busy = state.kcp.wait_snd() > 0 || state.acks_owed;
            drop(state);
            if busy && !conv.active.swap(true, Ordering::AcqRel) {
                self.active.push(conv);
            }
        }
    }

    /// KCP's timer for the active conversations (resends, window probes), and the end
    /// of lingering ones.
    ///
    /// `finishing`: the server is done; a conversation goes as soon as its last
    /// segments (its bye) are acknowledged.
    fn tick(&mut self, now: u32, finishing: bool) {
        self.active.retain(|conv| {
            let mut state = conv.lock();
            let _ = state.kcp.update(now);
            if std::mem::take(&mut state.acks_owed) {
                let _ = state.kcp.flush();
            }
            if state.kcp.is_dead_link() && state.end.is_none() {
                state.end = Some(End::DeadLink);
                wake(&mut state.reader);
                wake(&mut state.writer);
            }
            let keep = state.kcp.wait_snd() > 0 && state.end.is_none();
            if !keep {
                conv.active.store(false, Ordering::Release);
            }
            keep
        });
        let min = if self.admit.is_some() && !finishing {
            LINGER_MIN_MS
        } else {
            0
        };
        let mut gone = Vec::new();
        self.lingering.retain(|conv| {
            let mut state = conv.lock();
            let since = now.wrapping_sub(state.released.unwrap_or(now));
            let settled = state.kcp.wait_snd() == 0 || state.end.is_some() || state.abandoned;
            let done = (settled && since >= min) || since >= LINGER_MAX_MS;
            if done {
                // Out of the active set too: nothing more is sent for it.
                state.end.get_or_insert(End::Stopped);
                gone.push(conv.key);
            }
            !done
        });
        for (addr, id) in gone {
            if let Some(convs) = self.table.get_mut(&addr) {
                convs.retain(|c| c.key.1 != id);
                if convs.is_empty() {
                    self.table.remove(&addr);
                }
                self.engine
                    .stats
                    .conversations
                    .fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// Feeds the KCP bytes FEC rebuilt, if they are segments of this conversation.
fn input_recovered(state: &mut State, conv: u32, recovered: Vec<Vec<u8>>) {
    for bytes in recovered {
        if parse(&bytes).is_some_and(|s| s.conv == conv) {
            state.acks_owed = true;
            let _ = state.kcp.input(&bytes);
        }
    }
}

/// The reader and writer of a conversation's session.
pub(super) fn link(engine: &Arc<Engine>, conv: &Arc<Conv>, client: bool) -> (KcpReader, KcpSink) {
    let release = Arc::new(Release::new(engine.clone(), conv.clone()));
    (
        KcpReader::new(engine.clone(), conv.clone(), release.clone()),
        KcpSink::new(engine.clone(), conv.clone(), release, client),
    )
}

async fn recv(
    socket: &UdpSocket,
    buf: &mut [u8],
    connected: Option<SocketAddr>,
) -> io::Result<(usize, SocketAddr)> {
    match connected {
        Some(peer) => socket.recv(buf).await.map(|n| (n, peer)),
        None => socket.recv_from(buf).await,
    }
}

fn try_recv(
    socket: &UdpSocket,
    buf: &mut [u8],
    connected: Option<SocketAddr>,
) -> Option<io::Result<(usize, SocketAddr)>> {
    let received = match connected {
        Some(peer) => socket.try_recv(buf).map(|n| (n, peer)),
        None => socket.try_recv_from(buf),
    };
    match received {
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => None,
        other => Some(other),
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(conv: u32, cmd: u8, sn: u32, data: &[u8]) -> Vec<u8> {
        let mut s = Vec::new();
        s.extend_from_slice(&conv.to_le_bytes());
        s.push(cmd);
        s.push(0);
        s.extend_from_slice(&128u16.to_le_bytes());
        s.extend_from_slice(&0u32.to_le_bytes());
        s.extend_from_slice(&sn.to_le_bytes());
        s.extend_from_slice(&0u32.to_le_bytes());
        s.extend_from_slice(&(data.len() as u32).to_le_bytes());
        s.extend_from_slice(data);
        s
    }

    #[test]
    fn only_whole_segments_of_one_conversation_parse() {
        let open = segment(7, CMD_PUSH, 0, b"hello");
        assert_eq!(
            parse(&open),
            Some(Segments {
                conv: 7,
                opens: true
            })
        );
        let mut two = segment(7, 82, 3, b"");
        two.extend(segment(7, CMD_PUSH, 4, b"x"));
        assert_eq!(
            parse(&two),
            Some(Segments {
                conv: 7,
                opens: false
            })
        );
        // An empty push opens nothing.
        assert_eq!(
            parse(&segment(7, CMD_PUSH, 0, b"")).map(|s| s.opens),
            Some(false)
        );
        for bad in [
            vec![0u8; 24],
            open[..open.len() - 1].to_vec(),
            [open.clone(), vec![1, 2, 3]].concat(),
            [open.clone(), segment(8, 82, 0, b"")].concat(),
            segment(7, 85, 0, b""),
            segment(7, 82, 0, b"ack with data"),
        ] {
            assert_eq!(parse(&bad), None, "{bad:?}");
        }
    }
}
