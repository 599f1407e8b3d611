//! The chain block: what consensus orders (by digest) and what validators relay to each other.
//!
//! A [`ChainBlock`] wraps one exchange [`Block`] with the links that make a chain: the parent's
//! digest, the height, and the state root the proposer computed after executing the parent. That
//! last field carries every validator's executed root into the next block, so a validator whose
//! execution diverged refuses the proposal (it computes another root) and, once a quorum has
//! finalized a block it disagrees with, halts instead of signing on.
//!
//! Encoding (canonical, every accepted byte string is the only encoding of its value):
//!
//! ```text
//! parent digest (32) | height (u64 BE) | parent state root (32) | varint len | postcard(Block)
//!   | per transaction, in order: ed25519 public key (32) | signature (64)
//! ```
//!
//! Decoding checks the size limits first, then decodes the exchange block with postcard,
//! re-encodes it and refuses the bytes if they differ (postcard varints admit padded forms).
//! The authorisations follow, exactly one per transaction (their count is the block's), so the
//! digest commits to every signature. Whether they are valid is the application's check (it
//! rebuilds each signed message from the transaction: the body encoding is canonical).

use bastion_types::{
    Block, TxAuth,
    tx::{AUTH_BYTES, auth_from_bytes, auth_to_bytes},
};
use bytes::{BufMut, Bytes};
use commonware_codec::{EncodeSize, Error as CodecError, RangeCfg, Read, ReadExt as _, Write};
use commonware_consensus::{Heightable, types::Height};
use commonware_cryptography::{Digestible, Hasher, Sha256, sha256::Digest};

/// The state root type of the exchange (LtHash commitment, 32 bytes).
pub type StateRoot = [u8; 32];

/// Bytes of the fixed header: parent digest, height, parent state root.
pub const HEADER_BYTES: usize = 32 + 8 + 32;

/// Default limit on the encoded exchange block (16 MiB: batches of thousands of orders).
pub const DEFAULT_MAX_BLOCK_BYTES: usize = 16 << 20;

/// Default protocol limit on transactions per block: what honest proposers build and verifiers
/// decode (the node's `pipeline.block_txs_max`; one value governs decode, verify and propose).
pub const DEFAULT_BLOCK_TXS: usize = 4_096;

/// Limits applied when decoding a block received from a peer (the codec's `Read::Cfg`), when
/// verifying it and when building a proposal: one value for all three, so a verifier never
/// accepts more than an honest proposer builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockLimits {
    /// Largest encoded exchange block (the postcard body) accepted.
    pub max_body_bytes: usize,
    /// Most transactions accepted in one block (at most [`bastion_exchange::BLOCK_TXS_MAX`], the exchange's own
    /// bound; [`DEFAULT_BLOCK_TXS`] by default).
    pub max_txs: usize,
}

impl Default for BlockLimits {
    fn default() -> Self {
        BlockLimits { max_body_bytes: DEFAULT_MAX_BLOCK_BYTES, max_txs: DEFAULT_BLOCK_TXS }
    }
}

impl BlockLimits {
    /// Largest encoded [`ChainBlock`] under these limits (header, length varint, body).
    pub fn max_encoded_bytes(&self) -> usize {
        // A usize varint takes at most 10 bytes.
        HEADER_BYTES
            .saturating_add(10)
            .saturating_add(self.max_body_bytes)
            .saturating_add(self.max_txs.saturating_mul(AUTH_BYTES))
    }
}

/// Why a block could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The exchange block did not serialize (should not happen for well-formed blocks).
    #[error("postcard: {0}")]
    Postcard(#[from] postcard::Error),
    /// The block breaks a limit.
    #[error("block too large: {0}")]
    Limit(String),
}

/// One block of the chain. Immutable once built: the encoding and digest are computed once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainBlock {
    parent: Digest,
    height: u64,
    parent_state_root: StateRoot,
    block: Block,
    body: Bytes,
    auth: Vec<TxAuth>,
    digest: Digest,
}

impl ChainBlock {
    /// Builds a block on `parent`: `auth[i]` authorises `block.txs[i]`. The exchange block's
    /// height is the chain height.
    pub fn new(
        parent: Digest,
        parent_state_root: StateRoot,
        block: Block,
        auth: Vec<TxAuth>,
        limits: &BlockLimits,
    ) -> Result<Self, BuildError> {
        if auth.len() != block.txs.len() {
            return Err(BuildError::Limit(format!(
                "{} authorisations for {} transactions",
                auth.len(),
                block.txs.len()
            )));
        }
        if block.txs.len() > limits.max_txs {
            return Err(BuildError::Limit(format!("{} txs > {}", block.txs.len(), limits.max_txs)));
        }
        let body = Bytes::from(postcard::to_allocvec(&block)?);
        if body.len() > limits.max_body_bytes {
            return Err(BuildError::Limit(format!("{} bytes > {}", body.len(), limits.max_body_bytes)));
        }
        Ok(Self::assemble(parent, block.height, parent_state_root, block, body, auth))
    }

    /// A block as a log entry keeps it: the exchange block and its witness bytes
    /// ([`ChainBlock::witness`]).
    pub fn from_witness(
        parent: Digest,
        parent_state_root: StateRoot,
        block: Block,
        witness: &[u8],
        limits: &BlockLimits,
    ) -> Result<Self, BuildError> {
        let auth = auth_from_bytes(witness).ok_or_else(|| {
            BuildError::Limit(format!("witness of {} bytes is not whole records", witness.len()))
        })?;
        Self::new(parent, parent_state_root, block, auth, limits)
    }

    /// The genesis block of a chain whose exchange genesis has timestamp `timestamp_ms`. Its
    /// digest is the consensus floor; it is never executed.
    pub fn genesis(timestamp_ms: u64, genesis_root: StateRoot) -> Self {
        let block = Block { height: 0, timestamp_ms, ..Block::default() };
        // An empty block always serializes; fall back to an empty body rather than panic.
        let body = Bytes::from(postcard::to_allocvec(&block).unwrap_or_default());
        Self::assemble(Digest::from([0u8; 32]), 0, genesis_root, block, body, Vec::new())
    }

    fn assemble(
        parent: Digest,
        height: u64,
        parent_state_root: StateRoot,
        block: Block,
        body: Bytes,
        auth: Vec<TxAuth>,
    ) -> Self {
        let mut buf = Vec::with_capacity(HEADER_BYTES + 10 + body.len() + auth.len() * AUTH_BYTES);
        write_fields(&parent, height, &parent_state_root, &body, &auth, &mut buf);
        let digest = Sha256::hash(&[&buf]);
        ChainBlock { parent, height, parent_state_root, block, body, auth, digest }
    }

    /// The parent's digest.
    pub fn parent_digest(&self) -> Digest {
        self.parent
    }

    /// Chain height (the exchange block's height).
    pub fn height_u64(&self) -> u64 {
        self.height
    }

    /// The state root after executing the parent, as the proposer computed it.
    pub fn parent_state_root(&self) -> &StateRoot {
        &self.parent_state_root
    }

    /// The exchange block.
    pub fn block(&self) -> &Block {
        &self.block
    }

    /// The key and signature of each transaction, in order.
    pub fn auth(&self) -> &[TxAuth] {
        &self.auth
    }

    /// The authorisations as the bytes a log entry keeps.
    pub fn witness(&self) -> Vec<u8> {
        auth_to_bytes(&self.auth)
    }

    /// The block's digest (SHA-256 of its canonical encoding).
    pub fn id(&self) -> Digest {
        self.digest
    }
}

fn write_fields(
    parent: &Digest,
    height: u64,
    root: &StateRoot,
    body: &Bytes,
    auth: &[TxAuth],
    buf: &mut impl BufMut,
) {
    parent.write(buf);
    height.write(buf);
    root.write(buf);
    body.write(buf);
    for a in auth {
        buf.put_slice(&a.public_key);
        buf.put_slice(&a.signature);
    }
}

impl Write for ChainBlock {
    fn write(&self, buf: &mut impl BufMut) {
        write_fields(&self.parent, self.height, &self.parent_state_root, &self.body, &self.auth, buf);
    }
}

impl EncodeSize for ChainBlock {
    fn encode_size(&self) -> usize {
        HEADER_BYTES + self.body.encode_size() + self.auth.len() * AUTH_BYTES
    }
}

impl Read for ChainBlock {
    type Cfg = BlockLimits;

    fn read_cfg(buf: &mut impl commonware_codec::Buf, cfg: &BlockLimits) -> Result<Self, CodecError> {
        let parent = Digest::read(buf)?;
        let height = u64::read(buf)?;
        let parent_state_root = <[u8; 32]>::read(buf)?;
        let body = Bytes::read_cfg(buf, &RangeCfg::new(..=cfg.max_body_bytes))?;
        let block: Block = postcard::from_bytes(&body)
            .map_err(|_| CodecError::Invalid("ChainBlock", "body does not decode"))?;
        let again = postcard::to_allocvec(&block)
            .map_err(|_| CodecError::Invalid("ChainBlock", "body does not re-encode"))?;
        if again.as_slice() != body.as_ref() {
            return Err(CodecError::Invalid("ChainBlock", "body is not canonical"));
        }
        if block.height != height {
            return Err(CodecError::Invalid("ChainBlock", "header height differs from block height"));
        }
        if block.txs.len() > cfg.max_txs {
            return Err(CodecError::Invalid("ChainBlock", "too many transactions"));
        }
        let mut auth = Vec::with_capacity(block.txs.len());
        for _ in 0..block.txs.len() {
            let public_key = <[u8; 32]>::read(buf)?;
            let signature = <[u8; 64]>::read(buf)?;
            auth.push(TxAuth { public_key, signature });
        }
        Ok(Self::assemble(parent, height, parent_state_root, block, body, auth))
    }
}

impl Digestible for ChainBlock {
    type Digest = Digest;

    fn digest(&self) -> Digest {
        self.digest
    }
}

impl Heightable for ChainBlock {
    fn height(&self) -> Height {
        Height::new(self.height)
    }
}

impl commonware_consensus::Block for ChainBlock {
    fn parent(&self) -> Digest {
        self.parent
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use bastion_exchange::{BLOCK_TXS_MAX, Genesis, State, testkit::PathKind, testkit::Workload};
    use commonware_codec::{Decode as _, Encode as _};

    fn sample() -> ChainBlock {
        let g = Genesis::devnet();
        let state = State::from_genesis(&g).unwrap();
        let mut w = Workload::new(7, 8, PathKind::Calm, &g);
        let txs = w.funding_txs(1_000_000);
        let block = w.block_with(txs);
        // Not valid signatures: the block only carries them (the application checks them).
        let auth = (0..block.txs.len())
            .map(|i| TxAuth { public_key: [i as u8; 32], signature: [(i as u8) ^ 0x5a; 64] })
            .collect();
        let genesis = ChainBlock::genesis(g.timestamp_ms, state.state_root());
        ChainBlock::new(genesis.id(), state.state_root(), block, auth, &BlockLimits::default()).unwrap()
    }

    #[test]
    fn round_trip_is_identity() {
        let b = sample();
        let bytes = b.encode();
        assert_eq!(bytes.len(), b.encode_size());
        let back = ChainBlock::decode_cfg(bytes.clone(), &BlockLimits::default()).unwrap();
        assert_eq!(back, b);
        assert_eq!(back.digest(), b.digest());
        assert_eq!(back.encode(), bytes);
        assert_eq!(back.auth(), b.auth());
        let again = ChainBlock::from_witness(
            b.parent_digest(),
            *b.parent_state_root(),
            b.block().clone(),
            &b.witness(),
            &BlockLimits::default(),
        )
        .unwrap();
        assert_eq!(again.id(), b.id(), "the log's witness rebuilds the same block");
        let mut other = b.auth().to_vec();
        other[0].signature[0] ^= 1;
        let changed = ChainBlock::new(
            b.parent_digest(),
            *b.parent_state_root(),
            b.block().clone(),
            other,
            &BlockLimits::default(),
        )
        .unwrap();
        assert_ne!(changed.id(), b.id(), "the digest commits to every signature");
        let short = b.auth()[1..].to_vec();
        assert!(
            ChainBlock::new(
                b.parent_digest(),
                *b.parent_state_root(),
                b.block().clone(),
                short,
                &BlockLimits::default()
            )
            .is_err()
        );
    }

    #[test]
    fn limits_and_garbage_are_refused() {
        let b = sample();
        let bytes = b.encode();
        let tight = BlockLimits { max_body_bytes: 8, max_txs: BLOCK_TXS_MAX };
        assert!(ChainBlock::decode_cfg(bytes.clone(), &tight).is_err());
        let few = BlockLimits { max_body_bytes: DEFAULT_MAX_BLOCK_BYTES, max_txs: 1 };
        assert!(ChainBlock::decode_cfg(bytes.clone(), &few).is_err());
        // Truncated, extended and bit-flipped encodings never decode to the same digest.
        assert!(ChainBlock::decode_cfg(bytes.slice(..bytes.len() - 1), &BlockLimits::default()).is_err());
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(ChainBlock::decode_cfg(Bytes::from(longer), &BlockLimits::default()).is_err());
        for i in 0..bytes.len() {
            let mut flipped = bytes.to_vec();
            flipped[i] ^= 0x01;
            if let Ok(other) = ChainBlock::decode_cfg(Bytes::from(flipped.clone()), &BlockLimits::default()) {
                assert_ne!(other.digest(), b.digest());
                assert_eq!(other.encode().as_ref(), flipped.as_slice(), "decoded a non-canonical encoding");
            }
        }
    }

    #[test]
    fn default_limits_refuse_more_transactions_than_a_proposer_builds() {
        let b = sample();
        let n = DEFAULT_BLOCK_TXS + 1;
        let mut block = b.block().clone();
        let txs: Vec<_> = block.txs.iter().cloned().cycle().take(n).collect();
        block.txs = txs;
        let auth: Vec<TxAuth> = b.auth().iter().copied().cycle().take(n).collect();
        let loose = BlockLimits { max_txs: n, ..BlockLimits::default() };
        let big = ChainBlock::new(b.parent_digest(), *b.parent_state_root(), block, auth, &loose).unwrap();
        let bytes = big.encode();
        assert!(ChainBlock::decode_cfg(bytes.clone(), &loose).is_ok());
        assert!(
            ChainBlock::decode_cfg(bytes, &BlockLimits::default()).is_err(),
            "a verifier decoded a block of {n} transactions; proposers build at most {DEFAULT_BLOCK_TXS}"
        );
        assert!(BlockLimits::default().max_txs <= BLOCK_TXS_MAX);
    }

    #[test]
    fn header_height_must_match_body() {
        let b = sample();
        let mut bytes = b.encode().to_vec();
        // Height lives right after the 32-byte parent digest.
        bytes[32 + 7] ^= 0x02;
        assert!(ChainBlock::decode_cfg(Bytes::from(bytes), &BlockLimits::default()).is_err());
    }
}
