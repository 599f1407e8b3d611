//! Deterministic whole-node simulation harness: Simplex (bls12381_multisig) over commonware's
//! simulated network, each validator executing the real exchange through its own
//! `bastion_store::Store`. Used by `tests/simulation.rs` and by the `consensus` perf suite.
//!
//! The seed is printed; `BASTION_SEED=<n>` replays one run. This is a test harness: it panics
//! on any violated safety or liveness check.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::{
    Application, BRIDGE_CHANNEL, BRIDGE_QUOTA_PER_S, BlockLimits, BlockSource, CertChecker, Config,
    DEFAULT_OBSERVE_EVERY_MS, Fault, Finalized, Ledger, Lie, Multisig, OBSERVATION_CHANNEL,
    OBSERVATION_QUOTA_PER_S, OracleRecord, PathObserver, Publisher, Totals, Trick,
};
use bastion_exchange::{
    Genesis, State,
    scenario::{PricePath, Scenario},
};
use bastion_store::{Store, StoreConfig};
use bastion_types::{MarketKind, OracleParams, UnderlyingId};
use commonware_consensus::{
    simplex::{
        self,
        elector::RoundRobin,
        mocks::{conflicter, equivocator, nuller, outdated, relay::Relay},
        scheme::bls12381_multisig,
    },
    types::{Epoch, ViewDelta},
};
use commonware_cryptography::{
    Sha256, bls12381::primitives::variant::MinSig, certificate::mocks::Fixture, ed25519, sha256::Digest,
};
use commonware_p2p::simulated::{self, Link, Network, Oracle};
use commonware_runtime::{Clock, Handle, Quota, Runner as _, Supervisor as _, deterministic};
use commonware_utils::{NZU32, NZUsize};
use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    time::{Duration, SystemTime},
};

pub(crate) const NAMESPACE: &[u8] = b"bastion-consensus-sim";

pub fn seeds(default: u64) -> u64 {
    match std::env::var("BASTION_SEED") {
        Ok(s) => s.parse().expect("BASTION_SEED must be a u64"),
        Err(_) => default,
    }
}

#[allow(missing_debug_implementations)] // `Link` is not `Debug`
pub struct Run {
    pub validators: u32,
    pub seed: u64,
    pub link: Link,
    pub target_height: u64,
    pub crash: Option<Crash>,
    /// This validator's execution diverges at this height: it must halt, the others go on.
    pub diverge: Option<(usize, u64)>,
    /// Cut the network in two for a while, then heal it.
    pub partition: Option<Partition>,
    /// This validator runs a Byzantine engine (commonware's simplex mocks) instead of Bastion.
    pub byzantine: Option<(usize, Byzantine)>,
    /// This validator runs Bastion as a Byzantine leader: each time it leads, it plays the next
    /// of these tricks (see [`crate::byzantine`]).
    pub byzantine_leader: Option<(usize, Vec<Trick>)>,
    /// This validator runs Bastion as a Byzantine oracle: its observations lie this way.
    pub byzantine_oracle: Option<(usize, Lie)>,
    /// Validators whose sources are down (they observe nothing) for a while.
    pub outages: Vec<Outage>,
    /// The genesis's oracle parameters instead of the devnet's (shorter staleness guards).
    pub oracle: Option<OracleParams>,
    /// Keep running (and checking) at least this long of simulated time after the start, even
    /// once every honest validator reached the target height.
    pub run_for: Option<Duration>,
    /// Called with each validator's index at each (re)start: the publisher its application
    /// tells about executed finalized blocks, if any.
    pub publisher: Option<PublisherFactory>,
    /// Keep the validators' data dirs after the run: validator `i`'s is `<keep_dirs>/validator-i`
    /// (created; left in place for the caller, e.g. to serve its snapshots or reopen its store).
    /// `None` (the default): each is a temporary directory deleted at the end of the run.
    pub keep_dirs: Option<PathBuf>,
    /// Called with each validator's index at each (re)start: the deposit feed it attests from.
    /// `None` (the default): no validator watches a source.
    pub bridge_feed: Option<FeedFactory>,
}

/// Makes the deposit feed of validator `i` at each of its starts (see [`Run::bridge_feed`]):
/// a fresh feed, so a restarted validator sees every deposit again, as a node re-reading its
/// source does.
pub type FeedFactory = std::sync::Arc<dyn Fn(usize) -> Box<dyn crate::DepositFeed> + Send + Sync>;

/// Makes the [`Publisher`] of validator `i` at each of its starts (see [`Run::publisher`]).
pub type PublisherFactory = std::sync::Arc<dyn Fn(usize) -> Option<Box<dyn Publisher>> + Send + Sync>;

/// A validator's sources are down (its observer returns nothing) from `from` until `until`
/// after the simulation's start.
#[derive(Clone, Copy, Debug)]
pub struct Outage {
    pub validator: usize,
    pub from: Duration,
    pub until: Duration,
}

impl Run {
    /// A run with no injected fault; set `crash`, `diverge`, `partition` or `byzantine` with
    /// struct update syntax (`Run { crash: Some(..), ..Run::new(..) }`).
    pub fn new(validators: u32, seed: u64, link: Link, target_height: u64) -> Run {
        Run {
            validators,
            seed,
            link,
            target_height,
            crash: None,
            diverge: None,
            partition: None,
            byzantine: None,
            byzantine_leader: None,
            byzantine_oracle: None,
            outages: Vec::new(),
            oracle: None,
            run_for: None,
            publisher: None,
            keep_dirs: None,
            bridge_feed: None,
        }
    }
}

/// Once every honest validator has finalized `at`, cut every link between `side` and the rest
/// for `duration` of simulated time, then heal. A side with a quorum must keep finalizing (its
/// highest height advances by at least `min_progress`); a side without one must finalize
/// nothing. After the heal
/// every honest validator must finalize a new height (above the highest one finalized anywhere)
/// within `heal_within` of simulated time.
#[derive(Clone, Debug)]
pub struct Partition {
    pub side: Vec<usize>,
    pub at: u64,
    pub duration: Duration,
    pub min_progress: u64,
    pub heal_within: Duration,
}

/// The Byzantine engines from `commonware_consensus::simplex::mocks` (vote channel only).
#[derive(Clone, Copy, Debug)]
pub enum Byzantine {
    /// Notarizes and finalizes every proposal it sees and also a random digest in that view.
    Conflicter,
    /// Nullifies and finalizes every proposal it sees, in the same view.
    Nuller,
    /// Replays notarize and finalize votes for proposals from 5 views back.
    Outdated,
    /// When it leads a view, notarizes two different proposals: one sent to a random victim,
    /// the other to everyone else. (commonware's equivocator mock: its payloads are opaque
    /// bytes, not Bastion blocks, so honest validators can never verify either proposal and
    /// the view times out; what is tested is that an equivocating leader cannot split the
    /// honest validators or stall the chain.) The equivocating leader whose two proposals are
    /// both *valid* Bastion blocks, each verified, voted for and finalized by honest validators,
    /// is the twins run: [`crate::twins`], tested by `twins_*` and `campaign_twins` in
    /// `tests/simulation.rs`.
    Equivocator,
}

/// What one simulation produced, per validator.
#[derive(Debug)]
pub struct Outcome {
    pub ledgers: Vec<BTreeMap<u64, Finalized>>,
    pub halts: Vec<Option<String>>,
    pub faults: Vec<Vec<String>>,
    /// When each block was proposed (the leader's clock when its propose completed), by digest,
    /// over every validator.
    pub proposed_at: HashMap<Digest, SystemTime>,
    /// Per validator: when its reporter received each finalization, by digest.
    pub finalization_at: Vec<HashMap<Digest, SystemTime>>,
    /// Per validator: when its reporter received each notarization, by digest.
    pub notarization_at: Vec<HashMap<Digest, SystemTime>>,
    /// Simulated time at the end of the run (since the start).
    pub elapsed: Duration,
    /// Per validator: each line of its data dir's evidence file, with whether its proof
    /// decoded and verified against the validator set's public keys.
    pub evidence: Vec<Vec<(String, bool)>>,
    /// Per validator: its running totals at the end (blocked peers, unsolicited blocks held,
    /// evidence counts, ...).
    pub totals: Vec<Totals>,
    /// Per validator: each finalized block's oracle as it executed it.
    pub oracle: Vec<BTreeMap<u64, OracleRecord>>,
    /// Per validator: observations it dropped, by reason.
    pub observations_rejected: Vec<BTreeMap<&'static str, u64>>,
    /// Checks the run's finalization certificates (the validator set, namespace, limits and
    /// genesis of the run).
    pub checker: CertChecker,
    /// The run's exchange genesis (a full node's store opens with it).
    pub genesis: Genesis,
}

impl Outcome {
    /// Finality latency (finalization received minus proposal built) per validator, per
    /// finalized height, where both times are known.
    pub fn finality_latencies(&self) -> Vec<BTreeMap<u64, Duration>> {
        self.latencies(&self.finalization_at)
    }

    /// Notarization latency (notarization received minus proposal built) per validator, per
    /// finalized height, where both times are known.
    pub fn notarization_latencies(&self) -> Vec<BTreeMap<u64, Duration>> {
        self.latencies(&self.notarization_at)
    }

    fn latencies(&self, seen_at: &[HashMap<Digest, SystemTime>]) -> Vec<BTreeMap<u64, Duration>> {
        self.ledgers
            .iter()
            .zip(seen_at)
            .map(|(ledger, seen)| {
                ledger
                    .iter()
                    .filter_map(|(h, f)| {
                        let proposed = self.proposed_at.get(&f.digest)?;
                        let finalized = seen.get(&f.digest)?;
                        Some((*h, finalized.duration_since(*proposed).unwrap_or_default()))
                    })
                    .collect()
            })
            .collect()
    }
}

/// Crash `validator` once it has finalized `at`; restart it once the others reach `others_reach`.
#[derive(Clone, Copy, Debug)]
pub struct Crash {
    pub validator: usize,
    pub at: u64,
    pub others_reach: u64,
}

/// The store's configuration in simulations: snapshots every 40 blocks, 3 kept, 32 KiB log
/// segments, so long runs exercise snapshots, log pruning, restarts from a pruned log and
/// backfill from peers' logs. (Peers keep their log back to their oldest kept snapshot:
/// between 80 and 120 heights here; a node further behind than that joins by state sync, as
/// `bastion-statesync`'s `tests/sim.rs` does from these validators' kept data dirs.)
pub fn sim_store_config() -> StoreConfig {
    StoreConfig {
        snapshot_every: 40,
        keep_snapshots: 3,
        segment_bytes: 32 << 10,
        snapshot_write_bytes_per_s: 0,
        ..StoreConfig::default()
    }
}

/// Everything needed to (re)start one validator.
pub(crate) struct Validator {
    pub(crate) index: usize,
    pub(crate) me: ed25519::PublicKey,
    pub(crate) scheme: Multisig,
    pub(crate) dir: PathBuf,
    pub(crate) genesis: Genesis,
    pub(crate) limits: BlockLimits,
    pub(crate) ledger: Ledger,
    pub(crate) fault: Option<Fault>,
    /// Its index and identity key's secret seed (the genesis lists the public key).
    pub(crate) key: (u16, [u8; 32]),
    /// Its sources.
    pub(crate) observer: PathObserver,
    /// Its publisher at each start.
    pub(crate) publisher: Option<PublisherFactory>,
    /// Its deposit feed at each start.
    pub(crate) bridge_feed: Option<FeedFactory>,
}

/// One validator's p2p channels: the engine's (votes, certificates, resolver) and the
/// application's (blocks, observations, bridge), each a (sender, receiver) pair of one type.
pub(crate) struct Channels<S, R> {
    pub(crate) votes: (S, R),
    pub(crate) certs: (S, R),
    pub(crate) resolver: (S, R),
    pub(crate) blocks: (S, R),
    pub(crate) observations: (S, R),
    pub(crate) bridge: (S, R),
}

/// The simulated network's channels of one peer.
pub(crate) type SimChannels = Channels<
    simulated::Sender<ed25519::PublicKey, deterministic::Context>,
    simulated::Receiver<ed25519::PublicKey>,
>;

/// Registers `me`'s channels on the simulated network.
pub(crate) async fn register(
    oracle: &Oracle<ed25519::PublicKey, deterministic::Context>,
    me: &ed25519::PublicKey,
) -> SimChannels {
    let quota = Quota::per_second(NZU32!(10_000));
    let control = oracle.control(me.clone());
    Channels {
        votes: control.register(0, quota).await.unwrap(),
        certs: control.register(1, quota).await.unwrap(),
        resolver: control.register(2, quota).await.unwrap(),
        blocks: control.register(3, quota).await.unwrap(),
        observations: control
            .register(OBSERVATION_CHANNEL, Quota::per_second(NZU32!(OBSERVATION_QUOTA_PER_S)))
            .await
            .unwrap(),
        bridge: control
            .register(BRIDGE_CHANNEL, Quota::per_second(NZU32!(BRIDGE_QUOTA_PER_S)))
            .await
            .unwrap(),
    }
}

impl Validator {
    /// Opens the store from the data dir, registers the channels and starts the application and
    /// the engine (whose journal partition survives restarts). Returns (application, engine).
    pub(crate) async fn start(
        &self,
        context: &deterministic::Context,
        oracle: &Oracle<ed25519::PublicKey, deterministic::Context>,
        incarnation: u32,
    ) -> (Handle<()>, Handle<()>) {
        let channels = register(oracle, &self.me).await;
        let ctx = context
            .child("validator")
            .with_attribute("index", self.index)
            .with_attribute("incarnation", incarnation);
        self.launch(ctx, oracle, channels, format!("simplex-{}", self.index), incarnation)
    }

    /// Opens the store from the data dir and starts the application and the engine on
    /// `channels` under `ctx`, the engine journaling in the runtime's storage partition
    /// `partition`. Returns (application, engine). (Each twin is launched on its half of its
    /// key's split channels: see [`crate::twins`].)
    pub(crate) fn launch<S, R>(
        &self,
        ctx: deterministic::Context,
        oracle: &Oracle<ed25519::PublicKey, deterministic::Context>,
        channels: Channels<S, R>,
        partition: String,
        incarnation: u32,
    ) -> (Handle<()>, Handle<()>)
    where
        S: commonware_p2p::Sender<PublicKey = ed25519::PublicKey>,
        R: commonware_p2p::Receiver<PublicKey = ed25519::PublicKey>,
    {
        let Channels { votes, certs, resolver, blocks, observations, bridge } = channels;
        let (store, recovery) = Store::open(&self.dir, &self.genesis, sim_store_config()).unwrap();
        if incarnation > 0 {
            println!("validator {} reopened its store: {:?}", self.index, recovery.describe());
        }
        let (app, mailbox, reporter) = Application::new::<Multisig>(
            ctx.child("application"),
            Config {
                store,
                genesis: self.genesis.clone(),
                limits: self.limits,
                source: BlockSource::default(),
                chain: SIM_CHAIN,
                verifier: sim_verifier(),
                verified: None,
                observer: Some(Box::new(self.observer.clone())),
                observation_key: Some(self.key),
                observe_every_ms: DEFAULT_OBSERVE_EVERY_MS,
                ledger: self.ledger.clone(),
                fault: self.fault.clone(),
                governance: None,
                publisher: self.publisher.as_ref().and_then(|f| f(self.index)),
                bridge_feed: self.bridge_feed.as_ref().map(|f| f(self.index)),
            },
            blocks,
            observations,
            bridge,
            oracle.control(self.me.clone()),
        )
        .unwrap();
        let floor = app.genesis_digest();
        let app = app.start();

        let engine = simplex::Engine::new(
            ctx.child("engine"),
            crate::engine::config(
                self.scheme.clone(),
                oracle.control(self.me.clone()),
                mailbox,
                reporter,
                floor,
                partition,
                &crate::engine::Timeouts::default(),
            ),
        );
        let engine = engine.start(votes, certs, resolver);
        (app, engine)
    }
}

/// The chain digest simulated clients sign for.
pub const SIM_CHAIN: [u8; 32] = *b"bastion simulation chain digest!";

/// The simulations' genesis: the devnet exchange with the devnet bridge authority (whose key
/// signs the synthetic workload's deposits).
pub fn sim_genesis() -> Genesis {
    Genesis::devnet().with_authority(bastion_client::devnet_authority().account())
}

/// [`sim_genesis`] for the validators whose identity keys have these secret seeds (one stake
/// each, in order: the consensus fixture's), with `oracle` parameters if given.
pub fn sim_genesis_for(seeds: &[[u8; 32]], oracle: Option<OracleParams>) -> Genesis {
    let mut g = sim_genesis().with_validator_seeds(seeds);
    if let Some(o) = oracle {
        g.oracle = o;
    }
    g
}

/// The 32-byte secret seeds of the fixture's identity keys.
pub(crate) fn identity_seeds(keys: &[ed25519::PrivateKey]) -> Vec<[u8; 32]> {
    use commonware_codec::Encode as _;
    keys.iter().map(|k| k.encode().as_ref().try_into().expect("an ed25519 seed is 32 bytes")).collect()
}

/// The price path every simulated validator's sources quote around.
pub fn sim_path(genesis: &Genesis) -> PricePath {
    PricePath::devnet(Scenario::Calm, genesis.timestamp_ms, 7)
}

/// Validator `i`'s sources in a run seeded `seed`: the [`sim_path`] with its own noise of at
/// most 0.1%, volatility for every option expiry of the genesis, and the outages given.
pub fn sim_observer(genesis: &Genesis, seed: u64, i: usize, outages: &[Outage]) -> PathObserver {
    let mut expiries: Vec<(UnderlyingId, u64)> = genesis
        .markets
        .iter()
        .filter_map(|m| match m.kind {
            MarketKind::Option { expiry_ms, .. } => Some((m.underlying, expiry_ms)),
            _ => None,
        })
        .collect();
    expiries.sort_unstable();
    expiries.dedup();
    let mut o =
        PathObserver::new(sim_path(genesis), seed.wrapping_mul(1_000_003).wrapping_add(i as u64), 1_000)
            .with_vols(expiries);
    for out in outages.iter().filter(|o| o.validator == i) {
        let at = |d: Duration| genesis.timestamp_ms + d.as_millis() as u64;
        o = o.down_between(at(out.from), at(out.until));
    }
    o
}

/// Simulated clocks start at the genesis time: block time is the proposer's clock.
pub(crate) fn sim_start_time() -> std::time::SystemTime {
    std::time::UNIX_EPOCH + Duration::from_millis(sim_genesis().timestamp_ms)
}

fn sim_verifier() -> std::sync::Arc<dyn bastion_accel::Verifier> {
    match bastion_accel::verifier(bastion_accel::Backend::Batch) {
        Ok(v) => std::sync::Arc::from(v),
        Err(e) => panic!("the CPU batch verifier is always available: {e}"),
    }
}

/// Runs one simulation and returns every validator's ledger (height -> digest, root).
pub fn simulate(run: Run) -> Vec<BTreeMap<u64, Finalized>> {
    simulate_with_halts(run).0
}

/// Runs one simulation; returns every validator's ledger and why each halted (if it did).
#[allow(clippy::type_complexity)]
pub fn simulate_with_halts(run: Run) -> (Vec<BTreeMap<u64, Finalized>>, Vec<Option<String>>) {
    let o = simulate_outcome(run);
    (o.ledgers, o.halts)
}

/// Runs one simulation; returns every validator's ledger, halt and recorded faults.
pub fn simulate_outcome(run: Run) -> Outcome {
    simulate_with_cycle(run, Duration::from_millis(1))
}

/// [`simulate_outcome`] with the deterministic executor advancing `cycle` of simulated time per
/// event-loop iteration (the runtime's default, used by the tests, is 1 ms; every iteration of a
/// busy executor costs that much simulated time, so latency figures want a small one).
pub fn simulate_with_cycle(run: Run, cycle: Duration) -> Outcome {
    let Run {
        validators: n,
        seed,
        link,
        target_height,
        crash,
        diverge,
        partition,
        byzantine,
        byzantine_leader,
        byzantine_oracle,
        outages,
        oracle: oracle_params,
        run_for,
        publisher,
        keep_dirs,
        bridge_feed,
    } = run;
    let byzantine_kinds = usize::from(byzantine.is_some())
        + usize::from(byzantine_leader.is_some())
        + usize::from(byzantine_oracle.is_some());
    // One fault at a time; a Byzantine oracle may also crash and restart (a liar that restarts
    // can sign a second version of what it signed before: the bridge's conflict evidence).
    assert!(
        byzantine_kinds == 0
            || (diverge.is_none()
                && byzantine_kinds == 1
                && crash.is_none_or(|c| byzantine_oracle.is_some_and(|b| b.0 == c.validator))),
        "one fault at a time"
    );
    let tricks = byzantine_leader.clone();
    // Not checked for halts and faults, nor waited for.
    let faulty = diverge.map(|d| d.0).or(byzantine.map(|b| b.0)).or(tricks.as_ref().map(|b| b.0));
    // Equivocation evidence is allowed only against this validator.
    let byz = byzantine.map(|b| b.0).or(tricks.as_ref().map(|b| b.0)).or(byzantine_oracle.map(|b| b.0));
    // Its observations do not count as honest for the index bound.
    let liar = byzantine_oracle.map(|b| b.0);
    println!("simulation: validators={n} seed={seed} (replay with BASTION_SEED={seed})");
    let cfg = deterministic::Config::new()
        .with_start_time(sim_start_time())
        .with_seed(seed)
        .with_cycle(cycle)
        .with_timeout(Some(Duration::from_secs(3_600)));
    let executor = deterministic::Runner::new(cfg);
    executor.start(|mut context| async move {
        let limits = BlockLimits { max_body_bytes: 1 << 20, ..BlockLimits::default() };
        let Fixture { participants, schemes, private_keys, verifier } =
            bls12381_multisig::fixture::<MinSig, _>(&mut context, NAMESPACE, n);
        let seeds = identity_seeds(&private_keys);
        let genesis = sim_genesis_for(&seeds, oracle_params);
        let checker = sim_checker(verifier, &genesis, limits);

        let oracle = network(&context, &participants, &link, &limits).await;

        let mut dirs = Vec::new();
        let mut ledgers = Vec::new();
        let mut nodes = Vec::new();
        let mut byzantine_engine = None;
        for (i, me) in participants.iter().enumerate() {
            // A kept dir is the caller's to delete; a temporary one goes at the end of the run.
            let (dir, path) = match &keep_dirs {
                Some(root) => {
                    let path = root.join(format!("validator-{i}"));
                    std::fs::create_dir_all(&path).unwrap();
                    (None, path)
                }
                None => {
                    let dir = tempfile::tempdir().unwrap();
                    let path = dir.path().to_path_buf();
                    (Some(dir), path)
                }
            };
            let ledger = Ledger::default();
            let v = Validator {
                index: i,
                me: me.clone(),
                scheme: schemes[i].clone(),
                dir: path,
                genesis: genesis.clone(),
                limits,
                ledger: ledger.clone(),
                fault: diverge
                    .filter(|d| d.0 == i)
                    .map(|d| Fault::DivergeAt(d.1))
                    .or_else(|| {
                        tricks.as_ref().filter(|t| t.0 == i).map(|t| Fault::ByzantineLeader(t.1.clone()))
                    })
                    .or_else(|| byzantine_oracle.filter(|b| b.0 == i).map(|b| Fault::ByzantineOracle(b.1))),
                key: (i as u16, seeds[i]),
                observer: sim_observer(&genesis, seed, i, &outages),
                publisher: publisher.clone(),
                bridge_feed: bridge_feed.clone(),
            };
            match &v.fault {
                Some(Fault::ByzantineLeader(t)) => println!("validator {i} is a Byzantine leader: {t:?}"),
                Some(Fault::ByzantineOracle(lie)) => println!("validator {i} is a Byzantine oracle: {lie:?}"),
                _ => {}
            }
            match byzantine.filter(|b| b.0 == i) {
                None => nodes.push(v.start(&context, &oracle, 0).await),
                Some((_, kind)) => {
                    let control = oracle.control(me.clone());
                    let votes = control.register(0, Quota::per_second(NZU32!(10_000))).await.unwrap();
                    let ctx = context.child("byzantine").with_attribute("index", i);
                    let scheme = schemes[i].clone();
                    println!("validator {i} is Byzantine: {kind:?}");
                    byzantine_engine = Some(match kind {
                        Byzantine::Conflicter => {
                            conflicter::Conflicter::<_, _, Sha256>::new(ctx, conflicter::Config { scheme })
                                .start(votes)
                        }
                        Byzantine::Outdated => outdated::Outdated::<_, _, Sha256>::new(
                            ctx,
                            outdated::Config { scheme, view_delta: ViewDelta::new(5) },
                        )
                        .start(votes),
                        Byzantine::Nuller => {
                            nuller::Nuller::<_, _, Sha256>::new(ctx, nuller::Config { scheme }).start(votes)
                        }
                        Byzantine::Equivocator => {
                            let certs = control.register(1, Quota::per_second(NZU32!(10_000))).await.unwrap();
                            equivocator::Equivocator::<_, _, _, Sha256>::new(
                                ctx,
                                equivocator::Config {
                                    scheme,
                                    elector: RoundRobin::<Sha256>::default(),
                                    epoch: Epoch::new(0),
                                    relay: std::sync::Arc::new(Relay::new()),
                                },
                            )
                            .start(votes, certs)
                        }
                    });
                }
            }
            dirs.push((dir, v));
            ledgers.push(ledger);
        }

        if let Some(Crash { validator, at, others_reach }) = crash {
            // Crash one validator (its tasks stop; its store and journal stay on disk), let the
            // others go on, then restart it from its data dir and consensus journal.
            wait(&context, &ledgers, faulty, byz, at, &[validator]).await;
            let (app, engine) = nodes.remove(validator);
            engine.abort();
            app.abort();
            let _ = engine.await;
            let _ = app.await;
            let crashed_at = ledgers[validator].height();
            println!("crashed validator {validator} at height {crashed_at}");
            let others: Vec<usize> = (0..n as usize).filter(|&i| i != validator).collect();
            wait(&context, &ledgers, faulty, byz, others_reach, &others).await;
            let restarted = dirs[validator].1.start(&context, &oracle, 1).await;
            nodes.insert(validator, restarted);
            println!(
                "restarted validator {validator} (others at {})",
                ledgers[(validator + 1) % n as usize].height()
            );
        }
        let honest: Vec<usize> = (0..n as usize).filter(|i| Some(*i) != faulty).collect();
        if let Some(p) = partition {
            partition_and_heal(&context, &oracle, &participants, &link, &ledgers, faulty, byz, &honest, &p)
                .await;
        }
        wait(&context, &ledgers, faulty, byz, target_height, &honest).await;
        if let Some(d) = run_for {
            let start = Duration::from_millis(genesis.timestamp_ms);
            sleep_checked(&context, &ledgers, faulty, byz, (start + d).saturating_sub(now(&context))).await;
        }
        let elapsed = now(&context);
        println!("simulated time: {elapsed:?}");
        if tricks.is_none() {
            check_nobody_blocked(&ledgers, faulty);
        }
        for &i in &honest {
            let moves = check_index_bound(&ledgers[i].oracle_records(), liar);
            let t = ledgers[i].totals();
            println!(
                "validator {i}: observations signed {} received {} included {} rejected {:?}; evidence {}; \
                 disagreements {}; {moves} index moves within the honest observations",
                t.observations_signed,
                t.observations_received,
                t.observations_included,
                ledgers[i].observations_rejected(),
                t.observation_evidence,
                t.oracle_disagreements
            );
        }
        let state = State::from_genesis(&genesis).unwrap();
        let evidence =
            dirs.iter().map(|(_, v)| read_evidence(&mut context, &v.dir, &schemes[0], &state)).collect();
        drop(dirs);
        drop(byzantine_engine);
        outcome(&ledgers, elapsed, evidence, checker, genesis)
    })
}

/// One validator's reporter is handed `pieces` pieces of equivocation evidence against one
/// signer (conflicting notarize votes in `pieces` views, properly signed), as the engine would
/// report them. Returns what its ledger kept, what its evidence file holds (with whether each
/// proof verifies), and its totals. The bound is the point: see [`crate::evidence`].
pub fn evidence_flood(pieces: u64) -> (Vec<String>, Vec<(String, bool)>, Totals) {
    use commonware_consensus::{
        Reporter as _,
        simplex::types::{Activity, ConflictingNotarize, Notarize, Proposal},
        types::{Round, View},
    };
    println!("evidence flood: {pieces} pieces against one signer");
    let cfg = deterministic::Config::new()
        .with_start_time(sim_start_time())
        .with_seed(0)
        .with_timeout(Some(Duration::from_secs(600)));
    deterministic::Runner::new(cfg).start(|mut context| async move {
        let limits = BlockLimits { max_body_bytes: 1 << 20, ..BlockLimits::default() };
        let Fixture { participants, schemes, private_keys, .. } =
            bls12381_multisig::fixture::<MinSig, _>(&mut context, NAMESPACE, 4);
        let genesis = sim_genesis_for(&identity_seeds(&private_keys), None);
        let one = link(1, 0, commonware_utils::probability!(1.0));
        let oracle = network(&context, &participants, &one, &limits).await;
        let control = oracle.control(participants[0].clone());
        let blocks = control.register(3, Quota::per_second(NZU32!(10_000))).await.unwrap();
        let observations = control
            .register(OBSERVATION_CHANNEL, Quota::per_second(NZU32!(OBSERVATION_QUOTA_PER_S)))
            .await
            .unwrap();
        let bridge =
            control.register(BRIDGE_CHANNEL, Quota::per_second(NZU32!(BRIDGE_QUOTA_PER_S))).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), &genesis, sim_store_config()).unwrap();
        let ledger = Ledger::default();
        let (app, _mailbox, mut reporter) = Application::new::<Multisig>(
            context.child("application"),
            Config {
                store,
                genesis: genesis.clone(),
                limits,
                source: BlockSource::default(),
                chain: SIM_CHAIN,
                verifier: sim_verifier(),
                verified: None,
                observer: None,
                observation_key: None,
                observe_every_ms: DEFAULT_OBSERVE_EVERY_MS,
                ledger: ledger.clone(),
                fault: None,
                governance: None,
                publisher: None,
                bridge_feed: None,
            },
            blocks,
            observations,
            bridge,
            control,
        )
        .unwrap();
        let _app = app.start();
        for v in 1..=pieces {
            let proposal = |b: u8| {
                Proposal::new(
                    Round::new(Epoch::new(0), View::new(v)),
                    View::new(v - 1),
                    Digest::from([b; 32]),
                )
            };
            let a = Notarize::sign(&schemes[1], proposal(1)).unwrap();
            let b = Notarize::sign(&schemes[1], proposal(2)).unwrap();
            reporter.report(Activity::ConflictingNotarize(ConflictingNotarize::new(a, b)));
        }
        context.sleep(Duration::from_secs(1)).await;
        let state = State::from_genesis(&genesis).unwrap();
        let evidence = read_evidence(&mut context, dir.path(), &schemes[0], &state);
        (ledger.faults(), evidence, ledger.totals())
    })
}

/// Reads a data dir's evidence file and checks each proof: it must decode as the kind the line
/// names and verify against the validator set (any member's scheme verifies; double
/// observations against the identity keys of the genesis `state`).
pub(crate) fn read_evidence(
    context: &mut deterministic::Context,
    dir: &std::path::Path,
    scheme: &Multisig,
    state: &State,
) -> Vec<(String, bool)> {
    use commonware_codec::DecodeExt as _;
    use commonware_consensus::simplex::types::{ConflictingFinalize, ConflictingNotarize, NullifyFinalize};
    let Ok(text) = std::fs::read_to_string(dir.join(crate::application::EVIDENCE_FILE)) else {
        return Vec::new();
    };
    text.lines()
        .map(|line| {
            let proof = line.split("\tproof ").nth(1).and_then(crate::spec::from_hex).unwrap_or_default();
            let ok = if line.starts_with("conflicting notarize") {
                ConflictingNotarize::<Multisig, Digest>::decode(bytes::Bytes::from(proof.clone()))
                    .is_ok_and(|c| c.verify(context, scheme, &commonware_parallel::Sequential))
            } else if line.starts_with("conflicting finalize") {
                ConflictingFinalize::<Multisig, Digest>::decode(bytes::Bytes::from(proof.clone()))
                    .is_ok_and(|c| c.verify(context, scheme, &commonware_parallel::Sequential))
            } else if line.starts_with(crate::observations::DOUBLE_OBSERVATION) {
                crate::observations::verify_double_observation(state, line)
            } else if line.starts_with(crate::bridge::CONFLICTING_ATTESTATION) {
                crate::bridge::verify_conflicting_attestation(state, line)
            } else if line.starts_with("nullify and finalize") {
                NullifyFinalize::<Multisig, Digest>::decode(bytes::Bytes::from(proof.clone()))
                    .is_ok_and(|c| c.verify(context, scheme, &commonware_parallel::Sequential))
            } else {
                false
            };
            (line.split('\t').next().unwrap_or_default().to_owned(), ok)
        })
        .collect()
}

/// The certificate checker of a simulated chain.
pub(crate) fn sim_checker(verifier: Multisig, genesis: &Genesis, limits: BlockLimits) -> CertChecker {
    let digest = crate::genesis_block(genesis).unwrap().id();
    CertChecker::with_verifier(verifier, limits, digest)
}

pub(crate) fn outcome(
    ledgers: &[Ledger],
    elapsed: Duration,
    evidence: Vec<Vec<(String, bool)>>,
    checker: CertChecker,
    genesis: Genesis,
) -> Outcome {
    Outcome {
        checker,
        genesis,
        totals: ledgers.iter().map(Ledger::totals).collect(),
        ledgers: ledgers.iter().map(Ledger::finalized).collect(),
        halts: ledgers.iter().map(Ledger::halted).collect(),
        faults: ledgers.iter().map(Ledger::faults).collect(),
        proposed_at: ledgers.iter().flat_map(|l| l.proposed_at()).collect(),
        finalization_at: ledgers.iter().map(Ledger::finalization_at).collect(),
        notarization_at: ledgers.iter().map(Ledger::notarization_at).collect(),
        elapsed,
        evidence,
        oracle: ledgers.iter().map(Ledger::oracle_records).collect(),
        observations_rejected: ledgers.iter().map(Ledger::observations_rejected).collect(),
    }
}

/// The simulated network between `participants`, every pair joined by `link`; a peer that
/// someone blocks is disconnected from it.
pub(crate) async fn network(
    context: &deterministic::Context,
    participants: &[ed25519::PublicKey],
    link: &Link,
    limits: &BlockLimits,
) -> Oracle<ed25519::PublicKey, deterministic::Context> {
    network_with(context, participants, link, limits, true).await
}

/// [`network`], where a blocked peer stays connected unless `disconnect_on_block`.
pub(crate) async fn network_with(
    context: &deterministic::Context,
    participants: &[ed25519::PublicKey],
    link: &Link,
    limits: &BlockLimits,
    disconnect_on_block: bool,
) -> Oracle<ed25519::PublicKey, deterministic::Context> {
    let n = participants.len();
    let max_size = commonware_p2p::max_message_size(&[
        simplex::max_payload_size::<Multisig, Digest>(n as u32),
        limits.max_encoded_bytes(),
    ]);
    let (network, oracle) = Network::new_with_peers(
        context.child("network"),
        simulated::Config {
            max_size,
            max_peers_per_set: NZUsize!(n + 1),
            disconnect_on_block,
            tracked_peer_sets: NZUsize!(1),
        },
        participants.to_vec(),
    )
    .await;
    network.start();
    for a in participants {
        for b in participants {
            if a != b {
                oracle.add_link(a.clone(), b.clone(), link.clone()).await.unwrap();
            }
        }
    }
    oracle
}

/// Every validator loses power at once, once all have finalized `at`: the deterministic
/// runtime stops mid-flight (every task dropped wherever it was), its storage (each validator's
/// Simplex journal) keeps only what was synced, each validator's store keeps what it committed,
/// and all restart from there with the same keys, then must finalize up to `target`. Checks as
/// in [`simulate_outcome`]: no halt, and no equivocation evidence (a validator that lost an
/// unsynced vote and voted differently after the restart would be caught by the others).
pub fn simulate_power_loss(validators: u32, seed: u64, link: Link, at: u64, target: u64) -> Outcome {
    println!("power-loss simulation: validators={validators} seed={seed} (replay with BASTION_SEED={seed})");
    let limits = BlockLimits { max_body_bytes: 1 << 20, ..BlockLimits::default() };
    let cfg = deterministic::Config::new()
        .with_start_time(sim_start_time())
        .with_seed(seed)
        .with_timeout(Some(Duration::from_secs(3_600)));
    let ledgers: Vec<Ledger> = (0..validators).map(|_| Ledger::default()).collect();
    let dirs: Vec<tempfile::TempDir> = (0..validators).map(|_| tempfile::tempdir().unwrap()).collect();
    // The genesis lists the fixture's identity keys (the same in both runs: one fixture).
    let validator = |i: usize, me: &ed25519::PublicKey, scheme: &Multisig, seeds: &[[u8; 32]]| {
        let genesis = sim_genesis_for(seeds, None);
        Validator {
            index: i,
            me: me.clone(),
            scheme: scheme.clone(),
            dir: dirs[i].path().to_path_buf(),
            observer: sim_observer(&genesis, seed, i, &[]),
            genesis,
            limits,
            ledger: ledgers[i].clone(),
            fault: None,
            key: (i as u16, seeds[i]),
            publisher: None,
            bridge_feed: None,
        }
    };
    let everyone: Vec<usize> = (0..validators as usize).collect();
    let (ledgers, dirs, everyone, validator, link) = (&ledgers, &dirs, &everyone, &validator, &link);
    let ((participants, schemes, seeds), checkpoint) =
        deterministic::Runner::new(cfg).start_and_recover(|mut context| async move {
            let Fixture { participants, schemes, private_keys, .. } =
                bls12381_multisig::fixture::<MinSig, _>(&mut context, NAMESPACE, validators);
            let seeds = identity_seeds(&private_keys);
            let oracle = network(&context, &participants, link, &limits).await;
            let mut nodes = Vec::new();
            for (i, me) in participants.iter().enumerate() {
                nodes.push(validator(i, me, &schemes[i], &seeds).start(&context, &oracle, 0).await);
            }
            wait(&context, ledgers, None, None, at, everyone).await;
            println!(
                "t={:?}: power lost at heights {:?}",
                now(&context),
                ledgers.iter().map(Ledger::height).collect::<Vec<_>>()
            );
            (participants, schemes, seeds)
        });
    deterministic::Runner::from(checkpoint).start(|context| async move {
        let oracle = network(&context, &participants, link, &limits).await;
        let mut nodes = Vec::new();
        for (i, me) in participants.iter().enumerate() {
            nodes.push(validator(i, me, &schemes[i], &seeds).start(&context, &oracle, 1).await);
        }
        wait(&context, ledgers, None, None, target, everyone).await;
        let elapsed = now(&context);
        println!("t={elapsed:?}: all validators finalized {target} after the restart");
        check_nobody_blocked(ledgers, None);
        for l in ledgers {
            check_index_bound(&l.oracle_records(), None);
        }
        let mut context = context;
        let genesis = sim_genesis_for(&seeds, None);
        let state = State::from_genesis(&genesis).unwrap();
        let evidence =
            dirs.iter().map(|d| read_evidence(&mut context, d.path(), &schemes[0], &state)).collect();
        // Any member's scheme verifies certificates.
        let checker = sim_checker(schemes[0].clone(), &genesis, limits);
        outcome(ledgers, elapsed, evidence, checker, genesis)
    })
}

/// Simulated time since the start.
pub(crate) fn now(context: &deterministic::Context) -> Duration {
    context.current().duration_since(std::time::UNIX_EPOCH).unwrap()
}

/// Sets (`Some`) or removes (`None`) every link between `side` and the other validators.
async fn cross_links(
    oracle: &Oracle<ed25519::PublicKey, deterministic::Context>,
    participants: &[ed25519::PublicKey],
    side: &[usize],
    link: Option<&Link>,
) {
    for a in side {
        for b in (0..participants.len()).filter(|b| !side.contains(b)) {
            for (x, y) in [(*a, b), (b, *a)] {
                let (x, y) = (participants[x].clone(), participants[y].clone());
                match link {
                    Some(l) => oracle.add_link(x, y, l.clone()).await.unwrap(),
                    None => oracle.remove_link(x, y).await.unwrap(),
                }
            }
        }
    }
}

/// Sleeps `d` of simulated time, checking halts and faults every 500 ms.
pub(crate) async fn sleep_checked(
    context: &deterministic::Context,
    ledgers: &[Ledger],
    faulty: Option<usize>,
    byz: Option<usize>,
    d: Duration,
) {
    let end = now(context) + d;
    while now(context) < end {
        context.sleep(Duration::from_millis(500)).await;
        check_live(ledgers, faulty, byz);
    }
}

/// The liveness checker of a partition: see [`Partition`].
#[allow(clippy::too_many_arguments)]
async fn partition_and_heal(
    context: &deterministic::Context,
    oracle: &Oracle<ed25519::PublicKey, deterministic::Context>,
    participants: &[ed25519::PublicKey],
    link: &Link,
    ledgers: &[Ledger],
    faulty: Option<usize>,
    byz: Option<usize>,
    honest: &[usize],
    p: &Partition,
) {
    let n = participants.len();
    let quorum = n - (n - 1) / 3;
    wait(context, ledgers, faulty, byz, p.at, honest).await;
    cross_links(oracle, participants, &p.side, None).await;
    let heights = || honest.iter().map(|&i| ledgers[i].height()).collect::<Vec<_>>();
    println!("t={:?}: partitioned {:?} from the rest; heights {:?}", now(context), p.side, heights());
    // Let what was already certified before the cut land, then watch.
    sleep_checked(context, ledgers, faulty, byz, Duration::from_secs(3)).await;
    let before = heights();
    sleep_checked(context, ledgers, faulty, byz, p.duration).await;
    let after = heights();
    println!("t={:?}: during the split heights went {before:?} -> {after:?}", now(context));
    let rest: Vec<usize> = (0..n).filter(|i| !p.side.contains(i)).collect();
    for group in [&p.side, &rest] {
        if group.len() >= quorum {
            // The side's chain advances: its highest finalized height. A member can trail by a
            // block it is still fetching (with an exact quorum and loss, every vote counts); it
            // must catch up after the heal, which is checked below.
            let side_height = |h: &[u64]| {
                honest.iter().zip(h).filter(|(i, _)| group.contains(i)).map(|(_, h)| *h).max().unwrap_or(0)
            };
            let (b, a) = (side_height(&before), side_height(&after));
            assert!(
                a >= b + p.min_progress,
                "the quorum side {group:?} finalized only {} heights during the split (needs {})",
                a - b,
                p.min_progress
            );
        }
        if group.len() < quorum {
            for (k, &i) in honest.iter().enumerate().filter(|(_, i)| group.contains(i)) {
                assert_eq!(after[k], before[k], "validator {i} finalized without a quorum during the split");
            }
        }
    }
    let top = after.iter().copied().max().unwrap_or(0);
    cross_links(oracle, participants, &p.side, Some(link)).await;
    let healed = now(context);
    println!("t={healed:?}: healed at highest height {top}");
    loop {
        context.sleep(Duration::from_millis(100)).await;
        check_live(ledgers, faulty, byz);
        let elapsed = now(context) - healed;
        if honest.iter().all(|&i| ledgers[i].height() > top) {
            println!(
                "every validator finalized past {top} {elapsed:?} after the heal; heights {:?}",
                heights()
            );
            break;
        }
        assert!(
            elapsed <= p.heal_within,
            "no new finalized height everywhere within {:?} of the heal; heights {:?}",
            p.heal_within,
            heights()
        );
    }
}

/// Without a Byzantine leader on the block channel, no validator blocked a peer: honest
/// validators (crashed, lagging, partitioned, lossy) never send what gets a peer blocked.
pub(crate) fn check_nobody_blocked(ledgers: &[Ledger], faulty: Option<usize>) {
    for (i, l) in ledgers.iter().enumerate().filter(|(i, _)| Some(*i) != faulty) {
        let blocked = l.totals().peers_blocked;
        assert_eq!(blocked.total(), 0, "validator {i} blocked a peer with no Byzantine leader: {blocked:?}");
    }
}

/// No honest validator halted, and any equivocation recorded is against the Byzantine one.
pub(crate) fn check_live(ledgers: &[Ledger], faulty: Option<usize>, byz: Option<usize>) {
    for (i, l) in ledgers.iter().enumerate() {
        if Some(i) == faulty {
            continue;
        }
        assert!(l.halted().is_none(), "validator {i} halted: {:?}", l.halted());
        for f in l.faults() {
            let against_byzantine = byz.is_some_and(|b| f.ends_with(&format!(" by signer {b}")));
            assert!(against_byzantine, "validator {i} saw equivocation by an honest validator: {f}");
        }
    }
}

/// Sleeps until every validator in `who` has finalized `height`; fails on any halt.
pub(crate) async fn wait(
    context: &deterministic::Context,
    ledgers: &[Ledger],
    faulty: Option<usize>,
    byz: Option<usize>,
    height: u64,
    who: &[usize],
) {
    loop {
        context.sleep(Duration::from_millis(500)).await;
        check_live(ledgers, faulty, byz);
        if who.iter().all(|&i| ledgers[i].height() >= height) {
            break;
        }
    }
}

/// Safety: one digest per height on every validator. Agreement: one state root per height.
/// Exactly once: executed heights are contiguous from 1. Returns (txs, accepted, fills) on the
/// common chain.
pub fn check(ledgers: &[BTreeMap<u64, Finalized>], target: u64) -> (usize, usize, usize) {
    let mut seen: BTreeMap<u64, Finalized> = BTreeMap::new();
    for (i, ledger) in ledgers.iter().enumerate() {
        let heights: Vec<u64> = ledger.keys().copied().collect();
        assert_eq!(heights, (1..=heights.len() as u64).collect::<Vec<_>>(), "validator {i} skipped a height");
        assert!(heights.len() as u64 >= target, "validator {i} finalized only {} heights", heights.len());
        for (h, f) in ledger {
            match seen.get(h) {
                None => {
                    seen.insert(*h, *f);
                }
                Some(first) => {
                    assert_eq!(
                        first.digest, f.digest,
                        "safety: two finalized blocks at height {h} (validator {i})"
                    );
                    assert_eq!(
                        first.root, f.root,
                        "agreement: two state roots at height {h} (validator {i})"
                    );
                    assert_eq!(first, f, "validators executed height {h} differently (validator {i})");
                }
            }
        }
    }
    let txs = seen.values().map(|f| f.txs).sum();
    let accepted = seen.values().map(|f| f.txs - f.rejected).sum();
    let fills = seen.values().map(|f| f.fills).sum();
    println!("common chain: {} heights, {txs} txs, {accepted} accepted, {fills} fills", seen.len());
    assert!(accepted > 0, "no transaction was accepted: the exchange did no work");
    (txs, accepted, fills)
}

pub fn link(latency_ms: u64, jitter_ms: u64, success: commonware_utils::Probability) -> Link {
    Link {
        latency: Duration::from_millis(latency_ms),
        jitter: Duration::from_millis(jitter_ms),
        success_rate: success,
    }
}

/// The index bound: after every finalized block in which an underlying's index moved without
/// being clamped by the max-move guard, the new index lies within the lowest and highest
/// price of the honest validators' (all but `liar`) stored observations that are fresh at that
/// block. Returns how many moves were checked.
pub fn check_index_bound(records: &BTreeMap<u64, OracleRecord>, liar: Option<usize>) -> usize {
    let mut checked = 0;
    for (h, r) in records {
        for (u, price, clamped) in &r.moves {
            if *clamped {
                continue;
            }
            let honest = |v: u16| Some(usize::from(v)) != liar;
            let Some((lo, hi)) = r.honest_range(*u, honest) else {
                panic!(
                    "index bound: underlying {} moved to {price} at height {h} with no fresh honest observation",
                    u.0
                )
            };
            assert!(
                (lo..=hi).contains(price),
                "index bound: underlying {} moved to {price} at height {h}, outside the honest observations \
                 [{lo}, {hi}] (liar {liar:?}): {r:?}",
                u.0
            );
            checked += 1;
        }
    }
    checked
}
