//! A chat server and a terminal client on services generated from `schemas/chat.proto`:
//! clients join a room and say lines; the server pushes each line, and who comes and
//! goes, to the room's members through the generated `ChatEvents` service.
//!
//! ```text
//! cargo run -p gonet-examples --example chat -- server tcp://127.0.0.1:7100
//! cargo run -p gonet-examples --example chat -- client tcp://127.0.0.1:7100 ada
//! ```
//!
//! Any transport works; over `wss://` and `quic://` the server presents a development
//! certificate and the client trusts it with `--ca FILE` (saved by the server's
//! `--write-cert FILE`) or skips verification with `--insecure`:
//!
//! ```text
//! cargo run -p gonet-examples --example chat -- server quic://127.0.0.1:7100 --write-cert /tmp/chat.der
//! cargo run -p gonet-examples --example chat -- client quic://127.0.0.1:7100 ada --ca /tmp/chat.der
//! ```
//!
//! In the client, type a line to say it, `/join ROOM` to change rooms, `/leave` to leave
//! the room and `/quit` (or end of input) to quit. Both ends take `--codec
//! protobuf|json|xml|binary` (the same on both; protobuf by default).

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

use gonet::{Builder, Codec, Router, Session, Status};
use gonet_examples::{TLS_USAGE, TlsArgs};
use tokio::io::{AsyncBufReadExt, BufReader};

gonet::include_protos!();

use chat::{
    ChatEvents, ChatEventsServer, ChatService, ChatServiceClient, ChatServiceServer, Join, Joined,
    Leave, Presence, Said, Say, SayAck,
};

const USAGE: &str = "usage:
  chat server URL [--codec CODEC]
  chat client URL NAME [--codec CODEC]
URL is tcp://HOST:PORT, udp://HOST:PORT, ws://HOST:PORT/PATH, wss://HOST:PORT/PATH,
quic://HOST:PORT or kcp://HOST:PORT; CODEC is protobuf (default), json, xml or binary.";

/// Who a session is, once it has joined a room.
#[derive(Clone, Debug)]
struct Member {
    name: String,
    room: String,
}

fn group(room: &str) -> String {
    format!("room:{room}")
}

/// Pushes `msg` to every member of `room`, through the generated client's message type.
fn push_to_room<M: gonet::Message>(session: &Session, room: &str, msg: &M) {
    if let Some(pool) = session.pool()
        && let Err(err) = pool.broadcast_group(&group(room), msg)
    {
        tracing::warn!(%err, room, "push failed");
    }
}

/// Takes `session` out of its room and tells the room.
fn leave_room(session: &Session) {
    if let Some(member) = session.remove::<Member>() {
        session.leave(&group(&member.room));
        push_to_room(
            session,
            &member.room,
            &Presence {
                room: member.room.clone(),
                name: member.name,
                joined: false,
            },
        );
    }
}

/// The server side of `ChatService`.
#[derive(Debug, Default)]
struct ChatServer {
    seq: AtomicU64,
}

impl ChatService for ChatServer {
    async fn join(&self, session: &Session, req: Join) -> Result<Joined, Status> {
        let (room, name) = (req.room.trim(), req.name.trim());
        if room.is_empty() || name.is_empty() {
            return Err(Status::invalid_argument("a room and a name are needed"));
        }
        leave_room(session);
        session.insert(Member {
            name: name.to_owned(),
            room: room.to_owned(),
        });
        session.join(&group(room));
        push_to_room(
            session,
            room,
            &Presence {
                room: room.to_owned(),
                name: name.to_owned(),
                joined: true,
            },
        );
        let mut members: Vec<String> = session
            .pool()
            .map(|pool| pool.group(&group(room)))
            .unwrap_or_default()
            .iter()
            .filter_map(|s| s.get::<Member>().map(|m| m.name))
            .collect();
        members.sort();
        Ok(Joined {
            room: room.to_owned(),
            members,
        })
    }

    async fn say(&self, session: &Session, req: Say) -> Result<SayAck, Status> {
        let member = session
            .get::<Member>()
            .ok_or_else(|| Status::failed_precondition("join a room first: /join ROOM"))?;
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        push_to_room(
            session,
            &member.room,
            &Said {
                room: member.room.clone(),
                from: member.name,
                content: req.content,
                seq,
            },
        );
        Ok(SayAck { seq })
    }

    async fn leave(&self, session: &Session, _req: Leave) -> Result<(), Status> {
        leave_room(session);
        Ok(())
    }
}

/// The client side of the pushes: prints them.
#[derive(Debug)]
struct Printer;

impl ChatEvents for Printer {
    async fn said(&self, _session: &Session, msg: Said) -> Result<(), Status> {
        println!("[{}] {}: {}", msg.room, msg.from, msg.content);
        Ok(())
    }

    async fn presence(&self, _session: &Session, msg: Presence) -> Result<(), Status> {
        let verb = if msg.joined { "joined" } else { "left" };
        println!("* {} {verb} {}", msg.name, msg.room);
        Ok(())
    }
}

async fn serve(url: &str, codec: Codec, tls: &TlsArgs) -> Result<(), Box<dyn std::error::Error>> {
    let router = Router::new().service(ChatServiceServer::new(ChatServer::default()));
    let server = tls
        .server(Builder::new())?
        .codec(codec)
        .router(router)
        .on_close(|session, _reason| leave_room(session))
        .serve(url)
        .await?;
    tls.after_serve(&server)?;
    let stop = gonet::shutdown_signal()?;
    tracing::info!(url = %server.url(), %codec, "chat server listening; Ctrl-C or SIGTERM stops it");
    stop.await;
    server.shutdown().await;
    Ok(())
}

async fn client(
    url: &str,
    name: &str,
    codec: Codec,
    tls: &TlsArgs,
) -> Result<(), Box<dyn std::error::Error>> {
    let session = tls
        .client(Builder::new())?
        .codec(codec)
        .router(Router::new().service(ChatEventsServer::new(Printer)))
        .dial(url)
        .await?;
    let chat = ChatServiceClient::new(session.clone());
    let joined = chat
        .join(Join {
            room: "lobby".into(),
            name: name.into(),
        })
        .await?;
    println!("joined {} with {}", joined.room, joined.members.join(", "));

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        let line = tokio::select! {
            line = lines.next_line() => line?,
            reason = session.closed() => {
                println!("disconnected: {reason}");
                return Ok(());
            }
        };
        let Some(line) = line else { break };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let result = if line == "/quit" {
            break;
        } else if line == "/leave" {
            chat.leave(Leave {}).await.map_err(|e| e.to_string())
        } else if let Some(room) = line.strip_prefix("/join ") {
            chat.join(Join {
                room: room.trim().into(),
                name: name.into(),
            })
            .await
            .map(|j| println!("joined {} with {}", j.room, j.members.join(", ")))
            .map_err(|e| e.to_string())
        } else {
            chat.say(Say {
                content: line.into(),
            })
            .await
            .map(drop)
            .map_err(|e| e.to_string())
        };
        if let Err(err) = result {
            println!("! {err}");
        }
    }
    session.close("bye");
    session.closed().await;
    Ok(())
}

/// The validated command line.
enum Command {
    Server { url: String },
    Client { url: String, name: String },
}

fn parse(args: &[String]) -> Result<(Command, Codec, TlsArgs), String> {
    let mut codec = Codec::Protobuf;
    let mut tls = TlsArgs::default();
    let mut words = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if tls.take(arg, &mut it.by_ref().cloned())? {
            continue;
        }
        if arg == "--codec" {
            let name = it.next().ok_or("--codec needs a value")?;
            codec = name
                .parse()
                .map_err(|e: gonet::ParseCodecError| e.to_string())?;
        } else {
            words.push(arg.as_str());
        }
    }
    let command = match words.as_slice() {
        ["server", url] => Command::Server {
            url: (*url).to_owned(),
        },
        ["client", url, name] => Command::Client {
            url: (*url).to_owned(),
            name: (*name).to_owned(),
        },
        _ => return Err("unexpected arguments".into()),
    };
    Ok((command, codec, tls))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, codec, tls) = match parse(&args) {
        Ok(parsed) => parsed,
        Err(err) => {
            eprintln!("{err}\n{USAGE}\n{TLS_USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match command {
        Command::Server { url } => serve(&url, codec, &tls).await,
        Command::Client { url, name } => client(&url, &name, codec, &tls).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("chat: {err}");
            ExitCode::FAILURE
        }
    }
}
