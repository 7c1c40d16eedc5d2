//! Plain mode: a peer that never used the protocol extension (a Go gonet v3 peer)
//! receives nothing but plain frames, and heartbeat timings are exactly what the docs
//! say. Timers run on tokio's paused clock: the durations asserted are the clock's, not
//! the machine's.

#[cfg(feature = "udp")]
mod udp {
    use super::super::*;

    /// The ids the extension uses (see `PROTOCOL.md`).
    const PING: u32 = 0xFFFF_FF10;
    const BYE: u32 = 0xFFFF_FF12;

    /// One gonet v3 frame: u16 LE length (id included), u32 LE id, body.
    fn frame(id: u32, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(6 + body.len());
        out.extend_from_slice(&u16::try_from(4 + body.len()).expect("small").to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(body);
        out
    }

    /// The id of a received datagram, checking that it is one well-formed frame.
    fn id_of(datagram: &[u8]) -> u32 {
        assert!(datagram.len() >= 6, "short datagram {datagram:02x?}");
        let len = u16::from_le_bytes([datagram[0], datagram[1]]) as usize;
        assert_eq!(len + 2, datagram.len(), "one frame per datagram");
        u32::from_le_bytes(datagram[2..6].try_into().expect("four bytes"))
    }

    /// Every datagram already delivered to `socket`, without waiting.
    fn drain(socket: &tokio::net::UdpSocket) -> Vec<u32> {
        let mut buf = [0u8; 2048];
        let mut ids = Vec::new();
        while let Ok(n) = socket.try_recv(&mut buf) {
            ids.push(id_of(&buf[..n]));
        }
        ids
    }

    /// A Go-style peer of `server`: sends one plain echo frame and checks the reply.
    async fn echoed_plain_peer(server: &Server) -> tokio::net::UdpSocket {
        let go = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        go.connect(server.local_addr()).await.expect("connect");
        go.send(&frame(1001, br#"{"text":"hi"}"#))
            .await
            .expect("send");
        let mut buf = [0u8; 2048];
        let n = within("the reply", go.recv(&mut buf)).await.expect("recv");
        assert_eq!(id_of(&buf[..n]), 1001);
        assert_eq!(&buf[6..n], br#"{"text":"hi"}"#);
        go
    }

    /// Waits for the error hook's idle-timeout report and returns its text.
    async fn idle_error(errors: &mut Errors) -> String {
        within("the idle timeout", async {
            loop {
                let (_, err) = errors.recv().await.expect("hook alive");
                if err.contains("idle timeout") {
                    return err;
                }
            }
        })
        .await
    }

    /// A Go-style client (plain frames only) of a server with UDP's default heartbeat
    /// (ping after 5 s, close after 15 s): it gets its reply, is never pinged, and is
    /// closed exactly 15 s after its last datagram, with nothing sent but the reply.
    #[tokio::test(start_paused = true)]
    async fn a_plain_peer_gets_no_extension_frame_and_is_closed_at_the_idle_timeout() {
        let (builder, closes, errors) = server_builder();
        let mut fx = serve_with("udp://127.0.0.1:0", builder, closes, errors).await;
        let go = echoed_plain_peer(&fx.server).await;

        let err = idle_error(&mut fx.errors).await;
        assert_eq!(err, "peer silent for 15s: idle timeout");
        let (_, reason) = within("the close", fx.closes.recv()).await.expect("hook");
        assert!(matches!(reason, CloseReason::IdleTimeout), "{reason}");
        assert_eq!(drain(&go), Vec::<u32>::new(), "no ping, no bye");
        fx.server.shutdown().await;
    }

    /// A peer that has used the extension (it pinged) is pinged when silent: first
    /// exactly 5 s after it was last heard, again at 10 s, and closed at exactly 15 s.
    #[tokio::test(start_paused = true)]
    async fn a_peer_that_used_the_extension_is_pinged_on_time() {
        let (builder, closes, errors) = server_builder();
        let mut fx = serve_with("udp://127.0.0.1:0", builder, closes, errors).await;
        let peer = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        peer.connect(fx.server.local_addr()).await.expect("connect");
        peer.send(&frame(PING, &[])).await.expect("send");
        let mut buf = [0u8; 64];
        let n = within("the pong", peer.recv(&mut buf)).await.expect("recv");
        assert_eq!(id_of(&buf[..n]), PING + 1, "a pong");
        let err = idle_error(&mut fx.errors).await;
        assert_eq!(err, "peer silent for 15s: idle timeout");
        let (_, reason) = within("the close", fx.closes.recv()).await.expect("hook");
        assert!(matches!(reason, CloseReason::IdleTimeout), "{reason}");
        // Pings at 5 s and 10 s of silence; none at 15 s (the close), and no bye to a
        // peer that went silent.
        assert_eq!(drain(&peer), vec![PING, PING]);
        fx.server.shutdown().await;
    }

    /// A server with plain mode off pings even a plain peer.
    #[tokio::test(start_paused = true)]
    async fn plain_mode_off_pings_every_peer() {
        let (builder, closes, errors) = server_builder();
        let builder = builder.plain(false);
        let mut fx = serve_with("udp://127.0.0.1:0", builder, closes, errors).await;
        let go = echoed_plain_peer(&fx.server).await;
        idle_error(&mut fx.errors).await;
        assert_eq!(drain(&go), vec![PING, PING]);
        fx.server.shutdown().await;
    }

    /// A plain client towards a Go-style server: its messages go out as plain frames,
    /// and nothing else, not even when it falls silent or closes.
    #[tokio::test(start_paused = true)]
    async fn a_plain_client_sends_only_plain_frames() {
        let go = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("udp://{}", go.local_addr().expect("addr"));
        let client = Builder::new()
            .codec(Codec::Json)
            .plain(true)
            .dial(&url)
            .await
            .expect("dial");
        client.send(&Echo { text: "a".into() }).expect("send");
        let mut buf = [0u8; 2048];
        let (n, from) = within("the message", go.recv_from(&mut buf))
            .await
            .expect("recv");
        assert_eq!(id_of(&buf[..n]), 1001);
        // Twelve seconds of silence: past two heartbeat intervals, short of the idle
        // timeout.
        tokio::time::sleep(Duration::from_secs(12)).await;
        client.send(&Echo { text: "b".into() }).expect("send");
        let n = within("the second message", go.recv(&mut buf))
            .await
            .expect("recv");
        assert_eq!(id_of(&buf[..n]), 1001);
        client.close("done");
        within("the close", client.closed()).await;
        let mut rest = Vec::new();
        while let Ok((n, peer)) = go.try_recv_from(&mut buf) {
            assert_eq!(peer, from);
            rest.push(id_of(&buf[..n]));
        }
        assert_eq!(rest, Vec::<u32>::new(), "no ping, no bye");
    }

    /// The same client with plain mode off (a client's default) says bye on close.
    #[tokio::test(start_paused = true)]
    async fn a_client_says_bye_unless_plain() {
        let server = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("udp://{}", server.local_addr().expect("addr"));
        let client = Builder::new()
            .codec(Codec::Json)
            .dial(&url)
            .await
            .expect("dial");
        client.send(&Echo { text: "a".into() }).expect("send");
        client.close("done");
        within("the close", client.closed()).await;
        let mut buf = [0u8; 2048];
        let mut ids = Vec::new();
        while ids.len() < 2 {
            let n = within("a datagram", server.recv(&mut buf))
                .await
                .expect("recv");
            ids.push(id_of(&buf[..n]));
        }
        assert_eq!(ids, vec![1001, BYE]);
    }
}
