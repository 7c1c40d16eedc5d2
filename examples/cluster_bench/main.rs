//! Benchmarks gonet-cluster beside raw NATS on loopback, in one run, against a
//! `nats-server` it starts itself (`nats-server -a 127.0.0.1 -p -1`, ended with the run).
//!
//! ```text
//! cargo run --release -p gonet-examples --example cluster_bench            # about 20 seconds
//! cargo run --release -p gonet-examples --example cluster_bench -- --quick # tiny
//! ```
//!
//! - Request latency: a gonet TCP client calls a 64 B echo through a gate node, which
//!   relays it over NATS to a backend node (client → gate → NATS → backend → gate →
//!   client), beside a raw async-nats request/reply of the same 64 B payload (a
//!   responder subscribed to a subject answers each request), the same number of
//!   sequential calls each, in alternating blocks. A call answered by the gate itself
//!   (the client's TCP leg alone) is measured beside them, so the gate's own hop can be
//!   told from it.
//! - Cross-node broadcast: client sessions spread over three gate nodes, all in one
//!   group; a fourth node broadcasts to the group, and the run times how long until
//!   every client has every message, and counts the NATS messages the broadcaster
//!   published per broadcast (its heartbeats are an hour apart, so they do not count).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use clap::Parser;
use futures_util::StreamExt;
use gonet::{Builder, Router, Session, Status};
use gonet_cluster::{Cluster, Node};
use tokio::sync::Notify;

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
const RAW_SUBJECT: &str = "raw.echo";
const PAYLOAD: usize = 64;
const GATES: usize = 3;
/// Calls per block: the three kinds of call alternate block by block.
const BLOCK: usize = 1000;

/// gonet-cluster beside raw NATS: relayed request latency and cross-node broadcast.
#[derive(Debug, Parser)]
#[command(name = "cluster_bench")]
struct Options {
    /// Sequential calls of each kind (after the warm-up)
    #[arg(long, default_value_t = 20_000)]
    calls: usize,
    /// Warm-up calls of each kind, not counted
    #[arg(long, default_value_t = 2_000)]
    warmup: usize,
    /// Client sessions in the broadcast group, spread over three gates
    #[arg(long, default_value_t = 1_000)]
    clients: usize,
    /// Broadcasts per round
    #[arg(long, default_value_t = 10_000)]
    broadcasts: u64,
    /// Broadcast rounds (the table shows the median)
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Everything, tiny
    #[arg(long)]
    quick: bool,
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

/// `nats-server` on PATH, or where the Debian package puts it.
fn nats_binary() -> Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("nats-server"));
    on_path
        .chain([PathBuf::from("/usr/sbin/nats-server")])
        .find(|path| path.is_file())
        .context("nats-server not found: `apt-get install nats-server`")
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

#[derive(Clone, Copy, Debug)]
struct Latency {
    p50: f64,
    p99: f64,
}

/// p50 and p99 of `us`, microseconds.
fn latency(us: &mut [f64]) -> Latency {
    us.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let i = ((us.len() as f64 - 1.0) * q).round() as usize;
        us.get(i).copied().unwrap_or(f64::NAN)
    };
    Latency {
        p50: at(0.50),
        p99: at(0.99),
    }
}

fn micros(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e6
}

/// The three kinds of sequential call, each timed.
struct Callers {
    client: Session,
    requester: async_nats::Client,
    payload: Bytes,
}

impl Callers {
    async fn relayed(&self, n: usize, out: &mut Vec<f64>) -> Result<()> {
        for _ in 0..n {
            let start = Instant::now();
            let reply: EchoReply = self
                .client
                .call(&Echo {
                    body: self.payload.clone(),
                })
                .await?;
            out.push(micros(start));
            ensure!(
                reply.body.len() == PAYLOAD,
                "the relayed echo changed the body"
            );
        }
        Ok(())
    }

    async fn raw(&self, n: usize, out: &mut Vec<f64>) -> Result<()> {
        for _ in 0..n {
            let start = Instant::now();
            let reply = self
                .requester
                .request(RAW_SUBJECT, self.payload.clone())
                .await?;
            out.push(micros(start));
            ensure!(
                reply.payload.len() == PAYLOAD,
                "the raw echo changed the payload"
            );
        }
        Ok(())
    }

    async fn local(&self, n: usize, out: &mut Vec<f64>) -> Result<()> {
        for _ in 0..n {
            let start = Instant::now();
            let reply: EchoReply = self
                .client
                .call(&LocalEcho {
                    body: self.payload.clone(),
                })
                .await?;
            out.push(micros(start));
            ensure!(
                reply.body.len() == PAYLOAD,
                "the local echo changed the body"
            );
        }
        Ok(())
    }
}

struct Latencies {
    relayed: Latency,
    raw: Latency,
    local: Latency,
}

async fn request_latency(nats: &str, opts: &Options) -> Result<Latencies> {
    let (gate_node, gate_server) = gate(nats, "lat-gate").await?;
    let backend = node("lat-echo", "echo")
        .serve(
            Router::new()
                .route(|_: Session, echo: Echo| async move { EchoReply { body: echo.body } }),
        )
        .join(nats)
        .await?;
    sees(&gate_node, &["lat-echo"]).await?;

    // The raw baseline: a responder and a requester, each with its own connection, as
    // the gate and the backend have.
    let responder = async_nats::connect(nats).await?;
    let mut requests = responder.subscribe(RAW_SUBJECT).await?;
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
    let callers = Callers {
        client: Builder::new().dial(&gate_server.url()).await?,
        requester: async_nats::connect(nats).await?,
        payload: Bytes::from(vec![0x5a; PAYLOAD]),
    };

    let mut scratch = Vec::with_capacity(opts.warmup);
    callers.relayed(opts.warmup, &mut scratch).await?;
    callers.raw(opts.warmup, &mut scratch).await?;
    callers.local(opts.warmup, &mut scratch).await?;
    let (mut relayed, mut raw, mut local) = (
        Vec::with_capacity(opts.calls),
        Vec::with_capacity(opts.calls),
        Vec::with_capacity(opts.calls),
    );
    let mut left = opts.calls;
    while left > 0 {
        let n = left.min(BLOCK);
        callers.relayed(n, &mut relayed).await?;
        callers.raw(n, &mut raw).await?;
        callers.local(n, &mut local).await?;
        left -= n;
    }

    callers.client.close("done");
    responding.abort();
    gate_server.shutdown().await;
    backend.drain().await;
    gate_node.drain().await;
    Ok(Latencies {
        relayed: latency(&mut relayed),
        raw: latency(&mut raw),
        local: latency(&mut local),
    })
}

/// What the broadcast clients count.
struct Deliveries {
    /// Per client: the messages it received.
    counts: Vec<AtomicU64>,
    /// How many each must have for the round to end.
    target: AtomicU64,
    /// Clients still short of the target.
    short: AtomicUsize,
    done: Notify,
}

struct Broadcast {
    /// Deliveries per second (median round).
    rate: f64,
    /// Median round, seconds.
    secs: f64,
    /// NATS messages the broadcaster published per broadcast.
    publishes: f64,
    /// Bytes it published per broadcast.
    bytes: f64,
}

async fn broadcast(nats: &str, opts: &Options) -> Result<Broadcast> {
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

    let deliveries = Arc::new(Deliveries {
        counts: (0..opts.clients).map(|_| AtomicU64::new(0)).collect(),
        target: AtomicU64::new(u64::MAX),
        short: AtomicUsize::new(opts.clients),
        done: Notify::new(),
    });
    let mut clients = Vec::with_capacity(opts.clients);
    for i in 0..opts.clients {
        let seen = deliveries.clone();
        let router = Router::new().route(move |_: Session, _: Cast| {
            let n = seen.counts[i].fetch_add(1, Ordering::Relaxed) + 1;
            if n == seen.target.load(Ordering::Relaxed)
                && seen.short.fetch_sub(1, Ordering::AcqRel) == 1
            {
                seen.done.notify_one();
            }
            async {}
        });
        let url = gates[i % GATES].1.url();
        let session = Builder::new()
            .router(router)
            .dial(&url)
            .await
            .with_context(|| format!("client {i} of {url}"))?;
        let _: Subscribed = session.call(&Subscribe {}).await?;
        clients.push(session);
    }

    let stats = caster.nats().statistics();
    let body = Bytes::from(vec![0xa5; PAYLOAD]);
    let mut secs = Vec::new();
    caster.nats().flush().await?;
    let (msgs_before, bytes_before) = (
        stats.out_messages.load(Ordering::Relaxed),
        stats.out_bytes.load(Ordering::Relaxed),
    );
    let mut seq = 0;
    for round in 1..=opts.rounds as u64 {
        deliveries.short.store(opts.clients, Ordering::Release);
        deliveries
            .target
            .store(round * opts.broadcasts, Ordering::Release);
        let start = Instant::now();
        for _ in 0..opts.broadcasts {
            seq += 1;
            let cast = Cast {
                seq,
                body: body.clone(),
            };
            caster.broadcast(GROUP, &cast).await?;
        }
        if tokio::time::timeout(Duration::from_secs(60), deliveries.done.notified())
            .await
            .is_err()
        {
            let got: u64 = deliveries
                .counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .sum();
            bail!(
                "round {round}: {got} of {} deliveries within 60 s",
                round * opts.broadcasts * opts.clients as u64
            );
        }
        secs.push(start.elapsed().as_secs_f64());
    }
    caster.nats().flush().await?;
    let sent = opts.broadcasts * opts.rounds as u64;
    let publishes = (stats.out_messages.load(Ordering::Relaxed) - msgs_before) as f64 / sent as f64;
    let bytes = (stats.out_bytes.load(Ordering::Relaxed) - bytes_before) as f64 / sent as f64;
    for (i, count) in deliveries.counts.iter().enumerate() {
        let got = count.load(Ordering::Relaxed);
        ensure!(
            got == sent,
            "client {i} received {got} of {sent} broadcasts"
        );
    }

    for session in &clients {
        session.close("done");
    }
    caster.drain().await;
    for (node, server) in gates {
        server.shutdown().await;
        node.drain().await;
    }
    secs.sort_by(f64::total_cmp);
    let median = secs[secs.len() / 2];
    Ok(Broadcast {
        rate: (opts.broadcasts * opts.clients as u64) as f64 / median,
        secs: median,
        publishes,
        bytes,
    })
}

fn raise_nofile(need: u64) -> Result<()> {
    let soft = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(soft) => soft,
        Err(_) => rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(0, |(soft, _)| soft),
    };
    ensure!(
        soft >= need,
        "the open-file limit is {soft}; {need} are needed and it could not be raised"
    );
    Ok(())
}

async fn run(mut opts: Options) -> Result<()> {
    if opts.quick {
        opts.calls = opts.calls.min(1_000);
        opts.warmup = opts.warmup.min(100);
        opts.clients = opts.clients.min(30);
        opts.broadcasts = opts.broadcasts.min(100);
        opts.rounds = opts.rounds.min(1);
    }
    ensure!(opts.calls >= 1, "--calls must be at least 1");
    ensure!(opts.clients >= 1, "--clients must be at least 1");
    ensure!(opts.broadcasts >= 1, "--broadcasts must be at least 1");
    ensure!(opts.rounds >= 1, "--rounds must be at least 1");
    // A client socket and its gate's, for every client, and some to spare.
    raise_nofile(2 * opts.clients as u64 + 256)?;

    let nats = NatsServer::start()?;
    let url = nats.url();
    println!("nats-server on {url}\n");

    let lat = request_latency(&url, &opts).await?;
    let bc = broadcast(&url, &opts).await?;

    let ratio = |a: f64, b: f64| a / b;
    println!(
        "request latency, 64 B, {} sequential calls each (after {} warm-up), µs:",
        opts.calls, opts.warmup
    );
    println!("| path                                                  |    p50 |    p99 |");
    println!("|-------------------------------------------------------|-------:|-------:|");
    let row = |name: &str, l: Latency| println!("| {name:<53} | {:>6.1} | {:>6.1} |", l.p50, l.p99);
    row(
        "(a) client → gate → NATS → backend → gate → client",
        lat.relayed,
    );
    row("(b) raw async-nats request/reply", lat.raw);
    println!(
        "| {:<53} | {:>5.2}x | {:>5.2}x |",
        "(a) / (b) (targets: p50 1.3x, p99 2x)",
        ratio(lat.relayed.p50, lat.raw.p50),
        ratio(lat.relayed.p99, lat.raw.p99)
    );
    row(
        "(c) client → gate → client (answered by the gate)",
        lat.local,
    );
    println!(
        "| {:<53} | {:>6.1} |      - |",
        "(a) − (c): the gate's hop, client TCP leg taken out",
        lat.relayed.p50 - lat.local.p50
    );
    println!(
        "| {:<53} | {:>5.2}x |      - |",
        "((a) − (c)) / (b)",
        ratio(lat.relayed.p50 - lat.local.p50, lat.raw.p50)
    );
    println!();
    println!(
        "broadcast, 64 B, {} clients over {GATES} gates, {} broadcasts a round, median of {} rounds:",
        opts.clients, opts.broadcasts, opts.rounds
    );
    println!("| deliveries/s | round (s) | NATS publishes per broadcast | bytes per broadcast |");
    println!("|-------------:|----------:|-----------------------------:|--------------------:|");
    println!(
        "| {:>12.0} | {:>9.3} | {:>28.3} | {:>19.0} |",
        bc.rate, bc.secs, bc.publishes, bc.bytes
    );
    drop(nats);
    Ok(())
}

fn main() -> ExitCode {
    let opts = Options::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cluster_bench: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("cluster_bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}
