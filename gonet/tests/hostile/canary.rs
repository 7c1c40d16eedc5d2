//! The canary: a well-behaved client on the server under attack, which must keep being
//! answered whatever the attacker does.

use std::sync::Arc;

use gonet::{Codec, Session};

use serde::{Deserialize, Serialize};

use crate::support::within;

/// What the canary says; every codec can carry it.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub(crate) struct Say {
    #[prost(string, tag = "1")]
    #[serde(default)]
    pub(crate) content: String,
}
gonet::message!(Say = 901, [prost, serde], name = "canary.Say");

/// The canary's answer.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub(crate) struct SayAck {
    #[prost(string, tag = "1")]
    #[serde(default)]
    pub(crate) content: String,
}
gonet::message!(SayAck = 902, [prost, serde], name = "canary.SayAck");

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

/// A QUIC client of `server` speaking `codec`, trusting the server's certificate.
pub(crate) async fn quic_client(server: &gonet::Server, codec: Codec) -> Session {
    trusting(server)
        .codec(codec)
        .dial(&server.url())
        .await
        .unwrap_or_else(|e| panic!("dial {}: {e}", server.url()))
}

/// A builder that trusts the certificate of `server` (a `quic://` or `wss://` one).
pub(crate) fn trusting(server: &gonet::Server) -> gonet::Builder {
    let cert = server
        .certificate()
        .expect("a TLS server has a certificate");
    gonet::Builder::new().client_tls(gonet::ClientTls::trust_der(cert).expect("trust"))
}

/// Dials `server` (a `quic://` or `wss://` one) with a JSON client trusting its
/// certificate.
pub(crate) async fn dial_trusting(server: &gonet::Server) -> Result<Session, gonet::DialError> {
    trusting(server)
        .codec(Codec::Json)
        .dial(&server.url())
        .await
}

/// A raw QUIC connection to `server` (trusting its certificate) that completes the
/// handshake and opens nothing: until it opens the session's stream, a pending
/// handshake for the server. `Err` when it was refused.
pub(crate) async fn raw_quic(
    server: &gonet::Server,
) -> Result<(quinn::Endpoint, quinn::Connection), quinn::ConnectionError> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(server.certificate().expect("cert").to_vec().into())
        .expect("root");
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"gonet".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("quic tls");
    let mut endpoint =
        quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let conn = within(
        "a handshake",
        endpoint
            .connect(server.local_addr(), "127.0.0.1")
            .expect("connect"),
    )
    .await?;
    Ok((endpoint, conn))
}
