//! kcp-go's forward error correction (`fec.go`): Reed-Solomon over groups of datagrams.
//!
//! ```text
//! data:   | seqid u32 LE | 0xf1 u16 LE | size u16 LE (2 + KCP bytes) | KCP segments |
//! parity: | seqid u32 LE | 0xf2 u16 LE | parity of the group's [size + KCP bytes]    |
//! ```
//!
//! Every `data` datagrams are followed by `parity` parity datagrams; seqids run on
//! across groups (a group starts at a multiple of `data + parity`). The shards of a group
//! are the data datagrams from their size field on, zero-padded to the longest; the
//! parity is computed over them with the Vandermonde-based code that Go's
//! `klauspost/reedsolomon` and the `reed-solomon-erasure` crate share. A receiver that has
//! any `data` shards of a group rebuilds the missing data datagrams.

use std::sync::Arc;

use reed_solomon_erasure::galois_8::ReedSolomon;

/// seqid and flag.
pub(super) const HEADER_LEN: usize = 6;
/// The header and the size field of a data shard.
pub(super) const HEADER_LEN_PLUS_SIZE: usize = HEADER_LEN + 2;
pub(super) const TYPE_DATA: u16 = 0xf1;
pub(super) const TYPE_PARITY: u16 = 0xf2;
/// How long an incomplete group's shards are kept (kcp-go: `fecExpire`, 60 s; shorter
/// here: by then KCP has long resent what they carried).
const EXPIRE_MS: u32 = 10_000;
/// kcp-go keeps at most 3 groups' worth of shards (`rxFECMulti`).
const RX_MULTI: usize = 3;

/// A Reed-Solomon code shared by every conversation of a listener.
#[derive(Clone)]
pub(super) struct Code {
    pub(super) data: usize,
    pub(super) parity: usize,
    rs: Arc<ReedSolomon>,
}

impl std::fmt::Debug for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "fec {}/{}", self.data, self.parity)
    }
}

impl Code {
    pub(super) fn new(data: usize, parity: usize) -> Result<Self, String> {
        let rs = ReedSolomon::new(data, parity).map_err(|e| format!("{e:?}"))?;
        Ok(Self {
            data,
            parity,
            rs: Arc::new(rs),
        })
    }

    fn shards(&self) -> usize {
        self.data + self.parity
    }
}

/// The FEC header of a datagram's payload (after decryption), if it has one: kcp-go
/// tells FEC from plain KCP by bytes 4..6, where KCP has its command (81 to 84) and
/// fragment count, which never read as 0x00f1 or 0x00f2.
pub(super) fn header(payload: &[u8]) -> Option<(u32, u16)> {
    if payload.len() < HEADER_LEN {
        return None;
    }
    let flag = u16::from_le_bytes([payload[4], payload[5]]);
    if flag != TYPE_DATA && flag != TYPE_PARITY {
        return None;
    }
    let seqid = u32::from_le_bytes(payload[..4].try_into().expect("4 bytes"));
    Some((seqid, flag))
}

/// The sending side of one conversation.
#[derive(Debug)]
pub(super) struct Encoder {
    code: Code,
    /// The next seqid.
    next: u32,
    /// Seqids wrap at a multiple of the group size, so that groups stay aligned.
    paws: u32,
    /// The data shards of the group being filled ([size + KCP bytes] each).
    shards: Vec<Vec<u8>>,
}

impl Encoder {
    pub(super) fn new(code: Code) -> Self {
        let n = code.shards() as u32;
        Self {
            paws: u32::MAX / n * n,
            code,
            next: 0,
            shards: Vec::new(),
        }
    }

    /// Writes the FEC header into `packet` (which starts with [`HEADER_LEN_PLUS_SIZE`]
    /// free bytes, the KCP bytes after them) and keeps its shard. When that completes a
    /// group, calls `parity` with each parity datagram's FEC part (header and parity).
    pub(super) fn encode(&mut self, packet: &mut [u8], mut parity: impl FnMut(&[u8])) {
        packet[..4].copy_from_slice(&self.next.to_le_bytes());
        packet[4..6].copy_from_slice(&TYPE_DATA.to_le_bytes());
        let size = (packet.len() - HEADER_LEN) as u16;
        packet[6..8].copy_from_slice(&size.to_le_bytes());
        self.next = self.next.wrapping_add(1);
        self.shards.push(packet[HEADER_LEN..].to_vec());
        if self.shards.len() < self.code.data {
            return;
        }
        let max = self.shards.iter().map(Vec::len).max().unwrap_or(0);
        let mut all = std::mem::take(&mut self.shards);
        for shard in &mut all {
            shard.resize(max, 0);
        }
        all.extend((0..self.code.parity).map(|_| vec![0u8; max]));
        let encoded = self.code.rs.encode(&mut all).is_ok();
        for shard in &all[self.code.data..] {
            let seqid = self.next;
            self.next = (self.next + 1) % self.paws;
            if !encoded {
                continue;
            }
            let mut out = Vec::with_capacity(HEADER_LEN + shard.len());
            out.extend_from_slice(&seqid.to_le_bytes());
            out.extend_from_slice(&TYPE_PARITY.to_le_bytes());
            out.extend_from_slice(shard);
            parity(&out);
        }
    }
}

struct Shard {
    seqid: u32,
    data: bool,
    /// A data shard from its size field on, or a parity shard's parity.
    bytes: Vec<u8>,
    at: u32,
}

/// The receiving side of one conversation: shards of incomplete groups, at most
/// three groups' worth.
#[derive(Default)]
pub(super) struct Decoder {
    rx: std::collections::VecDeque<Shard>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "fec decoder ({} shards held)", self.rx.len())
    }
}

fn newer(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

impl Decoder {
    /// Takes one FEC datagram's payload (`seqid`, `flag`, and `body`: the bytes after
    /// the 6-byte header) and returns the KCP bytes of the data datagrams it made it
    /// possible to rebuild.
    pub(super) fn decode(
        &mut self,
        code: &Code,
        seqid: u32,
        flag: u16,
        body: &[u8],
        now: u32,
    ) -> Vec<Vec<u8>> {
        let mut recovered = Vec::new();
        let n = code.shards() as u32;
        // Insert in seqid order; a duplicate is dropped.
        let mut at = self.rx.len();
        for (i, shard) in self.rx.iter().enumerate().rev() {
            if shard.seqid == seqid {
                return recovered;
            }
            if newer(seqid, shard.seqid) > 0 {
                at = i + 1;
                break;
            }
            at = i;
        }
        self.rx.insert(
            at,
            Shard {
                seqid,
                data: flag == TYPE_DATA,
                bytes: body.to_vec(),
                at: now,
            },
        );
        let begin = seqid - seqid % n;
        let in_group = |s: &Shard| {
            newer(s.seqid, begin) >= 0 && newer(s.seqid, begin.wrapping_add(n - 1)) <= 0
        };
        let mut count = 0;
        let mut data_count = 0;
        let mut max = 0;
        for shard in self.rx.iter().filter(|s| in_group(s)) {
            count += 1;
            data_count += usize::from(shard.data);
            max = max.max(shard.bytes.len());
        }
        if data_count == code.data {
            // Nothing lost: the group is done.
            self.rx.retain(|s| !in_group(s));
        } else if count >= code.data {
            let mut shards: Vec<Option<Vec<u8>>> = vec![None; code.shards()];
            for shard in self.rx.iter().filter(|s| in_group(s)) {
                let mut bytes = shard.bytes.clone();
                bytes.resize(max, 0);
                shards[shard.seqid.wrapping_sub(begin) as usize] = Some(bytes);
            }
            let missing: Vec<usize> = (0..code.data).filter(|&i| shards[i].is_none()).collect();
            if code.rs.reconstruct_data(&mut shards).is_ok() {
                for i in missing {
                    let Some(shard) = shards[i].take() else {
                        continue;
                    };
                    // [size u16 = 2 + KCP bytes][KCP bytes][padding]
                    if shard.len() < 2 {
                        continue;
                    }
                    let size = usize::from(u16::from_le_bytes([shard[0], shard[1]]));
                    if (2..=shard.len()).contains(&size) {
                        recovered.push(shard[2..size].to_vec());
                    }
                }
            }
            self.rx.retain(|s| !in_group(s));
        }
        while self.rx.len() > RX_MULTI * code.shards() {
            self.rx.pop_front();
        }
        while self
            .rx
            .front()
            .is_some_and(|s| now.wrapping_sub(s.at) > EXPIRE_MS)
        {
            self.rx.pop_front();
        }
        recovered
    }

    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every data datagram of a group is rebuilt from any `data` of its shards.
    #[test]
    fn any_ten_of_thirteen_rebuild_the_group() {
        let code = Code::new(10, 3).unwrap();
        let mut enc = Encoder::new(code.clone());
        let mut sent = Vec::new();
        let mut kcp_bytes = Vec::new();
        for i in 0..10u8 {
            let kcp: Vec<u8> = (0..(30 + i as usize * 13)).map(|j| j as u8 ^ i).collect();
            let mut packet = vec![0u8; HEADER_LEN_PLUS_SIZE];
            packet.extend_from_slice(&kcp);
            let mut parity = Vec::new();
            enc.encode(&mut packet, |p| parity.push(p.to_vec()));
            sent.push(packet);
            sent.extend(parity);
            kcp_bytes.push(kcp);
        }
        assert_eq!(sent.len(), 13);
        for lost in [[0, 1, 2], [3, 10, 11], [9, 12, 5], [0, 4, 8]] {
            let mut dec = Decoder::default();
            let mut got: Vec<Vec<u8>> = Vec::new();
            for (i, packet) in sent.iter().enumerate() {
                if lost.contains(&i) {
                    continue;
                }
                let (seqid, flag) = header(packet).unwrap();
                if flag == TYPE_DATA {
                    got.push(packet[HEADER_LEN_PLUS_SIZE..].to_vec());
                }
                got.extend(dec.decode(&code, seqid, flag, &packet[HEADER_LEN..], 0));
            }
            got.sort();
            let mut want = kcp_bytes.clone();
            want.sort();
            assert_eq!(got, want, "lost {lost:?}");
            assert!(dec.is_empty());
        }
    }

    /// Our parity of kcp-go's data datagrams is kcp-go's parity, byte for byte (the
    /// datagrams of `tests/kcp/fixtures`, recorded from a kcp-go client with AES and
    /// FEC 10/3).
    #[test]
    fn our_parity_is_kcp_go_s() {
        use super::super::crypt;
        let cipher = crypt::Spec::Aes(crypt::gonet_key(b"", b""))
            .cipher()
            .unwrap();
        let fixture = include_str!("../../../tests/kcp/fixtures/go-aes-fec10-3.txt");
        let payloads: Vec<Vec<u8>> = fixture
            .lines()
            .filter_map(|l| l.strip_prefix("datagram "))
            .map(|hex| {
                let mut bytes: Vec<u8> = (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                    .collect();
                cipher.open(&mut bytes).expect("the CRC holds").to_vec()
            })
            .collect();
        let mut enc = Encoder::new(Code::new(10, 3).unwrap());
        let mut ours = Vec::new();
        for (i, payload) in payloads[..10].iter().enumerate() {
            assert_eq!(header(payload), Some((i as u32, TYPE_DATA)));
            let mut packet = vec![0u8; HEADER_LEN_PLUS_SIZE];
            packet.extend_from_slice(&payload[HEADER_LEN_PLUS_SIZE..]);
            enc.encode(&mut packet, |p| ours.push(p.to_vec()));
            assert_eq!(&packet, payload, "data datagram {i}");
        }
        assert_eq!(ours.len(), 3);
        for (k, parity) in ours.iter().enumerate() {
            assert_eq!(
                header(&payloads[10 + k]),
                Some((10 + k as u32, TYPE_PARITY))
            );
            assert_eq!(parity, &payloads[10 + k], "parity {k}");
        }
    }
}
