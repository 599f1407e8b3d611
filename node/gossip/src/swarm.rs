//! The swarm thread: one tokio current-thread runtime driving gossipsub, identify and the range
//! and snapshot protocols, plus the validation threads.

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageId, TopicHash};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{DialError, NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, identify, identity, noise, tcp, yamux};

use crate::codec::{RangeCodec, RangeReq, RangeResp, SnapshotCodec, SnapshotResp};
use crate::{
    Command, Counters, Gossip, GossipConfig, Handler, Kind, RangeAnswer, RangeRequest, Received, Replier,
    ReplyMsg, SnapshotAnswer, SnapshotRequest, Verdict, inc,
};

/// Distinct penalty reasons kept; further ones count as "other".
const MAX_PENALTY_REASONS: usize = 64;
/// Ids remembered to suppress own publishes coming back and count duplicates.
const SEEN_CAPACITY: usize = 1 << 16;
/// Listen addresses of a peer recorded from identify.
const MAX_IDENTIFY_ADDRS: usize = 8;
/// Application score given by a penalty (weight 1): under the graylist threshold.
const PENALTY_SCORE: f64 = -100.0;
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Protobuf framing of one gossipsub message beyond its data: tags, lengths and the topic
/// name (bounded by the chain id's length, which `start` checks).
const TOPIC_OVERHEAD: usize = 256;
/// Connections outside the gossipsub mesh still carry flood publishes and range requests: keep
/// them (the number is bounded by `max_peers`).
const IDLE_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
const TICK: Duration = Duration::from_millis(250);
/// Snapshot substreams per connection beyond our own and the served requests: room for "busy"
/// answers being written while `max_snapshot_requests_per_peer` requests are held.
const SNAPSHOT_STREAMS_SLACK: usize = 4;

#[derive(NetworkBehaviour)]
struct Behaviour {
    gossipsub: gossipsub::Behaviour,
    identify: identify::Behaviour,
    range: request_response::Behaviour<RangeCodec>,
    snapshot: request_response::Behaviour<SnapshotCodec>,
}

pub(crate) fn count_penalty(counters: &Counters, why: &str) {
    if let Ok(mut p) = counters.penalties.lock() {
        let key = if p.contains_key(why) || p.len() < MAX_PENALTY_REASONS {
            why.to_string()
        } else {
            "other".to_string()
        };
        *p.entry(key).or_insert(0) += 1;
    }
}

/// The content id: BLAKE3 of the data.
pub(crate) fn content_id(data: &[u8]) -> MessageId {
    MessageId::from(blake3::hash(data).as_bytes().to_vec())
}

/// Scoring parameters; the numbers are documented in the crate docs.
fn score_params(blocks: &TopicHash, txs: &TopicHash) -> gossipsub::PeerScoreParams {
    let ten_min = Duration::from_secs(600);
    let topic = |weight: f64| gossipsub::TopicScoreParams {
        topic_weight: weight,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 300.0,
        first_message_deliveries_weight: 1.0,
        first_message_deliveries_decay: gossipsub::score_parameter_decay(ten_min),
        first_message_deliveries_cap: 20.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_message_deliveries_decay: 0.5,
        mesh_message_deliveries_cap: 100.0,
        mesh_message_deliveries_threshold: 20.0,
        mesh_message_deliveries_window: Duration::from_millis(10),
        mesh_message_deliveries_activation: Duration::from_secs(5),
        mesh_failure_penalty_weight: 0.0,
        mesh_failure_penalty_decay: 0.5,
        invalid_message_deliveries_weight: -25.0,
        invalid_message_deliveries_decay: gossipsub::score_parameter_decay(ten_min),
    };
    let mut params = gossipsub::PeerScoreParams {
        topic_score_cap: 50.0,
        app_specific_weight: 1.0,
        ip_colocation_factor_weight: -5.0,
        ip_colocation_factor_threshold: 10.0,
        ..Default::default()
    };
    params.ip_colocation_factor_whitelist.insert([127, 0, 0, 1].into());
    params.ip_colocation_factor_whitelist.insert(std::net::Ipv6Addr::LOCALHOST.into());
    params.topics.insert(blocks.clone(), topic(1.0));
    params.topics.insert(txs.clone(), topic(0.5));
    params
}

fn score_thresholds() -> gossipsub::PeerScoreThresholds {
    gossipsub::PeerScoreThresholds {
        gossip_threshold: -20.0,
        publish_threshold: -40.0,
        graylist_threshold: -80.0,
        accept_px_threshold: 10.0,
        opportunistic_graft_threshold: 5.0,
    }
}

/// Gossipsub mesh degree (libp2p's default 6, low 5, high 12): each message goes to about
/// `MESH_N` peers per hop. Lower than the default because every node here validates (and a
/// validator verifies a signature of) every transaction it receives, duplicates included up to
/// the seen-cache check, and the network's diameter stays small at these sizes.
const MESH_N: usize = 4;
const MESH_N_LOW: usize = 3;
const MESH_N_HIGH: usize = 6;

fn build_gossipsub(
    cfg: &GossipConfig,
    blocks: &IdentTopic,
    txs: &IdentTopic,
) -> Result<gossipsub::Behaviour, String> {
    let frame = cfg.max_block_bytes.max(cfg.max_tx_bytes) + 4096;
    let config = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .validate_messages()
        .message_id_fn(|m: &gossipsub::Message| content_id(&m.data))
        .max_transmit_size(frame)
        // Gossipsub checks the encoded message (data, topic, protobuf tags) on receive and the
        // data alone on publish; the exact data limits are enforced in `Gossip::publish_*` and
        // `Node::on_message`.
        .max_transmit_size_for_topic(cfg.max_block_bytes + TOPIC_OVERHEAD, blocks.hash())
        .max_transmit_size_for_topic(cfg.max_tx_bytes + TOPIC_OVERHEAD, txs.hash())
        .duplicate_cache_time(Duration::from_secs(120))
        // A publisher sends to its mesh, not to every peer (flood publishing sends each
        // transaction to every connected peer, which then forward it to theirs: on a small,
        // fully connected network most of that traffic is duplicates, each decrypted and
        // decoded before it is dropped).
        .flood_publish(false)
        .mesh_n(MESH_N)
        .mesh_n_low(MESH_N_LOW)
        .mesh_n_high(MESH_N_HIGH)
        .mesh_outbound_min(1)
        .build()
        .map_err(|e| format!("gossip: gossipsub configuration refused: {e}"))?;
    let mut g = gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, config)
        .map_err(|e| format!("gossip: gossipsub refused: {e}"))?;
    g.with_peer_score(score_params(&blocks.hash(), &txs.hash()), score_thresholds())
        .map_err(|e| format!("gossip: peer score parameters refused: {e}"))?;
    g.subscribe(blocks).map_err(|e| format!("gossip: subscribe to {blocks}: {e:?}"))?;
    g.subscribe(txs).map_err(|e| format!("gossip: subscribe to {txs}: {e:?}"))?;
    Ok(g)
}

fn strip_p2p(addr: &Multiaddr) -> Multiaddr {
    addr.iter().filter(|p| !matches!(p, Protocol::P2p(_))).collect()
}

struct Boot {
    addr: Multiaddr,
    peer: Option<PeerId>,
    is_self: bool,
    next_dial: Instant,
    backoff: Duration,
}

struct Job {
    id: MessageId,
    source: PeerId,
    kind: Kind,
    data: Vec<u8>,
}

struct Judged {
    job: Job,
    verdict: Verdict,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Seen {
    Published,
    /// Received and handed to the validation threads, no verdict yet: gossipsub already holds
    /// it in its duplicate cache, so publishing the same bytes now would only be refused (with a
    /// warning per message in gossipsub's log).
    Validating,
    Delivered,
}

/// A bounded FIFO set of message ids.
struct SeenCache {
    map: HashMap<MessageId, Seen>,
    order: VecDeque<MessageId>,
}

impl SeenCache {
    fn get(&self, id: &MessageId) -> Option<Seen> {
        self.map.get(id).copied()
    }
    fn insert(&mut self, id: MessageId, s: Seen) {
        if self.map.insert(id.clone(), s).is_none() {
            self.order.push_back(id);
            while self.order.len() > SEEN_CAPACITY {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }
}

struct PendingIn<R> {
    channel: ResponseChannel<R>,
    peer: PeerId,
    deadline: Instant,
}

/// Served requests of one protocol waiting for the node's answer, and how many per peer.
struct Pending<R> {
    entries: HashMap<u64, PendingIn<R>>,
    per_peer: HashMap<PeerId, usize>,
}

impl<R> Pending<R> {
    fn new() -> Self {
        Pending { entries: HashMap::new(), per_peer: HashMap::new() }
    }

    fn in_flight(&self, peer: &PeerId) -> usize {
        self.per_peer.get(peer).copied().unwrap_or(0)
    }

    fn insert(&mut self, id: u64, entry: PendingIn<R>) {
        *self.per_peer.entry(entry.peer).or_insert(0) += 1;
        self.entries.insert(id, entry);
    }

    fn remove(&mut self, id: u64) -> Option<PendingIn<R>> {
        let entry = self.entries.remove(&id)?;
        if let Some(n) = self.per_peer.get_mut(&entry.peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_peer.remove(&entry.peer);
            }
        }
        Some(entry)
    }

    /// Removes the entries whose deadline passed; returns how many.
    fn expire(&mut self, now: Instant) -> u64 {
        let expired: Vec<u64> =
            self.entries.iter().filter(|(_, p)| p.deadline <= now).map(|(id, _)| *id).collect();
        let mut n = 0;
        for id in expired {
            if self.remove(id).is_some() {
                n += 1;
            }
        }
        n
    }
}

struct Channels {
    txs: crossbeam_channel::Sender<Vec<u8>>,
    blocks: crossbeam_channel::Sender<Received>,
    ranges: crossbeam_channel::Sender<RangeAnswer>,
    requests: crossbeam_channel::Sender<RangeRequest>,
    snapshot_answers: crossbeam_channel::Sender<SnapshotAnswer>,
    snapshot_requests: crossbeam_channel::Sender<SnapshotRequest>,
}

struct Node {
    swarm: Swarm<Behaviour>,
    cfg: GossipConfig,
    local: PeerId,
    counters: Arc<Counters>,
    blocks_topic: IdentTopic,
    txs_topic: IdentTopic,
    jobs: crossbeam_channel::Sender<Job>,
    out: Channels,
    reply_tx: tokio::sync::mpsc::UnboundedSender<(u64, ReplyMsg)>,
    /// Served range requests; ids shared with `pending_snapshots` (one counter, `next_in`).
    pending_ranges: Pending<RangeResp>,
    pending_snapshots: Pending<SnapshotResp>,
    next_in: u64,
    outbound: HashMap<OutboundRequestId, (PeerId, u64, u64)>,
    /// Our snapshot requests in flight: libp2p's id to the id `ask_snapshot` returned. Each
    /// ends in exactly one response or outbound failure event, which removes it.
    snapshot_outbound: HashMap<OutboundRequestId, u64>,
    seen: SeenCache,
    bans: HashMap<PeerId, Instant>,
    boot: Vec<Boot>,
    rotate: usize,
}

pub(crate) fn start(cfg: GossipConfig, handler: Arc<dyn Handler>) -> Result<Gossip, String> {
    let keypair = identity::Keypair::ed25519_from_bytes(cfg.secret)
        .map_err(|e| format!("gossip.secret is not an ed25519 seed: {e}"))?;
    let local = keypair.public().to_peer_id();
    let mut boot = Vec::with_capacity(cfg.bootstrap.len());
    let now = Instant::now();
    for (i, s) in cfg.bootstrap.iter().enumerate() {
        let addr = Multiaddr::from_str(s)
            .map_err(|e| format!("gossip.bootstrap[{i}] {s:?} is not a multiaddr: {e}"))?;
        if !addr.iter().any(|p| matches!(p, Protocol::Tcp(_))) {
            return Err(format!("gossip.bootstrap[{i}] {s:?} has no /tcp/<port> (only TCP is spoken)"));
        }
        let peer = addr.iter().find_map(|p| match p {
            Protocol::P2p(id) => Some(id),
            _ => None,
        });
        boot.push(Boot {
            addr: strip_p2p(&addr),
            is_self: peer == Some(local),
            peer,
            next_dial: now,
            backoff: BACKOFF_MIN,
        });
    }
    if cfg.listen.port() != 0 {
        // libp2p listens with SO_REUSEPORT, which would let two nodes share a port silently.
        std::net::TcpListener::bind(cfg.listen)
            .map_err(|e| format!("gossip.listen {}: cannot bind: {e}", cfg.listen))?;
    }
    let listen: Multiaddr = {
        let mut a = Multiaddr::empty();
        a.push(match cfg.listen.ip() {
            std::net::IpAddr::V4(ip) => Protocol::Ip4(ip),
            std::net::IpAddr::V6(ip) => Protocol::Ip6(ip),
        });
        a.push(Protocol::Tcp(cfg.listen.port()));
        a
    };

    let counters = Arc::new(Counters::default());
    let (cmd_tx, cmd_rx) = tokio::sync::mpsc::channel(cfg.inbound_queue);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let (job_tx, job_rx) = crossbeam_channel::bounded::<Job>(cfg.validate_queue);
    let (verdict_tx, verdict_rx) =
        tokio::sync::mpsc::channel::<Judged>(cfg.validate_queue + cfg.validation_threads);
    let (reply_tx, reply_rx) = tokio::sync::mpsc::unbounded_channel();
    let (txs_tx, txs_rx) = crossbeam_channel::bounded(cfg.inbound_queue);
    let (blocks_tx, blocks_rx) = crossbeam_channel::bounded(cfg.inbound_queue);
    let (ranges_tx, ranges_rx) = crossbeam_channel::bounded(cfg.inbound_queue);
    let (requests_tx, requests_rx) = crossbeam_channel::bounded(cfg.inbound_queue);
    let (snapshot_answers_tx, snapshot_answers_rx) = crossbeam_channel::bounded(cfg.inbound_queue);
    let (snapshot_requests_tx, snapshot_requests_rx) = crossbeam_channel::bounded(cfg.inbound_queue);

    let mut threads = Vec::new();
    for i in 0..cfg.validation_threads {
        let jobs = job_rx.clone();
        let verdicts = verdict_tx.clone();
        let handler = handler.clone();
        let t = std::thread::Builder::new()
            .name(format!("gossip-validate-{i}"))
            .spawn(move || {
                while let Ok(job) = jobs.recv() {
                    let verdict = std::panic::catch_unwind(AssertUnwindSafe(|| match job.kind {
                        Kind::Tx => handler.validate_tx(&job.data),
                        Kind::Block => handler.validate_block(&job.data),
                    }))
                    .unwrap_or(Verdict::Ignore);
                    if verdicts.blocking_send(Judged { job, verdict }).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| format!("gossip: cannot spawn a validation thread: {e}"))?;
        threads.push(t);
    }
    drop(verdict_tx);
    drop(job_rx);

    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<Result<(), String>>(1);
    let counters2 = counters.clone();
    let max_block_bytes = cfg.max_block_bytes;
    let max_tx_bytes = cfg.max_tx_bytes;
    let swarm_thread = std::thread::Builder::new()
        .name("gossip-swarm".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("gossip: tokio runtime: {e}")));
                    return;
                }
            };
            rt.block_on(async move {
                let blocks_topic = IdentTopic::new(cfg.blocks_topic());
                let txs_topic = IdentTopic::new(cfg.txs_topic());
                let built = build_swarm(&cfg, keypair, &blocks_topic, &txs_topic);
                let mut swarm = match built {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                if let Err(e) = swarm.listen_on(listen.clone()) {
                    let _ = ready_tx.send(Err(format!("gossip.listen {}: cannot listen: {e}", cfg.listen)));
                    return;
                }
                let mut node = Node {
                    swarm,
                    cfg,
                    local,
                    counters: counters2,
                    blocks_topic,
                    txs_topic,
                    jobs: job_tx,
                    out: Channels {
                        txs: txs_tx,
                        blocks: blocks_tx,
                        ranges: ranges_tx,
                        requests: requests_tx,
                        snapshot_answers: snapshot_answers_tx,
                        snapshot_requests: snapshot_requests_tx,
                    },
                    reply_tx,
                    pending_ranges: Pending::new(),
                    pending_snapshots: Pending::new(),
                    next_in: 0,
                    outbound: HashMap::new(),
                    snapshot_outbound: HashMap::new(),
                    seen: SeenCache { map: HashMap::new(), order: VecDeque::new() },
                    bans: HashMap::new(),
                    boot,
                    rotate: 0,
                };
                // Wait until bound.
                let deadline = tokio::time::sleep(Duration::from_secs(10));
                tokio::pin!(deadline);
                loop {
                    tokio::select! {
                        ev = node.swarm.select_next_some() => {
                            let bound = matches!(ev, SwarmEvent::NewListenAddr { .. });
                            if let SwarmEvent::ListenerClosed { reason: Err(e), .. }
                            | SwarmEvent::ListenerError { error: e, .. } = &ev
                            {
                                let _ = ready_tx.send(Err(format!(
                                    "gossip.listen {}: listener failed: {e}",
                                    node.cfg.listen
                                )));
                                return;
                            }
                            node.on_swarm_event(ev);
                            if bound {
                                break;
                            }
                        }
                        _ = &mut deadline => {
                            let _ = ready_tx.send(Err(format!(
                                "gossip.listen {}: not bound within 10 s",
                                node.cfg.listen
                            )));
                            return;
                        }
                    }
                }
                let _ = ready_tx.send(Ok(()));
                node.run(cmd_rx, verdict_rx, reply_rx, stop_rx).await;
            });
        })
        .map_err(|e| format!("gossip: cannot spawn the swarm thread: {e}"))?;
    threads.push(swarm_thread);

    let ready = ready_rx.recv().unwrap_or_else(|_| Err("gossip: the swarm thread ended during start".into()));
    let gossip = Gossip {
        peer_id: local.to_string(),
        max_block_bytes,
        max_tx_bytes,
        counters,
        commands: cmd_tx,
        shutdown: Some(stop_tx),
        threads,
        txs: txs_rx,
        blocks: blocks_rx,
        ranges: ranges_rx,
        requests: requests_rx,
        snapshot_answers: snapshot_answers_rx,
        snapshot_requests: snapshot_requests_rx,
        next_snapshot_id: std::sync::atomic::AtomicU64::new(1),
    };
    // On error, dropping `gossip` joins the threads (the swarm thread has returned).
    ready.map(|()| gossip)
}

fn build_swarm(
    cfg: &GossipConfig,
    keypair: identity::Keypair,
    blocks: &IdentTopic,
    txs: &IdentTopic,
) -> Result<Swarm<Behaviour>, String> {
    let gossipsub = build_gossipsub(cfg, blocks, txs)?;
    let identify = identify::Behaviour::new(
        identify::Config::new(format!("/bastion/{}/id/1", cfg.chain_id), keypair.public())
            .with_agent_version(format!("bastion/{}", env!("CARGO_PKG_VERSION")))
            .with_cache_size(256),
    );
    let protocol = StreamProtocol::try_from_owned(cfg.range_protocol())
        .map_err(|e| format!("gossip.chain_id gives a bad protocol name: {e}"))?;
    let range = request_response::Behaviour::with_codec(
        RangeCodec { max_response_bytes: cfg.max_block_bytes },
        [(protocol, ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(cfg.request_timeout)
            .with_max_concurrent_streams(cfg.max_requests_per_peer * cfg.max_peers.max(1)),
    );
    let protocol = StreamProtocol::try_from_owned(cfg.snapshot_protocol())
        .map_err(|e| format!("gossip.chain_id gives a bad protocol name: {e}"))?;
    let streams = cfg.max_snapshot_requests_per_peer.saturating_mul(2).saturating_add(SNAPSHOT_STREAMS_SLACK);
    let snapshot = request_response::Behaviour::with_codec(
        SnapshotCodec { max_response_bytes: cfg.max_snapshot_bytes },
        [(protocol, ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(cfg.request_timeout)
            .with_max_concurrent_streams(streams),
    );
    let behaviour = Behaviour { gossipsub, identify, range, snapshot };
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .map_err(|e| format!("gossip: TCP/noise/yamux transport: {e}"))?
        .with_behaviour(|_| behaviour)
        .map_err(|e| format!("gossip: behaviour: {e}"))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_TIMEOUT))
        .build();
    Ok(swarm)
}

impl Node {
    async fn run(
        &mut self,
        mut commands: tokio::sync::mpsc::Receiver<Command>,
        mut verdicts: tokio::sync::mpsc::Receiver<Judged>,
        mut replies: tokio::sync::mpsc::UnboundedReceiver<(u64, ReplyMsg)>,
        mut stop: tokio::sync::oneshot::Receiver<()>,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                ev = self.swarm.select_next_some() => self.on_swarm_event(ev),
                Some(cmd) = commands.recv() => self.on_command(cmd),
                Some(j) = verdicts.recv() => self.on_verdict(j),
                Some((id, msg)) = replies.recv() => self.on_reply(id, msg),
                _ = tick.tick() => self.on_tick(),
            }
        }
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for p in peers {
            let _ = self.swarm.disconnect_peer_id(p);
        }
        self.counters.peers.store(0, Ordering::Relaxed);
    }

    fn topic_limit(&self, kind: Kind) -> usize {
        match kind {
            Kind::Tx => self.cfg.max_tx_bytes,
            Kind::Block => self.cfg.max_block_bytes,
        }
    }

    fn update_peers(&self) {
        let n = self.swarm.connected_peers().count() as u64;
        self.counters.peers.store(n, Ordering::Relaxed);
    }

    fn is_bootstrap(&self, peer: &PeerId) -> bool {
        self.boot.iter().any(|b| b.peer.as_ref() == Some(peer))
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Publish(kind, data) => self.publish(kind, data),
            Command::RequestRange(from, to) => self.request_range(from, to),
            Command::AskSnapshot { id, peer, request } => self.ask_snapshot(id, peer, request),
            Command::Penalize(peer, why) => self.penalize(peer, &why),
            Command::PeerScore(peer, reply) => {
                let _ = reply.try_send(self.swarm.behaviour().gossipsub.peer_score(&peer));
            }
            Command::ConnectedPeers(reply) => {
                let peers = self.swarm.connected_peers().map(|p| p.to_string()).collect();
                let _ = reply.try_send(peers);
            }
        }
    }

    fn publish(&mut self, kind: Kind, data: Vec<u8>) {
        let c = self.counters.topic(kind);
        let id = content_id(&data);
        if self.seen.get(&id).is_some() {
            inc(&c.duplicates);
            return;
        }
        let topic = match kind {
            Kind::Tx => self.txs_topic.hash(),
            Kind::Block => self.blocks_topic.hash(),
        };
        match self.swarm.behaviour_mut().gossipsub.publish(topic, data) {
            Ok(_) => {
                inc(&c.published);
                self.seen.insert(id, Seen::Published);
            }
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {
                inc(&c.published_no_peers);
                self.seen.insert(id, Seen::Published);
            }
            Err(gossipsub::PublishError::Duplicate) => inc(&c.duplicates),
            Err(e) => {
                tracing::debug!(error = %e, "gossip publish failed");
                inc(&c.publish_failed);
            }
        }
    }

    fn on_message(&mut self, source: PeerId, id: MessageId, message: gossipsub::Message) {
        let kind = if message.topic == self.txs_topic.hash() {
            Kind::Tx
        } else if message.topic == self.blocks_topic.hash() {
            Kind::Block
        } else {
            self.report(&id, &source, MessageAcceptance::Ignore);
            return;
        };
        let c = self.counters.topic(kind);
        inc(&c.received);
        match self.seen.get(&id) {
            Some(Seen::Published) => {
                // Our own message coming back: valid by our own word, forward, don't deliver.
                inc(&c.duplicates);
                self.report(&id, &source, MessageAcceptance::Accept);
                return;
            }
            Some(Seen::Delivered) => {
                inc(&c.duplicates);
                self.report(&id, &source, MessageAcceptance::Ignore);
                return;
            }
            Some(Seen::Validating) | None => {}
        }
        if message.data.len() > self.topic_limit(kind) {
            inc(&c.rejected);
            self.report(&id, &source, MessageAcceptance::Reject);
            return;
        }
        self.seen.insert(id.clone(), Seen::Validating);
        let job = Job { id, source, kind, data: message.data };
        if let Err(e) = self.jobs.try_send(job) {
            let job = e.into_inner();
            inc(&c.dropped_validate);
            self.report(&job.id, &job.source, MessageAcceptance::Ignore);
        }
    }

    fn report(&mut self, id: &MessageId, source: &PeerId, acceptance: MessageAcceptance) {
        self.swarm.behaviour_mut().gossipsub.report_message_validation_result(id, source, acceptance);
    }

    fn on_verdict(&mut self, judged: Judged) {
        let Judged { job, verdict } = judged;
        let counters = self.counters.clone();
        let c = counters.topic(job.kind);
        match verdict {
            Verdict::Accept => {
                inc(&c.accepted);
                self.report(&job.id, &job.source, MessageAcceptance::Accept);
                if matches!(self.seen.get(&job.id), Some(Seen::Published | Seen::Delivered)) {
                    inc(&c.duplicates);
                    return;
                }
                self.seen.insert(job.id, Seen::Delivered);
                let full = match job.kind {
                    Kind::Tx => self.out.txs.try_send(job.data).is_err(),
                    Kind::Block => self
                        .out
                        .blocks
                        .try_send(Received { peer: job.source.to_string(), data: job.data })
                        .is_err(),
                };
                if full {
                    inc(&c.dropped_inbound);
                }
            }
            Verdict::Ignore => {
                inc(&c.ignored);
                self.report(&job.id, &job.source, MessageAcceptance::Ignore);
            }
            Verdict::Reject => {
                inc(&c.rejected);
                self.report(&job.id, &job.source, MessageAcceptance::Reject);
            }
        }
    }

    fn answer(&self, answer: RangeAnswer) {
        if answer.data.is_ok() {
            inc(&self.counters.ranges_answered);
        } else {
            inc(&self.counters.ranges_failed);
        }
        if self.out.ranges.try_send(answer).is_err() {
            inc(&self.counters.ranges_dropped);
        }
    }

    fn request_range(&mut self, from: u64, to: u64) {
        let gs = &self.swarm.behaviour().gossipsub;
        let mut peers: Vec<(f64, PeerId)> = self
            .swarm
            .connected_peers()
            .filter(|p| !self.bans.contains_key(p))
            .map(|p| (gs.peer_score(p).unwrap_or(0.0), *p))
            .collect();
        if peers.is_empty() {
            self.answer(RangeAnswer {
                peer: String::new(),
                from,
                to,
                data: Err("no connected peer to ask for a range".into()),
            });
            return;
        }
        let best = peers.iter().map(|(s, _)| *s).fold(f64::NEG_INFINITY, f64::max);
        // Equals: within one point of the best score.
        peers.retain(|(s, _)| *s >= best - 1.0);
        peers.sort_by_key(|p| p.1);
        self.rotate = self.rotate.wrapping_add(1);
        let peer = peers[self.rotate % peers.len()].1;
        let id = self.swarm.behaviour_mut().range.send_request(&peer, RangeReq { from, to });
        self.outbound.insert(id, (peer, from, to));
        inc(&self.counters.ranges_requested);
    }

    fn on_reply(&mut self, id: u64, msg: ReplyMsg) {
        if let Some(p) = self.pending_ranges.remove(id) {
            let resp = match msg {
                ReplyMsg::Data(d) => {
                    inc(&self.counters.requests_served);
                    RangeResp::Data(d)
                }
                ReplyMsg::Unavailable => {
                    inc(&self.counters.requests_unavailable);
                    RangeResp::Error(crate::UNAVAILABLE.into())
                }
                ReplyMsg::Dropped => {
                    inc(&self.counters.requests_timed_out);
                    return; // dropping the channel fails the request for the asker
                }
            };
            let _ = self.swarm.behaviour_mut().range.send_response(p.channel, resp);
        } else if let Some(p) = self.pending_snapshots.remove(id) {
            let c = &self.counters.snapshots;
            let resp = match msg {
                ReplyMsg::Data(d) => {
                    inc(&c.served);
                    c.served_bytes.fetch_add(d.len() as u64, Ordering::Relaxed);
                    SnapshotResp::Data(d)
                }
                ReplyMsg::Unavailable => {
                    inc(&c.unavailable);
                    SnapshotResp::Error("unavailable".into())
                }
                ReplyMsg::Dropped => {
                    inc(&c.timed_out);
                    return; // as for ranges: the asker sees the stream closed
                }
            };
            let _ = self.swarm.behaviour_mut().snapshot.send_response(p.channel, resp);
        }
    }

    fn on_range_event(&mut self, ev: request_response::Event<RangeReq, RangeResp>) {
        use request_response::{Event, Message};
        match ev {
            Event::Message { peer, message: Message::Request { request, channel, .. }, .. } => {
                let n = self.pending_ranges.in_flight(&peer);
                if self.bans.contains_key(&peer) || n >= self.cfg.max_requests_per_peer {
                    inc(&self.counters.requests_refused);
                    return; // channel dropped: the asker gets an error
                }
                if request.from > request.to {
                    inc(&self.counters.requests_refused);
                    let _ = self.swarm.behaviour_mut().range.send_response(
                        channel,
                        RangeResp::Error(format!(
                            "bad range: from {} is above to {}",
                            request.from, request.to
                        )),
                    );
                    return;
                }
                let id = self.next_in;
                self.next_in = self.next_in.wrapping_add(1);
                let req = RangeRequest {
                    peer: peer.to_string(),
                    from: request.from,
                    to: request.to,
                    reply: Replier {
                        id,
                        max_bytes: self.cfg.max_block_bytes,
                        what: ("range", "max_block_bytes"),
                        tx: Some(self.reply_tx.clone()),
                    },
                };
                self.pending_ranges.insert(
                    id,
                    PendingIn { channel, peer, deadline: Instant::now() + self.cfg.reply_timeout },
                );
                if self.out.requests.try_send(req).is_err() {
                    // The request (and its Replier) is dropped; its Dropped message finds
                    // nothing pending.
                    self.pending_ranges.remove(id);
                    inc(&self.counters.requests_refused);
                }
            }
            Event::Message { peer, message: Message::Response { request_id, response }, .. } => {
                let Some((_, from, to)) = self.outbound.remove(&request_id) else {
                    return;
                };
                let data = match response {
                    RangeResp::Data(d) => Ok(d),
                    RangeResp::Error(e) => Err(e),
                };
                self.answer(RangeAnswer { peer: peer.to_string(), from, to, data });
            }
            Event::OutboundFailure { peer, request_id, error, .. } => {
                let Some((_, from, to)) = self.outbound.remove(&request_id) else {
                    return;
                };
                self.answer(RangeAnswer {
                    peer: peer.to_string(),
                    from,
                    to,
                    data: Err(format!("range request failed: {error}")),
                });
            }
            Event::InboundFailure { .. } | Event::ResponseSent { .. } => {}
        }
    }

    fn snapshot_answer(&self, answer: SnapshotAnswer) {
        let c = &self.counters.snapshots;
        if answer.data.is_ok() {
            inc(&c.answered);
        } else {
            inc(&c.failed);
        }
        if self.out.snapshot_answers.try_send(answer).is_err() {
            inc(&c.answers_dropped);
        }
    }

    fn ask_snapshot(&mut self, id: u64, peer: PeerId, request: Vec<u8>) {
        // Only connected peers are asked: request-response would otherwise dial the peer, and
        // the node names peers it knows to be connected (a stale name is an answer, not a dial).
        let refused = if self.bans.contains_key(&peer) {
            Some(format!("peer {peer} is banned"))
        } else if !self.swarm.is_connected(&peer) {
            Some(format!("peer {peer} is not connected"))
        } else {
            None
        };
        if let Some(why) = refused {
            self.snapshot_answer(SnapshotAnswer { id, peer: peer.to_string(), data: Err(why) });
            return;
        }
        let rid = self.swarm.behaviour_mut().snapshot.send_request(&peer, request);
        self.snapshot_outbound.insert(rid, id);
    }

    fn on_snapshot_event(&mut self, ev: request_response::Event<Vec<u8>, SnapshotResp>) {
        use request_response::{Event, Message};
        match ev {
            Event::Message { peer, message: Message::Request { request, channel, .. }, .. } => {
                let counters = self.counters.clone();
                let c = &counters.snapshots;
                if self.bans.contains_key(&peer) {
                    inc(&c.requests_dropped);
                    return; // channel dropped; the peer is being disconnected anyway
                }
                if self.pending_snapshots.in_flight(&peer) >= self.cfg.max_snapshot_requests_per_peer {
                    inc(&c.refused_busy);
                    let _ = self.swarm.behaviour_mut().snapshot.send_response(channel, SnapshotResp::Busy);
                    return;
                }
                let id = self.next_in;
                self.next_in = self.next_in.wrapping_add(1);
                let req = SnapshotRequest {
                    peer: peer.to_string(),
                    data: request,
                    reply: Replier {
                        id,
                        max_bytes: self.cfg.max_snapshot_bytes,
                        what: ("snapshot", "max_snapshot_bytes"),
                        tx: Some(self.reply_tx.clone()),
                    },
                };
                self.pending_snapshots.insert(
                    id,
                    PendingIn { channel, peer, deadline: Instant::now() + self.cfg.reply_timeout },
                );
                if self.out.snapshot_requests.try_send(req).is_err() {
                    // The node is behind: "busy" lets the asker try later or elsewhere. The
                    // dropped Replier's message finds nothing pending.
                    inc(&c.requests_dropped);
                    if let Some(p) = self.pending_snapshots.remove(id) {
                        let _ =
                            self.swarm.behaviour_mut().snapshot.send_response(p.channel, SnapshotResp::Busy);
                    }
                }
            }
            Event::Message { peer, message: Message::Response { request_id, response }, .. } => {
                let Some(id) = self.snapshot_outbound.remove(&request_id) else {
                    return;
                };
                let data = match response {
                    SnapshotResp::Data(d) => Ok(d),
                    SnapshotResp::Error(e) => Err(e),
                    SnapshotResp::Busy => Err("busy".to_string()),
                };
                self.snapshot_answer(SnapshotAnswer { id, peer: peer.to_string(), data });
            }
            Event::OutboundFailure { peer, request_id, error, .. } => {
                let Some(id) = self.snapshot_outbound.remove(&request_id) else {
                    return;
                };
                self.snapshot_answer(SnapshotAnswer {
                    id,
                    peer: peer.to_string(),
                    data: Err(format!("snapshot request failed: {error}")),
                });
            }
            Event::InboundFailure { .. } | Event::ResponseSent { .. } => {}
        }
    }

    fn penalize(&mut self, peer: PeerId, why: &str) {
        count_penalty(&self.counters, why);
        let gs = &mut self.swarm.behaviour_mut().gossipsub;
        gs.set_application_score(&peer, PENALTY_SCORE);
        gs.blacklist_peer(&peer);
        self.bans.insert(peer, Instant::now() + self.cfg.ban_duration);
        let _ = self.swarm.disconnect_peer_id(peer);
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        // Served requests the node did not answer in time: dropping their channels fails them
        // for the askers.
        let n = self.pending_ranges.expire(now);
        self.counters.requests_timed_out.fetch_add(n, Ordering::Relaxed);
        let n = self.pending_snapshots.expire(now);
        self.counters.snapshots.timed_out.fetch_add(n, Ordering::Relaxed);
        // Bans that ran out.
        let unbanned: Vec<PeerId> =
            self.bans.iter().filter(|(_, until)| **until <= now).map(|(p, _)| *p).collect();
        for p in unbanned {
            self.bans.remove(&p);
            let gs = &mut self.swarm.behaviour_mut().gossipsub;
            gs.remove_blacklisted_peer(&p);
            gs.set_application_score(&p, 0.0);
        }
        self.dial_bootstrap(now);
        self.update_peers();
    }

    fn dial_bootstrap(&mut self, now: Instant) {
        for i in 0..self.boot.len() {
            let b = &self.boot[i];
            if b.is_self || b.next_dial > now {
                continue;
            }
            if let Some(p) = b.peer
                && (self.bans.contains_key(&p) || self.swarm.is_connected(&p))
            {
                continue;
            }
            let opts = match b.peer {
                Some(p) => DialOpts::peer_id(p)
                    .addresses(vec![b.addr.clone()])
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build(),
                None => DialOpts::unknown_peer_id().address(b.addr.clone()).build(),
            };
            let res = self.swarm.dial(opts);
            let b = &mut self.boot[i];
            if let Err(DialError::LocalPeerId { .. }) = res {
                b.is_self = true;
            }
            b.next_dial = now + b.backoff;
            b.backoff = (b.backoff * 2).min(BACKOFF_MAX);
        }
    }

    fn on_swarm_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                let full = address.clone().with(Protocol::P2p(self.local)).to_string();
                for b in &mut self.boot {
                    if b.peer.is_none() && b.addr == address {
                        b.is_self = true;
                    }
                }
                if let Ok(mut l) = self.counters.listen.lock()
                    && !l.contains(&full)
                {
                    l.push(full);
                }
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                let full = address.with(Protocol::P2p(self.local)).to_string();
                if let Ok(mut l) = self.counters.listen.lock() {
                    l.retain(|a| *a != full);
                }
            }
            SwarmEvent::ConnectionEstablished { peer_id, endpoint, connection_id, .. } => {
                if self.bans.contains_key(&peer_id) {
                    inc(&self.counters.banned_connections);
                    self.swarm.close_connection(connection_id);
                    return;
                }
                let now = Instant::now();
                let dialed = strip_p2p(endpoint.get_remote_address());
                for b in &mut self.boot {
                    if b.peer == Some(peer_id)
                        || (b.peer.is_none() && endpoint.is_dialer() && b.addr == dialed)
                    {
                        b.peer = Some(peer_id);
                        b.backoff = BACKOFF_MIN;
                        b.next_dial = now + BACKOFF_MIN;
                    }
                }
                let n = self.swarm.connected_peers().count();
                if n > self.cfg.max_peers && !self.is_bootstrap(&peer_id) {
                    self.swarm.close_connection(connection_id);
                }
                self.update_peers();
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established, .. } => {
                if num_established == 0 {
                    let now = Instant::now();
                    for b in &mut self.boot {
                        if b.peer == Some(peer_id) {
                            b.next_dial = b.next_dial.min(now + BACKOFF_MIN);
                        }
                    }
                }
                self.update_peers();
            }
            SwarmEvent::OutgoingConnectionError { error: DialError::LocalPeerId { address }, .. } => {
                let address = strip_p2p(&address);
                for b in &mut self.boot {
                    if b.addr == address {
                        b.is_self = true;
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => self.on_message(propagation_source, message_id, message),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                for addr in info.listen_addrs.into_iter().take(MAX_IDENTIFY_ADDRS) {
                    self.swarm.add_peer_address(peer_id, addr);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Range(ev)) => self.on_range_event(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Snapshot(ev)) => self.on_snapshot_event(ev),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn score_parameters_are_valid() {
        let b = IdentTopic::new("bastion/t/blocks").hash();
        let t = IdentTopic::new("bastion/t/txs").hash();
        score_params(&b, &t).validate().unwrap();
        score_thresholds().validate().unwrap();
    }

    #[test]
    fn content_ids_depend_only_on_data() {
        assert_eq!(content_id(b"abc"), content_id(b"abc"));
        assert_ne!(content_id(b"abc"), content_id(b"abd"));
    }

    #[test]
    fn seen_cache_is_bounded() {
        let mut s = SeenCache { map: HashMap::new(), order: VecDeque::new() };
        for i in 0..(SEEN_CAPACITY as u64 + 10) {
            s.insert(content_id(&i.to_le_bytes()), Seen::Delivered);
        }
        assert_eq!(s.map.len(), SEEN_CAPACITY);
        assert!(s.get(&content_id(&0u64.to_le_bytes())).is_none());
        let last = SEEN_CAPACITY as u64 + 9;
        assert!(s.get(&content_id(&last.to_le_bytes())).is_some());
    }
}
