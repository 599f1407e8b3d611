//! Twins ("Twins: BFT Systems Made Robust", Bano et al.; the technique Diem and Aptos test
//! with) in the whole-node simulation: one Byzantine validator run as *two* instances of the
//! real Bastion node (application, store and Simplex engine) that share its keys (identity,
//! BLS and observation key). Each instance behaves as an honest node would in its own view of
//! the network, so when the key leads, each proposes a *valid* Bastion block for that view,
//! and each votes for what it saw: two different blocks and two different votes under one key,
//! which every honest verifier accepts on its own. The secondary twin plays
//! [`Trick::Twin`] (its blocks leave out the honest block's last transaction), so the two
//! proposals differ even when both instances build at the same instant on the same parent.
//! (`Byzantine::Equivocator` in [`crate::sim`] is commonware's mock: opaque payloads that no
//! honest validator can verify.)
//!
//! **The network.** The simulated network registers one peer per public key, so the key's
//! channels are registered once and split in two with commonware-p2p's own twins support
//! (`simulated::Sender::split_with` and `simulated::Receiver::split_with`): a *forwarder*
//! decides to whom each half's sends go, a *router* to which half each received message goes.
//! Both follow one phase that the driver changes on the schedule ([`Twins::splits`]):
//!
//! - *healed*: both twins send to everyone and hear everything (the key equivocates openly:
//!   honest validators see both of its votes in a view the key leads, and record evidence);
//! - *split*: the honest validators are cut into a primary and a secondary group (every link
//!   between the two groups removed); the primary twin talks only with the primary group, the
//!   secondary twin only with the secondary group, on every channel (votes, certificates,
//!   resolver, blocks, observations, bridge). A twin that leads proposes to its group only.
//!
//! **Blocking.** Simplex blocks the signer of conflicting votes, so an honest validator that
//! sees both twins' votes in one view blocks the key (the key's own twins may block it too:
//! one receives a certificate carrying the other's vote). With
//! [`Twins::disconnect_on_block`], as in production, that disconnects the key from it: the
//! twins are silenced towards whoever caught them, and a schedule that splits the network from
//! the start lets them equivocate hidden until the heal. Without it (as commonware's own twins
//! campaign runs), they go on talking after being caught: the stronger adversary.
//!
//! **Checked** (by the harness as it runs, and by `twins_run` in `tests/simulation.rs` on the
//! [`TwinsOutcome`]): no honest validator halts; after the last heal every honest validator
//! finalizes past the highest height finalized anywhere within [`Twins::heal_within`], and
//! reaches the run's target; one block and one state root per height among the honest
//! validators (and the twins' own chains agree with theirs); evidence only against the twins'
//! key, every proof verifying; nobody blocks an honest validator.
//!
//! **Why not commonware's `simplex::mocks::twins` scenarios.** commonware `=2026.10.0` ships a
//! Twins framework: the split channels used here, and a generator of scripted scenarios
//! (`twins::cases`: per-view recipient masks and leaders, routed by the view a vote or
//! certificate carries, with `twins::Elector` replacing the leader schedule). Its scenarios
//! route only messages that carry a view: its own campaign runs the mock application, whose
//! blocks travel through an in-memory relay, and gives the twins an inert resolver. A Bastion
//! twin also speaks on the block, observation, bridge and resolver channels, none of which
//! carries a view, and a block must reach exactly the validators its proposal reached. So
//! the schedule here is by simulated time, one phase for every channel at once (and honest
//! links cut to match), with the production leader schedule (`crate::engine::config`'s
//! round robin, untouched); the scenario types' fields are private, so they could not be
//! translated into such a schedule either.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::{
    BlockLimits, Fault, Finalized, Ledger, Trick,
    sim::{
        Channels, NAMESPACE, Outcome, SimChannels, Validator, check_live, identity_seeds, network_with, now,
        outcome, read_evidence, register, sim_checker, sim_genesis_for, sim_observer, sim_start_time, wait,
    },
};
use bastion_exchange::State;
use commonware_consensus::simplex::scheme::bls12381_multisig;
use commonware_cryptography::{bls12381::primitives::variant::MinSig, certificate::mocks::Fixture, ed25519};
use commonware_p2p::{
    Recipients,
    simulated::{Link, Oracle, SplitOrigin, SplitTarget},
};
use commonware_runtime::{Clock as _, Runner as _, Supervisor as _, deterministic};
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

/// One split of the network (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// Healed time before it: since the start for the first split, since the previous split's
    /// heal for the others.
    pub after: Duration,
    /// How long it lasts.
    pub duration: Duration,
    /// The honest validators the primary twin talks with.
    pub primary: Vec<usize>,
    /// The honest validators the secondary twin talks with (the rest of the honest ones).
    pub secondary: Vec<usize>,
}

/// A twins run: validator `twin` is two instances sharing its keys, the network follows
/// `splits` in turn and then stays healed.
#[derive(Clone, Debug)]
pub struct Twins {
    /// The validator whose keys the twins share.
    pub twin: usize,
    /// The schedule.
    pub splits: Vec<Split>,
    /// After the last heal, every honest validator must finalize a height above the highest
    /// one finalized anywhere (twins included) within this much simulated time.
    pub heal_within: Duration,
    /// ... and go on to finalize this many heights above it (at least the run's target), so
    /// the key leads views with both twins in sync.
    pub after_heal: u64,
    /// Whether a peer that someone blocks is disconnected from it (production: an honest
    /// validator that catches the key's conflicting votes blocks it, which silences the twins
    /// towards it from then on). `false` keeps them talking after they are caught, as
    /// commonware's own twins campaign does: the stronger adversary.
    pub disconnect_on_block: bool,
}

impl Twins {
    /// A schedule derived from `seed`, for a network whose one-way latency is `latency`: the
    /// twin, whether blocking disconnects (half the time), then 1 to 3 splits, each cutting the
    /// honest validators into two random non-empty groups. Durations are counted in views of
    /// `2 × latency + 10 ms` (about the fastest a view goes): each split lasts at least 8 views
    /// and all together at most 40, after 5-30 views healed (the first split at the very start
    /// a quarter of the time: the twins hidden from the start). The bound is the peers' block
    /// log: an honest validator on the side without a quorum falls behind by up to a height per
    /// view, and one further behind than its peers' log reaches (about 50 heights with
    /// [`crate::sim::sim_store_config`]) could only rejoin by state sync, which this harness
    /// does not run.
    pub fn seeded(validators: u32, seed: u64, latency: Duration) -> Twins {
        let n = validators as usize;
        let view = 2 * latency + Duration::from_millis(10);
        let views = |k: u64| view * u32::try_from(k).unwrap_or(u32::MAX);
        let mut m = Mix::new(seed);
        let twin = m.range(0, n as u64 - 1) as usize;
        let disconnect_on_block = m.range(0, 1) == 1;
        let honest: Vec<usize> = (0..n).filter(|&i| i != twin).collect();
        let count = m.range(1, 3);
        let splits = (0..count)
            .map(|k| {
                let mut order = honest.clone();
                for k in (1..order.len()).rev() {
                    order.swap(k, m.range(0, k as u64) as usize);
                }
                let cut = m.range(1, order.len() as u64 - 1) as usize;
                let (mut primary, mut secondary) = (order[..cut].to_vec(), order[cut..].to_vec());
                primary.sort_unstable();
                secondary.sort_unstable();
                let after = if k == 0 && m.range(0, 3) == 0 { 0 } else { m.range(5, 30) };
                Split { after: views(after), duration: views(m.range(8, 40 / count)), primary, secondary }
            })
            .collect();
        Twins {
            twin,
            splits,
            heal_within: Duration::from_secs(30),
            after_heal: 2 * n as u64,
            disconnect_on_block,
        }
    }
}

/// What a twins run produced.
#[derive(Debug)]
pub struct TwinsOutcome {
    /// Per validator, as [`crate::sim::simulate_outcome`] returns it; at the twin's index, the
    /// primary twin's.
    pub outcome: Outcome,
    /// The validator whose keys the twins share.
    pub twin: usize,
    /// The secondary twin's finalized chain, and why it halted (if it did).
    pub secondary: BTreeMap<u64, Finalized>,
    pub secondary_halt: Option<String>,
    /// Every (blocker, blocked) pair of the network, by validator index.
    pub blocked: Vec<(usize, usize)>,
    /// Per split: every validator's finalized height (at the twin's index, the primary twin's)
    /// when it started and when it healed.
    pub split_heights: Vec<(Vec<u64>, Vec<u64>)>,
    /// The highest height finalized anywhere at the last heal, and the height every honest
    /// validator then reached.
    pub healed_at: u64,
    pub reached: u64,
}

/// Whom the twins talk with now (see the module docs).
#[derive(Clone, Debug, Default)]
enum Phase {
    #[default]
    Healed,
    Split {
        primary: Vec<ed25519::PublicKey>,
        secondary: Vec<ed25519::PublicKey>,
    },
}

type Shared = Arc<Mutex<Phase>>;

/// The key's two halves of its channels: sends go to the half's group, received messages to
/// the half (or halves) whose group the sender is in.
#[allow(clippy::type_complexity)]
fn split(
    context: &deterministic::Context,
    channels: SimChannels,
    phase: &Shared,
) -> (
    Channels<
        impl commonware_p2p::Sender<PublicKey = ed25519::PublicKey>,
        impl commonware_p2p::Receiver<PublicKey = ed25519::PublicKey>,
    >,
    Channels<
        impl commonware_p2p::Sender<PublicKey = ed25519::PublicKey>,
        impl commonware_p2p::Receiver<PublicKey = ed25519::PublicKey>,
    >,
) {
    let forward = {
        let phase = phase.clone();
        move |origin: SplitOrigin, to: &Recipients<ed25519::PublicKey>, _: &commonware_runtime::IoBuf| {
            let Phase::Split { primary, secondary } = &*phase.lock().unwrap() else {
                return Some(to.clone());
            };
            let group = match origin {
                SplitOrigin::Primary => primary,
                SplitOrigin::Secondary => secondary,
            };
            Some(Recipients::Some(match to {
                Recipients::All => group.clone(),
                Recipients::Some(some) => some.iter().filter(|p| group.contains(p)).cloned().collect(),
                Recipients::One(p) => group.iter().filter(|g| *g == p).cloned().collect(),
            }))
        }
    };
    let route = |phase: Shared| {
        move |(from, _): &(ed25519::PublicKey, commonware_runtime::IoBuf)| match &*phase.lock().unwrap() {
            Phase::Healed => SplitTarget::Both,
            Phase::Split { primary, .. } if primary.contains(from) => SplitTarget::Primary,
            Phase::Split { secondary, .. } if secondary.contains(from) => SplitTarget::Secondary,
            Phase::Split { .. } => SplitTarget::None,
        }
    };
    let pair = |name: &'static str, (sender, receiver): SimPair| {
        let (sa, sb) = sender.split_with(forward.clone());
        let (ra, rb) = receiver
            .split_with(context.child("twin_split").with_attribute("channel", name), route(phase.clone()));
        ((sa, ra), (sb, rb))
    };
    let Channels { votes, certs, resolver, blocks, observations, bridge } = channels;
    let (votes, certs, resolver) = (pair("votes", votes), pair("certs", certs), pair("resolver", resolver));
    let (blocks, observations, bridge) =
        (pair("blocks", blocks), pair("observations", observations), pair("bridge", bridge));
    (
        Channels {
            votes: votes.0,
            certs: certs.0,
            resolver: resolver.0,
            blocks: blocks.0,
            observations: observations.0,
            bridge: bridge.0,
        },
        Channels {
            votes: votes.1,
            certs: certs.1,
            resolver: resolver.1,
            blocks: blocks.1,
            observations: observations.1,
            bridge: bridge.1,
        },
    )
}

type SimPair = (
    commonware_p2p::simulated::Sender<ed25519::PublicKey, deterministic::Context>,
    commonware_p2p::simulated::Receiver<ed25519::PublicKey>,
);

/// Sets (`Some`) or removes (`None`) every link between the validators of `a` and those of `b`.
async fn links_between(
    oracle: &Oracle<ed25519::PublicKey, deterministic::Context>,
    participants: &[ed25519::PublicKey],
    a: &[usize],
    b: &[usize],
    link: Option<&Link>,
) {
    for &x in a {
        for &y in b {
            for (from, to) in [(x, y), (y, x)] {
                let (from, to) = (participants[from].clone(), participants[to].clone());
                match link {
                    Some(l) => oracle.add_link(from, to, l.clone()).await.unwrap(),
                    None => oracle.remove_link(from, to).await.unwrap(),
                }
            }
        }
    }
}

/// Runs `validators` validators, `twins.twin` as twins, over `link` (see the module docs); the
/// honest ones must reach `target`. Checks as the run goes: no honest validator halts, and any
/// evidence an honest one records names the twins' key; after the last heal, every honest
/// validator finalizes above the highest height finalized anywhere within
/// [`Twins::heal_within`]. The seed is printed; safety, agreement and evidence are for the
/// caller to check on the [`TwinsOutcome`].
pub fn simulate_twins(validators: u32, seed: u64, link: Link, target: u64, twins: &Twins) -> TwinsOutcome {
    let n = validators as usize;
    let Twins { twin, splits, heal_within, after_heal, disconnect_on_block } = twins.clone();
    assert!(twin < n, "the twin must be a validator");
    let honest: Vec<usize> = (0..n).filter(|&i| i != twin).collect();
    for s in &splits {
        let mut all: Vec<usize> = s.primary.iter().chain(&s.secondary).copied().collect();
        all.sort_unstable();
        assert_eq!(all, honest, "a split cuts the honest validators in two: {s:?}");
    }
    println!(
        "twins simulation: validators={n} twin={twin} seed={seed} (replay with BASTION_SEED={seed}); \
         splits {splits:?}; blocked peers disconnected: {disconnect_on_block}"
    );
    let cfg = deterministic::Config::new()
        .with_start_time(sim_start_time())
        .with_seed(seed)
        .with_timeout(Some(Duration::from_secs(3_600)));
    deterministic::Runner::new(cfg).start(|mut context| async move {
        let t0 = now(&context);
        let limits = BlockLimits { max_body_bytes: 1 << 20, ..BlockLimits::default() };
        let Fixture { participants, schemes, private_keys, verifier } =
            bls12381_multisig::fixture::<MinSig, _>(&mut context, NAMESPACE, validators);
        let seeds = identity_seeds(&private_keys);
        let genesis = sim_genesis_for(&seeds, None);
        let checker = sim_checker(verifier, &genesis, limits);
        let oracle = network_with(&context, &participants, &link, &limits, disconnect_on_block).await;

        // Index `n`: the secondary twin's.
        let dirs: Vec<tempfile::TempDir> = (0..=n).map(|_| tempfile::tempdir().unwrap()).collect();
        let ledgers: Vec<Ledger> = (0..=n).map(|_| Ledger::default()).collect();
        let validator = |i: usize, slot: usize, fault: Option<Fault>| Validator {
            index: i,
            me: participants[i].clone(),
            scheme: schemes[i].clone(),
            dir: dirs[slot].path().to_path_buf(),
            genesis: genesis.clone(),
            limits,
            ledger: ledgers[slot].clone(),
            fault,
            key: (i as u16, seeds[i]),
            observer: sim_observer(&genesis, seed, i, &[]),
            publisher: None,
            bridge_feed: None,
        };
        let mut nodes = Vec::new();
        for &i in &honest {
            nodes.push(validator(i, i, None).start(&context, &oracle, 0).await);
        }
        let phase: Shared = Arc::default();
        let (primary, secondary) = split(&context, register(&oracle, &participants[twin]).await, &phase);
        let ctx = |half: &'static str| {
            context.child("twin").with_attribute("index", twin).with_attribute("half", half)
        };
        nodes.push(validator(twin, twin, None).launch(
            ctx("primary"),
            &oracle,
            primary,
            format!("simplex-{twin}-primary"),
            0,
        ));
        nodes.push(validator(twin, n, Some(Fault::ByzantineLeader(vec![Trick::Twin]))).launch(
            ctx("secondary"),
            &oracle,
            secondary,
            format!("simplex-{twin}-secondary"),
            0,
        ));
        println!("validator {twin} runs as twins (the secondary plays {:?})", Trick::Twin);

        let watched = &ledgers[..n];
        let (faulty, byz) = (Some(twin), Some(twin));
        let heights = || ledgers.iter().map(Ledger::height).collect::<Vec<_>>();
        let mut split_heights = Vec::new();
        for s in &splits {
            sleep_exactly(&context, watched, twin, s.after).await;
            let keys = |g: &[usize]| g.iter().map(|&i| participants[i].clone()).collect();
            *phase.lock().unwrap() =
                Phase::Split { primary: keys(&s.primary), secondary: keys(&s.secondary) };
            links_between(&oracle, &participants, &s.primary, &s.secondary, None).await;
            let before = heights();
            println!(
                "t={:?}: split: twin {twin} primary with {:?}, secondary with {:?}; heights {before:?} \
                 (last: the secondary twin)",
                now(&context) - t0,
                s.primary,
                s.secondary
            );
            sleep_exactly(&context, watched, twin, s.duration).await;
            *phase.lock().unwrap() = Phase::Healed;
            links_between(&oracle, &participants, &s.primary, &s.secondary, Some(&link)).await;
            let after = heights();
            println!("t={:?}: healed; heights {after:?}", now(&context) - t0);
            split_heights.push((before[..n].to_vec(), after[..n].to_vec()));
        }
        let healed_at = heights().into_iter().max().unwrap_or(0);
        let healed = now(&context);
        loop {
            context.sleep(Duration::from_millis(100)).await;
            check_live(watched, faulty, byz);
            if honest.iter().all(|&i| ledgers[i].height() > healed_at) {
                println!(
                    "every honest validator finalized past {healed_at} {:?} after the heal; heights {:?}",
                    now(&context) - healed,
                    heights()
                );
                break;
            }
            assert!(
                now(&context) - healed <= heal_within,
                "liveness: no new finalized height at every honest validator within {heal_within:?} of the \
                 heal; heights {:?}",
                heights()
            );
        }
        let reached = target.max(healed_at + after_heal);
        wait(&context, watched, faulty, byz, reached, &honest).await;
        let elapsed = now(&context);
        println!("simulated time: {:?}; heights {:?}", elapsed - t0, heights());

        let index = |p: &ed25519::PublicKey| participants.iter().position(|q| q == p).unwrap();
        let blocked =
            oracle.blocked().await.unwrap().iter().map(|(by, who)| (index(by), index(who))).collect();
        let state = State::from_genesis(&genesis).unwrap();
        let evidence =
            dirs[..n].iter().map(|d| read_evidence(&mut context, d.path(), &schemes[0], &state)).collect();
        let out = outcome(watched, elapsed, evidence, checker, genesis);
        drop(nodes);
        TwinsOutcome {
            outcome: out,
            twin,
            secondary: ledgers[n].finalized(),
            secondary_halt: ledgers[n].halted(),
            blocked,
            split_heights,
            healed_at,
            reached,
        }
    })
}

/// Sleeps exactly `d` of simulated time, checking halts and evidence every 100 ms at most.
async fn sleep_exactly(context: &deterministic::Context, ledgers: &[Ledger], twin: usize, d: Duration) {
    let end = now(context) + d;
    loop {
        let left = end.saturating_sub(now(context));
        if left.is_zero() {
            break;
        }
        context.sleep(left.min(Duration::from_millis(100))).await;
        check_live(ledgers, Some(twin), Some(twin));
    }
}

/// SplitMix64, for [`Twins::seeded`].
struct Mix(u64);

impl Mix {
    fn new(seed: u64) -> Self {
        // Decorrelated from the runtime, which is seeded with the same number.
        Mix(seed ^ 0x7a11_5eed_0f7e_a5e5)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}
