//! The benchmark's messages: protobuf bodies through prost, with gonet ids.
//!
//! Every body starts with a `fixed64` sequence number (always 9 bytes on the wire), so
//! the load generator can build and check frames without a protobuf library and both
//! servers see exactly the same bytes.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use gonet::{Codec, CodecError, Message};

pub(crate) const ECHO: u32 = 1001;
pub(crate) const ECHO_REPLY: u32 = 1002;
pub(crate) const JOIN: u32 = 1003;
pub(crate) const JOINED: u32 = 1004;
pub(crate) const PUBLISH: u32 = 1005;
pub(crate) const FANOUT: u32 = 1006;
pub(crate) const PUBLISHED: u32 = 1007;

/// A request of the echo service.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Echo {
    #[prost(fixed64, tag = "1")]
    pub(crate) seq: u64,
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) body: Vec<u8>,
}
gonet::message!(Echo = ECHO, prost, name = "bench.Echo");

/// Its reply: the same fields, so the same bytes under another id.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct EchoReply {
    #[prost(fixed64, tag = "1")]
    pub(crate) seq: u64,
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) body: Vec<u8>,
}
gonet::message!(EchoReply = ECHO_REPLY, prost, name = "bench.EchoReply");

/// Joins the fan-out group.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Join {}
gonet::message!(Join = JOIN, prost, name = "bench.Join");

/// The group was joined.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Joined {}
gonet::message!(Joined = JOINED, prost, name = "bench.Joined");

/// Asks the server to broadcast `Fanout { seq, body }` to the group.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Publish {
    #[prost(fixed64, tag = "1")]
    pub(crate) seq: u64,
    #[prost(bytes = "bytes", tag = "2")]
    pub(crate) body: Bytes,
}
gonet::message!(Publish = PUBLISH, prost, name = "bench.Publish");

/// What every member of the group receives.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Fanout {
    #[prost(fixed64, tag = "1")]
    pub(crate) seq: u64,
    #[prost(bytes = "bytes", tag = "2")]
    pub(crate) body: Bytes,
}

/// Bodies of [`Fanout`] encoded so far in this process.
pub(crate) static FANOUT_ENCODES: AtomicU64 = AtomicU64::new(0);

/// [`Fanout`] with its encodes counted, so the benchmark can check that a broadcast
/// encodes once whatever the size of the group.
#[derive(Debug)]
pub(crate) struct CountedFanout(pub Fanout);

impl Message for CountedFanout {
    const ID: u32 = FANOUT;
    const NAME: &'static str = "bench.Fanout";

    fn encode_body(&self, codec: Codec, dst: &mut BytesMut) -> Result<(), CodecError> {
        FANOUT_ENCODES.fetch_add(1, Ordering::Relaxed);
        self.0.encode_body(codec, dst)
    }

    fn decode_body(codec: Codec, body: gonet::Body<'_>) -> Result<Self, CodecError> {
        Fanout::decode_body(codec, body).map(CountedFanout)
    }
}
gonet::message!(Fanout = FANOUT, prost, name = "bench.Fanout.inner");

/// The broadcast of `seq` was queued; `encodes` counts the fan-out encodes so far.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Published {
    #[prost(fixed64, tag = "1")]
    pub(crate) seq: u64,
    #[prost(fixed64, tag = "2")]
    pub(crate) encodes: u64,
}
gonet::message!(Published = PUBLISHED, prost, name = "bench.Published");
