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
//!   one packet, checked by [`split_message`](crate::wire::frame::split_message) and sliced
//!   without copying; frames out go one per message and the batch is flushed at its end.
//!   These live in their transport modules.

// A build with only message transports (ws, udp) has no use for the stream halves.
#![cfg_attr(
    not(any(feature = "tcp", feature = "quic", feature = "kcp")),
    allow(dead_code, reason = "stream transports only")
)]

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, Sleep};
use tokio_util::codec::Decoder;

use crate::codec::Body;
use crate::session::error::SessionErrorKind;
use crate::session::outbound::{Batch, OutQueue};
use crate::session::{CloseReason, Session};
use crate::wire::frame::{FrameCodec, HEADER_LEN, LEN_FIELD, Packet};

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
    /// `bye`: a transport with no end of its own (UDP, KCP) tells the peer with the
    /// extension's bye frame; false when the peer closed or went silent itself, or is a
    /// plain peer that would not know the frame. Called only when the queue finished
    /// normally (not on abort).
    fn shutdown(
        &mut self,
        reason: Option<&CloseReason>,
        bye: bool,
    ) -> impl Future<Output = ()> + Send;
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
    /// How long a frame may take once its first byte is in; `None`: forever.
    frame_timeout: Option<Duration>,
    /// Bytes read from the stream so far. The partial frame at the front of `buf`
    /// starts at `read - buf.len()`, which tells one partial frame from the next.
    read: u64,
    /// The frame partly received when the source last waited: where it starts in the
    /// stream and when it was first seen incomplete.
    partial: Option<(u64, Instant)>,
    /// The frame timeout's one timer, made the first time the source waits with part
    /// of a frame buffered and reused after that. It is moved only when it fires
    /// early (the frame it was set for completed and a later one is partial), so a
    /// busy stream, whose reads often end mid-frame, resets it at most once per
    /// timeout and never per message.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<R> StreamSource<R> {
    pub(crate) fn new(reader: R, max_frame_len: usize, frame_timeout: Option<Duration>) -> Self {
        Self {
            reader,
            codec: FrameCodec::new(max_frame_len),
            buf: BytesMut::new(),
            ready: Bytes::new(),
            chunk: READ_CHUNK,
            frame_timeout,
            read: 0,
            partial: None,
            deadline: None,
        }
    }

    /// A source with the session's frame limit and frame timeout.
    pub(crate) fn for_session(reader: R, session: &Session) -> Self {
        Self::new(reader, session.max_frame_len(), session.frame_timeout())
    }

    /// When the frame partly buffered must be complete, if one is and the frame timeout
    /// is on. Called only where the source is about to wait for bytes, so the clock is
    /// read once per wait that leaves a frame incomplete, never per message.
    fn frame_due(&mut self) -> Option<Instant> {
        let timeout = self.frame_timeout?;
        if self.buf.is_empty() {
            self.partial = None;
            return None;
        }
        let start = self.read - self.buf.len() as u64;
        let since = match self.partial {
            Some((at, since)) if at == start => since,
            _ => {
                let now = Instant::now();
                self.partial = Some((start, now));
                now
            }
        };
        Some(since + timeout)
    }

    /// The error of a frame whose time is up.
    fn frame_timed_out(&self) -> ReadEnd {
        let since = self.partial.map_or_else(Instant::now, |(_, since)| since);
        let expected = match self.codec.frame_size(&self.buf) {
            Ok(Some(size)) => size,
            _ => HEADER_LEN,
        };
        SessionErrorKind::FrameTimeout {
            expected,
            received: self.buf.len(),
            after: since.elapsed(),
        }
        .into()
    }
}

/// Ready once `due` has passed, with one timer kept in `slot`: made on first use, and
/// moved to `due` only when it fires before it.
pub(crate) fn poll_due(
    slot: &mut Option<Pin<Box<Sleep>>>,
    due: Instant,
    cx: &mut Context<'_>,
) -> Poll<()> {
    let sleep = slot.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
    if sleep.deadline() > due {
        sleep.as_mut().reset(due);
    }
    loop {
        std::task::ready!(sleep.as_mut().poll(cx));
        if sleep.deadline() >= due {
            return Poll::Ready(());
        }
        sleep.as_mut().reset(due);
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
        self.next_frame().await
    }
}

impl<R: AsyncRead + Unpin + Send + 'static> StreamSource<R> {
    /// The next frame: from the buffer, else read from the stream. Cancel safe.
    async fn next_frame(&mut self) -> Result<Packet, ReadEnd> {
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
            let due = self.frame_due();
            // Cancel safe: read_buf either appends to the buffer or does nothing, and the
            // buffer is only given back when it holds nothing.
            let read = std::future::poll_fn(|cx| {
                let read = poll_read_some(&mut self.reader, &mut self.buf, missing, chunk, cx);
                // A quiet stream that gave its buffer back gives its timer back too.
                if due.is_none() && self.buf.capacity() == 0 {
                    self.deadline = None;
                }
                match (read, due) {
                    (Poll::Pending, Some(due)) => {
                        poll_due(&mut self.deadline, due, cx).map(|()| None)
                    }
                    (read, _) => read.map(Some),
                }
            })
            .await;
            let Some(read) = read else {
                return Err(self.frame_timed_out());
            };
            if let Ok((n, _)) = read {
                self.read += n as u64;
            }
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
///
/// The room for the rest of a frame is bounded by `chunk`, which grows only while reads
/// fill what they are offered: a frame's declared length is the peer's word, so a
/// peer that declares 64 KiB and sends a few bytes holds a read chunk, not 64 KiB,
/// while a busy stream (whose chunk has grown) still takes a large frame in one read.
fn poll_read_some<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    missing: usize,
    chunk: usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<(usize, bool)>> {
    if buf.capacity() - buf.len() < missing.min(chunk).max(READ_CHUNK) {
        buf.reserve(chunk.max(READ_CHUNK));
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
    #[cfg_attr(
        not(any(feature = "tcp", feature = "quic")),
        allow(dead_code, reason = "KCP has a frame sink of its own")
    )]
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
    #[cfg_attr(not(feature = "quic"), allow(dead_code, reason = "used by quic only"))]
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

    async fn shutdown(&mut self, _: Option<&CloseReason>, _: bool) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::frame::{MAX_FRAME_LEN, encode_frame};

    const SECOND: Duration = Duration::from_secs(1);

    fn frame_bytes(id: u32, len: usize) -> Vec<u8> {
        encode_frame(id, &vec![7; len]).unwrap().to_vec()
    }

    #[tokio::test]
    async fn a_declared_but_unsent_frame_holds_a_read_chunk() {
        let (mut tx, rx) = tokio::io::duplex(1 << 20);
        let frame = frame_bytes(1, MAX_FRAME_LEN - 4);
        // The header declares 65,535 bytes; only the header and two body bytes come.
        tx.write_all(&frame[..8]).await.unwrap();
        let mut source = StreamSource::new(rx, MAX_FRAME_LEN, None);
        {
            let next = std::pin::pin!(source.next_frame());
            assert!(futures_util::poll!(next).is_pending());
        }
        assert_eq!(source.buf.len(), 8);
        assert!(
            source.buf.capacity() <= 2 * READ_CHUNK,
            "a frame declared but not sent holds {} bytes",
            source.buf.capacity()
        );
        // The rest arrives: the frame is whole, the buffer grown with what came.
        tx.write_all(&frame[8..]).await.unwrap();
        let packet = source.next_frame().await.unwrap();
        assert_eq!((packet.id, packet.body.len()), (1, MAX_FRAME_LEN - 4));
    }

    #[tokio::test]
    async fn a_busy_stream_takes_a_large_frame_in_one_read() {
        let (mut tx, rx) = tokio::io::duplex(1 << 20);
        let frame = frame_bytes(1, 60_000);
        tx.write_all(&frame[..8]).await.unwrap();
        let mut source = StreamSource::new(rx, MAX_FRAME_LEN, None);
        // Reads have been filling what they were offered.
        source.chunk = MAX_READ_CHUNK;
        {
            let next = std::pin::pin!(source.next_frame());
            assert!(futures_util::poll!(next).is_pending());
        }
        assert!(
            source.buf.capacity() >= frame.len(),
            "room for the whole frame"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_frame_incomplete_for_the_timeout_ends_the_stream() {
        let (mut tx, rx) = tokio::io::duplex(1 << 16);
        tx.write_all(&frame_bytes(9, 20)[..10]).await.unwrap();
        let mut source = StreamSource::new(rx, MAX_FRAME_LEN, Some(SECOND));
        let err = match source.next_frame().await {
            Err(ReadEnd::Failed(kind)) => kind,
            other => panic!("expected a frame timeout, got {other:?}"),
        };
        assert!(matches!(
            err,
            SessionErrorKind::FrameTimeout {
                expected: 26,
                received: 10,
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "a frame of 26 bytes started 1s ago is still incomplete: 10 of 26 bytes received"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickled_header_is_timed_too() {
        let (mut tx, rx) = tokio::io::duplex(1 << 16);
        let mut source = StreamSource::new(rx, MAX_FRAME_LEN, Some(SECOND));
        let trickle = tokio::spawn(async move {
            for byte in frame_bytes(9, 20) {
                if tx.write_all(&[byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        match source.next_frame().await {
            Err(ReadEnd::Failed(SessionErrorKind::FrameTimeout { received, .. })) => {
                assert!((1..26).contains(&received), "{received} bytes");
            }
            other => panic!("expected a frame timeout, got {other:?}"),
        }
        drop(source);
        trickle.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn each_frame_has_its_own_time() {
        let (mut tx, rx) = tokio::io::duplex(1 << 16);
        let mut source = StreamSource::new(rx, MAX_FRAME_LEN, Some(SECOND));
        // Five frames, each arriving in two halves 600 ms apart, each half of the next
        // frame with the end of the one before: a frame is always partly buffered
        // for 3 s, but none is incomplete for a second.
        let writer = tokio::spawn(async move {
            let frames: Vec<Vec<u8>> = (0..5).map(|i| frame_bytes(i, 20)).collect();
            tx.write_all(&frames[0][..13]).await.unwrap();
            for i in 0..5 {
                tokio::time::sleep(Duration::from_millis(600)).await;
                let mut next = frames[i][13..].to_vec();
                if let Some(after) = frames.get(i + 1) {
                    next.extend_from_slice(&after[..13]);
                }
                tx.write_all(&next).await.unwrap();
            }
            tx
        });
        for i in 0..5 {
            let packet = source.next_frame().await.unwrap();
            assert_eq!(packet.id, i);
        }
        drop(writer.await.unwrap());
    }
}
