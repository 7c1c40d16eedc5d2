//! kcp-go's packet encryption: a 16-byte nonce and a CRC32 of the rest, then the whole
//! datagram encrypted with the block crypt (`sess.go`: `output` and `packetInput`;
//! `crypt.go`).
//!
//! ```text
//! | nonce (16) | crc32 IEEE LE of what follows (4) | [FEC header] KCP segments |
//! |<-------------------- encrypted as one message ------------------------->|
//! ```
//!
//! AES is kcp-go's "local CFB": CFB-128 over the whole datagram from a fixed IV, so the
//! random nonce in the first block randomises the rest. Salsa20 keeps the first 8 bytes
//! of the nonce in clear as its nonce. XOR is a 1,500-byte pad derived from the key.
//! `none` has the header and its CRC but no encryption.

use std::fmt;

use aes::{Aes128, Aes192, Aes256};
use cfb_mode::cipher::{AsyncStreamCipher, InnerIvInit, KeyInit, KeyIvInit, StreamCipher};

/// The nonce before the CRC.
pub(super) const NONCE_LEN: usize = 16;
/// Nonce and CRC: what an encrypted datagram carries before its payload.
pub(super) const HEADER_LEN: usize = NONCE_LEN + 4;

/// kcp-go's fixed CFB initial vector (`crypt.go`: `initialVector`).
const IV: [u8; 16] = [
    167, 115, 79, 156, 18, 172, 27, 1, 164, 21, 242, 193, 252, 120, 230, 107,
];
/// kcp-go's salt for the XOR pad (`crypt.go`: `saltxor`).
const XOR_SALT: &[u8] = b"sH3CIVoF#rWLtJo6";
/// kcp-go's largest datagram (`sess.go`: `mtuLimit`): the XOR pad's length.
pub(super) const MTU_LIMIT: usize = 1500;

/// A block crypt ready to use: the key schedule made once per listener or client.
#[derive(Clone)]
pub(super) enum Cipher {
    None,
    Aes128(Aes128),
    Aes192(Aes192),
    Aes256(Aes256),
    Salsa20([u8; 32]),
    Xor(Box<[u8; MTU_LIMIT]>),
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cipher::None => "none",
            Cipher::Aes128(_) => "aes-128",
            Cipher::Aes192(_) => "aes-192",
            Cipher::Aes256(_) => "aes-256",
            Cipher::Salsa20(_) => "salsa20",
            Cipher::Xor(_) => "xor",
        })
    }
}

/// The crypt a [`KcpCrypt`](super::KcpCrypt) names, with its key.
#[derive(Clone, PartialEq, Eq)]
pub(super) enum Spec {
    /// No header at all (kcp-go with a nil block crypt).
    Off,
    None,
    Aes(Vec<u8>),
    Salsa20(Vec<u8>),
    Xor(Vec<u8>),
}

impl Spec {
    pub(super) fn cipher(&self) -> Option<Cipher> {
        Some(match self {
            Spec::Off => return None,
            Spec::None => Cipher::None,
            Spec::Aes(key) => match key.len() {
                16 => Cipher::Aes128(Aes128::new_from_slice(key).expect("16 bytes")),
                24 => Cipher::Aes192(Aes192::new_from_slice(key).expect("24 bytes")),
                _ => Cipher::Aes256(Aes256::new_from_slice(key).expect("32 bytes")),
            },
            Spec::Salsa20(key) => {
                // kcp-go copies the key into 32 zeroed bytes.
                let mut k = [0u8; 32];
                let n = key.len().min(32);
                k[..n].copy_from_slice(&key[..n]);
                Cipher::Salsa20(k)
            }
            Spec::Xor(key) => {
                let mut pad = Box::new([0u8; MTU_LIMIT]);
                pbkdf2::pbkdf2_hmac::<sha1::Sha1>(key, XOR_SALT, 32, &mut pad[..]);
                Cipher::Xor(pad)
            }
        })
    }
}

impl Cipher {
    /// Encrypts a whole datagram in place (its nonce and CRC already written).
    pub(super) fn encrypt(&self, buf: &mut [u8]) {
        match self {
            Cipher::None => {}
            Cipher::Aes128(c) => {
                cfb_mode::Encryptor::inner_iv_init(c.clone(), &IV.into()).encrypt(buf)
            }
            Cipher::Aes192(c) => {
                cfb_mode::Encryptor::inner_iv_init(c.clone(), &IV.into()).encrypt(buf)
            }
            Cipher::Aes256(c) => {
                cfb_mode::Encryptor::inner_iv_init(c.clone(), &IV.into()).encrypt(buf)
            }
            Cipher::Salsa20(key) => salsa(key, buf),
            Cipher::Xor(pad) => xor(pad, buf),
        }
    }

    /// Decrypts a whole datagram in place.
    pub(super) fn decrypt(&self, buf: &mut [u8]) {
        match self {
            Cipher::None => {}
            Cipher::Aes128(c) => {
                cfb_mode::Decryptor::inner_iv_init(c.clone(), &IV.into()).decrypt(buf)
            }
            Cipher::Aes192(c) => {
                cfb_mode::Decryptor::inner_iv_init(c.clone(), &IV.into()).decrypt(buf)
            }
            Cipher::Aes256(c) => {
                cfb_mode::Decryptor::inner_iv_init(c.clone(), &IV.into()).decrypt(buf)
            }
            Cipher::Salsa20(key) => salsa(key, buf),
            Cipher::Xor(pad) => xor(pad, buf),
        }
    }

    /// Seals a datagram whose first [`HEADER_LEN`] bytes are free: nonce, CRC of the
    /// payload, encryption.
    pub(super) fn seal(&self, buf: &mut [u8], nonce: &mut Nonce) {
        nonce.fill(&mut buf[..NONCE_LEN]);
        let crc = crc32fast::hash(&buf[HEADER_LEN..]);
        buf[NONCE_LEN..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
        self.encrypt(buf);
    }

    /// Opens a received datagram in place: the payload after the header, or `None` when
    /// it is too short or its CRC does not match (a stray, a forgery or another key).
    pub(super) fn open<'a>(&self, buf: &'a mut [u8]) -> Option<&'a mut [u8]> {
        if buf.len() < HEADER_LEN {
            return None;
        }
        self.decrypt(buf);
        let crc = u32::from_le_bytes(buf[NONCE_LEN..HEADER_LEN].try_into().expect("4 bytes"));
        if crc32fast::hash(&buf[HEADER_LEN..]) != crc {
            return None;
        }
        Some(&mut buf[HEADER_LEN..])
    }
}

fn salsa(key: &[u8; 32], buf: &mut [u8]) {
    // kcp-go: XORKeyStream(dst[8:], src[8:], src[:8], key): the first 8 bytes are the
    // nonce and stay in clear.
    if buf.len() <= 8 {
        return;
    }
    let (nonce, rest) = buf.split_at_mut(8);
    let nonce: [u8; 8] = (&*nonce).try_into().expect("8 bytes");
    let mut cipher = salsa20::Salsa20::new(key.into(), &nonce.into());
    cipher.apply_keystream(rest);
}

fn xor(pad: &[u8; MTU_LIMIT], buf: &mut [u8]) {
    for (b, p) in buf.iter_mut().zip(pad.iter()) {
        *b ^= p;
    }
}

/// Nonces for the datagrams of one conversation. They need not be secret, only varied
/// (kcp-go fills them from an AES-based counter): a 128-bit counter from a random start,
/// mixed with SplitMix64.
#[derive(Debug)]
pub(super) struct Nonce {
    state: u64,
    salt: u64,
}

impl Nonce {
    pub(super) fn new() -> Self {
        Self {
            state: random_u64(),
            salt: random_u64(),
        }
    }

    fn fill(&mut self, out: &mut [u8]) {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let a = mix(self.state);
        let b = mix(self.state ^ self.salt);
        out[..8].copy_from_slice(&a.to_le_bytes());
        out[8..16].copy_from_slice(&b.to_le_bytes());
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A random u64 from the standard library's per-process random hasher keys.
pub(super) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    h.finish()
}

/// Go gonet's key: PBKDF2-HMAC-SHA1 of the password and salt, 1,024 iterations, 32
/// bytes.
pub(super) fn gonet_key(password: &[u8], salt: &[u8]) -> Vec<u8> {
    let mut key = vec![0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password, salt, 1024, &mut key);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn the_gonet_key_of_empty_password_and_salt_is_go_s() {
        // Go: pbkdf2.Key([]byte(""), []byte(""), 1024, 32, sha1.New)
        assert_eq!(
            gonet_key(b"", b""),
            hex("f22b0923ec4d89118e238328d5bbd13683dd6020d8dcf6d140f103fa5e812ee7")
        );
    }

    #[test]
    fn every_cipher_round_trips_and_a_wrong_crc_is_refused() {
        let key = gonet_key(b"pw", b"salt");
        for spec in [
            Spec::None,
            Spec::Aes(key[..16].to_vec()),
            Spec::Aes(key[..24].to_vec()),
            Spec::Aes(key.clone()),
            Spec::Salsa20(key.clone()),
            Spec::Xor(key.clone()),
        ] {
            let cipher = spec.cipher().unwrap();
            let mut nonce = Nonce::new();
            for len in [0, 1, 15, 16, 17, 100, 1400] {
                let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
                let mut buf = vec![0u8; HEADER_LEN];
                buf.extend_from_slice(&payload);
                cipher.seal(&mut buf, &mut nonce);
                if !matches!(cipher, Cipher::None) && len > 0 {
                    assert_ne!(&buf[HEADER_LEN..], &payload[..], "{cipher:?} encrypts");
                }
                let mut copy = buf.clone();
                assert_eq!(cipher.open(&mut copy).unwrap(), &payload[..], "{cipher:?}");
                let mut bad = buf.clone();
                let last = bad.len() - 1;
                bad[last] ^= 1;
                if len > 0 {
                    assert!(cipher.open(&mut bad).is_none(), "{cipher:?} {len}");
                }
            }
        }
    }
}
