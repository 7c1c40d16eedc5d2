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
//! A server given `--metrics ADDR` serves the runtime's metrics as Prometheus text at
//! `http://ADDR/metrics`:
//!
//! ```text
//! cargo run -p gonet-examples --example echo -- server tcp://127.0.0.1:7000 --metrics 127.0.0.1:9100
//! curl http://127.0.0.1:9100/metrics
//! ```
//!
//! Both ends take `--codec protobuf|json|xml|binary` (the same on both; protobuf by
//! default) and the client `--count N` (10 by default); `--help` lists every option.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use gonet::{Builder, Codec, Router, Session, Status};
use gonet_examples::{
    ClientTlsArgs, CodecName, MetricsArgs, ServerTlsArgs, explain_dial, trust_server, url,
};

gonet::include_protos!();

use echo::{Echo, EchoClient, EchoServer, Ping, Pong};

const EXAMPLES: &str = "\
URL: tcp://HOST:PORT, udp://HOST:PORT, ws://HOST:PORT/PATH, wss://HOST:PORT/PATH,
     quic://HOST:PORT or kcp://HOST:PORT (port 0 picks a free one)

Examples:
  echo                                         both ends over TCP, on a free port
  echo quic://127.0.0.1:0                      both ends over QUIC
  echo server tcp://127.0.0.1:7000             a server, until Ctrl-C or SIGTERM
  echo client tcp://127.0.0.1:7000 --count 3   three pings to it
  echo server tcp://127.0.0.1:7000 --metrics 127.0.0.1:9100
                                               and its metrics at
                                               http://127.0.0.1:9100/metrics
  echo server quic://127.0.0.1:7000 --write-cert /tmp/echo.der
  echo client quic://127.0.0.1:7000 --ca /tmp/echo.der";

/// An echo server and client on the generated `echo.Echo` service, over any transport.
#[derive(Debug, Parser)]
#[command(name = "echo", after_help = EXAMPLES, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Run a server and a client on URL in one process, then exit
    #[arg(value_parser = url, default_value = "tcp://127.0.0.1:0")]
    url: String,
    /// The body format
    #[arg(long, value_enum, default_value_t = CodecName::Protobuf)]
    codec: CodecName,
    /// How many pings the client sends
    #[arg(long, value_name = "N", default_value_t = 10)]
    count: u64,
    #[command(flatten)]
    tls: ServerTlsArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve until Ctrl-C or SIGTERM, then drain
    #[command(after_help = EXAMPLES)]
    Server {
        /// Where to listen
        #[arg(value_parser = url)]
        url: String,
        /// The body format (the client's must be the same)
        #[arg(long, value_enum, default_value_t = CodecName::Protobuf)]
        codec: CodecName,
        #[command(flatten)]
        tls: ServerTlsArgs,
        #[command(flatten)]
        metrics: MetricsArgs,
    },
    /// Send --count pings to a server and print the pongs
    #[command(after_help = EXAMPLES)]
    Client {
        /// The server to dial
        #[arg(value_parser = url)]
        url: String,
        /// The body format (the server's must be the same)
        #[arg(long, value_enum, default_value_t = CodecName::Protobuf)]
        codec: CodecName,
        /// How many pings to send
        #[arg(long, value_name = "N", default_value_t = 10)]
        count: u64,
        #[command(flatten)]
        tls: ClientTlsArgs,
    },
}

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

async fn serve(
    builder: Builder,
    url: &str,
    codec: Codec,
    tls: &ServerTlsArgs,
) -> anyhow::Result<gonet::Server> {
    let server = tls
        .server(builder)?
        .codec(codec)
        .router(Router::new().service(EchoServer::new(EchoService)))
        .on_connect(|s| tracing::info!(session = s.id(), peer = %s.peer_addr(), "connected"))
        .on_close(|s, reason| tracing::info!(session = s.id(), %reason, "closed"))
        .serve(url)
        .await?;
    tls.after_serve(&server)?;
    Ok(server)
}

async fn client(builder: Builder, url: &str, codec: Codec, count: u64) -> anyhow::Result<()> {
    let session = builder.codec(codec).dial(url).await.map_err(explain_dial)?;
    let echo = EchoClient::new(session.clone());
    for seq in 0..count {
        let pong = echo
            .ping(Ping {
                seq,
                text: format!("hello #{seq}"),
            })
            .await
            .with_context(|| format!("ping {seq}"))?;
        anyhow::ensure!(pong.seq == seq, "pong {} answered ping {seq}", pong.seq);
        println!("pong {}: {}", pong.seq, pong.text);
    }
    session.close("done");
    session.closed().await;
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => {
            let codec = cli.codec.into();
            let server = serve(Builder::new(), &cli.url, codec, &cli.tls).await?;
            println!("echo server on {}", server.url());
            let builder = trust_server(Builder::new(), &server)?;
            client(builder, &server.url(), codec, cli.count).await?;
            server.shutdown().await;
        }
        Some(Command::Server {
            url,
            codec,
            tls,
            metrics,
        }) => {
            let codec = codec.into();
            let server = serve(metrics.server(Builder::new())?, &url, codec, &tls).await?;
            let stop = gonet::shutdown_signal()?;
            println!(
                "echo server on {} ({codec} codec); Ctrl-C or SIGTERM stops it",
                server.url(),
            );
            stop.await;
            // Clients that made a handshake are told to go elsewhere and finish their
            // calls; the rest are shut down gracefully.
            server.drain(None).await;
        }
        Some(Command::Client {
            url,
            codec,
            count,
            tls,
        }) => client(tls.client(Builder::new())?, &url, codec.into(), count).await?,
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    // Help goes to stdout with status 0; a bad command line to stderr with status 2.
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {

    use clap::CommandFactory;
    use clap::error::ErrorKind;

    use super::*;

    /// Taken (shared) by the tests that send pings, and alone by the one that counts
    /// them: the runtime's metrics are on for the whole process once that test turns
    /// them on, and count every ping of the process under one name.
    static PINGS: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

    /// The arguments of every `--example echo` command in the README and in this file's
    /// docs, as a shell splits them.
    fn documented() -> Vec<Vec<String>> {
        let docs = [include_str!("../../README.md"), include_str!("main.rs")];
        let commands = gonet_examples::documented_commands("echo", &docs);
        assert!(commands.len() >= 10, "{commands:?}");
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
    fn help_goes_to_stdout_with_status_0() {
        for args in [
            &["echo", "--help"][..],
            &["echo", "server", "--help"],
            &["echo", "help", "client"],
        ] {
            let err = Cli::try_parse_from(args).expect_err("help is not a command");
            assert_eq!(err.kind(), ErrorKind::DisplayHelp, "{args:?}");
            assert!(!err.use_stderr(), "{args:?}");
            assert_eq!(err.exit_code(), 0, "{args:?}");
            assert!(err.to_string().contains("Examples:\n  echo "), "{err}");
        }
    }

    #[test]
    fn a_missing_or_bad_argument_is_named() {
        let cases: &[(&[&str], ErrorKind, &str)] = &[
            (
                &["echo", "server"],
                ErrorKind::MissingRequiredArgument,
                "the following required arguments were not provided:\n  <URL>",
            ),
            (
                &["echo", "client", "tcp://127.0.0.1:7000", "--count", "ten"],
                ErrorKind::ValueValidation,
                "invalid value 'ten' for '--count <N>'",
            ),
            (
                &["echo", "server", "127.0.0.1:7000"],
                ErrorKind::ValueValidation,
                "invalid value '127.0.0.1:7000' for '<URL>': bad url \"127.0.0.1:7000\": missing scheme",
            ),
            (
                &["echo", "sctp://127.0.0.1:0"],
                ErrorKind::ValueValidation,
                "invalid value 'sctp://127.0.0.1:0' for '[URL]': bad url \"sctp://127.0.0.1:0\": unknown scheme \"sctp\"",
            ),
            (
                &[
                    "echo",
                    "server",
                    "tcp://127.0.0.1:7000",
                    "--metrics",
                    "9100",
                ],
                ErrorKind::ValueValidation,
                "invalid value '9100' for '--metrics <ADDR>'",
            ),
            (
                &["echo", "--metrics", "127.0.0.1:9100"],
                ErrorKind::UnknownArgument,
                "unexpected argument '--metrics' found",
            ),
            (
                &["echo", "--codec", "yaml"],
                ErrorKind::InvalidValue,
                "invalid value 'yaml' for '--codec <CODEC>'\n  [possible values: protobuf, json, protojson, xml, binary]",
            ),
            (
                &["echo", "server", "quic://127.0.0.1:0", "--cert", "cert.pem"],
                ErrorKind::MissingRequiredArgument,
                "--key <FILE>",
            ),
            (
                &[
                    "echo",
                    "client",
                    "quic://127.0.0.1:0",
                    "--ca",
                    "a.der",
                    "--insecure",
                ],
                ErrorKind::ArgumentConflict,
                "the argument '--ca <FILE>' cannot be used with '--insecure'",
            ),
        ];
        for (args, kind, message) in cases {
            let err = Cli::try_parse_from(*args).expect_err("a bad command line");
            assert_eq!(err.kind(), *kind, "{args:?}: {err}");
            assert!(err.use_stderr(), "{args:?}");
            assert_eq!(err.exit_code(), 2, "{args:?}");
            assert!(err.to_string().contains(message), "{args:?}: {err}");
        }
    }

    /// What the documented commands that run both ends in one process do: a server on a
    /// free port of each transport, and pings answered.
    #[tokio::test]
    async fn every_documented_one_process_command_runs() {
        let _pinging = PINGS.read().await;
        let mut ran = Vec::new();
        for args in documented() {
            let cli = Cli::try_parse_from(&args).expect("parses");
            if cli.command.is_none() {
                ran.push(cli.url.clone());
                if let Err(err) = run(cli).await {
                    panic!("{args:?}: {err:#}");
                }
            }
        }
        for scheme in ["tcp", "udp", "ws", "wss", "quic", "kcp"] {
            assert!(
                ran.iter()
                    .any(|url| url.starts_with(&format!("{scheme}://"))),
                "{ran:?}"
            );
        }
    }

    /// The documented server and client run apart over QUIC: the certificate the server
    /// saves with `--write-cert` is what the client's `--ca` trusts. The port becomes 0
    /// and the file a temporary one.
    #[tokio::test]
    async fn a_server_and_a_client_apart_share_the_certificate() {
        let _pinging = PINGS.read().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let der = dir.path().join("echo.der").display().to_string();
        let apart = |mode: &str| {
            let args = documented()
                .into_iter()
                .find(|args| {
                    args.get(1).is_some_and(|m| m == mode)
                        && args.get(2).is_some_and(|url| url.starts_with("quic://"))
                })
                .unwrap_or_else(|| panic!("a documented quic {mode}"));
            let args = args.into_iter().map(|arg| {
                if arg == "/tmp/echo.der" {
                    der.clone()
                } else {
                    arg.replace(":7000", ":0")
                }
            });
            Cli::try_parse_from(args).expect("parses")
        };
        let Some(Command::Server {
            url, codec, tls, ..
        }) = apart("server").command
        else {
            panic!("a server command");
        };
        let server = serve(Builder::new(), &url, codec.into(), &tls)
            .await
            .expect("serves");
        let Some(Command::Client {
            codec, count, tls, ..
        }) = apart("client").command
        else {
            panic!("a client command");
        };
        client(
            tls.client(Builder::new()).expect("trust"),
            &server.url(),
            codec.into(),
            count,
        )
        .await
        .expect("the client trusts the saved certificate");

        let err = client(Builder::new(), &server.url(), codec.into(), count)
            .await
            .expect_err("no trust");
        assert!(err.to_string().contains("--ca FILE"), "{err}");
        server.shutdown().await;
    }

    /// The documented server with `--metrics ADDR` (on a free port, with an exporter on
    /// another) serves Prometheus text over HTTP, with what the runtime counted of the
    /// pings of a real client.
    #[tokio::test]
    async fn a_server_with_metrics_serves_what_it_counted() {
        const PINGS_SENT: u64 = 7;
        let _alone = PINGS.write().await;
        let port = gonet_examples::free_port();
        let args = documented()
            .into_iter()
            .find(|args| args.iter().any(|arg| arg == "--metrics"))
            .expect("a documented server with --metrics")
            .into_iter()
            .map(|arg| {
                arg.replace(":7000", ":0")
                    .replace("127.0.0.1:9100", &format!("127.0.0.1:{port}"))
            });
        let Some(Command::Server {
            url,
            codec,
            tls,
            metrics,
        }) = Cli::try_parse_from(args).expect("parses").command
        else {
            panic!("a server command");
        };
        let addr = metrics.addr.expect("--metrics ADDR");
        assert_eq!(addr.port(), port);
        let builder = metrics.server(Builder::new()).expect("the exporter");
        let server = serve(builder, &url, codec.into(), &tls)
            .await
            .expect("serves");
        client(Builder::new(), &server.url(), codec.into(), PINGS_SENT)
            .await
            .expect("pings answered");

        // The client has every pong, so the server has counted every ping; the
        // exporter may still be starting, or the scrape see an older state: ask again.
        let pings = r#"gonet_messages_in_total{message="echo.Ping"}"#;
        let text = gonet_examples::scrape_until(addr, pings, |text| {
            gonet_examples::sample(text, pings) == Some(PINGS_SENT as f64)
        })
        .await;
        let opened =
            gonet_examples::sample(&text, r#"gonet_sessions_opened_total{transport="tcp"}"#);
        assert!(opened.is_some_and(|n| n >= 1.0), "{text}");
        assert_eq!(
            gonet_examples::sample(&text, r#"gonet_handler_seconds_count{message="echo.Ping"}"#),
            Some(PINGS_SENT as f64),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|line| line
                    .starts_with(r#"gonet_handler_seconds{message="echo.Ping",quantile="#)),
            "{text}"
        );
        assert_eq!(
            gonet_examples::sample(&text, r#"gonet_messages_out_total{message="echo.Pong"}"#),
            Some(PINGS_SENT as f64),
            "{text}"
        );
        server.shutdown().await;
    }
}
