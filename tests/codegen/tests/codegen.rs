//! Generated services, clients and messages over real sockets, for every codec.

mod cluster;
mod json;
mod protojson;

use std::time::Duration;

use bytes::BytesMut;
use gonet::{Builder, CallError, Code, Codec, Message, Router, Session, Status};
use gonet_codegen_tests::chat::{
    Fail, Note, PushService, PushServiceClient, PushServiceServer, Pushed, Say, SayAck, SayService,
    SayServiceClient, SayServiceServer,
};
use gonet_codegen_tests::test::common::Point;
use gonet_codegen_tests::test::shapes::{
    Color, ShapeService, ShapeServiceClient, ShapeServiceServer, Shapes, shapes,
};
use prost_types::{
    Any, Api, Duration as PbDuration, ListValue, Method, SourceContext, Struct, Timestamp, Value,
    value,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// The chat service under test: echoes, records notes, pushes before answering.
struct Chat {
    notes: mpsc::UnboundedSender<String>,
}

impl SayService for Chat {
    async fn say(&self, session: &Session, req: Say) -> Result<SayAck, Status> {
        if req.content.starts_with("push:") {
            let push = PushServiceClient::new(session.clone());
            push.pushed(Pushed {
                text: req.content.clone(),
            })
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        }
        Ok(SayAck {
            content: req.content,
            seq: 7,
        })
    }

    async fn note(&self, _session: &Session, req: Note) -> Result<(), Status> {
        self.notes
            .send(req.text)
            .map_err(|_| Status::unavailable("test over"))
    }

    async fn fail(&self, _session: &Session, req: Fail) -> Result<SayAck, Status> {
        Err(Status::failed_precondition(req.why))
    }
}

/// A client serving the server's pushes.
struct Pushes {
    seen: mpsc::UnboundedSender<String>,
}

impl PushService for Pushes {
    async fn pushed(&self, _session: &Session, req: Pushed) -> Result<(), Status> {
        self.seen
            .send(req.text)
            .map_err(|_| Status::unavailable("test over"))
    }
}

struct Shaper;

impl ShapeService for Shaper {
    async fn echo(&self, _session: &Session, req: Shapes) -> Result<Shapes, Status> {
        Ok(req)
    }

    async fn r#where(&self, _session: &Session, req: Point) -> Result<Point, Status> {
        Ok(Point {
            x: req.x + 1,
            y: req.y + 1,
        })
    }
}

async fn chat_server(codec: Codec) -> (gonet::Server, mpsc::UnboundedReceiver<String>) {
    let (notes, rx) = mpsc::unbounded_channel();
    let router = Router::new()
        .service(SayServiceServer::new(Chat { notes }))
        .service(ShapeServiceServer::new(Shaper));
    let server = Builder::new()
        .codec(codec)
        .router(router)
        .serve("tcp://127.0.0.1:0")
        .await
        .expect("serve");
    (server, rx)
}

fn full_shapes() -> Shapes {
    Shapes {
        text: "hello <world> & \"friends\"".into(),
        big: -9_007_199_254_740_993,
        ubig: u64::MAX,
        ratio: 0.125,
        flag: true,
        blob: vec![0, 1, 2, 255],
        color: Color::Blue as i32,
        maybe_text: Some(String::new()),
        maybe_number: Some(0),
        inner: Some(shapes::Inner {
            label: "in".into(),
            values: vec![3, 1, 2],
        }),
        inners: vec![
            shapes::Inner {
                label: "a".into(),
                values: vec![],
            },
            shapes::Inner {
                label: "b".into(),
                values: vec![9],
            },
        ],
        tags: vec!["x".into(), "y".into()],
        counts: [("one".to_owned(), 1), ("two".to_owned(), 2)].into(),
        names: [(1, "one".to_owned()), (-5, "minus five".to_owned())].into(),
        choice: Some(shapes::Choice::Nested(shapes::Inner {
            label: "deep".into(),
            values: vec![1],
        })),
        point: Some(Point { x: -1, y: 2 }),
        at: Some(Timestamp {
            seconds: 1_700_000_000,
            nanos: 5,
        }),
        took: Some(PbDuration {
            seconds: 3,
            nanos: 0,
        }),
        wrapped: Some("w".into()),
        colors: vec![Color::Red as i32, Color::Unspecified as i32],
        doc: Some(Struct {
            fields: [
                ("null".to_owned(), kind(value::Kind::NullValue(0))),
                ("n".to_owned(), kind(value::Kind::NumberValue(1.5))),
                ("s".to_owned(), kind(value::Kind::StringValue("x y".into()))),
                ("b".to_owned(), kind(value::Kind::BoolValue(false))),
                (
                    "list".to_owned(),
                    kind(value::Kind::ListValue(ListValue {
                        values: vec![kind(value::Kind::NumberValue(2.0)), Value::default()],
                    })),
                ),
                (
                    "nested struct".to_owned(),
                    kind(value::Kind::StructValue(Struct::default())),
                ),
            ]
            .into(),
        }),
        any: Some(Any {
            type_url: "type.googleapis.com/test.common.Point".into(),
            value: vec![8, 1],
        }),
        by_name: [(
            "first one".to_owned(),
            shapes::Inner {
                label: " spaced \n text ".into(),
                values: vec![0],
            },
        )]
        .into(),
        api: Some(Api {
            name: "svc".into(),
            methods: vec![Method {
                name: "m".into(),
                ..Method::default()
            }],
            source_context: Some(SourceContext {
                file_name: "f.proto".into(),
            }),
            ..Api::default()
        }),
        blobs: [("k".to_owned(), vec![0x00, 0xFF])].into_iter().collect(),
    }
}

fn kind(kind: value::Kind) -> Value {
    Value { kind: Some(kind) }
}

/// Every shape, with the variants that trip codecs up: unset optionals, empty lists,
/// each oneof case.
fn shape_cases() -> Vec<Shapes> {
    let mut cases = vec![Shapes::default(), full_shapes()];
    for choice in [
        None,
        Some(shapes::Choice::Word(String::new())),
        Some(shapes::Choice::Word("w".into())),
        Some(shapes::Choice::Number(0)),
        Some(shapes::Choice::Number(-3)),
    ] {
        cases.push(Shapes {
            choice,
            maybe_text: None,
            ..full_shapes()
        });
    }
    cases.push(Shapes {
        text: "  leading and trailing spaces, a\nnewline, a tab\t ".into(),
        tags: vec![String::new(), " ".into()],
        ..Shapes::default()
    });
    cases.push(Shapes {
        inner: Some(shapes::Inner::default()),
        maybe_number: Some(-1),
        ..Shapes::default()
    });
    cases
}

fn round_trip<M: Message + PartialEq + std::fmt::Debug>(codec: Codec, msg: &M) -> M {
    let mut buf = BytesMut::new();
    msg.encode_body(codec, &mut buf)
        .unwrap_or_else(|e| panic!("{codec} encode {msg:?}: {e}"));
    let text = String::from_utf8_lossy(&buf).into_owned();
    M::decode_body(codec, gonet::Body::new(&buf.freeze()))
        .unwrap_or_else(|e| panic!("{codec} decode of {text}: {e}"))
}

/// What `case` reads back as in `codec`: the proto3 JSON mapping has no form for a
/// `Value` without a kind, and writes it as `null`, a `Value` holding `NullValue`.
fn read_back(codec: Codec, mut case: Shapes) -> Shapes {
    fn fill(value: &mut Value) {
        match &mut value.kind {
            None => value.kind = Some(value::Kind::NullValue(0)),
            Some(value::Kind::ListValue(list)) => list.values.iter_mut().for_each(fill),
            Some(value::Kind::StructValue(s)) => s.fields.values_mut().for_each(fill),
            Some(_) => {}
        }
    }
    if codec.name() == "protojson"
        && let Some(doc) = &mut case.doc
    {
        doc.fields.values_mut().for_each(fill);
    }
    case
}

#[test]
fn every_shape_round_trips_in_every_codec() {
    for codec in Codec::ALL.iter().copied() {
        for case in shape_cases() {
            assert_eq!(round_trip(codec, &case), read_back(codec, case), "{codec}");
        }
    }
}

#[test]
fn ids_and_names_come_from_the_schema() {
    assert_eq!(Say::ID, 101);
    assert_eq!(Say::NAME, "chat.Say");
    assert_eq!(Point::NAME, "test.common.Point");
    assert_eq!(Shapes::ID, 2001);
    assert_eq!(SayServiceServer::<Chat>::IDS, &[101, 103, 105]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_client_calls_generated_server_in_every_codec() {
    for codec in Codec::ALL.iter().copied() {
        let (server, _notes) = chat_server(codec).await;
        let session = Builder::new()
            .codec(codec)
            .dial(&server.url())
            .await
            .expect("dial");
        let client = SayServiceClient::new(session.clone()).timeout(Duration::from_secs(30));
        let ack = client
            .say(Say {
                content: format!("hi over {codec}"),
            })
            .await
            .unwrap_or_else(|e| panic!("{codec}: {e}"));
        assert_eq!(ack.content, format!("hi over {codec}"));
        assert_eq!(ack.seq, 7);

        let err = client
            .fail(Fail {
                why: "no room".into(),
            })
            .await
            .expect_err("fail rpc fails");
        match err {
            CallError::Status { status, .. } => {
                assert_eq!(status.code(), Code::FailedPrecondition);
                assert_eq!(status.message(), "no room");
            }
            other => panic!("{codec}: unexpected {other}"),
        }

        let shapes = ShapeServiceClient::new(session.clone());
        for case in shape_cases() {
            assert_eq!(
                shapes.echo(case.clone()).await.expect("echo"),
                read_back(codec, case),
                "{codec}"
            );
        }
        let moved = shapes.r#where(Point { x: 1, y: 2 }).await.expect("where");
        assert_eq!(moved, Point { x: 2, y: 3 });

        session.close("done");
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_rpc_reaches_the_handler_without_a_reply() {
    let (server, mut notes) = chat_server(Codec::Json).await;
    let session = Builder::new()
        .codec(Codec::Json)
        .dial(&server.url())
        .await
        .expect("dial");
    let client = SayServiceClient::new(session.clone());
    client
        .note(Note {
            text: "remember".into(),
        })
        .await
        .expect("send");
    assert_eq!(notes.recv().await.as_deref(), Some("remember"));
    // A call after the note still gets its own reply: nothing else was sent back.
    let ack = client
        .say(Say {
            content: "after".into(),
        })
        .await
        .expect("say");
    assert_eq!(ack.content, "after");
    assert_eq!(session.stats().received, 0, "the one-way rpc sent no reply");
    session.close("done");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_push_reaches_a_generated_trait_on_the_client() {
    let (server, _notes) = chat_server(Codec::Protobuf).await;
    let (seen, mut pushes) = mpsc::unbounded_channel();
    let session = Builder::new()
        .codec(Codec::Protobuf)
        .router(Router::new().service(PushServiceServer::new(Pushes { seen })))
        .dial(&server.url())
        .await
        .expect("dial");
    let ack = SayServiceClient::new(session.clone())
        .say(Say {
            content: "push:ping".into(),
        })
        .await
        .expect("say");
    assert_eq!(ack.content, "push:ping");
    assert_eq!(pushes.recv().await.as_deref(), Some("push:ping"));
    session.close("done");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_frame_from_a_raw_socket_gets_a_plain_reply() {
    let (server, _notes) = chat_server(Codec::Protobuf).await;
    let mut stream = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .expect("connect");

    let mut body = BytesMut::new();
    Say {
        content: "plain".into(),
    }
    .encode_body(Codec::Protobuf, &mut body)
    .expect("encode");
    let mut frame = Vec::new();
    frame.extend_from_slice(&(4 + body.len() as u16).to_le_bytes());
    frame.extend_from_slice(&101u32.to_le_bytes());
    frame.extend_from_slice(&body);
    stream.write_all(&frame).await.expect("write");

    let mut expected_body = BytesMut::new();
    SayAck {
        content: "plain".into(),
        seq: 7,
    }
    .encode_body(Codec::Protobuf, &mut expected_body)
    .expect("encode");
    let mut header = [0u8; 6];
    stream.read_exact(&mut header).await.expect("read header");
    let mut expected_header = Vec::new();
    expected_header.extend_from_slice(&(4 + expected_body.len() as u16).to_le_bytes());
    expected_header.extend_from_slice(&102u32.to_le_bytes());
    assert_eq!(header.as_slice(), expected_header.as_slice());
    let mut reply = vec![0u8; expected_body.len()];
    stream.read_exact(&mut reply).await.expect("read body");
    assert_eq!(reply, expected_body.to_vec());
    server.shutdown().await;
}

/// The documented JSON and XML forms: names as in the `.proto` file, zero values,
/// absent optionals and empty lists left out, bytes as base64,
/// a oneof names its case, an XML map is a list of key/value entries.
#[test]
fn json_and_xml_forms_are_stable() {
    let msg = Shapes {
        maybe_text: Some("t".into()),
        counts: [("a b".to_owned(), 1)].into(),
        choice: Some(shapes::Choice::Number(4)),
        tags: vec!["x".into()],
        blob: vec![0xfb],
        ..Shapes::default()
    };
    let text = |codec| {
        let mut buf = BytesMut::new();
        msg.encode_body(codec, &mut buf).expect("encode");
        String::from_utf8(buf.to_vec()).expect("utf-8")
    };
    assert_eq!(
        text(Codec::Json),
        r#"{"blob":"+w==","maybe_text":"t","tags":["x"],"counts":{"a b":1},"choice":{"case":"Number","value":4}}"#
    );
    assert_eq!(
        text(Codec::Xml),
        "<Shapes><blob>+w==</blob><maybe_text>t</maybe_text><tags>x</tags><counts><key>a b</key><value>1</value></counts>\
         <choice><case>Number</case><value>4</value></choice></Shapes>"
    );
}

/// Values a codec cannot carry fail to encode, naming the message, instead of arriving
/// changed.
#[test]
fn values_a_codec_would_change_are_refused() {
    let nan = Shapes {
        ratio: f64::NAN,
        ..Shapes::default()
    };
    let mut buf = BytesMut::new();
    let err = nan
        .encode_body(Codec::Json, &mut buf)
        .expect_err("NaN has no JSON form");
    assert!(buf.is_empty());
    assert_eq!(
        err.to_string(),
        "json codec cannot encode test.shapes.Shapes: a NaN or infinite number has no JSON form"
    );
    let infinite = Shapes {
        doc: Some(Struct {
            fields: [(
                "x".to_owned(),
                kind(value::Kind::NumberValue(f64::INFINITY)),
            )]
            .into(),
        }),
        ..Shapes::default()
    };
    assert!(infinite.encode_body(Codec::Json, &mut buf).is_err());
    // NaN is fine in the other codecs.
    for codec in [Codec::Protobuf, Codec::Xml, Codec::Binary] {
        assert!(round_trip(codec, &nan).ratio.is_nan(), "{codec}");
    }

    let crlf = Shapes {
        text: "line\r\n".into(),
        ..Shapes::default()
    };
    let err = crlf
        .encode_body(Codec::Xml, &mut buf)
        .expect_err("\\r has no XML form");
    assert!(err.to_string().contains("carriage return"), "{err}");
    for codec in [Codec::Protobuf, Codec::Json, Codec::Binary] {
        assert_eq!(round_trip(codec, &crlf), crlf, "{codec}");
    }
}
