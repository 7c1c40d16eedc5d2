//! [`Metadata`]: key/value pairs that travel with one message (a trace id, a request
//! id, a locale), in a frame of their own just before it (see `PROTOCOL.md`).

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::frame::HEADER_LEN;

/// The metadata of the message that follows: `(key len u8 | key | value len u16 LE |
/// value)*`.
pub(crate) const ID_META: u32 = 0xFFFF_FF04;

/// The key of the trace id, which the per-message log span shows and cluster hops
/// carry on.
pub const TRACE_ID: &str = "trace-id";

/// Pairs of a key and a value that travel with one message: the caller sets them
/// ([`Session::call_with`](crate::Session::call_with),
/// [`Session::send_with`](crate::Session::send_with)); the handler, its layers and what
/// it calls read them with [`Metadata::current`]. The `trace-id` key is shown in the
/// message's log span and crosses cluster hops.
///
/// ```
/// use gonet::{Builder, Metadata, Router, Session};
///
/// #[derive(Clone, PartialEq, prost::Message)]
/// struct Ping {
///     #[prost(string, tag = "1")]
///     trace: String,
/// }
/// gonet::message!(Ping = 1, prost);
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let router = Router::new().route(|_: Session, _: Ping| async move {
///     let trace = Metadata::current().and_then(|m| m.trace_id().map(str::to_owned));
///     Ping { trace: trace.unwrap_or_default() }
/// });
/// let server = Builder::new().router(router).serve("tcp://127.0.0.1:0").await?;
/// let client = Builder::new().dial(&server.url()).await?;
///
/// let meta = Metadata::new().with(gonet::TRACE_ID, "4bf92f35");
/// let pong: Ping = client.call_with(&Ping::default(), &meta).await?;
/// assert_eq!(pong.trace, "4bf92f35");
/// # server.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    pairs: Vec<(String, String)>,
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.pairs.iter().map(|(k, v)| (k, v)))
            .finish()
    }
}

/// Why metadata does not fit its frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    /// A key longer than 255 bytes, or a value longer than 65,535.
    #[error(
        "metadata key {key:?} or its value is too long (keys up to 255 bytes, values up to 65,535)"
    )]
    TooLong {
        /// The key.
        key: String,
    },
    /// The frame is not well formed.
    #[error("metadata frame malformed: {0}")]
    Malformed(&'static str),
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<Metadata>>> = const { RefCell::new(None) };
}

impl Metadata {
    /// No pairs.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) `key`.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.insert(key, value);
        self
    }

    /// Adds (or replaces) `key`.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let (key, value) = (key.into(), value.into());
        match self.pairs.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => self.pairs.push((key, value)),
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of [`TRACE_ID`].
    pub fn trace_id(&self) -> Option<&str> {
        self.get(TRACE_ID)
    }

    /// The pairs, in the order set.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether there is no pair.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The metadata of the message being handled on this thread: set while a
    /// handler, its layers, or a future under [`scope`](Self::scope) runs.
    pub fn current() -> Option<Arc<Metadata>> {
        CURRENT.with(|c| c.borrow().clone())
    }

    /// Runs `fut` with `meta` as the [`current`](Self::current) metadata at every poll
    /// (a cluster node handling a message relayed with metadata does so).
    pub fn scope<F: Future>(meta: Option<Arc<Metadata>>, fut: F) -> Scoped<F> {
        Scoped { meta, fut }
    }

    /// Sets the current metadata for the duration of `f`.
    pub(crate) fn enter<R>(meta: &Option<Arc<Metadata>>, f: impl FnOnce() -> R) -> R {
        if meta.is_none() && CURRENT.with(|c| c.borrow().is_none()) {
            return f();
        }
        let previous = CURRENT.with(|c| c.replace(meta.clone()));
        struct Restore(Option<Arc<Metadata>>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let previous = self.0.take();
                CURRENT.with(|c| *c.borrow_mut() = previous);
            }
        }
        let _restore = Restore(previous);
        f()
    }

    /// The metadata frame, in front of the message it goes with.
    pub(crate) fn encode(&self) -> Result<Bytes, MetadataError> {
        let mut body = BytesMut::new();
        for (key, value) in &self.pairs {
            let (Ok(kl), Ok(vl)) = (u8::try_from(key.len()), u16::try_from(value.len())) else {
                return Err(MetadataError::TooLong { key: key.clone() });
            };
            body.put_u8(kl);
            body.extend_from_slice(key.as_bytes());
            body.put_u16_le(vl);
            body.extend_from_slice(value.as_bytes());
        }
        let mut frame = BytesMut::with_capacity(HEADER_LEN + body.len());
        super::frame::put_header(&mut frame, ID_META, body.len());
        frame.extend_from_slice(&body);
        Ok(frame.freeze())
    }

    /// Reads a metadata frame's body.
    pub(crate) fn decode(mut body: impl Buf) -> Result<Metadata, MetadataError> {
        let mut meta = Metadata::new();
        while body.has_remaining() {
            let kl = usize::from(body.get_u8());
            if body.remaining() < kl + 2 {
                return Err(MetadataError::Malformed("a key cut short"));
            }
            let key = String::from_utf8(body.copy_to_bytes(kl).to_vec())
                .map_err(|_| MetadataError::Malformed("a key is not UTF-8"))?;
            let vl = usize::from(body.get_u16_le());
            if body.remaining() < vl {
                return Err(MetadataError::Malformed("a value cut short"));
            }
            let value = String::from_utf8(body.copy_to_bytes(vl).to_vec())
                .map_err(|_| MetadataError::Malformed("a value is not UTF-8"))?;
            meta.insert(key, value);
        }
        Ok(meta)
    }
}

pin_project_lite::pin_project! {
    /// A future run with metadata (see [`Metadata::scope`]).
    pub struct Scoped<F> {
        meta: Option<Arc<Metadata>>,
        #[pin]
        fut: F,
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let fut = this.fut;
        Metadata::enter(this.meta, || fut.poll(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_reads_back_as_written() {
        let meta = Metadata::new()
            .with(TRACE_ID, "abc")
            .with("locale", "fr")
            .with(TRACE_ID, "def");
        let frame = meta.encode().unwrap();
        let back = Metadata::decode(&frame[HEADER_LEN..]).unwrap();
        assert_eq!(back, meta);
        assert_eq!(back.trace_id(), Some("def"));
        assert_eq!(back.iter().count(), 2);
    }

    #[test]
    fn the_frame_is_as_protocol_md_shows() {
        let frame = Metadata::new().with(TRACE_ID, "4bf92f35").encode().unwrap();
        let hex: Vec<String> = frame.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex.join(" "),
            "17 00 04 ff ff ff 08 74 72 61 63 65 2d 69 64 08 00 34 62 66 39 32 66 33 35"
        );
    }

    #[test]
    fn malformed_metadata_is_named() {
        assert_eq!(
            Metadata::decode(&[5, b'a'][..]),
            Err(MetadataError::Malformed("a key cut short"))
        );
        assert_eq!(
            Metadata::decode(&[1, b'a', 9, 0, b'x'][..]),
            Err(MetadataError::Malformed("a value cut short"))
        );
        let long = Metadata::new().with("k".repeat(300), "v");
        assert!(matches!(long.encode(), Err(MetadataError::TooLong { .. })));
    }

    #[test]
    fn the_current_metadata_is_set_only_inside() {
        let meta = Some(Arc::new(Metadata::new().with(TRACE_ID, "t")));
        assert!(Metadata::current().is_none());
        Metadata::enter(&meta, || {
            assert_eq!(Metadata::current().unwrap().trace_id(), Some("t"));
            Metadata::enter(&None, || assert!(Metadata::current().is_none()));
            assert!(Metadata::current().is_some());
        });
        assert!(Metadata::current().is_none());
    }
}
