//! Bastion's public network (issue 17): libp2p gossipsub topics `blocks` and `txs`,
//! request-response backfill of finalized blocks by height range, and request-response transfer
//! of opaque state-sync snapshot bytes.
//!
//! The crate knows bytes, peers and topics, not blocks or transactions: the node passes a
//! [`Handler`] that judges every message before it is delivered or forwarded. Full nodes and
//! validators both run it.
//!
//! # Design
//!
//! **Transport.** TCP + noise + yamux (no QUIC, to keep compile time down). The identity is an
//! ed25519 key from [`GossipConfig::secret`], so the peer id is deterministic. One OS thread runs a
//! single-threaded tokio runtime with the swarm; `validation_threads` more threads run the
//! handler.
//!
//! **Topics** (`<chain>` is [`GossipConfig::chain_id`]):
//! - `bastion/<chain>/blocks`: finalized blocks with their certificates, at most
//!   `max_block_bytes` per message;
//! - `bastion/<chain>/txs`: client transaction packets, at most `max_tx_bytes` (1232 today).
//!
//! Gossipsub's per-topic `max_transmit_size` is set to exactly those limits (checked on publish and
//! on receive) and the frame limit is the larger plus 4 KiB of protobuf overhead. Messages are
//! anonymous (no source, sequence number or signature: blocks and transactions carry their own
//! signatures), and the **message id is the BLAKE3 hash of the data**, so the same transaction
//! published on two nodes is one message everywhere.
//!
//! **Validation.** `validate_messages()` is on: gossipsub forwards nothing before the node said
//! [`Verdict::Accept`]. A received message goes into a bounded queue (`validate_queue`) read by the
//! validation threads; when the queue is full the message is reported `Ignore` at once and counted
//! (`dropped_validate`). Verdicts go back to the swarm through a channel of the same bound and are
//! reported with `report_message_validation_result`. Accepted messages are delivered on
//! [`Gossip::txs`] / [`Gossip::blocks`] (bounded by `inbound_queue`; drops counted). Messages this
//! node published itself are never delivered back to it (a bounded seen-cache of 65,536 ids also
//! counts any duplicate delivery gossipsub would let through).
//!
//! **Peer scoring** (gossipsub v1.1; numbers chosen here):
//! - per topic (weight 1 for `blocks`, 0.5 for `txs`): P1 time in mesh 0.01 per second, capped
//!   at 300 s (+3); P2 first deliveries weight 1, cap 20, decaying to zero in 10 minutes; P3/P3b
//!   (mesh delivery rate) off, because `txs` traffic is bursty and an idle honest peer must not
//!   lose score; **P4 invalid messages weight -25, squared, decaying to zero over 10 minutes**:
//!   one `Reject` on `blocks` costs -25, two cost -100;
//! - topic score cap 50; application score weight 1 ([`Gossip::penalize`] sets -100);
//!   IP colocation -5 over 10 peers per IP, loopback exempt (many nodes on one box); behaviour
//!   penalty -10 per squared excess (libp2p default), decay interval 1 s, decay-to-zero 0.01;
//! - thresholds: gossip -20 (no IHAVE/IWANT with the peer), publish -40 (we do not publish to
//!   it), graylist -80 (all its RPCs ignored); accept PX 10, opportunistic graft 5.
//!
//! So a peer that sends one invalid block stops getting gossip; a second one graylists it.
//!
//! **Range requests.** Protocol `/bastion/<chain>/blocks/1` with a length-prefixed codec: a
//! request is exactly 16 bytes (`from`, `to` big-endian), a response is a tag byte and at most
//! `max_block_bytes`. [`Gossip::request_range`] asks the best-scored connected peer (rotating
//! between equals); the answer comes on [`Gossip::ranges`]. Served requests go to
//! [`Gossip::requests`], and the node answers with [`Replier::send`]; a request unanswered after
//! `reply_timeout` (5 s) is dropped, which the asker sees as an error. At most
//! `max_requests_per_peer` (4) requests of one peer are in flight; more are refused and counted.
//!
//! **Snapshot requests.** Protocol `/bastion/<chain>/snapshot/1` moves opaque bytes for state
//! sync (the node's state-sync crate defines the messages). A request is the asker's bytes, at
//! most [`SNAPSHOT_REQUEST_MAX`] (1 KiB), up to the end of the substream; a response is a tag
//! byte and its payload: tag 0 = the node's bytes (at most `max_snapshot_bytes`, 4 MiB + 64 KiB),
//! tag 1 = an error text (at most 256 bytes, "unavailable" when the node has nothing), tag 2 =
//! "busy" (no payload). Both sides read with a limit of one byte over the bound and refuse
//! more, so nothing a peer claims is allocated before it is checked. [`Gossip::ask_snapshot`]
//! sends a request to one named, connected peer and returns an id; the answer, with that id,
//! comes on [`Gossip::snapshot_answers`] (`Err("busy")`, `Err("unavailable")`, or the transport
//! error; a peer that is not connected or is banned gets an `Err` answer at once). Served
//! requests go to [`Gossip::snapshot_requests`] and are answered with [`Replier::send`] (limit
//! `max_snapshot_bytes`); one unanswered after `reply_timeout` is dropped, as for ranges. At most
//! `max_snapshot_requests_per_peer` (2) requests of one peer are in flight: more are answered
//! "busy" at once and counted (`refused_busy`), so the asker can try later or elsewhere; a
//! request that finds the requests channel full is answered "busy" too (`requests_dropped`).
//! Requests of banned peers are not served. Outbound requests fail after `request_timeout`.
//! Substreams of the protocol per connection: `2 * max_snapshot_requests_per_peer + 4` (the
//! served requests, as many of our own, and a few busy answers being written).
//!
//! **Peers.** Bootstrap addresses are dialed at start and redialed while not connected (backoff
//! 1 s doubling to 30 s). Identify (`/bastion/<chain>/id/1`) records each peer's listen addresses
//! so reconnections work; connections above `max_peers` are closed (bootstrap peers excepted).
//! [`Gossip::penalize`] counts the reason, sets the application score to -100, disconnects and
//! bans the peer for `ban_duration` (60 s): its connections are closed on arrival and it is not
//! dialed.
//!
//! **Bounds.** Commands to the swarm (publishes, range and snapshot requests): `inbound_queue`;
//! validation and verdicts: `validate_queue`; each delivery channel: `inbound_queue`; pending
//! served requests: `max_requests_per_peer` (ranges) and `max_snapshot_requests_per_peer`
//! (snapshots) per peer; snapshot bytes: [`SNAPSHOT_REQUEST_MAX`] per request,
//! `max_snapshot_bytes` per response; penalty reasons: 64 distinct texts (then "other").

#![warn(missing_docs)]

mod codec;
mod swarm;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;

/// Largest snapshot request, in bytes ([`Gossip::ask_snapshot`] refuses more, and so does the
/// serving peer's codec).
pub const SNAPSHOT_REQUEST_MAX: usize = 1024;
// A request must fit in the first read of the serving codec's bounded buffer and be small next
// to any response; a snapshot chunk request is a few hashes and indexes.
const _: () = assert!(SNAPSHOT_REQUEST_MAX > 0 && SNAPSHOT_REQUEST_MAX <= 64 << 10);

/// Configuration of the public network. Build it with [`GossipConfig::new`] and adjust fields.
#[derive(Clone, Debug)]
pub struct GossipConfig {
    /// TCP address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    /// Multiaddrs to dial and keep connected, like `/ip4/127.0.0.1/tcp/7600`, with or without
    /// `/p2p/<peer id>`.
    pub bootstrap: Vec<String>,
    /// Ed25519 seed of this node's libp2p identity (the peer id derives from it).
    pub secret: [u8; 32],
    /// Chain name: namespaces the topics and protocols. 1 to 64 characters of `[A-Za-z0-9._-]`.
    pub chain_id: String,
    /// Largest message on the blocks topic and largest range response.
    pub max_block_bytes: usize,
    /// Largest message on the txs topic (a UDP packet: 1232 bytes). At least 100.
    pub max_tx_bytes: usize,
    /// Bound of each delivery channel (txs, blocks, ranges, requests) and of the command queue
    /// into the swarm (a publish over it errors); drops are counted.
    pub inbound_queue: usize,
    /// Bound of messages waiting for validation; over it a message is ignored and counted.
    pub validate_queue: usize,
    /// Threads running the [`Handler`] (at least 1).
    pub validation_threads: usize,
    /// Most connected peers; connections above it are closed (bootstrap peers excepted).
    pub max_peers: usize,
    /// Most concurrent range requests served to one peer.
    pub max_requests_per_peer: usize,
    /// A served request not answered by the node within this time fails for the asker.
    pub reply_timeout: Duration,
    /// How long an outbound range or snapshot request may take before it fails.
    pub request_timeout: Duration,
    /// Largest snapshot response (tag 0 payload), sent or received; 1 byte to 256 MiB.
    pub max_snapshot_bytes: usize,
    /// Most concurrent snapshot requests served to one peer; more are answered "busy".
    pub max_snapshot_requests_per_peer: usize,
    /// How long a penalized peer stays banned.
    pub ban_duration: Duration,
}

impl GossipConfig {
    /// A configuration with sane defaults: no bootstrap peers, 4 MiB blocks, 1232-byte
    /// transactions, 4,096-entry queues, 2 validation threads, 64 peers, 4 served range requests
    /// per peer, 5 s reply timeout, 10 s request timeout, 60 s bans, 4 MiB + 64 KiB snapshot
    /// responses (a 4 MiB chunk and its framing), 2 served snapshot requests per peer.
    pub fn new(listen: SocketAddr, secret: [u8; 32], chain_id: impl Into<String>) -> Self {
        GossipConfig {
            listen,
            bootstrap: Vec::new(),
            secret,
            chain_id: chain_id.into(),
            max_block_bytes: 4 << 20,
            max_tx_bytes: 1232,
            inbound_queue: 4096,
            validate_queue: 4096,
            validation_threads: 2,
            max_peers: 64,
            max_requests_per_peer: 4,
            reply_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            ban_duration: Duration::from_secs(60),
            max_snapshot_bytes: (4 << 20) + (64 << 10),
            max_snapshot_requests_per_peer: 2,
        }
    }

    /// The blocks topic name, `bastion/<chain>/blocks`.
    pub fn blocks_topic(&self) -> String {
        format!("bastion/{}/blocks", self.chain_id)
    }

    /// The txs topic name, `bastion/<chain>/txs`.
    pub fn txs_topic(&self) -> String {
        format!("bastion/{}/txs", self.chain_id)
    }

    /// The range protocol name, `/bastion/<chain>/blocks/1`.
    pub fn range_protocol(&self) -> String {
        format!("/bastion/{}/blocks/1", self.chain_id)
    }

    /// The snapshot protocol name, `/bastion/<chain>/snapshot/1`.
    pub fn snapshot_protocol(&self) -> String {
        format!("/bastion/{}/snapshot/1", self.chain_id)
    }

    fn validate(&self) -> Result<(), String> {
        if self.chain_id.is_empty()
            || self.chain_id.len() > 64
            || !self
                .chain_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return Err(format!(
                "gossip.chain_id {:?}: must be 1 to 64 characters of [A-Za-z0-9._-]",
                self.chain_id
            ));
        }
        if self.max_tx_bytes < 100 {
            return Err(format!(
                "gossip.max_tx_bytes {} is under 100 (gossipsub's minimum)",
                self.max_tx_bytes
            ));
        }
        if self.max_block_bytes < 100 || self.max_block_bytes > 256 << 20 {
            return Err(format!(
                "gossip.max_block_bytes {} must be between 100 and 256 MiB",
                self.max_block_bytes
            ));
        }
        if self.max_snapshot_bytes == 0 || self.max_snapshot_bytes > 256 << 20 {
            return Err(format!(
                "gossip.max_snapshot_bytes {} must be between 1 byte and 256 MiB",
                self.max_snapshot_bytes
            ));
        }
        for (name, v) in [
            ("inbound_queue", self.inbound_queue),
            ("validate_queue", self.validate_queue),
            ("validation_threads", self.validation_threads),
            ("max_peers", self.max_peers),
            ("max_requests_per_peer", self.max_requests_per_peer),
            ("max_snapshot_requests_per_peer", self.max_snapshot_requests_per_peer),
        ] {
            if v == 0 {
                return Err(format!("gossip.{name} must be at least 1"));
            }
        }
        if self.validation_threads > 64 {
            return Err(format!("gossip.validation_threads {} is over 64", self.validation_threads));
        }
        for (name, v) in [("reply_timeout", self.reply_timeout), ("request_timeout", self.request_timeout)] {
            if v.is_zero() {
                return Err(format!("gossip.{name} must be positive"));
            }
        }
        Ok(())
    }
}

/// The node's judgement of a gossiped message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Verdict {
    /// Valid: deliver it to the node and forward it.
    Accept,
    /// Not forwarded, not delivered, no penalty (e.g. stale, or already known).
    Ignore,
    /// Invalid: not forwarded, and the peer that sent it loses score (gossipsub P4).
    Reject,
}

/// The node's validation of gossiped messages. Called on validation threads, never on the
/// swarm's; keep it bounded in time.
pub trait Handler: Send + Sync + 'static {
    /// Judges one transaction packet from the txs topic.
    fn validate_tx(&self, packet: &[u8]) -> Verdict;
    /// Judges one message from the blocks topic.
    fn validate_block(&self, message: &[u8]) -> Verdict;
}

/// An accepted block message and the peer that sent it to us.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// Peer id (base58) of the propagation source.
    pub peer: String,
    /// The message bytes.
    pub data: Vec<u8>,
}

/// The error of a [`RangeAnswer`] whose peer answered that it does not hold the range (pruned
/// below it, or not there yet), as opposed to a timeout, a closed stream or a refusal.
pub const UNAVAILABLE: &str = "unavailable";

/// The answer to [`Gossip::request_range`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeAnswer {
    /// The peer asked (base58), empty when no peer could be asked.
    pub peer: String,
    /// First height asked.
    pub from: u64,
    /// Last height asked.
    pub to: u64,
    /// The peer's bytes, or why there are none ("unavailable", a timeout, a closed stream...).
    pub data: Result<Vec<u8>, String>,
}

/// A range request from a peer, to be answered by the node through `reply`.
#[derive(Debug)]
pub struct RangeRequest {
    /// Peer id (base58) of the asker.
    pub peer: String,
    /// First height asked.
    pub from: u64,
    /// Last height asked.
    pub to: u64,
    /// Answers the request (once).
    pub reply: Replier,
}

/// The answer to [`Gossip::ask_snapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotAnswer {
    /// The id [`Gossip::ask_snapshot`] returned.
    pub id: u64,
    /// The peer asked (base58).
    pub peer: String,
    /// The peer's bytes, or why there are none: "unavailable", "busy" (the peer serves too many
    /// of our requests: try later or elsewhere), "peer ... is not connected", a timeout, a closed
    /// stream...
    pub data: Result<Vec<u8>, String>,
}

/// A snapshot request from a peer, to be answered by the node through `reply`
/// ([`Replier::send`] with `Some(bytes)`, at most `max_snapshot_bytes`, or `None` for
/// "unavailable").
#[derive(Debug)]
pub struct SnapshotRequest {
    /// Peer id (base58) of the asker.
    pub peer: String,
    /// The request bytes (at most [`SNAPSHOT_REQUEST_MAX`]), opaque to this crate.
    pub data: Vec<u8>,
    /// Answers the request (once).
    pub reply: Replier,
}

pub(crate) enum ReplyMsg {
    Data(Vec<u8>),
    Unavailable,
    Dropped,
}

/// Answers one [`RangeRequest`] or [`SnapshotRequest`]. Dropping it without sending fails the
/// request for the asker.
#[derive(Debug)]
pub struct Replier {
    id: u64,
    max_bytes: usize,
    /// What is answered and the name of its limit, for error texts: ("range", "max_block_bytes")
    /// or ("snapshot", "max_snapshot_bytes").
    what: (&'static str, &'static str),
    tx: Option<tokio::sync::mpsc::UnboundedSender<(u64, ReplyMsg)>>,
}

impl std::fmt::Debug for ReplyMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplyMsg::Data(d) => write!(f, "Data({} bytes)", d.len()),
            ReplyMsg::Unavailable => write!(f, "Unavailable"),
            ReplyMsg::Dropped => write!(f, "Dropped"),
        }
    }
}

impl Replier {
    /// Sends the answer: `Some(bytes)` (at most `max_block_bytes` for a range,
    /// `max_snapshot_bytes` for a snapshot) or `None` for "unavailable". Errors when the bytes are
    /// over the limit (the asker then gets "unavailable") or the network has stopped. The channel
    /// of replies is bounded by the pending requests (`max_requests_per_peer` plus
    /// `max_snapshot_requests_per_peer` per peer).
    pub fn send(mut self, data: Option<Vec<u8>>) -> Result<(), String> {
        let Some(tx) = self.tx.take() else {
            return Err("replier already used".into());
        };
        let (msg, res) = match data {
            Some(d) if d.len() > self.max_bytes => (
                ReplyMsg::Unavailable,
                Err(format!(
                    "{} answer of {} bytes is over {} ({}); sent \"unavailable\"",
                    self.what.0,
                    d.len(),
                    self.what.1,
                    self.max_bytes
                )),
            ),
            Some(d) => (ReplyMsg::Data(d), Ok(())),
            None => (ReplyMsg::Unavailable, Ok(())),
        };
        tx.send((self.id, msg)).map_err(|_| "gossip network stopped".to_string())?;
        res
    }
}

impl Drop for Replier {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send((self.id, ReplyMsg::Dropped));
        }
    }
}

/// Counters of one topic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TopicStats {
    /// Messages this node published (sent to at least one peer).
    pub published: u64,
    /// Publishes that reached no peer (none subscribed yet); not retried.
    pub published_no_peers: u64,
    /// Publishes refused by gossipsub (e.g. queue full) or too large.
    pub publish_failed: u64,
    /// Messages received from peers (gossipsub already drops duplicates before this).
    pub received: u64,
    /// Messages the handler accepted.
    pub accepted: u64,
    /// Messages the handler rejected.
    pub rejected: u64,
    /// Messages the handler ignored.
    pub ignored: u64,
    /// Publishes or deliveries of an id seen before (own publishes coming back included).
    pub duplicates: u64,
    /// Accepted messages dropped because the delivery channel was full.
    pub dropped_inbound: u64,
    /// Messages ignored because the validation queue was full.
    pub dropped_validate: u64,
}

/// Counters of the snapshot protocol.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SnapshotStats {
    /// Snapshot requests this node asked ([`Gossip::ask_snapshot`] calls that returned an id).
    pub asked: u64,
    /// Answers with data received.
    pub answered: u64,
    /// Answers without data: "unavailable", "busy", timeouts, closed streams, peer not connected.
    pub failed: u64,
    /// Answers dropped because the snapshot_answers channel was full.
    pub answers_dropped: u64,
    /// Requests of peers this node answered with data.
    pub served: u64,
    /// Bytes of those answers.
    pub served_bytes: u64,
    /// Requests answered "busy" because the peer had `max_snapshot_requests_per_peer` in flight.
    pub refused_busy: u64,
    /// Requests this node answered "unavailable" (the node said so, or its bytes were over
    /// `max_snapshot_bytes`).
    pub unavailable: u64,
    /// Requests the node did not answer within `reply_timeout` (or whose replier it dropped).
    pub timed_out: u64,
    /// Requests not handed to the node: the snapshot_requests channel was full (answered
    /// "busy") or the peer is banned (not answered).
    pub requests_dropped: u64,
}

/// A snapshot of the network's counters. Serializes as JSON for `/v1/status`-like output.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct GossipStats {
    /// Connected peers now.
    pub peers: u64,
    /// The txs topic.
    pub txs: TopicStats,
    /// The blocks topic.
    pub blocks: TopicStats,
    /// Range requests this node sent.
    pub ranges_requested: u64,
    /// Range requests answered with data.
    pub ranges_answered: u64,
    /// Range requests that failed (unavailable, timeout, closed, no peer).
    pub ranges_failed: u64,
    /// Answers dropped because the ranges channel was full.
    pub ranges_dropped: u64,
    /// Range requests served with data.
    pub requests_served: u64,
    /// Range requests answered "unavailable".
    pub requests_unavailable: u64,
    /// Range requests refused (too many from one peer, requests channel full, bad range).
    pub requests_refused: u64,
    /// Range requests the node did not answer in time (or dropped the replier).
    pub requests_timed_out: u64,
    /// Penalties by reason (see [`Gossip::penalize`]).
    pub penalties: BTreeMap<String, u64>,
    /// Connections closed because the peer was banned.
    pub banned_connections: u64,
    /// The snapshot protocol.
    pub snapshots: SnapshotStats,
}

#[derive(Default)]
pub(crate) struct TopicCounters {
    published: AtomicU64,
    published_no_peers: AtomicU64,
    publish_failed: AtomicU64,
    received: AtomicU64,
    accepted: AtomicU64,
    rejected: AtomicU64,
    ignored: AtomicU64,
    duplicates: AtomicU64,
    dropped_inbound: AtomicU64,
    dropped_validate: AtomicU64,
}

impl TopicCounters {
    fn snapshot(&self) -> TopicStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TopicStats {
            published: g(&self.published),
            published_no_peers: g(&self.published_no_peers),
            publish_failed: g(&self.publish_failed),
            received: g(&self.received),
            accepted: g(&self.accepted),
            rejected: g(&self.rejected),
            ignored: g(&self.ignored),
            duplicates: g(&self.duplicates),
            dropped_inbound: g(&self.dropped_inbound),
            dropped_validate: g(&self.dropped_validate),
        }
    }
}

#[derive(Default)]
pub(crate) struct SnapshotCounters {
    asked: AtomicU64,
    answered: AtomicU64,
    failed: AtomicU64,
    answers_dropped: AtomicU64,
    served: AtomicU64,
    served_bytes: AtomicU64,
    refused_busy: AtomicU64,
    unavailable: AtomicU64,
    timed_out: AtomicU64,
    requests_dropped: AtomicU64,
}

impl SnapshotCounters {
    fn snapshot(&self) -> SnapshotStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SnapshotStats {
            asked: g(&self.asked),
            answered: g(&self.answered),
            failed: g(&self.failed),
            answers_dropped: g(&self.answers_dropped),
            served: g(&self.served),
            served_bytes: g(&self.served_bytes),
            refused_busy: g(&self.refused_busy),
            unavailable: g(&self.unavailable),
            timed_out: g(&self.timed_out),
            requests_dropped: g(&self.requests_dropped),
        }
    }
}

#[derive(Default)]
pub(crate) struct Counters {
    peers: AtomicU64,
    txs: TopicCounters,
    blocks: TopicCounters,
    ranges_requested: AtomicU64,
    ranges_answered: AtomicU64,
    ranges_failed: AtomicU64,
    ranges_dropped: AtomicU64,
    requests_served: AtomicU64,
    requests_unavailable: AtomicU64,
    requests_refused: AtomicU64,
    requests_timed_out: AtomicU64,
    penalties: std::sync::Mutex<BTreeMap<String, u64>>,
    banned_connections: AtomicU64,
    snapshots: SnapshotCounters,
    listen: std::sync::Mutex<Vec<String>>,
}

pub(crate) fn inc(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// Which topic a message belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Tx,
    Block,
}

impl Counters {
    fn topic(&self, kind: Kind) -> &TopicCounters {
        match kind {
            Kind::Tx => &self.txs,
            Kind::Block => &self.blocks,
        }
    }
}

pub(crate) enum Command {
    Publish(Kind, Vec<u8>),
    RequestRange(u64, u64),
    AskSnapshot { id: u64, peer: libp2p::PeerId, request: Vec<u8> },
    Penalize(libp2p::PeerId, String),
    PeerScore(libp2p::PeerId, crossbeam_channel::Sender<Option<f64>>),
    ConnectedPeers(crossbeam_channel::Sender<Vec<String>>),
}

/// A running public network node. Dropping it stops it (as [`Gossip::stop`]).
pub struct Gossip {
    peer_id: String,
    max_block_bytes: usize,
    max_tx_bytes: usize,
    counters: Arc<Counters>,
    commands: tokio::sync::mpsc::Sender<Command>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
    txs: crossbeam_channel::Receiver<Vec<u8>>,
    blocks: crossbeam_channel::Receiver<Received>,
    ranges: crossbeam_channel::Receiver<RangeAnswer>,
    requests: crossbeam_channel::Receiver<RangeRequest>,
    snapshot_answers: crossbeam_channel::Receiver<SnapshotAnswer>,
    snapshot_requests: crossbeam_channel::Receiver<SnapshotRequest>,
    /// The id the next [`Gossip::ask_snapshot`] returns.
    next_snapshot_id: AtomicU64,
}

impl std::fmt::Debug for Gossip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gossip").field("peer_id", &self.peer_id).finish_non_exhaustive()
    }
}

impl Gossip {
    /// Starts the network on its own threads: binds the listener (returns once bound), dials the
    /// bootstrap peers, subscribes to both topics. Errors name the bad configuration field.
    pub fn start(cfg: GossipConfig, handler: Arc<dyn Handler>) -> Result<Gossip, String> {
        cfg.validate()?;
        swarm::start(cfg, handler)
    }

    /// This node's peer id (base58).
    pub fn peer_id(&self) -> String {
        self.peer_id.clone()
    }

    /// The bound listen multiaddrs, each ending in `/p2p/<peer id>`.
    pub fn listen_addrs(&self) -> Vec<String> {
        self.counters.listen.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn command(&self, cmd: Command) -> Result<(), String> {
        self.commands.try_send(cmd).map_err(|e| match e {
            tokio::sync::mpsc::error::TrySendError::Full(_) => {
                "gossip command queue full (inbound_queue entries): retry later".to_string()
            }
            tokio::sync::mpsc::error::TrySendError::Closed(_) => "gossip network stopped".into(),
        })
    }

    fn publish(&self, kind: Kind, data: Vec<u8>, max: usize, what: &str) -> Result<(), String> {
        if data.len() > max {
            inc(&self.counters.topic(kind).publish_failed);
            return Err(format!(
                "{what} of {} bytes is over {} ({max})",
                data.len(),
                match kind {
                    Kind::Tx => "max_tx_bytes",
                    Kind::Block => "max_block_bytes",
                }
            ));
        }
        let r = self.command(Command::Publish(kind, data));
        if r.is_err() {
            inc(&self.counters.topic(kind).publish_failed);
        }
        r
    }

    /// Publishes a transaction packet on the txs topic. Errors when it is over `max_tx_bytes`
    /// or the command queue is full; reaching no peer is counted (`published_no_peers`), not an
    /// error.
    pub fn publish_tx(&self, packet: Vec<u8>) -> Result<(), String> {
        self.publish(Kind::Tx, packet, self.max_tx_bytes, "transaction")
    }

    /// Publishes a block message on the blocks topic; as [`Gossip::publish_tx`] with
    /// `max_block_bytes`.
    pub fn publish_block(&self, message: Vec<u8>) -> Result<(), String> {
        self.publish(Kind::Block, message, self.max_block_bytes, "block message")
    }

    /// Accepted transaction packets from peers (never this node's own publishes). A crossbeam
    /// channel bounded by `inbound_queue`.
    pub fn txs(&self) -> &crossbeam_channel::Receiver<Vec<u8>> {
        &self.txs
    }

    /// Accepted block messages from peers, with the peer that sent each. Bounded by
    /// `inbound_queue`.
    pub fn blocks(&self) -> &crossbeam_channel::Receiver<Received> {
        &self.blocks
    }

    /// Asks one connected peer (best gossipsub score, rotating between equals) for heights
    /// `from..=to`; the answer arrives on [`Gossip::ranges`]. Errors when `from > to`, when no
    /// peer is connected, or when the command queue is full.
    pub fn request_range(&self, from: u64, to: u64) -> Result<(), String> {
        if from > to {
            return Err(format!("range request from {from} is above to {to}"));
        }
        if self.counters.peers.load(Ordering::Relaxed) == 0 {
            return Err("no connected peer to ask for a range".into());
        }
        self.command(Command::RequestRange(from, to))
    }

    /// Answers to [`Gossip::request_range`]. Bounded by `inbound_queue`.
    pub fn ranges(&self) -> &crossbeam_channel::Receiver<RangeAnswer> {
        &self.ranges
    }

    /// Range requests from peers, to answer from the node's store. Bounded by `inbound_queue`.
    pub fn requests(&self) -> &crossbeam_channel::Receiver<RangeRequest> {
        &self.requests
    }

    /// Sends `request` (at most [`SNAPSHOT_REQUEST_MAX`] bytes) to `peer` (base58 peer id of a
    /// connected peer) on the snapshot protocol; the answer comes on
    /// [`Gossip::snapshot_answers`] with the returned id. Errors when the request is too big,
    /// the peer id does not parse, or the command queue is full / the network stopped. A peer
    /// that is not connected (or is banned) gets an answer with `Err`.
    pub fn ask_snapshot(&self, peer: &str, request: Vec<u8>) -> Result<u64, String> {
        if request.len() > SNAPSHOT_REQUEST_MAX {
            return Err(format!(
                "snapshot request of {} bytes is over SNAPSHOT_REQUEST_MAX ({SNAPSHOT_REQUEST_MAX})",
                request.len()
            ));
        }
        let peer = peer
            .parse::<libp2p::PeerId>()
            .map_err(|e| format!("snapshot peer {peer:?} is not a peer id: {e}"))?;
        let id = self.next_snapshot_id.fetch_add(1, Ordering::Relaxed);
        self.command(Command::AskSnapshot { id, peer, request })?;
        inc(&self.counters.snapshots.asked);
        Ok(id)
    }

    /// Answers to [`Gossip::ask_snapshot`], each with the id it returned. Bounded by
    /// `inbound_queue`; drops are counted (`snapshots.answers_dropped`).
    pub fn snapshot_answers(&self) -> &crossbeam_channel::Receiver<SnapshotAnswer> {
        &self.snapshot_answers
    }

    /// Snapshot requests from peers, to answer through their [`Replier`]. Bounded by
    /// `inbound_queue` (a request finding it full is answered "busy").
    pub fn snapshot_requests(&self) -> &crossbeam_channel::Receiver<SnapshotRequest> {
        &self.snapshot_requests
    }

    /// Punishes a peer for a bad range answer (or any misbehaviour the node sees): counts `why`,
    /// sets its application score to -100 (under the graylist threshold), disconnects it and
    /// bans it for `ban_duration`. An unparsable peer id is counted as "bad peer id".
    pub fn penalize(&self, peer: &str, why: &str) {
        match peer.parse::<libp2p::PeerId>() {
            Ok(p) => {
                let _ = self.command(Command::Penalize(p, why.to_string()));
            }
            Err(_) => swarm::count_penalty(&self.counters, "bad peer id"),
        }
    }

    /// The gossipsub score of a connected peer (None: unknown peer or network stopped).
    pub fn peer_score(&self, peer: &str) -> Option<f64> {
        let p = peer.parse::<libp2p::PeerId>().ok()?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.command(Command::PeerScore(p, tx)).ok()?;
        rx.recv_timeout(Duration::from_secs(2)).ok().flatten()
    }

    /// Peer ids (base58) of the connected peers.
    pub fn connected_peers(&self) -> Vec<String> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        if self.command(Command::ConnectedPeers(tx)).is_err() {
            return Vec::new();
        }
        rx.recv_timeout(Duration::from_secs(2)).unwrap_or_default()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> GossipStats {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        GossipStats {
            peers: g(&c.peers),
            txs: c.txs.snapshot(),
            blocks: c.blocks.snapshot(),
            ranges_requested: g(&c.ranges_requested),
            ranges_answered: g(&c.ranges_answered),
            ranges_failed: g(&c.ranges_failed),
            ranges_dropped: g(&c.ranges_dropped),
            requests_served: g(&c.requests_served),
            requests_unavailable: g(&c.requests_unavailable),
            requests_refused: g(&c.requests_refused),
            requests_timed_out: g(&c.requests_timed_out),
            penalties: c.penalties.lock().map(|p| p.clone()).unwrap_or_default(),
            banned_connections: g(&c.banned_connections),
            snapshots: c.snapshots.snapshot(),
        }
    }

    /// Stops the network: closes connections and joins its threads.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Gossip {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
