//! TLS for `wss://` and `quic://`: certificates for servers, trust for clients.
//!
//! Everything runs on rustls with the ring provider, passed explicitly
//! (`builder_with_provider`), so the process-wide default provider is never consulted:
//! with two providers linked into one binary that default panics.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// A certificate or key that cannot be used.
///
/// ```
/// use gonet::{ClientTls, TlsError};
///
/// match ClientTls::trust_pem(b"not a certificate") {
///     Err(TlsError::Pem { what, reason }) => {
///         assert_eq!(what, "certificate");
///         assert_eq!(reason, "no CERTIFICATE block found");
///     }
///     other => panic!("{other:?}"),
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// Generating the development certificate failed.
    #[error("cannot generate a development certificate: {0}")]
    Generate(String),
    /// A PEM or DER input holds no usable certificate or key.
    #[error("bad {what}: {reason}")]
    Pem {
        /// What was being read (`certificate`, `private key`, a file name).
        what: String,
        /// Why it failed.
        reason: String,
    },
    /// rustls refused the configuration (a key that does not match its certificate,
    /// an unsupported key type).
    #[error("tls configuration refused: {0}")]
    Config(String),
    /// The name or address to verify the server's certificate against is not valid.
    #[error("invalid server name {0:?}")]
    ServerName(String),
    /// A client was asked to dial a TLS URL without being told whom to trust.
    #[error(
        "no trust configured for {0}: call Builder::client_tls with ClientTls::trust_der, \
         trust_pem, or (for development only) ClientTls::danger_skip_verification"
    )]
    NoTrust(String),
}

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificate chain and key a `wss://` or `quic://` server presents.
///
/// ```
/// # #[cfg(feature = "quic")] {
/// use gonet::{ClientTls, ServerTls};
/// // Development: a fresh self-signed certificate, trusted by exactly one client.
/// let server = ServerTls::self_signed(["localhost", "127.0.0.1"])?;
/// let client = ClientTls::trust_der(server.certificate_der())?;
/// # let _ = client;
/// # }
/// # Ok::<(), gonet::TlsError>(())
/// ```
#[derive(Clone)]
pub struct ServerTls {
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// A self-signed certificate for `names` (DNS names or IP addresses), generated now.
    /// For development: clients must trust it explicitly
    /// ([`ClientTls::trust_der`] with [`certificate_der`](Self::certificate_der), or
    /// `Server::certificate`).
    pub fn self_signed<I, S>(names: I) -> Result<Self, TlsError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let names: Vec<String> = names.into_iter().map(Into::into).collect();
        let generated = rcgen::generate_simple_self_signed(names)
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        let key = PrivateKeyDer::try_from(generated.signing_key.serialize_der())
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        Ok(Self {
            chain: vec![generated.cert.der().clone()],
            key: Arc::new(key),
        })
    }

    /// A certificate chain and private key in PEM (the leaf certificate first).
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_error("certificate", e))?;
        if chain.is_empty() {
            return Err(TlsError::Pem {
                what: "certificate".into(),
                reason: "no CERTIFICATE block found".into(),
            });
        }
        let key =
            PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| pem_error("private key", e))?;
        Ok(Self {
            chain,
            key: Arc::new(key),
        })
    }

    /// [`from_pem`](Self::from_pem) with the contents of two files.
    pub fn from_pem_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self, TlsError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| TlsError::Pem {
                what: p.display().to_string(),
                reason: e.to_string(),
            })
        };
        Self::from_pem(&read(cert.as_ref())?, &read(key.as_ref())?)
    }

    /// The leaf certificate in DER, for a client to trust.
    pub fn certificate_der(&self) -> &[u8] {
        &self.chain[0]
    }

    pub(crate) fn config(
        &self,
        alpn: &[&[u8]],
        tls13_only: bool,
    ) -> Result<rustls::ServerConfig, TlsError> {
        let versions: &[&rustls::SupportedProtocolVersion] = if tls13_only {
            &[&rustls::version::TLS13]
        } else {
            rustls::DEFAULT_VERSIONS
        };
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| TlsError::Config(e.to_string()))?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }
}

fn pem_error(what: &str, e: rustls::pki_types::pem::Error) -> TlsError {
    TlsError::Pem {
        what: what.into(),
        reason: e.to_string(),
    }
}

#[derive(Clone, Debug)]
enum Trust {
    Roots(Arc<RootCertStore>),
    SkipVerification,
}

/// Whom a `wss://` or `quic://` client trusts.
///
/// A client trusting a development server's own certificate:
///
/// ```
/// use gonet::{Builder, ClientTls, Router, Session};
///
/// #[derive(Clone, PartialEq, prost::Message)]
/// struct Ping {
///     #[prost(uint32, tag = "1")]
///     n: u32,
/// }
/// gonet::message!(Ping = 1, prost);
///
/// # #[cfg(feature = "quic")]
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let router = Router::new().route(|_: Session, ping: Ping| async move { ping });
/// let server = Builder::new().router(router).serve("quic://127.0.0.1:0").await?;
///
/// let trust = ClientTls::trust_der(server.certificate().expect("a quic server has one"))?;
/// let client = Builder::new().client_tls(trust).dial(&server.url()).await?;
/// let pong: Ping = client.call(&Ping { n: 7 }).await?;
/// assert_eq!(pong.n, 7);
/// # server.shutdown().await;
/// # Ok(())
/// # }
/// # #[cfg(not(feature = "quic"))]
/// # fn main() {}
/// ```
#[derive(Clone, Debug)]
pub struct ClientTls {
    trust: Trust,
    server_name: Option<String>,
}

impl ClientTls {
    /// Trusts exactly this certificate (DER), such as a development server's
    /// self-signed one.
    pub fn trust_der(cert: &[u8]) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(cert.to_vec()))
            .map_err(|e| TlsError::Config(e.to_string()))?;
        Ok(Self::roots(roots))
    }

    /// Trusts every certificate in a PEM bundle (CA certificates or a server's own).
    pub fn trust_pem(pem: &[u8]) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| pem_error("certificate", e))?;
            roots
                .add(cert)
                .map_err(|e| TlsError::Config(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(TlsError::Pem {
                what: "certificate".into(),
                reason: "no CERTIFICATE block found".into(),
            });
        }
        Ok(Self::roots(roots))
    }

    /// Trusts the roots of a rustls store (for example one filled from a system or
    /// webpki bundle).
    pub fn roots(roots: RootCertStore) -> Self {
        Self {
            trust: Trust::Roots(Arc::new(roots)),
            server_name: None,
        }
    }

    /// Accepts any certificate: the connection is encrypted but the server is not
    /// authenticated. For development only; a warning is logged on every dial.
    pub fn danger_skip_verification() -> Self {
        Self {
            trust: Trust::SkipVerification,
            server_name: None,
        }
    }

    /// Verifies the certificate against `name` instead of the URL's host.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    pub(crate) fn name_for(&self, host: &str) -> Result<ServerName<'static>, TlsError> {
        let name = self.server_name.as_deref().unwrap_or(host);
        ServerName::try_from(name.to_owned()).map_err(|_| TlsError::ServerName(name.to_owned()))
    }

    pub(crate) fn config(
        &self,
        alpn: &[&[u8]],
        tls13_only: bool,
    ) -> Result<rustls::ClientConfig, TlsError> {
        let versions: &[&rustls::SupportedProtocolVersion] = if tls13_only {
            &[&rustls::version::TLS13]
        } else {
            rustls::DEFAULT_VERSIONS
        };
        let provider = provider();
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let mut config = match &self.trust {
            Trust::Roots(roots) => builder
                .with_root_certificates(roots.clone())
                .with_no_client_auth(),
            Trust::SkipVerification => {
                tracing::warn!("tls certificate verification is off: development only");
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(SkipVerification(
                        provider.signature_verification_algorithms,
                    )))
                    .with_no_client_auth()
            }
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }
}

/// Accepts every certificate but still checks that the handshake is signed by its key.
#[derive(Debug)]
struct SkipVerification(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for SkipVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// The server's TLS identity: the configured one, or a development certificate for
/// `localhost`, the loopback addresses and the listening host, generated now.
pub(crate) fn server_identity(
    configured: Option<&ServerTls>,
    host: &str,
) -> Result<ServerTls, TlsError> {
    if let Some(tls) = configured {
        return Ok(tls.clone());
    }
    tracing::warn!(
        host,
        "no server certificate configured: using a self-signed development certificate"
    );
    let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"]
        .into_iter()
        .map(String::from)
        .collect();
    if !names.iter().any(|n| n == host) {
        names.push(host.to_owned());
    }
    ServerTls::self_signed(names)
}

/// The client's TLS settings, or a clear error when none were given.
pub(crate) fn client_identity(
    configured: Option<&ClientTls>,
    url: &str,
) -> Result<ClientTls, TlsError> {
    configured
        .cloned()
        .ok_or_else(|| TlsError::NoTrust(url.to_owned()))
}
