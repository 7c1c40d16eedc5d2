//! kcp-go's packet layouts between a gonet-rs client and server, through a relay that
//! loses datagrams: every crypt, FEC, both modes; and what a bad URL says.

use gonet::{Builder, KcpSettings};

use crate::relay::Relay;
use crate::{echo_client, echo_server, round_trip, serve, texts, within};

/// Echoes 60 messages (every 10th over 3 KB, so cut into segments) through a relay
/// dropping every 7th datagram each way, with the settings of `query`.
async fn lossy_round_trip(query: &str) {
    let (builder, _seen) = echo_server();
    let server = serve(&builder, &format!("kcp://127.0.0.1:0?{query}")).await;
    let relay = Relay::start(server.local_addr(), 7).await;
    let url = format!("kcp://{}?{query}", relay.addr);
    let (client, mut echoes) = echo_client(&url, Builder::new()).await;
    round_trip(&client, &mut echoes, &texts(60, query)).await;
    assert!(
        relay.dropped.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "the relay lost nothing: the test tests no loss"
    );
    client.close("done");
    within("the client's close", client.closed()).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_kcp_through_loss() {
    lossy_round_trip("crypt=off").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aes_through_loss() {
    lossy_round_trip("crypt=aes&password=pw&salt=s").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gonet_preset_aes_and_fec_through_loss() {
    lossy_round_trip("preset=gonet").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_mode_aes_128_and_fec_through_loss() {
    lossy_round_trip("mode=stream&crypt=aes-128&fec=4,2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salsa20_xor_and_none_through_loss() {
    lossy_round_trip("crypt=salsa20").await;
    lossy_round_trip("crypt=xor&fec=3,1").await;
    lossy_round_trip("crypt=none").await;
}

/// The builder's settings are the URL's defaults: a server built with the gonet preset
/// and a client dialing with the same query understand each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builder_settings_and_url_query_agree() {
    let (builder, _seen) = echo_server();
    let server = serve(
        &builder.kcp(KcpSettings::gonet("pw", "")),
        "kcp://127.0.0.1:0",
    )
    .await;
    let url = format!("kcp://{}?preset=gonet&password=pw", server.local_addr());
    let (client, mut echoes) = echo_client(&url, Builder::new()).await;
    round_trip(&client, &mut echoes, &texts(5, "builder")).await;
    client.close("done");
    server.shutdown().await;
}

#[tokio::test]
async fn a_bad_parameter_fails_serve_and_dial_naming_it() {
    let err = Builder::new()
        .serve("kcp://127.0.0.1:0?crypt=rot13")
        .await
        .expect_err("a bad crypt");
    assert!(
        err.to_string()
            .contains("parameter `crypt`: unknown crypt \"rot13\""),
        "{err}"
    );
    let err = Builder::new()
        .dial("kcp://127.0.0.1:9?fec=ten")
        .await
        .expect_err("a bad fec");
    assert!(err.to_string().contains("parameter `fec`"), "{err}");
    assert!(
        err.to_string().contains("kcp://127.0.0.1:9?fec=ten"),
        "{err}"
    );
}
