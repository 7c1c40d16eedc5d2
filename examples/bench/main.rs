//! Benchmarks gonet-rs beside a raw tokio baseline on loopback, in one run.
//!
//! ```text
//! cargo run --release -p gonet-examples --example bench            # the full run, about 7 minutes
//! cargo run --release -p gonet-examples --example bench -- --quick # every scenario, tiny
//! ```
//!
//! Each scenario starts a server in a process of its own (this binary, re-run as
//! `bench serve gonet|raw URL`) and drives it with the same load generator, gonet-rs and
//! the baseline alternating (A B A B ...); the table shows medians. Every transport has
//! a raw baseline on its own library (`raw.rs`); the `ws` rows run a second one, on
//! fastwebsockets, in the same alternation, and a table of their own compares the two
//! libraries. Server CPU time and memory come from `/proc/PID/stat` and
//! `/proc/PID/status`, so "per server CPU second" figures hold even though the load
//! generator shares the machine. `BENCHMARKS.md` explains every figure.
//!
//! The resume rows (`resume64`, `resume1k`) measure what session resume costs: the
//! pipelined TCP scenario through the raw client, against a server with resume on (the
//! client making the handshake and acknowledging what it reads with each write, as a
//! resuming client does) and the same server with it off, alternating in the same way;
//! they get a table of their own. The metrics rows (`metrics64`,
//! `metrics1k`) do the same for the runtime's metrics: the pipelined TCP scenario
//! through the raw client, against a server with its metrics on (a Prometheus recorder
//! installed) and the same server with them off.
//!
//! The scale rows (`scale.rs`): `loaded`, the round-trip latency of a probe connection
//! while 50 others send at half the pipelined peak of gonet-rs (the baseline paced at
//! the same absolute rate); `accept`, 10,000 new sessions; `fanout10k`, a broadcast to
//! 10,000; `idle100k`, 100,000 idle sessions (with as many as the open-file limit allows
//! when it cannot be raised, said in a printed line). The cluster rows (`cluster.rs`,
//! transport `nats`): `cluster-rt`, a call relayed by a gonet-cluster gate to a backend
//! node (and `cluster-local`, the same call answered by the gate, with no baseline),
//! and `cluster-fanout`, a broadcast to 1,000 clients over three gates, each against raw
//! NATS through async-nats, with a `nats-server` the run starts; skipped with a printed
//! line when there is no `nats-server` binary.
//!
//! Options: `--rounds N` (alternations, default 3), `--secs S` (seconds per timed run,
//! default 2), `--only a,b` (scenarios by name: rt, pipe64, pipe1k, resume64, resume1k,
//! metrics64, metrics1k, fanout, fanout10k, idle, idle100k, loaded, accept, cluster-rt,
//! cluster-local, cluster-fanout), `--transports tcp,...` (transports of the
//! per-transport rows: tcp, udp, ws, wss, quic, kcp; all by default; the resume rows run
//! with tcp), `--quick`. The KCP rows take their URL query from `BENCH_KCP_QUERY` (e.g.
//! `mode=stream`).

mod cluster;
mod load;
mod procfs;
mod proto;
mod raw;
mod scale;
mod servers;

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::servers::Kind;

/// What one scenario does.
#[derive(Clone, Debug)]
enum Scenario {
    /// One connection, one request in flight.
    RoundTrip { size: usize },
    /// `conns` connections with `window` requests in flight each. With `resume`, through
    /// a gonet-rs client, session resume on against off (not gonet-rs against raw tokio).
    Pipelined {
        transport: &'static str,
        size: usize,
        conns: usize,
        window: usize,
        resume: bool,
        /// The server with its metrics on, against off (through the raw client).
        metrics: bool,
    },
    /// One publisher; every broadcast goes to `members` sessions.
    Fanout { members: usize, size: usize },
    /// `sessions` sessions that did one round trip and then went quiet.
    Idle { sessions: usize },
    /// The latency of one connection's round trips while `conns` others send at half the
    /// pipelined peak (`scale.rs`).
    Loaded { conns: usize },
    /// `conns` new sessions, 100 at a time, one round trip each (`scale.rs`).
    Accept { conns: usize },
    /// gonet-cluster against raw NATS (`cluster.rs`).
    Cluster(cluster::Row),
}

impl Scenario {
    fn label(&self) -> String {
        match self {
            Scenario::RoundTrip { size } => format!("round trip, 1 conn x 1, {}", bytes(*size)),
            Scenario::Pipelined {
                size,
                conns,
                window,
                ..
            } => format!("pipelined, {conns} conns x {window}, {}", bytes(*size)),
            Scenario::Fanout { members, size } => {
                format!("broadcast to {members}, {}", bytes(*size))
            }
            Scenario::Idle { sessions } => format!("{sessions} idle sessions"),
            Scenario::Loaded { conns } => format!("probe rt, {conns} conns at peak/2, 64 B"),
            Scenario::Accept { conns } => format!("accept {conns} conns, 1 rt each"),
            Scenario::Cluster(cluster::Row::Call) => "cluster call via gate, 64 B".into(),
            Scenario::Cluster(cluster::Row::Local) => "cluster call, gate answers, 64 B".into(),
            Scenario::Cluster(cluster::Row::Fanout { clients }) => {
                format!("cluster broadcast to {clients}, 64 B")
            }
        }
    }

    fn transport(&self) -> &'static str {
        match self {
            Scenario::Pipelined { transport, .. } => transport,
            Scenario::Cluster(_) => "nats",
            _ => "tcp",
        }
    }

    /// The server under test and the baseline it is compared with in the same run, if
    /// any.
    fn kinds(&self) -> (Kind, Option<Kind>) {
        match self {
            Scenario::Pipelined { resume: true, .. } => (Kind::GonetResume, Some(Kind::Gonet)),
            Scenario::Pipelined { metrics: true, .. } => (Kind::GonetMetrics, Some(Kind::Gonet)),
            // gonet-cluster against raw NATS; the gate-answered call has no baseline.
            Scenario::Cluster(cluster::Row::Local) => (Kind::Gonet, None),
            _ => (Kind::Gonet, Some(Kind::Raw)),
        }
    }

    /// A second baseline run in the same alternation: the `ws` rows' baseline on
    /// another WebSocket library.
    fn second_baseline(&self) -> Option<Kind> {
        let plain = !self.is_resume() && !self.is_metrics();
        (plain && self.transport() == "ws").then_some(Kind::RawFastws)
    }

    fn is_resume(&self) -> bool {
        matches!(self, Scenario::Pipelined { resume: true, .. })
    }

    fn is_metrics(&self) -> bool {
        matches!(self, Scenario::Pipelined { metrics: true, .. })
    }
}

fn bytes(n: usize) -> String {
    if n % 1024 == 0 {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} B")
    }
}

/// The figures of one run.
#[derive(Clone, Debug, Default)]
struct Sample {
    /// Messages (or deliveries) per second of wall time.
    rate: f64,
    /// Messages (or deliveries) per second of server CPU time.
    per_cpu: f64,
    /// Round trip latencies, microseconds.
    p50: f64,
    p99: f64,
    p999: f64,
    /// Server memory per session, bytes.
    rss_per_session: f64,
    /// NATS messages published per broadcast (the cluster rows).
    nats_per_broadcast: f64,
}

#[derive(Debug)]
struct Options {
    rounds: usize,
    secs: f64,
    quick: bool,
    only: Option<Vec<String>>,
    transports: Vec<String>,
}

/// The transports of the per-transport rows, all by default.
const TRANSPORTS: &[&str] = &["tcp", "udp", "ws", "wss", "quic", "kcp"];

fn parse_options() -> Result<Options> {
    let mut opts = Options {
        rounds: 3,
        secs: 2.0,
        quick: false,
        only: None,
        transports: TRANSPORTS.iter().map(|&t| t.to_owned()).collect(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--rounds" => opts.rounds = value()?.parse().context("--rounds")?,
            "--secs" => opts.secs = value()?.parse().context("--secs")?,
            "--only" => opts.only = Some(value()?.split(',').map(str::to_owned).collect()),
            "--transports" => {
                opts.transports = value()?.split(',').map(str::to_owned).collect();
                if let Some(t) = opts
                    .transports
                    .iter()
                    .find(|t| !TRANSPORTS.contains(&t.as_str()))
                {
                    bail!("unknown transport {t:?} (one of {})", TRANSPORTS.join(","));
                }
            }
            "--quick" => opts.quick = true,
            "-h" | "--help" => {
                println!(
                    "usage: bench [--quick] [--rounds N] [--secs S] [--only rt,pipe64,pipe1k,resume64,resume1k,metrics64,metrics1k,fanout,fanout10k,idle,idle100k,loaded,accept,cluster-rt,cluster-local,cluster-fanout] [--transports tcp,...]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    if opts.quick {
        opts.rounds = 1;
        opts.secs = 0.2;
    }
    ensure!(opts.rounds >= 1, "--rounds must be at least 1");
    ensure!(opts.secs > 0.0, "--secs must be positive");
    Ok(opts)
}

fn scenarios(opts: &Options) -> Vec<(&'static str, Scenario)> {
    let q = opts.quick;
    let mut list = vec![("rt", Scenario::RoundTrip { size: 64 })];
    for (name, size) in [("pipe64", 64), ("pipe1k", 1024)] {
        for transport in &opts.transports {
            let Some(&transport) = TRANSPORTS.iter().find(|&&t| t == transport) else {
                continue;
            };
            // The 1 KiB rows run on TCP only; every transport gets the 64 B row.
            if size == 1024 && transport != "tcp" {
                continue;
            }
            list.push((
                name,
                Scenario::Pipelined {
                    transport,
                    size,
                    conns: if q { 4 } else { 50 },
                    window: 64,
                    resume: false,
                    metrics: false,
                },
            ));
        }
    }
    // Session resume on against off: the pipelined TCP rows again.
    if opts.transports.iter().any(|t| t == "tcp") {
        for (name, size) in [("resume64", 64), ("resume1k", 1024)] {
            list.push((
                name,
                Scenario::Pipelined {
                    transport: "tcp",
                    size,
                    conns: if q { 4 } else { 50 },
                    window: 64,
                    resume: true,
                    metrics: false,
                },
            ));
        }
        // Metrics on against off: the pipelined TCP rows again.
        for (name, size) in [("metrics64", 64), ("metrics1k", 1024)] {
            list.push((
                name,
                Scenario::Pipelined {
                    transport: "tcp",
                    size,
                    conns: if q { 4 } else { 50 },
                    window: 64,
                    resume: false,
                    metrics: true,
                },
            ));
        }
    }
    list.push((
        "fanout",
        Scenario::Fanout {
            members: if q { 50 } else { 1000 },
            size: 64,
        },
    ));
    list.push((
        "fanout10k",
        Scenario::Fanout {
            members: if q { 500 } else { 10_000 },
            size: 64,
        },
    ));
    list.push((
        "idle",
        Scenario::Idle {
            sessions: if q { 200 } else { 10_000 },
        },
    ));
    list.push((
        "idle100k",
        Scenario::Idle {
            sessions: if q { 1_000 } else { 100_000 },
        },
    ));
    list.push((
        "loaded",
        Scenario::Loaded {
            conns: if q { 4 } else { 50 },
        },
    ));
    list.push((
        "accept",
        Scenario::Accept {
            conns: if q { 200 } else { 10_000 },
        },
    ));
    list.push(("cluster-rt", Scenario::Cluster(cluster::Row::Call)));
    list.push(("cluster-local", Scenario::Cluster(cluster::Row::Local)));
    list.push((
        "cluster-fanout",
        Scenario::Cluster(cluster::Row::Fanout {
            clients: if q { 30 } else { 1_000 },
        }),
    ));
    list.retain(|(name, _)| {
        opts.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|x| x == name))
    });
    list
}

/// A server process started by this run. Dropping it ends the process.
struct ServerProc {
    child: Child,
    stdin: Option<ChildStdin>,
    url: String,
    /// The certificate a `wss://` or `quic://` server presents (DER).
    cert: Option<Arc<[u8]>>,
}

impl ServerProc {
    fn start(kind: Kind, url: &str) -> Result<Self> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args(["serve", kind.name(), url])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the server process")?;
        let stdin = child.stdin.take();
        let mut line = String::new();
        let stdout = child.stdout.take().context("server stdout")?;
        BufReader::new(stdout).read_line(&mut line)?;
        let mut words = line.split_whitespace();
        let url = words.next().unwrap_or_default().to_owned();
        ensure!(!url.is_empty(), "the {} server did not start", kind.name());
        let cert = match words.next() {
            Some(hex) => Some(parse_hex(hex).context("the server's certificate")?.into()),
            None => None,
        };
        Ok(ServerProc {
            child,
            stdin,
            url,
            cert,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The `host:port` of a stream URL.
    fn addr(&self) -> &str {
        self.url
            .split_once("://")
            .map_or(&self.url, |(_, rest)| rest)
    }
}

fn parse_hex(hex: &str) -> Result<Vec<u8>> {
    ensure!(hex.len() % 2 == 0, "odd length");
    (0..hex.len())
        .step_by(2)
        .map(|i| Ok(u8::from_str_radix(&hex[i..i + 2], 16)?))
        .collect()
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        // Closing its standard input asks the server to exit; it is killed if it has not
        // within a few seconds.
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn run(kind: Kind, scenario: &Scenario, secs: f64) -> Result<Sample> {
    if let Scenario::Cluster(row) = scenario {
        return cluster::run(kind, *row, Duration::from_secs_f64(secs)).await;
    }
    let mut url = format!("{}://127.0.0.1:0", scenario.transport());
    // The KCP rows with other settings, e.g. BENCH_KCP_QUERY=mode=stream (the server's
    // URL keeps the query, and the clients dial that URL).
    if scenario.transport() == "kcp" {
        if let Ok(query) = std::env::var("BENCH_KCP_QUERY") {
            url.push('?');
            url.push_str(&query);
        }
    }
    if matches!(kind, Kind::Raw | Kind::RawFastws)
        && (!raw::serves(kind, scenario.transport())
            || scenario.is_resume()
            || scenario.is_metrics())
    {
        bail!("no {} baseline for {url}", kind.name());
    }
    let server = tokio::task::block_in_place(|| ServerProc::start(kind, &url))?;
    let pid = server.pid();
    let addr = server.addr().to_owned();
    let length = Duration::from_secs_f64(secs);
    let sample = match scenario {
        Scenario::RoundTrip { size } => {
            let cpu0 = procfs::cpu_time(pid)?;
            let start = Instant::now();
            let mut lat = load::round_trips(&addr, *size, start + length).await?;
            let wall = start.elapsed();
            let cpu = procfs::cpu_time(pid)? - cpu0;
            lat.sort_unstable();
            let pct = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e6;
            Sample {
                rate: lat.len() as f64 / wall.as_secs_f64(),
                per_cpu: lat.len() as f64 / cpu.as_secs_f64(),
                p50: pct(0.50),
                p99: pct(0.99),
                ..Sample::default()
            }
        }
        Scenario::Pipelined {
            transport,
            size,
            conns,
            window,
            resume: _,
            metrics: _,
        } => {
            // TCP is driven by the raw wire-format client; other transports by a gonet-rs
            // client, so that a new transport is only a new URL scheme here. A resumable
            // server asks every client for a handshake and acknowledgements: the raw
            // client makes them for it (`pipelined_resumable`), so that the figure is
            // the server's cost alone.
            let raw_client = *transport == "tcp";
            let resumable = kind == Kind::GonetResume;
            let reconnect = resumable;
            let mut streams = Vec::with_capacity(*conns);
            let mut clients = Vec::new();
            for i in 0..*conns {
                if raw_client {
                    streams.push(load::connect(&addr).await?);
                } else {
                    let cert = server.cert.as_deref();
                    clients.push(
                        load::PipelinedClient::dial(
                            &server.url,
                            cert,
                            *size,
                            *window,
                            i as u8,
                            reconnect,
                        )
                        .await?,
                    );
                }
            }
            let cpu0 = procfs::cpu_time(pid)?;
            let start = Instant::now();
            let until = start + length;
            let mut tasks = tokio::task::JoinSet::new();
            for (i, stream) in streams.into_iter().enumerate() {
                if resumable {
                    tasks.spawn(load::pipelined_resumable(
                        stream, *size, *window, i as u8, until,
                    ));
                } else {
                    tasks.spawn(load::pipelined(stream, *size, *window, i as u8, until));
                }
            }
            for client in clients {
                tasks.spawn(client.run(until));
            }
            let mut msgs = 0;
            while let Some(n) = tasks.join_next().await {
                msgs += n??;
            }
            ensure!(msgs > 0, "no reply at all");
            let wall = start.elapsed();
            let cpu = procfs::cpu_time(pid)? - cpu0;
            Sample {
                rate: msgs as f64 / wall.as_secs_f64(),
                per_cpu: msgs as f64 / cpu.as_secs_f64(),
                ..Sample::default()
            }
        }
        Scenario::Fanout { members, size } => fanout(&addr, pid, *members, *size, length).await?,
        Scenario::Idle { sessions } => return scale::idle(server, *sessions).await,
        Scenario::Loaded { conns } => return scale::loaded(server, kind, *conns, length).await,
        Scenario::Accept { conns } => return scale::accept(server, *conns).await,
        Scenario::Cluster(_) => unreachable!("run by cluster::run"),
    };
    drop(server);
    Ok(sample)
}

async fn fanout(
    addr: &str,
    pid: u32,
    members: usize,
    size: usize,
    length: Duration,
) -> Result<Sample> {
    const WINDOW: u64 = 32;
    let template = load::Template::new(proto::PUBLISH, size, 11);
    let state = Arc::new(load::FanoutState::default());
    let streams = load::open_members(addr, members, 100).await?;
    let mut receivers = tokio::task::JoinSet::new();
    for stream in streams {
        receivers.spawn(load::receive(stream, template.clone(), state.clone()));
    }
    let cpu0 = procfs::cpu_time(pid)?;
    let start = Instant::now();
    let published = load::publish(
        addr,
        &template,
        members as u64,
        WINDOW,
        &state,
        start + length,
    )
    .await?;
    let want = published * members as u64;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(failed) = receivers.try_join_next() {
            failed??;
            bail!("a fan-out receiver stopped");
        }
        let got = state.delivered.load(std::sync::atomic::Ordering::Relaxed);
        if got == want {
            break;
        }
        ensure!(got < want, "{got} deliveries for {want} expected");
        ensure!(
            Instant::now() < deadline,
            "only {got} of {want} broadcast deliveries arrived: messages were lost"
        );
        let _ = tokio::time::timeout(Duration::from_millis(50), state.progress.notified()).await;
    }
    let wall = start.elapsed();
    let cpu = procfs::cpu_time(pid)? - cpu0;
    receivers.abort_all();
    Ok(Sample {
        rate: want as f64 / wall.as_secs_f64(),
        per_cpu: want as f64 / cpu.as_secs_f64(),
        ..Sample::default()
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Raises the limit of open files: the hard limit to 2^20 first where the process may
/// (root with `CAP_SYS_RESOURCE`; server processes inherit it), then the soft limit to
/// the hard one. Returns the limit in force.
fn raise_nofile() -> u64 {
    const WANT: u64 = 1 << 20;
    if let Ok((_, hard)) = rlimit::getrlimit(rlimit::Resource::NOFILE)
        && hard < WANT
    {
        let _ = rlimit::setrlimit(rlimit::Resource::NOFILE, WANT, WANT);
    }
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(_) => rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(0, |(soft, _)| soft),
    }
}

fn human(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.1}")
    }
}

struct Row {
    scenario: String,
    transport: &'static str,
    metric: &'static str,
    /// The server under test (gonet-rs; with resume on in the resume table).
    measured: Option<f64>,
    /// Its baseline in the same run (the raw server; gonet-rs with resume off).
    baseline: Option<f64>,
    unit: fn(f64) -> String,
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("serve") {
        let kind = Kind::parse(&args.next().context("serve KIND URL")?)?;
        let url = args.next().context("serve KIND URL")?;
        return servers::serve(kind, &url);
    }
    let opts = parse_options()?;
    let nofile = raise_nofile();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    eprintln!(
        "bench: {} round(s), {} s per timed run, load average {} at start",
        opts.rounds,
        opts.secs,
        procfs::load_average()
    );
    let mut rows = Vec::new();
    let mut resume_rows = Vec::new();
    let mut metrics_rows = Vec::new();
    let mut library_rows = Vec::new();
    for (_, mut scenario) in scenarios(&opts) {
        match scenario {
            Scenario::Idle { sessions } => {
                // Each side of every session holds a descriptor: ours and the server's.
                // Without enough, as many sessions as the limit allows, in thousands.
                let need = sessions as u64 + 256;
                if nofile < need {
                    let fit = (nofile.saturating_sub(512) / 1000 * 1000) as usize;
                    println!(
                        "note: {} measured with {fit} (the open-file limit is {nofile}; {need} are needed and it could not be raised: run it as root with CAP_SYS_RESOURCE, or raise the hard limit before the run, e.g. `ulimit -Hn 1048576` in a shell that may)",
                        scenario.label()
                    );
                    if fit == 0 {
                        continue;
                    }
                    scenario = Scenario::Idle { sessions: fit };
                }
            }
            Scenario::Fanout { members, .. } if nofile < members as u64 + 256 => {
                println!(
                    "skipped: {} (the open-file limit is {nofile}; {} are needed and it could not be raised)",
                    scenario.label(),
                    members + 256
                );
                continue;
            }
            Scenario::Cluster(_) => {
                if let Err(err) = cluster::nats_binary() {
                    println!(
                        "skipped: {} ({err}; to get one: {})",
                        scenario.label(),
                        cluster::HOW_TO_GET
                    );
                    continue;
                }
            }
            _ => {}
        }
        let (measured, baseline) = scenario.kinds();
        let kinds: Vec<Kind> = std::iter::once(measured)
            .chain(baseline)
            .chain(scenario.second_baseline())
            .collect();
        let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); kinds.len()];
        for round in 0..opts.rounds {
            for (k, kind) in kinds.iter().enumerate() {
                let sample = runtime
                    .block_on(run(*kind, &scenario, opts.secs))
                    .with_context(|| format!("{} on {}", scenario.label(), kind.name()))?;
                eprintln!(
                    "  round {} {:12} {:40} {:>10}/s {:>10}/cpu-s p50 {:.0} us p99 {:.0} us rss/session {:.0} B (load {})",
                    round + 1,
                    kind.name(),
                    scenario.label(),
                    human(sample.rate),
                    human(sample.per_cpu),
                    sample.p50,
                    sample.p99,
                    sample.rss_per_session,
                    procfs::load_average()
                );
                samples[k].push(sample);
            }
        }
        let med = |k: usize, f: fn(&Sample) -> f64| {
            samples
                .get(k)
                .filter(|s| !s.is_empty())
                .map(|s| median(s.iter().map(f).collect()))
        };
        let table = if scenario.is_resume() {
            &mut resume_rows
        } else if scenario.is_metrics() {
            &mut metrics_rows
        } else {
            &mut rows
        };
        let mut push = |metric, f: fn(&Sample) -> f64, unit: fn(f64) -> String| {
            table.push(Row {
                scenario: scenario.label(),
                transport: scenario.transport(),
                metric,
                measured: med(0, f),
                baseline: med(1, f),
                unit,
            });
        };
        match scenario {
            Scenario::RoundTrip { .. } => {
                push("msgs/s", |s| s.rate, human);
                push("msgs/server-CPU-s", |s| s.per_cpu, human);
                push("p50 latency", |s| s.p50, |v| format!("{v:.1} us"));
                push("p99 latency", |s| s.p99, |v| format!("{v:.1} us"));
            }
            Scenario::Pipelined { .. } => {
                push("msgs/s", |s| s.rate, human);
                push("msgs/server-CPU-s", |s| s.per_cpu, human);
            }
            Scenario::Fanout { .. } => {
                push("deliveries/s", |s| s.rate, human);
                push("deliveries/server-CPU-s", |s| s.per_cpu, human);
            }
            Scenario::Idle { .. } => {
                push(
                    "server RSS/session",
                    |s| s.rss_per_session,
                    |v| format!("{:.2} KiB", v / 1024.0),
                );
            }
            Scenario::Loaded { .. } => {
                push("load msgs/s", |s| s.rate, human);
                push("msgs/server-CPU-s", |s| s.per_cpu, human);
                push("probe p50 latency", |s| s.p50, |v| format!("{v:.1} us"));
                push("probe p99 latency", |s| s.p99, |v| format!("{v:.1} us"));
                push("probe p99.9 latency", |s| s.p999, |v| format!("{v:.1} us"));
            }
            Scenario::Accept { .. } => {
                push("conns/s", |s| s.rate, human);
                push("conns/server-CPU-s", |s| s.per_cpu, human);
            }
            Scenario::Cluster(cluster::Row::Call | cluster::Row::Local) => {
                push("calls/s", |s| s.rate, human);
                push("p50 latency", |s| s.p50, |v| format!("{v:.1} us"));
                push("p99 latency", |s| s.p99, |v| format!("{v:.1} us"));
                push("p99.9 latency", |s| s.p999, |v| format!("{v:.1} us"));
            }
            Scenario::Cluster(cluster::Row::Fanout { .. }) => {
                push("deliveries/s", |s| s.rate, human);
                push(
                    "NATS msgs/broadcast",
                    |s| s.nats_per_broadcast,
                    |v| format!("{v:.2}"),
                );
            }
        }
        // The second baseline against the first.
        if kinds.len() > 2 {
            for (metric, f) in [
                ("msgs/s", (|s| s.rate) as fn(&Sample) -> f64),
                ("msgs/server-CPU-s", |s| s.per_cpu),
            ] {
                library_rows.push(Row {
                    scenario: scenario.label(),
                    transport: scenario.transport(),
                    metric,
                    measured: med(2, f),
                    baseline: med(1, f),
                    unit: human,
                });
            }
        }
    }
    if !rows.is_empty() {
        println!(
            "raw: the baseline on the transport's own library: tokio (tcp), one socket through quinn-udp, batched (udp), tokio-tungstenite (ws; over tokio-rustls: wss), quinn (quic), the kcp crate (kcp), async-nats (nats: gonet-cluster against raw NATS); ratio = gonet-rs / raw"
        );
        print_table(&rows, "gonet-rs", "raw");
    }
    if !library_rows.is_empty() {
        println!();
        println!(
            "ws raw baselines: fastwebsockets against tokio-tungstenite; ratio = fastwebsockets / tungstenite"
        );
        print_table(&library_rows, "fastws", "tungstenite");
    }
    if !resume_rows.is_empty() {
        if !rows.is_empty() {
            println!();
        }
        println!(
            "session resume: the pipelined TCP rows through the raw client, the server with resume on (the client acknowledging with each write) and off; ratio = on / off"
        );
        print_table(&resume_rows, "resume on", "resume off");
    }
    if !metrics_rows.is_empty() {
        println!();
        println!(
            "metrics: the pipelined TCP rows, the server with its metrics on (a Prometheus recorder installed) and off; ratio = on / off"
        );
        print_table(&metrics_rows, "metrics on", "metrics off");
    }
    println!(
        "medians of {} round(s); load average {} at the end",
        opts.rounds,
        procfs::load_average()
    );
    Ok(())
}

/// Prints rows with `measured` and `baseline` as the headings of the two figures; the
/// ratio is measured / baseline.
fn print_table(rows: &[Row], measured: &str, baseline: &str) {
    let cell = |v: Option<f64>, unit: fn(f64) -> String| v.map_or_else(|| "-".into(), unit);
    println!(
        "| {:<34} | {:<9} | {:<23} | {:>12} | {:>12} | {:>7} |",
        "scenario", "transport", "metric", measured, baseline, "ratio"
    );
    println!(
        "|{:-<36}|{:-<11}|{:-<25}|{:->14}|{:->14}|{:->9}|",
        "", "", "", "", "", ""
    );
    for row in rows {
        let ratio = match (row.measured, row.baseline) {
            (Some(g), Some(r)) if r > 0.0 => format!("{:.2}x", g / r),
            _ => "-".into(),
        };
        println!(
            "| {:<34} | {:<9} | {:<23} | {:>12} | {:>12} | {:>7} |",
            row.scenario,
            row.transport,
            row.metric,
            cell(row.measured, row.unit),
            cell(row.baseline, row.unit),
            ratio
        );
    }
}
