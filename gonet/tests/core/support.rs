//! Messages and helpers shared by the tests.

#![allow(dead_code, reason = "each test module uses a subset")]

use std::future::Future;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Say {
    pub content: String,
}
gonet::message!(Say = 101, serde, name = "chat.Say");

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SayAck {
    pub content: String,
}
gonet::message!(SayAck = 102, serde, name = "chat.SayAck");

/// A numbered message for ordering tests.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Seq {
    pub n: u64,
    pub pad: String,
}
gonet::message!(Seq = 201, serde);

/// A server push.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Notice {
    pub text: String,
}
gonet::message!(Notice = 301, serde);

/// Generous bound for waiting on an event that must happen; a test that hits it has
/// found a bug, it is not a timing assertion.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Waits for `fut`, failing the test (instead of hanging) if it never completes.
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(PATIENCE, fut).await {
        Ok(v) => v,
        Err(_) => panic!("gave up waiting for {what}"),
    }
}

/// Polls `cond` until it holds (see [`PATIENCE`]).
pub async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
}

/// A gonet v3 frame.
pub fn frame(id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(6 + body.len());
    out.put_u16_le((4 + body.len()) as u16);
    out.put_u32_le(id);
    out.extend_from_slice(body);
    out
}

/// Reads one frame from a raw stream: `(id, body)`, or `None` at a clean EOF.
pub async fn read_frame(stream: &mut TcpStream) -> Option<(u32, Bytes)> {
    let mut header = [0u8; 6];
    match stream.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
        Err(e) => panic!("read failed: {e}"),
    }
    let mut h = &header[..];
    let len = h.get_u16_le() as usize;
    let id = h.get_u32_le();
    let mut body = BytesMut::zeroed(len - 4);
    stream.read_exact(&mut body).await.expect("frame body");
    Some((id, body.freeze()))
}

/// A raw TCP connection, as a Go gonet client would open it.
pub async fn raw(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).unwrap();
    s.flush().await.unwrap();
    s
}

/// Reads until EOF, returning what came; fails on a reset.
pub async fn read_to_eof(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.expect("clean close");
    out
}
