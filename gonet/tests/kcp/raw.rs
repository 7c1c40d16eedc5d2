//! A raw KCP peer for tests: the `kcp` protocol crate over a UDP socket the test owns,
//! so a test can send what a gonet client never would (half a frame, a second
//! conversation from the same address, silence) and see exactly what comes back.
//! Plain KCP only (no crypt, no FEC).

#![allow(dead_code, unreachable_pub)]

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kcp::Kcp;
use tokio::net::UdpSocket;

struct Out {
    /// Sends at once (tokio's `try_send_to` gives up until its reactor has seen a new
    /// socket writable).
    socket: std::net::UdpSocket,
    to: SocketAddr,
}

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = self.socket.send_to(buf, self.to);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A clone of `socket` to send with outside tokio.
fn sender(socket: &UdpSocket) -> std::net::UdpSocket {
    use std::os::fd::AsFd;
    let fd = socket.as_fd().try_clone_to_owned().expect("dup the socket");
    std::net::UdpSocket::from(fd)
}

/// One KCP conversation from a socket of the test's.
pub struct RawKcp {
    pub socket: Arc<UdpSocket>,
    pub to: SocketAddr,
    kcp: Kcp<Out>,
    epoch: Instant,
}

impl RawKcp {
    /// A conversation `conv` to `to` from a new socket on 127.0.0.1, in message mode
    /// (`stream`: KCP's stream mode).
    pub async fn connect(to: SocketAddr, conv: u32, stream: bool) -> Self {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
        Self::on(socket, to, conv, stream)
    }

    /// A conversation on an existing socket (another conversation from the same
    /// address).
    pub fn on(socket: Arc<UdpSocket>, to: SocketAddr, conv: u32, stream: bool) -> Self {
        let out = Out {
            socket: sender(&socket),
            to,
        };
        let mut kcp = if stream {
            Kcp::new_stream(conv, out)
        } else {
            Kcp::new(conv, out)
        };
        kcp.set_nodelay(true, 10, 2, true);
        kcp.set_wndsize(128, 128);
        let mut raw = Self {
            socket,
            to,
            kcp,
            epoch: Instant::now(),
        };
        let now = raw.now();
        raw.kcp.update(now).expect("update");
        raw
    }

    fn now(&self) -> u32 {
        self.epoch.elapsed().as_millis() as u32
    }

    /// Queues `data` as one message and sends it now.
    pub fn send(&mut self, data: &[u8]) {
        let now = self.now();
        self.kcp.update(now).expect("update");
        self.kcp.send(data).expect("send");
        self.kcp.flush().expect("flush");
    }

    /// Drives the conversation (receives, acknowledges, resends) for `time`, and
    /// returns the messages that arrived.
    pub async fn pump(&mut self, time: Duration) -> Vec<Vec<u8>> {
        let until = Instant::now() + time;
        let mut messages = Vec::new();
        let mut buf = vec![0u8; 2048];
        loop {
            while let Ok(size) = self.kcp.peeksize() {
                let mut message = vec![0u8; size];
                self.kcp.recv(&mut message).expect("recv");
                messages.push(message);
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return messages;
            }
            let wait = left.min(Duration::from_millis(10));
            if let Ok(Ok((n, from))) =
                tokio::time::timeout(wait, self.socket.recv_from(&mut buf)).await
            {
                if from == self.to {
                    let _ = self.kcp.input(&buf[..n]);
                }
            }
            let now = self.now();
            self.kcp.update(now).expect("update");
            self.kcp.flush().expect("flush");
        }
    }

    /// Drives the conversation until a message arrives (at most `time`).
    pub async fn recv(&mut self, time: Duration) -> Option<Vec<u8>> {
        let until = Instant::now() + time;
        while Instant::now() < until {
            let mut got = self.pump(Duration::from_millis(20)).await;
            if !got.is_empty() {
                return Some(got.remove(0));
            }
        }
        None
    }

    /// Whether everything sent has been acknowledged.
    pub fn settled(&self) -> bool {
        self.kcp.wait_snd() == 0
    }
}

/// A gonet frame: u16 LE length (of id and body), u32 LE id, body.
pub fn frame(id: u32, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(6 + body.len());
    f.extend_from_slice(&((4 + body.len()) as u16).to_le_bytes());
    f.extend_from_slice(&id.to_le_bytes());
    f.extend_from_slice(body);
    f
}

/// One KCP segment, by hand (for strays and spoofs).
pub fn segment(conv: u32, cmd: u8, sn: u32, data: &[u8]) -> Vec<u8> {
    let mut s = Vec::with_capacity(24 + data.len());
    s.extend_from_slice(&conv.to_le_bytes());
    s.push(cmd);
    s.push(0);
    s.extend_from_slice(&128u16.to_le_bytes());
    s.extend_from_slice(&0u32.to_le_bytes());
    s.extend_from_slice(&sn.to_le_bytes());
    s.extend_from_slice(&0u32.to_le_bytes());
    s.extend_from_slice(&(data.len() as u32).to_le_bytes());
    s.extend_from_slice(data);
    s
}
