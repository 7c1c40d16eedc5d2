//! A generated service implemented once, served by a backend node of a cluster: a
//! generated client at a gate cannot tell it from a local one.

use std::time::Duration;

use gonet::{Builder, Code, Router};
use gonet_cluster::Cluster;
use gonet_codegen_tests::chat::{
    Fail, Note, PushServiceServer, Say, SayAck, SayServiceClient, SayServiceServer,
};
use tokio::sync::mpsc;

use crate::{Chat, Pushes};

#[path = "../../../gonet-cluster/tests/cluster/nats.rs"]
#[allow(dead_code, reason = "the cluster tests restart it; these do not")]
mod nats;

fn node(id: &str, kind: &str) -> Cluster {
    Cluster::new("codegen")
        .node_id(id)
        .kind(kind)
        .heartbeat(Duration::from_millis(100))
        .dead_after(Duration::from_secs(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_service_served_by_a_backend_node() {
    let nats = nats::NatsServer::start().await;
    let (notes, mut noted) = mpsc::unbounded_channel();
    let backend = node("chat-1", "chat")
        .serve(Router::new().service(SayServiceServer::new(Chat { notes })))
        .join(&nats.url())
        .await
        .unwrap();
    let gate = node("gate-1", "gate").join(&nats.url()).await.unwrap();
    let mut members = gate.watch_members();
    members
        .wait_for(|m| m.iter().any(|m| &*m.id == "chat-1"))
        .await
        .unwrap();
    let server = gate
        .gate(Builder::new(), Router::new())
        .serve("tcp://127.0.0.1:0")
        .await
        .unwrap();

    let (seen, mut pushed) = mpsc::unbounded_channel();
    let session = Builder::new()
        .router(Router::new().service(PushServiceServer::new(Pushes { seen })))
        .dial(&server.url())
        .await
        .unwrap();
    let client = SayServiceClient::new(session);

    let ack: SayAck = client
        .say(Say {
            content: "hello".into(),
        })
        .await
        .unwrap();
    assert_eq!((ack.content.as_str(), ack.seq), ("hello", 7));

    // The remote handler pushes through the generated push client before answering.
    let ack = client
        .say(Say {
            content: "push:x".into(),
        })
        .await
        .unwrap();
    assert_eq!(ack.content, "push:x");
    assert_eq!(pushed.try_recv().unwrap(), "push:x");

    // A one-way method, and a typed error status.
    client.note(Note { text: "n1".into() }).await.unwrap();
    assert_eq!(noted.recv().await.unwrap(), "n1");
    let err = client
        .fail(Fail {
            why: "not today".into(),
        })
        .await
        .unwrap_err();
    let status = err.status().unwrap();
    assert_eq!(
        (status.code(), status.message()),
        (Code::FailedPrecondition, "not today")
    );
    drop(backend);
}
