//! The cluster against a real `nats-server`: nodes in this process (and one as a child
//! process, killed), real gonet clients over TCP and WebSocket.

mod failure;
mod fixture;
mod groups;
mod hostile;
mod nats;
mod relay;
mod routing;
mod sessions;

/// The runtime every test runs on: multi-threaded, so NATS, nodes and clients run as
/// they would in a server.
macro_rules! cluster_test {
    ($(#[$meta:meta])* async fn $name:ident() $body:block) => {
        $(#[$meta])*
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() $body
    };
}
pub(crate) use cluster_test;
