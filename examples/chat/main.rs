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
//! A server given `--metrics ADDR` serves the runtime's metrics as Prometheus text at
//! `http://ADDR/metrics`:
//!
//! ```text
//! cargo run -p gonet-examples --example chat -- server tcp://127.0.0.1:7100 --metrics 127.0.0.1:9100
//! ```
//!
//! Built with `--features otel` and given an OTLP endpoint in the standard variables,
//! it exports its spans too (see `gonet_examples::logging`); a call whose metadata
//! carries a W3C `traceparent` is handled in the caller's trace:
//!
//! ```text
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 OTEL_SERVICE_NAME=chat \
//!     cargo run -p gonet-examples --features otel --example chat -- server tcp://127.0.0.1:7100
//! ```
//!
//! In the client, type a line to say it, `/join ROOM` to change rooms, `/leave` to leave
//! the room and `/quit` (or end of input) to quit. Both ends take `--codec
//! protobuf|json|xml|binary` (the same on both; protobuf by default).
//!
//! Over `tcp://`, `ws://` and `wss://` a client whose connection drops connects again
//! and resumes its session: it stays in its room under its name, and no line said
//! either way in the meantime is lost.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::{Parser, Subcommand};
use gonet::{Builder, Codec, LinkEvent, Reconnect, Router, Session, Status};
use gonet_examples::{ClientTlsArgs, CodecName, MetricsArgs, ServerTlsArgs, explain_dial, url};
use tokio::io::{AsyncBufReadExt, BufReader};

gonet::include_protos!();

use chat::{
    ChatEvents, ChatEventsServer, ChatService, ChatServiceClient, ChatServiceServer, Hello, Join,
    Joined, Leave, Presence, Said, Say, SayAck,
};

const EXAMPLES: &str = "\
URL: tcp://HOST:PORT, udp://HOST:PORT, ws://HOST:PORT/PATH, wss://HOST:PORT/PATH,
     quic://HOST:PORT or kcp://HOST:PORT

Examples:
  chat server tcp://127.0.0.1:7100
  chat client tcp://127.0.0.1:7100 ada
  chat server quic://127.0.0.1:7100 --write-cert /tmp/chat.der
  chat client quic://127.0.0.1:7100 ada --ca /tmp/chat.der
  chat server tcp://127.0.0.1:7100 --metrics 127.0.0.1:9100

In the client, type a line to say it, /join ROOM to change rooms, /leave to leave the
room and /quit (or end of input) to quit.";

/// A chat server and a terminal client: rooms, lines said in them, and who comes and goes.
#[derive(Debug, Parser)]
#[command(name = "chat", after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve rooms until Ctrl-C or SIGTERM, then drain
    #[command(after_help = EXAMPLES)]
    Server {
        /// Where to listen
        #[arg(value_parser = url)]
        url: String,
        /// The body format (the clients' must be the same)
        #[arg(long, value_enum, default_value_t = CodecName::Protobuf)]
        codec: CodecName,
        #[command(flatten)]
        tls: ServerTlsArgs,
        #[command(flatten)]
        metrics: MetricsArgs,
    },
    /// Join the lobby of a server as NAME, and chat from the terminal
    #[command(after_help = EXAMPLES)]
    Client {
        /// The server to dial
        #[arg(value_parser = url)]
        url: String,
        /// Who you are in the rooms
        name: String,
        /// The body format (the server's must be the same)
        #[arg(long, value_enum, default_value_t = CodecName::Protobuf)]
        codec: CodecName,
        #[command(flatten)]
        tls: ClientTlsArgs,
    },
}

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
        // The name the client logged in with, in its handshake.
        let Some(uid) = session.uid() else {
            return Err(Status::unauthenticated("no name: the handshake binds one"));
        };
        let (room, name) = (req.room.trim(), uid.as_ref());
        if room.is_empty() {
            return Err(Status::invalid_argument("a room is needed"));
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

/// The client side of the pushes: prints them (and hands each line to `lines`, if
/// set).
#[derive(Debug, Default)]
struct Printer {
    lines: Option<tokio::sync::mpsc::UnboundedSender<String>>,
}

impl Printer {
    fn print(&self, line: String) {
        println!("{line}");
        if let Some(lines) = &self.lines {
            let _ = lines.send(line);
        }
    }
}

impl ChatEvents for Printer {
    async fn said(&self, _session: &Session, msg: Said) -> Result<(), Status> {
        self.print(format!("[{}] {}: {}", msg.room, msg.from, msg.content));
        Ok(())
    }

    async fn presence(&self, _session: &Session, msg: Presence) -> Result<(), Status> {
        let verb = if msg.joined { "joined" } else { "left" };
        self.print(format!("* {} {verb} {}", msg.name, msg.room));
        Ok(())
    }
}

/// How long a server keeps the session of a client whose connection dropped.
const GRACE: Duration = Duration::from_secs(60);

/// The chat server's settings on top of `builder`.
fn chat_server(builder: Builder, codec: Codec) -> Builder {
    let router = Router::new().service(ChatServiceServer::new(ChatServer::default()));
    builder
        .codec(codec)
        .router(router)
        // A client whose connection drops has a minute to come back and resume: it
        // keeps its name, its room and every line said meanwhile.
        .resume(GRACE)
        .on_link(|session, event| {
            tracing::info!(uid = session.uid().as_deref().unwrap_or(""), ?event, "link");
        })
        // Every client says who it is first: a name, which is one session on the server
        // (a second login with the same name closes the first).
        .on_handshake(|session: Session, hello: gonet::Handshake<Hello>| async move {
            let name = hello.payload.name.trim();
            if name.is_empty() || name.len() > 32 {
                return Err(Status::invalid_argument("a name of 1 to 32 bytes is needed"));
            }
            tracing::info!(%name, client = %hello.client_version, platform = %hello.platform, "logged in");
            session.bind(name);
            Ok(())
        })
        .on_close(|session, _reason| leave_room(session))
}

/// The chat client's settings on top of `builder`: it logs in as `name` and comes back
/// after a dropped connection.
fn chat_client(builder: Builder, name: &str, codec: Codec, printer: Printer) -> Builder {
    builder
        .codec(codec)
        .router(Router::new().service(ChatEventsServer::new(printer)))
        .hello(
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            &Hello { name: name.into() },
        )
        .reconnect(Reconnect::new().max_elapsed(GRACE))
        .on_link(|_, event| match event {
            LinkEvent::Detached => println!("~ connection lost; connecting again"),
            LinkEvent::Resumed => println!("~ back, nothing missed"),
            LinkEvent::Restarted(status) => println!("~ new session ({status}); /join again"),
            _ => {}
        })
}

async fn serve(
    url: &str,
    codec: Codec,
    tls: &ServerTlsArgs,
    metrics: &MetricsArgs,
) -> anyhow::Result<()> {
    let server = chat_server(metrics.server(tls.server(Builder::new())?)?, codec)
        .serve(url)
        .await?;
    tls.after_serve(&server)?;
    let stop = gonet::shutdown_signal()?;
    tracing::info!(url = %server.url(), %codec, "chat server listening; Ctrl-C or SIGTERM stops it");
    stop.await;
    // Clients that made a handshake are told to go elsewhere and finish their calls;
    // the rest are shut down gracefully.
    server.drain(None).await;
    Ok(())
}

async fn client(url: &str, name: &str, codec: Codec, tls: &ClientTlsArgs) -> anyhow::Result<()> {
    let session = chat_client(tls.client(Builder::new())?, name, codec, Printer::default())
        .dial(url)
        .await
        .map_err(explain_dial)?;
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

#[tokio::main]
async fn main() -> ExitCode {
    // Help goes to stdout with status 0; a bad command line to stderr with status 2.
    let cli = Cli::parse();
    let logging = match gonet_examples::logging::init("chat") {
        Ok(logging) => logging,
        Err(err) => {
            eprintln!("chat: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Server {
            url,
            codec,
            tls,
            metrics,
        } => serve(&url, codec.into(), &tls, &metrics).await,
        Command::Client {
            url,
            name,
            codec,
            tls,
        } => client(&url, &name, codec.into(), &tls).await,
    };
    logging.shutdown().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("chat: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use clap::error::ErrorKind;

    use super::*;

    /// The arguments of every `--example chat` command in the README and in this file's
    /// docs, as a shell splits them.
    fn documented() -> Vec<Vec<String>> {
        let docs = [include_str!("../../README.md"), include_str!("main.rs")];
        let commands = gonet_examples::documented_commands("chat", &docs);
        assert!(commands.len() >= 7, "{commands:?}");
        commands
    }

    /// A loopback proxy whose connections can be dropped mid-stream.
    struct Proxy {
        addr: std::net::SocketAddr,
        live: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    }

    impl Proxy {
        async fn start(target: std::net::SocketAddr) -> Proxy {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let live = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let tasks = live.clone();
            tokio::spawn(async move {
                while let Ok((mut down, _)) = listener.accept().await {
                    let Ok(mut up) = tokio::net::TcpStream::connect(target).await else {
                        continue;
                    };
                    tasks.lock().unwrap().push(tokio::spawn(async move {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }));
                }
            });
            Proxy { addr, live }
        }

        fn cut(&self) {
            for task in self.live.lock().unwrap().drain(..) {
                task.abort();
            }
        }
    }

    async fn next_line(lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>, want: &str) {
        let wait = async {
            while let Some(line) = lines.recv().await {
                if line == want {
                    return;
                }
            }
            panic!("no more lines before {want:?}");
        };
        tokio::time::timeout(Duration::from_secs(20), wait)
            .await
            .unwrap_or_else(|_| panic!("no line {want:?}"));
    }

    /// The web page's codec: two clients chat over WebSocket with protojson bodies.
    #[tokio::test]
    async fn clients_chat_over_websocket_with_protojson() {
        let server = chat_server(Builder::new(), Codec::ProtoJson)
            .serve("ws://127.0.0.1:0/chat")
            .await
            .unwrap();
        let (ada_tx, _ada_lines) = tokio::sync::mpsc::unbounded_channel();
        let (bob_tx, mut bob_lines) = tokio::sync::mpsc::unbounded_channel();
        let printer = |tx| Printer { lines: Some(tx) };
        let ada = chat_client(Builder::new(), "ada", Codec::ProtoJson, printer(ada_tx))
            .dial(&server.url())
            .await
            .unwrap();
        let bob = chat_client(Builder::new(), "bob", Codec::ProtoJson, printer(bob_tx))
            .dial(&server.url())
            .await
            .unwrap();
        let (ada_chat, bob_chat) = (ChatServiceClient::new(ada), ChatServiceClient::new(bob));
        let join = || Join {
            room: "lobby".into(),
            name: String::new(),
        };
        bob_chat.join(join()).await.unwrap();
        ada_chat.join(join()).await.unwrap();
        next_line(&mut bob_lines, "* ada joined lobby").await;
        ada_chat
            .say(Say {
                content: "hi over protojson".into(),
            })
            .await
            .unwrap();
        next_line(&mut bob_lines, "[lobby] ada: hi over protojson").await;
        server.shutdown().await;
    }

    /// A client whose connection is cut comes back in its room under its name, and
    /// the lines said both ways meanwhile arrive.
    #[tokio::test]
    async fn a_client_survives_a_cut_connection() {
        let server = chat_server(Builder::new(), Codec::Protobuf)
            .serve("tcp://127.0.0.1:0")
            .await
            .unwrap();
        let proxy = Proxy::start(server.local_addr()).await;
        let (ada_tx, mut ada_lines) = tokio::sync::mpsc::unbounded_channel();
        let (bob_tx, mut bob_lines) = tokio::sync::mpsc::unbounded_channel();
        let printer = |tx| Printer { lines: Some(tx) };
        let ada = chat_client(Builder::new(), "ada", Codec::Protobuf, printer(ada_tx))
            .dial(&format!("tcp://{}", proxy.addr))
            .await
            .unwrap();
        let bob = chat_client(Builder::new(), "bob", Codec::Protobuf, printer(bob_tx))
            .dial(&server.url())
            .await
            .unwrap();
        let (ada_chat, bob_chat) = (
            ChatServiceClient::new(ada.clone()),
            ChatServiceClient::new(bob),
        );
        let join = || Join {
            room: "lobby".into(),
            name: String::new(),
        };
        ada_chat.join(join()).await.unwrap();
        bob_chat.join(join()).await.unwrap();
        next_line(&mut ada_lines, "* bob joined lobby").await;
        let ada_session = server.pool().user("ada").unwrap().id();

        proxy.cut();
        let said = |content: &str| Say {
            content: content.into(),
        };
        bob_chat.say(said("where did ada go?")).await.unwrap();
        ada_chat.say(said("still here")).await.unwrap();
        next_line(&mut ada_lines, "[lobby] bob: where did ada go?").await;
        next_line(&mut bob_lines, "[lobby] ada: still here").await;
        assert_eq!(server.pool().user("ada").unwrap().id(), ada_session);
        server.shutdown().await;
    }

    /// The documented server with `--metrics ADDR` (on a free port, with an exporter on
    /// another) serves Prometheus text over HTTP, with what the runtime counted of a
    /// real client's join and line.
    #[tokio::test]
    async fn a_server_with_metrics_serves_what_it_counted() {
        let port = gonet_examples::free_port();
        let args = documented()
            .into_iter()
            .find(|args| args.iter().any(|arg| arg == "--metrics"))
            .expect("a documented server with --metrics")
            .into_iter()
            .map(|arg| {
                arg.replace(":7100", ":0")
                    .replace("127.0.0.1:9100", &format!("127.0.0.1:{port}"))
            });
        let Command::Server {
            url,
            codec,
            tls,
            metrics,
        } = Cli::try_parse_from(args).expect("parses").command
        else {
            panic!("a server command");
        };
        let addr = metrics.addr.expect("--metrics ADDR");
        assert_eq!(addr.port(), port);
        // What `serve` starts, without its wait for a signal.
        let builder = metrics
            .server(tls.server(Builder::new()).unwrap())
            .expect("the exporter");
        let server = chat_server(builder, codec.into())
            .serve(&url)
            .await
            .unwrap();
        let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
        let printer = Printer { lines: Some(tx) };
        let ada = chat_client(Builder::new(), "ada", codec.into(), printer)
            .dial(&server.url())
            .await
            .unwrap();
        let chat = ChatServiceClient::new(ada);
        chat.join(Join {
            room: "lobby".into(),
            name: String::new(),
        })
        .await
        .unwrap();
        chat.say(Say {
            content: "counted".into(),
        })
        .await
        .unwrap();
        next_line(&mut lines, "[lobby] ada: counted").await;

        // Other tests of this process count too: at least what this one did. The
        // exporter may still be starting, or a scrape see an older state: ask again.
        let at_least = |text: &str, series: &str, n: f64| {
            gonet_examples::sample(text, series).is_some_and(|v| v >= n)
        };
        let text = gonet_examples::scrape_until(addr, "the line's count", |text| {
            at_least(text, r#"gonet_messages_in_total{message="chat.Say"}"#, 1.0)
                && at_least(text, r#"gonet_broadcasts_total{message="chat.Said"}"#, 1.0)
        })
        .await;
        for (series, n) in [
            (r#"gonet_messages_in_total{message="chat.Join"}"#, 1.0),
            // The server's session and the client's, both in this process.
            (r#"gonet_sessions_opened_total{transport="tcp"}"#, 2.0),
            (
                r#"gonet_broadcast_deliveries_total{message="chat.Said"}"#,
                1.0,
            ),
        ] {
            assert!(at_least(&text, series, n), "{series} < {n}: {text}");
        }
        server.shutdown().await;
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_documented_command_parses() {
        for args in documented() {
            if let Err(err) = Cli::try_parse_from(&args) {
                panic!("{args:?}: {err}");
            }
        }
    }

    #[test]
    fn help_goes_to_stdout_with_status_0() {
        for args in [&["chat", "--help"][..], &["chat", "client", "--help"]] {
            let err = Cli::try_parse_from(args).expect_err("help is not a command");
            assert_eq!(err.kind(), ErrorKind::DisplayHelp, "{args:?}");
            assert!(!err.use_stderr(), "{args:?}");
            assert_eq!(err.exit_code(), 0, "{args:?}");
            assert!(err.to_string().contains("Examples:\n  chat "), "{err}");
        }
    }

    #[test]
    fn a_missing_or_bad_argument_is_named() {
        let cases: &[(&[&str], ErrorKind, &str)] = &[
            (
                &["chat", "client", "tcp://127.0.0.1:7100"],
                ErrorKind::MissingRequiredArgument,
                "the following required arguments were not provided:\n  <NAME>",
            ),
            (
                &["chat", "server"],
                ErrorKind::MissingRequiredArgument,
                "the following required arguments were not provided:\n  <URL>",
            ),
            (
                &["chat", "serve", "tcp://127.0.0.1:7100"],
                ErrorKind::InvalidSubcommand,
                "unrecognized subcommand 'serve'",
            ),
            (
                &["chat", "client", "ada", "tcp://127.0.0.1:7100"],
                ErrorKind::ValueValidation,
                "invalid value 'ada' for '<URL>': bad url \"ada\": missing scheme",
            ),
            (
                &["chat", "server", "tcp://127.0.0.1:7100", "--codec", "yaml"],
                ErrorKind::InvalidValue,
                "invalid value 'yaml' for '--codec <CODEC>'",
            ),
            (
                &[
                    "chat",
                    "server",
                    "tcp://127.0.0.1:7100",
                    "--metrics",
                    "localhost",
                ],
                ErrorKind::ValueValidation,
                "invalid value 'localhost' for '--metrics <ADDR>'",
            ),
            (
                &[
                    "chat",
                    "client",
                    "tcp://127.0.0.1:7100",
                    "ada",
                    "--metrics",
                    "127.0.0.1:9100",
                ],
                ErrorKind::UnknownArgument,
                "unexpected argument '--metrics' found",
            ),
            (
                &["chat", "server", "tcp://127.0.0.1:7100", "--ca", "a.der"],
                ErrorKind::UnknownArgument,
                "unexpected argument '--ca' found",
            ),
        ];
        for (args, kind, message) in cases {
            let err = Cli::try_parse_from(*args).expect_err("a bad command line");
            assert_eq!(err.kind(), *kind, "{args:?}: {err}");
            assert_eq!(err.exit_code(), 2, "{args:?}");
            assert!(err.to_string().contains(message), "{args:?}: {err}");
        }
    }
}
