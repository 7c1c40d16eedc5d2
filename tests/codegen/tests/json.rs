//! The `json` codec against what Go writes: a frame captured from a Go gonet v3 client
//! (its JSON codec on a protoc-gen-go struct), keys in both spellings, and keys that
//! match no field.

use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use gonet::{Body, Builder, Codec, Message, Router, Session, Status};
use gonet_codegen_tests::interop::{Color, Inner, Rich, RichService, RichServiceServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The frame (u16 LE length, u32 LE id 201, body) a Go gonet v3 TCP client wrote for
/// `Rich`, captured on the wire.
const GO_FRAME_HEX: &str = "a000c90000007b22626967223a2d393030373139393235343734303939332c22636f6c6f72223a322c2274616773223a5b2261222c2262225d2c22696e6e6572223a7b2278223a372c226c6162656c223a22696e227d2c22757365725f6e616d65223a22616461222c22757365724964223a22752d31222c22626c6f62223a2241503851222c2268756765223a31383434363734343037333730393535313631357d";

fn go_frame() -> Vec<u8> {
    (0..GO_FRAME_HEX.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&GO_FRAME_HEX[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The value the Go client sent.
fn go_value() -> Rich {
    Rich {
        big: -9_007_199_254_740_993,
        color: Color::Blue as i32,
        tags: vec!["a".into(), "b".into()],
        inner: Some(Inner {
            x: 7,
            label: "in".into(),
        }),
        user_name: "ada".into(),
        zero: 0,
        user_id: "u-1".into(),
        blob: vec![0x00, 0xff, 0x10],
        huge: u64::MAX,
    }
}

fn decode(text: &str) -> Result<Rich, gonet::CodecError> {
    Rich::decode_body(
        Codec::Json,
        Body::new(&Bytes::copy_from_slice(text.as_bytes())),
    )
}

#[test]
fn the_go_body_decodes_to_the_values_sent_and_encodes_to_the_same_bytes() {
    let frame = go_frame();
    assert_eq!(
        u16::from_le_bytes([frame[0], frame[1]]) as usize,
        frame.len() - 2
    );
    assert_eq!(
        u32::from_le_bytes(frame[2..6].try_into().unwrap()),
        Rich::ID
    );
    let body = Bytes::copy_from_slice(&frame[6..]);
    let rich = Rich::decode_body(Codec::Json, Body::new(&body)).expect("decode Go's JSON");
    assert_eq!(rich, go_value());
    let mut again = BytesMut::new();
    rich.encode_body(Codec::Json, &mut again).expect("encode");
    assert_eq!(
        std::str::from_utf8(&again).unwrap(),
        std::str::from_utf8(&body).unwrap()
    );
}

struct Echo;

impl RichService for Echo {
    async fn echo(&self, _session: &Session, req: Rich) -> Result<Rich, Status> {
        Ok(req)
    }
}

/// The Go client's frame, written on a raw socket to a gonet-rs server speaking `json`,
/// comes back byte for byte from a handler that returns what it got.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_answers_the_go_frame_with_the_same_bytes() {
    let server = Builder::new()
        .codec(Codec::Json)
        .router(Router::new().service(RichServiceServer::new(Echo)))
        .serve("tcp://127.0.0.1:0")
        .await
        .expect("serve");
    let mut stream = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .expect("connect");
    let frame = go_frame();
    stream.write_all(&frame).await.expect("write");
    let mut reply = vec![0u8; frame.len()];
    stream.read_exact(&mut reply).await.expect("read the reply");
    assert_eq!(
        String::from_utf8_lossy(&reply[6..]),
        String::from_utf8_lossy(&frame[6..])
    );
    assert_eq!(reply, frame);
    server.shutdown().await;
}

#[test]
fn zero_values_may_be_written_or_left_out_and_both_spellings_read() {
    let written = decode(r#"{"big":0,"zero":0,"user_name":"","blob":"","color":0}"#).unwrap();
    assert_eq!(written, Rich::default());
    assert_eq!(decode("{}").unwrap(), Rich::default());
    // protojson's lowerCamel names, as JavaScript writes them.
    let camel = decode(r#"{"userName":"ada","userId":"u-1","blob":"AP8Q"}"#).unwrap();
    assert_eq!(camel.user_name, "ada");
    assert_eq!(camel.user_id, "u-1");
    assert_eq!(camel.blob, [0, 0xff, 0x10]);
    // Bytes as numbers (jsoniter accepts them; earlier gonet-rs wrote them).
    assert_eq!(
        decode(r#"{"blob":[0,255,16]}"#).unwrap().blob,
        [0, 0xff, 0x10]
    );
}

/// A writer of log lines into a shared buffer.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A misspelled key is skipped, as Go skips it, but reported with its path.
#[test]
fn a_misspelled_key_is_reported_not_dropped_unseen() {
    let lines = Lines::default();
    let sink = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    let rich = tracing::subscriber::with_default(subscriber, || {
        decode(r#"{"user_nmae":"ada","inner":{"x":1,"lable":"l"},"userId":"u"}"#)
    })
    .expect("unknown keys are skipped");
    assert_eq!(rich.user_name, "");
    assert_eq!(rich.user_id, "u");
    let log = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("JSON key matches no field"), "{log}");
    assert!(log.contains("key=\"user_nmae\""), "{log}");
    assert!(log.contains("key=\"inner.lable\""), "{log}");
    assert!(log.contains("name=\"interop.Rich\""), "{log}");
}

/// Well-known types are `prost_types`' own, with their conversions; the `json` codec
/// writes them as Go's `encoding/json` writes the protoc-gen-go structs.
#[test]
fn well_known_types_are_prost_types_written_as_go_writes_them() {
    use gonet_codegen_tests::test::shapes::{Known, Shapes};
    use std::time::{Duration, SystemTime};

    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_500);
    let took = Duration::from_millis(2_250);
    let shapes = Shapes {
        at: Some(prost_types::Timestamp::from(at)),
        took: Some(prost_types::Duration::try_from(took).expect("in range")),
        wrapped: Some("w".into()),
        ..Shapes::default()
    };
    let mut buf = BytesMut::new();
    shapes.encode_body(Codec::Json, &mut buf).expect("encode");
    assert_eq!(
        std::str::from_utf8(&buf).unwrap(),
        r#"{"at":{"seconds":1,"nanos":500000000},"took":{"seconds":2,"nanos":250000000},"wrapped":"w"}"#
    );
    let back = Shapes::decode_body(Codec::Json, Body::new(&buf.freeze())).expect("decode");
    assert_eq!(
        SystemTime::try_from(back.at.expect("at")).expect("time"),
        at
    );
    assert_eq!(
        Duration::try_from(back.took.expect("took")).expect("span"),
        took
    );

    let known = Known {
        empty: Some(()),
        data: Some(vec![1]),
        ..Known::default()
    };
    let mut buf = BytesMut::new();
    known.encode_body(Codec::Json, &mut buf).expect("encode");
    assert_eq!(
        std::str::from_utf8(&buf).unwrap(),
        r#"{"data":"AQ==","empty":{}}"#
    );
    let back = Known::decode_body(Codec::Json, Body::new(&buf.freeze())).expect("decode");
    assert_eq!(back, known);
}

/// A map's `bytes` values are base64 text too, in JSON and XML, and read back.
#[test]
fn bytes_in_a_map_are_base64_text() {
    use gonet_codegen_tests::test::shapes::Shapes;

    let shapes = Shapes {
        blobs: [
            ("a".to_owned(), vec![0x00, 0xFF, 0x10]),
            ("b".to_owned(), vec![]),
        ]
        .into_iter()
        .collect(),
        ..Shapes::default()
    };
    let mut buf = BytesMut::new();
    shapes.encode_body(Codec::Json, &mut buf).expect("encode");
    let text = std::str::from_utf8(&buf).unwrap();
    let value: serde_json::Value = serde_json::from_str(text).expect("JSON");
    assert_eq!(
        value,
        serde_json::json!({"blobs": {"a": "AP8Q", "b": ""}}),
        "{text}"
    );
    for codec in [Codec::Json, Codec::Xml, Codec::Binary, Codec::Protobuf] {
        let mut buf = BytesMut::new();
        shapes.encode_body(codec, &mut buf).expect("encode");
        let back = Shapes::decode_body(codec, Body::new(&buf.freeze())).expect("decode");
        assert_eq!(back.blobs, shapes.blobs, "{codec}");
    }
}
