//! The cluster's metrics against a real `nats-server`, read back through a debugging
//! recorder installed in this process: requests between nodes by kind and outcome, and
//! their latency.

#[allow(
    dead_code,
    reason = "the cluster tests' nats-server; this test starts it only"
)]
#[path = "cluster/nats.rs"]
mod nats;

#[allow(
    dead_code,
    reason = "the cluster tests' game; this test plays part of it"
)]
#[path = "cluster/fixture.rs"]
mod fixture;

use gonet::{Builder, Message, Router};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

use fixture::*;
use nats::NatsServer;

/// A metric's name, its labels (sorted), and its counter's total or its histogram's
/// sample count.
type Series = (String, Vec<(String, String)>, u64);

/// The counter's total or the histogram's sample count of `name` with exactly `labels`.
fn value(snapshot: &[Series], name: &str, labels: &[(&str, &str)]) -> u64 {
    let mut want: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    want.sort();
    snapshot
        .iter()
        .filter(|(n, l, _)| n == name && *l == want)
        .map(|(_, _, v)| v)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_between_nodes_are_counted_by_kind_and_outcome() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this process");

    let nats = NatsServer::start().await;
    let gate_node = cluster("gate-1", "gate")
        .join(&nats.url())
        .await
        .expect("gate joins");
    let _room = room(&nats, "room-1", &RoomCtl::default()).await;
    sees(&gate_node, &["room-1"]).await;
    let server = gate_node
        .gate(Builder::new().metrics(true), Router::new())
        .serve("tcp://127.0.0.1:0")
        .await
        .expect("gate serves");
    let mut c = client(&server.url()).await;
    const ENTERS: u64 = 5;
    for _ in 0..ENTERS {
        enter(&c, "lobby").await;
    }
    // The room node pushes through the gate: a request of its own, from node to node.
    let _: Poked = within("shout", c.session.call(&Shout {}))
        .await
        .expect("shout");
    within("the push", c.pushed.recv()).await.expect("pushed");

    let snapshot: Vec<Series> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let (_, key) = key.into_parts();
            let mut labels: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            let n = match value {
                DebugValue::Counter(n) => n,
                DebugValue::Histogram(samples) => samples.len() as u64,
                DebugValue::Gauge(_) => 0,
            };
            (key.name().to_owned(), labels, n)
        })
        .collect();
    // Every relayed message (the enters and the shout) was one request, answered.
    let relayed = [("kind", "relayed message"), ("outcome", "ok")];
    assert_eq!(
        value(&snapshot, "gonet_cluster_requests_total", &relayed),
        ENTERS + 1
    );
    assert_eq!(
        value(
            &snapshot,
            "gonet_cluster_request_seconds",
            &[("kind", "relayed message")]
        ),
        ENTERS + 1
    );
    let pushed = [("kind", Pushed::NAME), ("outcome", "ok")];
    assert_eq!(value(&snapshot, "gonet_cluster_requests_total", &pushed), 1);
    // The gate counts the same messages, under the name of its fallback (the relay).
    assert_eq!(
        value(
            &snapshot,
            "gonet_messages_in_total",
            &[("message", gonet::UNROUTED)]
        ),
        ENTERS + 1,
    );
}
