//! Floods: connections opened and closed by the thousand, datagrams from thousands of
//! source ports, garbage datagrams, and ten thousand bad frames on one session. The
//! server's sessions, sockets and log stay bounded, and the canary is served.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gonet::{Builder, Codec, Message};
use tokio::io::AsyncWriteExt;
use tokio::net::UdpSocket;

use crate::canary::{Say, SayAck, client, echo_router, still_served};
use crate::support::{frame, logs, raw, read_frame, read_to_eof, until, within};

/// The TCP sockets of this process with an end on `port`: `(on the port, to the
/// port)`, that is the listener and the connections it accepted, and the clients'
/// connections to it. Counted from the entries of /proc/self/fd, so that it counts
/// descriptors held, and filtered by port, so that the other tests of this binary,
/// running at the same time, do not disturb it.
fn sockets_on(port: u16) -> (usize, usize) {
    let mut inodes = HashSet::new();
    for entry in std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .flatten()
    {
        if let Ok(target) = std::fs::read_link(entry.path()) {
            let target = target.to_string_lossy().into_owned();
            if let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|t| t.strip_suffix(']'))
            {
                inodes.insert(inode.to_owned());
            }
        }
    }
    let (mut on, mut to) = (0, 0);
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(remote), Some(inode)) = (cols.get(1), cols.get(2), cols.get(9))
            else {
                continue;
            };
            if !inodes.contains(*inode) {
                continue;
            }
            let port_of = |addr: &str| {
                addr.rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
            };
            if port_of(local) == Some(port) {
                on += 1;
            } else if port_of(remote) == Some(port) {
                to += 1;
            }
        }
    }
    (on, to)
}

/// 1,000 connections opened and closed, a third of them after a message and its
/// reply, a third after half a frame: the server's sessions and descriptors are back
/// to where they started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_connect_close_cycles_leak_nothing() {
    let server = Builder::new()
        .codec(Codec::Json)
        .router(echo_router())
        .serve("tcp://127.0.0.1:0")
        .await
        .expect("serve");
    let canary = client(&server.url(), Codec::Json).await;
    let addr = server.local_addr();
    until("the canary's session", || server.pool().len() == 1).await;
    let port = addr.port();
    // The listener and the canary's session; the canary's own connection.
    until("the canary's sockets", || sockets_on(port) == (2, 1)).await;
    let start_sessions = server.pool().len();
    let say = frame(Say::ID, br#"{"content":"hi"}"#);
    for i in 0..1_000 {
        let mut stream = raw(addr).await;
        match i % 3 {
            0 => {}
            1 => {
                stream.write_all(&say).await.expect("write");
                let (id, body) = within("a reply", read_frame(&mut stream))
                    .await
                    .expect("the server answers");
                assert_eq!((id, &body[..]), (SayAck::ID, &br#"{"content":"hi"}"#[..]));
            }
            _ => stream.write_all(&say[..5]).await.expect("write"),
        }
        drop(stream);
    }
    until("the sessions to be gone", || {
        server.pool().len() == start_sessions
    })
    .await;
    until("the sockets to be closed", || sockets_on(port) == (2, 1)).await;
    still_served(&canary, "1,000 connect/close cycles").await;
    server.shutdown().await;
}

/// 2,000 UDP sockets each send one well-formed datagram to a server that holds at
/// most 100 sessions, and 500 more send garbage: the server never holds more than
/// its limit, garbage starts no session, the flood's sessions idle out, and the
/// canary, one of the 100, is served throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_floods_from_many_ports_stay_within_max_sessions() {
    const LIMIT: usize = 100;
    let server = Builder::new()
        .codec(Codec::Json)
        .router(echo_router())
        .max_sessions(LIMIT)
        // Flood peers never answer a ping: they are gone a second after their datagram.
        .heartbeat(Duration::from_millis(250))
        .idle_timeout(Duration::from_secs(1))
        .serve("udp://127.0.0.1:0")
        .await
        .expect("serve");
    let canary = client(&server.url(), Codec::Json).await;
    still_served(&canary, "nothing yet").await;
    let to: SocketAddr = server.local_addr();
    let most = Arc::new(AtomicUsize::new(0));
    let watch = {
        let pool = server.pool().clone();
        let most = most.clone();
        tokio::spawn(async move {
            loop {
                most.fetch_max(pool.len(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let say = frame(Say::ID, br#"{"content":"flood"}"#);
    let garbage: [&[u8]; 4] = [
        b"\xff",
        b"\x01\x00\x00\x00\x00\x00",
        b"\xff\xff\x65\x00\x00\x00xx",
        &[0u8; 1200],
    ];
    for batch in 0..10 {
        // 200 sockets at a time, each sending once, then closed.
        let mut sockets = Vec::new();
        for _ in 0..200 {
            let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
            socket.send_to(&say, to).await.expect("send");
            sockets.push(socket);
        }
        for (i, socket) in sockets.iter().take(50).enumerate() {
            let socket2 = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
            socket2
                .send_to(garbage[i % garbage.len()], to)
                .await
                .expect("send");
            // Garbage from an address that has a session, too.
            socket
                .send_to(garbage[(i + batch) % garbage.len()], to)
                .await
                .expect("send");
        }
        assert!(
            server.pool().len() <= LIMIT,
            "{} sessions",
            server.pool().len()
        );
    }
    still_served(&canary, "2,000 datagrams from new ports and 1,000 garbage").await;
    watch.abort();
    let most = most.load(Ordering::Relaxed);
    assert!(
        most <= LIMIT,
        "the server held {most} sessions, over its limit of {LIMIT}"
    );
    assert!(
        most > 1,
        "the flood started no session at all: the test tests nothing"
    );
    until("the flood's sessions to idle out", || {
        server.pool().len() == 1
    })
    .await;
    still_served(&canary, "the flood's sessions ended").await;
    server.shutdown().await;
}

/// KCP: 2,000 UDP sockets each send a 24-byte datagram that looks like KCP (an empty
/// opening segment, which opens nothing) and 1,000 of them a 28-byte opening segment,
/// to a server that holds at most 50 sessions; 500 more send garbage. The session
/// count and the engine's table never pass the limit, garbage is counted as invalid
/// (nothing made for it), the admitted strays idle out and leave the table, and the
/// canary, one of the 50, is answered throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcp_stray_floods_from_many_ports_stay_within_max_sessions() {
    const LIMIT: usize = 50;
    let server = Builder::new()
        .codec(Codec::Json)
        .router(echo_router())
        .max_sessions(LIMIT)
        .heartbeat(Duration::from_millis(250))
        .idle_timeout(Duration::from_secs(1))
        .serve("kcp://127.0.0.1:0")
        .await
        .expect("serve");
    let canary = client(&server.url(), Codec::Json).await;
    still_served(&canary, "nothing yet").await;
    let to: SocketAddr = server.local_addr();
    // Sessions are watched from a task; the engine's table after every datagram sent.
    let most_sessions = Arc::new(AtomicUsize::new(0));
    let mut most_conversations = 0;
    let watch = {
        let pool = server.pool().clone();
        let most = most_sessions.clone();
        tokio::spawn(async move {
            loop {
                most.fetch_max(pool.len(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let mut sample = |server: &gonet::Server| {
        let conversations = server.kcp_stats().expect("kcp").conversations;
        most_conversations = most_conversations.max(conversations);
    };
    let empty_open = crate::kcp_raw::segment(7, 81, 0, b"");
    assert_eq!(empty_open.len(), 24);
    let garbage: [&[u8]; 4] = [
        b"\xff",
        &[0u8; 24],
        b"\x07\x00\x00\x00\x51\x00",
        &[0x51; 1400],
    ];
    let mut garbage_sent = 0u64;
    for batch in 0..10u32 {
        let mut sockets = Vec::new();
        for i in 0..200u32 {
            let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
            socket.send_to(&empty_open, to).await.expect("send");
            if i % 2 == 0 {
                let conv = batch * 1000 + i + 1;
                let opener = crate::kcp_raw::segment(conv, 81, 0, b"\x05\x00\x00\x00");
                socket.send_to(&opener, to).await.expect("send");
            }
            sample(&server);
            sockets.push(socket);
        }
        for (i, socket) in sockets.iter().take(50).enumerate() {
            socket
                .send_to(garbage[(i + batch as usize) % garbage.len()], to)
                .await
                .expect("send");
            garbage_sent += 1;
            sample(&server);
        }
        assert!(
            server.pool().len() <= LIMIT,
            "{} sessions",
            server.pool().len()
        );
    }
    still_served(
        &canary,
        "3,000 KCP-looking datagrams from new ports and 500 garbage",
    )
    .await;
    // Garbage is counted, never admitted (the kernel may drop a few datagrams of the
    // flood before the engine reads them, so the count is not exact).
    until("garbage counted", || {
        server.kcp_stats().expect("kcp").invalid_datagrams > 0
    })
    .await;
    let invalid = server.kcp_stats().expect("kcp").invalid_datagrams;
    assert!(
        invalid <= garbage_sent,
        "{invalid} invalid of {garbage_sent} garbage"
    );
    let most_sessions = most_sessions.load(Ordering::Relaxed);
    assert!(
        most_sessions <= LIMIT,
        "{most_sessions} sessions over the limit of {LIMIT}"
    );
    assert!(
        most_conversations <= LIMIT,
        "the engine held {most_conversations} conversations, over the limit of {LIMIT}"
    );
    assert!(
        most_sessions > 1,
        "the flood opened nothing: the test tests nothing"
    );
    let stats = server.kcp_stats().expect("kcp");
    assert!(
        stats.refused_datagrams >= 2000,
        "the empty openers and the openers over the limit are refused: {stats:?}"
    );
    until("the flood's sessions to idle out", || {
        server.pool().len() == 1
    })
    .await;
    until("their conversations to leave the table", || {
        server.kcp_stats().expect("kcp").conversations == 1
    })
    .await;
    watch.abort();
    still_served(&canary, "the flood's sessions ended").await;
    server.shutdown().await;
}

/// 10,000 frames of an unknown id on one session: every error reaches the error hook,
/// and the log gets a handful of lines about that session, the first naming the id
/// and one telling how many were suppressed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_unknown_ids_cost_a_few_log_lines() {
    const FRAMES: usize = 10_000;
    let logs = logs();
    let hooked = Arc::new(AtomicUsize::new(0));
    let server = {
        let hooked = hooked.clone();
        Builder::new()
            .codec(Codec::Json)
            .router(echo_router())
            .on_error(move |_, _| {
                hooked.fetch_add(1, Ordering::Relaxed);
            })
            .serve("tcp://127.0.0.1:0")
            .await
            .expect("serve")
    };
    let canary = client(&server.url(), Codec::Json).await;
    let mut attacker = raw(server.local_addr()).await;
    let mut flood = Vec::new();
    for _ in 0..FRAMES {
        flood.extend(frame(999, b"{}"));
    }
    attacker.write_all(&flood).await.expect("write");
    until("every error at the hook", || {
        hooked.load(Ordering::Relaxed) == FRAMES
    })
    .await;
    still_served(&canary, "10,000 unknown ids").await;
    let sessions_before = server.pool().len();
    attacker.shutdown().await.expect("shutdown");
    within("the server's close", read_to_eof(&mut attacker)).await;
    until("the attacker's session to end", || {
        server.pool().len() < sessions_before
    })
    .await;
    // The session's last line (the suppressed count) is written as it ends.
    let me = SessionSpan::of(&server, &attacker);
    let about_me = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.contains(" WARN ") && me.is_on(l))
            .map(str::to_owned)
            .collect()
    };
    until("the session's last log line", || {
        about_me(&logs.text())
            .iter()
            .any(|l| l.contains("more errors suppressed"))
    })
    .await;
    let lines = about_me(&logs.text());
    assert!(
        lines.len() <= 20,
        "{} lines about one session for {FRAMES} errors:\n{}",
        lines.len(),
        lines.join("\n")
    );
    assert!(
        lines[0].contains("unknown message id 999"),
        "the first line names the id: {}",
        lines[0]
    );
    let told: usize = lines.iter().filter_map(|l| suppressed_in(l)).sum();
    let logged = lines
        .iter()
        .filter(|l| l.contains("unknown message id 999"))
        .count();
    assert_eq!(
        told + logged,
        FRAMES,
        "logged and suppressed add up to every error:\n{}",
        lines.join("\n")
    );
    still_served(&canary, "the flooding session's end").await;
    server.shutdown().await;
}

/// A flood of unknown ids, then a bad length that ends the session: the error that
/// ends it is logged whatever the rate limit, with the count of the lines suppressed
/// before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_error_that_ends_a_flooding_session_is_logged() {
    const FRAMES: usize = 1_000;
    let logs = logs();
    let server = Builder::new()
        .codec(Codec::Json)
        .router(echo_router())
        .serve("tcp://127.0.0.1:0")
        .await
        .expect("serve");
    let canary = client(&server.url(), Codec::Json).await;
    let mut attacker = raw(server.local_addr()).await;
    let me = SessionSpan::of(&server, &attacker);
    let mut flood = Vec::new();
    for _ in 0..FRAMES {
        flood.extend(frame(999, b"{}"));
    }
    // A length field of 2: not even a message id.
    flood.extend_from_slice(&[2, 0, 0, 0]);
    attacker.write_all(&flood).await.expect("write");
    within("the server's close", read_to_eof(&mut attacker)).await;
    let ending = |text: &str| {
        text.lines()
            .find(|l| l.contains(" WARN ") && me.is_on(l) && l.contains("below the minimum"))
            .map(str::to_owned)
    };
    until("the ending error in the log", || {
        ending(&logs.text()).is_some()
    })
    .await;
    let text = logs.text();
    let line = ending(&text).expect("found");
    let mine: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" WARN ") && me.is_on(l))
        .collect();
    let logged = mine
        .iter()
        .filter(|l| l.contains("unknown message id 999"))
        .count();
    let told: usize = mine.iter().filter_map(|l| suppressed_in(l)).sum();
    assert!(
        suppressed_in(&line).is_some(),
        "the ending line carries a count: {line}"
    );
    assert_eq!(
        logged + told,
        FRAMES,
        "logged and suppressed add up to every unknown id:\n{}",
        mine.join("\n")
    );
    still_served(&canary, "a flooding session's end").await;
    server.shutdown().await;
}

/// The `suppressed=N` field of a log line.
fn suppressed_in(line: &str) -> Option<usize> {
    let at = line.find("suppressed=")? + "suppressed=".len();
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// The span fields that mark one session's log lines: its listener's address and its
/// peer's, each matched whole. The log is shared by every test in this binary, and a
/// peer port alone may have served an earlier test's session.
struct SessionSpan {
    listener: String,
    peer: String,
}

impl SessionSpan {
    fn of(server: &gonet::Server, client: &tokio::net::TcpStream) -> Self {
        SessionSpan {
            listener: format!("local_addr={}}}", server.local_addr()),
            peer: format!("peer={} ", client.local_addr().expect("local addr")),
        }
    }

    fn is_on(&self, line: &str) -> bool {
        line.contains(&self.listener) && line.contains(&self.peer)
    }
}
