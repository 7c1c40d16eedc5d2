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

use gonet_ts_tests::{Report, Servers};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

/// Compiles the client and its tests, and the chat example's web client (once per
/// process), with the `tsc` that `npm ci` installed in `clients/ts`.
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
    // The client with its tests, and the chat example's web client.
    for project in [dir.clone(), dir.join("../../examples/chat/web")] {
        let out = std::process::Command::new("node")
            .arg(&tsc)
            .args(["-p", "."])
            .current_dir(&project)
            .output()
            .expect("runs tsc");
        assert!(
            out.status.success(),
            "tsc failed in {}:\n{}{}",
            project.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
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

/// Chromium, or a failure saying how to install it.
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(path);
    }
    for candidate in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(candidate).is_file() {
            return PathBuf::from(candidate);
        }
    }
    panic!(
        "chromium is missing: the browser test runs the TypeScript client in headless Chromium.\n\
         Install it (Debian: apt-get install chromium; scripts/test does), or set CHROMIUM to its path"
    );
}

/// Serves the files under `root` over HTTP/1.1 on a free loopback port (GET only, one
/// request per connection), for the page and its modules.
async fn serve_files(root: PathBuf) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let root = root.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request);
                let path = text
                    .lines()
                    .next()
                    .and_then(|line| line.strip_prefix("GET "))
                    .and_then(|rest| rest.split(' ').next())
                    .map(|target| target.split('?').next().unwrap_or(""))
                    .unwrap_or("");
                let file = (!path.contains("..") && path.starts_with('/'))
                    .then(|| root.join(&path[1..]))
                    .filter(|file| file.is_file());
                let response = match file.and_then(|f| std::fs::read(&f).ok().map(|b| (f, b))) {
                    Some((file, body)) => {
                        let kind = match file.extension().and_then(|e| e.to_str()) {
                            Some("html") => "text/html; charset=utf-8",
                            Some("js") => "text/javascript; charset=utf-8",
                            _ => "application/octet-stream",
                        };
                        let mut head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        head.extend_from_slice(&body);
                        head
                    }
                    None => {
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_vec()
                    }
                };
                let _ = conn.write_all(&response).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    (addr, task)
}

/// `text` with every byte but letters and digits percent-encoded, for a query value.
fn query_value(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A page in headless Chromium runs the code `gonet-cli gen ts` generated
/// (`clients/ts/test/gen/webtest.ts`) over the browser's WebSocket: calls, pushes, the
/// server's call, every kind of field through protojson, a status error and a handshake;
/// it reports back to the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_in_chromium_uses_the_generated_client() {
    let chromium = chromium();
    node_major();
    build_client();
    let (reports, mut reported) = tokio::sync::mpsc::unbounded_channel::<Report>();
    let servers = Servers::start(Some(reports)).await.expect("serves");
    let (http, files) = serve_files(client_dir()).await;
    let page = format!(
        "http://{http}/test/browser/index.html?plain={}&login={}",
        query_value(&servers.plain.url()),
        query_value(&servers.login.url())
    );
    let profile = tempfile::tempdir().expect("a profile directory");
    let log_path = profile.path().join("chromium.log");
    let log = std::fs::File::create(&log_path).expect("a log file");
    let mut browser = tokio::process::Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!(
            "--user-data-dir={}",
            profile.path().join("profile").display()
        ))
        .arg(&page)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {}: {err}", chromium.display()));
    let report = tokio::time::timeout(Duration::from_secs(60), reported.recv()).await;
    let _ = browser.kill().await;
    files.abort();
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let console: Vec<&str> = log.lines().filter(|l| l.contains("CONSOLE")).collect();
    let report = match report {
        Ok(Some(report)) => report,
        _ => panic!(
            "the page sent no report within 60 s ({page}); chromium's console:\n{}\nits log:\n{log}",
            console.join("\n")
        ),
    };
    assert!(
        report.ok,
        "the page failed: {}\nchromium's console:\n{}",
        report.detail,
        console.join("\n")
    );
    assert_eq!(
        report.detail,
        "call, pushes, server call, shapes, status error, handshake"
    );
    servers.shutdown().await;
}
