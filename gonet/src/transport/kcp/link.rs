//! A conversation seen from its session: a reader (an `AsyncRead` of the messages KCP
//! delivers, cut into frames by the driver's stream source) and a frame sink.
//!
//! Received messages are read as one byte stream whatever the mode, so a peer that
//! splits a frame over several messages (kcp-go cuts a write larger than one segment
//! into one message per segment) is understood too. Sending differs: in message mode
//! each frame is one KCP message, as Go gonet reads them; in stream mode the batch is
//! one stream of bytes, packed into full segments.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, ReadBuf};

use super::KcpMode;
use super::engine::{Conv, Engine, State};
use crate::driver::link::{FrameSink, MAX_BATCH};
use crate::session::CloseReason;
use crate::session::outbound::{Batch, OutQueue};
use crate::wire;
use crate::wire::frame::LEN_FIELD;

/// How long a closing client waits for its bye to be acknowledged.
const LINGER: Duration = Duration::from_secs(1);

/// Tells the engine when the session has let go of its conversation: when the last of
/// its reader and sink is dropped.
pub(super) struct Release {
    engine: Arc<Engine>,
    conv: Arc<Conv>,
}

impl Release {
    pub(super) fn new(engine: Arc<Engine>, conv: Arc<Conv>) -> Self {
        Self { engine, conv }
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        self.engine.release(&self.conv);
    }
}

fn register(slot: &mut Option<std::task::Waker>, cx: &Context<'_>) {
    if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
        *slot = Some(cx.waker().clone());
    }
}

/// The messages of a conversation as a byte stream.
pub(crate) struct KcpReader {
    engine: Arc<Engine>,
    conv: Arc<Conv>,
    /// A message larger than the room a read offered, handed out over several reads.
    rest: Vec<u8>,
    pos: usize,
    _release: Arc<Release>,
}

impl KcpReader {
    pub(super) fn new(engine: Arc<Engine>, conv: Arc<Conv>, release: Arc<Release>) -> Self {
        Self {
            engine,
            conv,
            rest: Vec::new(),
            pos: 0,
            _release: release,
        }
    }
}

impl AsyncRead for KcpReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.rest.len() {
            let n = (this.rest.len() - this.pos).min(buf.remaining());
            buf.put_slice(&this.rest[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.rest.len() {
                this.rest = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        let mut state = this.conv.lock();
        let mut got = false;
        while buf.remaining() > 0 {
            let Ok(size) = state.kcp.peeksize() else {
                break;
            };
            if size <= buf.remaining() {
                let room = buf.initialize_unfilled_to(size);
                match state.kcp.recv(room) {
                    Ok(n) => buf.advance(n),
                    Err(_) => break,
                }
                got = true;
            } else if got {
                break;
            } else {
                let mut whole = vec![0u8; size];
                if state.kcp.recv(&mut whole).is_err() {
                    break;
                }
                let n = buf.remaining();
                buf.put_slice(&whole[..n]);
                this.rest = whole;
                this.pos = n;
                got = true;
            }
        }
        if got {
            if !this.conv.active.load(std::sync::atomic::Ordering::Acquire) {
                // A receive window that was full has room again: tell the peer now
                // (an active conversation tells it at the next tick).
                let _ = state.kcp.update(this.engine.now());
                let _ = state.kcp.flush();
                state.acks_owed = false;
            }
            return Poll::Ready(Ok(()));
        }
        if let Some(end) = state.end {
            return Poll::Ready(Err(end.error()));
        }
        register(&mut state.reader, cx);
        Poll::Pending
    }
}

/// Frames out into KCP: one message per frame (message mode) or one stream.
pub(crate) struct KcpSink {
    engine: Arc<Engine>,
    conv: Arc<Conv>,
    buf: BytesMut,
    stream: bool,
    client: bool,
    _release: Arc<Release>,
}

impl KcpSink {
    pub(super) fn new(
        engine: Arc<Engine>,
        conv: Arc<Conv>,
        release: Arc<Release>,
        client: bool,
    ) -> Self {
        Self {
            stream: engine.config.settings.mode == KcpMode::Stream,
            engine,
            conv,
            buf: BytesMut::new(),
            client,
            _release: release,
        }
    }

    /// Queues `data` (whole frames back to back) in KCP, waiting while the send window
    /// is full (that wait is what the write timeout measures), and flushes it out now.
    async fn send(&self, data: &[u8]) -> io::Result<()> {
        let mut pos = 0;
        poll_fn(|cx| {
            let mut state = self.conv.lock();
            if let Some(end) = state.end {
                return Poll::Ready(Err(end.error()));
            }
            let _ = state.kcp.update(self.engine.now());
            let mut queued = false;
            while pos < data.len() && state.window_open() {
                let n = if self.stream {
                    // One send may not need more fragments than KCP allows.
                    (data.len() - pos).min(state.kcp.mss() * 64)
                } else {
                    frame_len(&data[pos..])
                };
                if let Err(err) = state.kcp.send(&data[pos..pos + n]) {
                    return Poll::Ready(Err(io::Error::other(format!(
                        "kcp refused a {n}-byte message: {err}"
                    ))));
                }
                pos += n;
                queued = true;
            }
            if queued {
                let _ = state.kcp.flush();
                state.acks_owed = false;
                if state.kcp.wait_snd() > 0 {
                    self.engine.activate(&self.conv);
                }
            }
            if pos == data.len() {
                return Poll::Ready(Ok(()));
            }
            register(&mut state.writer, cx);
            Poll::Pending
        })
        .await
    }

    /// Waits until everything sent has been acknowledged.
    async fn settled(&self) {
        poll_fn(|cx| {
            let mut state: std::sync::MutexGuard<'_, State> = self.conv.lock();
            if state.kcp.wait_snd() == 0 || state.end.is_some() {
                return Poll::Ready(());
            }
            register(&mut state.writer, cx);
            Poll::Pending
        })
        .await
    }
}

/// The length of the first frame of `buf`, a buffer of whole frames.
fn frame_len(buf: &[u8]) -> usize {
    match buf {
        [lo, hi, ..] => (LEN_FIELD + usize::from(u16::from_le_bytes([*lo, *hi]))).min(buf.len()),
        _ => buf.len(),
    }
}

impl FrameSink for KcpSink {
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
        let result = self.send(&self.buf).await;
        if self.buf.capacity() > 16 * 1024 {
            // A quiet session holds no large batch buffer.
            self.buf = BytesMut::new();
        }
        result
    }

    async fn shutdown(&mut self, reason: Option<&CloseReason>, bye: bool) {
        // The peer said bye, or is gone: nobody to tell, nothing to wait for.
        if matches!(
            reason,
            Some(CloseReason::PeerClosed | CloseReason::IdleTimeout)
        ) {
            self.conv.lock().abandoned = true;
            return;
        }
        // KCP has no end of stream: a bye packet tells the peer at once (not a plain
        // peer, which would not know it).
        let bye = bye.then(|| wire::encode_control(wire::ID_BYE));
        if self.client {
            // The client's engine ends with its session: wait (a little) for what was
            // sent, the bye included, to arrive.
            let _ = tokio::time::timeout(LINGER, async {
                if let Some(bye) = &bye {
                    self.send(bye).await?;
                }
                self.settled().await;
                Ok::<_, io::Error>(())
            })
            .await;
        } else if let Some(bye) = &bye {
            // The server's engine keeps the conversation after the session, resending
            // the bye until it is acknowledged.
            let _ = tokio::time::timeout(LINGER, self.send(bye)).await;
        }
    }
}
