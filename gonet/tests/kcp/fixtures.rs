//! Datagrams a kcp-go client sent (recorded by `go-peer capture`, stored as hex in
//! `fixtures/`), replayed into a gonet-rs server: it must decode them to exactly the
//! frames the Go client wrote. With FEC, one data datagram is left out of the replay
//! and must be rebuilt from the group's parity (nothing resends it: the recording is
//! all there is), which checks the Reed-Solomon code against Go's.

use std::time::Duration;

use tokio::net::UdpSocket;

use crate::{Echo, echo_server, serve, within};

struct Capture {
    frames: Vec<Vec<u8>>,
    datagrams: Vec<Vec<u8>>,
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn load(text: &str) -> Capture {
    let mut capture = Capture {
        frames: Vec::new(),
        datagrams: Vec::new(),
    };
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        match line.split_once(' ') {
            Some(("frame", hex)) => capture.frames.push(unhex(hex)),
            Some(("datagram", hex)) => capture.datagrams.push(unhex(hex)),
            _ => panic!("bad fixture line {line:?}"),
        }
    }
    capture
}

/// The texts of the Go client's frames (JSON `Echo` bodies after the 6-byte header).
fn texts(capture: &Capture) -> Vec<String> {
    capture
        .frames
        .iter()
        .map(|f| {
            assert_eq!(usize::from(u16::from_le_bytes([f[0], f[1]])) + 2, f.len());
            assert_eq!(u32::from_le_bytes(f[2..6].try_into().unwrap()), 1001);
            serde_json::from_slice::<Echo>(&f[6..]).expect("json").text
        })
        .collect()
}

/// Replays `capture` (but `skip`) into a server with `query`; returns what it decoded.
async fn replay(capture: &Capture, query: &str, skip: Option<usize>) -> Vec<String> {
    let (builder, mut seen) = echo_server();
    let server = serve(&builder, &format!("kcp://127.0.0.1:0?{query}")).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    for (i, datagram) in capture.datagrams.iter().enumerate() {
        if Some(i) != skip {
            socket
                .send_to(datagram, server.local_addr())
                .await
                .expect("send");
        }
    }
    let mut got = Vec::new();
    for _ in 0..capture.frames.len() {
        match tokio::time::timeout(Duration::from_secs(5), seen.texts.recv()).await {
            Ok(Some(text)) => got.push(text),
            _ => break,
        }
    }
    let stats = server.kcp_stats().expect("kcp");
    assert_eq!(stats.invalid_datagrams, 0, "{query}: {stats:?}");
    within("shutdown", server.shutdown()).await;
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_kcp_go_datagrams_decode_to_its_frames() {
    let capture = load(include_str!("fixtures/go-plain.txt"));
    assert_eq!(replay(&capture, "crypt=off", None).await, texts(&capture));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aes_kcp_go_datagrams_decode_to_its_frames() {
    let capture = load(include_str!("fixtures/go-aes.txt"));
    assert_eq!(replay(&capture, "crypt=aes", None).await, texts(&capture));
    // With another key nothing decodes: every datagram fails its CRC.
    let (builder, mut seen) = echo_server();
    let server = serve(&builder, "kcp://127.0.0.1:0?crypt=aes&password=other").await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    for datagram in &capture.datagrams {
        socket
            .send_to(datagram, server.local_addr())
            .await
            .expect("send");
    }
    crate::until("every datagram refused", || {
        server.kcp_stats().expect("kcp").invalid_datagrams == capture.datagrams.len() as u64
    })
    .await;
    assert!(seen.texts.try_recv().is_err());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aes_and_fec_kcp_go_datagrams_decode_even_with_one_lost() {
    let capture = load(include_str!("fixtures/go-aes-fec10-3.txt"));
    let want = texts(&capture);
    assert_eq!(replay(&capture, "preset=gonet", None).await, want);
    // Datagram 3 carried frame 3; only the parity of its group brings it back.
    assert_eq!(replay(&capture, "preset=gonet", Some(3)).await, want);
}
