//! The cluster rows: gonet-cluster beside raw NATS (async-nats), against a `nats-server`
//! each run starts itself (`nats-server -a 127.0.0.1 -p -1`, ended with the run). The
//! nodes, their clients and the raw NATS clients all run in the benchmark's process, on
//! its runtime; nats-server runs beside it.
//!
//! - `cluster-rt`: a gonet TCP client calls a 64 B echo that its gate node does not
//!   serve, so the gate relays it over NATS to a backend node and hands the reply back
//!   (client → gate → NATS → backend → gate → client), sequential calls; the baseline is
//!   a raw async-nats request/reply of the same 64 B payload, a responder subscribed on a
//!   subject answering each request, the requester and the responder on connections of
//!   their own as the gate and the backend are.
//! - `cluster-local`: the same call answered by the gate itself, the client's TCP leg
//!   of a relayed call alone (no baseline), so that the gate's own hop can be told from
//!   the client's.
//! - `cluster-fanout`: client sessions spread over three gate nodes, all in one group; a
//!   fourth node (its heartbeats an hour apart) broadcasts to the group in batches, each
//!   batch ending when every client has every message. The baseline publishes the same
//!   batches on one NATS subject with as many subscriptions as there are clients, spread
//!   over three connections, so that nats-server itself does the fan-out.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use futures_util::StreamExt;
use gonet::{Builder, Router, Session, Status};
use gonet_cluster::{Cluster, Node};
use tokio::sync::Notify;

use crate::Sample;
use crate::servers::Kind;

/// The relayed echo: served by the backend node.
#[derive(Clone, PartialEq, prost::Message)]
struct Echo {
    #[prost(bytes = "bytes", tag = "1")]
    body: Bytes,
}
gonet::message!(Echo = 9001, prost, name = "cluster_bench.Echo");

#[derive(Clone, PartialEq, prost::Message)]
struct EchoReply {
    #[prost(bytes = "bytes", tag = "1")]
    body: Bytes,
}
gonet::message!(EchoReply = 9002, prost, name = "cluster_bench.EchoReply");

/// The same echo, answered by the gate itself.
#[derive(Clone, PartialEq, prost::Message)]
struct LocalEcho {
    #[prost(bytes = "bytes", tag = "1")]
    body: Bytes,
}
gonet::message!(LocalEcho = 9003, prost, name = "cluster_bench.LocalEcho");

/// Joins the broadcast group (on the client's gate).
#[derive(Clone, PartialEq, prost::Message)]
struct Subscribe {}
gonet::message!(Subscribe = 9004, prost, name = "cluster_bench.Subscribe");

#[derive(Clone, PartialEq, prost::Message)]
struct Subscribed {}
gonet::message!(Subscribed = 9005, prost, name = "cluster_bench.Subscribed");

/// What every member of the group receives.
#[derive(Clone, PartialEq, prost::Message)]
struct Cast {
    #[prost(fixed64, tag = "1")]
    seq: u64,
    #[prost(bytes = "bytes", tag = "2")]
    body: Bytes,
}
gonet::message!(Cast = 9006, prost, name = "cluster_bench.Cast");

const CLUSTER: &str = "bench";
const GROUP: &str = "everyone";
const RAW_ECHO: &str = "raw.echo";
const RAW_CAST: &str = "raw.cast";
const PAYLOAD: usize = 64;
const GATES: usize = 3;
/// Broadcasts per batch of `cluster-fanout`.
const BATCH: u64 = 200;
/// Calls before the clock starts.
const WARMUP: usize = 200;

/// Which cluster row.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Row {
    /// Sequential relayed calls.
    Call,
    /// Sequential calls the gate answers itself: the client's TCP leg of a relayed
    /// call, with no baseline.
    Local,
    /// Broadcasts to `clients` sessions over three gates.
    Fanout { clients: usize },
}

/// How to get a `nats-server`, for the line of a skipped row.
pub(crate) const HOW_TO_GET: &str = "`apt-get install nats-server`, or put the nats-server binary (https://github.com/nats-io/nats-server/releases) on PATH";

/// `nats-server` on PATH, or where the Debian package puts it.
pub(crate) fn nats_binary() -> Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("nats-server"));
    on_path
        .chain([PathBuf::from("/usr/sbin/nats-server")])
        .find(|path| path.is_file())
        .context("no nats-server on PATH or at /usr/sbin/nats-server")
}

/// A `nats-server` started by this run; dropping it kills it (by its child handle).
struct NatsServer {
    child: Child,
    port: u16,
}

const CLIENT_LINE: &str = "Listening for client connections on ";
const READY_LINE: &str = "Server is ready";

impl NatsServer {
    fn start() -> Result<NatsServer> {
        let binary = nats_binary()?;
        let mut child = Command::new(&binary)
            .args(["-a", "127.0.0.1", "-p", "-1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stderr = child.stderr.take().context("nats-server's stderr")?;
        let mut server = NatsServer { child, port: 0 };
        let mut lines = BufReader::new(stderr).lines();
        let mut log = String::new();
        for line in lines.by_ref() {
            let line = line.context("reading nats-server's log")?;
            log.push_str(&line);
            log.push('\n');
            if let Some(at) = line.find(CLIENT_LINE) {
                let addr = line[at + CLIENT_LINE.len()..].trim();
                server.port = addr
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
            }
            if line.contains(READY_LINE) {
                break;
            }
        }
        ensure!(
            server.port != 0,
            "nats-server did not say where it listens; its log:\n{log}"
        );
        // Keep reading its log, so the pipe never fills and blocks it.
        std::thread::spawn(move || lines.for_each(drop));
        Ok(server)
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One run of a cluster row: gonet-cluster when `kind` is gonet, raw NATS otherwise.
pub(crate) async fn run(kind: Kind, row: Row, length: Duration) -> Result<Sample> {
    let nats = tokio::task::block_in_place(NatsServer::start)?;
    let url = nats.url();
    let gonet = kind != Kind::Raw;
    let sample = match row {
        Row::Call if gonet => relayed_calls(&url, length).await?,
        Row::Call => raw_calls(&url, length).await?,
        Row::Local if gonet => local_calls(&url, length).await?,
        Row::Local => bail!("the gate-answered call has no raw NATS baseline"),
        Row::Fanout { clients } if gonet => broadcast(&url, clients, length).await?,
        Row::Fanout { clients } => raw_broadcast(&url, clients, length).await?,
    };
    drop(nats);
    Ok(sample)
}

fn node(id: &str, kind: &str) -> Cluster {
    Cluster::new(CLUSTER).node_id(id).kind(kind)
}

/// Waits until `node` sees every node of `ids`.
async fn sees(node: &Node, ids: &[&str]) -> Result<()> {
    let mut members = node.watch_members();
    let all = members.wait_for(|m| ids.iter().all(|id| m.iter().any(|m| &*m.id == *id)));
    tokio::time::timeout(Duration::from_secs(10), all)
        .await
        .with_context(|| format!("{} did not see {ids:?} within 10 s", node.id()))?
        .context("node stopped")?;
    Ok(())
}

/// A gate node and its TCP server: it answers `LocalEcho` and `Subscribe` itself and
/// relays the rest.
async fn gate(nats: &str, id: &str) -> Result<(Node, gonet::Server)> {
    let node = node(id, "gate").join(nats).await?;
    let joiner = node.clone();
    let local = Router::new()
        .route(|_: Session, echo: LocalEcho| async move { EchoReply { body: echo.body } })
        .route(move |session: Session, _: Subscribe| {
            let node = joiner.clone();
            async move {
                match node.join(&node.addr(&session), GROUP).await {
                    Ok(()) => Ok(Subscribed {}),
                    Err(err) => Err(Status::unavailable(err.to_string())),
                }
            }
        });
    let server = node
        .gate(Builder::new(), local)
        .serve("tcp://127.0.0.1:0")
        .await?;
    Ok((node, server))
}

/// Sequential calls of `call` until `until`, after [`WARMUP`] untimed: its latencies
/// and calls per second.
async fn timed<F, Fut>(length: Duration, mut call: F) -> Result<Sample>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    for _ in 0..WARMUP {
        call().await?;
    }
    let mut lat = Vec::with_capacity(1 << 16);
    let start = Instant::now();
    let until = start + length;
    while Instant::now() < until {
        let at = Instant::now();
        call().await?;
        lat.push(at.elapsed());
    }
    let wall = start.elapsed();
    ensure!(!lat.is_empty(), "no call made");
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e6;
    Ok(Sample {
        rate: lat.len() as f64 / wall.as_secs_f64(),
        p50: pct(0.50),
        p99: pct(0.99),
        p999: pct(0.999),
        ..Sample::default()
    })
}

async fn relayed_calls(nats: &str, length: Duration) -> Result<Sample> {
    let (gate_node, gate_server) = gate(nats, "lat-gate").await?;
    let backend = node("lat-echo", "echo")
        .serve(
            Router::new()
                .route(|_: Session, echo: Echo| async move { EchoReply { body: echo.body } }),
        )
        .join(nats)
        .await?;
    sees(&gate_node, &["lat-echo"]).await?;
    let client = Builder::new().dial(&gate_server.url()).await?;
    let payload = Bytes::from(vec![0x5a; PAYLOAD]);
    let sample = timed(length, || {
        let (client, body) = (&client, payload.clone());
        async move {
            let reply: EchoReply = client.call(&Echo { body }).await?;
            ensure!(
                reply.body.len() == PAYLOAD,
                "the relayed echo changed the body"
            );
            Ok(())
        }
    })
    .await?;
    client.close("done");
    gate_server.shutdown().await;
    backend.drain().await;
    gate_node.drain().await;
    Ok(sample)
}

async fn local_calls(nats: &str, length: Duration) -> Result<Sample> {
    let (gate_node, gate_server) = gate(nats, "local-gate").await?;
    let client = Builder::new().dial(&gate_server.url()).await?;
    let payload = Bytes::from(vec![0x5a; PAYLOAD]);
    let sample = timed(length, || {
        let (client, body) = (&client, payload.clone());
        async move {
            let reply: EchoReply = client.call(&LocalEcho { body }).await?;
            ensure!(
                reply.body.len() == PAYLOAD,
                "the gate's echo changed the body"
            );
            Ok(())
        }
    })
    .await?;
    client.close("done");
    gate_server.shutdown().await;
    gate_node.drain().await;
    Ok(sample)
}

async fn raw_calls(nats: &str, length: Duration) -> Result<Sample> {
    let responder = async_nats::connect(nats).await?;
    let mut requests = responder.subscribe(RAW_ECHO).await?;
    let answer = responder.clone();
    let responding = tokio::spawn(async move {
        while let Some(msg) = requests.next().await {
            if let Some(reply) = msg.reply
                && answer.publish(reply, msg.payload).await.is_err()
            {
                break;
            }
        }
    });
    responder.flush().await?;
    let requester = async_nats::connect(nats).await?;
    let payload = Bytes::from(vec![0x5a; PAYLOAD]);
    let sample = timed(length, || {
        let (requester, body) = (&requester, payload.clone());
        async move {
            let reply = requester.request(RAW_ECHO, body).await?;
            ensure!(
                reply.payload.len() == PAYLOAD,
                "the raw echo changed the payload"
            );
            Ok(())
        }
    })
    .await?;
    responding.abort();
    Ok(sample)
}

/// What the broadcast receivers count.
struct Deliveries {
    /// Per receiver: the messages it received.
    counts: Vec<AtomicU64>,
    /// How many each must have for the batch to end.
    target: AtomicU64,
    /// Receivers still short of the target.
    short: AtomicUsize,
    done: Notify,
}

impl Deliveries {
    fn new(receivers: usize) -> Arc<Self> {
        Arc::new(Deliveries {
            counts: (0..receivers).map(|_| AtomicU64::new(0)).collect(),
            target: AtomicU64::new(u64::MAX),
            short: AtomicUsize::new(receivers),
            done: Notify::new(),
        })
    }

    fn delivered(&self, i: usize) {
        let n = self.counts[i].fetch_add(1, Ordering::Relaxed) + 1;
        if n == self.target.load(Ordering::Acquire)
            && self.short.fetch_sub(1, Ordering::AcqRel) == 1
        {
            self.done.notify_one();
        }
    }

    /// Batches of [`BATCH`] from `send` until `length` has passed, each waiting for
    /// every receiver to have all: deliveries per second, and the broadcasts made.
    async fn batches<F, Fut>(&self, length: Duration, mut send: F) -> Result<(f64, u64)>
    where
        F: FnMut(u64) -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        let receivers = self.counts.len();
        let start = Instant::now();
        let mut sent = 0u64;
        while start.elapsed() < length {
            self.short.store(receivers, Ordering::Release);
            self.target.store(sent + BATCH, Ordering::Release);
            for _ in 0..BATCH {
                sent += 1;
                send(sent).await?;
            }
            if tokio::time::timeout(Duration::from_secs(30), self.done.notified())
                .await
                .is_err()
            {
                let got: u64 = self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum();
                bail!(
                    "{got} of {} deliveries within 30 s",
                    sent * receivers as u64
                );
            }
        }
        let wall = start.elapsed();
        for (i, count) in self.counts.iter().enumerate() {
            let got = count.load(Ordering::Relaxed);
            ensure!(got == sent, "receiver {i} got {got} of {sent} broadcasts");
        }
        Ok(((sent * receivers as u64) as f64 / wall.as_secs_f64(), sent))
    }
}

async fn broadcast(nats: &str, clients: usize, length: Duration) -> Result<Sample> {
    let mut gates = Vec::new();
    for i in 1..=GATES {
        gates.push(gate(nats, &format!("gate-{i}")).await?);
    }
    // Heartbeats an hour apart: nothing but the broadcasts leaves it while it runs.
    let caster = node("caster", "caster")
        .heartbeat(Duration::from_secs(3600))
        .dead_after(Duration::from_secs(7200))
        .join(nats)
        .await?;
    let ids: Vec<String> = (1..=GATES).map(|i| format!("gate-{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    sees(&caster, &ids).await?;

    let deliveries = Deliveries::new(clients);
    let mut sessions = Vec::with_capacity(clients);
    for i in 0..clients {
        let seen = deliveries.clone();
        let router = Router::new().route(move |_: Session, _: Cast| {
            seen.delivered(i);
            async {}
        });
        let url = gates[i % GATES].1.url();
        let session = Builder::new()
            .router(router)
            .dial(&url)
            .await
            .with_context(|| format!("client {i} of {url}"))?;
        let _: Subscribed = session.call(&Subscribe {}).await?;
        sessions.push(session);
    }

    let stats = caster.nats().statistics();
    let body = Bytes::from(vec![0xa5; PAYLOAD]);
    caster.nats().flush().await?;
    let msgs_before = stats.out_messages.load(Ordering::Relaxed);
    let (rate, sent) = deliveries
        .batches(length, |seq| {
            let cast = Cast {
                seq,
                body: body.clone(),
            };
            let caster = &caster;
            async move { Ok(caster.broadcast(GROUP, &cast).await?) }
        })
        .await?;
    caster.nats().flush().await?;
    let publishes = (stats.out_messages.load(Ordering::Relaxed) - msgs_before) as f64 / sent as f64;

    for session in &sessions {
        session.close("done");
    }
    caster.drain().await;
    for (node, server) in gates {
        server.shutdown().await;
        node.drain().await;
    }
    Ok(Sample {
        rate,
        nats_per_broadcast: publishes,
        ..Sample::default()
    })
}

async fn raw_broadcast(nats: &str, clients: usize, length: Duration) -> Result<Sample> {
    let deliveries = Deliveries::new(clients);
    let mut connections = Vec::with_capacity(GATES);
    for _ in 0..GATES {
        connections.push(async_nats::connect(nats).await?);
    }
    let mut receivers = tokio::task::JoinSet::new();
    for i in 0..clients {
        let connection = &connections[i % GATES];
        let mut sub = connection.subscribe(RAW_CAST).await?;
        let seen = deliveries.clone();
        receivers.spawn(async move {
            while let Some(msg) = sub.next().await {
                if msg.payload.len() != PAYLOAD {
                    return;
                }
                seen.delivered(i);
            }
        });
    }
    for connection in &connections {
        connection.flush().await?;
    }
    let caster = async_nats::connect(nats).await?;
    let body = Bytes::from(vec![0xa5; PAYLOAD]);
    let (rate, _) = deliveries
        .batches(length, |_| {
            let caster = &caster;
            let body = body.clone();
            async move { Ok(caster.publish(RAW_CAST, body).await?) }
        })
        .await?;
    receivers.abort_all();
    Ok(Sample {
        rate,
        nats_per_broadcast: 1.0,
        ..Sample::default()
    })
}
