//! A room chat served by a cluster of gonet nodes over NATS, on services generated from
//! `schemas/cluster.proto`: clients connect to any gate, and the gates relay what they
//! say to the room nodes behind them. A room's lines reach its members on every gate
//! with one NATS publish; when a room node dies, its sessions move to another room
//! node, which finds their room in the session's data, and the clients go on talking.
//!
//! With `nats-server -a 127.0.0.1 -p 4222` running, each in its own terminal:
//!
//! ```text
//! cargo run -p gonet-examples --example cluster -- gate --nats nats://127.0.0.1:4222 --id gate-1 tcp://127.0.0.1:7201
//! cargo run -p gonet-examples --example cluster -- gate --nats nats://127.0.0.1:4222 --id gate-2 tcp://127.0.0.1:7202
//! cargo run -p gonet-examples --example cluster -- room --nats nats://127.0.0.1:4222 --id room-1
//! cargo run -p gonet-examples --example cluster -- room --nats nats://127.0.0.1:4222 --id room-2
//! cargo run -p gonet-examples --example cluster -- client tcp://127.0.0.1:7201 ada
//! cargo run -p gonet-examples --example cluster -- client tcp://127.0.0.1:7202 bob --room lobby
//! ```
//!
//! In the client, type a line to say it, `/join ROOM` to change rooms, `/leave` to leave
//! the room and `/quit` (or end of input) to quit. The client prints the room node that
//! serves it, and says so when that changes.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gonet::{Builder, CloseReason, Router, Session, Status};
use gonet_cluster::{Cluster, Node, SessionData};
use gonet_examples::{explain_dial, url};
use tokio::io::{AsyncBufReadExt, BufReader};

gonet::include_protos!();

use rooms::{
    Enter, Entered, Exit, Line, Presence, RoomEvents, RoomEventsServer, Rooms, RoomsClient,
    RoomsServer, Speak, Spoken,
};

/// The name every node of the example joins under.
const CLUSTER: &str = "rooms";
/// The session data key holding the session's room.
const ROOM_KEY: &str = "room";

const EXAMPLES: &str = "\
Examples (with nats-server -a 127.0.0.1 -p 4222 running):
  cluster gate --nats nats://127.0.0.1:4222 --id gate-1 tcp://127.0.0.1:7201
  cluster room --nats nats://127.0.0.1:4222 --id room-1
  cluster client tcp://127.0.0.1:7201 ada --room lobby

In the client, type a line to say it, /join ROOM to change rooms, /leave to leave the
room and /quit (or end of input) to quit.";

/// A room chat served by gate and room nodes of a cluster over NATS.
#[derive(Debug, Parser)]
#[command(name = "cluster", after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where a node finds the cluster, and its name in it.
#[derive(Debug, clap::Args)]
struct NodeArgs {
    /// The NATS server of the cluster
    #[arg(long, value_name = "URL", default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// The node's id, unique in the cluster (default: its type and a random suffix)
    #[arg(long)]
    id: Option<String>,
}

impl NodeArgs {
    fn cluster(&self, kind: &str) -> Cluster {
        let cluster = Cluster::new(CLUSTER).kind(kind);
        match &self.id {
            Some(id) => cluster.node_id(id),
            None => cluster,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve clients at URL and relay their messages to the room nodes, until Ctrl-C
    /// or SIGTERM
    #[command(after_help = EXAMPLES)]
    Gate {
        #[command(flatten)]
        node: NodeArgs,
        /// Where clients connect
        #[arg(value_parser = url)]
        url: String,
    },
    /// Serve the rooms to the clients of every gate, until Ctrl-C or SIGTERM, then
    /// drain
    #[command(after_help = EXAMPLES)]
    Room {
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Enter a room through a gate as NAME, and chat from the terminal
    #[command(after_help = EXAMPLES)]
    Client {
        /// The gate to dial
        #[arg(value_parser = url)]
        url: String,
        /// Who you are in the rooms (one session per name in the whole cluster)
        name: String,
        /// The room to enter first
        #[arg(long, default_value = "lobby")]
        room: String,
    },
}

fn group(room: &str) -> String {
    format!("room:{room}")
}

/// The room service a room node serves to the clients of every gate.
#[derive(Debug, Default)]
struct RoomServer;

fn unavailable(err: impl std::fmt::Display) -> Status {
    Status::unavailable(err.to_string())
}

impl RoomServer {
    /// The node running the handler: it reaches the rooms' groups and the clients.
    fn node(session: &Session) -> Result<Node, Status> {
        Node::of(session).ok_or_else(|| Status::internal("not a session of a cluster node"))
    }

    /// Takes the session out of its room, if any, and tells the room.
    async fn leave_room(&self, session: &Session) -> Result<(), Status> {
        let node = Self::node(session)?;
        let Some(room) = SessionData::of(session).remove(ROOM_KEY) else {
            return Ok(());
        };
        node.leave(&node.addr(session), &group(&room))
            .await
            .map_err(unavailable)?;
        let presence = Presence {
            room: room.clone(),
            name: session.uid().map(|u| u.to_string()).unwrap_or_default(),
            entered: false,
            node: node.id().to_string(),
        };
        node.broadcast(&group(&room), &presence)
            .await
            .map_err(unavailable)
    }
}

impl Rooms for RoomServer {
    async fn enter(&self, session: &Session, req: Enter) -> Result<Entered, Status> {
        let (room, name) = (req.room.trim(), req.name.trim());
        if room.is_empty() || name.is_empty() {
            return Err(Status::invalid_argument("a room and a name are needed"));
        }
        let node = Self::node(session)?;
        self.leave_room(session).await?;
        // One session per name in the cluster: an older one is closed as replaced.
        session.bind(name);
        node.join(&node.addr(session), &group(room))
            .await
            .map_err(unavailable)?;
        // Kept with the session, so whichever room node serves it next knows its room.
        SessionData::of(session).set(ROOM_KEY, room);
        let presence = Presence {
            room: room.to_owned(),
            name: name.to_owned(),
            entered: true,
            node: node.id().to_string(),
        };
        node.broadcast(&group(room), &presence)
            .await
            .map_err(unavailable)?;
        tracing::info!(%room, %name, gate = %node.addr(session).node, "entered");
        Ok(Entered {
            room: room.to_owned(),
            node: node.id().to_string(),
        })
    }

    async fn speak(&self, session: &Session, req: Speak) -> Result<Spoken, Status> {
        let node = Self::node(session)?;
        let room = SessionData::of(session)
            .get(ROOM_KEY)
            .ok_or_else(|| Status::failed_precondition("enter a room first: /join ROOM"))?;
        let line = Line {
            room: room.clone(),
            from: session.uid().map(|u| u.to_string()).unwrap_or_default(),
            text: req.text,
            node: node.id().to_string(),
        };
        node.broadcast(&group(&room), &line)
            .await
            .map_err(unavailable)?;
        Ok(Spoken {
            node: node.id().to_string(),
        })
    }

    async fn exit(&self, session: &Session, _req: Exit) -> Result<(), Status> {
        self.leave_room(session).await
    }
}

async fn room(args: &NodeArgs) -> anyhow::Result<()> {
    let node = args
        .cluster("room")
        .serve(Router::new().service(RoomsServer::new(RoomServer)))
        .join(&args.nats)
        .await?;
    let stop = gonet::shutdown_signal()?;
    tracing::info!(node = %node.id(), nats = %args.nats, "room node serving; Ctrl-C or SIGTERM drains it");
    stop.await;
    node.drain().await;
    Ok(())
}

async fn gate(args: &NodeArgs, url: &str) -> anyhow::Result<()> {
    let node = args.cluster("gate").join(&args.nats).await?;
    // A client that goes away leaves its room: its gate tells the room (unless a newer
    // login of the same name replaced it: that one is in the room).
    let closer = node.clone();
    let builder = Builder::new().on_close(move |session, reason| {
        if matches!(reason, CloseReason::Replaced) {
            return;
        }
        let (Some(room), Some(name)) = (SessionData::of(session).get(ROOM_KEY), session.uid())
        else {
            return;
        };
        let node = closer.clone();
        tokio::spawn(async move {
            let presence = Presence {
                room: room.clone(),
                name: name.to_string(),
                entered: false,
                node: node.id().to_string(),
            };
            if let Err(err) = node.broadcast(&group(&room), &presence).await {
                tracing::warn!(%err, %room, "presence not broadcast");
            }
        });
    });
    let server = node.gate(builder, Router::new()).serve(url).await?;
    let stop = gonet::shutdown_signal()?;
    tracing::info!(node = %node.id(), url = %server.url(), nats = %args.nats, "gate serving; Ctrl-C or SIGTERM stops it");
    stop.await;
    // Its clients finish their calls (relayed through the node, which is still in the
    // cluster) and are closed; then the node leaves the cluster.
    server.drain(None).await;
    node.drain().await;
    Ok(())
}

/// The client side of the pushes: prints them.
#[derive(Debug)]
struct Printer;

impl RoomEvents for Printer {
    async fn line(&self, _session: &Session, msg: Line) -> Result<(), Status> {
        println!("[{}] {}: {}", msg.room, msg.from, msg.text);
        Ok(())
    }

    async fn presence(&self, _session: &Session, msg: Presence) -> Result<(), Status> {
        let verb = if msg.entered { "entered" } else { "left" };
        println!("* {} {verb} {}", msg.name, msg.room);
        Ok(())
    }
}

async fn client(url: &str, name: &str, room: &str) -> anyhow::Result<()> {
    let session = Builder::new()
        .router(Router::new().service(RoomEventsServer::new(Printer)))
        .dial(url)
        .await
        .map_err(explain_dial)?;
    let rooms = RoomsClient::new(session.clone());
    let entered = rooms
        .enter(Enter {
            room: room.into(),
            name: name.into(),
        })
        .await?;
    println!("entered {} (room node {})", entered.room, entered.node);
    let mut serving = entered.node;

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
        let node = if line == "/quit" {
            break;
        } else if line == "/leave" {
            rooms
                .exit(Exit {})
                .await
                .map(|()| None)
                .map_err(|e| e.to_string())
        } else if let Some(room) = line.strip_prefix("/join ") {
            rooms
                .enter(Enter {
                    room: room.trim().into(),
                    name: name.into(),
                })
                .await
                .map(|e| {
                    println!("entered {}", e.room);
                    Some(e.node)
                })
                .map_err(|e| e.to_string())
        } else {
            rooms
                .speak(Speak { text: line.into() })
                .await
                .map(|s| Some(s.node))
                .map_err(|e| e.to_string())
        };
        match node {
            Ok(Some(node)) if node != serving => {
                println!("* now served by room node {node} (was {serving})");
                serving = node;
            }
            Ok(_) => {}
            Err(err) => println!("! {err}"),
        }
    }
    session.close("bye");
    session.closed().await;
    Ok(())
}

fn main() -> ExitCode {
    // Help goes to stdout with status 0; a bad command line to stderr with status 2.
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cluster: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Gate { node, url } => gate(&node, &url).await,
            Command::Room { node } => room(&node).await,
            Command::Client { url, name, room } => client(&url, &name, &room).await,
        }
    });
    // A client disconnected by its gate is still reading the terminal, on a thread no
    // one can stop: do not wait for its next line.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("cluster: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use clap::error::ErrorKind;

    use super::*;

    /// The arguments of every `--example cluster` command in the README and in this
    /// file's docs, as a shell splits them.
    fn documented() -> Vec<Vec<String>> {
        let docs = [include_str!("../../README.md"), include_str!("main.rs")];
        let commands = gonet_examples::documented_commands("cluster", &docs);
        assert!(commands.len() >= 12, "{commands:?}");
        commands
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
    fn the_documented_commands_say_what_they_run() {
        let cli = Cli::try_parse_from([
            "cluster",
            "gate",
            "--nats",
            "nats://127.0.0.1:4222",
            "--id",
            "gate-1",
            "tcp://127.0.0.1:7201",
        ])
        .expect("a gate");
        let Command::Gate { node, url } = cli.command else {
            panic!("not a gate: {cli:?}");
        };
        assert_eq!(node.nats, "nats://127.0.0.1:4222");
        assert_eq!(node.id.as_deref(), Some("gate-1"));
        assert_eq!(url, "tcp://127.0.0.1:7201");

        let cli = Cli::try_parse_from(["cluster", "room"]).expect("a room node");
        let Command::Room { node } = cli.command else {
            panic!("not a room node: {cli:?}");
        };
        assert_eq!(node.nats, "nats://127.0.0.1:4222");
        assert_eq!(node.id, None);

        let cli = Cli::try_parse_from(["cluster", "client", "tcp://127.0.0.1:7201", "ada"])
            .expect("a client");
        let Command::Client { url, name, room } = cli.command else {
            panic!("not a client: {cli:?}");
        };
        assert_eq!(
            (url.as_str(), name.as_str(), room.as_str()),
            ("tcp://127.0.0.1:7201", "ada", "lobby")
        );
    }

    #[test]
    fn help_goes_to_stdout_with_status_0() {
        for args in [&["cluster", "--help"][..], &["cluster", "gate", "--help"]] {
            let err = Cli::try_parse_from(args).expect_err("help is not a command");
            assert_eq!(err.kind(), ErrorKind::DisplayHelp, "{args:?}");
            assert!(!err.use_stderr(), "{args:?}");
            assert_eq!(err.exit_code(), 0, "{args:?}");
            assert!(
                err.to_string().contains("Examples (with nats-server"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_missing_or_bad_argument_is_named() {
        let cases: &[(&[&str], ErrorKind, &str)] = &[
            (
                &["cluster", "client", "tcp://127.0.0.1:7201"],
                ErrorKind::MissingRequiredArgument,
                "the following required arguments were not provided:\n  <NAME>",
            ),
            (
                &["cluster", "gate", "--id", "gate-1"],
                ErrorKind::MissingRequiredArgument,
                "the following required arguments were not provided:\n  <URL>",
            ),
            (
                &["cluster", "rooms"],
                ErrorKind::InvalidSubcommand,
                "unrecognized subcommand 'rooms'",
            ),
            (
                &["cluster", "client", "ada", "tcp://127.0.0.1:7201"],
                ErrorKind::ValueValidation,
                "invalid value 'ada' for '<URL>': bad url \"ada\": missing scheme",
            ),
            (
                &["cluster", "room", "tcp://127.0.0.1:7201"],
                ErrorKind::UnknownArgument,
                "unexpected argument 'tcp://127.0.0.1:7201' found",
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
