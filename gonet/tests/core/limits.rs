//! Rate limits: a flooding session is held to its rate while the others keep theirs;
//! an address is held to its sessions and its rate of new connections.

use std::sync::{Arc, Mutex};

use gonet::{
    Builder, CallError, CloseReason, Code, IpLimit, RateLimit, RatePolicy, Router, Session,
    SessionErrorKind,
};

use crate::support::*;

fn echo() -> Router {
    Router::new().route(|_: Session, say: Say| async move {
        SayAck {
            content: say.content,
        }
    })
}

fn say(n: usize) -> Say {
    Say {
        content: n.to_string(),
    }
}

/// Calls `n` times, counting the replies and the `ResourceExhausted` answers.
async fn flood(client: &Session, n: usize) -> (usize, usize) {
    let (mut ok, mut limited) = (0, 0);
    for i in 0..n {
        match client.call::<_, SayAck>(&say(i)).await {
            Ok(_) => ok += 1,
            Err(CallError::Status { status, .. }) if status.code() == Code::ResourceExhausted => {
                limited += 1;
            }
            Err(other) => panic!("call {i}: {other}"),
        }
    }
    (ok, limited)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_session_is_held_to_its_rate_and_the_others_are_not() {
    let limited_seen = Arc::new(Mutex::new(0u32));
    let seen = limited_seen.clone();
    let server = Builder::new()
        .codec(gonet::Codec::Json)
        .router(echo())
        // 5 a second with bursts of 20: a flood of 400 calls gets its burst and
        // little more, however fast the machine.
        .rate_limit(RateLimit::new().messages(5.0, 20))
        .on_error(move |_, err| {
            if matches!(err.kind, SessionErrorKind::RateLimited { .. }) {
                *seen.lock().unwrap() += 1;
            }
        })
        .serve("tcp://127.0.0.1:0")
        .await
        .unwrap();
    let flooder = json_client(&server).await;
    let calm = json_client(&server).await;
    let flooding = tokio::spawn(async move { flood(&flooder, 400).await });
    // The calm session's 15 calls fit in its own burst, whatever the flooder does.
    let (calm_ok, calm_limited) = flood(&calm, 15).await;
    let (ok, limited) = within("the flood", flooding).await.unwrap();
    assert_eq!((calm_ok, calm_limited), (15, 0));
    assert_eq!(ok + limited, 400);
    assert!(
        limited >= 300,
        "only {limited} of 400 refused ({ok} served)"
    );
    assert!(ok >= 20, "the burst is served: {ok}");
    assert_eq!(*limited_seen.lock().unwrap() as usize, limited);
    server.shutdown().await;
}

#[tokio::test]
async fn a_session_past_its_limit_too_often_is_closed() {
    let server = Builder::new()
        .codec(gonet::Codec::Json)
        .router(echo())
        .rate_limit(
            RateLimit::new()
                .bytes(1.0, 200)
                .policy(RatePolicy::CloseAfter(3)),
        )
        .serve("tcp://127.0.0.1:0")
        .await
        .unwrap();
    let client = json_client(&server).await;
    let big = Say {
        content: "x".repeat(150),
    };
    // The first fits the burst; three more go past it, and the third closes.
    let _: SayAck = client.call(&big).await.unwrap();
    for _ in 0..2 {
        let err = client.call::<_, SayAck>(&big).await.unwrap_err();
        assert_eq!(
            err.status().map(|s| s.code()),
            Some(Code::ResourceExhausted)
        );
    }
    let _ = client.call::<_, SayAck>(&big).await;
    let reason = within("the close", client.closed()).await;
    assert!(matches!(reason, CloseReason::PeerClosed), "{reason:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn an_address_is_held_to_its_sessions() {
    let server = Builder::new()
        .codec(gonet::Codec::Json)
        .router(echo())
        .ip_limit(IpLimit::new().sessions(2))
        .serve("tcp://127.0.0.1:0")
        .await
        .unwrap();
    let a = json_client(&server).await;
    let b = json_client(&server).await;
    let _: SayAck = a.call(&say(1)).await.unwrap();
    let _: SayAck = b.call(&say(2)).await.unwrap();
    // A third from the same address is refused before it is a session.
    let third = json_client(&server).await;
    let reason = within("the refusal", third.closed()).await;
    assert!(matches!(reason, CloseReason::PeerClosed), "{reason:?}");
    assert_eq!(server.pool().len(), 2);
    // Once one leaves, there is room again.
    a.close("done");
    a.closed().await;
    until("the pool to see it go", || server.pool().len() == 1).await;
    let fourth = json_client(&server).await;
    let _: SayAck = fourth.call(&say(4)).await.unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn an_address_is_held_to_its_rate_of_new_connections() {
    let server = Builder::new()
        .codec(gonet::Codec::Json)
        .router(echo())
        .ip_limit(IpLimit::new().connections(0.001, 3))
        .serve("tcp://127.0.0.1:0")
        .await
        .unwrap();
    let mut served = 0;
    for i in 0..6 {
        let client = json_client(&server).await;
        if client.call::<_, SayAck>(&say(i)).await.is_ok() {
            served += 1;
        }
    }
    assert_eq!(
        served, 3,
        "the burst, then nothing until the bucket refills"
    );
    server.shutdown().await;
}
