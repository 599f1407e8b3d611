//! What peers say to each other: requests, answers and the manifest.
//!
//! Encoded with postcard (the workspace's canonical codec), each message starting with
//! [`WIRE_VERSION`]; decoding refuses trailing bytes and bounds every length before it is used
//! (a manifest of at most [`MAX_CHUNKS`] chunks, a chunk of at most [`MAX_CHUNK_BYTES`]).

use serde::{Deserialize, Serialize};

/// First byte of every request and answer.
pub const WIRE_VERSION: u8 = 1;
/// Default chunk size: 1 MiB (a chunk answer fits the public network's 4 MiB response limit
/// with room for the anchor in a manifest answer).
pub const DEFAULT_CHUNK_BYTES: u32 = 1 << 20;
/// Largest chunk a peer may serve or a manifest may name.
pub const MAX_CHUNK_BYTES: u32 = 4 << 20;
/// Smallest chunk size (tests use small ones to get many chunks from a small state).
pub const MIN_CHUNK_BYTES: u32 = 1 << 10;
/// Most chunks in one manifest (64 GiB at 1 MiB chunks; the image itself is at most 2 GiB).
pub const MAX_CHUNKS: usize = 1 << 16;
/// Largest anchor (a range answer: the blocks after the snapshot up to a certified one).
pub const MAX_ANCHOR_BYTES: usize = 32 << 20;
/// Largest image a manifest may describe: the exchange writes none larger (rkyv's 32-bit
/// relative pointers; `bastion_exchange`'s image bound).
pub const MAX_IMAGE_BYTES: u64 = 0x7FFF_FFFF;

/// A request to a peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// The manifest of the peer's snapshot at `height`, or of its newest one (`None`).
    Manifest {
        /// The height wanted, if one.
        height: Option<u64>,
    },
    /// Chunk `index` of the peer's snapshot at `height`.
    Chunk {
        /// The snapshot's height.
        height: u64,
        /// The chunk's index.
        index: u32,
    },
}

/// A peer's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    /// A manifest and its anchor: a range answer (`bastion_consensus::encode_range`) of the
    /// blocks `height + 1 ..= c` whose last block carries a finalization certificate. The first
    /// of them carries the state root of `height`, which the manifest must name.
    Manifest {
        /// The snapshot's manifest.
        manifest: Manifest,
        /// The certified blocks after it.
        #[serde(with = "serde_bytes")]
        anchor: Vec<u8>,
    },
    /// One chunk of a snapshot.
    Chunk {
        /// The snapshot's height.
        height: u64,
        /// The chunk's index.
        index: u32,
        /// Its bytes (as serde bytes: postcard then copies them whole instead of one `u8` at a
        /// time; the encoding is the same, a varint length and the bytes).
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// The peer has no (servable) snapshot at that height; `newest` is its newest, if any.
    NoSnapshot {
        /// The newest height it could serve.
        newest: Option<u64>,
    },
    /// The peer is over its per-peer budget: ask again after this long (or ask another).
    Busy {
        /// Milliseconds until the budget allows the request.
        retry_after_ms: u32,
    },
}

/// What a snapshot holds, and the hash of each chunk of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Height of the state.
    pub height: u64,
    /// Its state root (checked against the certified block at `height + 1`, then recomputed
    /// from every record of the rebuilt state).
    pub root: [u8; 32],
    /// The exchange's image layout version.
    pub layout: u32,
    /// Length of the image in bytes.
    pub length: u64,
    /// Bytes per chunk (the last may be shorter).
    pub chunk_bytes: u32,
    /// BLAKE3 of each chunk, in order.
    pub chunks: Vec<[u8; 32]>,
}

/// Why bytes from a peer are not a valid message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Empty, another version, undecodable, or trailing bytes.
    #[error("malformed: {0}")]
    Malformed(String),
    /// A manifest whose numbers do not add up or exceed the limits.
    #[error("bad manifest: {0}")]
    BadManifest(String),
}

impl Manifest {
    /// The manifest of `image` cut into chunks of `chunk_bytes`.
    pub fn of(height: u64, root: [u8; 32], layout: u32, image: &[u8], chunk_bytes: u32) -> Manifest {
        let size = chunk_bytes.clamp(MIN_CHUNK_BYTES, MAX_CHUNK_BYTES) as usize;
        Manifest {
            height,
            root,
            layout,
            length: image.len() as u64,
            chunk_bytes: size as u32,
            chunks: image.chunks(size).map(|c| *blake3::hash(c).as_bytes()).collect(),
        }
    }

    /// Number of chunks.
    pub fn count(&self) -> u32 {
        self.chunks.len() as u32
    }

    /// The byte range of chunk `index` in the image.
    pub fn range(&self, index: u32) -> Option<std::ops::Range<usize>> {
        if index >= self.count() {
            return None;
        }
        let start = u64::from(index) * u64::from(self.chunk_bytes);
        let end = (start + u64::from(self.chunk_bytes)).min(self.length);
        Some(usize::try_from(start).ok()?..usize::try_from(end).ok()?)
    }

    /// Whether `bytes` are chunk `index`: the right length and hash.
    pub fn chunk_ok(&self, index: u32, bytes: &[u8]) -> bool {
        let (Some(range), Some(hash)) = (self.range(index), self.chunks.get(index as usize)) else {
            return false;
        };
        range.len() == bytes.len() && blake3::hash(bytes).as_bytes() == hash
    }

    /// BLAKE3 of the encoded manifest: two peers serve the same snapshot cut the same way iff
    /// their digests are equal.
    pub fn digest(&self) -> [u8; 32] {
        *blake3::hash(&postcard::to_stdvec(self).unwrap_or_default()).as_bytes()
    }

    /// Checks the numbers: chunk size within limits, as many chunk hashes as the length needs,
    /// at most [`MAX_CHUNKS`].
    pub fn validate(&self) -> Result<(), WireError> {
        let bad = |m: String| Err(WireError::BadManifest(m));
        if !(MIN_CHUNK_BYTES..=MAX_CHUNK_BYTES).contains(&self.chunk_bytes) {
            return bad(format!(
                "chunk size {} outside {MIN_CHUNK_BYTES}..={MAX_CHUNK_BYTES}",
                self.chunk_bytes
            ));
        }
        if self.length == 0 {
            return bad("empty image".into());
        }
        if self.length > MAX_IMAGE_BYTES {
            return bad(format!("an image of {} bytes (at most {MAX_IMAGE_BYTES})", self.length));
        }
        let need = self.length.div_ceil(u64::from(self.chunk_bytes));
        if need > MAX_CHUNKS as u64 || self.chunks.len() as u64 != need {
            return bad(format!(
                "{} chunk hashes for {} bytes in chunks of {} (need {need}, at most {MAX_CHUNKS})",
                self.chunks.len(),
                self.length,
                self.chunk_bytes
            ));
        }
        Ok(())
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![WIRE_VERSION];
    // Encoding plain data into a Vec cannot fail.
    out.extend_from_slice(&postcard::to_stdvec(value).unwrap_or_default());
    out
}

fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, WireError> {
    let Some((&version, body)) = bytes.split_first() else {
        return Err(WireError::Malformed("empty message".into()));
    };
    if version != WIRE_VERSION {
        return Err(WireError::Malformed(format!("wire version {version}, this node speaks {WIRE_VERSION}")));
    }
    let (value, rest) = postcard::take_from_bytes(body).map_err(|e| WireError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(WireError::Malformed(format!("{} trailing bytes", rest.len())));
    }
    Ok(value)
}

impl Request {
    /// The request's bytes.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes a peer's request.
    pub fn decode(bytes: &[u8]) -> Result<Request, WireError> {
        decode(bytes)
    }
}

impl Answer {
    /// The answer's bytes.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes a peer's answer; a manifest is validated, a chunk bounded.
    pub fn decode(bytes: &[u8]) -> Result<Answer, WireError> {
        let a: Answer = decode(bytes)?;
        match &a {
            Answer::Manifest { manifest, anchor } => {
                manifest.validate()?;
                if anchor.len() > MAX_ANCHOR_BYTES {
                    return Err(WireError::Malformed(format!("anchor of {} bytes", anchor.len())));
                }
            }
            Answer::Chunk { bytes, .. } if bytes.len() > MAX_CHUNK_BYTES as usize => {
                return Err(WireError::Malformed(format!("chunk of {} bytes", bytes.len())));
            }
            _ => {}
        }
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trips_and_refusals() {
        let image: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let m = Manifest::of(7, [3; 32], 3, &image, 4096);
        assert_eq!(m.count(), 3);
        assert_eq!(m.range(2), Some(8192..10_000));
        assert!(m.chunk_ok(1, &image[4096..8192]));
        assert!(!m.chunk_ok(1, &image[4095..8191]));
        assert!(!m.chunk_ok(3, &[]));
        m.validate().unwrap();
        let a = Answer::Manifest { manifest: m.clone(), anchor: vec![1, 2, 3] };
        assert_eq!(Answer::decode(&a.encode()).unwrap(), a);
        let r = Request::Chunk { height: 7, index: 2 };
        assert_eq!(Request::decode(&r.encode()).unwrap(), r);

        let mut trailing = r.encode();
        trailing.push(0);
        assert!(matches!(Request::decode(&trailing), Err(WireError::Malformed(_))));
        assert!(matches!(Request::decode(&[]), Err(WireError::Malformed(_))));
        let mut other = r.encode();
        other[0] = 9;
        assert!(matches!(Request::decode(&other), Err(WireError::Malformed(_))));

        let mut short = m.clone();
        short.chunks.pop();
        let bad = Answer::Manifest { manifest: short, anchor: Vec::new() };
        assert!(matches!(Answer::decode(&bad.encode()), Err(WireError::BadManifest(_))));
        let mut tiny = m;
        tiny.chunk_bytes = 10;
        assert!(tiny.validate().is_err());
        // Chunks are a varint length and the raw bytes (as a plain `Vec<u8>` encodes).
        let c = Answer::Chunk { height: 300, index: 2, bytes: vec![7; 130] };
        let mut want = vec![WIRE_VERSION, 1, 0xAC, 0x02, 2, 0x82, 0x01];
        want.extend_from_slice(&[7; 130]);
        assert_eq!(c.encode(), want);
        assert_eq!(Answer::decode(&want).unwrap(), c);
        // Garbage never panics.
        for n in 0..200u32 {
            let junk: Vec<u8> = (0..n).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8).collect();
            let _ = Answer::decode(&junk);
            let _ = Request::decode(&junk);
        }
    }
}
