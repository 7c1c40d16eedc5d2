//! The KCP engine: what only KCP has to get right (admission, spoofed segments, close
//! reasons, no phantom session after a bye), kcp-go's encryption and FEC through a
//! lossy path, datagrams captured from kcp-go replayed into a server, and real
//! interoperation with a kcp-go peer built from `go-peer/main.go`.
//!
//! `cargo test -p gonet --all-features --test kcp`

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use gonet::{Builder, CloseReason, Codec, Router, Server, Session};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

mod behaviour;
mod fixtures;
mod go;
mod raw;
mod relay;
mod settings;

/// A bound on waiting for an event that must happen; not a timing assertion.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

pub(crate) async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(PATIENCE, fut).await {
        Ok(v) => v,
        Err(_) => panic!("gave up waiting for {what}"),
    }
}

pub(crate) async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

/// The message every test echoes; the kcp-go peer sends the same JSON.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub(crate) struct Echo {
    pub(crate) text: String,
}
gonet::message!(Echo = 1001, serde);

/// What a server saw: each text it echoed, each connect and close.
pub(crate) struct Seen {
    pub(crate) texts: mpsc::UnboundedReceiver<String>,
    pub(crate) connects: Arc<std::sync::atomic::AtomicUsize>,
    pub(crate) closes: mpsc::UnboundedReceiver<(std::net::SocketAddr, CloseReason)>,
}

/// A JSON echo server builder, with hooks reporting into [`Seen`].
pub(crate) fn echo_server() -> (Builder, Seen) {
    let (text_tx, texts) = mpsc::unbounded_channel();
    let (close_tx, closes) = mpsc::unbounded_channel();
    let connects = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = connects.clone();
    let router = Router::new().route(move |_: Session, msg: Echo| {
        let _ = text_tx.send(msg.text.clone());
        async move { msg }
    });
    let builder = Builder::new()
        .codec(Codec::Json)
        .router(router)
        .on_connect(move |_| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        })
        .on_close(move |session, reason| {
            let _ = close_tx.send((session.peer_addr(), reason.clone()));
        });
    (
        builder,
        Seen {
            texts,
            connects,
            closes,
        },
    )
}

/// A JSON client whose router hands every `Echo` it receives to the returned channel
/// (for peers that echo plain frames, where a call's reply would not be one).
pub(crate) async fn echo_client(
    url: &str,
    builder: Builder,
) -> (Session, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let router = Router::new().route(move |_: Session, msg: Echo| {
        let _ = tx.send(msg.text);
        async {}
    });
    let session = builder
        .codec(Codec::Json)
        .router(router)
        .dial(url)
        .await
        .unwrap_or_else(|e| panic!("dial {url}: {e}"));
    (session, rx)
}

/// The texts a test sends: small ones, and every 10th large enough to be cut into
/// several KCP segments.
pub(crate) fn texts(n: usize, tag: &str) -> Vec<String> {
    (0..n)
        .map(|i| {
            let mut text = format!("{tag} {i}");
            if i % 10 == 9 {
                text.push(' ');
                text.push_str(&"y".repeat(3000 + i));
            }
            text
        })
        .collect()
}

/// Sends `texts` with `send` (plain frames) and checks that `echoes` brings them back
/// in order.
pub(crate) async fn round_trip(
    session: &Session,
    echoes: &mut mpsc::UnboundedReceiver<String>,
    texts: &[String],
) {
    for text in texts {
        session
            .send(&Echo { text: text.clone() })
            .expect("queue an echo");
    }
    for (i, want) in texts.iter().enumerate() {
        let got = within("an echo", echoes.recv()).await.expect("echoes");
        assert_eq!(
            got.len(),
            want.len(),
            "echo {i}: {:.60} instead of {:.60}",
            got,
            want
        );
        assert_eq!(&got, want, "echo {i}");
    }
}

/// Serves `url` with `builder`.
pub(crate) async fn serve(builder: &Builder, url: &str) -> Server {
    builder
        .serve(url)
        .await
        .unwrap_or_else(|e| panic!("serve {url}: {e}"))
}
