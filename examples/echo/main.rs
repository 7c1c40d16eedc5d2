//! An echo server and client on the generated `echo.Echo` service, over any transport.
//!
//! One command runs both in one process, over TCP on a free port, and exits:
//!
//! ```text
//! cargo run -p gonet-examples --example echo
//! ```
//!
//! Give a URL to run both over another transport (port 0 picks a free one):
//!
//! ```text
//! cargo run -p gonet-examples --example echo -- udp://127.0.0.1:0
//! cargo run -p gonet-examples --example echo -- ws://127.0.0.1:0/echo
//! cargo run -p gonet-examples --example echo -- wss://127.0.0.1:0/echo
//! cargo run -p gonet-examples --example echo -- quic://127.0.0.1:0
//! cargo run -p gonet-examples --example echo -- kcp://127.0.0.1:0
//! ```
//!
//! Or run them apart:
//!
//! ```text
//! cargo run -p gonet-examples --example echo -- server tcp://127.0.0.1:7000
//! cargo run -p gonet-examples --example echo -- client tcp://127.0.0.1:7000
//! ```
//!
//! Over `wss://` and `quic://` the server presents a development certificate unless
//! given `--cert FILE --key FILE`; `--write-cert FILE` saves it for the client's
//! `--ca FILE` (or the client skips verification with `--insecure`, for development):
//!
//! ```text
//! cargo run -p gonet-examples --example echo -- server quic://127.0.0.1:7000 --write-cert /tmp/echo.der
//! cargo run -p gonet-examples --example echo -- client quic://127.0.0.1:7000 --ca /tmp/echo.der
//! ```
//!
//! Both ends take `--codec protobuf|json|xml|binary` (the same on both; protobuf by
//! default) and the client `--count N` (10 by default).

use std::process::ExitCode;

use gonet::{Builder, Codec, Router, Session, Status};
use gonet_examples::{TLS_USAGE, TlsArgs, trust_server};

gonet::include_protos!();

use echo::{Echo, EchoClient, EchoServer, Ping, Pong};

const USAGE: &str = "usage:
  echo [URL]                 run a server and a client in one process (default tcp://127.0.0.1:0)
  echo server URL            serve until Ctrl-C or SIGTERM, then drain
  echo client URL            send --count pings and print the pongs
URL: tcp://HOST:PORT, udp://HOST:PORT, ws://HOST:PORT/PATH, wss://HOST:PORT/PATH,
     quic://HOST:PORT or kcp://HOST:PORT
options: --codec protobuf|json|xml|binary (default protobuf), --count N (default 10)";

struct EchoService;

impl Echo for EchoService {
    async fn ping(&self, session: &Session, req: Ping) -> Result<Pong, Status> {
        tracing::debug!(session = session.id(), seq = req.seq, "ping");
        Ok(Pong {
            seq: req.seq,
            text: req.text,
        })
    }
}

struct Args {
    mode: Mode,
    codec: Codec,
    count: u64,
    tls: TlsArgs,
}

enum Mode {
    Both(String),
    Server(String),
    Client(String),
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut positional = Vec::new();
    let mut codec = Codec::Protobuf;
    let mut count = 10;
    let mut tls = TlsArgs::default();
    while let Some(arg) = args.next() {
        if tls.take(&arg, &mut args)? {
            continue;
        }
        match arg.as_str() {
            "--codec" => {
                let value = args.next().ok_or("--codec needs a value")?;
                codec = value.parse().map_err(|e| format!("{e}"))?;
            }
            "--count" => {
                let value = args.next().ok_or("--count needs a value")?;
                count = value
                    .parse()
                    .map_err(|_| format!("--count takes a number, not {value:?}"))?;
            }
            "-h" | "--help" => return Err(String::new()),
            _ => positional.push(arg),
        }
    }
    let mode = match positional.as_slice() {
        [] => Mode::Both("tcp://127.0.0.1:0".to_owned()),
        [url] if url.contains("://") => Mode::Both(url.clone()),
        [mode, url] if mode == "server" => Mode::Server(url.clone()),
        [mode, url] if mode == "client" => Mode::Client(url.clone()),
        other => return Err(format!("unexpected arguments: {}", other.join(" "))),
    };
    Ok(Args {
        mode,
        codec,
        count,
        tls,
    })
}

async fn serve(
    url: &str,
    codec: Codec,
    tls: &TlsArgs,
) -> Result<gonet::Server, Box<dyn std::error::Error>> {
    let server = tls
        .server(Builder::new())?
        .codec(codec)
        .router(Router::new().service(EchoServer::new(EchoService)))
        .on_connect(|s| tracing::info!(session = s.id(), peer = %s.peer_addr(), "connected"))
        .on_close(|s, reason| tracing::info!(session = s.id(), %reason, "closed"))
        .serve(url)
        .await?;
    tls.after_serve(&server)?;
    Ok(server)
}

async fn client(
    builder: Builder,
    url: &str,
    codec: Codec,
    count: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let session = builder.codec(codec).dial(url).await?;
    let echo = EchoClient::new(session.clone());
    for seq in 0..count {
        let pong = echo
            .ping(Ping {
                seq,
                text: format!("hello #{seq}"),
            })
            .await?;
        if pong.seq != seq {
            return Err(format!("pong {} answered ping {seq}", pong.seq).into());
        }
        println!("pong {}: {}", pong.seq, pong.text);
    }
    session.close("done");
    session.closed().await;
    Ok(())
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    match args.mode {
        Mode::Both(url) => {
            let server = serve(&url, args.codec, &args.tls).await?;
            println!("echo server on {}", server.url());
            let builder = trust_server(Builder::new(), &server)?;
            client(builder, &server.url(), args.codec, args.count).await?;
            server.shutdown().await;
        }
        Mode::Server(url) => {
            let server = serve(&url, args.codec, &args.tls).await?;
            let stop = gonet::shutdown_signal()?;
            println!(
                "echo server on {} ({} codec); Ctrl-C or SIGTERM stops it",
                server.url(),
                args.codec
            );
            stop.await;
            server.shutdown().await;
        }
        Mode::Client(url) => {
            let builder = args.tls.client(Builder::new())?;
            client(builder, &url, args.codec, args.count).await?
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(err) => {
            if !err.is_empty() {
                eprintln!("error: {err}");
            }
            eprintln!("{USAGE}\n{TLS_USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
