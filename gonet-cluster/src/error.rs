//! [`ClusterError`]: what a cluster operation can fail with.

use std::time::Duration;

use gonet::{CodecError, Status};

use crate::SessionAddr;

/// Why a cluster operation failed.
///
/// ```
/// use gonet_cluster::ClusterError;
///
/// let err = ClusterError::NoSuchNode { node: "room-9".into() };
/// assert_eq!(err.to_string(), "no live node room-9 in the cluster");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The NATS server could not be reached when joining.
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect {
        /// The URL given.
        url: String,
        /// What the NATS client said.
        #[source]
        source: async_nats::ConnectError,
    },
    /// A subscription the node needs was refused.
    #[error("cannot subscribe to {subject}: {source}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// What the NATS client said.
        #[source]
        source: async_nats::SubscribeError,
    },
    /// The node named is not a live member of the cluster.
    #[error("no live node {node} in the cluster")]
    NoSuchNode {
        /// The node's id.
        node: String,
    },
    /// Nothing answers on the node's subject: it is gone (NATS said "no responders").
    #[error("node {node} is gone (no responders)")]
    NodeGone {
        /// The node's id.
        node: String,
    },
    /// The node did not answer in time.
    #[error("node {node} did not answer within {after:?}")]
    Timeout {
        /// The node's id.
        node: String,
        /// The request timeout.
        after: Duration,
    },
    /// The session is not (or no longer) connected to its node.
    #[error("no session {addr} in the cluster")]
    NoSuchSession {
        /// The session's cluster-wide address.
        addr: SessionAddr,
    },
    /// The message does not fit in one NATS message (the server's `max_payload`,
    /// 1 MB by default).
    #[error("message {name} does not fit in one NATS message: {detail}")]
    TooLarge {
        /// The message's name.
        name: &'static str,
        /// What the NATS client said.
        detail: String,
    },
    /// No live session is bound to the user (nobody answered on the user's subject).
    #[error("no session of user {uid} in the cluster")]
    NoSuchUser {
        /// The user id.
        uid: String,
    },
    /// A message could not be encoded or decoded.
    #[error("message {name}: {source}")]
    Codec {
        /// The message's name.
        name: &'static str,
        /// The codec's error.
        #[source]
        source: CodecError,
    },
    /// The other side answered with an error status (a call the session answered
    /// with an error, or a node that refused the operation).
    #[error("{status}")]
    Status {
        /// The status.
        status: Status,
    },
    /// An answer from another node could not be read (a node of an incompatible
    /// version, or a corrupt message).
    #[error("bad answer from node {node}: {detail}")]
    BadAnswer {
        /// The node's id.
        node: String,
        /// What was wrong.
        detail: String,
    },
    /// The link to NATS failed (the node reconnects by itself).
    #[error("NATS link: {0}")]
    Link(String),
    /// The node is draining or has left.
    #[error("node {node} is draining and takes no new work")]
    Draining {
        /// This node's id.
        node: String,
    },
}
