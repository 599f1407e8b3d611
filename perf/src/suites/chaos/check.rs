//! The checker: after a schedule, with every node stopped, reads each node's block log and the
//! client's acknowledgments, and lists what does not hold.
//! - **Safety**: one block per height. Each log entry is rebuilt into its consensus block
//!   (exchange block, parent digest and witness, as recovery does) and hashed; every node that
//!   holds a height holds the same digest there, and each node's entries chain (an entry's
//!   parent digest is the previous entry's digest).
//! - **Agreement**: one state root per height, and each entry's parent root is the previous
//!   entry's root.
//! - **Acknowledged transactions**: each is in the final chain at the height it was
//!   acknowledged at (its signer and nonce), and no (signer, nonce) is in two blocks.
//! - **Evidence**: no node recorded any (every node is honest here).

use super::client::Ack;
use bastion_consensus::{BlockLimits, ChainBlock};
use bastion_storage::{BlockLog, LogConfig};
use bastion_store::LogEntry;
use commonware_cryptography::sha256::Digest;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// What one height looked like on the first node that held it.
#[derive(Clone, PartialEq)]
struct Seen {
    digest: [u8; 32],
    root: [u8; 32],
    node: usize,
}

/// The checker's findings for one schedule.
#[derive(Debug, Default, Serialize)]
pub struct Findings {
    pub violations: Vec<String>,
    /// Per node: first and last height its log holds.
    pub logs: Vec<(u64, u64)>,
    /// Heights held by two or more nodes (compared).
    pub compared_heights: u64,
    pub acks_checked: u64,
}

/// Reads every node's data (`dirs[k]/data`) and checks it against the client's `acks`.
pub fn check(dirs: &[std::path::PathBuf], limits: &BlockLimits, acks: &[Ack]) -> Findings {
    let mut f = Findings::default();
    let mut heights: BTreeMap<u64, Seen> = BTreeMap::new();
    let mut holders: BTreeMap<u64, u32> = BTreeMap::new();
    // (signer, nonce) -> height, from the first node that holds the height.
    let mut txs: HashMap<(u64, u64), u64> = HashMap::new();
    for (k, dir) in dirs.iter().enumerate() {
        let entries = match read_log(&dir.join("data")) {
            Ok(e) => e,
            Err(e) => {
                f.violations.push(format!("node {k}: its block log cannot be read: {e}"));
                f.logs.push((0, 0));
                continue;
            }
        };
        f.logs.push((entries.first().map_or(0, |e| e.0), entries.last().map_or(0, |e| e.0)));
        let mut prev: Option<(u64, [u8; 32], [u8; 32])> = None;
        for (h, entry) in entries {
            let link = entry.link;
            let (parent_root, root) = (entry.parent_root, entry.root);
            let block_txs: Vec<(u64, u64)> = entry.block.txs.iter().map(|t| (t.signer.0, t.nonce)).collect();
            let digest = match ChainBlock::from_witness(
                Digest::from(link),
                parent_root,
                entry.block,
                &entry.witness,
                limits,
            ) {
                Ok(b) => {
                    let id = b.id();
                    let mut d = [0u8; 32];
                    d.copy_from_slice(id.as_ref());
                    d
                }
                Err(e) => {
                    f.violations
                        .push(format!("node {k}: height {h}: its entry does not rebuild a block: {e}"));
                    continue;
                }
            };
            if let Some((ph, pdigest, proot)) = prev
                && ph + 1 == h
            {
                if link != pdigest {
                    f.violations
                        .push(format!("node {k}: height {h} does not link to its height {ph} (safety)"));
                }
                if parent_root != proot {
                    f.violations
                        .push(format!("node {k}: height {h}'s parent root is not height {ph}'s root"));
                }
            }
            prev = Some((h, digest, root));
            *holders.entry(h).or_default() += 1;
            match heights.get(&h) {
                None => {
                    heights.insert(h, Seen { digest, root, node: k });
                    for key in block_txs {
                        if let Some(other) = txs.insert(key, h) {
                            f.violations.push(format!(
                                "account {} nonce {} is in two blocks: heights {other} and {h}",
                                key.0, key.1
                            ));
                        }
                    }
                }
                Some(s) => {
                    if s.digest != digest {
                        f.violations.push(format!(
                            "height {h}: node {} finalized {} and node {k} {} (safety: two blocks at one height)",
                            s.node,
                            bastion_store::hex(&s.digest),
                            bastion_store::hex(&digest)
                        ));
                    } else if s.root != root {
                        f.violations.push(format!(
                            "height {h}: node {} has root {} and node {k} {} (agreement)",
                            s.node,
                            bastion_store::hex(&s.root),
                            bastion_store::hex(&root)
                        ));
                    }
                }
            }
        }
        let evidence = std::fs::read(dir.join("data/evidence.log")).unwrap_or_default();
        if !evidence.is_empty() {
            let text = String::from_utf8_lossy(&evidence);
            let first = text.lines().next().unwrap_or_default();
            f.violations.push(format!(
                "node {k} recorded evidence against an honest validator ({} lines; first: {first})",
                text.lines().count()
            ));
        }
    }
    f.compared_heights = holders.values().filter(|n| **n >= 2).count() as u64;
    for a in acks {
        f.acks_checked += 1;
        match txs.get(&(a.account, a.nonce)) {
            Some(h) if *h == a.height => {}
            Some(h) => f.violations.push(format!(
                "acknowledged tx {} (account {} nonce {}) at height {} is at height {h} in the chain",
                a.hash, a.account, a.nonce, a.height
            )),
            None if heights.contains_key(&a.height) => f.violations.push(format!(
                "acknowledged tx {} (account {} nonce {}) at height {} is not in the chain (lost)",
                a.hash, a.account, a.nonce, a.height
            )),
            None => f.violations.push(format!(
                "acknowledged tx {} (account {} nonce {}) at height {}: no node's log holds that height",
                a.hash, a.account, a.nonce, a.height
            )),
        }
    }
    f
}

/// Every entry of the log under `data`, in height order.
fn read_log(data: &Path) -> Result<Vec<(u64, LogEntry)>, String> {
    let (log, _) = BlockLog::open(&data.join("log"), LogConfig::default()).map_err(|e| e.to_string())?;
    let (Some(first), Some(last)) = (log.first_height(), log.last_height()) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity((last - first + 1) as usize);
    for h in first..=last {
        let bytes = log.read(h).map_err(|e| format!("height {h}: {e}"))?;
        out.push((h, LogEntry::decode(&bytes).map_err(|e| format!("height {h}: {e}"))?));
    }
    Ok(out)
}
