//! The canary: a well-behaved client on the server under attack, which must keep being
//! answered whatever the attacker does.

use gonet::{Codec, Session};

use crate::support::{Say, SayAck, within};

/// A router that echoes `Say` as `SayAck`: what the canary calls.
pub(crate) fn echo_router() -> gonet::Router {
    gonet::Router::new().route(|_: Session, msg: Say| async move {
        SayAck {
            content: msg.content,
        }
    })
}

/// A client of `url` speaking `codec`.
pub(crate) async fn client(url: &str, codec: Codec) -> Session {
    gonet::Builder::new()
        .codec(codec)
        .dial(url)
        .await
        .unwrap_or_else(|e| panic!("dial {url}: {e}"))
}

/// Asserts that `canary` is still answered: one call, its reply checked.
pub(crate) async fn still_served(canary: &Session, what: &str) {
    let text = format!("still here after {what}");
    let reply: SayAck = within(
        "the canary's reply",
        canary.call(&Say {
            content: text.clone(),
        }),
    )
    .await
    .unwrap_or_else(|e| panic!("the canary was not answered after {what}: {e}"));
    assert_eq!(reply.content, text);
}
