//! [`Body`]: a received message body, borrowed from the buffer it was read into.

use std::fmt;
use std::ops::{Deref, Range};

use bytes::{Buf, Bytes};

/// A message body being decoded: a view of the bytes received, borrowed from the buffer
/// they were read into.
///
/// Read it as a slice (`&body[..]`) or as a [`Buf`]. [`Buf::copy_to_bytes`] (what prost
/// calls for `bytes` fields) takes a part of it as [`Bytes`] sharing the received buffer,
/// without copying, when the part is larger than 256 bytes. Smaller parts are copied:
/// that costs less than the atomic reference counts of a shared buffer, and a small
/// field kept for long does not hold a whole read buffer in memory.
///
/// ```
/// use bytes::{Buf, Bytes};
/// use gonet::Body;
///
/// let received = Bytes::from(vec![7u8; 1025]);
/// let mut body = Body::new(&received);
/// assert_eq!(body.get_u8(), 7);
/// let big = body.copy_to_bytes(1000); // shares `received`, no copy
/// assert_eq!(big.as_ptr(), received[1..].as_ptr());
/// let small = body.copy_to_bytes(4); // a copy of its own
/// assert_eq!(&small[..], &[7; 4]);
/// assert_eq!(body.len(), 20);
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

    /// What is left of the body, as `Bytes` (sharing the received buffer unless it is
    /// small, see [`Body`]).
    #[inline]
    pub fn to_bytes(&self) -> Bytes {
        share(self.buf, self.rest)
    }
}

/// Parts up to this size are copied rather than shared.
const COPY_MAX: usize = 256;

/// `part` of `buf` as `Bytes`: a copy when small, else a share of `buf`.
#[inline]
fn share(buf: &Bytes, part: &[u8]) -> Bytes {
    if part.len() <= COPY_MAX {
        Bytes::copy_from_slice(part)
    } else {
        buf.slice_ref(part)
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
        share(self.buf, part)
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
    fn large_parts_share_the_buffer_small_ones_are_copied() {
        let mut data = b"--".to_vec();
        data.extend((0..600u32).map(|i| i as u8));
        data.extend_from_slice(b"--");
        let received = Bytes::from(data);
        let mut body = Body::part(&received, 2..602);
        assert_eq!(body.len(), 600);
        body.advance(1);
        let small = body.copy_to_bytes(2);
        assert_eq!(&small[..], &[1, 2]);
        assert_ne!(small.as_ptr(), received[3..].as_ptr(), "copied");
        let large = body.copy_to_bytes(300);
        assert_eq!(large.as_ptr(), received[5..].as_ptr(), "shared");
        assert_eq!(body.remaining(), 297);
        assert_eq!(body.to_bytes().as_ptr(), received[305..].as_ptr());
        assert_eq!(&body.to_bytes()[..], &received[305..602]);
    }

    #[test]
    #[should_panic(expected = "past the end of a body")]
    fn reading_past_the_end_panics_like_any_buf() {
        let received = Bytes::from_static(b"abc");
        Body::part(&received, 0..2).copy_to_bytes(3);
    }
}
