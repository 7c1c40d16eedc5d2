//! [`Remote`]: what a handler knows of a client connected to another node.

use std::sync::Arc;

use gonet::Session;

use crate::SessionAddr;

/// The client behind a session handed to a handler on a node other than the client's
/// gate: its address in the cluster and its gate. The session itself is a
/// [`gonet::Session`] like any other: what the handler sends reaches the client
/// through its gate, [`Session::close`] closes the client's connection,
/// [`Session::uid`] is the user it is bound to and [`Session::bind`] binds it (with
/// unique login across the cluster), and [`SessionData`](crate::SessionData) holds
/// the data every node sees.
///
/// ```
/// use gonet::Session;
/// use gonet_cluster::Remote;
///
/// async fn whoami(session: Session) -> String {
///     match Remote::of(&session) {
///         Some(remote) => format!("client {} of gate {}", remote.addr, remote.addr.node),
///         None => format!("local client {}", session.id()),
///     }
/// }
/// # drop(whoami);
/// ```
#[derive(Clone, Debug)]
pub struct Remote {
    /// The client's session, at its gate.
    pub addr: SessionAddr,
}

impl Remote {
    /// The remote client behind `session`, if it is connected to another node.
    pub fn of(session: &Session) -> Option<Remote> {
        session.get::<Remote>()
    }

    /// The gate the client is connected to.
    pub fn gate(&self) -> &Arc<str> {
        &self.addr.node
    }
}
