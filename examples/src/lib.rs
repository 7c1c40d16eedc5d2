//! Shared helpers for the examples: the command-line options they have in common
//! (clap), what a client's user is told when a TLS dial fails, and the Prometheus
//! endpoint of the servers' `--metrics ADDR`, and the logs and traces ([`logging`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;

use gonet::{Builder, ClientTls, Codec, DialError, Server, ServerTls, TlsError};

pub mod logging;

/// The body formats, as the `--codec` option names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CodecName {
    /// Protocol Buffers
    Protobuf,
    /// JSON as Go writes it
    Json,
    /// The canonical proto3 JSON mapping (JavaScript, the TypeScript client)
    Protojson,
    /// XML
    Xml,
    /// MessagePack
    Binary,
}

impl From<CodecName> for Codec {
    fn from(name: CodecName) -> Self {
        match name {
            CodecName::Protobuf => Codec::Protobuf,
            CodecName::Json => Codec::Json,
            CodecName::Protojson => Codec::ProtoJson,
            CodecName::Xml => Codec::Xml,
            CodecName::Binary => Codec::Binary,
        }
    }
}

/// A clap value parser for URLs: checks `text` as `gonet` will read it, so a bad URL is
/// an error of the command line that names the argument.
pub fn url(text: &str) -> Result<String, gonet::UrlError> {
    text.parse::<gonet::Url>().map(|_| text.to_owned())
}

/// The server's TLS options, for `wss://` and `quic://`.
#[derive(Debug, Default, clap::Args)]
pub struct ServerTlsArgs {
    /// Present this certificate chain (PEM) instead of a development certificate
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// The private key (PEM) of --cert
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// Save the certificate the server presents (DER), for a client's --ca FILE
    #[arg(long, value_name = "FILE")]
    write_cert: Option<PathBuf>,
}

impl ServerTlsArgs {
    /// Applies the options to `builder`.
    pub fn server(&self, builder: Builder) -> anyhow::Result<Builder> {
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                Ok(builder.server_tls(ServerTls::from_pem_files(cert, key)?))
            }
            _ => Ok(builder),
        }
    }

    /// Saves the certificate a TLS server presents, if asked to.
    pub fn after_serve(&self, server: &Server) -> anyhow::Result<()> {
        let Some(path) = &self.write_cert else {
            return Ok(());
        };
        let Some(cert) = server.certificate() else {
            anyhow::bail!(
                "--write-cert {}: a {} server presents no certificate (only wss:// and quic:// do)",
                path.display(),
                server.url().split("://").next().unwrap_or("plain"),
            );
        };
        std::fs::write(path, cert)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        println!(
            "certificate written to {} (DER); clients: --ca {}",
            path.display(),
            path.display()
        );
        Ok(())
    }
}

/// The client's TLS options, for `wss://` and `quic://`.
#[derive(Debug, Default, clap::Args)]
pub struct ClientTlsArgs {
    /// Trust this certificate or CA bundle (PEM or DER), such as the one the server
    /// saved with --write-cert
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Trust any certificate: no verification at all (development only)
    #[arg(long, conflicts_with = "ca")]
    insecure: bool,
}

impl ClientTlsArgs {
    /// Applies the options to `builder`.
    pub fn client(&self, builder: Builder) -> anyhow::Result<Builder> {
        if self.insecure {
            return Ok(builder.client_tls(ClientTls::danger_skip_verification()));
        }
        let Some(path) = &self.ca else {
            return Ok(builder);
        };
        let bytes = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("--ca: cannot read {}: {e}", path.display()))?;
        let tls = if bytes.starts_with(b"-----BEGIN") {
            ClientTls::trust_pem(&bytes)
        } else {
            ClientTls::trust_der(&bytes)
        }
        .map_err(|e| anyhow::anyhow!("--ca {}: {e}", path.display()))?;
        Ok(builder.client_tls(tls))
    }
}

/// The servers' `--metrics ADDR` option.
#[derive(Debug, Default, clap::Args)]
pub struct MetricsArgs {
    /// Serve the runtime's metrics as Prometheus text at http://ADDR/metrics (such as
    /// 127.0.0.1:9100)
    #[arg(long = "metrics", value_name = "ADDR")]
    pub addr: Option<SocketAddr>,
}

impl MetricsArgs {
    /// With `--metrics ADDR`: installs a Prometheus exporter listening on ADDR as the
    /// process's metrics recorder, and turns the runtime's metrics on in `builder`.
    /// Without it, `builder` as it was. Runs inside the Tokio runtime, which serves
    /// the endpoint.
    pub fn server(&self, builder: gonet::Builder) -> anyhow::Result<gonet::Builder> {
        let Some(addr) = self.addr else {
            return Ok(builder);
        };
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .install()
            .with_context(|| format!("--metrics {addr}"))?;
        tracing::info!(url = %format!("http://{addr}/metrics"), "metrics served");
        Ok(builder.metrics(true))
    }
}

/// `err` as the user of an example needs to hear it: a TLS dial without trust is
/// answered with the example's own `--ca` and `--insecure` options, not with the
/// `Builder` calls a program would make.
pub fn explain_dial(err: DialError) -> anyhow::Error {
    match &err {
        DialError::Tls {
            url,
            source: TlsError::NoTrust(_),
        } => anyhow::anyhow!(
            "cannot connect to {url}: the client does not know which certificate to trust. \
             Give it the server's certificate with --ca FILE (the server saves it with \
             --write-cert FILE), or skip verification with --insecure (development only)"
        ),
        _ => err.into(),
    }
}

/// A client builder that trusts exactly the certificate of `server` (for examples that
/// run both ends in one process).
pub fn trust_server(builder: Builder, server: &Server) -> anyhow::Result<Builder> {
    match server.certificate() {
        Some(cert) => Ok(builder.client_tls(ClientTls::trust_der(cert)?)),
        None => Ok(builder),
    }
}

/// The arguments of every `cargo run -p gonet-examples --example NAME` command in `docs`
/// (the README, an example's own `//!` docs), as a shell splits them, led by the
/// example's name: what the examples' tests parse, so that no documented command goes
/// stale.
pub fn documented_commands(example: &str, docs: &[&str]) -> Vec<Vec<String>> {
    let prefix = format!("cargo run -p gonet-examples --example {example}");
    docs.iter()
        .flat_map(|doc| doc.lines())
        .filter_map(|line| {
            let line = line.trim_start_matches("//!").trim();
            let rest = line.strip_prefix(&prefix)?;
            // `--example echo` and `--example echo_x` are not the same example.
            if !(rest.is_empty() || rest.starts_with(' ')) {
                return None;
            }
            let args = rest.trim().strip_prefix("--").unwrap_or(rest);
            Some(
                std::iter::once(example)
                    .chain(args.split_whitespace())
                    .map(str::to_owned)
                    .collect(),
            )
        })
        .collect()
}

/// A port of 127.0.0.1 that was free a moment ago (for tests that need an address
/// before they can bind it, such as `--metrics ADDR`).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port on 127.0.0.1")
}

/// The Prometheus text served at `http://addr/metrics`, through a plain HTTP/1.1
/// request.
pub async fn scrape(addr: SocketAddr) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect to {addr}"))?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let response = String::from_utf8(response).context("a response in UTF-8")?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("no end of headers in {response:?}"))?;
    anyhow::ensure!(head.starts_with("HTTP/1.1 200 "), "GET /metrics: {head}");
    anyhow::ensure!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "a chunked answer: {head}"
    );
    Ok(body.to_owned())
}

/// Scrapes `http://addr/metrics` until `done` holds for what it serves, and returns
/// that text; panics with the last answer after 20 s. The exporter may still be starting,
/// or a scrape see an older state: asking again is the way to wait for a count.
pub async fn scrape_until(addr: SocketAddr, what: &str, done: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    let scraped = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        loop {
            match scrape(addr).await {
                Ok(text) if done(&text) => return text,
                Ok(text) => last = text,
                Err(err) => last = format!("{err:#}"),
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    scraped.unwrap_or_else(|_| panic!("{what} never came; the last scrape: {last}"))
}

/// The value of `series` (a metric's name with its labels as Prometheus writes them,
/// such as `gonet_messages_in_total{message="echo.Ping"}`) in the text `metrics`.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_tls_client_without_trust_hears_of_ca_and_insecure() {
        for scheme in ["wss://127.0.0.1:0/echo", "quic://127.0.0.1:0"] {
            let server = Builder::new().serve(scheme).await.expect("serves");
            let builder = ClientTlsArgs::default()
                .client(Builder::new())
                .expect("no options");
            let err = builder
                .dial(&server.url())
                .await
                .map(drop)
                .map_err(explain_dial)
                .expect_err("no trust, no session");
            assert_eq!(
                err.to_string(),
                format!(
                    "cannot connect to {}: the client does not know which certificate to \
                     trust. Give it the server's certificate with --ca FILE (the server saves \
                     it with --write-cert FILE), or skip verification with --insecure \
                     (development only)",
                    server.url()
                )
            );
            server.shutdown().await;
        }
    }

    #[test]
    fn a_sample_is_the_value_of_exactly_that_series() {
        let text = "# TYPE gonet_messages_in_total counter\n\
                    gonet_messages_in_total{message=\"echo.Ping\"} 7\n\
                    gonet_handler_seconds{message=\"echo.Ping\",quantile=\"0.5\"} 0.00003\n\
                    gonet_handler_seconds_count{message=\"echo.Ping\"} 7\n";
        let ping = r#"gonet_messages_in_total{message="echo.Ping"}"#;
        assert_eq!(sample(text, ping), Some(7.0));
        let count = r#"gonet_handler_seconds_count{message="echo.Ping"}"#;
        assert_eq!(sample(text, count), Some(7.0));
        // Neither another series that starts the same nor another label value.
        assert_eq!(
            sample(text, r#"gonet_handler_seconds{message="echo.Ping"}"#),
            None
        );
        assert_eq!(
            sample(text, r#"gonet_messages_in_total{message="echo.Pong"}"#),
            None
        );
    }

    #[tokio::test]
    async fn other_dial_errors_keep_their_own_message() {
        let err = Builder::new()
            .dial("pigeon://127.0.0.1:7000")
            .await
            .map(drop)
            .map_err(explain_dial)
            .expect_err("no such transport");
        assert!(
            err.to_string()
                .starts_with("bad url \"pigeon://127.0.0.1:7000\": "),
            "{err}"
        );
    }
}
