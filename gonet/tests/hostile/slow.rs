//! Slow peers: a frame trickled a byte at a time (slowloris), a frame that stops
//! midway, a frame that declares 64 KiB and sends six bytes. Each is closed by the
//! frame timeout with a reason naming the frame, while the canary is served.

use std::time::Duration;

use gonet::{Builder, Codec, Server, SessionError};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::canary::{client, echo_router, still_served};
use crate::support::{frame, raw, within};

/// The frame timeout the servers under attack use: short, so the tests end soon.
const FRAME_TIMEOUT: Duration = Duration::from_secs(1);

/// A JSON server on `url` with the short frame timeout, and the errors of its
/// sessions as they come.
async fn server(url: &str) -> (Server, mpsc::UnboundedReceiver<(u64, String)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let server = Builder::new()
        .codec(Codec::Json)
        .router(echo_router())
        .frame_timeout(FRAME_TIMEOUT)
        .on_error(move |s, e: &SessionError| {
            let _ = tx.send((s.id(), e.to_string()));
        })
        .serve(url)
        .await
        .expect("serve");
    (server, rx)
}

/// Waits for `n` frame-timeout errors and returns them.
async fn frame_timeouts(
    errors: &mut mpsc::UnboundedReceiver<(u64, String)>,
    n: usize,
) -> Vec<String> {
    let mut found = Vec::new();
    within("frame timeouts", async {
        while found.len() < n {
            let (_, text) = errors.recv().await.expect("server alive");
            if text.contains("is still incomplete") {
                found.push(text);
            }
        }
    })
    .await;
    found
}

/// 200 peers each start a frame and never finish it: half trickle a byte every
/// 200 ms, half send a header declaring 65,535 bytes and six bytes of it. All are
/// closed by the frame timeout; the canary is served throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_and_stalled_frames_are_closed_by_the_frame_timeout() {
    let (server, mut errors) = server("tcp://127.0.0.1:0").await;
    let canary = client(&server.url(), Codec::Json).await;
    let addr = server.local_addr();
    let mut peers = Vec::new();
    for i in 0..200 {
        let mut stream = raw(addr).await;
        peers.push(tokio::spawn(async move {
            if i % 2 == 0 {
                // One byte every 200 ms of a 1,006-byte frame; the write fails once the
                // server has closed the connection.
                let bytes = frame(101, &[b' '; 1000]);
                for byte in bytes.iter().take(200) {
                    if stream.write_all(&[*byte]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            } else {
                let mut header = vec![0xff, 0xff, 101, 0, 0, 0];
                header.extend_from_slice(b"{\"con");
                let _ = stream.write_all(&header).await;
                // Hold the connection until the server ends it.
                let _ = within(
                    "the server's close",
                    crate::support::read_to_eof(&mut stream),
                )
                .await;
            }
        }));
    }
    still_served(&canary, "200 slow peers connected").await;
    let reasons = frame_timeouts(&mut errors, 200).await;
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("a frame of 65537 bytes started")
                && r.contains("11 of 65537 bytes received")),
        "{reasons:#?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("a frame of 1006 bytes started")),
        "{reasons:#?}"
    );
    for peer in peers {
        within("a slow peer's end", peer).await.expect("peer task");
    }
    crate::support::until("only the canary left", || server.pool().len() == 1).await;
    still_served(&canary, "200 slow peers closed").await;
    server.shutdown().await;
}

/// A frame that stops midway on a QUIC stream is closed the same way.
#[tokio::test]
async fn a_stalled_frame_on_quic_is_closed_by_the_frame_timeout() {
    let (server, mut errors) = server("quic://127.0.0.1:0").await;
    let canary = quic_canary(&server).await;
    let (endpoint, conn) = crate::canary::raw_quic(&server).await.expect("handshake");
    let (mut send, _recv) = conn.open_bi().await.expect("stream");
    let mut part = frame(101, br#"{"content":"never finished"}"#);
    part.truncate(12);
    send.write_all(&part).await.expect("write");
    let reasons = frame_timeouts(&mut errors, 1).await;
    assert!(
        reasons[0].contains("a frame of 34 bytes started")
            && reasons[0].ends_with("is still incomplete: 12 of 34 bytes received"),
        "{reasons:?}"
    );
    within("the server's close", conn.closed()).await;
    still_served(&canary, "a stalled QUIC frame").await;
    drop((endpoint, send));
    server.shutdown().await;
}

/// And on KCP.
#[tokio::test]
async fn a_stalled_frame_on_kcp_is_closed_by_the_frame_timeout() {
    let (server, mut errors) = server("kcp://127.0.0.1:0").await;
    let canary = client(&server.url(), Codec::Json).await;
    let mut peer = crate::kcp_raw::RawKcp::connect(server.local_addr(), 0x5107, false).await;
    let mut part = frame(101, br#"{"content":"never finished"}"#);
    part.truncate(20);
    peer.send(&part);
    // Keep the conversation going (acknowledgements) while the frame times out.
    let pump = tokio::spawn(async move {
        peer.pump(Duration::from_secs(3)).await;
        peer
    });
    let reasons = frame_timeouts(&mut errors, 1).await;
    assert!(
        reasons[0].contains("a frame of 34 bytes started")
            && reasons[0].ends_with("is still incomplete: 20 of 34 bytes received"),
        "{reasons:?}"
    );
    still_served(&canary, "a stalled KCP frame").await;
    drop(pump.await.expect("pump"));
    server.shutdown().await;
}

/// The canary of a QUIC server: a gonet client trusting its certificate.
async fn quic_canary(server: &Server) -> gonet::Session {
    let tls = gonet::ClientTls::trust_der(server.certificate().expect("cert")).expect("trust");
    Builder::new()
        .codec(Codec::Json)
        .client_tls(tls)
        .dial(&server.url())
        .await
        .expect("dial quic")
}
