//! A real `nats-server` for the cluster tests: one child process per [`NatsServer`],
//! listening on a free port of 127.0.0.1.
//!
//! Readiness is read from the server's own log (it logs to stderr), never guessed with a
//! sleep: `Listening for client connections on 127.0.0.1:PORT` names the port it bound,
//! and `Server is ready` says it accepts clients.
//!
//! The waits are bounded with `tokio::time`, so use it from a runtime whose clock runs
//! (not `start_paused`): a paused clock could skip the bound while the server starts.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, Command};

/// How long a starting server may take to say it is ready.
const READY_WITHIN: Duration = Duration::from_secs(20);
/// How many times [`NatsServer::restart`] tries again when the port is still taken.
const REBIND_ATTEMPTS: u32 = 20;
/// Pause between two such attempts (after the server reported the failure).
const REBIND_BACKOFF: Duration = Duration::from_millis(50);

const CLIENT_LINE: &str = "Listening for client connections on ";
const READY_LINE: &str = "Server is ready";
const PORT_TAKEN: &str = "address already in use";

/// A `nats-server` child process. Dropping it kills the server.
#[derive(Debug)]
pub(crate) struct NatsServer {
    child: Option<Child>,
    port: u16,
    /// The server's working directory, removed with it.
    dir: tempfile::TempDir,
}

/// Why a start failed: the server's log so far, and whether it could not bind its port.
struct StartError {
    log: String,
    port_taken: bool,
}

impl NatsServer {
    /// Starts nats-server on 127.0.0.1 with a free port (`-a 127.0.0.1 -p -1`), returns once
    /// it accepts clients.
    pub(crate) async fn start() -> NatsServer {
        let dir = tempfile::tempdir().expect("a temporary directory for nats-server");
        match spawn(dir.path(), None).await {
            Ok((child, port)) => NatsServer {
                child: Some(child),
                port,
                dir,
            },
            Err(e) => panic!("nats-server did not start; its log:\n{}", e.log),
        }
    }

    /// `nats://127.0.0.1:PORT`
    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL): its connections drop at once. Returns once it has exited.
    pub(crate) async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child).await;
        }
    }

    /// Starts it again on the same port (stopping it first if it still runs), returns once
    /// it accepts clients.
    pub(crate) async fn restart(&mut self) {
        self.stop().await;
        let mut attempt = 1;
        loop {
            match spawn(self.dir.path(), Some(self.port)).await {
                Ok((child, _)) => {
                    self.child = Some(child);
                    return;
                }
                // The server itself reported the port as taken: try again, a bounded
                // number of times.
                Err(e) if e.port_taken && attempt < REBIND_ATTEMPTS => {
                    attempt += 1;
                    tokio::time::sleep(REBIND_BACKOFF).await;
                }
                Err(e) => panic!(
                    "nats-server did not restart on port {} (attempt {attempt}); its log:\n{}",
                    self.port, e.log
                ),
            }
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        // Only the child this value started, by its handle (`kill_on_drop` backs this up).
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

/// The nats-server binary: on PATH, or where the Debian package puts it.
fn binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("nats-server"));
    on_path
        .chain([PathBuf::from("/usr/sbin/nats-server")])
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "nats-server not found: run scripts/test, which installs it, \
                 or `apt-get install nats-server`"
            )
        })
}

/// Starts one server on `port` (a free one if `None`) and waits until it is ready. Returns
/// the child and the port it listens on.
async fn spawn(dir: &Path, port: Option<u16>) -> Result<(Child, u16), StartError> {
    let port_arg = port.map_or_else(|| "-1".to_owned(), |p| p.to_string());
    let mut child = Command::new(binary())
        .args(["-a", "127.0.0.1", "-p", &port_arg])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting nats-server: {e}"));
    let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();

    let mut log = String::new();
    let ready = tokio::time::timeout(READY_WITHIN, wait_ready(&mut lines, &mut log)).await;
    match ready {
        Ok(Some(Some(bound))) if port.is_none_or(|p| p == bound) => {
            // Keep reading its log so the pipe never fills and blocks the server.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            Ok((child, bound))
        }
        Ok(Some(_)) => {
            stop_child(&mut child).await;
            log.push_str("(ready, but not listening for clients on the expected port)\n");
            Err(StartError {
                log,
                port_taken: false,
            })
        }
        Ok(None) => {
            // Its stderr closed before it was ready: it has exited.
            let status = stop_child(&mut child).await;
            log.push_str(&format!("(nats-server exited: {status})\n"));
            let port_taken = log.contains(PORT_TAKEN);
            Err(StartError { log, port_taken })
        }
        Err(_) => {
            stop_child(&mut child).await;
            log.push_str(&format!("(not ready within {READY_WITHIN:?}; killed)\n"));
            Err(StartError {
                log,
                port_taken: false,
            })
        }
    }
}

/// Kills `child` if it still runs and reaps it; returns how it ended, for the log.
async fn stop_child(child: &mut Child) -> String {
    let _ = child.start_kill();
    match child.wait().await {
        Ok(status) => status.to_string(),
        Err(e) => format!("waiting for it failed: {e}"),
    }
}

/// Reads the log until the server is ready: `Some` with the client port it logged (if it
/// did), or `None` if the log ends first. Every line read is appended to `log`.
async fn wait_ready(
    lines: &mut Lines<BufReader<ChildStderr>>,
    log: &mut String,
) -> Option<Option<u16>> {
    let mut bound = None;
    while let Ok(Some(line)) = lines.next_line().await {
        log.push_str(&line);
        log.push('\n');
        if let Some(at) = line.find(CLIENT_LINE) {
            let addr = line[at + CLIENT_LINE.len()..].trim();
            bound = addr.rsplit(':').next().and_then(|p| p.parse().ok());
        }
        if line.contains(READY_LINE) {
            return Some(bound);
        }
    }
    None
}
