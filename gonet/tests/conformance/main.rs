//! The transport conformance suite: the same tests, with the same handlers, against
//! every transport compiled in. Run all of them with
//! `cargo test -p gonet --all-features --test conformance`.
//!
//! Every test talks to a real server on an ephemeral loopback port. Nothing sleeps and
//! hopes: tests wait for events (hooks, replies, closes) under one generous timeout.

use std::sync::Arc;
use std::time::Duration;

use gonet::{Builder, CloseReason, Codec, Router, Server, Session, Status};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

#[cfg(feature = "kcp")]
#[path = "../kcp/raw.rs"]
mod kcp_raw;
mod plain;
mod proxy;

/// How long any one test may wait for all its events.
const PATIENCE: Duration = Duration::from_secs(30);

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Echo {
    text: String,
}
gonet::message!(Echo = 1001, serde);

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Seq {
    n: u32,
}
gonet::message!(Seq = 1002, serde);

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Add {
    a: i64,
    b: i64,
}
gonet::message!(Add = 1003, serde);

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Sum {
    sum: i64,
}
gonet::message!(Sum = 1004, serde);

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Subscribe {
    ticks: u32,
}
gonet::message!(Subscribe = 1005, serde);

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Tick {
    n: u32,
}
gonet::message!(Tick = 1006, serde);

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Join {
    room: String,
}
gonet::message!(Join = 1007, serde);

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Joined {
    members: usize,
}
gonet::message!(Joined = 1008, serde);

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Chat {
    text: String,
}
gonet::message!(Chat = 1009, serde);

/// The server's handlers, the same for every transport.
fn server_router() -> Router {
    Router::new()
        .route(|_: Session, msg: Echo| async move { msg })
        .route(|_: Session, seq: Seq| async move { seq })
        .route(|_: Session, add: Add| async move {
            if add.a < 0 {
                return Err(Status::invalid_argument("a must not be negative"));
            }
            Ok(Sum { sum: add.a + add.b })
        })
        .route(|session: Session, sub: Subscribe| async move {
            for n in 0..sub.ticks {
                session.send(&Tick { n }).expect("push");
            }
        })
        .route(|session: Session, join: Join| async move {
            session.join(&join.room);
            let members = session.pool().map_or(0, |p| p.group_len(&join.room));
            Joined { members }
        })
}

/// What a client receives without asking: echoes of `Seq`, ticks and chats.
#[derive(Debug)]
enum Pushed {
    Seq(u32),
    Tick(u32),
    Chat(String),
}

fn client_router(tx: mpsc::UnboundedSender<Pushed>) -> Router {
    let (t1, t2, t3) = (tx.clone(), tx.clone(), tx);
    Router::new()
        .route(move |_: Session, seq: Seq| {
            let _ = t1.send(Pushed::Seq(seq.n));
            async {}
        })
        .route(move |_: Session, tick: Tick| {
            let _ = t2.send(Pushed::Tick(tick.n));
            async {}
        })
        .route(move |_: Session, chat: Chat| {
            let _ = t3.send(Pushed::Chat(chat.text));
            async {}
        })
}

/// Closes seen by a server's close hook.
type Closes = mpsc::UnboundedReceiver<(u64, CloseReason)>;
/// Errors seen by a server's error hook.
type Errors = mpsc::UnboundedReceiver<(u64, String)>;

struct Fixture {
    server: Server,
    closes: Closes,
    errors: Errors,
}

fn server_builder() -> (Builder, Closes, Errors) {
    let (ctx, crx) = mpsc::unbounded_channel();
    let (etx, erx) = mpsc::unbounded_channel();
    let builder = Builder::new()
        .codec(Codec::Json)
        .router(server_router())
        .on_close(move |s, reason| {
            let _ = ctx.send((s.id(), reason.clone()));
        })
        .on_error(move |s, err| {
            let _ = etx.send((s.id(), err.kind.to_string()));
        });
    (builder, crx, erx)
}

async fn serve_with(url: &str, builder: Builder, closes: Closes, errors: Errors) -> Fixture {
    let server = builder.serve(url).await.expect("serve");
    Fixture {
        server,
        closes,
        errors,
    }
}

async fn serve(url: &str) -> Fixture {
    let (builder, closes, errors) = server_builder();
    serve_with(url, builder, closes, errors).await
}

/// A client builder that trusts the server's development certificate, if it has one.
fn client_builder(server: &Server) -> Builder {
    let builder = Builder::new().codec(Codec::Json);
    #[cfg(feature = "tls")]
    if let Some(cert) = server.certificate() {
        return builder.client_tls(gonet::ClientTls::trust_der(cert).expect("trust"));
    }
    let _ = server;
    builder
}

async fn dial(server: &Server) -> (Session, mpsc::UnboundedReceiver<Pushed>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let session = client_builder(server)
        .router(client_router(tx))
        .dial(&server.url())
        .await
        .expect("dial");
    (session, rx)
}

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// The next close the server's hook saw for `session` (skipping others).
async fn server_close_of(closes: &mut Closes, session: u64) -> CloseReason {
    within("the server to close the session", async {
        loop {
            let (id, reason) = closes.recv().await.expect("close hook alive");
            if id == session {
                return reason;
            }
        }
    })
    .await
}

/// The server-side session of a client that has talked to the server at least once.
fn only_session(server: &Server) -> Session {
    let sessions = server.pool().sessions();
    assert_eq!(sessions.len(), 1, "one session expected");
    sessions.into_iter().next().expect("one")
}

async fn connect(url: &str) {
    let fx = serve(url).await;
    let (client, _) = dial(&fx.server).await;
    let reply: Echo = within("echo", client.call(&Echo { text: "hi".into() }))
        .await
        .expect("call");
    assert_eq!(reply.text, "hi");
    assert_eq!(
        client.transport(),
        fx.server.url().parse::<gonet::Url>().unwrap().transport()
    );
    let server_side = only_session(&fx.server);
    assert_eq!(server_side.peer_addr(), client.local_addr());
    client.close("done");
    fx.server.shutdown().await;
}

/// 10,000 messages, echoed back in order. Over UDP at most `window` are in flight, so
/// that a loopback socket buffer never overflows (UDP would drop, by contract).
async fn echo_in_order(url: &str, window: u32) {
    const N: u32 = 10_000;
    let fx = serve(url).await;
    let (client, mut rx) = dial(&fx.server).await;
    within("10,000 echoes", async {
        let mut next_send = 0;
        let mut next_recv = 0;
        while next_recv < N {
            while next_send < N && next_send - next_recv < window {
                client.send(&Seq { n: next_send }).expect("send");
                next_send += 1;
            }
            match rx.recv().await.expect("client alive") {
                Pushed::Seq(n) => {
                    assert_eq!(n, next_recv, "echoes out of order");
                    next_recv += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    // Counters are added up once per batch of messages: the last batch may still be
    // running when its last message reaches the test.
    within("the received count", async {
        loop {
            let stats = client.stats();
            if stats.received == u64::from(N) {
                break;
            }
            assert!(stats.received < u64::from(N), "{stats:?}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    client.close("done");
    fx.server.shutdown().await;
}

async fn request_response(url: &str) {
    let fx = serve(url).await;
    let (client, _) = dial(&fx.server).await;
    within("calls", async {
        for i in 0..100 {
            let sum: Sum = client.call(&Add { a: i, b: 1 }).await.expect("call");
            assert_eq!(sum.sum, i + 1);
        }
        let err = client
            .call::<Add, Sum>(&Add { a: -1, b: 1 })
            .await
            .expect_err("handler refuses");
        assert_eq!(
            err.status().expect("status").message(),
            "a must not be negative"
        );
    })
    .await;
    client.close("done");
    fx.server.shutdown().await;
}

async fn server_push(url: &str) {
    let fx = serve(url).await;
    let (client, mut rx) = dial(&fx.server).await;
    client.send(&Subscribe { ticks: 50 }).expect("send");
    within("50 ticks", async {
        for want in 0..50 {
            match rx.recv().await.expect("client alive") {
                Pushed::Tick(n) => assert_eq!(n, want),
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    client.close("done");
    fx.server.shutdown().await;
}

async fn broadcast_group(url: &str) {
    let fx = serve(url).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(dial(&fx.server).await);
    }
    let (outsider, mut outsider_rx) = dial(&fx.server).await;
    let _: Echo = within("outsider", outsider.call(&Echo { text: "x".into() }))
        .await
        .expect("call");
    for (i, (client, _)) in clients.iter().enumerate() {
        let joined: Joined = within(
            "join",
            client.call(&Join {
                room: "lobby".into(),
            }),
        )
        .await
        .expect("join");
        assert_eq!(joined.members, i + 1);
    }
    let report = fx
        .server
        .pool()
        .broadcast_group(
            "lobby",
            &Chat {
                text: "hello".into(),
            },
        )
        .expect("broadcast");
    assert_eq!(report.delivered, 3);
    for (_, rx) in &mut clients {
        match within("chat", rx.recv()).await.expect("alive") {
            Pushed::Chat(text) => assert_eq!(text, "hello"),
            other => panic!("unexpected {other:?}"),
        }
    }
    // The outsider got nothing: its next message is the echo of this sequence number.
    outsider.send(&Seq { n: 7 }).expect("send");
    match within("seq", outsider_rx.recv()).await.expect("alive") {
        Pushed::Seq(7) => {}
        other => panic!("outsider received {other:?}"),
    }
    fx.server.shutdown().await;
}

async fn client_closes(url: &str) {
    let mut fx = serve(url).await;
    let (client, _) = dial(&fx.server).await;
    let _: Echo = within("echo", client.call(&Echo { text: "hi".into() }))
        .await
        .expect("call");
    let server_side = only_session(&fx.server);
    client.close("bye");
    match within("client close", client.closed()).await {
        CloseReason::Local(reason) => assert_eq!(&*reason, "bye"),
        other => panic!("client closed with {other}"),
    }
    let reason = server_close_of(&mut fx.closes, server_side.id()).await;
    assert!(
        matches!(reason, CloseReason::PeerClosed),
        "server saw {reason}"
    );
    fx.server.shutdown().await;
}

async fn server_closes(url: &str) {
    let fx = serve(url).await;
    let (client, _) = dial(&fx.server).await;
    let _: Echo = within("echo", client.call(&Echo { text: "hi".into() }))
        .await
        .expect("call");
    only_session(&fx.server).close("kicked");
    let reason = within("client to see the close", client.closed()).await;
    assert!(
        matches!(reason, CloseReason::PeerClosed),
        "client saw {reason}"
    );
    fx.server.shutdown().await;
}

async fn shutdown_reaches_clients(url: &str) {
    let fx = serve(url).await;
    let (client, _) = dial(&fx.server).await;
    let _: Echo = within("echo", client.call(&Echo { text: "hi".into() }))
        .await
        .expect("call");
    within("shutdown", fx.server.shutdown()).await;
    let reason = within("client to see the shutdown", client.closed()).await;
    assert!(
        matches!(reason, CloseReason::PeerClosed),
        "client saw {reason}"
    );
}

/// A peer that vanishes without closing (the network between them goes silent) is
/// noticed by heartbeats on both sides.
async fn vanished_peer(url: &str) {
    let (builder, closes, errors) = server_builder();
    let builder = builder
        .heartbeat(Duration::from_millis(100))
        .idle_timeout(Duration::from_millis(800));
    let mut fx = serve_with(url, builder, closes, errors).await;
    let proxy = proxy::Proxy::start(&fx.server).await;
    let (tx, _rx) = mpsc::unbounded_channel();
    let client = client_builder(&fx.server)
        .router(client_router(tx))
        .heartbeat(Duration::from_millis(100))
        .idle_timeout(Duration::from_millis(800))
        .dial(&proxy.url())
        .await
        .expect("dial through proxy");
    let _: Echo = within("echo", client.call(&Echo { text: "hi".into() }))
        .await
        .expect("call");
    let server_side = only_session(&fx.server);
    proxy.cut();
    let reason = within("the client to notice", client.closed()).await;
    assert!(
        matches!(reason, CloseReason::IdleTimeout),
        "client saw {reason}"
    );
    let reason = server_close_of(&mut fx.closes, server_side.id()).await;
    assert!(
        matches!(reason, CloseReason::IdleTimeout),
        "server saw {reason}"
    );
    fx.server.shutdown().await;
}

/// A malformed packet closes (stream transports, WebSocket) or is skipped (UDP) with a
/// clear error, while another session carries on.
async fn malformed_packet(url: &str) {
    let mut fx = serve(url).await;
    let (good, _) = dial(&fx.server).await;
    let _: Echo = within(
        "echo",
        good.call(&Echo {
            text: "before".into(),
        }),
    )
    .await
    .expect("call");
    let outcome = within("the bad peer", raw::send_garbage(&fx.server)).await;
    let error = within("the error hook", async {
        loop {
            let (_, err) = fx.errors.recv().await.expect("hook alive");
            if err.contains(outcome.error_contains) {
                return err;
            }
        }
    })
    .await;
    if outcome.closes {
        let reason = within("the bad session's close", async {
            loop {
                let (_, reason) = fx.closes.recv().await.expect("hook alive");
                if let CloseReason::Error(err) = &reason {
                    return err.to_string();
                }
            }
        })
        .await;
        assert!(reason.contains(outcome.error_contains), "{reason}");
    }
    if let Some(after) = outcome.after {
        within("the bad peer's fate", after).await;
    }
    let reply: Echo = within(
        "echo",
        good.call(&Echo {
            text: "after".into(),
        }),
    )
    .await
    .expect("the good session carries on");
    assert_eq!(reply.text, "after", "{error}");
    fx.server.shutdown().await;
}

/// What a transport does with garbage.
struct Garbage {
    error_contains: &'static str,
    closes: bool,
    after: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
}

mod raw;
mod specific;

/// A server that asks for a handshake accepts the right token (binding its user) and
/// refuses a wrong one with a status the client receives; only the accepted session
/// counts as connected.
async fn handshake(url: &str) {
    let (connects_tx, mut connects) = mpsc::unbounded_channel();
    let (builder, mut closes, errors) = server_builder();
    let builder = builder
        .on_connect(move |s| {
            let _ = connects_tx.send(s.id());
        })
        .on_handshake(
            |session: Session, hello: gonet::Handshake<Echo>| async move {
                assert_eq!(
                    (hello.client_version.as_str(), hello.platform.as_str()),
                    ("2.1.0", "test")
                );
                match hello.payload.text.strip_prefix("token:") {
                    Some(user) => {
                        session.bind(user);
                        Ok(())
                    }
                    None => Err(Status::unauthenticated(format!(
                        "bad token {}",
                        hello.payload.text
                    ))),
                }
            },
        );
    let fx = serve_with(url, builder, closes_placeholder(), errors).await;
    let token = |text: &str| Echo { text: text.into() };

    let (tx, _pushed) = mpsc::unbounded_channel();
    let good = client_builder(&fx.server)
        .router(client_router(tx))
        .hello("2.1.0", "test", &token("token:ada"))
        .dial(&fx.server.url())
        .await
        .expect("the right token is accepted");
    let connected = within("the connect hook", connects.recv()).await.unwrap();
    assert_eq!(
        fx.server.pool().user("ada").map(|s| s.id()),
        Some(connected)
    );
    let echo: Echo = within("a call after the handshake", good.call(&token("hi")))
        .await
        .unwrap();
    assert_eq!(echo.text, "hi");

    let refused = client_builder(&fx.server)
        .hello("2.1.0", "test", &token("guess"))
        .dial(&fx.server.url())
        .await
        .expect_err("a wrong token is refused");
    match refused {
        gonet::DialError::Refused { status, .. } => {
            assert_eq!(status.code(), gonet::Code::Unauthenticated);
            assert_eq!(status.message(), "bad token guess");
        }
        other => panic!("{other}"),
    }
    let reason = within("the refused session's close", async {
        loop {
            let (_, reason) = closes.recv().await.expect("close hook alive");
            if let CloseReason::Refused(status) = reason {
                return status;
            }
        }
    })
    .await;
    assert_eq!(reason.message(), "bad token guess");
    // The refused session never counted as connected.
    assert!(connects.try_recv().is_err());
    drop(fx);
}

/// The close hook's channel, as `serve_with` wants one, when the test reads another.
fn closes_placeholder() -> Closes {
    mpsc::unbounded_channel().1
}

macro_rules! conformance {
    ($($name:ident: $feature:literal => $url:literal, window $window:literal;)*) => {$(
        #[cfg(feature = $feature)]
        mod $name {
            const URL: &str = $url;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn connect() { super::connect(URL).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn echo_10000_in_order() { super::echo_in_order(URL, $window).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn request_response() { super::request_response(URL).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn server_push() { super::server_push(URL).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn broadcast_group() { super::broadcast_group(URL).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn client_closes() { super::client_closes(URL).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn server_closes() { super::server_closes(URL).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn shutdown_reaches_clients() { super::shutdown_reaches_clients(URL).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn vanished_peer() { super::vanished_peer(URL).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn malformed_packet() { super::malformed_packet(URL).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn handshake() { super::handshake(URL).await }
        }
    )*};
}

conformance! {
    tcp: "tcp" => "tcp://127.0.0.1:0", window 10000;
    udp: "udp" => "udp://127.0.0.1:0", window 32;
    ws: "ws" => "ws://127.0.0.1:0/gonet", window 10000;
    wss: "wss" => "wss://127.0.0.1:0/gonet", window 10000;
    quic: "quic" => "quic://127.0.0.1:0", window 10000;
    kcp: "kcp" => "kcp://127.0.0.1:0", window 10000;
}

#[test]
fn disabled_transports_name_their_feature() {
    let cases: [(&str, bool); 5] = [
        ("udp://127.0.0.1:0", cfg!(feature = "udp")),
        ("ws://127.0.0.1:0/x", cfg!(feature = "ws")),
        ("wss://127.0.0.1:0/x", cfg!(feature = "wss")),
        ("quic://127.0.0.1:0", cfg!(feature = "quic")),
        ("kcp://127.0.0.1:0", cfg!(feature = "kcp")),
    ];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for (url, enabled) in cases {
        if enabled {
            continue;
        }
        let err = rt
            .block_on(Builder::new().serve(url))
            .expect_err("feature is off");
        let scheme = url.split("://").next().expect("scheme");
        assert!(
            err.to_string()
                .contains(&format!("enable the `{scheme}` feature")),
            "{err}"
        );
    }
    let _ = Arc::new(());
}
