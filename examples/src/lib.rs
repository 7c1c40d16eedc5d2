//! Shared helpers for the examples.

use gonet::{Builder, ClientTls, Server, ServerTls};

/// TLS options for `wss://` and `quic://`, shared by the examples' command lines:
///
/// - server: `--cert FILE --key FILE` (PEM) to present a real certificate, else a
///   development certificate is generated; `--write-cert FILE` saves the certificate
///   the server presents (DER) for a client to trust.
/// - client: `--ca FILE` trusts a certificate or CA bundle (PEM or DER);
///   `--insecure` skips verification (development only).
#[derive(Debug, Default)]
pub struct TlsArgs {
    cert: Option<String>,
    key: Option<String>,
    write_cert: Option<String>,
    ca: Option<String>,
    insecure: bool,
}

/// The usage lines of [`TlsArgs`].
pub const TLS_USAGE: &str = "TLS (wss://, quic://): server --cert FILE --key FILE (PEM; default: a \
development certificate), --write-cert FILE (save it, DER); client --ca FILE (PEM or DER) or \
--insecure (no verification, development only)";

impl TlsArgs {
    /// Takes a TLS option and its value from the arguments; `Ok(false)` if `arg` is not
    /// one.
    pub fn take(
        &mut self,
        arg: &str,
        args: &mut impl Iterator<Item = String>,
    ) -> Result<bool, String> {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg {
            "--cert" => self.cert = Some(value()?),
            "--key" => self.key = Some(value()?),
            "--write-cert" => self.write_cert = Some(value()?),
            "--ca" => self.ca = Some(value()?),
            "--insecure" => self.insecure = true,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Applies the server options to `builder`.
    pub fn server(&self, builder: Builder) -> Result<Builder, String> {
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Ok(builder
                .server_tls(ServerTls::from_pem_files(cert, key).map_err(|e| e.to_string())?)),
            (None, None) => Ok(builder),
            _ => Err("--cert and --key go together".into()),
        }
    }

    /// Saves the certificate a TLS server presents, if asked to.
    pub fn after_serve(&self, server: &Server) -> Result<(), String> {
        if let (Some(path), Some(cert)) = (&self.write_cert, server.certificate()) {
            std::fs::write(path, cert).map_err(|e| format!("cannot write {path}: {e}"))?;
            println!("certificate written to {path} (DER); clients: --ca {path}");
        }
        Ok(())
    }

    /// Applies the client options to `builder`.
    pub fn client(&self, builder: Builder) -> Result<Builder, String> {
        if self.insecure {
            return Ok(builder.client_tls(ClientTls::danger_skip_verification()));
        }
        let Some(path) = &self.ca else {
            return Ok(builder);
        };
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        let tls = if bytes.starts_with(b"-----BEGIN") {
            ClientTls::trust_pem(&bytes)
        } else {
            ClientTls::trust_der(&bytes)
        }
        .map_err(|e| e.to_string())?;
        Ok(builder.client_tls(tls))
    }
}

/// A client builder that trusts exactly the certificate of `server` (for examples that
/// run both ends in one process).
pub fn trust_server(builder: Builder, server: &Server) -> Result<Builder, String> {
    match server.certificate() {
        Some(cert) => {
            Ok(builder.client_tls(ClientTls::trust_der(cert).map_err(|e| e.to_string())?))
        }
        None => Ok(builder),
    }
}
