//! An echo server and client on the generated `echo.Echo` service.
//!
//! One command runs both in one process, over TCP on a free port, and exits:
//!
//! ```text
//! cargo run -p gonet-examples --example echo
//! ```
//!
//! Or run them apart, on any URL this build supports:
//!
//! ```text
//! cargo run -p gonet-examples --example echo -- server tcp://127.0.0.1:7000
//! cargo run -p gonet-examples --example echo -- client tcp://127.0.0.1:7000
//! ```
//!
//! Both ends take `--codec protobuf|json|xml|binary` (the same on both; protobuf by
//! default) and the client `--count N` (10 by default).

use std::process::ExitCode;

use gonet::{Builder, Codec, Router, Session, Status};

gonet::include_protos!();

use echo::{Echo, EchoClient, EchoServer, Ping, Pong};

const USAGE: &str = "usage:
  echo                       run a server and a client in one process
  echo server URL            serve until Ctrl-C
  echo client URL            send --count pings and print the pongs
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
}

enum Mode {
    Both,
    Server(String),
    Client(String),
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut positional = Vec::new();
    let mut codec = Codec::Protobuf;
    let mut count = 10;
    while let Some(arg) = args.next() {
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
        [] => Mode::Both,
        [mode, url] if mode == "server" => Mode::Server(url.clone()),
        [mode, url] if mode == "client" => Mode::Client(url.clone()),
        other => return Err(format!("unexpected arguments: {}", other.join(" "))),
    };
    Ok(Args { mode, codec, count })
}

async fn serve(url: &str, codec: Codec) -> Result<gonet::Server, gonet::ServeError> {
    Builder::new()
        .codec(codec)
        .router(Router::new().service(EchoServer::new(EchoService)))
        .on_connect(|s| tracing::info!(session = s.id(), peer = %s.peer_addr(), "connected"))
        .on_close(|s, reason| tracing::info!(session = s.id(), %reason, "closed"))
        .serve(url)
        .await
}

async fn client(url: &str, codec: Codec, count: u64) -> Result<(), Box<dyn std::error::Error>> {
    let session = Builder::new().codec(codec).dial(url).await?;
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
        Mode::Both => {
            let server = serve("tcp://127.0.0.1:0", args.codec).await?;
            println!("echo server on {}", server.url());
            client(&server.url(), args.codec, args.count).await?;
            server.shutdown().await;
        }
        Mode::Server(url) => {
            let server = serve(&url, args.codec).await?;
            println!(
                "echo server on {} ({} codec); Ctrl-C stops it",
                server.url(),
                args.codec
            );
            tokio::signal::ctrl_c().await?;
            server.shutdown().await;
        }
        Mode::Client(url) => client(&url, args.codec, args.count).await?,
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
            eprintln!("{USAGE}");
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
