//! Admission: handshakes are bounded before a connection costs anything, and a flood of
//! them leaves nothing behind.

use std::collections::HashSet;
use std::time::Duration;

use gonet::Codec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::canary;
use crate::support::{logs, until, within};

const LIMIT: usize = 16;

/// The sockets of this process whose local port is `port` (accepted connections of a
/// listener on it, not the listener itself), found through `/proc/net/tcp` and counted
/// in `/proc/self/fd`: what the server holds, whatever other tests hold.
pub(crate) fn server_fds(port: u16) -> usize {
    let mut inodes = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let local_port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            // 0A: listening.
            if local_port == Some(port) && *state != "0A" && *inode != "0" {
                inodes.insert(format!("socket:[{inode}]"));
            }
        }
    }
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| inodes.contains(target.to_string_lossy().as_ref()))
        .count()
}

/// A WebSocket echo server with the given handshake limit and timeout.
async fn ws_server(timeout: Duration) -> gonet::Server {
    gonet::Builder::new()
        .codec(Codec::Json)
        .router(canary::echo_router())
        .max_pending_handshakes(LIMIT)
        .handshake_timeout(timeout)
        .serve("ws://127.0.0.1:0/ws")
        .await
        .expect("serve")
}

/// Waits until the server has closed `stream`: EOF or a reset.
async fn closed_by_server(stream: &mut TcpStream, what: &str) {
    within(what, async {
        let mut buf = [0u8; 512];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                // An HTTP error answer may come first.
                Ok(_) => {}
            }
        }
    })
    .await;
}

/// Half an upgrade request: headers that never end.
const HALF_REQUEST: &[u8] = b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n";

/// `n` connections that start a handshake and never finish it: every other one sends
/// nothing at all, the rest half a request.
async fn stalled(addr: std::net::SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut out = Vec::new();
    for i in 0..n {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        if i % 2 == 1 {
            s.write_all(HALF_REQUEST).await.expect("write");
        }
        out.push(s);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_handshake_flood_is_held_to_the_limit_and_the_rest_refused_at_once() {
    let logs = logs();
    // Far beyond the test: only the limit decides who is refused.
    let server = ws_server(Duration::from_secs(600)).await;
    let port = server.local_addr().port();
    let canary = canary::client(&server.url(), Codec::Json).await;
    canary::still_served(&canary, "the start").await;
    let before = server_fds(port);
    assert_eq!(before, 1, "the canary's connection");

    let mut held = stalled(server.local_addr(), LIMIT).await;
    until("the server to hold every pending handshake", || {
        server_fds(port) == before + LIMIT
    })
    .await;
    // Past the limit: each is closed at once, with nothing read from it.
    const MORE: usize = 48;
    for (i, mut s) in stalled(server.local_addr(), MORE)
        .await
        .into_iter()
        .enumerate()
    {
        closed_by_server(&mut s, &format!("refused connection {i} to be closed")).await;
    }
    let err = gonet::Builder::new()
        .codec(Codec::Json)
        .dial(&server.url())
        .await
        .expect_err("a client past the handshake limit is refused");
    assert!(
        matches!(
            err,
            gonet::DialError::Connect { .. } | gonet::DialError::Handshake { .. }
        ),
        "{err}"
    );
    assert_eq!(server_fds(port), before + LIMIT, "held: the limit, no more");
    canary::still_served(&canary, "a handshake flood").await;

    // One warning line for the burst, with the count, not one per connection.
    let text = logs.text();
    let listener = format!("local_addr={}}}", server.local_addr());
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(&listener) && l.contains("handshakes pending"))
        .collect();
    assert!(!lines.is_empty(), "no refusal was logged");
    assert!(
        lines.len() <= 3,
        "{} lines for {} refusals",
        lines.len(),
        MORE + 1
    );
    assert!(
        lines[0].contains("refused 1 connection(s)") && lines[0].contains("16 handshakes pending"),
        "{}",
        lines[0]
    );

    // The stalled clients leave: their places come back, nothing is left behind.
    held.clear();
    until("the server to let the stalled connections go", || {
        server_fds(port) == before
    })
    .await;
    let late = canary::client(&server.url(), Codec::Json).await;
    canary::still_served(&late, "the flood ended").await;
    canary::still_served(&canary, "the flood ended").await;
    late.close("done");
    canary.close("done");
    within("shutdown", server.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_websocket_handshakes_are_closed_at_the_handshake_timeout() {
    let _ = logs();
    let server = ws_server(Duration::from_millis(300)).await;
    let port = server.local_addr().port();
    let canary = canary::client(&server.url(), Codec::Json).await;
    let before = server_fds(port);
    let mut stalled = stalled(server.local_addr(), LIMIT).await;
    for (i, s) in stalled.iter_mut().enumerate() {
        closed_by_server(s, &format!("stalled connection {i} to time out")).await;
    }
    until("the server to hold none of them", || {
        server_fds(port) == before
    })
    .await;
    // They were closed by the configured timeout.
    let listener = format!("local_addr={}}}", server.local_addr());
    let timed_out = logs()
        .text()
        .lines()
        .filter(|l| l.contains(&listener) && l.contains("handshake timed out timeout=300ms"))
        .count();
    assert_eq!(timed_out, LIMIT, "handshakes timed out at 300 ms");
    canary::still_served(&canary, "stalled handshakes").await;
    // Their places came back.
    let late = canary::client(&server.url(), Codec::Json).await;
    canary::still_served(&late, "stalled handshakes timed out").await;
    late.close("done");
    canary.close("done");
    within("shutdown", server.shutdown()).await;
}
