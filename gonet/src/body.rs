//! [`Body`]: a received message body, borrowed from the buffer it was read into.

use std::fmt;
use std::ops::{Deref, Range};

use bytes::{Buf, Bytes};

/// A message body being decoded: a view of the bytes received, borrowed from the buffer
/// they were read into.
///
/// Read it as a slice (`&body[..]`) or as a [`Buf`]. [`Buf::copy_to_bytes`] takes a part
/// of it as [`Bytes`] without copying (what prost does for `bytes = "bytes"` fields),
/// so a decoder pays for shared buffers only for the parts it keeps.
///
/// ```
/// use bytes::{Buf, Bytes};
/// use gonet::Body;
///
/// let received = Bytes::from_static(b"\x05hello world");
/// let mut body = Body::new(&received);
/// assert_eq!(body.get_u8(), 5);
/// let hello = body.copy_to_bytes(5); // shares `received`, no copy
/// assert_eq!(&hello[..], b"hello");
/// assert_eq!(&body[..], b" world");
/// ```
#[derive(Clone)]
pub struct Body<'a> {
    buf: &'a Bytes,
    pos: usize,
    end: usize,
}

impl<'a> Body<'a> {
    /// The whole of `bytes`.
    pub fn new(bytes: &'a Bytes) -> Self {
        Body {
            buf: bytes,
            pos: 0,
            end: bytes.len(),
        }
    }

    /// The part `range` of `bytes`.
    pub(crate) fn part(bytes: &'a Bytes, range: Range<usize>) -> Self {
        debug_assert!(range.start <= range.end && range.end <= bytes.len());
        Body {
            buf: bytes,
            pos: range.start,
            end: range.end,
        }
    }

    /// What is left of the body, as `Bytes` sharing the received buffer.
    pub fn to_bytes(&self) -> Bytes {
        self.buf.slice(self.pos..self.end)
    }
}

impl Deref for Body<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }
}

impl AsRef<[u8]> for Body<'_> {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl fmt::Debug for Body<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Body").field("len", &self.len()).finish()
    }
}

impl Buf for Body<'_> {
    fn remaining(&self) -> usize {
        self.end - self.pos
    }

    fn chunk(&self) -> &[u8] {
        self
    }

    fn advance(&mut self, cnt: usize) {
        assert!(
            cnt <= self.remaining(),
            "advance past the end of a body: {cnt} > {}",
            self.remaining()
        );
        self.pos += cnt;
    }

    fn copy_to_bytes(&mut self, len: usize) -> Bytes {
        assert!(
            len <= self.remaining(),
            "copy_to_bytes past the end of a body: {len} > {}",
            self.remaining()
        );
        let part = self.buf.slice(self.pos..self.pos + len);
        self.pos += len;
        part
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_share_the_buffer() {
        let received = Bytes::from(b"--abcdef--".to_vec());
        let mut body = Body::part(&received, 2..8);
        assert_eq!(&body[..], b"abcdef");
        body.advance(1);
        let cd = body.copy_to_bytes(2);
        assert_eq!(&cd[..], b"bc");
        assert_eq!(cd.as_ptr(), received[3..].as_ptr(), "no copy");
        assert_eq!(body.remaining(), 3);
        assert_eq!(&body.to_bytes()[..], b"def");
    }

    #[test]
    #[should_panic(expected = "past the end of a body")]
    fn reading_past_the_end_panics_like_any_buf() {
        let received = Bytes::from_static(b"abc");
        Body::part(&received, 0..2).copy_to_bytes(3);
    }
}
