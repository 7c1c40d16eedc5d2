//! The two servers under test, each run in a process of its own (`bench serve KIND URL`)
//! so that its CPU time and memory can be read from `/proc`.
//!
//! - `gonet`: a gonet-rs server with a real service: every request is decoded with the
//!   protobuf codec, handled by an async handler and its reply encoded.
//! - `gonet-resume`: the same server keeping its sessions across a dropped connection
//!   (`Builder::resume`): it counts what it receives, acknowledges it, and keeps what it
//!   sends until the client acknowledges it. Only clients that make a handshake (a
//!   gonet-rs client with a reconnect policy) can connect.
//! - `raw`: the baseline, hand-written on tokio: a large read buffer, frames parsed in
//!   place, every complete frame of one read answered in one write. It decodes nothing;
//!   it is the practical ceiling of the machine for this wire format. On the other
//!   transports, the same on the transport's own library (`raw.rs`).
//! - `raw-fastws`: the `ws://` baseline on fastwebsockets instead of tungstenite
//!   (`raw.rs`).

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use gonet::{Builder, Codec, Router, Session, Status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::proto::{
    self, CountedFanout, Echo, EchoReply, Fanout, Join, Joined, Publish, Published,
};

/// The group every fan-out receiver joins.
const GROUP: &str = "fanout";

/// Which server a process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Gonet,
    /// The gonet-rs server with session resume on.
    GonetResume,
    /// The gonet-rs server with its metrics on, recorded by a Prometheus recorder.
    GonetMetrics,
    Raw,
    /// The WebSocket baseline on fastwebsockets.
    RawFastws,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Gonet => "gonet",
            Kind::GonetResume => "gonet-resume",
            Kind::GonetMetrics => "gonet-metrics",
            Kind::Raw => "raw",
            Kind::RawFastws => "raw-fastws",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self> {
        match s {
            "gonet" => Ok(Kind::Gonet),
            "gonet-resume" => Ok(Kind::GonetResume),
            "gonet-metrics" => Ok(Kind::GonetMetrics),
            "raw" => Ok(Kind::Raw),
            "raw-fastws" => Ok(Kind::RawFastws),
            other => {
                bail!(
                    "unknown server kind {other:?} (gonet, gonet-resume, gonet-metrics, raw or raw-fastws)"
                )
            }
        }
    }
}

/// `bench serve KIND URL`: serves until standard input closes, after printing the URL
/// clients dial on the first line of standard output, followed for `wss://` and
/// `quic://` by a space and the server's certificate (DER, in hex) for clients to trust.
/// SIGTERM or Ctrl-C stops it too, the gonet server after draining its sessions.
pub(crate) fn serve(kind: Kind, url: &str) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let stop = gonet::shutdown_signal()?;
        let (mut dial, server) = match kind {
            Kind::Gonet | Kind::GonetResume | Kind::GonetMetrics => {
                let server = gonet_server(url, kind).await?;
                (server.url(), Some(server))
            }
            Kind::Raw if url.starts_with("tcp://") => (raw_server(url).await?, None),
            // The other transports' baselines print their certificate themselves.
            Kind::Raw | Kind::RawFastws => (crate::raw::serve(kind, url).await?, None),
        };
        if let Some(cert) = server.as_ref().and_then(gonet::Server::certificate) {
            dial.push(' ');
            for byte in cert {
                dial.push_str(&format!("{byte:02x}"));
            }
        }
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{dial}")?;
        stdout.flush()?;
        drop(stdout);
        // The parent closes our standard input (or dies): time to go.
        let stdin_closed = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            while std::io::stdin().lock().read_line(&mut line).unwrap_or(0) > 0 {
                line.clear();
            }
        });
        tokio::select! {
            closed = stdin_closed => closed?,
            () = stop => {
                if let Some(server) = server {
                    server.shutdown().await;
                }
            }
        }
        anyhow::Ok(())
    })?;
    // Exit without tearing down thousands of sessions one by one.
    std::process::exit(0);
}

/// The gonet-rs service: echo, join, publish.
pub(crate) fn router() -> Router {
    Router::new()
        .route(|_: Session, req: Echo| async move {
            EchoReply {
                seq: req.seq,
                body: req.body,
            }
        })
        .route(|session: Session, _: Join| async move {
            session.join(GROUP);
            Joined {}
        })
        .route(|session: Session, req: Publish| async move {
            let pool = session
                .pool()
                .ok_or_else(|| Status::internal("not a server session"))?;
            let msg = CountedFanout(Fanout {
                seq: req.seq,
                body: req.body,
            });
            pool.broadcast_group(GROUP, &msg)
                .map_err(|e| Status::internal(e.to_string()))?;
            Ok::<_, Status>(Published {
                seq: req.seq,
                encodes: proto::FANOUT_ENCODES.load(Ordering::Relaxed),
            })
        })
}

/// How long a resumable session waits for its client to come back.
const RESUME_GRACE: Duration = Duration::from_secs(30);

async fn gonet_server(url: &str, kind: Kind) -> Result<gonet::Server> {
    let mut builder = Builder::new().codec(Codec::Protobuf).router(router());
    if kind == Kind::GonetResume {
        builder = builder.resume(RESUME_GRACE);
    }
    if kind == Kind::GonetMetrics {
        // What a production server would run: every metric recorded into a Prometheus
        // registry (scraped or not, the recording is the cost).
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .context("installing the metrics recorder")?;
        builder = builder.metrics(true);
    }
    builder
        .serve(url)
        .await
        .with_context(|| format!("serving {url}"))
}

/// The members of the baseline's fan-out group.
type Members = Arc<Mutex<Vec<mpsc::UnboundedSender<Bytes>>>>;

async fn raw_server(url: &str) -> Result<String> {
    let Some(addr) = url.strip_prefix("tcp://") else {
        bail!("the raw baseline serves tcp:// only, not {url}");
    };
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let members = Members::default();
    let encodes = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(raw_connection(stream, members.clone(), encodes.clone()));
        }
    });
    Ok(format!("tcp://{local}"))
}

fn put_frame(out: &mut Vec<u8>, id: u32, body: &[u8]) {
    out.put_u16_le((4 + body.len()) as u16);
    out.put_u32_le(id);
    out.extend_from_slice(body);
}

/// One baseline connection. Any malformed input ends it.
async fn raw_connection(stream: TcpStream, members: Members, encodes: Arc<AtomicU64>) {
    const BUF: usize = 64 * 1024;
    let _ = stream.set_nodelay(true);
    let (mut rd, wr) = stream.into_split();
    let mut wr = Some(wr);
    let mut buf = BytesMut::with_capacity(BUF);
    let mut out = Vec::with_capacity(BUF);
    loop {
        if buf.capacity() - buf.len() < BUF / 4 {
            buf.reserve(BUF);
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut join = false;
        let mut pos = 0;
        while buf.len() - pos >= 6 {
            let len = usize::from(u16::from_le_bytes([buf[pos], buf[pos + 1]]));
            if len < 4 {
                return;
            }
            if buf.len() - pos < 2 + len {
                break;
            }
            let id = u32::from_le_bytes(buf[pos + 2..pos + 6].try_into().expect("4 bytes"));
            let body = &buf[pos + 6..pos + 2 + len];
            match id {
                proto::ECHO => put_frame(&mut out, proto::ECHO_REPLY, body),
                proto::JOIN => {
                    put_frame(&mut out, proto::JOINED, &[]);
                    join = true;
                }
                proto::PUBLISH if body.len() >= 9 => {
                    let seq = (&body[1..9]).get_u64_le();
                    let mut frame = Vec::with_capacity(6 + body.len());
                    put_frame(&mut frame, proto::FANOUT, body);
                    let frame = Bytes::from(frame);
                    let n = encodes.fetch_add(1, Ordering::Relaxed) + 1;
                    for member in members.lock().expect("members").iter() {
                        let _ = member.send(frame.clone());
                    }
                    let mut reply = [0u8; 18];
                    reply[0] = 0x09;
                    reply[1..9].copy_from_slice(&seq.to_le_bytes());
                    reply[9] = 0x11;
                    reply[10..18].copy_from_slice(&n.to_le_bytes());
                    put_frame(&mut out, proto::PUBLISHED, &reply);
                }
                _ => return,
            }
            pos += 2 + len;
        }
        buf.advance(pos);
        if join {
            // From now on this connection's writes come from the group. The reply goes
            // first through the member's queue, and the member is in the group before
            // its client can read that reply: no broadcast published after it is missed.
            let Some(w) = wr.take() else { return };
            let (tx, rx) = mpsc::unbounded_channel();
            let _ = tx.send(Bytes::from(std::mem::take(&mut out)));
            members.lock().expect("members").push(tx);
            tokio::spawn(raw_member_writer(w, rx));
        } else if !out.is_empty() {
            let Some(w) = wr.as_mut() else {
                return; // a group member sends nothing after joining
            };
            if w.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
    }
}

/// Writes what the group queues for one member, everything queued in one write.
async fn raw_member_writer(
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
) {
    let mut frames = Vec::with_capacity(256);
    let mut out = Vec::with_capacity(64 * 1024);
    while rx.recv_many(&mut frames, 256).await > 0 {
        out.clear();
        for frame in frames.drain(..) {
            out.extend_from_slice(&frame);
        }
        if wr.write_all(&out).await.is_err() {
            return;
        }
    }
}
