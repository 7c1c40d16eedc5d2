//! A lossy UDP relay on loopback: clients send to the relay, which forwards to the
//! server from one socket per client, and back; every `nth` datagram each way is
//! dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::UdpSocket;

pub(crate) struct Relay {
    pub(crate) addr: SocketAddr,
    pub(crate) dropped: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Relay {
    /// Relays to `server`, dropping every `nth` datagram (0: none).
    pub(crate) async fn start(server: SocketAddr, nth: u64) -> Relay {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
        let addr = front.local_addr().expect("addr");
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = dropped.clone();
        let task = tokio::spawn(async move {
            let mut backs: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
            let mut buf = vec![0u8; 65536];
            let mut count = 0u64;
            loop {
                let Ok((n, client)) = front.recv_from(&mut buf).await else {
                    continue;
                };
                count += 1;
                let back = match backs.get(&client) {
                    Some(back) => back.clone(),
                    None => {
                        let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
                        back.connect(server).await.expect("connect");
                        backs.insert(client, back.clone());
                        // The server's side: back to this client.
                        let (front, back2, counter) =
                            (front.clone(), back.clone(), counter.clone());
                        tokio::spawn(async move {
                            let mut buf = vec![0u8; 65536];
                            let mut count = 0u64;
                            loop {
                                let Ok(n) = back2.recv(&mut buf).await else {
                                    continue;
                                };
                                count += 1;
                                if nth > 0 && count % nth == 0 {
                                    counter.fetch_add(1, Ordering::Relaxed);
                                    continue;
                                }
                                let _ = front.send_to(&buf[..n], client).await;
                            }
                        });
                        back
                    }
                };
                if nth > 0 && count % nth == 0 {
                    counter.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let _ = back.send(&buf[..n]).await;
            }
        });
        Relay {
            addr,
            dropped,
            task,
        }
    }
}
