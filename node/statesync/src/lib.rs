//! State sync (issue 18): a node that is new, or further behind than its peers' block logs
//! reach, joins from a certified snapshot instead of replaying from genesis.
//!
//! # Trust
//!
//! A snapshot is the exchange state at some height `h` ([`State`] as an image, `IMAGE_LAYOUT`).
//! Nothing a peer says about it is believed on its word:
//!
//! 1. The peer's [`wire::Answer::Manifest`] carries an *anchor*: the blocks `h + 1 ..= c` as a
//!    range answer whose last block has a finalization certificate. [`check_offer`] verifies
//!    the certificate against the genesis validator set (`CertChecker`: BLS multisig of a
//!    quorum) and links the blocks down by parent digest to `h + 1`. Block `h + 1` carries
//!    `root(h)`, the state root every validator computed after `h`.
//! 2. The manifest (height, root, length, chunk size, a BLAKE3 per chunk) is accepted only if
//!    its root equals that certified `root(h)`, and, when the operator gave a [`TrustPoint`],
//!    only if `h` is the trusted height and block `h + 1`'s parent digest is the trusted hash.
//! 3. Chunks are fetched from every peer that offered the same manifest (same digest), several
//!    in parallel; each is checked against its hash before it is written ([`chunks`]).
//! 4. The state is rebuilt from the image and its root **recomputed from every record**
//!    ([`State::recompute_root`], never the image's own lanes or header) and compared with the
//!    certified root ([`install::rebuild`]).
//! 5. Only then is it installed ([`install::install`]): the store's log is reset, the image
//!    written as its one snapshot, and the anchor blocks `h + 1 ..= c` executed on it with
//!    the roots checked as for any block; the node then follows the chain from `c + 1`.
//!
//! A peer whose manifest or anchor does not verify, whose chunk does not match its hash, or
//! whose manifest leads to a state with another root, is penalized on the network and not
//! asked again during this sync ([`syncer`]).
//!
//! # What an operator trusts
//!
//! By default, the genesis file's validator set: any snapshot whose anchor a quorum of it
//! certified. With `--trust-height H --trust-hash X` (or `[state_sync] trust_height` and
//! `trust_hash`), the node syncs to the snapshot at exactly `H` and requires the certified
//! block `H + 1` to name `X` (the digest of block `H`, as `bastion status` and the API's
//! `/v1/block` show it) as its parent: the operator pins the chain they checked out of band,
//! as CometBFT's trust height and hash do.
//!
//! # Modules
//! - [`wire`]: requests, answers, the manifest;
//! - [`server`]: answering peers from the snapshot directory, bounded per peer;
//! - [`chunks`]: verified chunks on disk (resume after a crash);
//! - [`syncer`]: the download over a [`syncer::Transport`] (the public network in the node);
//! - [`install`]: rebuild, recompute, install into the store, finish after a crash;
//! - [`file`]: the export file of `bastion snapshot export` / `import`.

#![warn(missing_docs)]

pub mod chunks;
pub mod file;
pub mod install;
pub mod server;
pub mod syncer;
pub mod wire;

use bastion_consensus::{CertChecker, Ready};
use bastion_exchange::IMAGE_LAYOUT;
pub use bastion_exchange::State;
pub use server::{ServeConfig, Server, ServerStats};
pub use syncer::{Downloaded, Phase, Progress, SyncConfig, SyncStats, Transport, sync};
pub use wire::{Answer, Manifest, Request};

/// The certificate an operator chose to trust: the snapshot at `height`, whose block has
/// digest `hash` (SHA-256 of the chain block, 32 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrustPoint {
    /// The snapshot height.
    pub height: u64,
    /// The digest of the block at that height.
    pub hash: [u8; 32],
}

impl TrustPoint {
    /// Parses a height and a 64-hex-digit hash.
    pub fn parse(height: u64, hash: &str) -> Result<TrustPoint, String> {
        let hash = hash.trim().trim_start_matches("0x");
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("trust hash {hash:?} is not 64 hex digits (the digest of block {height})"));
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&hash[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
        }
        if height == 0 {
            return Err("trust height must be at least 1 (height 0 is the genesis)".into());
        }
        Ok(TrustPoint { height, hash: out })
    }
}

/// Why a state sync failed or stopped.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// A file in the data dir could not be read or written.
    #[error("state sync storage: {0}")]
    Io(String),
    /// The store refused the install (a storage failure).
    #[error("state sync install: {0}")]
    Store(String),
    /// The rebuilt state does not verify (wrong root, wrong height, undecodable image).
    #[error("snapshot does not verify: {0}")]
    Invalid(String),
    /// No peer offered a usable snapshot within the configured time; the reasons per peer.
    #[error("state sync gave up after {seconds:.0} s: {why}")]
    GaveUp {
        /// Seconds spent.
        seconds: f64,
        /// What each peer offered or why it was refused.
        why: String,
    },
    /// The node was asked to stop.
    #[error("state sync stopped")]
    Stopped,
}

/// Why an offered manifest was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OfferRefusal {
    /// The anchor does not verify (forged or foreign certificate, unlinked blocks...).
    #[error("anchor refused: {0}")]
    BadAnchor(String),
    /// The manifest's root is not the root the certified block after it carries.
    #[error("manifest root {manifest} differs from the certified root {certified} of height {height}")]
    RootMismatch {
        /// The snapshot height.
        height: u64,
        /// Hex of the manifest's root.
        manifest: String,
        /// Hex of the certified root.
        certified: String,
    },
    /// The certified chain is not the one the operator trusts (parent digest differs).
    #[error("block {height} is {found}, the trusted hash is {trusted}")]
    NotTrusted {
        /// The trusted height.
        height: u64,
        /// Hex of the digest found.
        found: String,
        /// Hex of the trusted digest.
        trusted: String,
    },
    /// Another height than the trusted one (not the peer's fault).
    #[error("snapshot at height {got}, the trusted height is {want}")]
    OtherHeight {
        /// The trusted height.
        want: u64,
        /// The offered height.
        got: u64,
    },
    /// Another image layout (a peer on another version: not its fault).
    #[error("image layout {got}, this node reads {want}")]
    OtherLayout {
        /// This build's layout.
        want: u32,
        /// The offered one.
        got: u32,
    },
}

impl OfferRefusal {
    /// Whether an honest peer could have sent it (then it is skipped, not penalized). A
    /// certified chain that is not the trusted one is: its certificate verified, so a quorum
    /// of the validator set signed it, and the mismatch is the operator's trust point (a typo,
    /// another chain's hash) far more likely than the peer's doing; penalizing would cut the
    /// node off from every honest peer over a configuration mistake.
    pub fn honest(&self) -> bool {
        matches!(
            self,
            OfferRefusal::OtherHeight { .. }
                | OfferRefusal::OtherLayout { .. }
                | OfferRefusal::NotTrusted { .. }
        )
    }
}

/// A manifest whose anchor verified and whose root is the certified one.
#[derive(Clone, Debug)]
pub struct Offer {
    /// The manifest.
    pub manifest: Manifest,
    /// The anchor's bytes (kept with the chunks, checked again on resume).
    pub anchor: Vec<u8>,
    /// The anchor's blocks `height + 1 ..= c`, the last certified.
    pub blocks: Vec<Ready>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Verifies an offered manifest and its anchor (see the crate documentation, steps 1-2).
pub fn check_offer(
    checker: &CertChecker,
    manifest: Manifest,
    anchor: Vec<u8>,
    trust: Option<&TrustPoint>,
) -> Result<Offer, OfferRefusal> {
    if manifest.layout != IMAGE_LAYOUT {
        return Err(OfferRefusal::OtherLayout { want: IMAGE_LAYOUT, got: manifest.layout });
    }
    if let Some(t) = trust
        && t.height != manifest.height
    {
        return Err(OfferRefusal::OtherHeight { want: t.height, got: manifest.height });
    }
    manifest.validate().map_err(|e| OfferRefusal::BadAnchor(e.to_string()))?;
    let from =
        manifest.height.checked_add(1).ok_or_else(|| OfferRefusal::BadAnchor("height overflow".into()))?;
    let blocks = checker.check_range(&anchor, from).map_err(|r| OfferRefusal::BadAnchor(r.to_string()))?;
    let Some(first) = blocks.first() else {
        return Err(OfferRefusal::BadAnchor("empty anchor".into()));
    };
    if first.block.parent_state_root() != &manifest.root {
        return Err(OfferRefusal::RootMismatch {
            height: manifest.height,
            manifest: hex(&manifest.root),
            certified: hex(first.block.parent_state_root()),
        });
    }
    if let Some(t) = trust {
        let parent = first.block.parent_digest();
        if parent.as_ref() != t.hash {
            return Err(OfferRefusal::NotTrusted {
                height: t.height,
                found: hex(parent.as_ref()),
                trusted: hex(&t.hash),
            });
        }
    }
    Ok(Offer { manifest, anchor, blocks })
}
