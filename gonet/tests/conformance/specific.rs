//! What only some transports have: WebSocket paths and origins, TLS trust, QUIC
//! channels and datagrams, UDP's size limit and drop policy.

#[cfg(any(feature = "quic", feature = "udp", feature = "kcp"))]
use std::sync::Arc;

#[cfg(any(feature = "quic", feature = "udp"))]
use gonet::Router;
#[cfg(any(feature = "quic", feature = "udp"))]
use serde::{Deserialize, Serialize};
#[cfg(any(feature = "quic", feature = "udp"))]
use tokio::sync::Semaphore;

#[allow(unused_imports, reason = "each transport uses some")]
use super::*;

/// A message whose handler waits until the test adds a permit.
#[cfg(any(feature = "quic", feature = "udp"))]
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Block {}
#[cfg(any(feature = "quic", feature = "udp"))]
gonet::message!(Block = 1100, serde);

#[cfg(any(feature = "quic", feature = "udp"))]
fn blocking_router(gate: Arc<Semaphore>) -> Router {
    server_router().route(move |_: Session, _: Block| {
        let gate = gate.clone();
        async move {
            gate.acquire().await.expect("gate open").forget();
        }
    })
}

#[cfg(feature = "ws")]
mod ws {
    use super::*;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    /// A plain tungstenite client of `server`, for frames gonet would never send.
    async fn raw_ws(
        server: &gonet::Server,
    ) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
        let tcp = tokio::net::TcpStream::connect(server.local_addr())
            .await
            .expect("connect");
        tokio_tungstenite::client_async(server.url(), tcp)
            .await
            .expect("handshake")
            .0
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_the_configured_path_is_served() {
        let fx = serve("ws://127.0.0.1:0/game").await;
        let wrong = format!("ws://{}/other", fx.server.local_addr());
        let err = Builder::new()
            .codec(Codec::Json)
            .dial(&wrong)
            .await
            .expect_err("wrong path");
        let text = err.to_string();
        assert!(text.contains("HTTP 404"), "{text}");
        assert!(text.contains("no websocket endpoint at /other"), "{text}");
        fx.server.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_server_that_never_answers_the_handshake_times_out() {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("ws://{}/game", silent.local_addr().expect("addr"));
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = silent.accept().await {
                held.push(stream);
            }
        });
        let err = within(
            "the dial to fail",
            Builder::new()
                .connect_timeout(Duration::from_millis(200))
                .dial(&url),
        )
        .await
        .expect_err("silent server");
        assert!(matches!(err, gonet::DialError::Timeout { .. }), "{err}");
        assert!(
            err.to_string().contains("no connection after 200ms"),
            "{err}"
        );
        hold.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_binary_message_that_is_not_one_packet_gets_a_close_frame() {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
        let fx = serve("ws://127.0.0.1:0/game").await;
        let mut ws = raw_ws(&fx.server).await;
        // A length field of 9 in a 7-byte message.
        ws.send(Message::binary(vec![9, 0, 1, 0, 0, 0, 0]))
            .await
            .expect("send");
        let frame = within("the close frame", async {
            loop {
                match ws.next().await.expect("open").expect("message") {
                    Message::Close(Some(frame)) => return frame,
                    _ => continue,
                }
            }
        })
        .await;
        assert_eq!(frame.code, CloseCode::Invalid);
        assert!(
            frame.reason.contains("length field says 9 bytes"),
            "{}",
            frame.reason
        );
        fx.server.shutdown().await;
    }

    /// Both ends close at once while the server is still writing frames the client has
    /// not read (a small receive buffer keeps the server's writer waiting): the client
    /// gets a close frame with code 1000 (never a connection dropped without one, 1006),
    /// and the server reports no error for it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closes_from_both_ends_while_frames_are_queued_end_cleanly() {
        use futures_util::{SinkExt, StreamExt};
        use gonet::Message as _;
        use tokio_tungstenite::tungstenite::Message;
        use tokio_tungstenite::tungstenite::protocol::CloseFrame;
        use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
        let mut fx = serve("ws://127.0.0.1:0/game").await;
        // About 2 MB of ticks: far more than the sockets' buffers hold.
        let subscribe = gonet::frame::encode_frame(Subscribe::ID, br#"{"ticks":100000}"#)
            .expect("fits")
            .to_vec();
        for round in 0..10 {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket.set_recv_buffer_size(4096).expect("buffer size");
            let tcp = socket
                .connect(fx.server.local_addr())
                .await
                .expect("connect");
            let (mut ws, _) = tokio_tungstenite::client_async(fx.server.url(), tcp)
                .await
                .expect("handshake");
            ws.send(Message::binary(subscribe.clone()))
                .await
                .expect("send");
            let server_side = within("the ticks to be queued", async {
                loop {
                    if let Some(s) = fx.server.pool().sessions().into_iter().next() {
                        if s.stats().handled == 1 {
                            return s;
                        }
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
            })
            .await;
            let (closed, ()) = tokio::join!(
                ws.close(Some(CloseFrame {
                    code: CloseCode::Normal,
                    reason: "client done".into(),
                })),
                async { server_side.close("server done") },
            );
            closed.expect("the client's close frame is sent");
            let end = within("the end of the connection", async {
                let mut close = None;
                loop {
                    match ws.next().await {
                        Some(Ok(Message::Close(frame))) => close = frame,
                        Some(Ok(_)) => {}
                        None => return Ok(close),
                        Some(Err(e)) => return Err((e.to_string(), close)),
                    }
                }
            })
            .await;
            match end {
                Ok(Some(frame)) => assert_eq!(frame.code, CloseCode::Normal, "round {round}"),
                other => {
                    let reason = server_close_of(&mut fx.closes, server_side.id()).await;
                    let errors: Vec<_> = std::iter::from_fn(|| fx.errors.try_recv().ok()).collect();
                    panic!(
                        "round {round}: no clean close: {other:?}; server: {reason:?} {errors:?}"
                    )
                }
            }
            server_close_of(&mut fx.closes, server_side.id()).await;
            if let Ok((id, error)) = fx.errors.try_recv() {
                panic!("round {round}: session {id} reported an error: {error}");
            }
        }
        fx.server.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn websocket_pings_are_answered() {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let fx = serve("ws://127.0.0.1:0/game").await;
        let mut ws = raw_ws(&fx.server).await;
        ws.send(Message::Ping(b"are you there".to_vec().into()))
            .await
            .expect("ping");
        let pong = within("pong", async {
            loop {
                match ws.next().await.expect("open").expect("message") {
                    Message::Pong(payload) => return payload,
                    _ => continue,
                }
            }
        })
        .await;
        assert_eq!(&pong[..], b"are you there");
        fx.server.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn origins_are_checked_when_configured() {
        let (builder, closes, errors) = server_builder();
        let builder = builder.allowed_origins(["https://good.example"]);
        let fx = serve_with("ws://127.0.0.1:0/game", builder, closes, errors).await;
        // A gonet client sends no Origin: refused.
        let err = Builder::new()
            .codec(Codec::Json)
            .dial(&fx.server.url())
            .await
            .expect_err("no origin");
        assert!(err.to_string().contains("HTTP 403"), "{err}");
        // A browser-like client from the allowed origin: accepted.
        for (origin, ok) in [
            ("https://good.example", true),
            ("https://evil.example", false),
        ] {
            let mut request = fx.server.url().into_client_request().expect("request");
            request
                .headers_mut()
                .insert("Origin", origin.parse().expect("header"));
            let tcp = tokio::net::TcpStream::connect(fx.server.local_addr())
                .await
                .expect("connect");
            let result = tokio_tungstenite::client_async(request, tcp).await;
            assert_eq!(result.is_ok(), ok, "{origin}: {:?}", result.err());
        }
        fx.server.shutdown().await;
    }
}

#[cfg(feature = "tls")]
mod tls {
    use super::*;
    use gonet::{ClientTls, ServerTls};

    #[cfg(feature = "wss")]
    const URL: &str = "wss://127.0.0.1:0/gonet";
    #[cfg(not(feature = "wss"))]
    const URL: &str = "quic://127.0.0.1:0";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_must_say_whom_it_trusts() {
        let fx = serve(URL).await;
        let err = Builder::new()
            .dial(&fx.server.url())
            .await
            .expect_err("no trust");
        assert!(
            err.to_string().contains("call Builder::client_tls"),
            "{err}"
        );
        fx.server.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_untrusted_certificate_is_refused_and_skipping_verification_connects() {
        let fx = serve(URL).await;
        let stranger = ServerTls::self_signed(["localhost"]).expect("cert");
        let err = Builder::new()
            .client_tls(ClientTls::trust_der(stranger.certificate_der()).expect("trust"))
            .dial(&fx.server.url())
            .await
            .expect_err("untrusted");
        assert!(err.to_string().contains("handshake failed"), "{err}");

        let client = Builder::new()
            .codec(Codec::Json)
            .client_tls(ClientTls::danger_skip_verification())
            .dial(&fx.server.url())
            .await
            .expect("dial without verification");
        let reply: Echo = within("echo", client.call(&Echo { text: "hi".into() }))
            .await
            .expect("call");
        assert_eq!(reply.text, "hi");
        fx.server.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_real_certificate_loads_from_pem_files() {
        let generated =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("cert");
        let dir = std::env::temp_dir().join(format!("gonet-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, generated.cert.pem()).expect("write");
        std::fs::write(&key_path, generated.signing_key.serialize_pem()).expect("write");
        let tls = ServerTls::from_pem_files(&cert_path, &key_path).expect("load");
        std::fs::remove_dir_all(&dir).expect("clean up");

        let (builder, closes, errors) = server_builder();
        let fx = serve_with(URL, builder.server_tls(tls), closes, errors).await;
        assert_eq!(fx.server.certificate(), Some(generated.cert.der().as_ref()));
        let client = Builder::new()
            .codec(Codec::Json)
            .client_tls(ClientTls::trust_pem(generated.cert.pem().as_bytes()).expect("trust"))
            .dial(&fx.server.url())
            .await
            .expect("dial");
        let reply: Echo = within("echo", client.call(&Echo { text: "pem".into() }))
            .await
            .expect("call");
        assert_eq!(reply.text, "pem");

        let missing = ServerTls::from_pem_files(dir.join("nope.pem"), &key_path).unwrap_err();
        assert!(missing.to_string().contains("nope.pem"), "{missing}");
        fx.server.shutdown().await;
    }
}

#[cfg(feature = "quic")]
mod quic {
    use super::*;

    /// The ALPN is a setting: both ends with Go gonet's id connect; a client offering
    /// only the default is refused by TLS, with an error that says so.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_alpn_is_a_setting() {
        let (builder, closes, errors) = server_builder();
        let builder = builder.quic_alpn(["quic-echo-example"]);
        let fx = serve_with("quic://127.0.0.1:0", builder, closes, errors).await;
        let client = client_builder(&fx.server)
            .quic_alpn(["quic-echo-example"])
            .dial(&fx.server.url())
            .await
            .expect("dial with the server's ALPN");
        let reply: Echo = within("echo", client.call(&Echo { text: "go".into() }))
            .await
            .expect("call");
        assert_eq!(reply.text, "go");
        let refused = client_builder(&fx.server)
            .dial(&fx.server.url())
            .await
            .expect_err("no ALPN in common");
        let text = refused.to_string();
        assert!(
            text.to_lowercase().contains("alpn") || text.contains("no_application_protocol"),
            "{text}"
        );
        fx.server.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_channel_never_waits_behind_the_main_stream() {
        let gate = Arc::new(Semaphore::new(0));
        let (builder, closes, errors) = server_builder();
        let builder = builder.router(blocking_router(gate.clone()));
        let fx = serve_with("quic://127.0.0.1:0", builder, closes, errors).await;
        let (client, mut rx) = dial(&fx.server).await;
        // The main stream's worker is now stuck in Block's handler.
        client.send(&Block {}).expect("send");
        let channel = within("channel", client.open_channel())
            .await
            .expect("open");
        for n in 0..100 {
            channel.send(&Seq { n }).expect("send on channel");
        }
        within("echoes of the channel", async {
            for want in 0..100 {
                match rx.recv().await.expect("alive") {
                    Pushed::Seq(n) => assert_eq!(n, want),
                    other => panic!("unexpected {other:?}"),
                }
            }
        })
        .await;
        // Release the main stream: it goes on in order.
        gate.add_permits(1);
        let reply: Echo = within(
            "echo",
            client.call(&Echo {
                text: "after".into(),
            }),
        )
        .await
        .expect("call");
        assert_eq!(reply.text, "after");
        fx.server.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_does_not_wait_for_a_client_that_never_opens_its_stream() {
        let (builder, closes, errors) = server_builder();
        // Far beyond the test's patience: only giving the client up ends the shutdown.
        let builder = builder
            .idle_timeout(Duration::from_secs(300))
            .shutdown_timeout(Duration::from_secs(300));
        let fx = serve_with("quic://127.0.0.1:0", builder, closes, errors).await;
        let (_endpoint, conn) = super::super::raw::quic_connect(&fx.server).await;
        within("the shutdown", fx.server.shutdown()).await;
        within("the connection to close", conn.closed()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unreliable_sends_use_datagrams_and_refuse_large_messages() {
        let fx = serve("quic://127.0.0.1:0").await;
        let (client, mut rx) = dial(&fx.server).await;
        // Loopback does not lose datagrams in practice, but a test must not hang if it
        // does: send until one echo comes back, a bounded number of times.
        let echoed = within("a datagram echo", async {
            for n in 0..50 {
                client.send_unreliable(&Seq { n }).expect("small message");
                if let Ok(Some(Pushed::Seq(got))) =
                    tokio::time::timeout(Duration::from_millis(500), rx.recv()).await
                {
                    return got;
                }
            }
            panic!("no datagram came back");
        })
        .await;
        assert!(echoed < 50);
        let big = Echo {
            text: "x".repeat(4000),
        };
        let err = client.send_unreliable(&big).expect_err("too large");
        assert!(
            matches!(err, gonet::SendError::DatagramTooLarge { .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains("one datagram holds at most"),
            "{err}"
        );
        client.close("done");
        fx.server.shutdown().await;
    }
}

#[cfg(feature = "tcp")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_has_no_unreliable_sends() {
    let fx = serve("tcp://127.0.0.1:0").await;
    let (client, _) = dial(&fx.server).await;
    let err = client
        .send_unreliable(&Echo { text: "x".into() })
        .expect_err("tcp");
    assert_eq!(err.to_string(), "unreliable sends are not supported on tcp");
    fx.server.shutdown().await;
}

#[cfg(feature = "udp")]
mod udp {
    use super::*;

    fn packet(id: u32, body: &[u8]) -> Vec<u8> {
        gonet::frame::encode_frame(id, body).expect("fits").to_vec()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn oversize_datagrams_are_rejected_and_the_session_goes_on() {
        let (builder, closes, errors) = server_builder();
        let mut fx = serve_with(
            "udp://127.0.0.1:0",
            builder.max_frame_len(512),
            closes,
            errors,
        )
        .await;
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        socket
            .connect(fx.server.local_addr())
            .await
            .expect("connect");
        let echo = packet(1001, br#"{"text":"a"}"#);
        let mut buf = vec![0u8; 4096];
        socket.send(&echo).await.expect("send");
        within("reply", socket.recv(&mut buf)).await.expect("recv");
        socket
            .send(&packet(1001, &[b' '; 1000]))
            .await
            .expect("send");
        let err = within("the error", fx.errors.recv()).await.expect("hook");
        assert!(err.1.contains("exceeds the maximum of 512"), "{}", err.1);
        socket.send(&echo).await.expect("send");
        let n = within("reply", socket.recv(&mut buf)).await.expect("recv");
        assert_eq!(&buf[..n], &echo[..]);
        // An empty datagram is malformed too, reported, and the session goes on.
        socket.send(&[]).await.expect("send");
        let err = within("the error", fx.errors.recv()).await.expect("hook");
        assert!(
            err.1
                .contains("a 0-byte message is shorter than the 6-byte packet header"),
            "{}",
            err.1
        );
        socket.send(&echo).await.expect("send");
        let n = within("reply", socket.recv(&mut buf)).await.expect("recv");
        assert_eq!(&buf[..n], &echo[..]);
        fx.server.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_inbound_queue_drops_for_that_session_only() {
        let gate = Arc::new(Semaphore::new(0));
        let (builder, closes, errors) = server_builder();
        let builder = builder
            .router(blocking_router(gate.clone()))
            .inbound_queue(1);
        let mut fx = serve_with("udp://127.0.0.1:0", builder, closes, errors).await;
        let (stuck, _) = dial(&fx.server).await;
        stuck.send(&Block {}).expect("send");
        // Until the blocked session has dropped something, keep sending to it; each
        // datagram either queues (one slot) or is dropped.
        let dropped = within("a drop", async {
            let mut n = 0;
            loop {
                stuck.send(&Seq { n }).expect("send");
                n += 1;
                if let Ok(Some((_, err))) =
                    tokio::time::timeout(Duration::from_millis(50), fx.errors.recv()).await
                {
                    if err.contains("inbound queue full") {
                        return err;
                    }
                }
            }
        })
        .await;
        assert!(dropped.contains("dropped a message"), "{dropped}");
        let server_side = fx
            .server
            .pool()
            .sessions()
            .into_iter()
            .find(|s| s.peer_addr() == stuck.local_addr())
            .expect("stuck session");
        assert!(server_side.stats().dropped >= 1);
        // Another session is served meanwhile.
        let (other, _) = dial(&fx.server).await;
        let reply: Echo = within(
            "echo",
            other.call(&Echo {
                text: "free".into(),
            }),
        )
        .await
        .expect("call");
        assert_eq!(reply.text, "free");
        gate.add_permits(1);
        fx.server.shutdown().await;
    }
}

#[cfg(feature = "kcp")]
mod kcp {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::kcp_raw::segment;

    /// Only a datagram that starts a KCP conversation (data with sequence number 0)
    /// opens a session; strays that merely look like KCP (a zeroed header, an ack, a
    /// later segment) open nothing. Openers take at most the session limit, and leave
    /// at the idle timeout.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stray_datagrams_are_bounded_by_the_session_limit() {
        let connects = Arc::new(AtomicUsize::new(0));
        let counted = connects.clone();
        let (builder, closes, errors) = server_builder();
        let builder = builder
            .max_sessions(2)
            .heartbeat(Duration::from_millis(50))
            .idle_timeout(Duration::from_millis(500))
            .on_connect(move |_| {
                counted.fetch_add(1, Ordering::SeqCst);
            });
        let mut fx = serve_with("kcp://127.0.0.1:0", builder, closes, errors).await;
        let mut strays = Vec::new();
        let lookalikes = [
            vec![0u8; 24],
            segment(9, 82, 0, b""),
            segment(9, 81, 5, b"later"),
            segment(9, 81, 0, b""),
        ];
        for (i, datagram) in lookalikes.iter().enumerate() {
            let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("bind");
            socket
                .send_to(datagram, fx.server.local_addr())
                .await
                .expect("send");
            let opener = segment(100 + i as u32, 81, 0, b"\x05\x00");
            socket
                .send_to(&opener, fx.server.local_addr())
                .await
                .expect("send");
            strays.push(socket);
        }
        for _ in 0..2 {
            let (_, reason) = within("a stray to time out", fx.closes.recv())
                .await
                .expect("hook");
            assert!(matches!(reason, CloseReason::IdleTimeout), "{reason}");
        }
        assert_eq!(
            connects.load(Ordering::SeqCst),
            2,
            "only two openers admitted"
        );
        let stats = fx.server.kcp_stats().expect("a kcp server");
        assert_eq!(stats.invalid_datagrams, 1, "the zeroed header: {stats:?}");
        assert_eq!(stats.refused_datagrams, 3 + 2, "{stats:?}");
        assert!(fx.server.pool().is_empty());
        // The server has room again for a real client.
        let (client, _) = dial(&fx.server).await;
        let reply: Echo = within(
            "echo",
            client.call(&Echo {
                text: "real".into(),
            }),
        )
        .await
        .expect("call");
        assert_eq!(reply.text, "real");
        fx.server.shutdown().await;
    }
}
