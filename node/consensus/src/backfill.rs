//! Backfill served off the consensus actor, at a per-peer rate.
//!
//! A range request (`TAG_RANGE`: 17 bytes asking for up to `RANGE_MAX` finalized heights) costs
//! the server reading, decoding, re-encoding, hashing and sending up to 64 blocks. The
//! application actor does none of it: it hands the request to a bounded queue
//! ([`BACKFILL_QUEUE`]; a request that finds it full is dropped and counted) and goes on. The
//! [`Server`] task drains the queue. Per peer it keeps a token bucket of requests
//! ([`REQUESTS_PER_S`], burst [`REQUESTS_BURST`]) and one of bytes ([`BYTES_PER_S`], burst
//! [`BYTES_BURST`]): a request beyond the request rate is dropped and counted, and a range is
//! cut short when the peer's bytes run out (the requester asks again in its next round). A
//! peer with [`DROPS_TO_BLOCK`] requests dropped for rate within [`DROPS_WINDOW`] is blocked.
//!
//! Blocks come from a [`Cache`] of the encoded finalized blocks of the last `KEEP_FINALIZED`
//! heights, which the actor fills as it executes (one encoding per finalized block), or else
//! from the store's block log. The log belongs to the actor's store, so the server asks the
//! actor for raw log entries ([`LogRead`]: a bounded number of file reads, one request at a
//! time, only for requests the rate admitted); decoding them and rebuilding the wire blocks is
//! the server's work.

use crate::{
    application::{Ledger, TAG_PRUNED, logged_block, wire_block},
    block::BlockLimits,
    relay::BlockReason,
};
use bytes::Bytes;
use commonware_p2p::{Blocker, Recipients, Sender};
use commonware_runtime::Clock;
use commonware_utils::channel::{mpsc, oneshot};
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime},
};
use tracing::{debug, warn};

/// Range requests waiting for the server; beyond this they are dropped (and counted).
pub const BACKFILL_QUEUE: usize = 64;
/// Range requests served per peer per second (an honest catching-up validator sends at most 4:
/// one per 250 ms round, to one peer at a time).
pub const REQUESTS_PER_S: u64 = 8;
/// Burst of range requests per peer.
pub const REQUESTS_BURST: u64 = 16;
/// Block bytes served per peer per second.
pub const BYTES_PER_S: u64 = 32 << 20;
/// Burst of block bytes per peer (at least one largest block is always sendable: see
/// [`Server::new`]).
pub const BYTES_BURST: u64 = 64 << 20;
/// A peer with this many range requests dropped for rate within [`DROPS_WINDOW`] is blocked
/// (an honest peer sends at most 4 a second, under the rate, and is never dropped for rate).
pub const DROPS_TO_BLOCK: u64 = 256;
/// The window over which a peer's dropped requests are counted.
pub const DROPS_WINDOW: Duration = Duration::from_secs(10);

/// One range request from a peer.
#[derive(Debug)]
pub(crate) struct RangeRequest<P> {
    pub(crate) peer: P,
    pub(crate) from: u64,
    pub(crate) to: u64,
}

/// The server's request to the actor for raw block-log entries.
#[derive(Debug)]
pub(crate) struct LogRead {
    /// Heights wanted, in order.
    pub(crate) from: u64,
    pub(crate) to: u64,
    /// Stop once the entries read hold this many bytes.
    pub(crate) max_bytes: u64,
    pub(crate) response: oneshot::Sender<LogAnswer>,
}

/// Raw block-log entries, and the log's first height.
#[derive(Debug, Default)]
pub(crate) struct LogAnswer {
    pub(crate) entries: Vec<(u64, Vec<u8>)>,
    pub(crate) first: Option<u64>,
}

/// The encoded finalized blocks of recent heights (wire form: tag and block), and the executed
/// tip. Shared by the actor (writer) and the server (reader).
#[derive(Debug, Default)]
pub(crate) struct Cache {
    inner: Mutex<(u64, BTreeMap<u64, Bytes>)>,
}

impl Cache {
    fn lock(&self) -> MutexGuard<'_, (u64, BTreeMap<u64, Bytes>)> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The block finalized at `height` (wire bytes); the tip moves to it if higher. Heights
    /// `keep` or more below the tip are forgotten.
    pub(crate) fn insert(&self, height: u64, wire: Bytes, keep: u64) {
        let mut g = self.lock();
        g.0 = g.0.max(height);
        g.1.insert(height, wire);
        let floor = g.0.saturating_sub(keep);
        while g.1.first_key_value().is_some_and(|(h, _)| *h <= floor) {
            g.1.pop_first();
        }
    }

    fn get(&self, height: u64) -> Option<Bytes> {
        self.lock().1.get(&height).cloned()
    }

    fn tip(&self) -> u64 {
        self.lock().0
    }
}

/// A token bucket: `rate` tokens per second up to `burst`.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: u64,
    at: SystemTime,
}

impl Bucket {
    fn take(&mut self, now: SystemTime, rate: u64, burst: u64, n: u64) -> bool {
        let ms = now.duration_since(self.at).unwrap_or_default().as_millis();
        let add = u64::try_from(ms.saturating_mul(u128::from(rate)) / 1_000).unwrap_or(u64::MAX);
        if add > 0 {
            self.tokens = self.tokens.saturating_add(add).min(burst);
            self.at = now;
        }
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}

#[derive(Debug)]
struct Peer {
    requests: Bucket,
    bytes: Bucket,
    /// Requests dropped for rate since `drops_since`.
    drops: u64,
    drops_since: SystemTime,
    /// Already counted as blocked (the network's block expires; a repeat is blocked again but
    /// counted once).
    counted: bool,
}

/// The backfill server task (see the module doc).
pub(crate) struct Server<S: Sender, B: Blocker<PublicKey = S::PublicKey>> {
    pub(crate) requests: mpsc::Receiver<RangeRequest<S::PublicKey>>,
    pub(crate) sender: S,
    pub(crate) blocker: B,
    pub(crate) cache: Arc<Cache>,
    pub(crate) log: mpsc::Sender<LogRead>,
    pub(crate) limits: BlockLimits,
    pub(crate) ledger: Ledger,
    pub(crate) range_max: u64,
}

impl<S: Sender, B: Blocker<PublicKey = S::PublicKey>> Server<S, B> {
    /// Serves until the actor drops its end of the queue.
    pub(crate) async fn run(mut self, clock: impl Clock) {
        let mut peers: BTreeMap<S::PublicKey, Peer> = BTreeMap::new();
        let bytes_burst = BYTES_BURST.max(self.limits.max_encoded_bytes() as u64 + 1);
        while let Some(RangeRequest { peer, from, to }) = self.requests.recv().await {
            let now = clock.current();
            let p = peers.entry(peer.clone()).or_insert(Peer {
                requests: Bucket { tokens: REQUESTS_BURST, at: now },
                bytes: Bucket { tokens: bytes_burst, at: now },
                drops: 0,
                drops_since: now,
                counted: false,
            });
            if !p.requests.take(now, REQUESTS_PER_S, REQUESTS_BURST, 1) {
                if now.duration_since(p.drops_since).unwrap_or_default() >= DROPS_WINDOW {
                    p.drops = 0;
                    p.drops_since = now;
                }
                p.drops = p.drops.saturating_add(1);
                self.ledger.backfill_dropped(1);
                if p.drops >= DROPS_TO_BLOCK {
                    if !p.counted {
                        p.counted = true;
                        warn!(
                            ?peer,
                            drops = p.drops,
                            "blocking a peer: backfill requests far beyond the rate"
                        );
                        self.ledger.peer_blocked(BlockReason::BackfillFlood);
                    }
                    p.drops = 0;
                    p.drops_since = now;
                    let _ = self.blocker.block(peer);
                }
                continue;
            }
            let last = to.min(self.cache.tip()).min(from.saturating_add(self.range_max.saturating_sub(1)));
            let mut h = from.max(1);
            while h <= last {
                // From the cache while it has the heights...
                if let Some(wire) = self.cache.get(h) {
                    if !p.bytes.take(now, BYTES_PER_S, bytes_burst, wire.len() as u64) {
                        break;
                    }
                    let _ = self.sender.send(Recipients::One(peer.clone()), wire, false);
                    self.ledger.backfill_served(1);
                    h += 1;
                    continue;
                }
                // ...else from the actor's block log, as many as the peer's bytes allow.
                let budget = {
                    let _ = p.bytes.take(now, BYTES_PER_S, bytes_burst, 0);
                    p.bytes.tokens
                };
                let (response, answer) = oneshot::channel();
                let read = LogRead { from: h, to: last, max_bytes: budget, response };
                if self.log.send(read).await.is_err() {
                    return;
                }
                let Ok(answer) = answer.await else { return };
                if let Some(first) = answer.first
                    && h < first
                {
                    let mut bytes = vec![TAG_PRUNED];
                    bytes.extend_from_slice(&first.to_be_bytes());
                    let _ = self.sender.send(Recipients::One(peer.clone()), bytes, false);
                    break;
                }
                if answer.entries.is_empty() {
                    break;
                }
                let mut stop = false;
                for (height, raw) in answer.entries {
                    let block = match logged_block(&raw, &self.limits) {
                        Ok((b, _)) => b,
                        Err(e) => {
                            debug!(height, %e, "cannot serve a backfill height (damaged)");
                            stop = true;
                            break;
                        }
                    };
                    let wire = wire_block(&block);
                    if !p.bytes.take(now, BYTES_PER_S, bytes_burst, wire.len() as u64) {
                        stop = true;
                        break;
                    }
                    let _ = self.sender.send(Recipients::One(peer.clone()), wire, false);
                    self.ledger.backfill_served(1);
                    h = height + 1;
                }
                if stop {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refills_at_its_rate_up_to_its_burst() {
        let t0 = SystemTime::UNIX_EPOCH;
        let mut b = Bucket { tokens: 2, at: t0 };
        assert!(b.take(t0, 8, 16, 1) && b.take(t0, 8, 16, 1));
        assert!(!b.take(t0, 8, 16, 1), "burst spent");
        assert!(!b.take(t0 + Duration::from_millis(100), 8, 16, 1), "0.8 of a token after 100 ms");
        assert!(b.take(t0 + Duration::from_millis(125), 8, 16, 1), "one token after 125 ms");
        assert!(b.take(t0 + Duration::from_secs(100), 8, 16, 16));
        assert!(!b.take(t0 + Duration::from_secs(100), 8, 16, 1), "refill is capped at the burst");
    }
}
