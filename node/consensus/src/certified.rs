//! Finalized blocks with their finalization certificates: the wire formats of the public
//! network, and their check ([`CertChecker`]).
//!
//! Two messages:
//!
//! ```text
//! certified block (a `blocks` topic message):
//!   TAG_CERTIFIED (1) | block length (u32 BE) | wire block | encoded Finalization (the rest)
//! range answer (backfill):
//!   TAG_RANGE (1) | count (u32 BE, 1..=MAX_RANGE_BLOCKS) | count x (length (u32 BE) | wire block)
//!     | encoded Finalization of the LAST block (the rest)
//! ```
//!
//! A wire block is what the validators' block channel carries (`TAG_BLOCK | ChainBlock`
//! encoding); the certificate is commonware's `Finalization<Multisig, Digest>` encoding (the
//! proposal: round, parent view, payload digest; then the signer bitmap and the aggregate BLS
//! signature).
//!
//! The check is ordered cheapest-refusal-first after the certificate: frame limits, certificate
//! decode (canonical: re-encoded byte for byte), **certificate verification** against the
//! genesis validator set under this chain's namespace, then SHA-256 of the block bytes against
//! the certified payload (before the block's body is decoded at all), then the canonical block
//! decode. A certificate of another chain (other namespace or other validator set) does not
//! verify: it is [`Refusal::BadCertificate`], indistinguishable from a forgery, and both mean
//! "not finalized by our validators". [`Refusal::WrongChain`] is a height-1 block whose parent
//! is not this chain's genesis digest (the same validator keys on two chains with one chain id).
//!
//! Every refusal is counted by label in the checker (shared by its clones): [`CertChecker::refusals`].

use crate::{
    application::{TAG_BLOCK, genesis_block},
    block::{BlockLimits, ChainBlock},
    follower::Ready,
    spec::{ChainSpec, Multisig, SpecError},
};
use bytes::Bytes;
use commonware_codec::{Copying, Decode as _, Encode as _};
use commonware_consensus::simplex::types::Finalization;
use commonware_cryptography::{Hasher as _, Sha256, certificate::Verifier as _, sha256::Digest};
use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

/// First byte of a certified block message.
pub const TAG_CERTIFIED: u8 = 0xC1;

/// First byte of a range answer.
pub const TAG_RANGE: u8 = 0xC2;

/// Most blocks one range answer may carry.
pub const MAX_RANGE_BLOCKS: usize = 1_024;

/// The certificate type on the wire.
pub type Certificate = Finalization<Multisig, Digest>;

/// A certified block message: one finalized block (`wire_block` bytes, starting with the block
/// channel's tag) and its encoded finalization.
pub fn encode_certified(block_wire: &[u8], certificate: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 4 + block_wire.len() + certificate.len());
    out.push(TAG_CERTIFIED);
    out.extend_from_slice(&len_u32(block_wire.len()).to_be_bytes());
    out.extend_from_slice(block_wire);
    out.extend_from_slice(certificate);
    out
}

/// The block bytes of a certified block message ([`encode_certified`]), without checking
/// anything: validators each publish the same block under their own certificate (different
/// signer sets, different bytes), so a receiver keys "already verified" by these bytes and
/// verifies one certificate per block, not one per validator. `None` if the framing is broken.
pub fn certified_block_bytes(message: &[u8]) -> Option<&[u8]> {
    let (&tag, rest) = message.split_first()?;
    if tag != TAG_CERTIFIED || rest.len() < 4 {
        return None;
    }
    let (len, rest) = rest.split_at(4);
    let len = usize::try_from(u32::from_be_bytes(len.try_into().ok()?)).ok()?;
    rest.get(..len)
}

/// A range answer: consecutive blocks (wire bytes, lowest first) and the encoded finalization of
/// the last one.
pub fn encode_range(blocks: &[Bytes], certificate: &[u8]) -> Vec<u8> {
    let total: usize = blocks.iter().map(|b| 4 + b.len()).sum();
    let mut out = Vec::with_capacity(1 + 4 + total + certificate.len());
    out.push(TAG_RANGE);
    out.extend_from_slice(&len_u32(blocks.len()).to_be_bytes());
    for b in blocks {
        out.extend_from_slice(&len_u32(b.len()).to_be_bytes());
        out.extend_from_slice(b);
    }
    out.extend_from_slice(certificate);
    out
}

fn len_u32(n: usize) -> u32 {
    // Blocks are bounded far below 4 GiB (`BlockLimits`); a larger one is refused on decode.
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Why a certified block or range answer was refused. Every refusal means the sender sent what
/// no honest node sends (the caller lowers its score), except none: honest nodes only forward
/// what passed this check.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Framing, certificate or block does not decode (or is not canonical, or over a limit).
    #[error("malformed: {0}")]
    Malformed(String),
    /// A height-1 block whose parent is not this chain's genesis.
    #[error("the block does not descend from this chain's genesis")]
    WrongChain,
    /// The finalization certificate does not verify against the genesis validator set under this
    /// chain's namespace (forged, another chain's, or another validator set's).
    #[error("the finalization certificate does not verify against this chain's validators")]
    BadCertificate,
    /// The certificate is valid but certifies another block.
    #[error("the block's digest is not the certified payload")]
    DigestMismatch,
    /// Blocks of a range answer are not consecutive or do not link by parent digest.
    #[error("range blocks do not link: {0}")]
    NotLinked(String),
    /// A range answer that does not start at the requested height.
    #[error("range answer starts at height {got}, requested {want}")]
    WrongStart {
        /// The height requested.
        want: u64,
        /// The first height answered.
        got: u64,
    },
}

impl Refusal {
    /// Every label, in the order of [`CertChecker::refusals`].
    pub const LABELS: [&'static str; 6] =
        ["malformed", "wrong_chain", "bad_certificate", "digest_mismatch", "not_linked", "wrong_start"];

    /// A short stable label (metrics, logs).
    pub fn label(&self) -> &'static str {
        Self::LABELS[self.index()]
    }

    fn index(&self) -> usize {
        match self {
            Refusal::Malformed(_) => 0,
            Refusal::WrongChain => 1,
            Refusal::BadCertificate => 2,
            Refusal::DigestMismatch => 3,
            Refusal::NotLinked(_) => 4,
            Refusal::WrongStart { .. } => 5,
        }
    }
}

/// A block whose finalization certificate verified and certifies exactly it.
#[derive(Clone, Debug)]
pub struct Verified {
    /// The block.
    pub block: ChainBlock,
    /// Its encoded finalization (what [`encode_certified`] carried; keep it to serve ranges).
    pub certificate: Bytes,
}

struct Inner {
    verifier: Multisig,
    limits: BlockLimits,
    genesis: Digest,
    cert_cfg: usize,
    max_cert_bytes: usize,
    refused: [AtomicU64; Refusal::LABELS.len()],
}

/// Checks certified blocks and range answers against the genesis validator set. `Send + Sync`,
/// cheap to clone (one shared verifier and one set of refusal counters).
#[derive(Clone)]
pub struct CertChecker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CertChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertChecker")
            .field("validators", &self.inner.cert_cfg)
            .field("limits", &self.inner.limits)
            .field("genesis", &self.inner.genesis)
            .finish()
    }
}

impl CertChecker {
    /// A checker for the chain of `spec`: the spec is validated first (every proof of
    /// possession: multisig certificates are only safe with them), then a verifier of its
    /// validator set under its namespace, its block limits and its genesis digest.
    pub fn new(spec: &ChainSpec) -> Result<CertChecker, SpecError> {
        spec.validate()?;
        let verifier = Multisig::verifier(&spec.namespace(), spec.participants()?);
        let genesis = genesis_block(&spec.exchange).map_err(SpecError::Invalid)?.id();
        Ok(Self::with_verifier(verifier, spec.block_limits(), genesis))
    }

    /// A checker from a verifier scheme built by the caller (the simulation's fixture). The
    /// caller must have checked the proofs of possession of its keys.
    pub fn with_verifier(verifier: Multisig, limits: BlockLimits, genesis: Digest) -> CertChecker {
        let cert_cfg = verifier.certificate_codec_config();
        let n = u32::try_from(cert_cfg).unwrap_or(u32::MAX);
        let max_cert_bytes = Certificate::max_encode_size(n);
        CertChecker {
            inner: Arc::new(Inner {
                verifier,
                limits,
                genesis,
                cert_cfg,
                max_cert_bytes,
                refused: Default::default(),
            }),
        }
    }

    /// The block limits blocks are decoded under.
    pub fn limits(&self) -> &BlockLimits {
        &self.inner.limits
    }

    /// The genesis digest of the chain.
    pub fn genesis(&self) -> Digest {
        self.inner.genesis
    }

    /// Largest certified block message this chain's honest nodes send (for the network's
    /// `max_transmit_size`).
    pub fn max_message_bytes(&self) -> usize {
        1 + 4 + 1 + self.inner.limits.max_encoded_bytes() + self.inner.max_cert_bytes
    }

    /// Refusals so far, by label (every label, zeros included), over every clone.
    pub fn refusals(&self) -> Vec<(&'static str, u64)> {
        Refusal::LABELS
            .iter()
            .zip(&self.inner.refused)
            .map(|(l, c)| (*l, c.load(Ordering::Relaxed)))
            .collect()
    }

    fn count<T>(&self, r: Result<T, Refusal>) -> Result<T, Refusal> {
        if let Err(e) = &r
            && let Some(c) = self.inner.refused.get(e.index())
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    /// Checks a certified block message ([`encode_certified`]): the certificate decodes
    /// canonically and verifies FIRST, then the block's bytes hash to the certified payload,
    /// then the block decodes canonically under the chain's limits. Never panics.
    pub fn check_block(&self, message: &[u8]) -> Result<Verified, Refusal> {
        self.count(self.check_block_inner(message))
    }

    fn check_block_inner(&self, message: &[u8]) -> Result<Verified, Refusal> {
        let mut r = Reader::new(message);
        if r.u8()? != TAG_CERTIFIED {
            return Err(Refusal::Malformed("not a certified block message (first byte)".into()));
        }
        let len = r.len_u32()?;
        let wire = r.take(len)?;
        let cert_bytes = r.rest();
        let cert = self.certificate(cert_bytes)?;
        let block = self.block_of(wire, &cert)?;
        if block.height_u64() == 1 && block.parent_digest() != self.inner.genesis {
            return Err(Refusal::WrongChain);
        }
        Ok(Verified { block, certificate: Bytes::copy_from_slice(cert_bytes) })
    }

    /// Checks a range answer ([`encode_range`]) for heights from `from`: the certificate of the
    /// last block verifies, the last block's bytes are its payload, every block links to the next
    /// by parent digest at consecutive heights, and the first is at `from`. Returns the blocks in
    /// order; the last carries the certificate, the others none (they are final because a
    /// certified block descends from them). Never panics.
    pub fn check_range(&self, answer: &[u8], from: u64) -> Result<Vec<Ready>, Refusal> {
        self.count(self.check_range_inner(answer, from))
    }

    fn check_range_inner(&self, answer: &[u8], from: u64) -> Result<Vec<Ready>, Refusal> {
        let mut r = Reader::new(answer);
        if r.u8()? != TAG_RANGE {
            return Err(Refusal::Malformed("not a range answer (first byte)".into()));
        }
        let count = r.len_u32()?;
        if count == 0 || count > MAX_RANGE_BLOCKS {
            return Err(Refusal::Malformed(format!("range of {count} blocks (1..={MAX_RANGE_BLOCKS})")));
        }
        let mut wires = Vec::with_capacity(count);
        for _ in 0..count {
            let len = r.len_u32()?;
            wires.push(r.take(len)?);
        }
        let cert_bytes = r.rest();
        let cert = self.certificate(cert_bytes)?;
        let Some((last_wire, below)) = wires.split_last() else {
            return Err(Refusal::Malformed("empty range".into()));
        };
        let last = self.block_of(last_wire, &cert)?;
        let mut out = Vec::with_capacity(count);
        out.push(Ready { block: last, certificate: Some(Bytes::copy_from_slice(cert_bytes)) });
        // Downwards: each block must be the parent of the one above it (by digest, so a block is
        // hashed before it is decoded).
        for wire in below.iter().rev() {
            let child = &out[out.len() - 1].block;
            let body = strip_tag(wire)?;
            if Sha256::hash(&[body]) != child.parent_digest() {
                return Err(Refusal::NotLinked(format!(
                    "the block below height {} is not its parent",
                    child.height_u64()
                )));
            }
            let block = decode_block(body, &self.inner.limits)?;
            if block.height_u64().checked_add(1) != Some(child.height_u64()) {
                return Err(Refusal::NotLinked(format!(
                    "height {} below height {}",
                    block.height_u64(),
                    child.height_u64()
                )));
            }
            out.push(Ready { block, certificate: None });
        }
        out.reverse();
        let first = &out[0].block;
        if first.height_u64() != from {
            return Err(Refusal::WrongStart { want: from, got: first.height_u64() });
        }
        if first.height_u64() == 1 && first.parent_digest() != self.inner.genesis {
            return Err(Refusal::WrongChain);
        }
        Ok(out)
    }

    /// Decodes (canonically) and verifies a certificate.
    fn certificate(&self, bytes: &[u8]) -> Result<Certificate, Refusal> {
        if bytes.len() > self.inner.max_cert_bytes {
            return Err(Refusal::Malformed(format!(
                "certificate of {} bytes (at most {})",
                bytes.len(),
                self.inner.max_cert_bytes
            )));
        }
        let cert = Certificate::decode_cfg(Copying(bytes), &self.inner.cert_cfg)
            .map_err(|e| Refusal::Malformed(format!("certificate: {e}")))?;
        if cert.encode().as_ref() != bytes {
            return Err(Refusal::Malformed("certificate is not canonically encoded".into()));
        }
        let mut rng = commonware_utils::sys_rng();
        if !cert.verify(&mut rng, &self.inner.verifier, &commonware_parallel::Sequential) {
            return Err(Refusal::BadCertificate);
        }
        Ok(cert)
    }

    /// The block of `wire` if its digest is the certificate's payload.
    fn block_of(&self, wire: &[u8], cert: &Certificate) -> Result<ChainBlock, Refusal> {
        let body = strip_tag(wire)?;
        if body.len() > self.inner.limits.max_encoded_bytes() {
            return Err(Refusal::Malformed(format!("block of {} bytes", body.len())));
        }
        if Sha256::hash(&[body]) != cert.proposal.payload {
            return Err(Refusal::DigestMismatch);
        }
        let block = decode_block(body, &self.inner.limits)?;
        if block.id() != cert.proposal.payload {
            return Err(Refusal::DigestMismatch);
        }
        Ok(block)
    }
}

fn strip_tag(wire: &[u8]) -> Result<&[u8], Refusal> {
    match wire.split_first() {
        Some((&TAG_BLOCK, body)) => Ok(body),
        _ => Err(Refusal::Malformed("not a wire block (missing block tag)".into())),
    }
}

fn decode_block(body: &[u8], limits: &BlockLimits) -> Result<ChainBlock, Refusal> {
    ChainBlock::decode_cfg(Copying(body), limits).map_err(|e| Refusal::Malformed(format!("block: {e}")))
}

/// A bounds-checked cursor over a message.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Refusal> {
        if n > self.bytes.len() {
            return Err(Refusal::Malformed(format!(
                "truncated: {n} bytes wanted, {} left",
                self.bytes.len()
            )));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, Refusal> {
        Ok(self.take(1)?[0])
    }

    fn len_u32(&mut self) -> Result<usize, Refusal> {
        let b = self.take(4)?;
        let n = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        usize::try_from(n).map_err(|_| Refusal::Malformed("length overflows".into()))
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }
}
