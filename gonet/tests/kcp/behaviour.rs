//! What the engine does with conversations: spoofed segments, byes, silence.

use std::sync::atomic::Ordering;
use std::time::Duration;

use gonet::{Builder, CloseReason};

use crate::raw::{RawKcp, frame, segment};
use crate::{Echo, echo_server, serve, until, within};

fn echo_frame(text: &str) -> Vec<u8> {
    frame(1001, format!("{{\"text\":\"{text}\"}}").as_bytes())
}

/// A victim's conversation keeps going whatever others send from its address: a
/// segment with sequence number 0 and another conversation id (which tokio_kcp took
/// for a new session replacing the victim's), a stray ack for its own id, garbage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoofed_segment_from_the_victims_address_does_not_disturb_it() {
    let (builder, mut seen) = echo_server();
    let server = serve(&builder, "kcp://127.0.0.1:0").await;
    let mut victim = RawKcp::connect(server.local_addr(), 0x1111, false).await;
    victim.send(&echo_frame("before"));
    let reply = within("the first echo", victim.recv(Duration::from_secs(20))).await;
    assert_eq!(reply, Some(echo_frame("before")));
    assert_eq!(seen.connects.load(Ordering::SeqCst), 1);

    // From the victim's own address: another conversation's opening segment (an
    // incomplete frame), a forged ack, and garbage.
    let spoof = |datagram: Vec<u8>| {
        let socket = victim.socket.clone();
        let to = server.local_addr();
        async move { socket.send_to(&datagram, to).await.expect("send") }
    };
    spoof(segment(0x2222, 81, 0, &[9, 0])).await;
    spoof(segment(0x1111, 82, 77, b"")).await;
    spoof(vec![0xee; 40]).await;
    spoof(segment(0x1111, 99, 0, b"")).await;

    victim.send(&echo_frame("after"));
    let reply = within(
        "the echo after the spoof",
        victim.recv(Duration::from_secs(20)),
    )
    .await;
    assert_eq!(reply, Some(echo_frame("after")));
    assert!(
        seen.closes.try_recv().is_err(),
        "no session closed: the victim's goes on"
    );
    let stats = server.kcp_stats().expect("kcp");
    // The other id is a conversation of its own, beside the victim's.
    assert_eq!(stats.conversations, 2, "{stats:?}");
    assert_eq!(
        stats.invalid_datagrams, 2,
        "garbage and a bad command: {stats:?}"
    );
    assert_eq!(server.pool().len(), 2);
    server.shutdown().await;
}

/// A gonet client that closes says bye; the server's session ends with `PeerClosed`
/// and nothing that arrives after it (the client's last acknowledgements) opens a
/// second, phantom session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_bye_ends_one_session_and_opens_no_phantom() {
    let (builder, mut seen) = echo_server();
    let server = serve(&builder, "kcp://127.0.0.1:0").await;
    for round in 0..3 {
        let client = Builder::new()
            .codec(gonet::Codec::Json)
            .dial(&server.url())
            .await
            .expect("dial");
        let reply: Echo = within(
            "an echo",
            client.call(&Echo {
                text: format!("round {round}"),
            }),
        )
        .await
        .expect("call");
        assert_eq!(reply.text, format!("round {round}"));
        client.close("done");
        let reason = within("the client's close", client.closed()).await;
        assert!(matches!(reason, CloseReason::Local(_)), "{reason}");
        let (_, reason) = within("the server's close", seen.closes.recv())
            .await
            .expect("hook");
        assert!(
            matches!(reason, CloseReason::PeerClosed),
            "a bye is the peer closing: {reason}"
        );
    }
    // Past the linger (a second) and then some: still one connect per client.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        seen.connects.load(Ordering::SeqCst),
        3,
        "no phantom session"
    );
    assert!(server.pool().is_empty());
    until("the engine's table to empty", || {
        server.kcp_stats().expect("kcp").conversations == 0
    })
    .await;
    assert!(
        seen.closes.try_recv().is_err(),
        "no phantom session closed either"
    );
    server.shutdown().await;
}

/// A peer that goes quiet (a Go client that never pings) ends with `IdleTimeout`, not
/// as if it had closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_peer_ends_with_idle_timeout() {
    let (builder, mut seen) = echo_server();
    let builder = builder
        .heartbeat(Duration::from_millis(100))
        .idle_timeout(Duration::from_millis(600));
    let server = serve(&builder, "kcp://127.0.0.1:0").await;
    let mut quiet = RawKcp::connect(server.local_addr(), 0x3333, false).await;
    quiet.send(&echo_frame("then nothing"));
    let reply = within("the echo", quiet.recv(Duration::from_secs(20))).await;
    assert_eq!(reply, Some(echo_frame("then nothing")));
    // No more pumping: the peer neither answers pings nor acknowledges.
    let (_, reason) = within("the quiet peer's end", seen.closes.recv())
        .await
        .expect("hook");
    assert!(matches!(reason, CloseReason::IdleTimeout), "{reason}");
    drop(quiet);
    server.shutdown().await;
}

/// A malformed frame ends the session with an error that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_frame_ends_with_an_error() {
    let (builder, mut seen) = echo_server();
    let server = serve(&builder, "kcp://127.0.0.1:0").await;
    let mut peer = RawKcp::connect(server.local_addr(), 0x4444, false).await;
    peer.send(&[1, 0, 0]);
    let pump = tokio::spawn(async move { peer.pump(Duration::from_secs(2)).await });
    let (_, reason) = within("the close", seen.closes.recv()).await.expect("hook");
    match reason {
        CloseReason::Error(err) => assert!(
            err.to_string()
                .contains("frame length 1 is below the minimum"),
            "{err}"
        ),
        other => panic!("expected an error, got {other}"),
    }
    let _ = pump.await;
    server.shutdown().await;
}

/// A client with another key is never heard: its datagrams fail the CRC and open
/// nothing, and its calls time out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_the_wrong_key_opens_nothing() {
    let (builder, seen) = echo_server();
    let server = serve(&builder, "kcp://127.0.0.1:0?crypt=aes&password=right").await;
    let url = format!("kcp://{}?crypt=aes&password=wrong", server.local_addr());
    let client = Builder::new()
        .codec(gonet::Codec::Json)
        .call_timeout(Duration::from_millis(300))
        .dial(&url)
        .await
        .expect("dial (KCP has no handshake)");
    let err = client
        .call::<Echo, Echo>(&Echo { text: "x".into() })
        .await
        .expect_err("no answer");
    assert!(err.to_string().contains("timed out"), "{err}");
    let stats = server.kcp_stats().expect("kcp");
    assert!(stats.invalid_datagrams > 0, "{stats:?}");
    assert_eq!(stats.conversations, 0, "{stats:?}");
    assert_eq!(seen.connects.load(Ordering::SeqCst), 0);
    client.close("done");
    server.shutdown().await;
}
