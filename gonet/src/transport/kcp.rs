//! KCP (`kcp://host:port`): reliable, ordered messages over UDP, by gonet's own engine
//! over the `kcp` protocol crate, in the packet layout of Go's kcp-go (so Go gonet's KCP
//! listener and dialer are peers).
//!
//! - `engine`: one UDP socket per listener (or client), the table of conversations,
//!   admission, one timer for all, linger after close.
//! - `link`: a conversation seen from its session (reader and frame sink).
//! - `crypt`, `fec`: kcp-go's encryption header and Reed-Solomon FEC.
//!
//! How a session ends on KCP, and the reason it gets:
//!
//! | what happened | reason |
//! |---|---|
//! | the peer sent a bye (it closed on purpose) | [`CloseReason::PeerClosed`](crate::CloseReason::PeerClosed) |
//! | nothing came from the peer for the idle timeout (default 15 s) | [`CloseReason::IdleTimeout`](crate::CloseReason::IdleTimeout) |
//! | the peer acknowledged nothing through KCP's 20 resends of a segment | [`CloseReason::Error`](crate::CloseReason::Error), "the peer acknowledged nothing after 20 resends of a segment" |

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

mod crypt;
mod engine;
mod fec;
mod link;

use super::{Listening, TransportSettings};
use crate::driver;
use crate::driver::link::StreamSource;
use crate::session::Session;
use crate::settings::Shared;
use crate::transport::error::{DialError, ServeError};
use crate::url::{Transport, Url, UrlError, UrlErrorKind};
use crate::wire;

/// How frames ride on KCP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum KcpMode {
    /// One gonet frame per KCP message (the default): what kcp-go does with one `Write`
    /// and what Go gonet expects, one frame per `Read`.
    #[default]
    Message,
    /// One byte stream, small frames packed into full segments (KCP's stream mode, as
    /// tokio_kcp spoke it). Both ends must agree.
    Stream,
}

/// The packet encryption of kcp-go (its `BlockCrypt`). Both ends need the same crypt
/// and key.
///
/// Every crypt but [`off`](Self::off) puts kcp-go's 20-byte header before the KCP
/// bytes: a random 16-byte nonce and a CRC32 of the rest, which a receiver checks
/// (datagrams that fail it are dropped unseen). The key is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct KcpCrypt {
    spec: crypt::Spec,
}

impl fmt::Debug for KcpCrypt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KcpCrypt({})", self.name())
    }
}

impl Default for KcpCrypt {
    fn default() -> Self {
        Self::off()
    }
}

/// A key of the wrong length for its cipher.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {cipher} key must be {expected} bytes, not {got}")]
pub struct KcpKeyError {
    cipher: &'static str,
    expected: &'static str,
    got: usize,
}

impl KcpCrypt {
    /// No header, no encryption: plain KCP (kcp-go with a nil block crypt).
    pub const fn off() -> Self {
        Self {
            spec: crypt::Spec::Off,
        }
    }

    /// kcp-go's `none`: the nonce and CRC header, no encryption.
    pub const fn none() -> Self {
        Self {
            spec: crypt::Spec::None,
        }
    }

    /// AES in kcp-go's CFB mode (`NewAESBlockCrypt`): AES-128, -192 or -256 by the key's
    /// length, 16, 24 or 32 bytes.
    pub fn aes(key: &[u8]) -> Result<Self, KcpKeyError> {
        if ![16, 24, 32].contains(&key.len()) {
            return Err(KcpKeyError {
                cipher: "AES",
                expected: "16, 24 or 32",
                got: key.len(),
            });
        }
        Ok(Self {
            spec: crypt::Spec::Aes(key.to_vec()),
        })
    }

    /// Salsa20 (`NewSalsa20BlockCrypt`), with a 32-byte key.
    pub fn salsa20(key: &[u8]) -> Result<Self, KcpKeyError> {
        if key.len() != 32 {
            return Err(KcpKeyError {
                cipher: "Salsa20",
                expected: "32",
                got: key.len(),
            });
        }
        Ok(Self {
            spec: crypt::Spec::Salsa20(key.to_vec()),
        })
    }

    /// kcp-go's simple XOR (`NewSimpleXORBlockCrypt`): a pad derived from the key. It
    /// hides nothing from anyone who looks; use it only where kcp-go peers already do.
    pub fn xor(key: &[u8]) -> Self {
        Self {
            spec: crypt::Spec::Xor(key.to_vec()),
        }
    }

    /// The crypt's name: `off`, `none`, `aes-128`, `aes-192`, `aes-256`, `salsa20` or
    /// `xor`.
    pub fn name(&self) -> &'static str {
        match &self.spec {
            crypt::Spec::Off => "off",
            crypt::Spec::None => "none",
            crypt::Spec::Aes(key) => match key.len() {
                16 => "aes-128",
                24 => "aes-192",
                _ => "aes-256",
            },
            crypt::Spec::Salsa20(_) => "salsa20",
            crypt::Spec::Xor(_) => "xor",
        }
    }
}

/// kcp-go's forward error correction: after every `data_shards` datagrams,
/// `parity_shards` Reed-Solomon parity datagrams, from which a receiver rebuilds up to
/// `parity_shards` lost ones of the group without waiting for a resend. Both ends need
/// the same numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KcpFec {
    /// Data datagrams per group (at least 1).
    pub data_shards: u8,
    /// Parity datagrams per group (at least 1).
    pub parity_shards: u8,
}

impl KcpFec {
    /// `data` data shards and `parity` parity shards per group (kcp-go's `10, 3` is
    /// common).
    pub const fn new(data: u8, parity: u8) -> Self {
        Self {
            data_shards: data,
            parity_shards: parity,
        }
    }
}

/// KCP settings of a server or client ([`Builder::kcp`](crate::Builder::kcp)), which a
/// `kcp://` URL's query can change (see below).
///
/// Both ends must agree on the [`mode`](Self::mode), [`crypt`](Self::crypt) and key,
/// [`fec`](Self::fec) and [`mtu`](Self::mtu); the timing fields are each end's own.
///
/// ```
/// # #[cfg(feature = "kcp")] {
/// use gonet::{Builder, KcpCrypt, KcpFec, KcpSettings};
///
/// // Talk to Go gonet: its key (PBKDF2 of password and salt), AES, FEC 10/3, one frame
/// // per KCP message.
/// let go = Builder::new().kcp(KcpSettings::gonet("", ""));
///
/// // Or choose each part.
/// let mut settings = KcpSettings::fast();
/// settings.crypt = KcpCrypt::aes(&[7u8; 16]).expect("a 16-byte key");
/// settings.fec = Some(KcpFec::new(10, 3));
/// settings.mtu = 1200;
/// let custom = Builder::new().kcp(settings);
/// # let _ = (go, custom);
/// # }
/// ```
///
/// The same through the URL (the query's parameters apply over the builder's settings,
/// and a server's [`url`](crate::Server::url) keeps them for its clients):
///
/// ```text
/// kcp://127.0.0.1:9000?preset=gonet                       (Go gonet, empty password and salt)
/// kcp://127.0.0.1:9000?crypt=aes&password=secret&salt=s&fec=10,3
/// kcp://127.0.0.1:9000?crypt=aes-128&key=000102030405060708090a0b0c0d0e0f&mode=stream
/// ```
///
/// | parameter | values |
/// |---|---|
/// | `preset` | `fast` (the default), `normal`, `gonet` (with `password`, `salt`) |
/// | `mode` | `message`, `stream` |
/// | `crypt` | `off`, `none`, `aes` (`aes-256`), `aes-128`, `aes-192`, `salsa20`, `xor` |
/// | `key` | the key in hex (16, 24 or 32 bytes for AES, 32 for Salsa20) |
/// | `password`, `salt` | the key made as Go gonet makes it (PBKDF2-HMAC-SHA1, 1,024 rounds, 32 bytes; cut to 16 or 24 for `aes-128`, `aes-192`) when no `key` is given; both empty by default |
/// | `fec` | `D,P` (data and parity shards), `off` |
/// | `mtu`, `interval`, `resend`, `sndwnd`, `rcvwnd` | numbers |
/// | `nodelay`, `nc` | `0`, `1`, `true`, `false` |
///
/// Values may be percent-encoded (`%26` for `&`). A parameter gonet does not know, or
/// a bad value, fails `serve` or `dial` with
/// [`UrlErrorKind::BadParameter`](crate::UrlErrorKind::BadParameter) naming it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KcpSettings {
    /// Send segments without waiting for the next tick and resend early.
    pub nodelay: bool,
    /// The internal update interval in milliseconds (10 to 5,000).
    pub interval_ms: u32,
    /// Resend a segment after this many later segments were acknowledged (0: off).
    pub fast_resend: u32,
    /// Turn off KCP's congestion window (only the send and receive windows limit).
    pub no_congestion_control: bool,
    /// Send window in segments.
    pub send_window: u16,
    /// Receive window in segments (at least 128, the most fragments of one message).
    pub recv_window: u16,
    /// Maximum transmission unit: the largest UDP payload sent, headers of the crypt
    /// and FEC included (576 to 1,500, kcp-go's limit).
    pub mtu: usize,
    /// One frame per KCP message, or a byte stream.
    pub mode: KcpMode,
    /// The packet encryption.
    pub crypt: KcpCrypt,
    /// Forward error correction, off by default.
    pub fec: Option<KcpFec>,
}

impl Default for KcpSettings {
    fn default() -> Self {
        Self::fast()
    }
}

impl KcpSettings {
    /// The fast preset (the default): nodelay, 10 ms interval, fast resend after 2, no
    /// congestion window, 512-segment windows, 1,400-byte MTU, message mode, no crypt,
    /// no FEC. Latency is about one network round trip; bandwidth use is higher than
    /// TCP's on a lossy path.
    pub const fn fast() -> Self {
        Self {
            nodelay: true,
            interval_ms: 10,
            fast_resend: 2,
            no_congestion_control: true,
            send_window: 512,
            recv_window: 512,
            mtu: 1400,
            mode: KcpMode::Message,
            crypt: KcpCrypt::off(),
            fec: None,
        }
    }

    /// KCP's conservative preset: no nodelay, 40 ms interval, congestion control on.
    pub const fn normal() -> Self {
        Self {
            nodelay: false,
            interval_ms: 40,
            fast_resend: 0,
            no_congestion_control: false,
            send_window: 256,
            recv_window: 256,
            mtu: 1400,
            mode: KcpMode::Message,
            crypt: KcpCrypt::off(),
            fec: None,
        }
    }

    /// What Go gonet's KCP transport speaks: AES with the key Go gonet derives,
    /// `pbkdf2(password, salt, 1024 iterations, 32 bytes, SHA-1)` (its password and
    /// salt are empty unless configured), FEC with 10 data and 3 parity shards, one
    /// frame per KCP message; the timings of [`fast`](Self::fast).
    pub fn gonet(password: &str, salt: &str) -> Self {
        let key = crypt::gonet_key(password.as_bytes(), salt.as_bytes());
        Self {
            crypt: KcpCrypt::aes(&key).expect("32 bytes"),
            fec: Some(KcpFec::new(10, 3)),
            ..Self::fast()
        }
    }

    /// Checks the settings; the error names the field as the URL parameter.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(576..=crypt::MTU_LIMIT).contains(&self.mtu) {
            return Err((
                "mtu",
                format!(
                    "{} is out of range: from 576 to {} bytes",
                    self.mtu,
                    crypt::MTU_LIMIT
                ),
            ));
        }
        if self.send_window == 0 {
            return Err(("sndwnd", "must be at least 1".into()));
        }
        if self.recv_window == 0 {
            return Err(("rcvwnd", "must be at least 1".into()));
        }
        if let Some(fec) = self.fec {
            if fec.data_shards == 0 || fec.parity_shards == 0 {
                return Err((
                    "fec",
                    "data and parity shards must be at least 1 each (or `off`)".into(),
                ));
            }
            if usize::from(fec.data_shards) + usize::from(fec.parity_shards) > 256 {
                return Err(("fec", "at most 256 shards in all".into()));
            }
        }
        Ok(())
    }

    /// These settings with a URL query's parameters applied.
    fn with_query(self, query: Option<&str>) -> Result<Self, UrlErrorKind> {
        let Some(query) = query else {
            return Ok(self);
        };
        let bad = |name: &str, reason: String| UrlErrorKind::BadParameter {
            name: name.to_owned(),
            reason,
        };
        let mut pairs = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = percent_decode(name).map_err(|e| bad(name, e))?;
            let value = percent_decode(value).map_err(|e| bad(&name, e))?;
            pairs.push((name, value));
        }
        let text = |name: &str| {
            pairs
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let password = text("password").unwrap_or("");
        let salt = text("salt").unwrap_or("");
        let mut settings = match text("preset") {
            None => self,
            Some("fast") => Self {
                mode: self.mode,
                crypt: self.crypt,
                fec: self.fec,
                ..Self::fast()
            },
            Some("normal") => Self {
                mode: self.mode,
                crypt: self.crypt,
                fec: self.fec,
                ..Self::normal()
            },
            Some("gonet") => Self::gonet(password, salt),
            Some(other) => {
                return Err(bad(
                    "preset",
                    format!("unknown preset {other:?}, expected fast, normal or gonet"),
                ));
            }
        };
        let mut crypt_name = None;
        let mut key = None;
        for (name, value) in &pairs {
            let number = |max: u64| -> Result<u64, UrlErrorKind> {
                value
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n <= max)
                    .ok_or_else(|| bad(name, format!("{value:?} is not a number from 0 to {max}")))
            };
            let flag = || -> Result<bool, UrlErrorKind> {
                match value.as_str() {
                    "1" | "true" => Ok(true),
                    "0" | "false" => Ok(false),
                    _ => Err(bad(name, format!("{value:?} is not 0, 1, true or false"))),
                }
            };
            match name.as_str() {
                "preset" | "password" | "salt" => {}
                "mode" => {
                    settings.mode = match value.as_str() {
                        "message" => KcpMode::Message,
                        "stream" => KcpMode::Stream,
                        _ => {
                            return Err(bad(
                                name,
                                format!("unknown mode {value:?}, expected message or stream"),
                            ));
                        }
                    }
                }
                "crypt" => crypt_name = Some(value.as_str()),
                "key" => key = Some(hex(value).ok_or_else(|| bad(name, "not hex".into()))?),
                "fec" => {
                    settings.fec = match value.as_str() {
                        "off" | "0" | "0,0" => None,
                        _ => {
                            let parsed = value.split_once(',').and_then(|(d, p)| {
                                Some((d.parse::<u8>().ok()?, p.parse::<u8>().ok()?))
                            });
                            match parsed {
                                Some((0, 0)) => None,
                                Some((d, p)) => Some(KcpFec::new(d, p)),
                                None => {
                                    return Err(bad(
                                        name,
                                        format!("{value:?} is not DATA,PARITY (e.g. 10,3) or off"),
                                    ));
                                }
                            }
                        }
                    }
                }
                "mtu" => settings.mtu = number(crypt::MTU_LIMIT as u64)? as usize,
                "interval" => settings.interval_ms = number(5000)? as u32,
                "resend" => settings.fast_resend = number(u64::from(u32::MAX))? as u32,
                "sndwnd" => settings.send_window = number(u64::from(u16::MAX))? as u16,
                "rcvwnd" => settings.recv_window = number(u64::from(u16::MAX))? as u16,
                "nodelay" => settings.nodelay = flag()?,
                "nc" => settings.no_congestion_control = flag()?,
                _ => {
                    return Err(bad(
                        name,
                        "unknown KCP parameter, expected one of preset, mode, crypt, key, \
                         password, salt, fec, mtu, interval, resend, sndwnd, rcvwnd, \
                         nodelay, nc"
                            .into(),
                    ));
                }
            }
        }
        let derived = || crypt::gonet_key(password.as_bytes(), salt.as_bytes());
        match crypt_name {
            None => {
                if key.is_some() {
                    return Err(bad("key", "a key needs a `crypt`".into()));
                }
                if text("preset") != Some("gonet")
                    && (text("password").is_some() || text("salt").is_some())
                {
                    let name = if text("password").is_some() {
                        "password"
                    } else {
                        "salt"
                    };
                    return Err(bad(name, "needs a `crypt` (or `preset=gonet`)".into()));
                }
            }
            Some(name) => {
                let key_err = |e: KcpKeyError| bad("key", e.to_string());
                settings.crypt = match name {
                    "off" => KcpCrypt::off(),
                    "none" => KcpCrypt::none(),
                    "aes" | "aes-256" => {
                        KcpCrypt::aes(&key.unwrap_or_else(derived)).map_err(key_err)?
                    }
                    "aes-128" | "aes-192" => {
                        let len = if name == "aes-128" { 16 } else { 24 };
                        let key = key.unwrap_or_else(|| derived()[..len].to_vec());
                        if key.len() != len {
                            return Err(bad(
                                "key",
                                format!("an {name} key must be {len} bytes, not {}", key.len()),
                            ));
                        }
                        KcpCrypt::aes(&key).map_err(key_err)?
                    }
                    "salsa20" => {
                        KcpCrypt::salsa20(&key.unwrap_or_else(derived)).map_err(key_err)?
                    }
                    "xor" => KcpCrypt::xor(&key.unwrap_or_else(derived)),
                    other => {
                        return Err(bad(
                            "crypt",
                            format!(
                                "unknown crypt {other:?}, expected one of off, none, aes, \
                                 aes-128, aes-192, aes-256, salsa20, xor"
                            ),
                        ));
                    }
                };
            }
        }
        Ok(settings)
    }
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let byte = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-encoding in {s:?}"))?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8 once decoded"))
}

fn hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// What a KCP listener's engine holds and has refused ([`Server::kcp_stats`](crate::Server::kcp_stats)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KcpStats {
    /// Conversations in the engine's table: live sessions, and ended ones lingering
    /// (a second or so) until their last segments are acknowledged.
    pub conversations: usize,
    /// Datagrams dropped unseen: too large, failing decryption or CRC, or not KCP.
    pub invalid_datagrams: u64,
    /// Well-formed datagrams of no known conversation that opened none: not the start
    /// of one, or the server full, stopping, or over its per-address limits.
    pub refused_datagrams: u64,
}

/// A handle on a listener's engine, for its statistics.
#[derive(Clone, Debug)]
pub(crate) struct KcpProbe(Arc<engine::Engine>);

impl KcpProbe {
    pub(crate) fn stats(&self) -> KcpStats {
        let stats = &self.0.stats;
        KcpStats {
            conversations: stats.conversations.load(Ordering::Relaxed),
            invalid_datagrams: stats.invalid.load(Ordering::Relaxed),
            refused_datagrams: stats.refused.load(Ordering::Relaxed),
        }
    }
}

/// The settings of a `kcp://` URL: the builder's, with its query applied.
fn config(url: &Url, raw: &str, base: &KcpSettings) -> Result<Arc<engine::Config>, UrlError> {
    let settings = base
        .clone()
        .with_query(url.query())
        .map_err(|kind| UrlError::new(raw, kind))?;
    engine::Config::new(settings)
        .map(Arc::new)
        .map_err(|(name, reason)| {
            UrlError::new(
                raw,
                UrlErrorKind::BadParameter {
                    name: name.to_owned(),
                    reason,
                },
            )
        })
}

pub(super) async fn listen(
    url: &Url,
    raw: &str,
    shared: Arc<Shared>,
    options: &TransportSettings,
    stop: CancellationToken,
    tracker: TaskTracker,
) -> Result<Listening, ServeError> {
    let config = config(url, raw, &options.kcp)?;
    let bind_err = |source| ServeError::Bind {
        url: raw.to_owned(),
        source,
    };
    let socket = tokio::net::UdpSocket::bind(url.authority())
        .await
        .map_err(bind_err)?;
    let local = socket.local_addr().map_err(bind_err)?;
    let engine = engine::Engine::new(socket, config).map_err(bind_err)?;
    let span = tracing::info_span!("listener", transport = %Transport::Kcp, local_addr = %local);
    tokio::spawn(
        engine::serve(
            engine.clone(),
            engine::Admit {
                shared,
                local,
                tracker,
                stop: stop.clone(),
            },
        )
        .instrument(span),
    );
    // The engine outlives the accepting: it serves the sessions until they have closed
    // (and their byes are acknowledged), which the server's finish waits for.
    let mut listening = Listening::spawn(Transport::Kcp, local, async move {
        stop.cancelled().await;
    });
    listening.kcp = Some(KcpProbe(engine.clone()));
    listening.finish = Some(Box::pin(async move { engine.finish().await }));
    Ok(listening)
}

pub(super) async fn dial(
    url: &Url,
    raw: &str,
    shared: Arc<Shared>,
    options: &TransportSettings,
) -> Result<Session, DialError> {
    let config = config(url, raw, &options.kcp)?;
    let connect_err = |source| DialError::Connect {
        url: raw.to_owned(),
        source,
    };
    let target = tokio::net::lookup_host(url.authority())
        .await
        .map_err(connect_err)?
        .next()
        .ok_or_else(|| connect_err(io::Error::new(io::ErrorKind::NotFound, "no address")))?;
    let bind = super::client_bind_addr(target).await.map_err(connect_err)?;
    let socket = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(connect_err)?;
    socket.connect(target).await.map_err(connect_err)?;
    let local: SocketAddr = socket.local_addr().map_err(connect_err)?;
    let engine = engine::Engine::new(socket, config).map_err(connect_err)?;
    let conv = engine.conversation((target, random_conv()), None);
    let (reader, sink) = engine::link(&engine, &conv, true);
    tokio::spawn(engine::client(engine, conv));
    let session = Session::new(shared, target, local, Transport::Kcp);
    let source = StreamSource::for_session(reader, &session);
    // KCP has no handshake: a pong (which a reader ignores), sent first, makes the
    // server's session start now rather than at the first message. Not to a plain peer.
    if session.may_extend() {
        let _ = session.queue_frame(wire::encode_control(wire::ID_PONG));
    }
    driver::spawn(session.clone(), source, sink, None);
    Ok(session)
}

/// A random non-zero conversation id, as kcp-go's dialer picks one.
fn random_conv() -> u32 {
    loop {
        let conv = crypt::random_u64() as u32;
        if conv != 0 {
            return conv;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> Result<KcpSettings, String> {
        KcpSettings::fast()
            .with_query(Some(query))
            .and_then(|s| {
                s.validate()
                    .map_err(|(name, reason)| UrlErrorKind::BadParameter {
                        name: name.into(),
                        reason,
                    })?;
                Ok(s)
            })
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_gonet_preset_is_aes_fec_and_message_mode() {
        let go = KcpSettings::gonet("", "");
        assert_eq!(go.crypt.name(), "aes-256");
        assert_eq!(go.fec, Some(KcpFec::new(10, 3)));
        assert_eq!(go.mode, KcpMode::Message);
        assert_eq!(parse("preset=gonet").unwrap(), go);
        assert_eq!(parse("crypt=aes&fec=10,3").unwrap(), go);
        assert_eq!(
            parse("preset=gonet&password=p%26w&salt=s").unwrap(),
            KcpSettings::gonet("p&w", "s")
        );
        assert_ne!(KcpSettings::gonet("a", ""), go);
        assert!(!format!("{go:?}").contains("242"), "the key is not printed");
    }

    #[test]
    fn each_parameter_is_read() {
        let s = parse(
            "mode=stream&crypt=aes-128&key=000102030405060708090a0b0c0d0e0f&fec=4,2&mtu=1200\
             &interval=20&resend=0&sndwnd=64&rcvwnd=256&nodelay=0&nc=false",
        )
        .unwrap();
        assert_eq!(s.mode, KcpMode::Stream);
        assert_eq!(s.crypt.name(), "aes-128");
        assert_eq!(s.fec, Some(KcpFec::new(4, 2)));
        assert_eq!(
            (
                s.mtu,
                s.interval_ms,
                s.fast_resend,
                s.send_window,
                s.recv_window
            ),
            (1200, 20, 0, 64, 256)
        );
        assert!(!s.nodelay && !s.no_congestion_control);
        assert_eq!(parse("crypt=salsa20").unwrap().crypt.name(), "salsa20");
        assert_eq!(parse("crypt=xor&password=x").unwrap().crypt.name(), "xor");
        assert_eq!(parse("crypt=none").unwrap().crypt.name(), "none");
        assert_eq!(parse("crypt=aes-192").unwrap().crypt.name(), "aes-192");
        assert_eq!(parse("preset=normal").unwrap().interval_ms, 40);
    }

    #[test]
    fn a_bad_parameter_is_named() {
        for (query, want) in [
            ("crypt=des", "parameter `crypt`: unknown crypt \"des\""),
            (
                "crypt=aes&key=0011",
                "parameter `key`: the AES key must be 16, 24 or 32 bytes, not 2",
            ),
            ("crypt=aes&key=zz", "parameter `key`: not hex"),
            ("key=00", "parameter `key`: a key needs a `crypt`"),
            ("password=x", "parameter `password`: needs a `crypt`"),
            ("fec=10", "parameter `fec`: \"10\" is not DATA,PARITY"),
            (
                "fec=10,0",
                "parameter `fec`: data and parity shards must be at least 1",
            ),
            (
                "mtu=9000",
                "parameter `mtu`: \"9000\" is not a number from 0 to 1500",
            ),
            ("mtu=100", "parameter `mtu`: 100 is out of range"),
            ("mode=fast", "parameter `mode`: unknown mode \"fast\""),
            (
                "nodelay=yes",
                "parameter `nodelay`: \"yes\" is not 0, 1, true or false",
            ),
            ("preset=slow", "parameter `preset`: unknown preset \"slow\""),
            ("color=red", "parameter `color`: unknown KCP parameter"),
            ("password=%zz", "parameter `password`: bad percent-encoding"),
        ] {
            let err = parse(query).unwrap_err();
            assert!(err.starts_with(want), "{query}: {err}");
        }
    }
}
