//! Property tests of every decoder a peer's bytes reach: the frame decoder fed any bytes
//! in any chunking, every codec's decode path on several message shapes with arbitrary
//! bytes and with mutations of valid encodings, and real servers fed garbage streams and
//! datagrams. No input may panic; a normal run tries a few hundred inputs per property
//! with a fixed seed, and a longer run is one variable away:
//!
//! ```text
//! PROPTEST_CASES=1000000 cargo test -p gonet --all-features --test hostile fuzz
//! ```
//!
//! The splitting of message-transport packets and the protocol-extension parser, which
//! are not public, have their own property tests in the library (`cargo test -p gonet
//! --all-features --lib properties`).

use std::collections::BTreeMap;
use std::fmt::Debug;

use bytes::{Bytes, BytesMut};
use gonet::frame::{HEADER_LEN, MAX_FRAME_LEN, MIN_FRAME_LEN};
use gonet::{Body, Codec, FrameCodec, FrameError, Message, Packet};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::{Decoder, Encoder};

use crate::canary;
use crate::support::within;

/// A fixed seed: a run is repeatable and a failure reproduces as it was found.
const SEED: u64 = 0x676f_6e65_745f_6675;

/// `cases` inputs per property, or `PROPTEST_CASES` of them; the seed stays fixed.
fn config(cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(cases);
    Config {
        cases,
        rng_seed: RngSeed::Fixed(SEED),
        failure_persistence: None,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------------
// Message shapes, written as gonet-build writes them: prost for protobuf, serde for JSON,
// XML and binary, with the same serde attributes.

/// Strings, bytes, integers of every protobuf kind, an optional string, a nested message,
/// a map and a oneof.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
struct Player {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(bytes = "vec", tag = "2")]
    #[serde(skip_serializing_if = "gonet::codegen::skip_empty")]
    avatar: Vec<u8>,
    #[prost(uint64, tag = "3")]
    score: u64,
    #[prost(sint32, tag = "4")]
    delta: i32,
    #[prost(bool, tag = "5")]
    online: bool,
    #[prost(string, optional, tag = "6")]
    #[serde(skip_serializing_if = "gonet::codegen::skip_none")]
    title: Option<String>,
    #[prost(message, optional, tag = "7")]
    #[serde(skip_serializing_if = "gonet::codegen::skip_none")]
    home: Option<Point>,
    // A BTreeMap rather than prost's default HashMap: the same value always encodes to
    // the same bytes, so a seed reproduces a run.
    #[prost(btree_map = "string, uint32", tag = "8")]
    #[serde(
        skip_serializing_if = "gonet::codegen::skip_empty",
        serialize_with = "gonet::codegen::serialize_map",
        deserialize_with = "gonet::codegen::deserialize_map"
    )]
    items: BTreeMap<String, u32>,
    #[prost(oneof = "Action", tags = "9, 10, 11")]
    #[serde(skip_serializing_if = "gonet::codegen::skip_none")]
    action: Option<Action>,
    #[prost(fixed32, repeated, tag = "12")]
    #[serde(skip_serializing_if = "gonet::codegen::skip_empty")]
    marks: Vec<u32>,
}
gonet::message!(Player = 7001, [prost, serde], name = "fuzz.Player");

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
struct Point {
    #[prost(sint64, tag = "1")]
    x: i64,
    #[prost(int32, tag = "2")]
    y: i32,
}
gonet::message!(Point = 7002, [prost, serde], name = "fuzz.Point");

#[derive(Clone, PartialEq, prost::Oneof, Serialize, Deserialize)]
#[serde(tag = "case", content = "value")]
enum Action {
    #[prost(string, tag = "9")]
    Say(String),
    #[prost(message, tag = "10")]
    Move(Point),
    #[prost(uint32, tag = "11")]
    Leave(u32),
}

/// A message that contains itself, kept a few levels deep here: the nesting limits
/// have cases of their own.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
struct Tree {
    #[prost(string, tag = "1")]
    label: String,
    #[prost(message, repeated, tag = "2")]
    #[serde(skip_serializing_if = "gonet::codegen::skip_empty")]
    children: Vec<Tree>,
}
gonet::message!(Tree = 7003, [prost, serde], name = "fuzz.Tree");

/// Text with what needs escaping in JSON and XML, and more than ASCII.
fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 <>&;\"'=/\\\\\\[\\]{}:,é中🙂-]{0,12}"
}

fn point() -> impl Strategy<Value = Point> {
    (any::<i64>(), any::<i32>()).prop_map(|(x, y)| Point { x, y })
}

fn player() -> impl Strategy<Value = Player> {
    let action = prop_oneof![
        text().prop_map(Action::Say),
        point().prop_map(Action::Move),
        any::<u32>().prop_map(Action::Leave),
    ];
    (
        (
            text(),
            proptest::collection::vec(any::<u8>(), 0..12),
            any::<u64>(),
            any::<i32>(),
            any::<bool>(),
        ),
        (
            proptest::option::of(text()),
            proptest::option::of(point()),
            proptest::collection::btree_map(text(), any::<u32>(), 0..4),
            proptest::option::of(action),
            proptest::collection::vec(any::<u32>(), 0..4),
        ),
    )
        .prop_map(
            |((name, avatar, score, delta, online), (title, home, items, action, marks))| Player {
                name,
                avatar,
                score,
                delta,
                online,
                title,
                home,
                items,
                action,
                marks,
            },
        )
}

fn tree() -> impl Strategy<Value = Tree> {
    text()
        .prop_map(|label| Tree {
            label,
            children: Vec::new(),
        })
        .prop_recursive(6, 24, 3, |inner| {
            (text(), proptest::collection::vec(inner, 0..3))
                .prop_map(|(label, children)| Tree { label, children })
        })
}

/// Decodes `bytes` as an `M` in `codec`. A failure must be an error naming the message
/// and the codec, never a panic (a panic fails the property where it happens).
fn decode<M: Message>(codec: Codec, bytes: &[u8]) -> Result<M, String> {
    let bytes = Bytes::copy_from_slice(bytes);
    let result = M::decode_body(codec, Body::new(&bytes));
    result.map_err(|err| {
        let text = err.to_string();
        assert!(
            text.contains(M::NAME) && text.contains(codec.name()),
            "a {} error should name the message and the codec: {text}",
            codec.name()
        );
        text
    })
}

/// Every shape, decoded in every codec from the same bytes.
fn decode_every_shape(codec: Codec, bytes: &[u8]) {
    let _ = decode::<Player>(codec, bytes);
    let _ = decode::<Point>(codec, bytes);
    let _ = decode::<Tree>(codec, bytes);
}

/// Input that looks like a codec's own syntax, so that parsers get past their first
/// byte: tokens of XML, JSON and MessagePack glued together. Few tokens, so nesting stays
/// far below any depth limit.
fn syntax() -> impl Strategy<Value = Vec<u8>> {
    const TOKENS: &[&[u8]] = &[
        b"<",
        b">",
        b"</",
        b"/>",
        b"<Player>",
        b"</Player>",
        b"<name>",
        b"</name>",
        b"<children>",
        b"</children>",
        b"<items>",
        b"<key>",
        b"<value>",
        b"<action>",
        b"<case>Say</case>",
        b"&amp;",
        b"&lt;",
        b"&#",
        b"&#x1F600;",
        b"&unknown;",
        b"<!DOCTYPE a [<!ENTITY e \"x\">]>",
        b"<![CDATA[",
        b"]]>",
        b"<?xml version=\"1.0\"?>",
        b"<!--",
        b"-->",
        b" a=\"1\"",
        b"{",
        b"}",
        b"[",
        b"]",
        b":",
        b",",
        b"\"name\"",
        b"\"children\"",
        b"\"action\"",
        b"{\"case\":\"Move\",\"value\":",
        b"\"items\"",
        b"\"\\u12\"",
        b"\"\\ud800\"",
        b"1e999999",
        b"-0",
        b"18446744073709551616",
        b"null",
        b"true",
        b"\xde\x00\x01",
        b"\x81\xa4name",
        b"\x92",
        b"\xdd\xff\xff\xff\xff",
        b"\xdf\xff\xff\xff\xff",
        b"\xc4\xff",
        b"\xdb\xff\xff\xff\xff",
        b"\xcb",
        b"\xc1",
        b"\xd4\x01\x02",
        b"\x0a\xff\xff\xff\xff\x0f",
        b"\x12\x05",
        b"\x3a\x02\x08",
        b"\x52\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",
        b"\xff",
        b"\x00",
        b"x",
        b"\xe4\xb8",
    ];
    proptest::collection::vec(proptest::sample::select(TOKENS), 0..40)
        .prop_map(|tokens| tokens.concat())
}

/// How a valid encoding is damaged.
#[derive(Clone, Debug)]
enum Mutation {
    Set(prop::sample::Index, u8),
    Insert(prop::sample::Index, u8),
    Remove(prop::sample::Index),
    Truncate(prop::sample::Index),
    /// Copies up to 16 bytes from one place to another.
    Splice(prop::sample::Index, prop::sample::Index, u8),
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let index = any::<prop::sample::Index>;
    let one = prop_oneof![
        (index(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (index(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        index().prop_map(Mutation::Remove),
        index().prop_map(Mutation::Truncate),
        (index(), index(), 1u8..16).prop_map(|(a, b, n)| Mutation::Splice(a, b, n)),
    ];
    proptest::collection::vec(one, 1..4)
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        if bytes.is_empty() {
            bytes.push(0);
        }
        let len = bytes.len();
        match m {
            Mutation::Set(i, b) => bytes[i.index(len)] = *b,
            Mutation::Insert(i, b) => bytes.insert(i.index(len + 1), *b),
            Mutation::Remove(i) => {
                bytes.remove(i.index(len));
            }
            Mutation::Truncate(i) => bytes.truncate(i.index(len)),
            Mutation::Splice(from, to, n) => {
                let from = from.index(len);
                let end = (from + usize::from(*n)).min(len);
                let piece = bytes[from..end].to_vec();
                let to = to.index(len + 1);
                bytes.splice(to..to, piece);
            }
        }
    }
    bytes
}

/// Encodes `value` in `codec`, or `None` when that codec cannot carry it.
fn encode<M: Message>(value: &M, codec: Codec) -> Option<Vec<u8>> {
    let mut dst = BytesMut::new();
    value.encode_body(codec, &mut dst).ok()?;
    Some(dst.to_vec())
}

/// A valid encoding decodes back to its value (JSON, binary and protobuf are exact;
/// XML is checked for panics only, as it reads text back as text), and damaged copies
/// of it decode or fail with an error.
fn check_mutations<M: Message + PartialEq + Debug>(
    value: &M,
    mutations: &[Mutation],
) -> Result<(), TestCaseError> {
    for &codec in Codec::ALL {
        let Some(valid) = encode(value, codec) else {
            continue;
        };
        let back = decode::<M>(codec, &valid);
        if codec != Codec::Xml {
            prop_assert_eq!(back.as_ref(), Ok(value), "{} round trip", codec.name());
        }
        let damaged = mutate(valid, mutations);
        let _ = decode::<M>(codec, &damaged);
        decode_every_shape(codec, &damaged);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    /// Arbitrary bytes in every codec and shape: an error naming both, never a panic.
    #[test]
    fn fuzz_codecs_decode_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        for &codec in Codec::ALL {
            decode_every_shape(codec, &bytes);
        }
    }

    /// Fragments of each codec's own syntax glued at random: gets further into the
    /// parsers than random bytes do.
    #[test]
    fn fuzz_codecs_decode_syntax_soup(bytes in syntax()) {
        for &codec in Codec::ALL {
            decode_every_shape(codec, &bytes);
        }
    }

    /// Valid encodings of strings, bytes, optional fields, a nested message, a map and a
    /// oneof round-trip; damaged copies never panic.
    #[test]
    fn fuzz_codecs_decode_damaged_players(value in player(), mutations in mutations()) {
        check_mutations(&value, &mutations)?;
    }

    /// The same for a message that contains itself, a few levels deep.
    #[test]
    fn fuzz_codecs_decode_damaged_trees(value in tree(), mutations in mutations()) {
        check_mutations(&value, &mutations)?;
    }
}

// ---------------------------------------------------------------------------------------
// The frame decoder.

/// What decoding a buffer gave: the packets, then how it stopped.
#[derive(Debug, PartialEq)]
struct Decoded {
    packets: Vec<Packet>,
    /// The error that stopped it, as text; `None` when it ran out of bytes.
    error: Option<String>,
    /// Bytes taken out of the buffer as packets.
    consumed: usize,
}

/// Decodes `chunks` as they would arrive from a socket: each appended to the buffer,
/// then as many frames as it holds taken out; the first error ends the stream.
fn decode_stream(codec: &mut FrameCodec, chunks: &[&[u8]]) -> Decoded {
    let mut buf = BytesMut::new();
    let mut packets = Vec::new();
    let mut fed = 0;
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        fed += chunk.len();
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(packet)) => packets.push(packet),
                Ok(None) => {
                    // More bytes are needed: how many, never more than one frame.
                    assert!(codec.missing(&buf) <= HEADER_LEN + MAX_FRAME_LEN);
                    break;
                }
                Err(err) => {
                    assert_frame_error(&err, codec.max_frame_len());
                    return Decoded {
                        packets,
                        error: Some(err.to_string()),
                        consumed: fed - buf.len(),
                    };
                }
            }
        }
    }
    let rest = buf.len();
    match codec.decode_eof(&mut buf) {
        Ok(None) => assert_eq!(rest, 0, "a partial frame is not a clean end"),
        Ok(Some(packet)) => panic!("decode_eof found {packet:?}, which decode left behind"),
        Err(FrameError::Truncated { received, .. }) => assert_eq!(received, rest),
        Err(err) => assert_frame_error(&err, codec.max_frame_len()),
    }
    Decoded {
        packets,
        error: None,
        consumed: fed - rest,
    }
}

fn assert_frame_error(err: &FrameError, max: usize) {
    match err {
        FrameError::LengthTooSmall { len } => assert!(*len < MIN_FRAME_LEN),
        FrameError::LengthTooLarge { len, max: m } => {
            assert_eq!(*m, max);
            assert!(*len > max);
        }
        other => panic!("the stream decoder reported {other}"),
    }
}

/// Bytes for a stream: arbitrary, or frames (each possibly damaged) then arbitrary bytes.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    let frame = (
        any::<u32>(),
        proptest::collection::vec(any::<u8>(), 0..300),
        proptest::option::of((any::<prop::sample::Index>(), any::<u8>())),
    )
        .prop_map(|(id, body, damage)| {
            let mut frame = gonet::frame::encode_frame(id, &body)
                .expect("a small body fits")
                .to_vec();
            if let Some((at, byte)) = damage {
                let at = at.index(frame.len());
                frame[at] = byte;
            }
            frame
        });
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..2048),
        (
            proptest::collection::vec(frame, 0..8),
            proptest::collection::vec(any::<u8>(), 0..16),
        )
            .prop_map(|(frames, tail)| [frames.concat(), tail].concat()),
    ]
}

/// Splits `bytes` at the given sizes (cycled), as reads of a socket would.
fn chunks<'a>(bytes: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = bytes;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        out.push(chunk);
        rest = tail;
    }
    out
}

proptest! {
    #![proptest_config(config(512))]

    /// Any bytes in any chunking decode to the same packets and the same error as all
    /// at once; every error is a length the limit refuses; nothing panics.
    #[test]
    fn fuzz_frame_decoder_any_bytes_any_chunking(
        bytes in stream(),
        sizes in proptest::collection::vec(1usize..64, 1..8),
        max in prop_oneof![Just(MAX_FRAME_LEN), 0usize..400],
    ) {
        let whole = decode_stream(&mut FrameCodec::new(max), &[&bytes]);
        let chunked = decode_stream(&mut FrameCodec::new(max), &chunks(&bytes, &sizes));
        prop_assert_eq!(&chunked, &whole);
        let limit = FrameCodec::new(max).max_frame_len();
        for packet in &whole.packets {
            prop_assert!(packet.body.len() + MIN_FRAME_LEN <= limit);
        }
        let used: usize = whole.packets.iter().map(|p| HEADER_LEN + p.body.len()).sum();
        prop_assert_eq!(used, whole.consumed);
    }

    /// Frames written by the encoder read back as they were, in any chunking.
    #[test]
    fn fuzz_frame_encoder_and_decoder_agree(
        packets in proptest::collection::vec(
            (any::<u32>(), proptest::collection::vec(any::<u8>(), 0..200)),
            0..8,
        ),
        sizes in proptest::collection::vec(1usize..64, 1..8),
    ) {
        let mut codec = FrameCodec::default();
        let mut wire = BytesMut::new();
        let packets: Vec<Packet> = packets.into_iter().map(|(id, body)| Packet::new(id, body)).collect();
        for packet in &packets {
            codec.encode(packet.clone(), &mut wire).expect("a small packet encodes");
        }
        let decoded = decode_stream(&mut codec, &chunks(&wire, &sizes));
        let consumed = wire.len();
        prop_assert_eq!(decoded, Decoded { packets, error: None, consumed });
    }
}

// ---------------------------------------------------------------------------------------
// Real servers fed garbage.

/// Runs `check` for `cases` inputs from `strategy`, each on the same runtime.
fn run<S: Strategy>(
    cases: u32,
    strategy: S,
    check: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let mut runner = TestRunner::new(config(cases));
    if let Err(err) = runner.run(&strategy, check) {
        panic!("{err}");
    }
}

/// A runtime of two workers, a JSON echo server on `url` in it, and its canary.
fn echo_server(url: &str) -> (tokio::runtime::Runtime, gonet::Server, gonet::Session) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let (server, canary) = runtime.block_on(async {
        let server = gonet::Builder::new()
            .codec(Codec::Json)
            .router(canary::echo_router())
            .serve(url)
            .await
            .expect("serve");
        let canary = canary::client(&server.url(), Codec::Json).await;
        (server, canary)
    });
    (runtime, server, canary)
}

/// A TCP server with an echo route: streams of garbage frames and bytes, each on a
/// connection of its own, in arbitrary writes. What comes back is well-formed frames,
/// and the canary is answered after every stream.
#[test]
fn fuzz_tcp_server_with_garbage_streams() {
    let (runtime, server, canary) = echo_server("tcp://127.0.0.1:0");
    let addr = server.local_addr();
    let say = |content: &[u8]| {
        gonet::frame::encode_frame(canary::Say::ID, content)
            .expect("fits")
            .to_vec()
    };
    // Well-formed requests first, so that replies are written while garbage arrives.
    let requests = proptest::collection::vec(text(), 0..4).prop_map(move |texts| {
        let frames: Vec<Vec<u8>> = texts
            .iter()
            .map(|t| {
                say(&serde_json::to_vec(&crate::support::Say { content: t.clone() }).expect("json"))
            })
            .collect();
        frames.concat()
    });
    let garbage = prop_oneof![
        stream(),
        syntax().prop_map(move |body| say(&body)),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(move |body| say(&body)),
    ];
    let input = (
        (requests, garbage).prop_map(|(requests, garbage)| [requests, garbage].concat()),
        proptest::collection::vec(1usize..512, 1..4),
    );
    run(64, input, |(bytes, sizes)| {
        runtime.block_on(async {
            let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            for chunk in chunks(&bytes, &sizes) {
                // The server may close early on a bad frame; later writes then fail.
                if stream.write_all(chunk).await.is_err() {
                    break;
                }
            }
            let _ = stream.shutdown().await;
            let mut back = Vec::new();
            // A close with our bytes unread is a reset: what came before it counts.
            let _ = within("the server's close", stream.read_to_end(&mut back)).await;
            let answer = decode_stream(&mut FrameCodec::default(), &[&back]);
            prop_assert_eq!(answer.error, None, "the server wrote a bad frame");
            for packet in &answer.packets {
                prop_assert_eq!(
                    packet.id,
                    canary::SayAck::ID,
                    "only SayAck replies: {:?}",
                    packet
                );
                prop_assert!(serde_json::from_slice::<canary::SayAck>(&packet.body).is_ok());
            }
            canary::still_served(&canary, "a garbage stream").await;
            Ok::<(), TestCaseError>(())
        })
    });
    runtime.block_on(server.shutdown());
}

/// A UDP server: datagrams of garbage and of damaged packets from one source port per
/// case. The canary is answered after each.
#[test]
fn fuzz_udp_server_with_garbage_datagrams() {
    let (runtime, server, canary) = echo_server("udp://127.0.0.1:0");
    let addr = server.local_addr();
    let datagram = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..600),
        stream(),
        syntax().prop_map(|body| gonet::frame::encode_frame(canary::Say::ID, &body)
            .expect("fits")
            .to_vec()),
    ];
    run(32, proptest::collection::vec(datagram, 1..8), |datagrams| {
        runtime.block_on(async {
            let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("bind");
            for datagram in &datagrams {
                socket.send_to(datagram, addr).await.expect("send");
            }
            canary::still_served(&canary, "garbage datagrams").await;
            Ok::<(), TestCaseError>(())
        })
    });
    runtime.block_on(server.shutdown());
}

/// The input on which quick-xml 0.38 panics (a `<!DOCTYPE ..>` splitting the text of a
/// string field), on a real server: the message is refused with an error naming the
/// document type, the session that sent it goes on, and another session is answered.
#[tokio::test]
async fn xml_doctype_inside_text_is_refused_and_the_session_goes_on() {
    let (errors_tx, mut errors) = tokio::sync::mpsc::unbounded_channel();
    let server = gonet::Builder::new()
        .codec(Codec::Xml)
        .router(canary::echo_router())
        .on_error(move |_, err| {
            let _ = errors_tx.send(err.to_string());
        })
        .serve("tcp://127.0.0.1:0")
        .await
        .expect("serve");
    let canary = canary::client(&server.url(), Codec::Xml).await;
    canary::still_served(&canary, "nothing yet").await;

    let mut attacker = crate::support::raw(server.local_addr()).await;
    let body = b"<Say><content>a<!DOCTYPE x>b</content></Say>";
    attacker
        .write_all(&gonet::frame::encode_frame(canary::Say::ID, body).expect("fits"))
        .await
        .expect("write");
    let error = within("the error report", errors.recv())
        .await
        .expect("an error");
    assert!(
        error.contains("xml codec cannot decode canary.Say")
            && error.contains("document type declaration"),
        "{error}"
    );
    let fine = b"<Say><content>after</content></Say>";
    attacker
        .write_all(&gonet::frame::encode_frame(canary::Say::ID, fine).expect("fits"))
        .await
        .expect("write");
    let (id, reply) = within(
        "the attacker's reply",
        crate::support::read_frame(&mut attacker),
    )
    .await
    .expect("the attacker's session is open");
    assert_eq!(id, canary::SayAck::ID);
    assert!(String::from_utf8_lossy(&reply).contains("after"));
    canary::still_served(&canary, "a DOCTYPE inside XML text").await;
    server.shutdown().await;
}

/// The XML codec fails on that input with an error, as for any other malformed body,
/// rather than panic (on a client, a panic while decoding a reply would unwind through
/// the task awaiting the call).
#[test]
fn xml_doctype_inside_text_is_a_decode_error() {
    let body = Bytes::from_static(b"<Tree><label>a<!DOCTYPE x>b</label></Tree>");
    let result = std::panic::catch_unwind(|| Tree::decode_body(Codec::Xml, Body::new(&body)));
    match result {
        Ok(Err(err)) => assert!(err.to_string().contains("fuzz.Tree"), "{err}"),
        Ok(Ok(tree)) => panic!("decoded {tree:?}"),
        Err(_) => panic!("the XML decoder panicked"),
    }
}
