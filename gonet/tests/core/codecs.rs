//! Every codec round-trips a message holding a string, a repeated field, a nested
//! message, an enum and a oneof; the codec is chosen per listener.

use gonet::{Builder, Codec, CodecErrorKind, Message, Router, Session};
use serde::{Deserialize, Serialize};

use crate::support::*;

/// Shaped like the code `gonet-build` generates: prost and serde on one type.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Profile {
    #[prost(string, tag = "1")]
    pub(crate) name: String,
    #[prost(string, repeated, tag = "2")]
    pub(crate) tags: Vec<String>,
    #[prost(message, optional, tag = "3")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) home: Option<Address>,
    #[prost(enumeration = "Level", tag = "4")]
    pub(crate) level: i32,
    #[prost(oneof = "Contact", tags = "5, 6")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) contact: Option<Contact>,
}
gonet::message!(Profile = 401, [prost, serde], name = "test.Profile");

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Address {
    #[prost(string, tag = "1")]
    pub(crate) city: String,
    #[prost(uint32, tag = "2")]
    pub(crate) zip: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub(crate) enum Level {
    Novice = 0,
    Expert = 1,
}

#[derive(Clone, PartialEq, prost::Oneof, Serialize, Deserialize)]
#[serde(tag = "case", content = "value")]
pub(crate) enum Contact {
    #[prost(string, tag = "5")]
    Email(String),
    #[prost(uint64, tag = "6")]
    Phone(u64),
}

/// A serde-only message with a Rust enum.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Move {
    pub(crate) player: String,
    pub(crate) path: Vec<Point>,
    pub(crate) dir: Dir,
    pub(crate) action: Action,
}
gonet::message!(Move = 402, serde);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Point {
    pub(crate) x: i32,
    pub(crate) y: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Dir {
    North,
    South,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "case", content = "value")]
pub(crate) enum Action {
    Walk { speed: u32 },
    Say(String),
}

fn profiles() -> Vec<Profile> {
    vec![
        Profile {
            name: "ada".into(),
            tags: vec!["admin".into(), "ops".into()],
            home: Some(Address {
                city: "Zürich <&>".into(),
                zip: 8001,
            }),
            level: Level::Expert as i32,
            contact: Some(Contact::Email("ada@example.org".into())),
        },
        Profile {
            name: String::new(),
            tags: vec![],
            home: None,
            level: Level::Novice as i32,
            contact: Some(Contact::Phone(41_000_000)),
        },
        Profile {
            name: "x".into(),
            tags: vec!["only".into()],
            home: Some(Address::default()),
            level: 1,
            contact: None,
        },
    ]
}

fn moves() -> Vec<Move> {
    vec![
        Move {
            player: "p1".into(),
            path: vec![Point { x: 1, y: -2 }, Point { x: 3, y: 4 }],
            dir: Dir::North,
            action: Action::Walk { speed: 7 },
        },
        Move {
            player: "p2".into(),
            path: vec![Point { x: 0, y: 0 }],
            dir: Dir::South,
            action: Action::Say("hello".into()),
        },
    ]
}

/// The codecs hand-written types can use: every one but `protojson`, which needs the
/// descriptors of generated types (tested in tests/codegen).
fn serde_and_prost_codecs() -> impl Iterator<Item = &'static Codec> {
    Codec::ALL.iter().filter(|c| c.name() != "protojson")
}

fn round_trip<M: Message + PartialEq + std::fmt::Debug>(msg: &M, codec: Codec) -> M {
    let mut buf = bytes::BytesMut::new();
    msg.encode_body(codec, &mut buf)
        .unwrap_or_else(|e| panic!("{e}"));
    M::decode_body(codec, gonet::Body::new(&buf.freeze())).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn every_codec_round_trips_every_shape() {
    for &codec in serde_and_prost_codecs() {
        for p in profiles() {
            assert_eq!(round_trip(&p, codec), p, "{codec}");
        }
    }
    for codec in [Codec::Json, Codec::Xml, Codec::Binary] {
        for m in moves() {
            assert_eq!(round_trip(&m, codec), m, "{codec}");
        }
    }
}

#[test]
fn serde_only_type_on_protobuf_is_a_clear_error() {
    let mut buf = bytes::BytesMut::new();
    let err = moves()[0]
        .encode_body(Codec::Protobuf, &mut buf)
        .unwrap_err();
    assert!(matches!(err.kind, CodecErrorKind::Unsupported("protobuf")));
    assert_eq!(
        err.to_string(),
        "protobuf codec cannot encode Move: the type has no protobuf body format"
    );
}

#[test]
fn decode_errors_name_codec_and_message() {
    for &codec in Codec::ALL {
        let garbage = bytes::Bytes::from_static(b"\xff\xfe{<");
        let err = Profile::decode_body(codec, gonet::Body::new(&garbage))
            .expect_err("garbage must not decode");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("{codec} codec cannot decode test.Profile: ")),
            "{text}"
        );
    }
    let trailing = {
        let mut buf = bytes::BytesMut::new();
        moves()[0].encode_body(Codec::Binary, &mut buf).unwrap();
        buf.extend_from_slice(b"extra");
        buf.freeze()
    };
    let err = Move::decode_body(Codec::Binary, gonet::Body::new(&trailing)).unwrap_err();
    assert!(
        matches!(err.kind, CodecErrorKind::TrailingBytes(5)),
        "{err}"
    );
}

#[test]
fn codec_names_parse() {
    for &codec in Codec::ALL {
        assert_eq!(codec.name().parse::<Codec>().unwrap(), codec);
    }
    let err = "yaml".parse::<Codec>().unwrap_err().to_string();
    assert!(err.contains("unknown codec \"yaml\""), "{err}");
}

/// One process serves every codec on its own port with the same handlers.
#[tokio::test]
async fn codec_is_chosen_per_listener_and_client() {
    let router = Router::new()
        .route(|_: Session, p: Profile| async move { p })
        .route(|_: Session, m: Move| async move { m });
    let mut servers = Vec::new();
    for &codec in serde_and_prost_codecs() {
        let server = Builder::new()
            .codec(codec)
            .router(router.clone())
            .serve("tcp://127.0.0.1:0")
            .await
            .unwrap();
        servers.push((codec, server));
    }
    for (codec, server) in &servers {
        let client = Builder::new()
            .codec(*codec)
            .dial(&server.url())
            .await
            .unwrap();
        assert_eq!(client.codec(), *codec);
        for p in profiles() {
            let back: Profile = within("profile echo", client.call(&p)).await.unwrap();
            assert_eq!(back, p, "{codec}");
        }
        if *codec != Codec::Protobuf {
            for m in moves() {
                let back: Move = within("move echo", client.call(&m)).await.unwrap();
                assert_eq!(back, m, "{codec}");
            }
        }
        client.close("done");
    }
    for (_, server) in servers {
        server.shutdown().await;
    }
}

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, Default)]
#[serde(default)]
struct Line {
    text: String,
}
gonet::message!(Line = 77, serde);

/// Whether XML 1.0 allows `c` in a document (its `Char` production).
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// The line breaks an XML reader changes into a line feed.
fn changed(c: char) -> bool {
    matches!(c, '\r' | '\u{85}' | '\u{2028}')
}

/// Every character XML 1.0 forbids is refused, naming it; every other one is written
/// so that an independent parser (roxmltree) reads the same text back. A carriage
/// return is refused too (readers turn it into a line feed), and so are U+0085 and
/// U+2028 (quick-xml's reader does).
#[test]
fn xml_refuses_what_xml_forbids_and_an_independent_parser_reads_the_rest() {
    let chars = (0..0x3000u32)
        .chain([
            0xD7FF, 0xE000, 0xFFFD, 0xFFFE, 0xFFFF, 0x10000, 0x1F600, 0x10FFFF,
        ])
        .filter_map(char::from_u32);
    for c in chars {
        let line = Line {
            text: format!("a{c}b<&>'\""),
        };
        let mut buf = bytes::BytesMut::from(&b"kept"[..]);
        match line.encode_body(Codec::Xml, &mut buf) {
            Ok(()) => {
                assert!(xml_char(c) && !changed(c), "U+{:04X} written", c as u32);
                let text = std::str::from_utf8(&buf[4..]).expect("utf-8");
                let doc = roxmltree::Document::parse(text)
                    .unwrap_or_else(|e| panic!("U+{:04X}: {e} in {text:?}", c as u32));
                let read = doc
                    .root_element()
                    .children()
                    .find(|n| n.has_tag_name("text"))
                    .and_then(|n| n.text())
                    .unwrap_or_default();
                assert_eq!(read, line.text, "U+{:04X}", c as u32);
                let back = round_trip(&line, Codec::Xml);
                assert_eq!(back, line, "U+{:04X}", c as u32);
            }
            Err(err) => {
                assert!(
                    !xml_char(c) || changed(c),
                    "U+{:04X} refused: {err}",
                    c as u32
                );
                assert_eq!(&buf[..], b"kept", "nothing is left of a refused body");
                let text = err.to_string();
                assert!(text.starts_with("xml codec cannot encode Line: "), "{text}");
                if !changed(c) {
                    assert!(text.contains(&format!("U+{:04X}", c as u32)), "{text}");
                }
            }
        }
    }
}
