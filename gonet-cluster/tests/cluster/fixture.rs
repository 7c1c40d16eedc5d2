//! The game the cluster tests play: messages, a room service for backend nodes, a
//! gate, clients, and bounded waits.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use gonet::{Builder, Router, Server, Session, Status};
use gonet_cluster::{Cluster, ClusterEvent, Node, Remote, SessionAddr, SessionData};
use tokio::sync::{Notify, mpsc};

use crate::nats::NatsServer;

#[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
pub(crate) struct Ping {
    #[prost(uint32, tag = "1")]
    pub(crate) n: u32,
}
gonet::message!(Ping = 1, [prost, serde]);

#[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
pub(crate) struct Enter {
    #[prost(string, tag = "1")]
    pub(crate) room: String,
}
gonet::message!(Enter = 10, [prost, serde]);

#[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
pub(crate) struct Entered {
    #[prost(string, tag = "1")]
    pub(crate) room: String,
    /// The node that handled it.
    #[prost(string, tag = "2")]
    pub(crate) node: String,
    /// The client's address in the cluster, as the handler saw it.
    #[prost(string, tag = "3")]
    pub(crate) gate: String,
    #[prost(uint64, tag = "4")]
    pub(crate) session: u64,
}
gonet::message!(Entered = 11, [prost, serde]);

/// Plain (no reply): the room node appends `n` to the session's data.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
pub(crate) struct Seq {
    #[prost(uint32, tag = "1")]
    pub(crate) n: u32,
}
gonet::message!(Seq = 12, [prost, serde]);

#[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
pub(crate) struct Dump {}
gonet::message!(Dump = 13, [prost, serde]);

#[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
pub(crate) struct Dumped {
    #[prost(string, tag = "1")]
    pub(crate) seq: String,
    #[prost(string, tag = "2")]
    pub(crate) node: String,
    #[prost(string, optional, tag = "3")]
    pub(crate) uid: Option<String>,
    /// The trace id the handler saw in the message's metadata.
    #[prost(string, optional, tag = "4")]
    #[serde(default)]
    pub(crate) trace: Option<String>,
}
gonet::message!(Dumped = 14, [prost, serde]);

/// The room node pushes three `Pushed` before replying `Poked`.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
pub(crate) struct Poke {}
gonet::message!(Poke = 15, [prost, serde]);

#[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
pub(crate) struct Poked {}
gonet::message!(Poked = 16, [prost, serde]);

/// Sent to clients: by a room handler, a push from any node, or a group broadcast.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
pub(crate) struct Pushed {
    #[prost(uint32, tag = "1")]
    pub(crate) n: u32,
    #[prost(string, tag = "2")]
    pub(crate) text: String,
}
gonet::message!(Pushed = 17, [prost, serde]);

#[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
pub(crate) struct Login {
    #[prost(string, tag = "1")]
    pub(crate) user: String,
}
gonet::message!(Login = 18, [prost, serde]);

/// Waits for the test's go (drain test), then replies.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
pub(crate) struct Slow {}
gonet::message!(Slow = 19, [prost, serde]);

/// The room node closes the client's session.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
pub(crate) struct Leave {}
gonet::message!(Leave = 20, [prost, serde]);

/// The room node's handler panics.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
pub(crate) struct Boom {}
gonet::message!(Boom = 21, [prost, serde]);

/// The room node pushes `Pushed { n: 42, text: "shout" }` to the sender through
/// `Node::push` (from node to gate), then replies `Poked`.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
pub(crate) struct Shout {}
gonet::message!(Shout = 23, [prost, serde]);

/// Served by no node.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
pub(crate) struct Nobody {}
gonet::message!(Nobody = 22, [prost, serde]);

/// A question a node asks a client (`Node::call`); the client answers with `Ping`.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
pub(crate) struct Ask {
    #[prost(uint32, tag = "1")]
    pub(crate) n: u32,
}
gonet::message!(Ask = 23, [prost, serde]);

/// Bounds every wait of the tests: a hang fails the test with `what` instead of
/// blocking the suite. (Not a timing assertion: it is 30 s, for things that happen in
/// milliseconds.)
pub(crate) async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(30), fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// A node of cluster `test` with quick heartbeats.
pub(crate) fn cluster(id: &str, kind: &str) -> Cluster {
    Cluster::new("test")
        .node_id(id)
        .kind(kind)
        .heartbeat(Duration::from_millis(100))
        .dead_after(Duration::from_millis(1000))
        .request_timeout(Duration::from_secs(5))
        .codecs([gonet::Codec::Protobuf, gonet::Codec::Json])
}

/// What a room node's handlers let the test steer.
#[derive(Clone, Default)]
pub(crate) struct RoomCtl {
    /// Released by the test: `Slow` replies then.
    pub(crate) go: Arc<Notify>,
    /// Told when a `Slow` is being handled.
    pub(crate) slow_started: Arc<Notify>,
}

/// The room service: what backend nodes serve.
pub(crate) fn rooms(node_id: &str, ctl: &RoomCtl) -> Router {
    let id = node_id.to_owned();
    let id2 = node_id.to_owned();
    let ctl = ctl.clone();
    Router::new()
        .route(move |session: Session, enter: Enter| {
            let node = id.clone();
            async move {
                let remote = Remote::of(&session).expect("a relayed message has a remote session");
                let here = Node::of(&session).expect("a relayed message's session knows its node");
                assert_eq!(**here.id(), *node);
                SessionData::of(&session).set("room", enter.room.clone());
                Entered {
                    room: enter.room,
                    node,
                    gate: remote.addr.node.to_string(),
                    session: remote.addr.session,
                }
            }
        })
        .route(|session: Session, seq: Seq| async move {
            let data = SessionData::of(&session);
            let mut all = data.get("seq").unwrap_or_default();
            if !all.is_empty() {
                all.push(',');
            }
            all.push_str(&seq.n.to_string());
            data.set("seq", all);
        })
        .route(move |session: Session, _: Dump| {
            let node = id2.clone();
            async move {
                Dumped {
                    seq: SessionData::of(&session).get("seq").unwrap_or_default(),
                    node,
                    uid: session.uid().map(|u| u.to_string()),
                    trace: gonet::Metadata::current().and_then(|m| m.trace_id().map(str::to_owned)),
                }
            }
        })
        .route(|session: Session, _: Poke| async move {
            for n in 1..=3 {
                session
                    .send(&Pushed {
                        n,
                        text: "poke".into(),
                    })
                    .expect("push to a relayed session");
            }
            Poked {}
        })
        .route(|session: Session, login: Login| async move {
            session.bind(login.user.as_str());
            login
        })
        .route(|session: Session, _: Shout| async move {
            let node = Node::of(&session).expect("a relayed message's session knows its node");
            let remote = Remote::of(&session).expect("a relayed message has a remote session");
            let shout = Pushed {
                n: 42,
                text: "shout".into(),
            };
            node.push(&remote.addr, &shout)
                .await
                .expect("push through the gate");
            Poked {}
        })
        .route(move |_: Session, _: Slow| {
            let ctl = ctl.clone();
            async move {
                let go = ctl.go.notified();
                ctl.slow_started.notify_one();
                go.await;
                Slow {}
            }
        })
        .route(|session: Session, _: Leave| async move {
            session.close("left the game");
        })
        .route(|_: Session, _: Boom| async move {
            if true {
                panic!("boom");
            }
            Status::internal("unreachable")
        })
}

/// A room node.
pub(crate) async fn room(nats: &NatsServer, id: &str, ctl: &RoomCtl) -> Node {
    cluster(id, "room")
        .serve(rooms(id, ctl))
        .join(&nats.url())
        .await
        .expect("room node joins")
}

/// A gate node with a TCP and a WebSocket server; it answers `Ping` itself.
pub(crate) struct Gate {
    pub(crate) node: Node,
    pub(crate) tcp: Server,
    pub(crate) ws: Server,
}

pub(crate) async fn gate(nats: &NatsServer, id: &str) -> Gate {
    let node = cluster(id, "gate")
        .join(&nats.url())
        .await
        .expect("gate node joins");
    let local = || Router::new().route(|_: Session, ping: Ping| async move { ping });
    let tcp = node
        .gate(Builder::new(), local())
        .serve("tcp://127.0.0.1:0")
        .await
        .expect("gate serves tcp");
    let ws = node
        .gate(Builder::new().codec(gonet::Codec::Json), local())
        .serve("ws://127.0.0.1:0")
        .await
        .expect("gate serves ws");
    Gate { node, tcp, ws }
}

/// A client and what was pushed to it.
pub(crate) struct Client {
    pub(crate) session: Session,
    pub(crate) pushed: mpsc::UnboundedReceiver<Pushed>,
}

pub(crate) async fn client(url: &str) -> Client {
    let (tx, pushed) = mpsc::unbounded_channel();
    let codec = if url.starts_with("ws") {
        gonet::Codec::Json
    } else {
        gonet::Codec::Protobuf
    };
    let router = Router::new()
        .route(move |_: Session, mut p: Pushed| {
            // What came with a push: its trace id, if any.
            if let Some(trace) =
                gonet::Metadata::current().and_then(|m| m.trace_id().map(str::to_owned))
            {
                p.text = format!("{} trace={trace}", p.text);
            }
            let _ = tx.send(p);
            async {}
        })
        .route(|_: Session, ask: Ask| async move { Ping { n: ask.n + 1 } });
    let session = Builder::new()
        .codec(codec)
        .router(router)
        .dial(url)
        .await
        .expect("client connects");
    Client { session, pushed }
}

/// Waits until `node` sees members with all of `ids`.
pub(crate) async fn sees(node: &Node, ids: &[&str]) {
    let mut members = node.watch_members();
    within(&format!("{} to see {ids:?}", node.id()), async {
        members
            .wait_for(|m| ids.iter().all(|id| m.iter().any(|m| &*m.id == *id)))
            .await
            .expect("node runs");
    })
    .await;
}

/// Waits until `node` no longer sees `id`.
pub(crate) async fn forgets(node: &Node, id: &str) {
    let mut members = node.watch_members();
    within(&format!("{} to forget {id}", node.id()), async {
        members
            .wait_for(|m| !m.iter().any(|m| &*m.id == id))
            .await
            .expect("node runs");
    })
    .await;
}

/// The address of a client, as a room handler sees it.
pub(crate) async fn enter(client: &Client, room: &str) -> (Entered, SessionAddr) {
    let entered: Entered = within(
        "entering a room",
        client.session.call(&Enter { room: room.into() }),
    )
    .await
    .expect("enter is answered");
    let addr = SessionAddr::new(entered.gate.as_str(), entered.session);
    (entered, addr)
}

/// Waits for the first event `pick` accepts.
pub(crate) async fn event<T>(
    events: &mut tokio::sync::broadcast::Receiver<ClusterEvent>,
    mut pick: impl FnMut(&ClusterEvent) -> Option<T>,
) -> T {
    within("a cluster event", async {
        loop {
            match events.recv().await {
                Ok(e) => {
                    if let Some(v) = pick(&e) {
                        return v;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("events ended: {e}"),
            }
        }
    })
    .await
}
