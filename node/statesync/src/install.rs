//! From verified chunks to a running store: rebuild the state, recompute its root from every
//! record, install it, execute the anchor blocks; and finish an install a crash interrupted.

use crate::chunks::{self, ChunkStore};
use crate::wire::Manifest;
use crate::{SyncError, TrustPoint, check_offer};
use bastion_consensus::{CertChecker, CertLog, Ready, execute};
use bastion_exchange::State;
use bastion_store::Store;
use std::path::Path;
use std::time::{Duration, Instant};

/// What an install did, and how long each step took.
#[derive(Clone, Debug, Default)]
pub struct Installed {
    /// The snapshot's height.
    pub height: u64,
    /// The height after the anchor blocks were executed (where following resumes).
    pub tip: u64,
    /// The state root at `tip`.
    pub root: [u8; 32],
    /// Accounts in the state.
    pub accounts: usize,
    /// Image bytes.
    pub bytes: u64,
    /// Decoding the image into a state.
    pub rebuild: Duration,
    /// Recomputing the root from every record.
    pub recompute: Duration,
    /// Writing the snapshot, resetting the logs, executing and committing the anchor blocks.
    pub install: Duration,
}

/// Rebuilds the state from `image` and checks it: the height is the manifest's and the root
/// recomputed from every record is the manifest's (which [`check_offer`] tied to a certified
/// block). Returns the state and the time of the two steps.
pub fn rebuild(manifest: &Manifest, image: &[u8]) -> Result<(State, Duration, Duration), SyncError> {
    let t = Instant::now();
    let state = State::from_image_bytes(image).map_err(|e| SyncError::Invalid(format!("image: {e}")))?;
    let rebuild = t.elapsed();
    if state.height != manifest.height {
        return Err(SyncError::Invalid(format!(
            "the image holds height {}, the manifest says {}",
            state.height, manifest.height
        )));
    }
    let t = Instant::now();
    let root = state.recompute_root();
    let recompute = t.elapsed();
    if root != manifest.root {
        return Err(SyncError::Invalid(format!(
            "the root recomputed from the image's records is {}, the certified root of height {} is {}",
            crate::hex(&root),
            manifest.height,
            crate::hex(&manifest.root)
        )));
    }
    Ok((state, rebuild, recompute))
}

/// Installs a verified `state` (with its `image`) into `store`, then executes the anchor
/// `blocks` (`state.height + 1 ..= c`) on it, committing them to the store and to `certs`
/// (a full node's certificate log, reset first). The caller has verified everything; the
/// blocks are still checked as the follower checks any block (height, parent root).
pub fn install(
    store: &mut Store,
    certs: Option<&mut CertLog>,
    state: State,
    image: &[u8],
    blocks: &[Ready],
) -> Result<u64, SyncError> {
    store.install_synced(state, image).map_err(|e| SyncError::Store(e.to_string()))?;
    let mut certs = certs;
    if let Some(c) = certs.as_deref_mut() {
        c.reset().map_err(SyncError::Store)?;
    }
    for b in blocks {
        execute(store, &b.block).map_err(|e| SyncError::Invalid(format!("anchor block: {e}")))?;
        if let Some(c) = certs.as_deref_mut() {
            c.append(b.block.height_u64(), b.certificate.as_deref()).map_err(SyncError::Store)?;
        }
    }
    store.commit().map_err(|e| SyncError::Store(e.to_string()))?;
    if let Some(c) = certs {
        c.commit().map_err(SyncError::Store)?;
    }
    Ok(store.state().height)
}

/// Rebuilds, verifies and installs the target in `chunks` (complete), then removes the sync
/// directory. `blocks` is the verified anchor.
pub fn install_from(
    data_dir: &Path,
    store: &mut Store,
    certs: Option<&mut CertLog>,
    mut chunks: ChunkStore,
    blocks: &[Ready],
) -> Result<Installed, SyncError> {
    let manifest = chunks.manifest().clone();
    let image = chunks.assemble()?;
    let (state, rebuild_t, recompute) = rebuild(&manifest, &image)?;
    chunks.mark_ready()?;
    let accounts = state.accounts.len();
    let t = Instant::now();
    let tip = install(store, certs, state, &image, blocks)?;
    let install_t = t.elapsed();
    chunks::clear(data_dir)?;
    Ok(Installed {
        height: manifest.height,
        tip,
        root: store.state().state_root(),
        accounts,
        bytes: manifest.length,
        rebuild: rebuild_t,
        recompute,
        install: install_t,
    })
}

/// Finishes an install that a crash interrupted: when `<data_dir>/statesync` holds a target
/// marked ready and the store is not past it, everything is checked again (the anchor against
/// the certificate, every chunk against the manifest, the root recomputed) and installed.
/// When the store is already past the target, the leftover directory is removed. `Ok(None)`
/// when there was nothing to finish.
pub fn finish_pending(
    data_dir: &Path,
    store: &mut Store,
    certs: Option<&mut CertLog>,
    checker: &CertChecker,
) -> Result<Option<Installed>, SyncError> {
    let Some((manifest, anchor, ready)) = ChunkStore::saved(data_dir) else { return Ok(None) };
    if !ready {
        return Ok(None);
    }
    if store.state().height > manifest.height {
        chunks::clear(data_dir)?;
        return Ok(None);
    }
    let offer = check_offer(checker, manifest, anchor, None::<&TrustPoint>)
        .map_err(|e| SyncError::Invalid(format!("the saved target no longer verifies: {e}")))?;
    let (chunks, _) = ChunkStore::begin(data_dir, offer.manifest.clone(), offer.anchor.clone())?;
    if !chunks.complete() {
        return Ok(None);
    }
    install_from(data_dir, store, certs, chunks, &offer.blocks).map(Some)
}
