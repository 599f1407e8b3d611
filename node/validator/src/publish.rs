//! What joins a node to the public network and the API (issue 17), for validators and full
//! nodes alike:
//! - [`GossipCheck`]: the `bastion-gossip` handler. Transactions: the envelope, the body, the
//!   signature (ZIP-215, `bastion-accel`) and the signer's nonce window against the committed
//!   state, before anything is forwarded. Blocks: the finalization certificate first (BLS
//!   multisig against the genesis validator set), then the block's digest
//!   ([`bastion_consensus::certified::CertChecker`]). Refusals are counted by reason.
//! - [`ValidatorSubmit`] / [`FullSubmit`]: what `POST /v1/tx` and the faucet hand packets to.
//! - [`ValidatorPublisher`]: the validator application's [`Publisher`]: certified blocks to the
//!   `blocks` topic, every executed block to the API, and a bounded window of recent blocks
//!   for range requests.
//! - [`ValidatorRelay`]: a thread that moves transactions between the pipeline and the
//!   public network: admitted UDP/API transactions out to the `txs` topic, gossiped ones into
//!   the pipeline's first ring (so they pass the same checks and duplicate filter).

use crate::node::{Committed, read};
use crate::pipeline::{Injector, Outbound};
use bastion_accel::{SigItem, VerifiedCache, verify_one};
use bastion_api::{Feeder, Submit, SubmitError, Update};
use bastion_consensus::certified::{CertChecker, Verified, encode_certified, encode_range};
use bastion_consensus::publish::{Published, Publisher};
use bastion_gossip::{Gossip, Handler, Verdict};
use bastion_net::packet;
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

/// How far above the committed nonce a gossiped transaction may be (as admission allows).
const NONCE_AHEAD_MAX: u64 = crate::pipeline::NONCE_AHEAD_MAX;

/// Certified blocks the handler verified, kept for the node loop so it does not verify them
/// twice (bounded: the oldest is forgotten and verified again if it is ever needed).
const VERIFIED_KEEP: usize = 256;

/// Blocks a validator keeps for range requests (full nodes serve from their logs).
pub const SERVE_WINDOW: usize = 1024;

/// Counters of what the handler refused, by reason.
#[derive(Debug, Default)]
pub struct Refusals {
    by_reason: Mutex<BTreeMap<&'static str, u64>>,
}

impl Refusals {
    /// Counts one refusal.
    pub fn count(&self, reason: &'static str) {
        *self.by_reason.lock().unwrap_or_else(PoisonError::into_inner).entry(reason).or_default() += 1;
    }

    /// The counts so far.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.by_reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| ((*k).to_string(), *v))
            .collect()
    }
}

/// Why a transaction is not accepted from the public network or the API. A valid signature is
/// remembered in `verified` (a validator's verified-signature cache), so the pipeline it is
/// injected into does not verify it again.
fn check_tx(
    chain: &[u8; 32],
    committed: &RwLock<Committed>,
    verified: Option<&VerifiedCache>,
    bytes: &[u8],
) -> Result<(), (&'static str, bool)> {
    // (reason, whether the sender is at fault: Reject rather than Ignore)
    let p = packet::decode(bytes).map_err(|_| ("malformed", true))?;
    let tx = bastion_types::tx::tx_of(p.public_key, p.body).map_err(|_| ("bad_body", true))?;
    let mut msg = Vec::with_capacity(p.body.len() + 64);
    packet::signing_message(chain, p.body, &mut msg);
    let item = SigItem { public_key: p.public_key, message: &msg, signature: p.signature };
    // A validator that already verified this very triple (the same transaction over UDP)
    // does not verify it again.
    let key = verified.map(|_| VerifiedCache::key(&item));
    let mut known = Vec::new();
    if let (Some(cache), Some(k)) = (verified, key) {
        cache.lookup(&[k], &mut known);
    }
    if known.first() != Some(&true) {
        if !verify_one(&item) {
            return Err(("bad_signature", true));
        }
        if let (Some(cache), Some(k)) = (verified, key) {
            cache.insert_verified(&[k]);
        }
    }
    // Not the sender's fault: the account may appear, or the nonce be used, by a block this
    // node has not executed yet.
    let last = read(committed).nonce(tx.signer).ok_or(("unknown_account", false))?;
    if tx.nonce <= last {
        return Err(("replay", false));
    }
    if tx.nonce - last > NONCE_AHEAD_MAX {
        return Err(("nonce_ahead", false));
    }
    Ok(())
}

/// The gossip handler of a node (see the module documentation).
pub struct GossipCheck {
    chain: [u8; 32],
    committed: Arc<RwLock<Committed>>,
    /// `None`: blocks are not checked here (a validator: it takes blocks from consensus).
    checker: Option<CertChecker>,
    /// A validator's verified-signature cache (see [`check_tx`]).
    signatures: Option<Arc<VerifiedCache>>,
    verified: Mutex<VecDeque<([u8; 32], Verified)>>,
    /// Hashes of the block bytes of recently verified certified blocks (the same block arrives
    /// from every validator, each under its own certificate: one verification is enough).
    seen_blocks: Mutex<VecDeque<[u8; 32]>>,
    /// Refused messages by reason (`tx_...`, `block_...`).
    pub refusals: Arc<Refusals>,
}

impl std::fmt::Debug for GossipCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GossipCheck").field("checks_blocks", &self.checker.is_some()).finish_non_exhaustive()
    }
}

impl GossipCheck {
    /// A handler for chain `chain` (its genesis digest), with the committed state's nonces and,
    /// on a full node, the certificate checker.
    pub fn new(
        chain: [u8; 32],
        committed: Arc<RwLock<Committed>>,
        checker: Option<CertChecker>,
    ) -> GossipCheck {
        GossipCheck {
            chain,
            committed,
            checker,
            signatures: None,
            verified: Mutex::new(VecDeque::new()),
            seen_blocks: Mutex::new(VecDeque::new()),
            refusals: Arc::new(Refusals::default()),
        }
    }

    /// Remembers the signatures it verifies in `cache` (a validator's, shared with its
    /// pipeline and proposal check).
    pub fn with_signature_cache(mut self, cache: Arc<VerifiedCache>) -> GossipCheck {
        self.signatures = Some(cache);
        self
    }

    /// Checks a transaction as the public network and the API take it.
    pub fn check_tx(&self, bytes: &[u8]) -> Result<(), (&'static str, bool)> {
        check_tx(&self.chain, &self.committed, self.signatures.as_deref(), bytes)
    }

    /// The verified form of an accepted block message: from the handler's cache, or checked
    /// again if it was forgotten.
    pub fn take_verified(&self, data: &[u8]) -> Option<Verified> {
        let key = *blake3::hash(data).as_bytes();
        {
            let mut cache = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(i) = cache.iter().position(|(k, _)| *k == key) {
                return cache.remove(i).map(|(_, v)| v);
            }
        }
        self.checker.as_ref()?.check_block(data).ok()
    }
}

impl Handler for GossipCheck {
    fn validate_tx(&self, packet: &[u8]) -> Verdict {
        match self.check_tx(packet) {
            Ok(()) => Verdict::Accept,
            Err((reason, fault)) => {
                self.refusals.count(match reason {
                    "malformed" => "tx_malformed",
                    "bad_body" => "tx_bad_body",
                    "bad_signature" => "tx_bad_signature",
                    "unknown_account" => "tx_unknown_account",
                    "replay" => "tx_replay",
                    _ => "tx_nonce_ahead",
                });
                if fault { Verdict::Reject } else { Verdict::Ignore }
            }
        }
    }

    fn validate_block(&self, message: &[u8]) -> Verdict {
        let Some(checker) = &self.checker else {
            // Validators take finalized blocks from consensus, not from here.
            return Verdict::Ignore;
        };
        let block_key =
            bastion_consensus::certified_block_bytes(message).map(|b| *blake3::hash(b).as_bytes());
        if let Some(k) = block_key
            && self.seen_blocks.lock().unwrap_or_else(PoisonError::into_inner).contains(&k)
        {
            // This very block was verified already, under another validator's certificate (the
            // public network counts it as ignored).
            return Verdict::Ignore;
        }
        match checker.check_block(message) {
            Ok(v) => {
                if let Some(k) = block_key {
                    let mut seen = self.seen_blocks.lock().unwrap_or_else(PoisonError::into_inner);
                    seen.push_back(k);
                    while seen.len() > VERIFIED_KEEP {
                        seen.pop_front();
                    }
                }
                let key = *blake3::hash(message).as_bytes();
                let mut cache = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
                cache.push_back((key, v));
                while cache.len() > VERIFIED_KEEP {
                    cache.pop_front();
                }
                Verdict::Accept
            }
            Err(r) => {
                self.refusals.count(r.label());
                Verdict::Reject
            }
        }
    }
}

/// A submit error with its HTTP status.
fn refused(code: &'static str, message: String, status: u16) -> SubmitError {
    SubmitError { code, message, status }
}

/// Maps a transaction check's refusal to the API's answer.
fn check_error(reason: &'static str) -> SubmitError {
    let message = match reason {
        "malformed" => "packet: not a transaction envelope (version 1, 32-byte key, 64-byte signature, body)",
        "bad_body" => "packet: the body does not decode canonically (see node/client/PROTOCOL.md)",
        "bad_signature" => {
            "packet: the signature does not verify over \"bastion/tx/v1\" | genesis digest | body (read genesis_digest from /v1/status)"
        }
        "unknown_account" => {
            "signer: no account with this key exists yet (deposit first, e.g. POST /v1/faucet on a devnet)"
        }
        "replay" => "nonce: at or below the account's last committed nonce",
        _ => "nonce: more than 4096 above the account's last committed nonce",
    };
    let status = if matches!(reason, "unknown_account" | "replay" | "nonce_ahead") { 422 } else { 400 };
    refused(reason, message.to_string(), status)
}

/// `POST /v1/tx` on a validator: into its own pipeline, which publishes it once admitted.
#[derive(Debug)]
pub struct ValidatorSubmit {
    /// The checks (so a client hears why at once).
    pub check: Arc<GossipCheck>,
    /// The pipeline's first ring.
    pub injector: Injector,
}

impl Submit for ValidatorSubmit {
    fn submit(&self, packet: Vec<u8>) -> Result<(), SubmitError> {
        self.check.check_tx(&packet).map_err(|(r, _)| check_error(r))?;
        if self.injector.inject(&packet, true) {
            Ok(())
        } else {
            Err(refused("busy", "the ingress pipeline is full; retry".into(), 503))
        }
    }
}

/// `POST /v1/tx` on a full node: checked, then published on the `txs` topic.
#[derive(Debug)]
pub struct FullSubmit {
    /// The checks.
    pub check: Arc<GossipCheck>,
    /// The public network.
    pub gossip: Arc<Gossip>,
}

impl Submit for FullSubmit {
    fn submit(&self, packet: Vec<u8>) -> Result<(), SubmitError> {
        self.check.check_tx(&packet).map_err(|(r, _)| check_error(r))?;
        self.gossip.publish_tx(packet).map_err(|e| refused("network", format!("cannot publish: {e}"), 503))
    }
}

/// Recent executed blocks a node can serve to peers' range requests.
#[derive(Debug)]
pub struct RecentBlocks {
    blocks: VecDeque<(u64, Bytes, Option<Bytes>)>,
    window: usize,
}

impl Default for RecentBlocks {
    fn default() -> Self {
        RecentBlocks { blocks: VecDeque::new(), window: SERVE_WINDOW }
    }
}

impl RecentBlocks {
    /// Recent blocks that serve at most `window` heights (at least 1, at most
    /// [`SERVE_WINDOW`]): a validator serves over the public network no further back than its
    /// block log reaches, so a node that finds no peer serving a height knows to state-sync.
    pub fn with_window(window: usize) -> Self {
        RecentBlocks { blocks: VecDeque::new(), window: window.clamp(1, SERVE_WINDOW) }
    }

    /// Remembers an executed block (heights in order; the oldest beyond [`SERVE_WINDOW`] go).
    pub fn push(&mut self, height: u64, wire: Bytes, certificate: Option<Bytes>) {
        if self.blocks.back().is_some_and(|(h, _, _)| *h + 1 != height) {
            self.blocks.clear();
        }
        self.blocks.push_back((height, wire, certificate));
        while self.blocks.len() > self.window {
            self.blocks.pop_front();
        }
    }

    /// The answer to a range request: blocks `from..=c`, where `c` is the first height at or
    /// after `to` with a certificate of its own (or the last certified one within `max_bytes`);
    /// `None` when `from` is not held or nothing certified follows it.
    pub fn serve(&self, from: u64, to: u64, max_bytes: usize) -> Option<Vec<u8>> {
        let first = self.blocks.front()?.0;
        let start = usize::try_from(from.checked_sub(first)?).ok()?;
        let mut out: Vec<Bytes> = Vec::new();
        let mut bytes = 0usize;
        let mut last_certified: Option<(usize, Bytes)> = None;
        for (h, wire, cert) in self.blocks.iter().skip(start) {
            if bytes + wire.len() > max_bytes {
                break;
            }
            bytes += wire.len();
            out.push(wire.clone());
            if let Some(c) = cert {
                last_certified = Some((out.len(), c.clone()));
                if *h >= to {
                    break;
                }
            }
        }
        let (n, cert) = last_certified?;
        out.truncate(n);
        Some(encode_range(&out, &cert))
    }
}

/// The validator application's publisher (see the module documentation).
pub struct ValidatorPublisher {
    /// The public network, if the validator joined it.
    pub gossip: Option<Arc<Gossip>>,
    /// The API's feed, if the validator serves the API.
    pub feeder: Option<Feeder>,
    /// Blocks for range requests.
    pub recent: Arc<Mutex<RecentBlocks>>,
    /// Certified blocks published.
    pub published: Arc<AtomicU64>,
}

impl std::fmt::Debug for ValidatorPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidatorPublisher")
            .field("gossip", &self.gossip.is_some())
            .field("api", &self.feeder.is_some())
            .finish_non_exhaustive()
    }
}

/// The API's update for an executed block.
pub fn update_of(
    block: &bastion_consensus::ChainBlock,
    events: &[bastion_types::Event],
    root: [u8; 32],
    state: &bastion_exchange::State,
) -> Update {
    let digest: [u8; 32] = block.id().as_ref().try_into().unwrap_or([0u8; 32]);
    let b = block.block();
    Update {
        height: b.height,
        timestamp_ms: b.timestamp_ms,
        digest,
        root,
        block: Arc::new(b.clone()),
        auths: Arc::new(block.auth().to_vec()),
        events: Arc::new(events.to_vec()),
        state: Arc::new(state.clone()),
    }
}

impl Publisher for ValidatorPublisher {
    fn finalized(&mut self, p: &Published<'_>) {
        let height = p.block.height_u64();
        let cert = p.certificate.map(Bytes::copy_from_slice);
        self.recent.lock().unwrap_or_else(PoisonError::into_inner).push(height, p.wire.clone(), cert);
        if let (Some(g), Some(c)) = (&self.gossip, p.certificate)
            && g.publish_block(encode_certified(p.wire, c)).is_ok()
        {
            self.published.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(f) = &self.feeder {
            f.push(update_of(p.block, p.events, p.root, p.state));
        }
    }
}

/// Moves transactions between a validator's pipeline and the public network, and answers
/// range requests from [`RecentBlocks`], on its own thread.
#[derive(Debug)]
pub struct ValidatorRelay {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl ValidatorRelay {
    /// Starts the relay thread. A validator without an ingress pipeline (synthetic blocks)
    /// has no `outbound` ring or `injector`: it still answers range and snapshot requests,
    /// and drops the transactions its peers gossip.
    pub fn start(
        gossip: Arc<Gossip>,
        outbound: Option<Arc<Outbound>>,
        injector: Option<Injector>,
        recent: Arc<Mutex<RecentBlocks>>,
        max_bytes: usize,
        snapshots: Option<Arc<bastion_statesync::Server>>,
    ) -> Result<ValidatorRelay, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("public-relay".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    let mut busy = false;
                    while let Some(frame) = outbound.as_ref().and_then(|o| o.ring.pop()) {
                        busy = true;
                        let _ = gossip.publish_tx(frame.payload().to_vec());
                    }
                    while let Ok(packet) = gossip.txs().try_recv() {
                        busy = true;
                        if let Some(i) = &injector {
                            i.inject(&packet, false);
                        }
                    }
                    while let Ok(req) = gossip.requests().try_recv() {
                        busy = true;
                        let answer = recent
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .serve(req.from, req.to, max_bytes);
                        let _ = req.reply.send(answer);
                    }
                    if let Some(server) = &snapshots {
                        let anchor = |h: u64| {
                            recent.lock().unwrap_or_else(PoisonError::into_inner).serve(h, h, max_bytes)
                        };
                        if crate::state_sync::serve_requests(&gossip, server, &anchor) > 0 {
                            busy = true;
                        }
                    }
                    if !busy {
                        // Wait for the network (no busy polling: this box's cores run
                        // consensus); the outbound ring is looked at again within 2 ms.
                        crossbeam_channel::select! {
                            recv(gossip.txs()) -> m => if let (Ok(packet), Some(i)) = (m, &injector) {
                                i.inject(&packet, false);
                            },
                            recv(gossip.requests()) -> m => if let Ok(req) = m {
                                let answer = recent.lock().unwrap_or_else(PoisonError::into_inner).serve(req.from, req.to, max_bytes);
                                let _ = req.reply.send(answer);
                            },
                            default(Duration::from_millis(2)) => {},
                        }
                    }
                }
            })
            .map_err(|e| format!("cannot start the public relay thread: {e}"))?;
        Ok(ValidatorRelay { stop, handle: Some(handle) })
    }
}

impl Drop for ValidatorRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
