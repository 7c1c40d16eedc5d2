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
    /// The buffer the body lies in, for parts taken as `Bytes`.
    buf: &'a Bytes,
    /// What is left of the body.
    rest: &'a [u8],
}

impl<'a> Body<'a> {
    /// The whole of `bytes`.
    #[inline]
    pub fn new(bytes: &'a Bytes) -> Self {
        Body {
            buf: bytes,
            rest: bytes,
        }
    }

    /// The part `range` of `bytes`.
    #[inline]
    pub(crate) fn part(bytes: &'a Bytes, range: Range<usize>) -> Self {
        Body {
            buf: bytes,
            rest: &bytes[range],
        }
    }

    /// What is left of the body, as `Bytes` sharing the received buffer.
    #[inline]
    pub fn to_bytes(&self) -> Bytes {
        self.buf.slice_ref(self.rest)
    }
}

impl Deref for Body<'_> {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        self.rest
    }
}

impl AsRef<[u8]> for Body<'_> {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self.rest
    }
}

impl fmt::Debug for Body<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Body")
            .field("len", &self.rest.len())
            .finish()
    }
}

impl Buf for Body<'_> {
    #[inline]
    fn remaining(&self) -> usize {
        self.rest.len()
    }

    #[inline]
    fn chunk(&self) -> &[u8] {
        self.rest
    }

    #[inline]
    fn advance(&mut self, cnt: usize) {
        match self.rest.get(cnt..) {
            Some(rest) => self.rest = rest,
            None => past_the_end("advance", cnt, self.rest.len()),
        }
    }

    #[inline]
    fn copy_to_bytes(&mut self, len: usize) -> Bytes {
        let Some((part, rest)) = self.rest.split_at_checked(len) else {
            past_the_end("copy_to_bytes", len, self.rest.len())
        };
        self.rest = rest;
        self.buf.slice_ref(part)
    }
}

#[cold]
#[track_caller]
fn past_the_end(op: &str, cnt: usize, remaining: usize) -> ! {
    panic!("{op} past the end of a body: {cnt} > {remaining}")
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
