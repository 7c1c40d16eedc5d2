//! A spoofed or broken peer on the cluster's subjects: garbage where envelopes belong is
//! refused with a clear error where it has a reply subject, ignored where it has none,
//! and the nodes go on serving.

use bytes::Bytes;

use crate::cluster_test;
use crate::fixture::*;
use crate::nats::NatsServer;

/// The error status of an answer, as `PROTOCOL.md` lays the envelopes out: field 1 of
/// `ControlReply` (and of `Forwarded`, field 3) is a `StatusMsg { code = 1, message = 2 }`.
#[derive(Clone, PartialEq, prost::Message)]
struct StatusMsg {
    #[prost(uint32, tag = "1")]
    code: u32,
    #[prost(string, tag = "2")]
    message: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ControlReply {
    #[prost(message, optional, tag = "1")]
    error: Option<StatusMsg>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Forwarded {
    #[prost(message, optional, tag = "3")]
    error: Option<StatusMsg>,
}

cluster_test! {
    async fn garbage_on_every_subject_is_refused_or_ignored_and_service_goes_on() {
        let nats = NatsServer::start().await;
        let gate = gate(&nats, "gate-1").await;
        let _r1 = room(&nats, "room-1", &RoomCtl::default()).await;
        sees(&gate.node, &["room-1"]).await;
        let c = client(&gate.tcp.url()).await;
        let _: Login = c.session.call(&Login { user: "ada".into() }).await.unwrap();

        let raw = async_nats::connect(nats.url()).await.unwrap();
        let garbage = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x02]);
        // Requests get an answer naming what was wrong.
        let answer = raw.request("gonet.test.fwd.room-1", garbage.clone()).await.unwrap();
        let status = prost::Message::decode(answer.payload).map(|f: Forwarded| f.error);
        let status = status.unwrap().expect("an error status");
        assert!(status.message.starts_with("undecodable relayed message"), "{}", status.message);
        let answer = raw.request("gonet.test.node.gate-1", garbage.clone()).await.unwrap();
        let status = prost::Message::decode(answer.payload).map(|r: ControlReply| r.error);
        let status = status.unwrap().expect("an error status");
        assert!(status.message.starts_with("undecodable control message"), "{}", status.message);
        // An empty control message for a session that is not there.
        let answer = raw.request("gonet.test.node.gate-1", Bytes::new()).await.unwrap();
        let status = prost::Message::decode(answer.payload).map(|r: ControlReply| r.error);
        assert!(status.unwrap().expect("an error status").message.contains("no session 0 on node gate-1"));
        // Publishes without a reply subject are dropped.
        for subject in ["gonet.test.hb", "gonet.test.group.hall", "gonet.test.user.ada",
                        "gonet.test.event.bind", "gonet.test.event.close", "gonet.test.fwd.room-1"] {
            raw.publish(subject, garbage.clone()).await.unwrap();
            raw.publish(subject, Bytes::new()).await.unwrap();
        }
        raw.flush().await.unwrap();

        // Everything still works, and nobody was counted lost or logged out.
        let (entered, _) = enter(&c, "lobby").await;
        assert_eq!(entered.node, "room-1");
        let dumped: Dumped = c.session.call(&Dump {}).await.unwrap();
        assert_eq!(dumped.uid.as_deref(), Some("ada"));
        sees(&gate.node, &["room-1"]).await;
        assert!(gate.node.members().iter().all(|m| !m.id.is_empty()), "{:?}", gate.node.members());
    }
}
