//! Middleware: layers see every message of their routes before and after the handler,
//! reject in its place, wait on async checks, and leave other routes alone.

use std::sync::{Arc, Mutex};

use gonet::{Before, CallError, Code, Layer, Outcome, Request, Router, Session, Status};

use crate::support::*;

/// Records what it saw, as "name:before" and "name:after:outcome" lines.
#[derive(Clone, Default)]
struct Recorder {
    tag: &'static str,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Layer for Recorder {
    fn before(&self, req: &Request) -> Before {
        self.seen.lock().unwrap().push(format!(
            "{}:before:{}:{}",
            self.tag,
            req.name(),
            req.is_call()
        ));
        Before::Continue
    }

    fn after(&self, req: &Request, outcome: &Outcome<'_>) {
        let outcome = match outcome {
            Outcome::Replied => "replied".to_owned(),
            Outcome::Failed(status) => format!("failed {:?}", status.code()),
            Outcome::Rejected(status) => format!("rejected {:?}", status.code()),
            Outcome::Undecodable => "undecodable".to_owned(),
            Outcome::Panicked => "panicked".to_owned(),
            _ => "other".to_owned(),
        };
        self.seen
            .lock()
            .unwrap()
            .push(format!("{}:after:{}:{outcome}", self.tag, req.name()));
    }
}

/// Lets through only sessions bound to a user.
struct NeedsUser;

impl Layer for NeedsUser {
    fn before(&self, req: &Request) -> Before {
        match req.session().uid() {
            Some(_) => Before::Continue,
            None => Before::Reject(Status::unauthenticated("log in first")),
        }
    }
}

/// An async check: waits on a channel for the verdict of each message.
struct AsyncGate(Arc<tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<bool>>>);

impl Layer for AsyncGate {
    fn before(&self, _: &Request) -> Before {
        let verdicts = self.0.clone();
        Before::wait(async move {
            match verdicts.lock().await.recv().await {
                Some(true) => Ok(()),
                _ => Err(Status::permission_denied("the gate said no")),
            }
        })
    }
}

fn echo_router() -> Router {
    Router::new()
        .route(|_: Session, say: Say| async move {
            if say.content == "fail" {
                return Err(Status::not_found("nothing"));
            }
            if say.content == "panic" {
                panic!("asked to");
            }
            Ok(SayAck {
                content: say.content,
            })
        })
        .route(|session: Session, notice: Notice| async move {
            session.bind(notice.text);
        })
}

fn say(content: &str) -> Say {
    Say {
        content: content.into(),
    }
}

#[tokio::test]
async fn layers_see_every_outcome_in_order() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let outer = Recorder {
        tag: "outer",
        seen: seen.clone(),
    };
    let inner = Recorder {
        tag: "inner",
        seen: seen.clone(),
    };
    let router = echo_router()
        .layer(inner)
        .layer(outer)
        .fallback(|_: Session, _: gonet::Packet| async {});
    let server = gonet::Builder::new()
        .codec(gonet::Codec::Json)
        .panic_policy(gonet::PanicPolicy::Continue)
        .router(router)
        .serve("tcp://127.0.0.1:0")
        .await
        .unwrap();
    let client = json_client(&server).await;

    let ack: SayAck = client.call(&say("hi")).await.unwrap();
    assert_eq!(ack.content, "hi");
    let err = client.call::<_, SayAck>(&say("fail")).await.unwrap_err();
    assert_eq!(err.status().map(|s| s.code()), Some(Code::NotFound));
    let err = client.call::<_, SayAck>(&say("panic")).await.unwrap_err();
    assert_eq!(err.status().map(|s| s.code()), Some(Code::Internal));
    // A body that is not a `Say`.
    let err = client
        .call_raw(<Say as gonet::Message>::ID, b"{", PATIENCE)
        .await
        .unwrap_err();
    assert!(
        matches!(err, CallError::Status { ref status, .. } if status.code() == Code::InvalidArgument)
    );

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let expect = |content: &str| {
        vec![
            "outer:before:chat.Say:true".to_owned(),
            "inner:before:chat.Say:true".to_owned(),
            format!("inner:after:chat.Say:{content}"),
            format!("outer:after:chat.Say:{content}"),
        ]
    };
    let mut want = Vec::new();
    for outcome in ["replied", "failed NotFound", "panicked", "undecodable"] {
        want.extend(expect(outcome));
    }
    assert_eq!(seen, want);
    server.shutdown().await;
}

#[tokio::test]
async fn a_layer_rejects_before_the_handler_runs() {
    let router = echo_router().layer(NeedsUser);
    let server = json_server(router).await;
    let client = json_client(&server).await;
    let err = client.call::<_, SayAck>(&say("hi")).await.unwrap_err();
    assert_eq!(err.status().map(|s| s.code()), Some(Code::Unauthenticated));
    server.shutdown().await;
}

#[tokio::test]
async fn a_layer_on_one_message_leaves_the_others_alone() {
    let router = echo_router().layer_on::<Say>(NeedsUser);
    let server = json_server(router).await;
    let client = json_client(&server).await;
    let err = client.call::<_, SayAck>(&say("hi")).await.unwrap_err();
    assert_eq!(err.status().map(|s| s.code()), Some(Code::Unauthenticated));
    // Logging in goes through (its route has no layer); then Say does too.
    client.send(&Notice { text: "ada".into() }).unwrap();
    let ack: SayAck = within("the call once logged in", async {
        loop {
            match client.call::<_, SayAck>(&say("hi")).await {
                Ok(ack) => break ack,
                Err(_) => tokio::task::yield_now().await,
            }
        }
    })
    .await;
    assert_eq!(ack.content, "hi");
    server.shutdown().await;
}

#[tokio::test]
async fn an_async_layer_holds_the_message_and_keeps_the_order() {
    let (verdicts, rx) = tokio::sync::mpsc::unbounded_channel();
    let gate = AsyncGate(Arc::new(tokio::sync::Mutex::new(rx)));
    let server = json_server(echo_router().layer(gate)).await;
    let client = json_client(&server).await;
    let first = tokio::spawn({
        let client = client.clone();
        async move { client.call::<_, SayAck>(&say("first")).await }
    });
    let second = tokio::spawn({
        let client = client.clone();
        async move { client.call::<_, SayAck>(&say("second")).await }
    });
    verdicts.send(true).unwrap();
    verdicts.send(false).unwrap();
    let first = within("the first call", first).await.unwrap();
    let second = within("the second call", second).await.unwrap();
    // The first message sent is the first checked (per-session order), whichever
    // task sent first.
    let (passed, denied) = match (&first, &second) {
        (Ok(_), Err(_)) => (first.unwrap(), second.unwrap_err()),
        (Err(_), Ok(_)) => (second.unwrap(), first.unwrap_err()),
        other => panic!("{other:?}"),
    };
    assert!(passed.content == "first" || passed.content == "second");
    assert_eq!(
        denied.status().map(|s| s.code()),
        Some(Code::PermissionDenied)
    );
    server.shutdown().await;
}

/// Records the ids of the frames leaving, and rewrites every `Notice` push.
#[derive(Clone, Default)]
struct Censor {
    ids: Arc<Mutex<Vec<u32>>>,
}

impl gonet::Outbound for Censor {
    fn frame(&self, _: &Session, id: u32, frame: bytes::Bytes) -> bytes::Bytes {
        self.ids.lock().unwrap().push(id);
        if id == <Notice as gonet::Message>::ID {
            return gonet::frame::encode_frame(id, br#"{"text":"[censored]"}"#).unwrap();
        }
        frame
    }
}

#[tokio::test]
async fn outbound_layers_see_and_may_rewrite_every_frame_leaving() {
    let censor = Censor::default();
    let router = Router::new().route(|session: Session, say: Say| async move {
        let _ = session.send(&Notice {
            text: format!("you said {}", say.content),
        });
        SayAck {
            content: say.content,
        }
    });
    let server = gonet::Builder::new()
        .codec(gonet::Codec::Json)
        .router(router)
        .outbound(censor.clone())
        .serve("tcp://127.0.0.1:0")
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let client = gonet::Builder::new()
        .codec(gonet::Codec::Json)
        .router(Router::new().route(move |_: Session, notice: Notice| {
            let _ = tx.send(notice.text);
            async {}
        }))
        .dial(&server.url())
        .await
        .unwrap();
    let ack: SayAck = client.call(&say("hi")).await.unwrap();
    assert_eq!(ack.content, "hi", "replies pass unchanged");
    assert_eq!(within("the push", rx.recv()).await.unwrap(), "[censored]");
    server
        .pool()
        .broadcast(&Notice { text: "all".into() })
        .unwrap();
    assert_eq!(
        within("the broadcast", rx.recv()).await.unwrap(),
        "[censored]"
    );
    let ids = censor.ids.lock().unwrap().clone();
    assert_eq!(
        ids,
        [301, 0xFFFF_FF02, 301],
        "push, reply (in its envelope), broadcast"
    );
    server.shutdown().await;
}

/// Reads the trace id of each message it sees.
#[derive(Clone, Default)]
struct Traces(Arc<Mutex<Vec<Option<String>>>>);

impl Layer for Traces {
    fn before(&self, req: &Request) -> Before {
        let trace = req.metadata().and_then(|m| m.trace_id().map(str::to_owned));
        self.0.lock().unwrap().push(trace);
        Before::Continue
    }
}

#[tokio::test]
async fn metadata_reaches_the_layers_and_the_handler_of_its_message_only() {
    let traces = Traces::default();
    let router = Router::new()
        .route(|_: Session, say: Say| async move {
            // Still current after the handler has waited.
            tokio::task::yield_now().await;
            let meta = gonet::Metadata::current();
            SayAck {
                content: format!(
                    "{}:{}",
                    say.content,
                    meta.as_deref().and_then(|m| m.get("locale")).unwrap_or("-")
                ),
            }
        })
        .layer(traces.clone());
    let server = json_server(router).await;
    let client = json_client(&server).await;
    let meta = gonet::Metadata::new()
        .with(gonet::TRACE_ID, "t-1")
        .with("locale", "fr");
    let with: SayAck = client.call_with(&say("a"), &meta).await.unwrap();
    let without: SayAck = client.call(&say("b")).await.unwrap();
    client.send_with(&say("c"), &meta).unwrap();
    let again: SayAck = client.call(&say("d")).await.unwrap();
    assert_eq!(
        (
            with.content.as_str(),
            without.content.as_str(),
            again.content.as_str()
        ),
        ("a:fr", "b:-", "d:-")
    );
    let seen = traces.0.lock().unwrap().clone();
    let t = |s: &str| Some(s.to_owned());
    assert_eq!(seen, [t("t-1"), None, t("t-1"), None]);
    server.shutdown().await;
}
