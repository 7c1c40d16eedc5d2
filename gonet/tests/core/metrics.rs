//! The runtime's own metrics, read back through a recorder of this process (no
//! exporter): messages in and out by name, handler times, a rate-limited session and a
//! refused connection.
//!
//! Once a test turns them on, metrics are on for the whole process, so the other tests
//! of this binary count too: what is asserted exactly has a label only this file uses
//! (its messages' names); a label the others share is asserted as "at least".

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use gonet::{Builder, CallError, CloseReason, Code, Codec, IpLimit, RateLimit, Router, Session};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use serde::{Deserialize, Serialize};

use crate::support::*;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Metered {
    n: u64,
}
gonet::message!(Metered = 901, serde, name = "metrics.Metered");

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct MeteredAck {
    n: u64,
}
gonet::message!(MeteredAck = 902, serde, name = "metrics.MeteredAck");

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Throttled {
    n: u64,
}
gonet::message!(Throttled = 903, serde, name = "metrics.Throttled");

/// A metric's name and its labels, sorted.
type Series = (String, Vec<(String, String)>);

/// What the process recorded since the recorder was installed: counters' totals and
/// histograms' sample counts. The debugging recorder's snapshots take what is there
/// (each starts from zero again), so they are added up here.
#[derive(Clone)]
struct Recorded {
    totals: HashMap<Series, u64>,
}

/// The recorder of this process (installed on first use) and what it recorded so far.
struct Recorder {
    snapshotter: Snapshotter,
    recorded: Recorded,
}

impl Recorded {
    /// Everything recorded so far; installs the recorder on first use.
    fn now() -> Recorded {
        static RECORDER: OnceLock<Mutex<Recorder>> = OnceLock::new();
        let recorder = RECORDER.get_or_init(|| {
            let recorder = DebuggingRecorder::new();
            let snapshotter = recorder.snapshotter();
            recorder
                .install()
                .expect("the only metrics recorder of this process");
            Mutex::new(Recorder {
                snapshotter,
                recorded: Recorded {
                    totals: HashMap::new(),
                },
            })
        });
        let mut recorder = recorder.lock().unwrap_or_else(|e| e.into_inner());
        let snapshot = recorder.snapshotter.snapshot();
        recorder.recorded.add(snapshot);
        recorder.recorded.clone()
    }

    fn add(&mut self, snapshot: metrics_util::debugging::Snapshot) {
        for (key, _, _, value) in snapshot.into_vec() {
            let (_, key) = key.into_parts();
            let mut labels: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            let total = self
                .totals
                .entry((key.name().to_owned(), labels))
                .or_default();
            match value {
                DebugValue::Counter(n) => *total += n,
                DebugValue::Histogram(samples) => *total += samples.len() as u64,
                DebugValue::Gauge(_) => {}
            }
        }
    }

    /// A counter's total, or a histogram's samples, for exactly these labels.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        labels.sort();
        self.totals
            .get(&(name.to_owned(), labels))
            .copied()
            .unwrap_or(0)
    }
}

/// Waits until `series` has reached `at_least`.
async fn reached(name: &str, labels: &[(&str, &str)], at_least: u64) {
    until(&format!("{name}{labels:?} to reach {at_least}"), || {
        Recorded::now().value(name, labels) >= at_least
    })
    .await;
}

#[tokio::test]
async fn the_runtime_counts_messages_handler_times_limits_and_refusals() {
    const CALLS: u64 = 12;
    // The recorder is in place before anything is counted.
    Recorded::now();

    let server = Builder::new()
        .metrics(true)
        .codec(Codec::Json)
        .router(Router::new().route(|_: Session, m: Metered| async move { MeteredAck { n: m.n } }))
        .serve("tcp://127.0.0.1:0")
        .await
        .unwrap();
    let client = json_client(&server).await;
    for n in 0..CALLS {
        let ack: MeteredAck = client.call(&Metered { n }).await.unwrap();
        assert_eq!(ack.n, n);
    }

    // A session held to its burst of 2 (the rate earns nothing more during the test),
    // and an address held to one session.
    let limited = Builder::new()
        .metrics(true)
        .codec(Codec::Json)
        .router(Router::new().route(|_: Session, t: Throttled| async move { t }))
        .rate_limit(RateLimit::new().messages(0.001, 2))
        .ip_limit(IpLimit::new().sessions(1))
        .serve("tcp://127.0.0.1:0")
        .await
        .unwrap();
    let flooder = json_client(&limited).await;
    let (mut served, mut refused) = (0, 0);
    for n in 0..5 {
        match flooder.call::<_, Throttled>(&Throttled { n }).await {
            Ok(_) => served += 1,
            Err(CallError::Status { status, .. }) if status.code() == Code::ResourceExhausted => {
                refused += 1;
            }
            Err(other) => panic!("call {n}: {other}"),
        }
    }
    assert_eq!((served, refused), (2, 3));
    // A second connection from the same address is refused before it is a session.
    let second = json_client(&limited).await;
    within("the refusal", second.closed()).await;
    client.close("done");
    within("the client's close", client.closed()).await;

    let metered = [("message", "metrics.Metered")];
    let throttled = [("message", "metrics.Throttled")];
    reached("gonet_messages_in_total", &metered, CALLS).await;
    reached("gonet_handler_seconds", &metered, CALLS).await;
    reached("gonet_rate_limited_total", &throttled, 3).await;
    reached(
        "gonet_connections_refused_total",
        &[("reason", "ip_sessions")],
        1,
    )
    .await;
    reached(
        "gonet_sessions_closed_total",
        &[("transport", "tcp"), ("reason", "local")],
        1,
    )
    .await;

    let recorded = Recorded::now();
    // Every call reached its handler once, and was timed once.
    assert_eq!(recorded.value("gonet_messages_in_total", &metered), CALLS);
    assert_eq!(recorded.value("gonet_handler_seconds", &metered), CALLS);
    // The client sent every call; the server replied to each.
    assert_eq!(recorded.value("gonet_messages_out_total", &metered), CALLS);
    assert_eq!(
        recorded.value(
            "gonet_messages_out_total",
            &[("message", "metrics.MeteredAck")]
        ),
        CALLS
    );
    // The burst reached the handler; what went past it did not, and was counted.
    assert_eq!(recorded.value("gonet_messages_in_total", &throttled), 2);
    assert_eq!(recorded.value("gonet_handler_seconds", &throttled), 2);
    assert_eq!(recorded.value("gonet_rate_limited_total", &throttled), 3);
    // Labels other tests of this binary count under too.
    assert!(
        recorded.value(
            "gonet_connections_refused_total",
            &[("reason", "ip_sessions")]
        ) >= 1
    );
    // Two sessions on the servers, three on the clients' side (where the refused
    // connection was a session until the server closed it).
    assert!(recorded.value("gonet_sessions_opened_total", &[("transport", "tcp")]) >= 5);
    assert!(recorded.value("gonet_bytes_in_total", &[("transport", "tcp")]) > 0);
    assert!(recorded.value("gonet_bytes_out_total", &[("transport", "tcp")]) > 0);

    assert!(matches!(
        second.close_reason(),
        Some(CloseReason::PeerClosed)
    ));
    limited.shutdown().await;
    server.shutdown().await;
}
