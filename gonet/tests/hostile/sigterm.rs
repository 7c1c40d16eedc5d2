//! SIGTERM, as docker, systemd and Kubernetes stop a process: a server that waits on
//! `gonet::shutdown_signal` and then `Server::shutdown` answers every request in flight
//! and exits 0.
//!
//! The server runs in a process of its own, to be signalled: this test binary again,
//! running only the ignored `child_server` test.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use gonet::{Builder, CloseReason, Codec, Router, Session};
use tokio::sync::{Notify, mpsc};

use crate::support::{Say, SayAck, until, within};

/// Sessions with a request in flight when the signal arrives.
const SESSIONS: usize = 32;

/// Set in the child's environment: serve, instead of returning at once.
const CHILD: &str = "GONET_HOSTILE_SIGTERM_CHILD";

/// The child process, killed if the test fails before it exits.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_every_request_in_flight_and_exits_0() {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut child = Command::new(exe)
        .args([
            "sigterm::child_server",
            "--exact",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .stdout(Stdio::piped())
        .spawn()
        .expect("the server process starts");
    let stdout = child.stdout.take().expect("its stdout");
    let mut child = ChildGuard(child);
    let (line_tx, mut lines) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line_tx.send(line).is_err() {
                break;
            }
        }
    });
    // The test harness prints its own text on the same lines, before ours.
    let mut next_line = async |marker: &str| loop {
        let line = within("the server's output", lines.recv())
            .await
            .unwrap_or_else(|| panic!("the server exited before printing {marker:?}"));
        if let Some((_, rest)) = line.split_once(marker) {
            return rest.to_owned();
        }
    };

    let url = next_line("sigterm-child-url=").await;
    let mut calls = Vec::new();
    for i in 0..SESSIONS {
        let client = Builder::new()
            .codec(Codec::Json)
            .dial(&url)
            .await
            .unwrap_or_else(|e| panic!("dial {url}: {e}"));
        calls.push(tokio::spawn(async move {
            let reply: Result<SayAck, _> = client
                .call(&Say {
                    content: format!("request {i}"),
                })
                .await;
            (i, reply)
        }));
    }
    // Every handler has started and waits: all requests are in flight.
    next_line("sigterm-child-ready").await;

    let pid = child.0.id().to_string();
    let kill = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(kill.success(), "kill -TERM {pid}: {kill}");

    for call in calls {
        let (i, reply) = within("a reply", call).await.expect("the call task");
        let reply = reply.unwrap_or_else(|e| panic!("request {i} was not answered: {e}"));
        assert_eq!(reply.content, format!("request {i}"));
    }
    let status = within(
        "the server's exit",
        tokio::task::spawn_blocking(move || child.0.wait()),
    )
    .await
    .expect("the wait task")
    .expect("the server's exit status");
    assert!(
        status.success(),
        "the server ended with {status} at SIGTERM"
    );
}

/// The server `sigterm_answers_every_request_in_flight_and_exits_0` signals: every
/// handler waits until the server is draining, so its reply can only come from the
/// drain. Prints `sigterm-child-url=URL`, then `sigterm-child-ready` once every session
/// has a request in flight.
#[test]
#[ignore = "the server process of sigterm_answers_every_request_in_flight_and_exits_0"]
fn child_server() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let started = Arc::new(AtomicUsize::new(0));
        let all_started = Arc::new(Notify::new());
        let router = {
            let (started, all_started) = (started.clone(), all_started.clone());
            Router::new().route(move |session: Session, msg: Say| {
                let (started, all_started) = (started.clone(), all_started.clone());
                async move {
                    if started.fetch_add(1, Ordering::SeqCst) + 1 == SESSIONS {
                        all_started.notify_one();
                    }
                    until("the server draining", || {
                        matches!(session.close_reason(), Some(CloseReason::ServerShutdown))
                    })
                    .await;
                    SayAck {
                        content: msg.content,
                    }
                }
            })
        };
        let server = Builder::new()
            .codec(Codec::Json)
            .router(router)
            .serve("tcp://127.0.0.1:0")
            .await
            .expect("the server starts");
        let stop = gonet::shutdown_signal().expect("listening for SIGTERM");
        println!("sigterm-child-url={}", server.url());
        within("every request", all_started.notified()).await;
        println!("sigterm-child-ready");
        stop.await;
        server.shutdown().await;
    });
}
