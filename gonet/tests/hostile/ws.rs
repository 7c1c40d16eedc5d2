//! WebSocket frames an attacker builds by hand: fragments adding up past the largest
//! packet, and a frame declaring more than a packet can be.

use gonet::Codec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::canary;
use crate::support::within;

/// A client frame (masked, as RFC 6455 requires of clients) of `payload`.
fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x11u8, 0x22, 0x33, 0x44];
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    match payload.len() {
        len @ 0..=125 => out.push(0x80 | len as u8),
        len @ 126..=0xffff => {
            out.push(0x80 | 126);
            out.extend((len as u16).to_be_bytes());
        }
        len => {
            out.push(0x80 | 127);
            out.extend((len as u64).to_be_bytes());
        }
    }
    out.extend(mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Connects and completes a WebSocket upgrade by hand.
async fn upgraded(server: &gonet::Server) -> TcpStream {
    let mut s = TcpStream::connect(server.local_addr())
        .await
        .expect("connect");
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .expect("request");
    let mut head = Vec::new();
    within("the upgrade", async {
        while !head.ends_with(b"\r\n\r\n") {
            head.push(s.read_u8().await.expect("response"));
        }
    })
    .await;
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s
}

/// Reads server frames until the close frame: its code and reason.
async fn close_frame(s: &mut TcpStream) -> (u16, String) {
    close_frame_of(s).await
}

/// [`close_frame`] on any reader (the read half of a split connection).
async fn close_frame_of<R: tokio::io::AsyncRead + Unpin>(s: &mut R) -> (u16, String) {
    within("the close frame", async {
        loop {
            let b0 = s.read_u8().await.expect("a frame");
            let b1 = s.read_u8().await.expect("a frame");
            let len = match b1 & 0x7f {
                126 => usize::from(s.read_u16().await.expect("length")),
                127 => usize::try_from(s.read_u64().await.expect("length")).expect("fits"),
                n => usize::from(n),
            };
            let mut payload = vec![0u8; len];
            s.read_exact(&mut payload).await.expect("payload");
            if b0 & 0x0f == 0x8 {
                assert!(payload.len() >= 2, "a close frame with a code");
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                return (code, String::from_utf8_lossy(&payload[2..]).into_owned());
            }
        }
    })
    .await
}

async fn server() -> gonet::Server {
    gonet::Builder::new()
        .codec(Codec::Json)
        .router(canary::echo_router())
        .serve("ws://127.0.0.1:0/ws")
        .await
        .expect("serve")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragments_adding_up_past_a_packet_close_the_session_with_1009() {
    let server = server().await;
    let canary = canary::client(&server.url(), Codec::Json).await;
    let mut s = upgraded(&server).await;
    // 1,000-byte fragments of one binary message; the 66th passes 64 KiB. Nothing is
    // sent after it, so the server has read everything when it closes.
    let chunk = vec![0x5au8; 1_000];
    s.write_all(&client_frame(false, 0x2, &chunk))
        .await
        .expect("first");
    for _ in 1..66 {
        s.write_all(&client_frame(false, 0x0, &chunk))
            .await
            .expect("fragment");
    }
    let (code, reason) = close_frame(&mut s).await;
    assert_eq!(code, 1009, "message too big: {reason}");
    assert!(reason.contains("exceeds the maximum of 65535"), "{reason}");
    canary::still_served(&canary, "a fragment flood").await;
    canary.close("done");
    within("shutdown", server.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_declaring_ten_mebibytes_closes_the_session_with_1009() {
    let server = server().await;
    let canary = canary::client(&server.url(), Codec::Json).await;
    let mut s = upgraded(&server).await;
    // The header alone: refused before a byte of the payload is awaited or buffered.
    let mut header = vec![0x82u8, 0x80 | 127];
    header.extend((10u64 << 20).to_be_bytes());
    header.extend([1, 2, 3, 4]);
    s.write_all(&header).await.expect("header");
    let (code, reason) = close_frame(&mut s).await;
    assert_eq!(code, 1009, "message too big: {reason}");
    assert!(reason.contains("frame length 10485758"), "{reason}");
    canary::still_served(&canary, "an oversize frame").await;
    canary.close("done");
    within("shutdown", server.shutdown()).await;
}

/// A message trickled in a byte at a time (slowloris), and one that stops half way:
/// the WebSocket library buffers both out of sight, and the frame timeout still closes
/// each with code 1008 and a reason saying what was incomplete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_or_stalled_message_is_closed_by_the_frame_timeout() {
    let server = gonet::Builder::new()
        .codec(Codec::Json)
        .router(canary::echo_router())
        .frame_timeout(std::time::Duration::from_millis(300))
        .serve("ws://127.0.0.1:0/ws")
        .await
        .expect("serve");
    let canary = canary::client(&server.url(), Codec::Json).await;
    let frame = client_frame(true, 0x2, &[0x5a; 100]);

    // A byte every 20 ms: the message would take 2.1 s, the timeout is 0.3 s.
    let trickler = upgraded(&server).await;
    let (mut read, mut write) = trickler.into_split();
    let bytes = frame.clone();
    let trickle = tokio::spawn(async move {
        for byte in bytes {
            if write.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    });
    let (code, reason) = close_frame_of(&mut read).await;
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("is still incomplete"), "{reason}");
    trickle.abort();

    // Half a message, then nothing.
    let mut stalled = upgraded(&server).await;
    stalled.write_all(&frame[..50]).await.expect("half");
    let (code, reason) = close_frame(&mut stalled).await;
    assert_eq!(code, 1008, "{reason}");
    assert!(
        reason.contains("is still incomplete after 50 bytes"),
        "{reason}"
    );

    canary::still_served(&canary, "a trickled and a stalled message").await;
    canary.close("done");
    within("shutdown", server.shutdown()).await;
}
