//! A loopback TCP proxy that drops its connections on demand, as a mobile network or
//! a restarted load balancer does, and can refuse new ones for a while.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use gonet::Server;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

#[derive(Clone)]
pub(crate) struct Proxy {
    url: String,
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The forwarding tasks of the live connections.
    live: Mutex<Vec<JoinHandle<()>>>,
    /// New connections are closed at once.
    blocked: AtomicBool,
}

impl Proxy {
    pub(crate) async fn start(server: &Server) -> Proxy {
        let target = server.local_addr();
        let url = server.url();
        let (scheme, rest) = url.split_once("://").expect("scheme");
        let path = rest.find('/').map_or("", |i| &rest[i..]);
        let inner = Arc::new(Inner::default());
        let addr = listen(target, inner.clone()).await;
        Proxy {
            url: format!("{scheme}://{addr}{path}"),
            inner,
        }
    }

    pub(crate) fn url(&self) -> String {
        self.url.clone()
    }

    /// Drops every live connection, mid-stream; returns how many there were.
    pub(crate) fn cut(&self) -> usize {
        let live = std::mem::take(&mut *self.inner.live.lock().unwrap());
        let n = live.iter().filter(|task| !task.is_finished()).count();
        for task in live {
            task.abort();
        }
        n
    }

    /// While set, new connections are accepted and closed at once.
    pub(crate) fn block(&self, blocked: bool) {
        self.inner.blocked.store(blocked, Ordering::SeqCst);
    }
}

async fn listen(target: SocketAddr, inner: Arc<Inner>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut down, _)) = listener.accept().await {
            if inner.blocked.load(Ordering::SeqCst) {
                drop(down);
                continue;
            }
            let Ok(mut up) = TcpStream::connect(target).await else {
                continue;
            };
            let task = tokio::spawn(async move {
                let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
            });
            inner.live.lock().unwrap().push(task);
        }
    });
    addr
}
