//! The `protojson` codec against an independent implementation of the proto3 JSON
//! mapping: Python's `protobuf` package (`json_format`), on the same schema.
//!
//! Both directions, for every shape: JSON we write, parsed strictly by Python, must
//! carry the same message (checked through Python's binary encoding, decoded by prost);
//! JSON Python writes must decode to the same message here. The JSON texts themselves
//! must be equal as JSON values.

use std::io::Write;
use std::process::{Command, Stdio};

use bytes::{Bytes, BytesMut};
use gonet::{Body, Codec, Message};
use gonet_codegen_tests::interop::Rich;
use gonet_codegen_tests::test::common::Point;
use gonet_codegen_tests::test::shapes::{GONET_DESCRIPTORS, Known, Shapes};
use prost_types::{
    Any, Duration as PbDuration, FieldMask, ListValue, NullValue, Struct, Timestamp, Value, value,
};
use serde_json::json;

use super::{read_back, shape_cases};

/// The Python interpreter: `$GONET_PYTHON`, else `python3`.
fn python() -> String {
    std::env::var("GONET_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// Sends `requests` to tests/protojson.py and returns its answers.
fn ask_python(requests: &serde_json::Value) -> Vec<serde_json::Value> {
    let dir = tempfile::tempdir().expect("temp dir");
    let set = dir.path().join("descriptors.bin");
    std::fs::write(&set, GONET_DESCRIPTORS.bytes()).expect("write descriptors");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/protojson.py");
    let mut child = Command::new(python())
        .arg(script)
        .arg(&set)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e}. The protojson tests need Python 3 with the protobuf \
                 package: run scripts/test, or `pip install protobuf`",
                python()
            )
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(requests.to_string().as_bytes())
        .expect("write requests");
    let out = child.wait_with_output().expect("python ran");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "tests/protojson.py failed ({}). It needs Python 3 with the protobuf package: run \
         scripts/test, or `pip install protobuf`.\n{stderr}",
        out.status
    );
    serde_json::from_slice(&out.stdout).expect("answers are JSON")
}

fn encode<M: Message>(codec: Codec, msg: &M) -> Vec<u8> {
    let mut buf = BytesMut::new();
    msg.encode_body(codec, &mut buf)
        .unwrap_or_else(|e| panic!("{e}"));
    buf.to_vec()
}

fn decode<M: Message>(codec: Codec, body: &[u8]) -> Result<M, gonet::CodecError> {
    M::decode_body(codec, Body::new(&Bytes::copy_from_slice(body)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Checks `cases` both ways; `expected` is what a case reads back as.
fn cross_check<M>(cases: &[M], expected: impl Fn(&M) -> M)
where
    M: Message + PartialEq + std::fmt::Debug,
{
    let ours: Vec<String> = cases
        .iter()
        .map(|c| String::from_utf8(encode(Codec::ProtoJson, c)).expect("utf-8"))
        .collect();
    let mut requests = Vec::new();
    for (case, json) in cases.iter().zip(&ours) {
        requests.push(json!({ "type": M::NAME, "json": json }));
        requests.push(json!({ "type": M::NAME, "binary": hex(&encode(Codec::Protobuf, case)) }));
    }
    let answers = ask_python(&serde_json::Value::Array(requests));
    assert_eq!(answers.len(), cases.len() * 2);
    for (i, case) in cases.iter().enumerate() {
        let want = expected(case);
        // Our JSON, as Python read it.
        let binary = unhex(answers[2 * i]["binary"].as_str().expect("binary"));
        let theirs: M = decode(Codec::Protobuf, &binary).expect("python's binary");
        assert_eq!(theirs, want, "Python read our JSON {}", ours[i]);
        // Python's JSON, as we read it.
        let text = answers[2 * i + 1]["json"].as_str().expect("json");
        let back: M = decode(Codec::ProtoJson, text.as_bytes())
            .unwrap_or_else(|e| panic!("reading Python's JSON {text}: {e}"));
        assert_eq!(back, want, "we read Python's JSON {text}");
        // The same text, up to key order and spacing.
        let a: serde_json::Value = serde_json::from_str(&ours[i]).unwrap();
        let b: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(a, b, "ours: {}\npython's: {text}", ours[i]);
    }
}

#[test]
fn every_shape_crosses_with_python_protobuf_both_ways() {
    let mut cases = shape_cases();
    cases.push(Shapes {
        big: i64::MIN,
        ubig: u64::MAX,
        ratio: -0.0,
        blob: (0..=255).collect(),
        names: [(i32::MIN, "min".to_owned()), (i32::MAX, "max".to_owned())].into(),
        color: 7, // a number the enum does not name
        ..Shapes::default()
    });
    cases.push(Shapes {
        big: i64::MAX,
        ratio: 1e300,
        ..Shapes::default()
    });
    cross_check(&cases, |c| read_back(Codec::ProtoJson, c.clone()));
}

fn kind(kind: value::Kind) -> Value {
    Value { kind: Some(kind) }
}

fn known_cases() -> Vec<Known> {
    let full = Known {
        at: Some(Timestamp {
            seconds: 1_700_000_000,
            nanos: 5_000,
        }),
        took: Some(PbDuration {
            seconds: -1,
            nanos: -500_000_000,
        }),
        flag: Some(false),
        int32: Some(i32::MIN),
        int64: Some(i64::MIN),
        uint32: Some(u32::MAX),
        uint64: Some(u64::MAX),
        float: Some(0.5),
        double: Some(-2.25),
        text: Some(String::new()),
        data: Some(vec![0xfb, 0xff]),
        doc: Some(Struct {
            fields: [
                ("n".to_owned(), kind(value::Kind::NumberValue(1.5))),
                ("null".to_owned(), kind(value::Kind::NullValue(0))),
                (
                    "list".to_owned(),
                    kind(value::Kind::ListValue(ListValue {
                        values: vec![kind(value::Kind::BoolValue(true))],
                    })),
                ),
            ]
            .into(),
        }),
        value: Some(kind(value::Kind::StringValue("v".into()))),
        list: Some(ListValue {
            values: vec![
                kind(value::Kind::NumberValue(-3.0)),
                kind(value::Kind::StructValue(Struct::default())),
            ],
        }),
        mask: Some(FieldMask {
            paths: vec!["user_name".into(), "inner.label".into()],
        }),
        any: Some(Any {
            type_url: "type.googleapis.com/test.common.Point".into(),
            value: encode(Codec::Protobuf, &Point { x: -1, y: 2 }),
        }),
        empty: Some(()),
        nothing: NullValue::NullValue as i32,
        times: vec![
            Timestamp {
                seconds: 0,
                nanos: 0,
            },
            Timestamp {
                seconds: 253_402_300_799,
                nanos: 999_999_999,
            },
        ],
        spans: [(
            "long".to_owned(),
            PbDuration {
                seconds: 315_576_000_000,
                nanos: 0,
            },
        )]
        .into(),
    };
    vec![
        Known::default(),
        full,
        Known {
            value: Some(kind(value::Kind::NullValue(0))),
            ..Known::default()
        },
    ]
}

#[test]
fn every_well_known_type_crosses_with_python_protobuf_both_ways() {
    cross_check(&known_cases(), Known::clone);
}

#[test]
fn well_known_types_have_their_special_forms() {
    let text = String::from_utf8(encode(Codec::ProtoJson, &known_cases()[1])).unwrap();
    for part in [
        r#""at":"2023-11-14T22:13:20.000005Z""#,
        r#""took":"-1.500s""#,
        r#""int64":"-9223372036854775808""#,
        r#""uint32":4294967295"#,
        r#""text":"""#,
        r#""data":"+/8=""#,
        r#""mask":"userName,inner.label""#,
        r#""any":{"@type":"type.googleapis.com/test.common.Point","x":-1,"y":2}"#,
        r#""empty":{}"#,
        r#""value":"v""#,
    ] {
        assert!(text.contains(part), "{part} in {text}");
    }
}

/// A key that matches no field is an error naming it; the switch skips it instead.
#[test]
fn unknown_keys_are_errors_unless_switched_off() {
    let body = br#"{"userNmae":"ada","userId":"u"}"#;
    let err = decode::<Rich>(Codec::ProtoJson, body).expect_err("unknown key");
    let text = err.to_string();
    assert!(
        text.starts_with("protojson codec cannot decode interop.Rich: "),
        "{text}"
    );
    assert!(text.contains("userNmae"), "{text}");
    // Both spellings of a name and enum names or numbers are read.
    let rich: Rich = decode(
        Codec::ProtoJson,
        br#"{"user_name":"a","userId":"u","color":"BLUE"}"#,
    )
    .unwrap();
    assert_eq!((rich.user_name.as_str(), rich.color), ("a", 2));
    let rich: Rich = decode(Codec::ProtoJson, br#"{"userName":"b","color":1}"#).unwrap();
    assert_eq!((rich.user_name.as_str(), rich.color), ("b", 1));

    gonet::protojson_ignore_unknown_fields(true);
    let skipped = decode::<Rich>(Codec::ProtoJson, body);
    gonet::protojson_ignore_unknown_fields(false);
    assert_eq!(skipped.expect("skipped").user_id, "u");
}
