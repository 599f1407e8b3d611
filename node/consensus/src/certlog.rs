//! Durable finalization certificates, so a node can serve block ranges with their proofs
//! ([`serve_range`]).
//!
//! [`CertLog`] is a `bastion_storage::BlockLog` in `<data_dir>/certificates`: one record per
//! executed height, holding that block's own encoded finalization, or an empty payload when the
//! block was finalized implicitly (as an ancestor of a certified block). Append after executing
//! a block, commit after (or with) the store's commit.
//!
//! Crashes: the store and this log are committed separately, so after a crash the log may end
//! below the store's height. [`CertLog::append`] therefore fills the missing heights between its
//! last height and the one appended with empty records (those blocks are served without a
//! certificate of their own: a range ending at a later certified block still proves them), and
//! ignores heights at or below its last (already recorded).

use crate::{
    application::{logged_block, wire_block},
    block::BlockLimits,
    certified::encode_range,
};
use bastion_storage::{BlockLog, LogConfig};
use bastion_store::Store;
use bytes::Bytes;
use std::path::Path;

/// The directory of the certificate log inside a node's data dir.
pub const CERT_DIR: &str = "certificates";

/// Segment size of the certificate log (a record is ~150 bytes: ~7,000 per segment, so pruning
/// behind snapshots frees space in steps of 1 MiB).
pub const CERT_SEGMENT_BYTES: u64 = 1 << 20;

/// Most empty records [`CertLog::append`] writes to fill a gap (a store this far ahead of its
/// certificate log is not this log's tail: the caller should start a new log).
pub const MAX_FILL: u64 = 1 << 20;

/// The durable certificate of each executed height.
#[derive(Debug)]
pub struct CertLog {
    log: BlockLog,
}

impl CertLog {
    /// Opens (or creates) `<data_dir>/certificates`. Torn tails are cut as in the block log.
    pub fn open(data_dir: &Path) -> Result<CertLog, String> {
        let dir = data_dir.join(CERT_DIR);
        let cfg = LogConfig { segment_bytes: CERT_SEGMENT_BYTES, ..LogConfig::default() };
        let (log, _) =
            BlockLog::open(&dir, cfg).map_err(|e| format!("certificate log {}: {e}", dir.display()))?;
        Ok(CertLog { log })
    }

    /// Records `height`'s certificate (`None`: the block has none of its own). Heights at or
    /// below the last recorded one are ignored; a gap after the last one (a crash between the
    /// store's commit and this log's) is filled with empty records. Not durable until
    /// [`Self::commit`].
    pub fn append(&mut self, height: u64, certificate: Option<&[u8]>) -> Result<(), String> {
        if let Some(last) = self.log.last_height() {
            if height <= last {
                return Ok(());
            }
            if height - last > MAX_FILL {
                return Err(format!(
                    "certificate log ends at height {last}, {} heights below {height}: remove {} to start \
                     a new one",
                    height - last,
                    CERT_DIR
                ));
            }
            for h in last + 1..height {
                self.log.append(h, &[]).map_err(|e| format!("certificate log: {e}"))?;
            }
        }
        self.log.append(height, certificate.unwrap_or_default()).map_err(|e| format!("certificate log: {e}"))
    }

    /// Makes every appended record durable (one `fdatasync`).
    pub fn commit(&mut self) -> Result<(), String> {
        self.log.commit().map(|_| ()).map_err(|e| format!("certificate log commit: {e}"))
    }

    /// The durable certificate of `height`; `None` when it has none, is not recorded, was
    /// pruned, or is not committed yet.
    pub fn get(&self, height: u64) -> Option<Vec<u8>> {
        self.log.read(height).ok().filter(|c| !c.is_empty())
    }

    /// The last recorded height (durable or not).
    pub fn last_height(&self) -> Option<u64> {
        self.log.last_height()
    }

    /// Discards every record; the next append may be any height (after state sync installed a
    /// snapshot: the log restarts above it). Durable when it returns.
    pub fn reset(&mut self) -> Result<(), String> {
        self.log.reset().map_err(|e| format!("certificate log reset: {e}"))
    }

    /// Drops whole segments below `h` (with the store's log, behind snapshots).
    pub fn prune_below(&mut self, h: u64) -> Result<(), String> {
        self.log.prune_below(h).map(|_| ()).map_err(|e| format!("certificate log prune: {e}"))
    }
}

/// A range answer ([`encode_range`]) for heights `from..=c`, read from the store's block log and
/// `certs`: `c` is the first height at or above `to` that has a certificate; when the blocks up to
/// it would exceed `max_bytes`, the last certified height whose answer fits. `None` when nothing
/// is servable (`from` pruned or not reached yet, no certified height within reach, or not even
/// one certified block fits).
pub fn serve_range(
    store: &Store,
    certs: &CertLog,
    limits: &BlockLimits,
    from: u64,
    to: u64,
    max_bytes: usize,
) -> Option<Vec<u8>> {
    let height = store.log().durable_height()?;
    if from == 0 || from > height || store.log().first_height()? > from {
        return None;
    }
    let mut blocks: Vec<Bytes> = Vec::new();
    let mut size = 1 + 4;
    // The longest prefix ending at a certified block that fits: (its length, its certificate).
    let mut best: Option<(usize, Vec<u8>)> = None;
    for item in store.log().iter_from(from) {
        let Ok((h, bytes)) = item else { break };
        if h != from + blocks.len() as u64 {
            // A hole (damage): the range must be consecutive.
            break;
        }
        let Ok((block, _)) = logged_block(&bytes, limits) else { break };
        let wire = Bytes::from(wire_block(&block));
        size += 4 + wire.len();
        if size > max_bytes {
            break;
        }
        blocks.push(wire);
        if let Some(cert) = certs.get(h) {
            if size + cert.len() > max_bytes {
                break;
            }
            let done = h >= to;
            best = Some((blocks.len(), cert));
            if done {
                break;
            }
        }
        if blocks.len() >= crate::certified::MAX_RANGE_BLOCKS {
            break;
        }
    }
    let (n, cert) = best?;
    Some(encode_range(&blocks[..n], &cert))
}
