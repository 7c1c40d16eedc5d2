//! Real interoperation with kcp-go: `go-peer/main.go` (kcp-go 5.6, Debian's
//! `golang-github-xtaci-kcp-dev`), built by this test with `go build`, echoing gonet
//! frames as Go gonet's KCP session reads and writes them (one frame per KCP message),
//! or sending frames to a gonet-rs server and checking the replies. Through a relay
//! that drops every 9th datagram each way.
//!
//! `scripts/test` installs Go and kcp-go when they are missing.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;

use gonet::Builder;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::relay::Relay;
use crate::{echo_client, echo_server, round_trip, serve, texts, within};

const GOPATH: &str = "/usr/share/gocode";

fn go() -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("go"))
        .chain([
            PathBuf::from("/usr/lib/go/bin/go"),
            PathBuf::from("/usr/bin/go"),
        ])
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "go not found: run scripts/test, which installs it, or \
                 `apt-get install golang-go golang-github-xtaci-kcp-dev golang-golang-x-crypto-dev`"
            )
        })
}

/// The peer's binary, built once per test run into the target's temporary folder.
fn peer() -> &'static Path {
    static PEER: OnceLock<PathBuf> = OnceLock::new();
    PEER.get_or_init(|| {
        let kcp_go = Path::new(GOPATH).join("src/github.com/xtaci/kcp-go");
        assert!(
            kcp_go.is_dir(),
            "kcp-go is missing at {}: run scripts/test, which installs it, or \
             `apt-get install golang-github-xtaci-kcp-dev golang-golang-x-crypto-dev`",
            kcp_go.display()
        );
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kcp-go-peer");
        std::fs::create_dir_all(&dir).expect("a folder for the Go peer");
        let bin = dir.join("peer");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kcp/go-peer/main.go");
        let out = std::process::Command::new(go())
            .arg("build")
            .arg("-o")
            .arg(&bin)
            .arg(&src)
            .env("GO111MODULE", "off")
            .env("GOPATH", GOPATH)
            .env("GOCACHE", dir.join("cache"))
            .env("GOFLAGS", "")
            .output()
            .expect("run go build");
        assert!(
            out.status.success(),
            "go build of the kcp-go peer failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        bin
    })
}

fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(peer());
    cmd.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Starts `peer server` with `flags`; returns it and its address.
async fn go_server(flags: &[&str]) -> (Child, std::net::SocketAddr) {
    let mut args = vec!["server"];
    args.extend_from_slice(flags);
    let mut child = command(&args).spawn().expect("start the Go peer");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = within("the Go server's address", lines.next_line())
        .await
        .expect("read")
        .expect("a line");
    let addr = line
        .strip_prefix("LISTEN ")
        .unwrap_or_else(|| panic!("unexpected line {line:?}"))
        .parse()
        .expect("an address");
    (child, addr)
}

/// Our client in plain mode ↔ a kcp-go server, through loss: the server sees every frame
/// whole and not one id it does not know (no pong first, no bye at the end).
async fn client_to_go(flags: &[&str], query: &str) {
    let (mut child, addr) = go_server(flags).await;
    let relay = Relay::start(addr, 9).await;
    let url = format!("kcp://{}?{query}", relay.addr);
    let (client, mut echoes) = echo_client(&url, Builder::new().plain(true)).await;
    round_trip(&client, &mut echoes, &texts(40, "to go")).await;
    client.close("done");
    within("the client to close", client.closed()).await;
    let _ = child.start_kill();
    if let Some(stderr) = child.stderr.take() {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Ok(Some(line))) =
            tokio::time::timeout(std::time::Duration::from_millis(200), lines.next_line()).await
        {
            assert!(!line.contains("is not one frame"), "the Go peer: {line}");
            assert!(!line.contains("unknown id"), "the Go peer: {line}");
        }
    }
}

/// A kcp-go client ↔ our server, through loss.
async fn go_to_server(flags: &[&str], query: &str) {
    let (builder, mut seen) = echo_server();
    let server = serve(&builder, &format!("kcp://127.0.0.1:0?{query}")).await;
    let relay = Relay::start(server.local_addr(), 9).await;
    let connect = relay.addr.to_string();
    let mut args = vec!["client", "-connect", &connect, "-frames", "40"];
    args.extend_from_slice(flags);
    let child = command(&args).spawn().expect("start the Go peer");
    let out = within("the Go client", child.wait_with_output())
        .await
        .expect("the Go client's output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("OK 40"),
        "the Go client failed ({}): {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let mut got = 0;
    while seen.texts.try_recv().is_ok() {
        got += 1;
    }
    assert_eq!(got, 40, "the server handled every frame once");
    assert_eq!(seen.connects.load(std::sync::atomic::Ordering::SeqCst), 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_to_a_kcp_go_server() {
    client_to_go(&[], "crypt=off").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aes_to_a_kcp_go_server() {
    client_to_go(&["-crypt", "aes"], "crypt=aes").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aes_and_fec_to_a_kcp_go_server() {
    client_to_go(&["-crypt", "aes", "-fec", "10,3"], "preset=gonet").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_mode_salsa20_and_fec_to_a_kcp_go_server() {
    client_to_go(
        &["-crypt", "salsa20", "-fec", "4,2", "-mode", "stream"],
        "crypt=salsa20&fec=4,2&mode=stream",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_kcp_go_client() {
    go_to_server(&[], "crypt=off").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aes_kcp_go_client() {
    go_to_server(&["-crypt", "aes"], "crypt=aes").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aes_and_fec_kcp_go_client() {
    go_to_server(&["-crypt", "aes", "-fec", "10,3"], "preset=gonet").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_xor_kcp_go_client() {
    go_to_server(&["-crypt", "xor", "-password", "p"], "crypt=xor&password=p").await;
}
