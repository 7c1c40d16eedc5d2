//! Messages and helpers shared by the tests.

#![allow(dead_code, reason = "each test module uses a subset")]

use std::future::Future;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub(crate) struct Say {
    pub(crate) content: String,
}
gonet::message!(Say = 101, serde, name = "chat.Say");

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub(crate) struct SayAck {
    pub(crate) content: String,
}
gonet::message!(SayAck = 102, serde, name = "chat.SayAck");

/// A numbered message for ordering tests.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub(crate) struct Seq {
    pub(crate) n: u64,
    pub(crate) pad: String,
}
gonet::message!(Seq = 201, serde);

/// A server push.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub(crate) struct Notice {
    pub(crate) text: String,
}
gonet::message!(Notice = 301, serde);

/// Generous bound for waiting on an event that must happen; a test that hits it has
/// found a bug, it is not a timing assertion.
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

/// Waits for `fut`, failing the test (instead of hanging) if it never completes.
pub(crate) async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(PATIENCE, fut).await {
        Ok(v) => v,
        Err(_) => panic!("gave up waiting for {what}"),
    }
}

/// Polls `cond` until it holds (see [`PATIENCE`]).
pub(crate) async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
}

/// A JSON server on a free port with `router`.
pub(crate) async fn json_server(router: gonet::Router) -> gonet::Server {
    gonet::Builder::new()
        .codec(gonet::Codec::Json)
        .router(router)
        .serve("tcp://127.0.0.1:0")
        .await
        .expect("serve")
}

/// A JSON client of `server`.
pub(crate) async fn json_client(server: &gonet::Server) -> gonet::Session {
    gonet::Builder::new()
        .codec(gonet::Codec::Json)
        .dial(&server.url())
        .await
        .expect("dial")
}

/// A gonet v3 frame.
pub(crate) fn frame(id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(6 + body.len());
    out.put_u16_le((4 + body.len()) as u16);
    out.put_u32_le(id);
    out.extend_from_slice(body);
    out
}

/// JSON `Seq { n }` frames for every `n` of `ns`, back to back, to send in one write.
pub(crate) fn seq_frames(ns: std::ops::Range<u64>) -> Vec<u8> {
    let mut out = Vec::new();
    for n in ns {
        let body = serde_json::to_vec(&Seq {
            n,
            pad: String::new(),
        })
        .expect("a Seq encodes");
        out.extend(frame(201, &body));
    }
    out
}

/// Reads one frame from a raw stream: `(id, body)`, or `None` at a clean EOF.
pub(crate) async fn read_frame(stream: &mut TcpStream) -> Option<(u32, Bytes)> {
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

/// Reads the next frame from a raw stream, which must be a JSON `SayAck`, and returns
/// its content.
pub(crate) async fn read_ack(stream: &mut TcpStream) -> String {
    let (id, body) = within("a reply", read_frame(stream))
        .await
        .expect("server alive");
    assert_eq!(id, 102, "expected a SayAck");
    serde_json::from_slice::<SayAck>(&body)
        .expect("a SayAck body")
        .content
}

/// A raw TCP connection, as a Go gonet client would open it.
pub(crate) async fn raw(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).unwrap();
    s.flush().await.unwrap();
    s
}

/// Reads until EOF, returning what came; fails on a reset.
pub(crate) async fn read_to_eof(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.expect("clean close");
    out
}

/// Everything logged by this test binary, captured by one global subscriber.
#[derive(Clone, Default)]
pub(crate) struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Logs {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber (once) and returns its buffer.
pub(crate) fn logs() -> Logs {
    static LOGS: std::sync::OnceLock<Logs> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        logs
    })
    .clone()
}
