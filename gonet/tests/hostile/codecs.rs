//! Bodies built to hurt a decoder: nesting far past any stack, lengths that promise
//! gigabytes, XML entities and document types. Each goes to a real server over TCP as
//! a plain gonet frame; the server must report a clear error for that message, keep the
//! attacker's session, and go on answering a canary session.
//!
//! Decoding runs on a worker of a multi-threaded runtime, as in a real server: the
//! default 2 MiB worker stack of a debug build is what the limits must fit in.

use std::net::SocketAddr;

use gonet::{Builder, Codec, Message, Server, Session, SessionError};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::canary::{self, Say, SayAck};
use crate::support::{frame, raw, read_frame, within};

/// A message that contains itself: the shape every recursive decoder walks down.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub(crate) struct Node {
    #[prost(message, optional, boxed, tag = "1")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) child: Option<Box<Node>>,
    #[prost(string, tag = "2")]
    #[serde(default)]
    pub(crate) text: String,
}
gonet::message!(Node = 501, [prost, serde], name = "hostile.Node");

/// How deep a node that decoded was.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub(crate) struct Levels {
    #[prost(uint32, tag = "1")]
    pub(crate) levels: u32,
}
gonet::message!(Levels = 502, [prost, serde], name = "hostile.Levels");

impl Node {
    fn nested(levels: usize) -> Node {
        let mut node = Node {
            child: None,
            text: "leaf".into(),
        };
        for _ in 1..levels {
            node = Node {
                child: Some(Box::new(node)),
                text: String::new(),
            };
        }
        node
    }

    /// Counts the levels without recursing (a recursive count would be what the test
    /// is about).
    fn levels(&self) -> u32 {
        let mut levels = 1;
        let mut node = self;
        while let Some(child) = &node.child {
            levels += 1;
            node = child;
        }
        levels
    }
}

impl Drop for Node {
    // The default drop of a deep tree recurses too; take it apart in a loop.
    fn drop(&mut self) {
        let mut next = self.child.take();
        while let Some(mut node) = next {
            next = node.child.take();
        }
    }
}

/// A server of `codec` that answers a `Node` with its depth and a `Say` with a `SayAck`,
/// and hands every session error to the returned channel.
async fn server(codec: Codec) -> (Server, mpsc::UnboundedReceiver<String>) {
    let (errors, rx) = mpsc::unbounded_channel();
    let router = canary::echo_router().route(|_: Session, node: Node| async move {
        Levels {
            levels: node.levels(),
        }
    });
    let server = Builder::new()
        .codec(codec)
        .router(router)
        .on_error(move |_, err: &SessionError| {
            let _ = errors.send(err.to_string());
        })
        .serve("tcp://127.0.0.1:0")
        .await
        .expect("serve");
    (server, rx)
}

/// Sends `body` as a plain `Node` frame from a raw connection, as any peer can, and
/// returns the error the server reported for it. The connection stays open: a body that
/// does not decode costs the message, not the session.
async fn attack(
    addr: SocketAddr,
    errors: &mut mpsc::UnboundedReceiver<String>,
    body: &[u8],
) -> (tokio::net::TcpStream, String) {
    assert!(body.len() <= 65_531, "the body fits in one frame");
    let mut stream = raw(addr).await;
    stream
        .write_all(&frame(Node::ID, body))
        .await
        .expect("send");
    let error = within("the server's error report", errors.recv())
        .await
        .expect("the server is running");
    (stream, error)
}

/// The deepest body of each codec that one frame can carry, with no end to it: the
/// decoder must stop long before it would find out that the body is cut short.
fn deepest(codec: Codec) -> Vec<u8> {
    const ROOM: usize = 65_531;
    match codec {
        // A struct may come as a sequence of its fields: one byte a level.
        Codec::Json => vec![b'['; ROOM],
        // fixarray of two elements (child, text): one byte a level.
        Codec::Binary => vec![0x92; ROOM],
        Codec::Xml => {
            let mut body = b"<Node>".to_vec();
            while body.len() + 7 <= ROOM {
                body.extend_from_slice(b"<child>");
            }
            body
        }
        // Nested length-delimited field 1, each length consistent with what it holds.
        Codec::Protobuf => {
            let mut body = Vec::new();
            loop {
                let mut outer = vec![0x0a];
                let mut len = body.len();
                loop {
                    let byte = (len & 0x7f) as u8;
                    len >>= 7;
                    if len == 0 {
                        outer.push(byte);
                        break;
                    }
                    outer.push(byte | 0x80);
                }
                if outer.len() + body.len() > ROOM {
                    break;
                }
                outer.extend_from_slice(&body);
                body = outer;
            }
            body
        }
        other => panic!("no hostile body for {other}"),
    }
}

/// The most levels of `Node` each codec decodes.
fn max_levels(codec: Codec) -> usize {
    match codec {
        // serde_json counts objects only, and allows 127 inside the outermost value.
        Codec::Json => 127,
        // prost allows 100 messages inside the outermost one.
        Codec::Protobuf => 101,
        // A struct and the option of its child are a level each: 64 nodes are 127.
        _ => gonet::MAX_NESTING / 2,
    }
}

/// The message a codec's decoder gives for a body nested too deep.
fn too_deep(codec: Codec) -> &'static str {
    match codec {
        Codec::Json => "recursion limit exceeded",
        Codec::Protobuf => "recursion limit reached",
        _ => "nesting deeper than 128 levels",
    }
}

async fn nesting_is_refused(codec: Codec) {
    let (server, mut errors) = server(codec).await;
    let canary = canary::client(&server.url(), codec).await;
    canary::still_served(&canary, "start").await;

    // As deep as the codec allows: decodes and is answered, on a worker's stack. One
    // level more is refused with the codec's error.
    let max = max_levels(codec);
    let levels: Levels = within("a nested reply", canary.call(&Node::nested(max)))
        .await
        .unwrap_or_else(|e| panic!("{codec}: {max} levels must decode: {e}"));
    assert_eq!(levels.levels as usize, max, "{codec}");
    let refused = within(
        "a refusal",
        canary.call::<_, Levels>(&Node::nested(max + 1)),
    )
    .await;
    match refused {
        Err(e) if e.to_string().contains(too_deep(codec)) => {}
        other => panic!("{codec}: {} levels must be refused, got {other:?}", max + 1),
    }

    let body = deepest(codec);
    let (mut attacker, error) = attack(server.local_addr(), &mut errors, &body).await;
    assert!(
        error.contains(too_deep(codec))
            && error.contains(&format!("{codec} codec cannot decode hostile.Node"))
            && error.contains("message 501"),
        "{codec}: the error names the codec, the message and the limit: {error}"
    );
    canary::still_served(
        &canary,
        &format!("a {}-byte {codec} nesting bomb", body.len()),
    )
    .await;

    // The attacker's own session is still open: only the message was refused.
    let mut say = bytes::BytesMut::new();
    Say {
        content: "after".into(),
    }
    .encode_body(codec, &mut say)
    .expect("a Say encodes");
    attacker
        .write_all(&frame(Say::ID, &say))
        .await
        .expect("send");
    let (id, body) = within("the attacker's reply", read_frame(&mut attacker))
        .await
        .expect("the attacker's session is open");
    assert_eq!(id, SayAck::ID);
    let ack = SayAck::decode_body(codec, gonet::Body::new(&body)).expect("a SayAck");
    assert_eq!(ack.content, "after");
    attacker.shutdown().await.ok();
    canary.close("done");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xml_nesting_is_refused() {
    nesting_is_refused(Codec::Xml).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_nesting_is_refused() {
    nesting_is_refused(Codec::Binary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_nesting_is_refused() {
    nesting_is_refused(Codec::Json).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_nesting_is_refused() {
    nesting_is_refused(Codec::Protobuf).await;
}

/// Sends each body as a `Node` from its own raw connection and asserts that the server
/// refused it with an error naming the codec and the message, and still answers the
/// canary.
async fn refused(codec: Codec, cases: &[(&str, Vec<u8>)]) {
    let (server, mut errors) = server(codec).await;
    let canary = canary::client(&server.url(), codec).await;
    for (what, body) in cases {
        let (_attacker, error) = attack(server.local_addr(), &mut errors, body).await;
        assert!(
            error.contains(&format!("{codec} codec cannot decode hostile.Node")),
            "{codec}, {what}: {error}"
        );
        canary::still_served(&canary, &format!("{codec}: {what}")).await;
    }
    canary.close("done");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lengths_that_promise_gigabytes_are_refused() {
    const FOUR_GIB: [u8; 4] = [0xff; 4];
    let binary = |marker: u8, rest: &[u8]| {
        let mut body = vec![marker];
        body.extend_from_slice(&FOUR_GIB);
        body.extend_from_slice(rest);
        body
    };
    refused(
        Codec::Binary,
        &[
            ("array32 of 4 Gi elements", binary(0xdd, b"")),
            ("map32 of 4 Gi entries", binary(0xdf, b"")),
            (
                "str32 of 4 GiB",
                [vec![0x92, 0xc0], binary(0xdb, b"abc")].concat(),
            ),
            (
                "bin32 of 4 GiB",
                [vec![0x92, 0xc0], binary(0xc6, b"abc")].concat(),
            ),
            (
                "a child of 4 Gi fields",
                [vec![0x92], binary(0xdd, b"")].concat(),
            ),
        ],
    )
    .await;
    // Field 1 (the child) and field 2 (the text) with lengths of 4 GiB and 2^63.
    refused(
        Codec::Protobuf,
        &[
            ("a child of 4 GiB", vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]),
            (
                "a text of 4 GiB",
                vec![0x12, 0xff, 0xff, 0xff, 0xff, 0x0f, b'a'],
            ),
            (
                "a text of 2^63 bytes",
                vec![
                    0x12, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01,
                ],
            ),
            (
                "a varint of eleven bytes",
                vec![
                    0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
                ],
            ),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xml_entities_and_document_types_are_not_expanded() {
    let mut laughs = String::from("<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">");
    for i in 1..10 {
        let prev = if i == 1 {
            "lol".to_owned()
        } else {
            format!("lol{}", i - 1)
        };
        laughs.push_str(&format!(
            "<!ENTITY lol{i} \"{}\">",
            format!("&{prev};").repeat(10)
        ));
    }
    laughs.push_str("]><Node><text>&lol9;</text></Node>");
    let external = "<!DOCTYPE x [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\
                    <Node><text>&xxe;</text></Node>";
    refused(
        Codec::Xml,
        &[
            ("a billion laughs", laughs.into_bytes()),
            ("an external entity", external.as_bytes().to_vec()),
            (
                "an undefined entity",
                b"<Node><text>&nope;</text></Node>".to_vec(),
            ),
        ],
    )
    .await;
}
