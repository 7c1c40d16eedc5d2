//! What travels on NATS between nodes: protobuf messages (prost), documented in
//! `PROTOCOL.md`. Message bodies inside them are carried as the bytes a client sent or
//! a node encoded once, never decoded and encoded again on the way.

use std::collections::BTreeMap;

/// A node's presence, published on `<prefix>.hb` every heartbeat interval.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Heartbeat {
    #[prost(string, tag = "1")]
    pub(crate) node: String,
    #[prost(string, tag = "2")]
    pub(crate) kind: String,
    /// The message ids the node serves to other nodes.
    #[prost(uint32, repeated, tag = "3")]
    pub(crate) ids: Vec<u32>,
    /// The node takes no new work (it drains before leaving).
    #[prost(bool, tag = "4")]
    pub(crate) draining: bool,
    /// The node leaves now.
    #[prost(bool, tag = "5")]
    pub(crate) leaving: bool,
    /// Asks every node to answer with its own heartbeat at once (a node that just
    /// joined, or reconnected).
    #[prost(bool, tag = "6")]
    pub(crate) hello: bool,
}

/// A client's message a gate hands to the node serving its id (request on
/// `<prefix>.fwd.<node>`).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Forward {
    #[prost(uint64, tag = "1")]
    pub(crate) session: u64,
    #[prost(string, tag = "2")]
    pub(crate) gate: String,
    #[prost(string, tag = "3")]
    pub(crate) codec: String,
    #[prost(string, tag = "4")]
    pub(crate) transport: String,
    #[prost(string, tag = "5")]
    pub(crate) peer: String,
    /// The client's call number, when it awaits a reply.
    #[prost(uint32, optional, tag = "6")]
    pub(crate) call: Option<u32>,
    #[prost(uint32, tag = "7")]
    pub(crate) id: u32,
    #[prost(bytes = "bytes", tag = "8")]
    pub(crate) body: bytes::Bytes,
    #[prost(string, optional, tag = "9")]
    pub(crate) uid: Option<String>,
    /// The session's data, as the gate holds it.
    #[prost(btree_map = "string, string", tag = "10")]
    pub(crate) data: BTreeMap<String, String>,
    /// Frames of at most this many bytes go to the client.
    #[prost(uint32, tag = "11")]
    pub(crate) max_frame_len: u32,
    /// The message's metadata (its trace id among them), as the client sent it.
    #[prost(btree_map = "string, string", tag = "12")]
    pub(crate) metadata: BTreeMap<String, String>,
}

/// The answer to a [`Forward`].
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Forwarded {
    /// Frames the handler sent while it ran, in order, before its reply.
    #[prost(bytes = "bytes", repeated, tag = "1")]
    pub(crate) frames: Vec<bytes::Bytes>,
    /// The reply frame (already wrapped for the client's call).
    #[prost(bytes = "bytes", optional, tag = "2")]
    pub(crate) reply: Option<bytes::Bytes>,
    #[prost(message, optional, tag = "3")]
    pub(crate) error: Option<StatusMsg>,
    /// The session's data after the handler, when it changed.
    #[prost(btree_map = "string, string", tag = "4")]
    pub(crate) data: BTreeMap<String, String>,
    #[prost(bool, tag = "5")]
    pub(crate) data_changed: bool,
    /// The handler bound the session to this user.
    #[prost(string, optional, tag = "6")]
    pub(crate) bind: Option<String>,
    /// The handler closed the session, with this reason.
    #[prost(string, optional, tag = "7")]
    pub(crate) close: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct StatusMsg {
    #[prost(uint32, tag = "1")]
    pub(crate) code: u32,
    #[prost(string, tag = "2")]
    pub(crate) message: String,
}

/// A message body encoded once per codec clients use.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Bodies {
    #[prost(uint32, tag = "1")]
    pub(crate) id: u32,
    #[prost(string, tag = "2")]
    pub(crate) name: String,
    #[prost(string, repeated, tag = "3")]
    pub(crate) codecs: Vec<String>,
    #[prost(bytes = "bytes", repeated, tag = "4")]
    pub(crate) bodies: Vec<bytes::Bytes>,
    /// The metadata of the message being handled when this one was sent (its trace id
    /// among them), for the receiving client's handler and the relaying node's logs.
    #[prost(btree_map = "string, string", tag = "5")]
    pub(crate) metadata: BTreeMap<String, String>,
}

/// What a node is asked to do with one of its sessions (on `<prefix>.node.<node>`).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Control {
    #[prost(uint64, tag = "1")]
    pub(crate) session: u64,
    #[prost(oneof = "Op", tags = "2, 3, 4, 5, 6, 7")]
    pub(crate) op: Option<Op>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub(crate) enum Op {
    /// Send this message to the session.
    #[prost(message, tag = "2")]
    Push(Bodies),
    /// Send these frames, already encoded for the session, in order.
    #[prost(message, tag = "3")]
    Frames(Frames),
    /// Call the session (request/reply): answered with a [`CallReply`].
    #[prost(message, tag = "4")]
    Call(Bodies),
    #[prost(message, tag = "5")]
    Kick(Kick),
    #[prost(string, tag = "6")]
    Join(String),
    #[prost(string, tag = "7")]
    Leave(String),
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Frames {
    #[prost(bytes = "bytes", repeated, tag = "1")]
    pub(crate) frames: Vec<bytes::Bytes>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Kick {
    #[prost(string, tag = "1")]
    pub(crate) reason: String,
    /// A newer login of the session's user, with this bind stamp, replaced it; the
    /// session is closed only if it is still bound with an older stamp.
    #[prost(uint64, optional, tag = "2")]
    pub(crate) replaced_by: Option<u64>,
}

/// The answer to a control message: empty on success.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ControlReply {
    #[prost(message, optional, tag = "1")]
    pub(crate) error: Option<StatusMsg>,
    /// A call's reply.
    #[prost(uint32, tag = "2")]
    pub(crate) id: u32,
    #[prost(bytes = "bytes", tag = "3")]
    pub(crate) body: bytes::Bytes,
    #[prost(string, tag = "4")]
    pub(crate) codec: String,
}

/// What travels on a user's subject (`<prefix>.user.<uid>`).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct UserMsg {
    #[prost(oneof = "UserOp", tags = "1, 2, 3, 4")]
    pub(crate) op: Option<UserOp>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub(crate) enum UserOp {
    #[prost(message, tag = "1")]
    Bound(Bound),
    #[prost(message, tag = "2")]
    Push(Bodies),
    #[prost(string, tag = "3")]
    Kick(String),
    /// Call the user's session (request/reply): answered with a [`ControlReply`].
    #[prost(message, tag = "4")]
    Call(Bodies),
}

/// A session was bound to a user (also an event on `<prefix>.event.bind`).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Bound {
    #[prost(string, tag = "1")]
    pub(crate) uid: String,
    #[prost(string, tag = "2")]
    pub(crate) node: String,
    #[prost(uint64, tag = "3")]
    pub(crate) session: u64,
    /// Orders the logins of one user: the greatest stamp is the newest.
    #[prost(uint64, tag = "4")]
    pub(crate) stamp: u64,
}

/// A session closed (an event on `<prefix>.event.close`).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Closed {
    #[prost(string, tag = "1")]
    pub(crate) node: String,
    #[prost(uint64, tag = "2")]
    pub(crate) session: u64,
    #[prost(string, optional, tag = "3")]
    pub(crate) uid: Option<String>,
    #[prost(string, tag = "4")]
    pub(crate) reason: String,
}

/// A broadcast to a group (on `<prefix>.group.<group>`).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct GroupCast {
    #[prost(string, tag = "1")]
    pub(crate) group: String,
    #[prost(message, optional, tag = "2")]
    pub(crate) bodies: Option<Bodies>,
}
