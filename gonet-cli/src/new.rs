//! `gonet-cli new`: from its arguments to a validated [`Plan`], then to the files.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::Failure;
use crate::args::{CodecArg, NewArgs, TransportArg};
use crate::name::ProjectName;
use crate::template::{self, FILES};

/// The directory of this crate when it was built: its parent is the gonet workspace,
/// the default source of the crates until they are published.
const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// Where a project gets `gonet` and `gonet-build`.
#[derive(Debug, PartialEq, Eq)]
enum GonetSource {
    /// Path dependencies on a gonet workspace (absolute).
    Path(PathBuf),
    /// Version requirements on the published crates.
    Version(String),
}

/// Everything `new` will do, checked before anything is written.
#[derive(Debug)]
struct Plan {
    name: ProjectName,
    /// The project directory.
    dir: PathBuf,
    transport: TransportArg,
    codec: CodecArg,
    source: GonetSource,
}

pub(crate) fn run(args: NewArgs) -> Result<(), Failure> {
    let plan = Plan::from_args(args)?;
    plan.write().map_err(Failure::Failed)?;
    println!("{}", plan.next_steps());
    Ok(())
}

impl Plan {
    fn from_args(args: NewArgs) -> Result<Self, Failure> {
        let name = ProjectName::parse(&args.name).map_err(Failure::usage)?;
        let dir = args.path.unwrap_or_else(|| PathBuf::from(name.as_str()));
        check_dir(&dir)?;
        let source = match (args.gonet_path, args.gonet_version) {
            (_, Some(version)) => GonetSource::Version(check_version(&version)?),
            (Some(path), None) => GonetSource::Path(check_workspace(&path, "--gonet-path")?),
            (None, None) => GonetSource::Path(check_workspace(
                Path::new(MANIFEST_DIR)
                    .parent()
                    .unwrap_or(Path::new(MANIFEST_DIR)),
                "the gonet workspace this gonet-cli was built from",
            )?),
        };
        Ok(Self {
            name,
            dir,
            transport: args.transport,
            codec: args.codec,
            source,
        })
    }

    /// The placeholders' values.
    fn values(&self) -> Vec<(&'static str, String)> {
        let transport = transport_name(self.transport);
        let codec = codec_name(self.codec);
        let mut features = vec![transport, "protobuf"];
        if codec != "protobuf" {
            features.push(codec);
        }
        // The server drains on SIGTERM and Ctrl-C through `gonet::shutdown_signal`.
        features.push("signal");
        let features = features
            .iter()
            .map(|f| format!("\"{f}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let (gonet_dep, gonet_build_dep, gonet_source) = match &self.source {
            GonetSource::Path(root) => (
                format!(
                    "{{ path = {}, default-features = false, features = [{features}] }}",
                    toml_string(&root.join("gonet").display().to_string())
                ),
                format!(
                    "{{ path = {} }}",
                    toml_string(&root.join("gonet-build").display().to_string())
                ),
                format!(
                    "The gonet crates are not published yet, so `Cargo.toml` takes `gonet` and\n\
                     `gonet-build` from the gonet workspace at `{}` (path dependencies).\n\
                     If that checkout moves, change the two paths; `gonet-cli new --gonet-path DIR`\n\
                     writes another one, and `gonet-cli new --gonet-version VERSION` version\n\
                     requirements on the published crates.",
                    root.display()
                ),
            ),
            GonetSource::Version(version) => (
                format!(
                    "{{ version = {}, default-features = false, features = [{features}] }}",
                    toml_string(version)
                ),
                format!("{{ version = {} }}", toml_string(version)),
                format!(
                    "`Cargo.toml` takes the published `gonet` and `gonet-build` crates, version\n\
                     {version}. `gonet-cli new --gonet-path DIR` writes path dependencies on a gonet\n\
                     checkout instead."
                ),
            ),
        };
        let transport_note = match self.transport {
            TransportArg::Udp => {
                "\nUDP is lossy: a datagram may be dropped or arrive out of order, and a lost\n\
                 request is a call that times out. The session closes after 15 s of silence.\n"
            }
            TransportArg::Wss | TransportArg::Quic => {
                "\nThe connection is encrypted (TLS). The server has no certificate of its own, so\n\
                 it makes itself a development certificate at start-up and saves it to\n\
                 `dev-cert.der` in this directory; the client trusts exactly that certificate,\n\
                 read at each run (start the server first: each start makes a new one). The\n\
                 test trusts the certificate of the server it starts. For production, give the\n\
                 server its certificate (`Builder::server_tls` with\n\
                 `gonet::ServerTls::from_pem_files`) and the client its issuer\n\
                 (`Builder::client_tls` with `gonet::ClientTls::trust_pem`).\n"
            }
            _ => "",
        };
        let ident = self.name.ident();
        vec![
            ("name", self.name.as_str().to_owned()),
            ("crate", ident.clone()),
            ("package", ident),
            ("transport", transport.to_owned()),
            ("codec", codec.to_owned()),
            ("Codec", codec_variant(self.codec).to_owned()),
            ("url", url(self.transport, 7000)),
            ("test_url", url(self.transport, 0)),
            ("gonet_dep", gonet_dep),
            ("gonet_build_dep", gonet_build_dep),
            ("transport_note", transport_note.to_owned()),
            ("gonet_source", gonet_source),
        ]
    }

    /// The sections of the templates this project keeps (see [`template::sections`]).
    fn flags(&self) -> Vec<&'static str> {
        match self.transport {
            // The server presents a development certificate; the client trusts it.
            TransportArg::Wss | TransportArg::Quic => vec!["tls"],
            TransportArg::Tcp | TransportArg::Udp | TransportArg::Ws | TransportArg::Kcp => {
                vec![]
            }
        }
    }

    fn write(&self) -> anyhow::Result<()> {
        let values = self.values();
        let values: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let flags = self.flags();
        for file in FILES {
            let text = template::render(&template::sections(file.text, &flags), &values);
            let path = self.dir.join(template::render(file.path, &values));
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }

    fn next_steps(&self) -> String {
        let dir = self.dir.display().to_string();
        let cd = if dir.contains(|c: char| c.is_whitespace() || "'\"$\\".contains(c)) {
            format!("'{}'", dir.replace('\'', r"'\''"))
        } else {
            dir.clone()
        };
        format!(
            "Created {} ({} transport, {} codec) in {dir}\n\n\
             Next:\n    \
             cd {cd}\n    \
             cargo run --bin server    # in one terminal\n    \
             cargo run --bin client    # in another\n    \
             cargo test",
            self.name.as_str(),
            transport_name(self.transport),
            codec_name(self.codec),
        )
    }
}

/// The project directory must not exist, or be an empty directory.
fn check_dir(dir: &Path) -> Result<(), Failure> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                Err(Failure::usage(format!(
                    "{} already exists and is not empty: choose another NAME or --path DIR",
                    dir.display()
                )))
            } else {
                Ok(())
            }
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(_) if dir.exists() => Err(Failure::usage(format!(
            "{} already exists and is not a directory: choose another NAME or --path DIR",
            dir.display()
        ))),
        Err(err) => Err(Failure::usage(format!(
            "cannot read {}: {err}; choose another NAME or --path DIR",
            dir.display()
        ))),
    }
}

/// A gonet workspace has `gonet/` and `gonet-build/`; the result is absolute.
fn check_workspace(root: &Path, what: &str) -> Result<PathBuf, Failure> {
    let missing = ["gonet", "gonet-build"]
        .into_iter()
        .find(|c| !root.join(c).join("Cargo.toml").is_file());
    if let Some(crate_dir) = missing {
        return Err(Failure::usage(format!(
            "{what} ({}) has no {crate_dir}/Cargo.toml: give --gonet-path DIR, the directory \
             of a gonet checkout, or --gonet-version VERSION for the published crates",
            root.display()
        )));
    }
    root.canonicalize()
        .map_err(|err| Failure::usage(format!("cannot resolve {}: {err}", root.display())))
}

/// A version requirement cargo may accept: digits, dots and the requirement operators.
fn check_version(version: &str) -> Result<String, Failure> {
    let version = version.trim();
    let valid = !version.is_empty()
        && version.chars().any(|c| c.is_ascii_digit())
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " .,^~=<>*-+".contains(c));
    if valid {
        Ok(version.to_owned())
    } else {
        Err(Failure::usage(format!(
            "--gonet-version {version:?} is not a version requirement such as 0.1 or =0.1.2"
        )))
    }
}

fn transport_name(transport: TransportArg) -> &'static str {
    match transport {
        TransportArg::Tcp => "tcp",
        TransportArg::Udp => "udp",
        TransportArg::Ws => "ws",
        TransportArg::Wss => "wss",
        TransportArg::Quic => "quic",
        TransportArg::Kcp => "kcp",
    }
}

fn codec_name(codec: CodecArg) -> &'static str {
    match codec {
        CodecArg::Protobuf => "protobuf",
        CodecArg::Json => "json",
        CodecArg::Protojson => "protojson",
        CodecArg::Xml => "xml",
        CodecArg::Binary => "binary",
    }
}

fn codec_variant(codec: CodecArg) -> &'static str {
    match codec {
        CodecArg::Protobuf => "Protobuf",
        CodecArg::Json => "Json",
        CodecArg::Protojson => "ProtoJson",
        CodecArg::Xml => "Xml",
        CodecArg::Binary => "Binary",
    }
}

/// The URL of `port` on loopback; WebSocket servers listen on a path.
fn url(transport: TransportArg, port: u16) -> String {
    let path = match transport {
        TransportArg::Ws | TransportArg::Wss => "/ws",
        TransportArg::Tcp | TransportArg::Udp | TransportArg::Quic | TransportArg::Kcp => "",
    };
    format!("{}://127.0.0.1:{port}{path}", transport_name(transport))
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string(r#"C:\a "b""#), r#""C:\\a \"b\"""#);
        assert_eq!(toml_string("a\tb"), r#""a\u0009b""#);
    }

    #[test]
    fn urls_use_the_transport_as_scheme() {
        assert_eq!(url(TransportArg::Tcp, 7000), "tcp://127.0.0.1:7000");
        assert_eq!(url(TransportArg::Ws, 0), "ws://127.0.0.1:0/ws");
        assert_eq!(url(TransportArg::Wss, 7000), "wss://127.0.0.1:7000/ws");
        assert_eq!(url(TransportArg::Kcp, 0), "kcp://127.0.0.1:0");
    }

    #[test]
    fn versions_are_checked() {
        assert_eq!(check_version(" 0.1 ").ok().as_deref(), Some("0.1"));
        assert!(check_version(">=0.1, <0.3").is_ok());
        assert!(check_version("latest").is_err());
        assert!(check_version("0.1\"").is_err());
    }
}
