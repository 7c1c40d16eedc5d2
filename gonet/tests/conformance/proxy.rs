//! A loopback proxy that can be cut: after `cut`, it forwards nothing but keeps every
//! socket open, so both ends see a peer that vanished without closing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use gonet::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

pub(crate) struct Proxy {
    url: String,
    cut: Arc<AtomicBool>,
}

impl Proxy {
    pub(crate) async fn start(server: &Server) -> Proxy {
        let target = server.local_addr();
        let url = server.url();
        let (scheme, rest) = url.split_once("://").expect("scheme");
        let path = rest.find('/').map_or("", |i| &rest[i..]);
        let cut = Arc::new(AtomicBool::new(false));
        let addr = match scheme {
            "tcp" | "ws" | "wss" => tcp(target, cut.clone()).await,
            _ => udp(target, cut.clone()).await,
        };
        Proxy {
            url: format!("{scheme}://{addr}{path}"),
            cut,
        }
    }

    pub(crate) fn url(&self) -> String {
        self.url.clone()
    }

    pub(crate) fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }
}

async fn tcp(target: SocketAddr, cut: Arc<AtomicBool>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((down, _)) = listener.accept().await {
            let up = TcpStream::connect(target).await.expect("connect");
            let (dr, dw) = down.into_split();
            let (ur, uw) = up.into_split();
            tokio::spawn(pipe(dr, uw, cut.clone()));
            tokio::spawn(pipe(ur, dw, cut.clone()));
        }
    });
    addr
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    cut: Arc<AtomicBool>,
) {
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if cut.load(Ordering::SeqCst) {
            // Hold both sockets open and forward nothing, until the test ends.
            let _keep = (from, to);
            std::future::pending::<()>().await;
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn udp(target: SocketAddr, cut: Arc<AtomicBool>) -> SocketAddr {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
    let addr = front.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut ups: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
        let mut buf = vec![0; 64 * 1024];
        while let Ok((n, from)) = front.recv_from(&mut buf).await {
            if cut.load(Ordering::SeqCst) {
                continue;
            }
            let up = match ups.get(&from) {
                Some(up) => up.clone(),
                None => {
                    let up = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
                    up.connect(target).await.expect("connect");
                    tokio::spawn(back(up.clone(), front.clone(), from, cut.clone()));
                    ups.insert(from, up.clone());
                    up
                }
            };
            let _ = up.send(&buf[..n]).await;
        }
    });
    addr
}

async fn back(up: Arc<UdpSocket>, front: Arc<UdpSocket>, to: SocketAddr, cut: Arc<AtomicBool>) {
    let mut buf = vec![0; 64 * 1024];
    while let Ok(n) = up.recv(&mut buf).await {
        if !cut.load(Ordering::SeqCst) {
            let _ = front.send_to(&buf[..n], to).await;
        }
    }
}
