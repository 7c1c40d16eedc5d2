//! The two seams between the session driver and a transport: a [`PacketSource`] the
//! reader pulls packets from and a [`FrameSink`] the writer pushes frames into.
//!
//! Two shapes cover every transport:
//!
//! - **Streams** (TCP, KCP, a QUIC stream): bytes in, [`FrameCodec`] cuts them into
//!   packets ([`StreamSource`]); frames out go with one vectored write per batch where
//!   the stream takes them, else copied into one buffer and written with one
//!   `write_all` ([`StreamSink`]).
//! - **Messages** (a WebSocket binary message, a UDP or QUIC datagram): each message is
//!   one packet, checked by [`split_message`](crate::frame::split_message) and sliced
//!   without copying; frames out go one per message and the batch is flushed at its end.
//!   These live in their transport modules.

// A build with only message transports (ws, udp) has no use for the stream halves.
#![cfg_attr(
    not(any(feature = "tcp", feature = "quic", feature = "kcp")),
    allow(dead_code, reason = "stream transports only")
)]

use std::future::Future;
use std::io::{self, IoSlice};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::Decoder;

use crate::Body;
use crate::error::SessionErrorKind;
use crate::frame::{FrameCodec, HEADER_LEN, LEN_FIELD, Packet};
use crate::outbound::{Batch, OutQueue};
use crate::session::{CloseReason, Session};

/// The most bytes one batch carries.
pub(crate) const MAX_BATCH: usize = 64 * 1024;
/// The smallest free space the reader asks a stream to fill.
const READ_CHUNK: usize = 4 * 1024;
/// The most it asks for, when reads keep filling what it offers.
const MAX_READ_CHUNK: usize = 64 * 1024;

/// Why a source has no more packets.
#[derive(Debug)]
pub(crate) enum ReadEnd {
    /// The connection ended without an error of ours, for this reason.
    Closed(CloseReason),
    /// An error ended it; the session closes with [`CloseReason::Error`].
    Failed(SessionErrorKind),
}

impl From<SessionErrorKind> for ReadEnd {
    fn from(kind: SessionErrorKind) -> Self {
        ReadEnd::Failed(kind)
    }
}

/// Where the reader of a session gets its packets.
pub(crate) trait PacketSource: Send + 'static {
    /// The next packet. Must be cancel safe: the reader drops the future when a timer
    /// or a close wins the race, and calls again later.
    ///
    /// A source that can skip a bad packet (UDP) reports it through `session` and goes
    /// on; one that cannot returns [`ReadEnd::Failed`].
    fn next_packet(
        &mut self,
        session: &Session,
    ) -> impl Future<Output = Result<Packet, ReadEnd>> + Send;

    /// A packet that is already buffered, without waiting. The reader takes these
    /// first, so a batch read from the socket is delivered without a timer or a
    /// cancellation check per packet.
    fn try_next(&mut self, _session: &Session) -> Option<Result<Packet, ReadEnd>> {
        None
    }

    /// Whether the source's reads have been large lately, so that it keeps its read
    /// buffer between them; the session then keeps its reply buffer and handler slot
    /// too instead of giving them back at every wait.
    fn is_busy(&self) -> bool {
        false
    }

    /// Hands the packets already buffered to `take`, in order, until there are no more
    /// or `take` returns false (it has taken the packet it was given either way).
    /// Returns the end of the source if one was met.
    ///
    /// Bodies are borrowed: a source that holds many packets in one buffer (a stream)
    /// hands them out without a shared buffer per packet.
    fn drain(
        &mut self,
        session: &Session,
        take: &mut dyn FnMut(u32, Body<'_>) -> bool,
    ) -> Option<ReadEnd> {
        loop {
            match self.try_next(session)? {
                Ok(packet) => {
                    if !take(packet.id, Body::new(&packet.body)) {
                        return None;
                    }
                }
                Err(end) => return Some(end),
            }
        }
    }
}

/// Where the writer of a session puts its frames.
pub(crate) trait FrameSink: Send + 'static {
    /// Waits for queued frames and takes one batch from `out`.
    fn take(&mut self, out: &OutQueue) -> impl Future<Output = Batch> + Send;

    /// Bytes in the batch taken last (for error messages).
    fn pending(&self) -> usize;

    /// Writes (and flushes) the batch taken last.
    fn write(&mut self) -> impl Future<Output = io::Result<()>> + Send;

    /// Ends the connection after the last batch; `reason` is why the session closes.
    /// Called only when the queue finished normally (not on abort).
    fn shutdown(&mut self, reason: Option<&CloseReason>) -> impl Future<Output = ()> + Send;
}

/// A byte stream cut into frames.
#[derive(Debug)]
pub(crate) struct StreamSource<R> {
    reader: R,
    codec: FrameCodec,
    buf: BytesMut,
    /// Whole frames taken from the front of `buf` in one piece and not handed out yet.
    ready: Bytes,
    /// The free space offered to the next read: doubles while reads fill it, halves
    /// while they are small.
    chunk: usize,
}

impl<R> StreamSource<R> {
    pub(crate) fn new(reader: R, max_frame_len: usize) -> Self {
        Self {
            reader,
            codec: FrameCodec::new(max_frame_len),
            buf: BytesMut::new(),
            ready: Bytes::new(),
            chunk: READ_CHUNK,
        }
    }
}

impl<R> StreamSource<R> {
    /// The next frame in the buffer, if a whole one is there.
    pub(crate) fn buffered(&mut self) -> Option<Result<Packet, ReadEnd>> {
        if !self.ready.is_empty() {
            let size = frame_len(&self.ready);
            let mut frame = self.ready.split_to(size);
            frame.advance(LEN_FIELD);
            let id = frame.get_u32_le();
            return Some(Ok(Packet { id, body: frame }));
        }
        match self.codec.decode(&mut self.buf) {
            Ok(Some(packet)) => Some(Ok(packet)),
            Ok(None) => None,
            Err(err) => Some(Err(SessionErrorKind::Frame(err).into())),
        }
    }

    /// Moves the whole frames at the front of the buffer to `ready`, in one piece.
    /// Returns the error of the first bad frame when there is no good one before it.
    fn take_whole_frames(&mut self) -> Result<(), ReadEnd> {
        let mut total = 0;
        loop {
            match self.codec.frame_size(&self.buf[total..]) {
                Ok(Some(size)) if self.buf.len() - total >= size => total += size,
                Ok(_) => break,
                // Frames before a bad one are delivered first; the next read meets it.
                Err(_) if total > 0 => break,
                Err(err) => return Err(SessionErrorKind::Frame(err).into()),
            }
        }
        if total > 0 {
            self.ready = self.buf.split_to(total).freeze();
        }
        Ok(())
    }
}

impl<R: AsyncRead + Unpin + Send + 'static> PacketSource for StreamSource<R> {
    fn try_next(&mut self, _: &Session) -> Option<Result<Packet, ReadEnd>> {
        self.buffered()
    }

    fn is_busy(&self) -> bool {
        self.chunk > READ_CHUNK
    }

    fn drain(
        &mut self,
        _: &Session,
        take: &mut dyn FnMut(u32, Body<'_>) -> bool,
    ) -> Option<ReadEnd> {
        if self.ready.is_empty() {
            if let Err(end) = self.take_whole_frames() {
                return Some(end);
            }
        }
        let ready = std::mem::take(&mut self.ready);
        let mut pos = 0;
        while pos < ready.len() {
            let size = frame_len(&ready[pos..]);
            let id = u32::from_le_bytes(
                ready[pos + LEN_FIELD..pos + HEADER_LEN]
                    .try_into()
                    .expect("a whole frame has an id"),
            );
            let body = Body::part(&ready, pos + HEADER_LEN..pos + size);
            pos += size;
            if !take(id, body) {
                self.ready = ready.slice(pos..);
                break;
            }
        }
        None
    }

    async fn next_packet(&mut self, _: &Session) -> Result<Packet, ReadEnd> {
        if let Some(next) = self.buffered() {
            return next;
        }
        loop {
            match self.codec.decode(&mut self.buf) {
                Ok(Some(packet)) => return Ok(packet),
                Ok(None) => {}
                Err(err) => return Err(SessionErrorKind::Frame(err).into()),
            }
            let missing = self.codec.missing(&self.buf);
            let chunk = self.chunk;
            // Cancel safe: read_buf either appends to the buffer or does nothing, and the
            // buffer is only given back when it holds nothing.
            let read = std::future::poll_fn(|cx| {
                poll_read_some(&mut self.reader, &mut self.buf, missing, chunk, cx)
            })
            .await;
            match read {
                Ok((0, _)) => {
                    return Err(match self.codec.decode_eof(&mut self.buf) {
                        // A complete frame right before the end is still delivered;
                        // the next call sees the end again with an empty buffer.
                        Ok(Some(packet)) => return Ok(packet),
                        Ok(None) => ReadEnd::Closed(CloseReason::PeerClosed),
                        Err(err) => SessionErrorKind::Frame(err).into(),
                    });
                }
                // A full buffer means more was waiting: read more at once next time.
                Ok((_, true)) => self.chunk = (chunk * 2).min(MAX_READ_CHUNK),
                Ok((n, false)) if n < chunk / 16 => self.chunk = (chunk / 2).max(READ_CHUNK),
                Ok(_) => {}
                Err(err) => return Err(map_read_error(err)),
            }
        }
    }
}

/// Reads what the stream has into `buf`, with room for at least `missing` more bytes
/// (the rest of a partly read frame) and for `chunk` in all. Returns the bytes read and
/// whether they filled the room offered.
///
/// A quiet peer costs no read buffer: when a read would wait, nothing partial is
/// buffered and reads have been small, the buffer is given back and a new one taken
/// when the reader is woken again. Idle sessions hold no read buffer at all (a session
/// that went quiet right after large reads keeps one until its reads are small again).
fn poll_read_some<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    missing: usize,
    chunk: usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<(usize, bool)>> {
    if buf.capacity() - buf.len() < missing.max(READ_CHUNK) {
        buf.reserve(missing.max(chunk));
    }
    let room = buf.capacity() - buf.len();
    let read = std::pin::pin!(reader.read_buf(buf)).poll(cx);
    // A session whose reads have been large keeps its buffer: giving back and taking
    // tens of kilobytes at every batch makes the allocator return memory to the system
    // and fault it in again.
    if read.is_pending() && buf.is_empty() && chunk <= READ_CHUNK {
        *buf = BytesMut::new();
    }
    read.map_ok(|n| (n, n >= room))
}

/// A reset or an aborted connection is the peer going away, not a failure of ours.
fn map_read_error(err: io::Error) -> ReadEnd {
    match err.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
            ReadEnd::Closed(CloseReason::PeerClosed)
        }
        _ => SessionErrorKind::Io(err).into(),
    }
}

/// A byte stream written in batches, one call per batch, because one write of the
/// frames together costs far less than a system call (or a KCP segment, or a QUIC
/// frame) each. A stream with vectored writes (TCP) gets the frames as they are, so a
/// broadcast's one buffer is never copied per recipient; others get them copied into
/// one buffer.
#[derive(Debug)]
pub(crate) struct StreamSink<W> {
    writer: W,
    vectored: bool,
    frames: Vec<Bytes>,
    buf: BytesMut,
}

impl<W: AsyncWrite> StreamSink<W> {
    pub(crate) fn new(writer: W) -> Self {
        Self {
            vectored: writer.is_write_vectored(),
            writer,
            frames: Vec::new(),
            buf: BytesMut::new(),
        }
    }
}

impl<W> StreamSink<W> {
    #[cfg_attr(
        not(any(feature = "quic", feature = "kcp")),
        allow(dead_code, reason = "used by quic and kcp only")
    )]
    pub(crate) fn writer_mut(&mut self) -> &mut W {
        &mut self.writer
    }
}

impl<W: AsyncWrite + Unpin + Send + 'static> FrameSink for StreamSink<W> {
    async fn take(&mut self, out: &OutQueue) -> Batch {
        self.frames.clear();
        self.buf.clear();
        if self.buf.capacity() > MAX_BATCH * 2 {
            self.buf = BytesMut::new();
        }
        if self.vectored {
            out.next_frames(&mut self.frames, MAX_BATCH).await
        } else {
            out.next_batch(&mut self.buf, MAX_BATCH).await
        }
    }

    fn pending(&self) -> usize {
        self.buf.len() + self.frames.iter().map(Bytes::len).sum::<usize>()
    }

    async fn write(&mut self) -> io::Result<()> {
        if self.vectored {
            write_frames(&mut self.writer, &self.frames).await?;
        } else {
            self.writer.write_all(&self.buf).await?;
        }
        // A no-op for TCP; pushes KCP segments and TLS records out now rather than at
        // the next timer tick.
        self.writer.flush().await
    }

    async fn shutdown(&mut self, _: Option<&CloseReason>) {
        // Tell the peer we are done (TCP FIN, QUIC stream FIN). It may already be gone.
        let _ = self.writer.shutdown().await;
    }
}

/// Writes `frames` with as few vectored writes as the writer allows (a plain write for
/// one buffer, such as the replies of one batch of messages).
async fn write_frames<W: AsyncWrite + Unpin>(writer: &mut W, frames: &[Bytes]) -> io::Result<()> {
    if let [frame] = frames {
        return writer.write_all(frame).await;
    }
    let mut slices: Vec<IoSlice<'_>> = frames.iter().map(|f| IoSlice::new(f)).collect();
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        let n = writer.write_vectored(slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    Ok(())
}

/// Frames of a message transport waiting to be sent, one per message.
#[cfg_attr(
    not(any(feature = "ws", feature = "udp")),
    allow(dead_code, reason = "message transports only")
)]
#[derive(Debug, Default)]
pub(crate) struct MessageBatch {
    pub(crate) frames: Vec<Bytes>,
    pub(crate) bytes: usize,
}

#[cfg_attr(
    not(any(feature = "ws", feature = "udp")),
    allow(dead_code, reason = "message transports only")
)]
impl MessageBatch {
    /// Takes one batch of frames, one per message. A buffer of several frames (the
    /// replies of one batch of handlers, encoded back to back) is cut into its frames,
    /// without copying.
    pub(crate) async fn take(&mut self, out: &OutQueue) -> Batch {
        self.frames.clear();
        let batch = out.next_frames(&mut self.frames, MAX_BATCH).await;
        self.bytes = self.frames.iter().map(Bytes::len).sum();
        if self.frames.iter().any(|buf| frame_len(buf) < buf.len()) {
            let bufs = std::mem::take(&mut self.frames);
            for mut buf in bufs {
                while buf.len() > frame_len(&buf) {
                    self.frames.push(buf.split_to(frame_len(&buf)));
                }
                self.frames.push(buf);
            }
        }
        batch
    }
}

/// The length of the first frame of `buf`, a buffer of whole frames.
fn frame_len(buf: &[u8]) -> usize {
    match buf {
        [lo, hi, ..] => LEN_FIELD + usize::from(u16::from_le_bytes([*lo, *hi])),
        _ => buf.len(),
    }
}
