//! The load generator: the same raw wire-format client drives both servers. Every reply
//! is checked (id, sequence number, body); anything lost, reordered or corrupted is an
//! error that ends the run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::proto;

/// Bytes of a body before its payload: the `fixed64` sequence number (tag + 8 bytes) and
/// the payload field's tag.
const SEQ_FIELD: usize = 9;

/// How long a run may wait for outstanding replies after its last request.
const DRAIN: Duration = Duration::from_secs(10);

/// A request body of exactly `size` bytes: `Echo { seq, body: payload }`.
#[derive(Clone)]
pub(crate) struct Template {
    frame: Vec<u8>,
    seq_at: usize,
    payload: usize,
}

impl Template {
    /// A frame with id `id` whose protobuf body is `size` bytes long; the payload bytes
    /// depend on `salt`, so replies crossing connections would be noticed.
    pub(crate) fn new(id: u32, size: usize, salt: u8) -> Self {
        assert!(size >= SEQ_FIELD + 2, "body too small");
        // The payload length varint takes one byte below 128, two below 16384.
        let mut payload = size - SEQ_FIELD - 2;
        if payload >= 128 {
            payload -= 1;
        }
        let mut body = Vec::with_capacity(size);
        body.push(0x09);
        body.extend_from_slice(&0u64.to_le_bytes());
        body.push(0x12);
        let mut n = payload;
        while n >= 0x80 {
            body.push((n as u8) | 0x80);
            n >>= 7;
        }
        body.push(n as u8);
        body.extend((0..payload).map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt)));
        assert_eq!(body.len(), size);
        let mut frame = Vec::with_capacity(6 + size);
        frame.extend_from_slice(&((4 + size) as u16).to_le_bytes());
        frame.extend_from_slice(&id.to_le_bytes());
        frame.extend_from_slice(&body);
        Template {
            frame,
            seq_at: 7,
            payload,
        }
    }

    /// The payload bytes of every request.
    pub(crate) fn payload(&self) -> &[u8] {
        &self.frame[self.frame.len() - self.payload..]
    }

    /// Appends the frame for `seq`.
    pub(crate) fn put(&self, out: &mut Vec<u8>, seq: u64) {
        let at = out.len();
        out.extend_from_slice(&self.frame);
        out[at + self.seq_at..at + self.seq_at + 8].copy_from_slice(&seq.to_le_bytes());
    }

    /// Checks a reply frame (header included) against the request `seq` would send.
    pub(crate) fn check(&self, frame: &[u8], id: u32, seq: u64) -> Result<()> {
        let got_id = u32::from_le_bytes(frame[2..6].try_into().expect("4 bytes"));
        ensure!(got_id == id, "reply id {got_id}, expected {id}");
        ensure!(
            frame.len() == self.frame.len(),
            "reply of {} bytes, expected {}",
            frame.len(),
            self.frame.len()
        );
        let got_seq = u64::from_le_bytes(frame[self.seq_at..self.seq_at + 8].try_into()?);
        ensure!(
            got_seq == seq,
            "reply {got_seq} arrived where {seq} was due"
        );
        ensure!(
            frame[6..self.seq_at] == self.frame[6..self.seq_at]
                && frame[self.seq_at + 8..] == self.frame[self.seq_at + 8..],
            "reply {seq} has a corrupted body"
        );
        Ok(())
    }
}

/// Takes complete frames off the front of `buf`, calling `f` with each (header included).
fn frames(buf: &mut BytesMut, mut f: impl FnMut(&[u8]) -> Result<()>) -> Result<usize> {
    let mut pos = 0;
    let mut n = 0;
    while buf.len() - pos >= 2 {
        let len = usize::from(u16::from_le_bytes([buf[pos], buf[pos + 1]]));
        ensure!(len >= 4, "frame length {len} below 4");
        if buf.len() - pos < 2 + len {
            break;
        }
        f(&buf[pos..pos + 2 + len])?;
        pos += 2 + len;
        n += 1;
    }
    buf.advance(pos);
    Ok(n)
}

async fn read_more(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<()> {
    if buf.capacity() - buf.len() < 16 * 1024 {
        buf.reserve(64 * 1024);
    }
    let n = tokio::time::timeout(DRAIN, stream.read_buf(buf))
        .await
        .context("no reply within the drain timeout: a message was lost")??;
    ensure!(n > 0, "the server closed the connection");
    Ok(())
}

pub(crate) async fn connect(addr: &str) -> Result<TcpStream> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Round trips on one connection, one request in flight, until `until`. Returns the
/// latency of each.
pub(crate) async fn round_trips(addr: &str, size: usize, until: Instant) -> Result<Vec<Duration>> {
    let mut stream = connect(addr).await?;
    let template = Template::new(proto::ECHO, size, 7);
    let mut out = Vec::with_capacity(size + 6);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut latencies = Vec::with_capacity(1 << 20);
    let mut seq = 1;
    while Instant::now() < until {
        out.clear();
        template.put(&mut out, seq);
        let start = Instant::now();
        stream.write_all(&out).await?;
        let mut got = 0;
        while got == 0 {
            read_more(&mut stream, &mut buf).await?;
            got = frames(&mut buf, |f| template.check(f, proto::ECHO_REPLY, seq))?;
        }
        latencies.push(start.elapsed());
        ensure!(got == 1 && buf.is_empty(), "an extra reply arrived");
        seq += 1;
    }
    Ok(latencies)
}

/// `window` requests in flight on one connection until `until`; each batch of replies
/// read is checked and answered by as many new requests in one write. Returns the
/// number of replies.
pub(crate) async fn pipelined(
    stream: TcpStream,
    size: usize,
    window: usize,
    salt: u8,
    until: Instant,
) -> Result<u64> {
    pipelined_with(stream, size, window, salt, until, false).await
}

/// A handshake of a client of a resumable server, with no payload (see PROTOCOL.md).
const HELLO: [u8; 14] = [0x0c, 0, 0x20, 0xff, 0xff, 0xff, 1, 0, 0, 0, 0, 0, 0, 0];
/// The acknowledgement's id: `received u64 LE` follows.
const ACK: u32 = 0xFFFF_FF26;
/// Ids from here on are the protocol extension's.
const RESERVED: u32 = 0xFFFF_FF00;

/// [`pipelined`] as a client of a server with session resume on: a handshake first,
/// then the same load, counting the bytes of the replies and acknowledging them with
/// each write, as a resuming client does (the server's welcome and acknowledgements are
/// skipped). The wire-level client keeps the client's side of resume (its replay log)
/// out of the figure: what is measured is the server's.
pub(crate) async fn pipelined_resumable(
    stream: TcpStream,
    size: usize,
    window: usize,
    salt: u8,
    until: Instant,
) -> Result<u64> {
    pipelined_with(stream, size, window, salt, until, true).await
}

async fn pipelined_with(
    mut stream: TcpStream,
    size: usize,
    window: usize,
    salt: u8,
    until: Instant,
    resumable: bool,
) -> Result<u64> {
    let template = Template::new(proto::ECHO, size, salt);
    let mut out = Vec::with_capacity((size + 6) * window + 14);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let (mut sent, mut received, mut counted) = (0u64, 0u64, 0u64);
    let mut stopped = false;
    let mut to_send = window;
    if resumable {
        stream.write_all(&HELLO).await?;
    }
    loop {
        if !stopped && Instant::now() >= until {
            stopped = true;
        }
        if !stopped && to_send > 0 {
            out.clear();
            for _ in 0..to_send {
                sent += 1;
                template.put(&mut out, sent);
            }
            if counted > 0 {
                out.extend_from_slice(&12u16.to_le_bytes());
                out.extend_from_slice(&ACK.to_le_bytes());
                out.extend_from_slice(&counted.to_le_bytes());
            }
            stream.write_all(&out).await?;
        }
        if received == sent {
            break;
        }
        read_more(&mut stream, &mut buf).await?;
        let mut replies = 0;
        frames(&mut buf, |f| {
            let id = u32::from_le_bytes([f[2], f[3], f[4], f[5]]);
            if resumable && id >= RESERVED {
                // The welcome, or an acknowledgement of what was sent.
                return Ok(());
            }
            if resumable {
                counted += f.len() as u64;
            }
            received += 1;
            replies += 1;
            template.check(f, proto::ECHO_REPLY, received)
        })?;
        to_send = replies;
        ensure!(received <= sent, "more replies than requests");
    }
    Ok(received)
}

/// Connects and joins the fan-out group; returns once the server has confirmed.
pub(crate) async fn join(addr: &str) -> Result<TcpStream> {
    let mut stream = connect(addr).await?;
    stream.write_all(&[4, 0, 0xEB, 0x03, 0, 0]).await?; // Join (1003), empty body
    let mut buf = BytesMut::with_capacity(64);
    let mut joined = 0;
    while joined == 0 {
        read_more(&mut stream, &mut buf).await?;
        joined = frames(&mut buf, |f| {
            ensure!(f == [4, 0, 0xEC, 0x03, 0, 0], "expected Joined, got {f:?}");
            Ok(())
        })?;
    }
    Ok(stream)
}

/// Shared by the fan-out receivers and the publisher.
#[derive(Default)]
pub(crate) struct FanoutState {
    pub(crate) delivered: AtomicU64,
    pub(crate) progress: Notify,
}

/// A member of the fan-out group: checks that it gets every broadcast, in order, and
/// counts them in `state`. Runs until it fails or is cancelled.
pub(crate) async fn receive(
    mut stream: TcpStream,
    template: Template,
    state: Arc<FanoutState>,
) -> Result<()> {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut next = 1u64;
    loop {
        read_more(&mut stream, &mut buf).await?;
        let n = frames(&mut buf, |f| {
            template.check(f, proto::FANOUT, next)?;
            next += 1;
            Ok(())
        })?;
        if n > 0 {
            state.delivered.fetch_add(n as u64, Ordering::Relaxed);
            state.progress.notify_one();
        }
    }
}

/// Publishes broadcasts until `until`, with at most `window` not yet received by every
/// member. Returns how many were published.
pub(crate) async fn publish(
    addr: &str,
    template: &Template,
    members: u64,
    window: u64,
    state: &FanoutState,
    until: Instant,
) -> Result<u64> {
    let mut stream = connect(addr).await?;
    let mut out = Vec::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let (mut sent, mut acked) = (0u64, 0u64);
    while Instant::now() < until {
        // Members must keep up: the server's outbound limit would close a slow one.
        while sent.saturating_sub(window) * members > state.delivered.load(Ordering::Relaxed) {
            tokio::time::timeout(DRAIN, state.progress.notified())
                .await
                .context("fan-out receivers stopped making progress")?;
        }
        out.clear();
        let batch = (window / 2).max(1);
        for _ in 0..batch {
            sent += 1;
            template.put(&mut out, sent);
        }
        stream.write_all(&out).await?;
        while acked + window < sent {
            read_more(&mut stream, &mut buf).await?;
            frames(&mut buf, |f| check_published(f, &mut acked))?;
        }
    }
    while acked < sent {
        read_more(&mut stream, &mut buf).await?;
        frames(&mut buf, |f| check_published(f, &mut acked))?;
    }
    Ok(sent)
}

/// Checks a `Published` reply: in order, and one fan-out encode per publish so far.
fn check_published(f: &[u8], acked: &mut u64) -> Result<()> {
    let id = u32::from_le_bytes(f[2..6].try_into()?);
    ensure!(
        id == proto::PUBLISHED && f.len() == 24,
        "expected Published, got id {id}"
    );
    let seq = u64::from_le_bytes(f[7..15].try_into()?);
    let encodes = u64::from_le_bytes(f[16..24].try_into()?);
    *acked += 1;
    ensure!(
        seq == *acked,
        "Published {seq} arrived where {acked} was due"
    );
    if encodes != seq {
        bail!("{encodes} fan-out encodes for {seq} broadcasts: a broadcast encoded more than once");
    }
    Ok(())
}

/// Opens `n` members of the fan-out group, `concurrency` at a time.
pub(crate) async fn open_members(
    addr: &str,
    n: usize,
    concurrency: usize,
) -> Result<Vec<TcpStream>> {
    let mut streams = Vec::with_capacity(n);
    while streams.len() < n {
        let batch = concurrency.min(n - streams.len());
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..batch {
            let addr = addr.to_owned();
            tasks.spawn(async move { join(&addr).await });
        }
        while let Some(stream) = tasks.join_next().await {
            streams.push(stream??);
        }
    }
    Ok(streams)
}

/// What a gonet-rs client checks on one connection of [`PipelinedClient`].
struct Expect {
    template: Template,
    /// The sequence number due next (on a lossy transport: the least one expected).
    next: AtomicU64,
    /// Replies received.
    received: AtomicU64,
    error: std::sync::Mutex<Option<String>>,
    window: tokio::sync::Semaphore,
    size: usize,
    lossy: bool,
}

/// The pipelined scenario through a gonet-rs client, for transports the raw client does
/// not speak (every URL scheme gonet serves). The same checks: every reply in order with
/// the body that was sent. Over UDP, which loses datagrams by design, replies may be
/// missing: those still received must come in order, and a window that gets no reply for
/// [`LOST`] is taken as lost and sent again.
pub(crate) struct PipelinedClient {
    session: gonet::Session,
    expect: Arc<Expect>,
}

/// How long a lossy client waits for a reply before it counts its window as lost.
const LOST: Duration = Duration::from_millis(100);

impl PipelinedClient {
    /// Dials `url` (trusting `cert` for `wss://` and `quic://`), with a reconnect policy
    /// if `reconnect` (a session that resumes: it makes a handshake, counts and
    /// acknowledges what it receives, and keeps what it sends until the server
    /// acknowledges it); the clock has not started yet.
    pub(crate) async fn dial(
        url: &str,
        cert: Option<&[u8]>,
        size: usize,
        window: usize,
        salt: u8,
        reconnect: bool,
    ) -> Result<Self> {
        use gonet::{Builder, Codec, Router, Session};
        let expect = Arc::new(Expect {
            template: Template::new(proto::ECHO, size, salt),
            next: AtomicU64::new(1),
            received: AtomicU64::new(0),
            error: std::sync::Mutex::new(None),
            window: tokio::sync::Semaphore::new(window),
            size: window,
            lossy: url.starts_with("udp://"),
        });
        let check = expect.clone();
        let router = Router::new().route(move |_: Session, reply: proto::EchoReply| {
            let check = check.clone();
            async move {
                let due = check.next.load(Ordering::Relaxed);
                let in_order = if check.lossy {
                    reply.seq >= due
                } else {
                    reply.seq == due
                };
                if !in_order || reply.body[..] != *check.template.payload() {
                    let mut error = check.error.lock().expect("error slot");
                    error.get_or_insert_with(|| {
                        format!(
                            "reply {} arrived where {due} was due, or with another body",
                            reply.seq
                        )
                    });
                }
                check.next.store(reply.seq + 1, Ordering::Relaxed);
                check.received.fetch_add(1, Ordering::Relaxed);
                // A reply that comes after its window was taken as lost returns nothing.
                if check.window.available_permits() < check.size {
                    check.window.add_permits(1);
                }
            }
        });
        let mut builder = Builder::new().codec(Codec::Protobuf).router(router);
        if let Some(cert) = cert {
            builder = builder.client_tls(gonet::ClientTls::trust_der(cert)?);
        }
        if reconnect {
            builder = builder.reconnect(gonet::Reconnect::new());
        }
        let session = builder
            .dial(url)
            .await
            .with_context(|| format!("dialing {url}"))?;
        Ok(Self { session, expect })
    }

    /// Sends until `until`, keeping the window full; the replies received.
    pub(crate) async fn run(self, until: Instant) -> Result<u64> {
        let Self { session, expect } = self;
        let payload = Bytes::copy_from_slice(expect.template.payload());
        let wait = if expect.lossy { LOST } else { DRAIN };
        let mut sent = 0u64;
        while Instant::now() < until {
            match tokio::time::timeout(wait, expect.window.acquire()).await {
                Ok(permit) => permit?.forget(),
                Err(_) if expect.lossy => {
                    // Nothing came back for a while: the window's datagrams were lost.
                    let lost = expect.size - expect.window.available_permits();
                    expect.window.add_permits(lost);
                    continue;
                }
                Err(_) => bail!("no reply within the drain timeout: a message was lost"),
            }
            sent += 1;
            session.send(&proto::Echo {
                seq: sent,
                body: payload.to_vec(),
            })?;
        }
        let all = u32::try_from(expect.size)?;
        let drained = tokio::time::timeout(wait, expect.window.acquire_many(all)).await;
        if !expect.lossy {
            drop(
                drained
                    .context("replies missing after the drain timeout: messages were lost")??,
            );
        }
        session.close("done");
        if let Some(error) = expect.error.lock().expect("error slot").take() {
            bail!(error);
        }
        let received = expect.received.load(Ordering::Relaxed);
        // Over UDP one connection may lose every window it sends while the server's
        // socket buffer overflows; the run as a whole must get replies (checked by the
        // caller).
        if !expect.lossy {
            ensure!(received == sent, "reply count mismatch");
        }
        Ok(received)
    }
}
