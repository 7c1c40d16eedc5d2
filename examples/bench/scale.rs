//! The scale rows: latency under load (`loaded`), the accept rate (`accept`) and many
//! idle sessions (`idle`, `idle100k`).
//!
//! - Latency under load: a short pipelined run (50 connections x 64 requests in flight,
//!   64 B) measures the peak of the gonet-rs server in messages per second of wall time;
//!   then 50 connections send at half that rate, each paced by a token bucket refilled
//!   every millisecond, while one more connection (the probe) makes sequential round
//!   trips and records their latencies. The baseline is paced at the same absolute rate
//!   (half the peak of gonet-rs, not of itself), so that both servers carry the same
//!   load and the latencies compare like for like.
//! - Accept rate: 10,000 connections opened, 100 at a time, each making one round trip
//!   (so that the server has accepted it and made a session), timed from the first
//!   connect to the last reply.
//! - Idle sessions: every session makes one round trip and goes quiet; the server's
//!   resident memory grows by so much per session. 127.0.0.1 has about 28,000 ephemeral
//!   ports to connect from, so past [`PER_SOURCE`] connections the client binds its
//!   sockets to the next loopback address (127.0.0.2, 127.0.0.3, ...) as their source;
//!   every address of 127.0.0.0/8 is loopback on Linux.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::servers::Kind;
use crate::{Sample, ServerProc, load, procfs, proto};

/// Connections from one source address before the next one is used.
pub(crate) const PER_SOURCE: usize = 20_000;

/// How often a paced connection refills its token bucket and writes what is due.
const TICK: Duration = Duration::from_millis(1);

/// Requests a paced connection may have in flight; what the pace asks beyond this is
/// dropped (and counted), so a server that falls behind cannot make the client buffer
/// without bound.
const MAX_IN_FLIGHT: u64 = 1024;

/// How long a paced connection waits for its last replies.
const DRAIN: Duration = Duration::from_secs(10);

/// The peak (messages per second of wall time) of the last gonet-rs run of `loaded`,
/// which paces the baseline's run that follows it.
static PEAK: Mutex<Option<f64>> = Mutex::new(None);

/// Connects the `i`-th connection of a run: from 127.0.0.1 for the first
/// [`PER_SOURCE`], then from 127.0.0.2, and so on.
pub(crate) async fn connect_nth(addr: SocketAddr, i: usize) -> Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    let source = i / PER_SOURCE;
    if source > 0 {
        let host = u8::try_from(1 + source).context("too many source addresses")?;
        socket.bind(SocketAddr::new(Ipv4Addr::new(127, 0, 0, host).into(), 0))?;
    }
    let stream = socket
        .connect(addr)
        .await
        .with_context(|| format!("connecting to {addr} (connection {i})"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Opens `n` sessions, `concurrency` at a time, each making one round trip.
pub(crate) async fn open_sessions(
    addr: SocketAddr,
    n: usize,
    concurrency: usize,
) -> Result<Vec<TcpStream>> {
    let mut streams = Vec::with_capacity(n);
    let template = load::Template::new(proto::ECHO, 64, 3);
    let mut tasks = tokio::task::JoinSet::new();
    let mut next = 0;
    while streams.len() < n {
        while next < n && tasks.len() < concurrency {
            let template = template.clone();
            let i = next;
            next += 1;
            tasks.spawn(async move {
                let mut stream = connect_nth(addr, i).await?;
                let mut out = Vec::with_capacity(70);
                template.put(&mut out, 1);
                stream.write_all(&out).await?;
                let mut buf = BytesMut::with_capacity(256);
                while buf.len() < out.len() {
                    let read = tokio::time::timeout(DRAIN, stream.read_buf(&mut buf))
                        .await
                        .context("no reply within the drain timeout")??;
                    ensure!(read > 0, "the server closed connection {i}");
                }
                ensure!(buf.len() == out.len(), "an extra reply arrived");
                template.check(&buf, proto::ECHO_REPLY, 1)?;
                anyhow::Ok(stream)
            });
        }
        let stream = tasks.join_next().await.context("no task")???;
        streams.push(stream);
    }
    Ok(streams)
}

fn socket_addr(server: &ServerProc) -> Result<SocketAddr> {
    server
        .addr()
        .parse()
        .with_context(|| format!("the server's address {:?}", server.addr()))
}

/// `sessions` idle sessions: the server's memory per session.
pub(crate) async fn idle(server: ServerProc, sessions: usize) -> Result<Sample> {
    let pid = server.pid();
    let addr = socket_addr(&server)?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let rss0 = procfs::rss(pid)?;
    let streams = open_sessions(addr, sessions, 256).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss1 = procfs::rss(pid)?;
    // End the server first, so that the TIME_WAIT sockets are its own.
    drop(server);
    drop(streams);
    Ok(Sample {
        rss_per_session: rss1.saturating_sub(rss0) as f64 / sessions as f64,
        ..Sample::default()
    })
}

/// Opens `conns` sessions, 100 at a time: connections per second of wall time and of
/// server CPU time.
pub(crate) async fn accept(server: ServerProc, conns: usize) -> Result<Sample> {
    let pid = server.pid();
    let addr = socket_addr(&server)?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let cpu0 = procfs::cpu_time(pid)?;
    let start = Instant::now();
    let streams = open_sessions(addr, conns, 100).await?;
    let wall = start.elapsed();
    let cpu = procfs::cpu_time(pid)? - cpu0;
    drop(server);
    drop(streams);
    Ok(Sample {
        rate: conns as f64 / wall.as_secs_f64(),
        per_cpu: conns as f64 / cpu.as_secs_f64().max(0.01),
        ..Sample::default()
    })
}

/// The pipelined peak of the server at `addr`: `conns` connections x 64 in flight, 64 B,
/// messages per second of wall time.
async fn peak(addr: &str, conns: usize, length: Duration) -> Result<f64> {
    let mut streams = Vec::with_capacity(conns);
    for _ in 0..conns {
        streams.push(load::connect(addr).await?);
    }
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, stream) in streams.into_iter().enumerate() {
        tasks.spawn(load::pipelined(stream, 64, 64, i as u8, start + length));
    }
    let mut msgs = 0;
    while let Some(n) = tasks.join_next().await {
        msgs += n??;
    }
    Ok(msgs as f64 / start.elapsed().as_secs_f64())
}

/// What a paced connection did.
#[derive(Default)]
struct Paced {
    replies: u64,
    /// Requests the pace asked for that were dropped for [`MAX_IN_FLIGHT`].
    shed: u64,
}

/// Sends 64 B requests at `rate` a second until `until`, on a token bucket refilled every
/// [`TICK`]; a reader checks every reply. Returns once every reply has arrived.
async fn paced(stream: TcpStream, rate: f64, salt: u8, until: Instant) -> Result<Paced> {
    let template = load::Template::new(proto::ECHO, 64, salt);
    let (mut rd, mut wr) = stream.into_split();
    let received = Arc::new(AtomicU64::new(0));
    // The number of requests sent in all, once the writer has stopped.
    let last = Arc::new(AtomicU64::new(u64::MAX));
    let reader = {
        let (template, received, last) = (template.clone(), received.clone(), last.clone());
        tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(64 * 1024);
            let mut next = 1u64;
            loop {
                if buf.capacity() - buf.len() < 16 * 1024 {
                    buf.reserve(64 * 1024);
                }
                let n = rd.read_buf(&mut buf).await?;
                ensure!(n > 0, "the server closed the connection");
                let mut pos = 0;
                while buf.len() - pos >= 6 {
                    let len = usize::from(u16::from_le_bytes([buf[pos], buf[pos + 1]]));
                    if buf.len() - pos < 2 + len {
                        break;
                    }
                    template.check(&buf[pos..pos + 2 + len], proto::ECHO_REPLY, next)?;
                    next += 1;
                    pos += 2 + len;
                }
                buf.advance(pos);
                received.store(next - 1, Ordering::SeqCst);
                if next - 1 == last.load(Ordering::SeqCst) {
                    return anyhow::Ok(());
                }
            }
        })
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let start = Instant::now();
    let mut out = Vec::with_capacity(70 * 256);
    let (mut due, mut sent, mut shed) = (0u64, 0u64, 0u64);
    loop {
        tick.tick().await;
        let now = Instant::now();
        if now >= until {
            break;
        }
        let target = (rate * (now - start).as_secs_f64()) as u64;
        let mut n = target - due;
        due = target;
        let room = MAX_IN_FLIGHT.saturating_sub(sent - received.load(Ordering::SeqCst));
        if n > room {
            shed += n - room;
            n = room;
        }
        if n == 0 {
            continue;
        }
        out.clear();
        for _ in 0..n {
            sent += 1;
            template.put(&mut out, sent);
        }
        wr.write_all(&out).await?;
    }
    last.store(sent, Ordering::SeqCst);
    if received.load(Ordering::SeqCst) == sent {
        reader.abort();
    } else {
        tokio::time::timeout(DRAIN, reader)
            .await
            .context("replies missing after the drain timeout: messages were lost")???;
    }
    Ok(Paced {
        replies: sent,
        shed,
    })
}

/// Latency under load: the probe's round trips while `conns` connections send at half
/// the pipelined peak of gonet-rs (measured first when `kind` is gonet-rs, and reused
/// for the baseline that follows).
pub(crate) async fn loaded(
    server: ServerProc,
    kind: Kind,
    conns: usize,
    length: Duration,
) -> Result<Sample> {
    let pid = server.pid();
    let addr = server.addr().to_owned();
    let stored = *PEAK.lock().expect("peak");
    let peak = match stored {
        Some(peak) if kind != Kind::Gonet => peak,
        _ => {
            let peak = peak(&addr, conns, length.min(Duration::from_secs(1))).await?;
            *PEAK.lock().expect("peak") = Some(peak);
            peak
        }
    };
    let rate = peak / 2.0;
    let mut streams = Vec::with_capacity(conns);
    for _ in 0..conns {
        streams.push(load::connect(&addr).await?);
    }
    // Let the server settle after the peak run.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cpu0 = procfs::cpu_time(pid)?;
    let start = Instant::now();
    let until = start + length;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, stream) in streams.into_iter().enumerate() {
        tasks.spawn(paced(stream, rate / conns as f64, i as u8, until));
    }
    let mut lat = load::round_trips(&addr, 64, until).await?;
    let mut done = Paced::default();
    while let Some(paced) = tasks.join_next().await {
        let paced = paced??;
        done.replies += paced.replies;
        done.shed += paced.shed;
    }
    let wall = start.elapsed();
    let cpu = procfs::cpu_time(pid)? - cpu0;
    drop(server);
    ensure!(!lat.is_empty(), "the probe made no round trip");
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e6;
    eprintln!(
        "  {}: peak of gonet-rs {:.0} msgs/s, paced at {:.0} msgs/s; {} sent, {} shed, {} probe round trips",
        kind.name(),
        peak,
        rate,
        done.replies,
        done.shed,
        lat.len()
    );
    Ok(Sample {
        rate: done.replies as f64 / wall.as_secs_f64(),
        per_cpu: (done.replies + lat.len() as u64) as f64 / cpu.as_secs_f64().max(0.01),
        p50: pct(0.50),
        p99: pct(0.99),
        p999: pct(0.999),
        ..Sample::default()
    })
}
