//! A validator's watch on the bridge's source chain: the `[bridge]` table of node.toml, and
//! the watcher thread that polls the source ([`bastion_bridge::DepositSource`]) and hands
//! confirmed deposits to consensus ([`bastion_consensus::DepositFeed`]), which attests them.
//!
//! The watcher reads the source on its own thread so a slow or stuck source never holds up
//! the consensus actor: the feed the actor polls only drains a channel. A source that cannot
//! be read is logged once per episode (and again when it recovers); the validator keeps
//! running and attests nothing new meanwhile, which is safe: 2/3 of stake must attest a
//! deposit before it is credited.

use bastion_bridge::{DepositSource, FileSource};
use bastion_consensus::{DepositFeed, FeedPoll};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;
use tracing::{error, info, warn};

/// The `[bridge]` table: which source chain this validator watches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BridgeSection {
    /// The simulated source chain's directory (its `ledger.jsonl`; `bastion devnet` starts one
    /// and writes this). Absent: this validator watches no source and attests no deposits (it
    /// still signs withdrawal vouchers and relays and proposes others' attestations).
    pub source: Option<PathBuf>,
    /// Source blocks a deposit needs on top of it, its own included, before this validator
    /// attests it (1..=10,000).
    pub confirmations: u64,
    /// How often the source is read, ms.
    pub poll_ms: u64,
}

impl Default for BridgeSection {
    fn default() -> Self {
        BridgeSection { source: None, confirmations: 2, poll_ms: 250 }
    }
}

impl BridgeSection {
    /// Checks the table; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=bastion_bridge::config::CONFIRMATIONS_MAX).contains(&self.confirmations) {
            return Err(format!(
                "[bridge] confirmations = {}: must be within 1..={}",
                self.confirmations,
                bastion_bridge::config::CONFIRMATIONS_MAX
            ));
        }
        if !(10..=60_000).contains(&self.poll_ms) {
            return Err(format!("[bridge] poll_ms = {}: must be within 10..=60000", self.poll_ms));
        }
        Ok(())
    }

    /// The feed consensus polls, with its watcher thread started, if a source is configured.
    pub fn start(&self) -> Result<Option<Box<dyn DepositFeed>>, String> {
        let Some(dir) = &self.source else { return Ok(None) };
        self.validate()?;
        let source = FileSource::new(dir.clone(), self.confirmations);
        info!(source = %source.describe(), "watching the bridge's source chain");
        Ok(Some(Box::new(Watcher::start(Box::new(source), Duration::from_millis(self.poll_ms))?)))
    }
}

/// The feed side of the watcher thread.
pub struct Watcher {
    rx: mpsc::Receiver<FeedPoll>,
}

impl Watcher {
    /// Polls `source` every `every` on a thread of its own (it ends when the feed is dropped).
    pub fn start(mut source: Box<dyn DepositSource>, every: Duration) -> Result<Watcher, String> {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("bridge-watch".into())
            .spawn(move || {
                let mut failing = false;
                loop {
                    match source.poll() {
                        Ok(poll) => {
                            if failing {
                                info!(source = %source.describe(), "the bridge's source is readable again");
                                failing = false;
                            }
                            let feed = FeedPoll {
                                tip: Some(poll.height),
                                deposits: poll
                                    .confirmed
                                    .into_iter()
                                    .map(|d| (d.deposit, d.source_height))
                                    .collect(),
                            };
                            if tx.send(feed).is_err() {
                                return;
                            }
                        }
                        Err(e) if !failing => {
                            error!(
                                source = %source.describe(),
                                %e,
                                "cannot read the bridge's source: attesting no new deposits until it can be read"
                            );
                            failing = true;
                        }
                        Err(e) => warn!(%e, "the bridge's source is still unreadable"),
                    }
                    std::thread::sleep(every);
                }
            })
            .map_err(|e| format!("cannot start the bridge watcher thread: {e}"))?;
        Ok(Watcher { rx })
    }
}

impl DepositFeed for Watcher {
    fn poll(&mut self, _now_ms: u64) -> FeedPoll {
        let mut out = FeedPoll::default();
        while let Ok(p) = self.rx.try_recv() {
            out.tip = p.tip.or(out.tip);
            out.deposits.extend(p.deposits);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use bastion_bridge::{BridgeConfig, BridgeValidator, SimChain};
    use bastion_types::{AccountId, AssetId};

    #[test]
    fn the_watcher_feeds_confirmed_deposits_once_each() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = BridgeConfig {
            chain_id: "t".into(),
            validators: vec![BridgeValidator::from_seed([21; 32], 1)],
            block_ms: 100,
            confirmations: 2,
        };
        let mut chain = SimChain::create(dir.path(), cfg).unwrap();
        let id = chain.deposit(AccountId(5), AssetId(0), 1_000).unwrap();
        chain.produce_block(1).unwrap();
        let section = BridgeSection { source: Some(dir.path().to_path_buf()), confirmations: 2, poll_ms: 10 };
        let mut feed = section.start().unwrap().unwrap();
        let mut got = Vec::new();
        let mut tip = 0;
        let mut second = false;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            let p = feed.poll(0);
            tip = p.tip.unwrap_or(tip);
            got.extend(p.deposits);
            if tip == 1 && !second {
                assert!(got.is_empty(), "its own block alone is not two confirmations");
                chain.produce_block(2).unwrap();
                second = true;
            }
            if !got.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(got.len(), 1, "the deposit is fed once it has two confirmations");
        assert_eq!((got[0].0.source_id, got[0].1), (id, 1));
        std::thread::sleep(Duration::from_millis(50));
        assert!(feed.poll(0).deposits.is_empty(), "and only once");
        assert_eq!(tip, 2);
    }

    #[test]
    fn bad_settings_name_the_key() {
        let e = BridgeSection { confirmations: 0, ..BridgeSection::default() }.validate().unwrap_err();
        assert!(e.contains("[bridge] confirmations"), "{e}");
        let e = BridgeSection { poll_ms: 0, ..BridgeSection::default() }.validate().unwrap_err();
        assert!(e.contains("[bridge] poll_ms"), "{e}");
    }
}
