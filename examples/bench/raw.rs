//! The raw baselines of the transports other than TCP (TCP's own is in `servers.rs`).
//!
//! Each is hand-written on the library gonet-rs uses for its transport, with the
//! settings gonet-rs uses, and does what the raw TCP baseline does: frames parsed in
//! place, nothing decoded, nothing dispatched, every complete frame of one read
//! answered, and the answers of one read written together. They speak gonet's wire
//! protocol on their transport, so the gonet-rs client that drives the gonet-rs server
//! drives them too; what separates the two figures is the runtime, not the library.
//!
//! - `udp://` (`raw`): one socket, one task, the batched forms of `recv_from` and
//!   `send_to` through quinn-udp (quinn's own socket layer): `recvmmsg` takes a batch
//!   of datagrams, each reply is forged in its receive buffer, and the replies of the
//!   batch to one peer that follow each other leave in one `sendmsg` (GSO). One packet
//!   per datagram, as gonet sends them.
//! - `ws://` (`raw`): tokio-tungstenite with gonet's WebSocket settings (message and
//!   frame limits, write buffer sizes). One packet per binary message; every message
//!   already received is taken without waiting, its reply fed to the sink, and the sink
//!   flushed once (one write for the lot). Pings are answered by tungstenite.
//! - `ws://` (`raw-fastws`): the same on fastwebsockets, for the libraries to be
//!   compared side by side. The upgrade is a hand-written HTTP/1.1 exchange (the key
//!   answered with tungstenite's `derive_accept_key`); fastwebsockets writes each frame
//!   through, so its writes are gathered by [`FlushOnRead`] and go out when the reader
//!   needs more bytes: when the frames already received are all answered.
//! - `wss://` (`raw`): tokio-tungstenite over tokio-rustls, a self-signed development
//!   certificate made as gonet's makes one (rcgen; rustls on ring, TLS 1.2 and 1.3,
//!   ALPN `http/1.1`), printed for the client to trust.
//! - `quic://` (`raw`): quinn with gonet's transport settings (windows, stream limits,
//!   keep-alive, idle timeout; TLS 1.3, ALPN `gonet`). One bidirectional stream per
//!   connection, opened by the client, framed as on TCP: each read's frames answered
//!   with one write.
//! - `kcp://` (`raw`): the `kcp` protocol crate used directly, with the settings of
//!   the server's URL (gonet's defaults: the fast preset, message mode, no crypt, no
//!   FEC). One socket and one task for all conversations: datagrams are read in
//!   batches, each fed to its conversation's KCP; then each conversation touched has
//!   its messages read, every complete frame answered (one KCP message per reply in
//!   message mode, one send for all of them in stream mode), and is flushed once, its
//!   acknowledgements riding with the replies. A timer at the KCP interval updates the
//!   conversations with something unacknowledged (resends).
//!
//! The answers: an `Echo` frame is answered by the same bytes under the `EchoReply` id
//! (the two messages have the same fields, so the request's body is the reply's), a
//! gonet ping by a pong. Other frames of gonet's reserved range (the pong a QUIC or KCP
//! client opens with) are skipped; a bye ends the conversation. Any other frame, or a
//! malformed one, ends the connection (over UDP: the datagram is skipped).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use bytes::BytesMut;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::proto;
use crate::servers::Kind;

/// gonet's frame header: `length u16 LE` (of what follows it) and `id u32 LE`.
const HEADER: usize = 6;
/// gonet's largest frame (the length field's largest value).
const MAX_FRAME: usize = u16::MAX as usize;
/// gonet's heartbeat request, its answer, and the last frame of a session that ends.
const PING: u32 = 0xFFFF_FF10;
const PONG: u32 = 0xFFFF_FF11;
const BYE: u32 = 0xFFFF_FF12;
/// Ids from here on are gonet's protocol extension's.
const RESERVED: u32 = 0xFFFF_FF00;
/// Read buffers, and the size from which gathered writes go out.
const BUF: usize = 64 * 1024;

/// Whether `kind` has a baseline for the `transport` scheme.
pub(crate) fn serves(kind: Kind, transport: &str) -> bool {
    match kind {
        Kind::Raw => matches!(transport, "tcp" | "udp" | "ws" | "wss" | "quic" | "kcp"),
        Kind::RawFastws => transport == "ws",
        _ => false,
    }
}

/// Starts the `kind` baseline on `url` (any scheme but `tcp://`); returns the line a
/// client dials: the URL, and for `wss://` and `quic://` a space and the certificate
/// (DER, in hex).
pub(crate) async fn serve(kind: Kind, url: &str) -> Result<String> {
    let (scheme, rest) = url.split_once("://").context("a URL")?;
    let (authority, query) = match rest.split_once('?') {
        Some((authority, query)) => (authority, Some(query)),
        None => (rest, None),
    };
    let authority = authority.trim_end_matches('/');
    ensure!(
        serves(kind, scheme),
        "no {} baseline for {url}",
        kind.name()
    );
    ensure!(
        query.is_none() || scheme == "kcp",
        "the {scheme} baseline takes no query: {url}"
    );
    match (kind, scheme) {
        (Kind::Raw, "udp") => udp(authority).await,
        (Kind::Raw, "ws") => ws(authority, Ws::Tungstenite).await,
        (Kind::RawFastws, "ws") => ws(authority, Ws::Fast).await,
        (Kind::Raw, "wss") => wss(authority).await,
        (Kind::Raw, "quic") => quic(authority).await,
        (Kind::Raw, "kcp") => kcp(authority, query).await,
        _ => bail!("no {} baseline for {url}", kind.name()),
    }
}

/// What a frame asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    /// The frame, changed in place, is its own answer.
    Reply,
    /// Nothing to answer.
    Skip,
    /// The peer ends the conversation.
    Bye,
}

/// A frame that ends the connection.
#[derive(Debug)]
struct Refused;

/// Turns one whole frame (header included) into its answer, in place.
fn answer(frame: &mut [u8]) -> Result<Answer, Refused> {
    let Some(id) = frame.get(2..HEADER) else {
        return Err(Refused);
    };
    let id = u32::from_le_bytes([id[0], id[1], id[2], id[3]]);
    let reply = match id {
        proto::ECHO => proto::ECHO_REPLY,
        PING if frame.len() == HEADER => PONG,
        BYE => return Ok(Answer::Bye),
        RESERVED.. => return Ok(Answer::Skip),
        _ => return Err(Refused),
    };
    frame[2..HEADER].copy_from_slice(&reply.to_le_bytes());
    Ok(Answer::Reply)
}

/// Whether `msg` is exactly one frame, as a WebSocket message or a datagram must be.
fn one_frame(msg: &[u8]) -> bool {
    msg.len() >= HEADER && usize::from(u16::from_le_bytes([msg[0], msg[1]])) + 2 == msg.len()
}

/// Answers the complete frames at the front of `buf` (a byte stream), appending the
/// answers to `out`. Returns the bytes taken and whether a bye came.
fn answer_stream(buf: &[u8], out: &mut Vec<u8>) -> Result<(usize, bool), Refused> {
    let mut pos = 0;
    while buf.len() - pos >= 2 {
        let len = usize::from(u16::from_le_bytes([buf[pos], buf[pos + 1]]));
        if len < HEADER - 2 {
            return Err(Refused);
        }
        if buf.len() - pos < 2 + len {
            break;
        }
        let at = out.len();
        out.extend_from_slice(&buf[pos..pos + 2 + len]);
        match answer(&mut out[at..])? {
            Answer::Reply => {}
            Answer::Skip => out.truncate(at),
            Answer::Bye => {
                out.truncate(at);
                return Ok((pos + 2 + len, true));
            }
        }
        pos += 2 + len;
    }
    Ok((pos, false))
}

// ---------------------------------------------------------------------------------- UDP

async fn udp(authority: &str) -> Result<String> {
    let socket = UdpSocket::bind(authority).await?;
    let local = socket.local_addr()?;
    let state = quinn_udp::UdpSocketState::new((&socket).into())?;
    tokio::spawn(udp_loop(socket, state));
    Ok(format!("udp://{local}"))
}

/// Replies of one size to one peer, back to back: one transmit (GSO where the system
/// has it).
#[derive(Debug, Default)]
struct Run {
    to: Option<SocketAddr>,
    size: usize,
    count: usize,
    out: Vec<u8>,
}

/// The one socket's task: `recvmmsg` takes up to [`quinn_udp::BATCH_SIZE`] datagrams
/// (or more, coalesced by GRO); each is answered in place, and the replies to one peer
/// that follow each other leave in one `sendmsg` (GSO).
async fn udp_loop(socket: UdpSocket, state: quinn_udp::UdpSocketState) {
    const N: usize = quinn_udp::BATCH_SIZE;
    let mut storage = vec![0u8; N * BUF];
    let mut meta = [quinn_udp::RecvMeta::default(); N];
    let max_segments = state.max_gso_segments().max(1);
    let mut run = Run::default();
    loop {
        let received = {
            let mut chunks = storage.chunks_mut(BUF);
            let mut bufs: [io::IoSliceMut<'_>; N] =
                std::array::from_fn(|_| io::IoSliceMut::new(chunks.next().unwrap_or_default()));
            socket
                .async_io(tokio::io::Interest::READABLE, || {
                    state.recv((&socket).into(), &mut bufs, &mut meta)
                })
                .await
        };
        let Ok(n) = received else {
            // An ICMP error for an earlier send: it concerns one peer.
            continue;
        };
        for (m, buf) in meta[..n].iter().zip(storage.chunks_mut(BUF)) {
            let stride = if m.stride == 0 { m.len } else { m.stride };
            for datagram in buf[..m.len].chunks_mut(stride) {
                if !one_frame(datagram) || !matches!(answer(datagram), Ok(Answer::Reply)) {
                    continue;
                }
                if run.to != Some(m.addr)
                    || run.size != datagram.len()
                    || run.count == max_segments
                    || run.out.len() + datagram.len() > MAX_FRAME - 1024
                {
                    udp_send(&socket, &state, &mut run).await;
                    run.to = Some(m.addr);
                    run.size = datagram.len();
                }
                run.out.extend_from_slice(datagram);
                run.count += 1;
            }
        }
        udp_send(&socket, &state, &mut run).await;
    }
}

async fn udp_send(socket: &UdpSocket, state: &quinn_udp::UdpSocketState, run: &mut Run) {
    if let (Some(to), 1..) = (run.to.take(), run.count) {
        let transmit = quinn_udp::Transmit {
            destination: to,
            ecn: None,
            contents: &run.out,
            segment_size: (run.count > 1).then_some(run.size),
            src_ip: None,
        };
        // Errors other than a full buffer are the datagrams' loss, as UDP allows.
        let _ = socket
            .async_io(tokio::io::Interest::WRITABLE, || {
                state.send(socket.into(), &transmit)
            })
            .await;
    }
    run.out.clear();
    run.count = 0;
}

// ----------------------------------------------------------------------------- WebSocket

/// The WebSocket library of a `ws://` baseline.
#[derive(Clone, Copy, Debug)]
enum Ws {
    Tungstenite,
    Fast,
}

/// gonet's WebSocket settings (`transport/ws.rs`): nothing longer than a frame, a
/// write buffer of one batch, reads of at most 16 KiB.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .max_message_size(Some(MAX_FRAME + 2))
        .max_frame_size(Some(MAX_FRAME + 2))
        .write_buffer_size(BUF)
        .max_write_buffer_size(4 * BUF + HEADER + MAX_FRAME)
}

async fn ws(authority: &str, lib: Ws) -> Result<String> {
    let local = accept_loop(authority, move |stream| {
        match lib {
            Ws::Tungstenite => tokio::spawn(ws_tungstenite(stream)),
            Ws::Fast => tokio::spawn(ws_fast(stream)),
        };
    })
    .await?;
    Ok(format!("ws://{local}/"))
}

/// Accepts TCP connections on `authority` until the process ends, each handed to
/// `serve` with Nagle's algorithm off; the address bound.
async fn accept_loop(
    authority: &str,
    serve: impl Fn(TcpStream) + Send + 'static,
) -> Result<std::net::SocketAddr> {
    let listener = TcpListener::bind(authority).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            serve(stream);
        }
    });
    Ok(local)
}

async fn wss(authority: &str) -> Result<String> {
    let (chain, key) = identity()?;
    let cert = hex(&chain[0]);
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let local = accept_loop(authority, move |stream| {
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            if let Ok(tls) = acceptor.accept(stream).await {
                ws_tungstenite(tls).await;
            }
        });
    })
    .await?;
    Ok(format!("wss://{local}/ {cert}"))
}

/// One tungstenite connection: the messages already received answered together, one
/// flush for all.
async fn ws_tungstenite<S>(stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(stream, Some(ws_config())).await
    else {
        return;
    };
    while let Some(msg) = ws.next().await {
        let mut next = Some(msg);
        while let Some(msg) = next {
            let reply = match msg {
                Ok(Message::Binary(msg)) if one_frame(&msg) => {
                    // The received bytes themselves where tungstenite does not share
                    // them; a copy otherwise.
                    let mut frame = msg
                        .try_into_mut()
                        .unwrap_or_else(|msg| BytesMut::from(&msg[..]));
                    match answer(&mut frame) {
                        Ok(Answer::Reply) => Some(frame.freeze()),
                        Ok(Answer::Skip) => None,
                        Ok(Answer::Bye) | Err(Refused) => return,
                    }
                }
                // Pings are answered by tungstenite as it reads.
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => None,
                _ => return,
            };
            if let Some(reply) = reply {
                if ws.feed(Message::Binary(reply)).await.is_err() {
                    return;
                }
            }
            // Messages already received, without waiting.
            next = match ws.next().now_or_never() {
                Some(Some(msg)) => Some(msg),
                Some(None) => return,
                None => None,
            };
        }
        if ws.flush().await.is_err() {
            return;
        }
    }
}

/// One fastwebsockets connection. Its replies are gathered by [`FlushOnRead`] and
/// written when the reader has answered every frame received and needs more bytes.
async fn ws_fast(mut stream: TcpStream) {
    if upgrade(&mut stream).await.is_err() {
        return;
    }
    let mut ws = fastwebsockets::WebSocket::after_handshake(
        FlushOnRead::new(stream),
        fastwebsockets::Role::Server,
    );
    // As tungstenite's: a frame longer than a packet is refused.
    ws.set_max_message_size(MAX_FRAME + 3);
    ws.set_writev(false);
    loop {
        let Ok(frame) = ws.read_frame().await else {
            return;
        };
        match frame.opcode {
            fastwebsockets::OpCode::Binary if frame.fin && one_frame(&frame.payload) => {
                let mut payload = frame.payload;
                match answer(payload.to_mut()) {
                    Ok(Answer::Reply) => {
                        if ws
                            .write_frame(fastwebsockets::Frame::binary(payload))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Ok(Answer::Skip) => {}
                    Ok(Answer::Bye) | Err(Refused) => return,
                }
            }
            // Pings are answered by fastwebsockets as it reads.
            fastwebsockets::OpCode::Ping | fastwebsockets::OpCode::Pong => {}
            _ => return,
        }
    }
}

/// The server's side of the WebSocket upgrade (RFC 6455, section 4.2), hand-written:
/// the request read up to its blank line, the key answered.
async fn upgrade(stream: &mut TcpStream) -> Result<()> {
    let mut request = Vec::with_capacity(1024);
    let end = loop {
        ensure!(request.len() < 16 * 1024, "request headers too long");
        let n = stream.read_buf(&mut request).await?;
        ensure!(n > 0, "closed during the upgrade");
        if let Some(at) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    // The client waits for the answer before it sends a frame.
    ensure!(end == request.len(), "bytes after the upgrade request");
    let text = std::str::from_utf8(&request[..end])?;
    let key = text
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim())
        })
        .context("no Sec-WebSocket-Key")?;
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    stream.write_all(response.as_bytes()).await?;
    Ok(())
}

/// A stream whose writes are gathered in a buffer and written out before the next
/// read (or a flush, or once [`BUF`] bytes are gathered): a reader that answers frame
/// by frame writes once per read.
#[derive(Debug)]
struct FlushOnRead<S> {
    inner: S,
    out: Vec<u8>,
    /// Bytes of `out` already written.
    written: usize,
}

impl<S> FlushOnRead<S> {
    fn new(inner: S) -> Self {
        Self {
            inner,
            out: Vec::with_capacity(BUF),
            written: 0,
        }
    }
}

impl<S: AsyncWrite + Unpin> FlushOnRead<S> {
    /// Writes out what is gathered.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.out.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.out.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for FlushOnRead<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FlushOnRead<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.out.len() >= BUF {
            ready!(this.poll_drain(cx))?;
        }
        this.out.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

// ----------------------------------------------------------------------------------- TLS

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A self-signed certificate for the names gonet's development certificate has.
fn identity() -> Result<(
    Vec<rustls::pki_types::CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
)> {
    let names = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
    let generated = rcgen::generate_simple_self_signed(names)?;
    let key = rustls::pki_types::PrivateKeyDer::try_from(generated.signing_key.serialize_der())
        .map_err(anyhow::Error::msg)?;
    Ok((vec![generated.cert.der().clone()], key))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------- QUIC

/// gonet's QUIC transport settings with its defaults (`transport/quic.rs`).
fn quic_transport() -> Result<quinn::TransportConfig> {
    const WINDOW: u32 = 4 << 20;
    let mut config = quinn::TransportConfig::default();
    config.receive_window(quinn::VarInt::from_u32(WINDOW));
    config.stream_receive_window(quinn::VarInt::from_u32(
        (WINDOW / 4).clamp(64 * 1024 + 64, 1_250_000),
    ));
    config.max_concurrent_uni_streams(quinn::VarInt::from_u32(100));
    config.max_concurrent_bidi_streams(quinn::VarInt::from_u32(1));
    config.keep_alive_interval(Some(Duration::from_secs(5)));
    config.max_idle_timeout(Some(quinn::IdleTimeout::try_from(Duration::from_secs(30))?));
    Ok(config)
}

async fn quic(authority: &str) -> Result<String> {
    let (chain, key) = identity()?;
    let cert = hex(&chain[0]);
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    tls.alpn_protocols = vec![b"gonet".to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(quic_transport()?));
    let addr: SocketAddr = authority.parse().context("a numeric address")?;
    let endpoint = quinn::Endpoint::server(config, addr)?;
    let local = endpoint.local_addr()?;
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                let Ok((send, recv)) = conn.accept_bi().await else {
                    return;
                };
                quic_stream(send, recv).await;
                drop(conn);
            });
        }
    });
    Ok(format!("quic://{local} {cert}"))
}

/// One connection's stream, framed as TCP: each read's frames answered in one write.
async fn quic_stream(mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
    let mut buf = BytesMut::with_capacity(BUF);
    let mut out = Vec::with_capacity(BUF);
    loop {
        if buf.capacity() - buf.len() < BUF / 4 {
            buf.reserve(BUF);
        }
        match recv.read_buf(&mut buf).await {
            Ok(0) => {
                // The client finished its stream: finish ours.
                let _ = send.finish();
                let _ = send.stopped().await;
                return;
            }
            Err(_) => return,
            Ok(_) => {}
        }
        let Ok((taken, bye)) = answer_stream(&buf, &mut out) else {
            return;
        };
        let _ = buf.split_to(taken);
        if !out.is_empty() {
            if send.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        if bye {
            let _ = send.finish();
            return;
        }
    }
}

// ----------------------------------------------------------------------------------- KCP

/// The KCP settings a `kcp://` URL asks for: gonet's defaults (the fast preset) with
/// the query's timing and mode parameters; the baseline has no crypt and no FEC.
#[derive(Clone, Copy, Debug)]
struct KcpSettings {
    nodelay: bool,
    interval: u32,
    resend: u32,
    nc: bool,
    sndwnd: u16,
    rcvwnd: u16,
    mtu: usize,
    stream: bool,
}

impl KcpSettings {
    fn parse(query: Option<&str>) -> Result<Self> {
        let mut s = KcpSettings {
            nodelay: true,
            interval: 10,
            resend: 2,
            nc: true,
            sndwnd: 512,
            rcvwnd: 512,
            mtu: 1400,
            stream: false,
        };
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let flag = || match value {
                "1" | "true" => Ok(true),
                "0" | "false" => Ok(false),
                _ => bail!("{name}: {value:?} is not 0, 1, true or false"),
            };
            match name {
                "preset" if value == "fast" => {}
                "preset" if value == "normal" => {
                    (s.nodelay, s.interval, s.resend, s.nc) = (false, 40, 0, false);
                    (s.sndwnd, s.rcvwnd) = (256, 256);
                }
                "mode" => s.stream = value == "stream",
                "crypt" if value == "off" => {}
                "fec" if value == "off" => {}
                "mtu" => s.mtu = value.parse()?,
                "interval" => s.interval = value.parse()?,
                "resend" => s.resend = value.parse()?,
                "sndwnd" => s.sndwnd = value.parse()?,
                "rcvwnd" => s.rcvwnd = value.parse()?,
                "nodelay" => s.nodelay = flag()?,
                "nc" => s.nc = flag()?,
                _ => bail!("the raw KCP baseline does not take {pair:?} (no crypt, no FEC)"),
            }
        }
        s.interval = s.interval.clamp(10, 5000);
        Ok(s)
    }
}

/// Where a conversation's KCP writes its datagrams: the socket, at once (a datagram
/// the socket cannot take is lost, and KCP sends it again), as gonet's engine does.
struct KcpOut {
    socket: Arc<std::net::UdpSocket>,
    to: SocketAddr,
}

impl io::Write for KcpOut {
    fn write(&mut self, datagram: &[u8]) -> io::Result<usize> {
        let _ = self.socket.send_to(datagram, self.to);
        Ok(datagram.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct Conversation {
    kcp: kcp::Kcp<KcpOut>,
    /// The start of a frame that the next message continues.
    partial: Vec<u8>,
    /// Touched by the batch of datagrams being read.
    touched: bool,
    /// The peer said bye, or sent what is not a frame: to go after the next flush.
    ended: bool,
}

/// The most datagrams read before the conversations they touched are answered.
const KCP_BATCH: usize = 64;
const KCP_CMD_PUSH: u8 = 81;
const KCP_OVERHEAD: usize = 24;

async fn kcp(authority: &str, query: Option<&str>) -> Result<String> {
    let settings = KcpSettings::parse(query)?;
    let socket = UdpSocket::bind(authority).await?;
    let local = socket.local_addr()?;
    // Sends go through a clone of the socket that tokio does not watch: tried at once.
    let std = socket.into_std()?;
    let sender = Arc::new(std.try_clone()?);
    let socket = UdpSocket::from_std(std)?;
    tokio::spawn(kcp_loop(socket, sender, settings));
    Ok(match query {
        Some(query) => format!("kcp://{local}?{query}"),
        None => format!("kcp://{local}"),
    })
}

async fn kcp_loop(socket: UdpSocket, sender: Arc<std::net::UdpSocket>, settings: KcpSettings) {
    let epoch = Instant::now();
    let now = || epoch.elapsed().as_millis() as u32;
    let mut table: HashMap<(SocketAddr, u32), Conversation> = HashMap::new();
    let mut touched = Vec::new();
    let mut buf = vec![0u8; BUF];
    let mut msg = vec![0u8; BUF];
    let mut out = Vec::with_capacity(BUF);
    let mut tick = tokio::time::interval(Duration::from_millis(u64::from(settings.interval)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let now = now();
                let mut received = received;
                for _ in 0..KCP_BATCH {
                    if let Ok((len, from)) = received {
                        let key = kcp_input(&mut table, &sender, settings, from, &buf[..len], now);
                        if let Some(key) = key {
                            touched.push(key);
                        }
                    }
                    received = match socket.try_recv_from(&mut buf) {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        other => other,
                    };
                }
                for key in touched.drain(..) {
                    let Some(conv) = table.get_mut(&key) else { continue };
                    kcp_answer(conv, settings, &mut msg, &mut out);
                    if conv.ended {
                        table.remove(&key);
                    }
                }
            }
            _ = tick.tick() => {
                let now = now();
                table.retain(|_, conv| {
                    if conv.kcp.wait_snd() > 0 {
                        let _ = conv.kcp.update(now);
                    }
                    !conv.kcp.is_dead_link()
                });
            }
        }
    }
}

/// Feeds one datagram to its conversation (opening one for the first segment of a
/// new one); returns the conversation's key the first time a batch touches it.
fn kcp_input(
    table: &mut HashMap<(SocketAddr, u32), Conversation>,
    sender: &Arc<std::net::UdpSocket>,
    settings: KcpSettings,
    from: SocketAddr,
    datagram: &[u8],
    now: u32,
) -> Option<(SocketAddr, u32)> {
    if datagram.len() < KCP_OVERHEAD {
        return None;
    }
    let key = (from, kcp::get_conv(datagram));
    let conv = match table.entry(key) {
        std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
        std::collections::hash_map::Entry::Vacant(entry) => {
            // Only the first segment of a conversation opens one, not a late one of a
            // conversation that ended.
            if datagram[4] != KCP_CMD_PUSH || kcp::get_sn(datagram) != 0 {
                return None;
            }
            let out = KcpOut {
                socket: sender.clone(),
                to: from,
            };
            let mut kcp = if settings.stream {
                kcp::Kcp::new_stream(key.1, out)
            } else {
                kcp::Kcp::new(key.1, out)
            };
            kcp.set_mtu(settings.mtu).ok()?;
            kcp.set_nodelay(
                settings.nodelay,
                settings.interval as i32,
                settings.resend.min(i32::MAX as u32) as i32,
                settings.nc,
            );
            kcp.set_wndsize(settings.sndwnd, settings.rcvwnd);
            let _ = kcp.update(now);
            entry.insert(Conversation {
                kcp,
                partial: Vec::new(),
                touched: false,
                ended: false,
            })
        }
    };
    let _ = conv.kcp.update(now);
    let _ = conv.kcp.input(datagram);
    if conv.touched {
        return None;
    }
    conv.touched = true;
    Some(key)
}

/// Answers what a conversation received since the last batch and flushes it once.
fn kcp_answer(
    conv: &mut Conversation,
    settings: KcpSettings,
    msg: &mut Vec<u8>,
    out: &mut Vec<u8>,
) {
    conv.touched = false;
    out.clear();
    while let Ok(size) = conv.kcp.peeksize() {
        if msg.len() < size {
            msg.resize(size, 0);
        }
        let Ok(n) = conv.kcp.recv(&mut msg[..size]) else {
            break;
        };
        // Received messages are one byte stream: a frame may span two.
        let answered = if conv.partial.is_empty() {
            answer_stream(&msg[..n], out).map(|(taken, bye)| {
                conv.partial.extend_from_slice(&msg[taken..n]);
                bye
            })
        } else {
            conv.partial.extend_from_slice(&msg[..n]);
            answer_stream(&conv.partial, out).map(|(taken, bye)| {
                conv.partial.drain(..taken);
                bye
            })
        };
        match answered {
            Ok(false) => {}
            Ok(true) | Err(Refused) => {
                conv.ended = true;
                break;
            }
        }
    }
    if settings.stream {
        if !out.is_empty() {
            let _ = conv.kcp.send(out);
        }
    } else {
        // One KCP message per frame.
        let mut pos = 0;
        while pos < out.len() {
            let len = 2 + usize::from(u16::from_le_bytes([out[pos], out[pos + 1]]));
            let _ = conv.kcp.send(&out[pos..pos + len]);
            pos += len;
        }
    }
    let _ = conv.kcp.flush();
}
