//! The file of `bastion snapshot export` and `bastion snapshot import`: one snapshot with its
//! anchor, for moving state by hand.
//!
//! Layout: the magic `BSYNCEXP`, a format version (u32 LE), the length (u64 LE) of the
//! postcard-encoded `(Manifest, anchor)`, those bytes, then the image. Importing checks
//! everything a network sync checks (the anchor's certificate, the manifest's root, the trust
//! point, every chunk's hash, the root recomputed from every record); the file is only a
//! carrier.

use crate::install::{Installed, install, rebuild};
use crate::wire::{DEFAULT_CHUNK_BYTES, MAX_ANCHOR_BYTES, Manifest};
use crate::{SyncError, TrustPoint, check_offer};
use bastion_consensus::{BlockLimits, CertChecker, CertLog, serve_range};
use bastion_exchange::IMAGE_LAYOUT;
use bastion_storage::Snapshot;
use bastion_store::Store;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Instant;

/// First bytes of an export file.
pub const MAGIC: [u8; 8] = *b"BSYNCEXP";
/// The export format this build writes and reads.
pub const FORMAT: u32 = 1;

/// What an export wrote.
#[derive(Clone, Debug)]
pub struct Exported {
    /// The snapshot's height.
    pub height: u64,
    /// Its state root.
    pub root: [u8; 32],
    /// The digest of the block at that height (what an importer passes as `--trust-hash`).
    pub block_hash: [u8; 32],
    /// Bytes written.
    pub bytes: u64,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> SyncError {
    SyncError::Io(format!("{what} {}: {e}", path.display()))
}

/// Writes the newest snapshot of `store` that has an anchor in its logs (the blocks after it and
/// a certificate, from `certs`) to `out`.
pub fn export(
    store: &Store,
    certs: &CertLog,
    limits: &BlockLimits,
    out: &Path,
) -> Result<Exported, SyncError> {
    let listed = bastion_storage::snapshot::list_in(&store.snapshot_dir())
        .map_err(|e| SyncError::Io(e.to_string()))?;
    if listed.is_empty() {
        return Err(SyncError::Invalid(format!(
            "{} holds no snapshot (a node takes one every [storage] snapshot_every blocks)",
            store.snapshot_dir().display()
        )));
    }
    let mut why = Vec::new();
    for (height, path) in listed {
        let Some(anchor) = serve_range(store, certs, limits, height + 1, height + 1, MAX_ANCHOR_BYTES) else {
            why.push(format!("height {height}: no certified block after it in this data dir's logs"));
            continue;
        };
        let snap = match Snapshot::open(&path, IMAGE_LAYOUT) {
            Ok(s) => s,
            Err(e) => {
                why.push(format!("height {height}: {e}"));
                continue;
            }
        };
        let meta = snap.meta();
        let manifest = Manifest::of(height, meta.root, meta.layout, snap.payload(), DEFAULT_CHUNK_BYTES);
        let head = postcard::to_stdvec(&(&manifest, &anchor)).map_err(|e| SyncError::Io(e.to_string()))?;
        let tmp = out.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).map_err(|e| io("create", &tmp, e))?;
        f.write_all(&MAGIC)
            .and_then(|()| f.write_all(&FORMAT.to_le_bytes()))
            .and_then(|()| f.write_all(&(head.len() as u64).to_le_bytes()))
            .and_then(|()| f.write_all(&head))
            .and_then(|()| f.write_all(snap.payload()))
            .and_then(|()| f.sync_all())
            .map_err(|e| io("write", &tmp, e))?;
        std::fs::rename(&tmp, out).map_err(|e| io("rename", out, e))?;
        let mut block_hash = [0u8; 32];
        if let Some(d) = bastion_consensus::logged_digest(store, limits, height) {
            block_hash.copy_from_slice(d.as_ref());
        }
        return Ok(Exported {
            height,
            root: meta.root,
            block_hash,
            bytes: (MAGIC.len() + 12 + head.len() + snap.payload().len()) as u64,
        });
    }
    Err(SyncError::Invalid(format!(
        "no snapshot of {} can be exported: {} (export from a full node's data dir: validators keep no certificates on disk)",
        store.snapshot_dir().display(),
        why.join("; ")
    )))
}

/// Imports an export file into `store` (and `certs`), trusting only `trust` and the genesis
/// validator set behind `checker`.
pub fn import(
    store: &mut Store,
    certs: Option<&mut CertLog>,
    checker: &CertChecker,
    file: &Path,
    trust: &TrustPoint,
) -> Result<Installed, SyncError> {
    let mut f = std::fs::File::open(file).map_err(|e| io("open", file, e))?;
    let mut head = [0u8; 20];
    f.read_exact(&mut head).map_err(|e| io("read", file, e))?;
    if head[..8] != MAGIC {
        return Err(SyncError::Invalid(format!("{} is not a snapshot export (magic)", file.display())));
    }
    let format = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    if format != FORMAT {
        return Err(SyncError::Invalid(format!(
            "{} has export format {format}, this build reads {FORMAT}",
            file.display()
        )));
    }
    let mut len8 = [0u8; 8];
    len8.copy_from_slice(&head[12..20]);
    let len = u64::from_le_bytes(len8);
    if len > (MAX_ANCHOR_BYTES as u64) * 2 {
        return Err(SyncError::Invalid(format!("{}: manifest of {len} bytes", file.display())));
    }
    let mut body = vec![0u8; len as usize];
    f.read_exact(&mut body).map_err(|e| io("read", file, e))?;
    let (manifest, anchor): (Manifest, Vec<u8>) = postcard::from_bytes(&body)
        .map_err(|e| SyncError::Invalid(format!("{}: manifest: {e}", file.display())))?;
    let offer =
        check_offer(checker, manifest, anchor, Some(trust)).map_err(|e| SyncError::Invalid(e.to_string()))?;
    let m = &offer.manifest;
    let mut image = rkyv::util::AlignedVec::<16>::with_capacity(m.length as usize);
    let mut buf = vec![0u8; m.chunk_bytes as usize];
    for index in 0..m.count() {
        let n = m.range(index).map_or(0, |r| r.len());
        let chunk = &mut buf[..n];
        f.read_exact(chunk).map_err(|e| io("read", file, e))?;
        if !m.chunk_ok(index, chunk) {
            return Err(SyncError::Invalid(format!(
                "{}: chunk {index} does not match its hash",
                file.display()
            )));
        }
        image.extend_from_slice(chunk);
    }
    let (state, rebuild_t, recompute) = rebuild(m, &image)?;
    let accounts = state.accounts.len();
    let t = Instant::now();
    let tip = install(store, certs, state, &image, &offer.blocks)?;
    Ok(Installed {
        height: m.height,
        tip,
        root: store.state().state_root(),
        accounts,
        bytes: m.length,
        rebuild: rebuild_t,
        recompute,
        install: t.elapsed(),
    })
}
