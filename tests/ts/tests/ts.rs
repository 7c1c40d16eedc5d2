//! The TypeScript client (`clients/ts`) against real gonet-rs servers on loopback: its
//! Node tests (`node --test`), and a page in headless Chromium that uses the code
//! `gonet-cli gen ts` generates.
//!
//! Needs Node (18 or later; 20.10 or later uses its own WebSocket) with `npm ci` run in `clients/ts`, and Chromium
//! (`/usr/bin/chromium`); `scripts/test` installs them. A missing one fails the test
//! with what to do.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use gonet_ts_tests::Servers;
use tokio::io::AsyncReadExt;

/// `clients/ts` in the repository.
fn client_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients/ts")
}

/// The Node major version, or a failure saying how to install Node.
fn node_major() -> u32 {
    let out = std::process::Command::new("node").arg("--version").output();
    let version = match out {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        _ => panic!(
            "node is missing: the TypeScript client's tests need Node 18 or later.\n\
             Install it (Debian: apt-get install nodejs npm), then run `npm ci` in clients/ts; \
             scripts/test does both"
        ),
    };
    let major = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the node version {version:?}"));
    assert!(
        major >= 18,
        "node {version} is too old: Node 18 or later is needed"
    );
    major
}

/// Compiles the client and its tests (once per process) with the `tsc` that `npm ci`
/// installed.
fn build_client() {
    static BUILT: Mutex<bool> = Mutex::new(false);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if *built {
        return;
    }
    let dir = client_dir();
    let tsc = dir.join("node_modules/typescript/bin/tsc");
    assert!(
        tsc.is_file(),
        "{} is missing: run `npm ci` in clients/ts (scripts/test does it when node_modules is missing)",
        tsc.display()
    );
    let out = std::process::Command::new("node")
        .arg(&tsc)
        .args(["-p", "."])
        .current_dir(&dir)
        .output()
        .expect("runs tsc");
    assert!(
        out.status.success(),
        "tsc failed in clients/ts:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    *built = true;
}

/// The client's Node tests (`dist/test/*.test.js`), against servers of this process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_tests_pass_against_a_real_server() {
    let major = node_major();
    build_client();
    let servers = Servers::start(None).await.expect("serves");
    let dir = client_dir();
    let mut files: Vec<String> = std::fs::read_dir(dir.join("dist/test"))
        .expect("dist/test")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".test.js"))
        .map(|name| format!("dist/test/{name}"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "no Node tests found: {files:?}");
    let mut node = tokio::process::Command::new("node");
    if major == 20 || major == 21 {
        // Their global WebSocket is behind this flag (older ones use the `ws`
        // dev-dependency, newer ones have it on).
        node.arg("--experimental-websocket");
    }
    let child = node
        .arg("--test")
        .args(&files)
        .env("GONET_TS_SERVERS", servers.json())
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starts node");
    let out = finish(child, Duration::from_secs(120), "node --test").await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "node --test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let passed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("# pass "))
        .and_then(|n| n.trim().parse::<u32>().ok())
        .expect("node's summary");
    assert!(passed >= 15, "only {passed} Node tests passed:\n{stdout}");
    assert!(stdout.contains("# fail 0"), "{stdout}");
    servers.shutdown().await;
}

/// Waits for `child` at most `limit`; past it, kills it and fails with what it printed.
async fn finish(
    mut child: tokio::process::Child,
    limit: Duration,
    what: &str,
) -> std::process::Output {
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf).await;
        buf
    });
    let err = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf).await;
        buf
    });
    let status = match tokio::time::timeout(limit, child.wait()).await {
        Ok(status) => status.expect("waits"),
        Err(_) => {
            let _ = child.kill().await;
            let (out, err) = (out.await.unwrap_or_default(), err.await.unwrap_or_default());
            panic!(
                "{what} did not finish within {limit:?}; it printed:\n{}\n{}",
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&err)
            );
        }
    };
    std::process::Output {
        status,
        stdout: out.await.unwrap_or_default(),
        stderr: err.await.unwrap_or_default(),
    }
}
