//! A hand-written peer for the resume frames, byte by byte as PROTOCOL.md gives them.

use std::net::SocketAddr;

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HELLO: u32 = 0xFFFF_FF20;
const WELCOME: u32 = 0xFFFF_FF21;
const REFUSED: u32 = 0xFFFF_FF22;
const RESUME: u32 = 0xFFFF_FF24;

fn frame(id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_u16_le(u16::try_from(4 + body.len()).unwrap());
    out.put_u32_le(id);
    out.extend_from_slice(body);
    out.to_vec()
}

async fn read_frame(stream: &mut TcpStream) -> (u32, Vec<u8>) {
    let len = stream.read_u16_le().await.expect("frame length");
    let id = stream.read_u32_le().await.expect("frame id");
    let mut body = vec![0; usize::from(len) - 4];
    stream.read_exact(&mut body).await.expect("frame body");
    (id, body)
}

/// Opens a session with a handshake and returns its id, its resume token and the
/// connection.
pub(crate) async fn welcome(addr: SocketAddr) -> (u64, [u8; 16], TcpStream) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // version 1, empty client version and platform, payload id 0, no payload
    let hello = [1, 0, 0, 0, 0, 0, 0, 0];
    stream.write_all(&frame(HELLO, &hello)).await.unwrap();
    let (id, body) = read_frame(&mut stream).await;
    assert_eq!(id, WELCOME);
    assert_eq!(body.len(), 2 + 8 + 16, "a welcome with a token");
    let mut body = &body[..];
    assert_eq!(body.get_u16_le(), 1);
    let session = body.get_u64_le();
    let mut token = [0; 16];
    body.copy_to_slice(&mut token);
    (session, token, stream)
}

/// Sends a resume on a new connection and returns the refusal's code and message.
pub(crate) async fn resume(
    addr: SocketAddr,
    session: u64,
    token: &[u8; 16],
    received: u64,
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut body = BytesMut::new();
    body.put_u16_le(1);
    body.put_u64_le(session);
    body.extend_from_slice(token);
    body.put_u64_le(received);
    stream.write_all(&frame(RESUME, &body)).await.unwrap();
    let (id, body) = read_frame(&mut stream).await;
    assert_eq!(id, REFUSED, "{:?}", String::from_utf8_lossy(&body));
    let mut body = &body[..];
    let code = body.get_u16_le();
    (code, String::from_utf8_lossy(body).into_owned())
}

/// Sends an acknowledgement of `received` counted bytes.
pub(crate) async fn ack(stream: &mut TcpStream, received: u64) {
    const ACK: u32 = 0xFFFF_FF26;
    stream
        .write_all(&frame(ACK, &received.to_le_bytes()))
        .await
        .unwrap();
}
