//! Peers that break the rules, one per transport, written against the raw transport.

use gonet::Server;

use super::Garbage;

/// Connects to `server` without gonet and sends something that is not a packet.
pub(crate) async fn send_garbage(server: &Server) -> Garbage {
    let url = server.url();
    let scheme = url.split("://").next().expect("scheme");
    match scheme {
        #[cfg(feature = "tcp")]
        "tcp" => tcp(server).await,
        #[cfg(feature = "udp")]
        "udp" => udp(server).await,
        #[cfg(feature = "ws")]
        "ws" | "wss" => ws(server).await,
        #[cfg(feature = "quic")]
        "quic" => quic(server).await,
        #[cfg(feature = "kcp")]
        "kcp" => kcp(server).await,
        other => panic!("no raw peer for {other}"),
    }
}

/// A frame whose length field (2) cannot even hold a message id.
#[cfg(any(feature = "tcp", feature = "quic", feature = "kcp"))]
const SHORT_LENGTH: [u8; 6] = [2, 0, 0, 0, 0, 0];

#[cfg(any(feature = "udp", feature = "quic"))]
fn echo_packet(text: &str) -> Vec<u8> {
    let body = format!("{{\"text\":\"{text}\"}}");
    gonet::frame::encode_frame(1001, body.as_bytes())
        .expect("fits")
        .to_vec()
}

#[cfg(feature = "tcp")]
async fn tcp(server: &Server) -> Garbage {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .expect("connect");
    stream.write_all(&SHORT_LENGTH).await.expect("write");
    Garbage {
        error_contains: "frame length 2 is below the minimum",
        closes: true,
        after: Some(Box::pin(async move {
            // The server closes the connection: end of stream.
            let mut buf = [0u8; 64];
            while stream.read(&mut buf).await.unwrap_or(0) > 0 {}
        })),
    }
}

#[cfg(feature = "udp")]
async fn udp(server: &Server) -> Garbage {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    socket.connect(server.local_addr()).await.expect("connect");
    // A valid packet first starts a session; then garbage; then the session still works.
    socket.send(&echo_packet("one")).await.expect("send");
    let mut buf = vec![0u8; 2048];
    let n = socket.recv(&mut buf).await.expect("reply");
    assert_eq!(&buf[..n], &echo_packet("one")[..]);
    socket.send(&[1, 2, 3]).await.expect("send");
    Garbage {
        error_contains: "3-byte message is shorter than the 6-byte packet header",
        closes: false,
        after: Some(Box::pin(async move {
            socket.send(&echo_packet("two")).await.expect("send");
            let n = socket.recv(&mut buf).await.expect("reply");
            assert_eq!(&buf[..n], &echo_packet("two")[..], "udp session carries on");
        })),
    }
}

#[cfg(feature = "ws")]
async fn ws(server: &Server) -> Garbage {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    let tcp = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .expect("connect");
    let url = server.url();
    let stream: Box<dyn Io> = if url.starts_with("wss") {
        #[cfg(feature = "wss")]
        {
            Box::new(tls(server, tcp).await)
        }
        #[cfg(not(feature = "wss"))]
        unreachable!()
    } else {
        Box::new(tcp)
    };
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .expect("handshake");
    ws.send(Message::text("hello")).await.expect("send");
    Garbage {
        error_contains: "5-byte text message",
        closes: true,
        after: Some(Box::pin(async move {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Close(Some(frame)))) => {
                        assert_eq!(frame.code, CloseCode::Unsupported);
                        assert!(frame.reason.contains("text message"), "{}", frame.reason);
                        return;
                    }
                    Some(Ok(_)) => {}
                    other => panic!("expected a close frame, got {other:?}"),
                }
            }
        })),
    }
}

#[cfg(feature = "ws")]
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
#[cfg(feature = "ws")]
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

#[cfg(feature = "wss")]
async fn tls(
    server: &Server,
    tcp: tokio::net::TcpStream,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use std::sync::Arc;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(server.certificate().expect("cert").to_vec().into())
        .expect("root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("tls")
}

/// A raw QUIC connection to `server`, trusting its certificate.
#[cfg(feature = "quic")]
pub(crate) async fn quic_connect(server: &Server) -> (quinn::Endpoint, quinn::Connection) {
    use std::sync::Arc;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(server.certificate().expect("cert").to_vec().into())
        .expect("root");
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"gonet".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("quic tls");
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).expect("endpoint");
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let conn = endpoint
        .connect(server.local_addr(), "127.0.0.1")
        .expect("connect")
        .await
        .expect("handshake");
    (endpoint, conn)
}

#[cfg(feature = "quic")]
async fn quic(server: &Server) -> Garbage {
    let _ = echo_packet;
    let (endpoint, conn) = quic_connect(server).await;
    let (mut send, _recv) = conn.open_bi().await.expect("stream");
    send.write_all(&SHORT_LENGTH).await.expect("write");
    Garbage {
        error_contains: "frame length 2 is below the minimum",
        closes: true,
        after: Some(Box::pin(async move {
            // The server closes the connection.
            let _ = conn.closed().await;
            let _keep = (endpoint, _recv, send);
        })),
    }
}

#[cfg(feature = "kcp")]
async fn kcp(server: &Server) -> Garbage {
    let mut peer = crate::kcp_raw::RawKcp::connect(server.local_addr(), 0x6a7b, false).await;
    // A ping first: a peer that has used the extension is told bye (a plain one is not).
    peer.send(&[4, 0, 0x10, 0xff, 0xff, 0xff]);
    peer.send(&SHORT_LENGTH);
    Garbage {
        error_contains: "frame length 2 is below the minimum",
        closes: true,
        after: Some(Box::pin(async move {
            // The server answers the ping, then says bye.
            let (pong, bye) = (
                [4u8, 0, 0x11, 0xff, 0xff, 0xff],
                [4u8, 0, 0x12, 0xff, 0xff, 0xff],
            );
            let mut seen: Vec<Vec<u8>> = Vec::new();
            while !seen.iter().any(|m| m[..] == bye) {
                let got = peer.pump(std::time::Duration::from_millis(50)).await;
                seen.extend(got);
            }
            assert_eq!(
                seen,
                vec![pong.to_vec(), bye.to_vec()],
                "a pong, then a bye"
            );
        })),
    }
}
