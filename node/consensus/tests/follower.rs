//! The chain follower: certified blocks (real BLS multisig certificates over real blocks that the
//! real exchange executed) checked, refused and counted, delivered once in order, executed into a
//! fresh store with the validators' roots; the certificate log and range answers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bastion_consensus::{
    BlockLimits, CertChecker, CertLog, ChainBlock, Follower, Multisig, Offered, Published, Publisher, Ready,
    Refusal, chain_tip, encode_certified, encode_range, execute, genesis_block, serve_range,
    sim::{Run, link, seeds, sim_genesis, sim_store_config, simulate_outcome},
};
use bastion_store::Store;
use bytes::Bytes;
use commonware_codec::{Decode as _, Encode as _};
use commonware_consensus::{
    simplex::{
        scheme::bls12381_multisig,
        types::{Finalization, Finalize, Proposal},
    },
    types::{Epoch, Round, View},
};
use commonware_cryptography::{
    bls12381::primitives::variant::MinSig,
    certificate::{Scheme as _, mocks::Fixture},
    sha256::Digest,
};
use commonware_parallel::Sequential;
use commonware_utils::{TestRng, non_empty, probability};
use proptest::test_runner::{Config as PropConfig, RngAlgorithm, TestRng as PropRng, TestRunner};
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

const NS: &[u8] = b"bastion:follower-test";
const OTHER_NS: &[u8] = b"bastion:another-chain";

fn limits() -> BlockLimits {
    BlockLimits { max_body_bytes: 1 << 20, ..BlockLimits::default() }
}

/// Validators' schemes for `namespace` from key seed `seed` (same seed: same keys).
fn fixture(seed: u64, namespace: &[u8]) -> Fixture<Multisig> {
    bls12381_multisig::fixture::<MinSig, _>(&mut TestRng::new(seed), namespace, 4)
}

/// A finalization of `digest` at view `view` signed by a quorum (3 of 4) of `f`.
fn certify(f: &Fixture<Multisig>, view: u64, digest: Digest) -> Vec<u8> {
    let proposal = Proposal::new(Round::new(Epoch::new(0), View::new(view)), View::new(view - 1), digest);
    let votes: Vec<_> =
        f.schemes.iter().take(3).map(|s| Finalize::sign(s, proposal.clone()).unwrap()).collect();
    Finalization::from_finalizes(&f.schemes[0], non_empty![@&votes], &Sequential).unwrap().encode().to_vec()
}

fn wire(block: &ChainBlock) -> Bytes {
    let mut out = vec![0u8];
    out.extend_from_slice(&block.encode());
    Bytes::from(out)
}

/// `n` empty blocks executed by the real exchange into `store` (committed): a real chain.
fn build_chain(store: &mut Store, n: u64) -> Vec<ChainBlock> {
    let g = sim_genesis();
    let mut parent = genesis_block(&g).unwrap().id();
    let mut out = Vec::new();
    for h in 1..=n {
        let block =
            bastion_types::Block { height: h, timestamp_ms: g.timestamp_ms + h * 100, ..Default::default() };
        let b = ChainBlock::new(parent, store.state().state_root(), block, Vec::new(), &limits()).unwrap();
        execute(store, &b).unwrap();
        store.commit().unwrap();
        parent = b.id();
        out.push(b);
    }
    out
}

struct Chain {
    _dir: tempfile::TempDir,
    store: Store,
    blocks: Vec<ChainBlock>,
    f: Fixture<Multisig>,
    checker: CertChecker,
}

fn chain(n: u64) -> Chain {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(dir.path(), &sim_genesis(), sim_store_config()).unwrap();
    let blocks = build_chain(&mut store, n);
    let f = fixture(7, NS);
    let genesis = genesis_block(&sim_genesis()).unwrap().id();
    let checker = CertChecker::with_verifier(f.verifier.clone(), limits(), genesis);
    Chain { _dir: dir, store, blocks, f, checker }
}

impl Chain {
    fn message(&self, i: usize) -> Vec<u8> {
        let b = &self.blocks[i];
        encode_certified(&wire(b), &certify(&self.f, b.height_u64(), b.id()))
    }
}

/// Fisher-Yates with splitmix64: a deterministic shuffle.
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        items.swap(i, (z % (i as u64 + 1)) as usize);
    }
}

fn refusals(c: &CertChecker) -> BTreeMap<&'static str, u64> {
    c.refusals().into_iter().filter(|(_, n)| *n > 0).collect()
}

#[test]
fn certified_blocks_verify_and_forgeries_are_refused_and_counted() {
    let c = chain(3);
    for i in 0..3 {
        let v = c.checker.check_block(&c.message(i)).unwrap();
        assert_eq!(v.block, c.blocks[i]);
    }
    let b = &c.blocks[1];
    // Forged: another validator set signs it.
    let forged = fixture(8, NS);
    let m = encode_certified(&wire(b), &certify(&forged, 2, b.id()));
    assert_eq!(c.checker.check_block(&m).unwrap_err(), Refusal::BadCertificate);
    // Another chain: the same keys under another chain id's namespace.
    let other = fixture(7, OTHER_NS);
    assert_eq!(other.verifier.participants(), c.f.verifier.participants(), "same keys");
    let m = encode_certified(&wire(b), &certify(&other, 2, b.id()));
    assert_eq!(c.checker.check_block(&m).unwrap_err(), Refusal::BadCertificate);
    // A block that does not match its certificate: block 3 with block 2's certificate.
    let m = encode_certified(&wire(&c.blocks[2]), &certify(&c.f, 2, b.id()));
    assert_eq!(c.checker.check_block(&m).unwrap_err(), Refusal::DigestMismatch);
    // A validly certified height-1 block on another genesis.
    let g = sim_genesis();
    let block = bastion_types::Block { height: 1, timestamp_ms: g.timestamp_ms + 1, ..Default::default() };
    let stray = ChainBlock::new(Digest::from([9u8; 32]), [0u8; 32], block, Vec::new(), &limits()).unwrap();
    let m = encode_certified(&wire(&stray), &certify(&c.f, 1, stray.id()));
    assert_eq!(c.checker.check_block(&m).unwrap_err(), Refusal::WrongChain);
    // Garbage.
    assert!(matches!(c.checker.check_block(b"hello").unwrap_err(), Refusal::Malformed(_)));
    assert!(matches!(c.checker.check_block(&[]).unwrap_err(), Refusal::Malformed(_)));
    let counted = refusals(&c.checker);
    assert_eq!(
        counted,
        BTreeMap::from([
            ("bad_certificate", 2),
            ("digest_mismatch", 1),
            ("wrong_chain", 1),
            ("malformed", 2)
        ]),
        "every refusal counted by reason"
    );
    // Clones share the counters.
    let clone = c.checker.clone();
    let _ = clone.check_block(b"x");
    assert_eq!(refusals(&c.checker)["malformed"], 3);
}

/// Random bytes and random mutations of a valid message never panic and are always refused.
#[test]
fn garbage_and_mutations_are_refused_without_panic() {
    let seed: u64 = std::env::var("BASTION_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    println!("proptest seed {seed} (replay with BASTION_SEED={seed})");
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    let config = PropConfig { cases: 256, failure_persistence: None, ..PropConfig::default() };
    let c = chain(2);
    let good = c.message(1);
    let range = encode_range(&[wire(&c.blocks[0]), wire(&c.blocks[1])], &certify(&c.f, 2, c.blocks[1].id()));
    assert_eq!(c.checker.check_range(&range, 1).unwrap().len(), 2);
    let mut runner = TestRunner::new_with_rng(config.clone(), PropRng::from_seed(RngAlgorithm::ChaCha, &key));
    let strategy = proptest::collection::vec(proptest::num::u8::ANY, 0..600);
    runner
        .run(&strategy, |bytes| {
            assert!(c.checker.check_block(&bytes).is_err());
            assert!(c.checker.check_range(&bytes, 1).is_err());
            Ok(())
        })
        .unwrap();
    let mut runner = TestRunner::new_with_rng(config, PropRng::from_seed(RngAlgorithm::ChaCha, &key));
    let strategy = (0..good.len().max(range.len()), 1u8..=255, 0..8usize);
    runner
        .run(&strategy, |(at, xor, cut)| {
            let mut m = good.clone();
            let i = at % m.len();
            m[i] ^= xor;
            assert!(c.checker.check_block(&m).is_err(), "mutated byte {i} accepted");
            let mut r = range.clone();
            let j = at % r.len();
            r[j] ^= xor;
            assert!(c.checker.check_range(&r, 1).is_err(), "mutated range byte {j} accepted");
            // Truncated or extended.
            assert!(c.checker.check_block(&good[..good.len() - 1 - cut]).is_err());
            let mut longer = good.clone();
            longer.extend(std::iter::repeat_n(xor, cut + 1));
            assert!(c.checker.check_block(&longer).is_err());
            Ok(())
        })
        .unwrap();
    assert!(c.checker.refusals().iter().map(|(_, n)| n).sum::<u64>() > 500);
}

#[test]
fn ranges_are_checked_for_certificate_links_and_start() {
    let c = chain(5);
    let wires: Vec<Bytes> = c.blocks.iter().map(wire).collect();
    let cert4 = certify(&c.f, 5, c.blocks[3].id());
    let ok = c.checker.check_range(&encode_range(&wires[1..4], &cert4), 2).unwrap();
    assert_eq!(ok.iter().map(|r| r.block.height_u64()).collect::<Vec<_>>(), vec![2, 3, 4]);
    assert!(ok[2].certificate.is_some() && ok[0].certificate.is_none() && ok[1].certificate.is_none());
    assert_eq!(
        c.checker.check_range(&encode_range(&wires[1..4], &cert4), 1).unwrap_err(),
        Refusal::WrongStart { want: 1, got: 2 }
    );
    // A hole in the middle: 2, 4 with 4's certificate.
    let holed = encode_range(&[wires[1].clone(), wires[3].clone()], &cert4);
    assert!(matches!(c.checker.check_range(&holed, 2).unwrap_err(), Refusal::NotLinked(_)));
    // A block of another chain spliced below.
    let g = sim_genesis();
    let block = bastion_types::Block { height: 3, timestamp_ms: g.timestamp_ms + 1, ..Default::default() };
    let stray = ChainBlock::new(c.blocks[1].id(), [0u8; 32], block, Vec::new(), &limits()).unwrap();
    let spliced = encode_range(&[wires[1].clone(), wire(&stray), wires[3].clone()], &cert4);
    assert!(matches!(c.checker.check_range(&spliced, 2).unwrap_err(), Refusal::NotLinked(_)));
    // Forged certificate on the last.
    let forged = encode_range(&wires[1..4], &certify(&fixture(8, NS), 5, c.blocks[3].id()));
    assert_eq!(c.checker.check_range(&forged, 2).unwrap_err(), Refusal::BadCertificate);
    // The last block is not the certified one.
    let wrong = encode_range(&wires[1..3], &cert4);
    assert_eq!(c.checker.check_range(&wrong, 2).unwrap_err(), Refusal::DigestMismatch);
}

fn drain(f: &mut Follower) -> Vec<Ready> {
    std::iter::from_fn(|| f.next()).collect()
}

#[test]
fn follower_delivers_out_of_order_and_duplicates_once_in_order() {
    let c = chain(20);
    let genesis = genesis_block(&sim_genesis()).unwrap().id();
    let mut f = Follower::new(0, genesis, 64);
    let mut order: Vec<usize> = (0..20).chain(0..20).chain([3, 7, 7]).collect();
    shuffle(&mut order, 5);
    let mut delivered = Vec::new();
    for i in order {
        let v = c.checker.check_block(&c.message(i)).unwrap();
        let _ = f.offer(v);
        delivered.extend(drain(&mut f).into_iter().map(|r| r.block.height_u64()));
    }
    assert_eq!(delivered, (1..=20).collect::<Vec<_>>());
    let s = f.stats();
    assert_eq!((s.offered, s.delivered, s.duplicates, s.conflicts, s.too_far), (43, 20, 23, 0, 0));
    assert_eq!(f.tip(), (20, c.blocks[19].id()));
    assert_eq!(f.gap(), None);
}

#[test]
fn uncertified_blocks_wait_for_a_certified_descendant_and_the_window_bounds_memory() {
    let c = chain(8);
    let genesis = genesis_block(&sim_genesis()).unwrap().id();
    let mut f = Follower::new(0, genesis, 6);
    // Blocks 1..=5 with no certificate (e.g. a range whose last block is not certified).
    let bare: Vec<Ready> =
        c.blocks[..5].iter().map(|b| Ready { block: b.clone(), certificate: None }).collect();
    assert_eq!(f.offer_range(bare), 5);
    assert!(f.next().is_none(), "an uncertified block was delivered");
    assert_eq!(f.gap(), None);
    // Beyond the window (tip 0 + 6).
    assert_eq!(f.offer(c.checker.check_block(&c.message(7)).unwrap()), Offered::TooFar);
    // Block 6 certified: 1..=6 are final.
    assert_eq!(f.offer(c.checker.check_block(&c.message(5)).unwrap()), Offered::Buffered);
    let got = drain(&mut f);
    assert_eq!(got.iter().map(|r| r.block.height_u64()).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5, 6]);
    assert!(got[..5].iter().all(|r| r.certificate.is_none()) && got[5].certificate.is_some());
    // Now 8 fits; 7 is missing: the gap is 7.
    assert_eq!(f.offer(c.checker.check_block(&c.message(7)).unwrap()), Offered::Buffered);
    assert_eq!(f.gap(), Some((7, 7)));
    assert!(f.next().is_none());
    assert_eq!(f.stats().too_far, 1);
}

#[test]
fn conflicting_blocks_are_refused_and_gaps_filled_by_ranges() {
    let c = chain(8);
    let genesis = genesis_block(&sim_genesis()).unwrap().id();
    let mut f = Follower::new(0, genesis, 16);
    for i in 4..8 {
        assert_eq!(f.offer(c.checker.check_block(&c.message(i)).unwrap()), Offered::Buffered);
    }
    assert_eq!(f.gap(), Some((1, 4)));
    // Another block at height 6, certified (a broken validator set): refused.
    let g = sim_genesis();
    let block = bastion_types::Block { height: 6, timestamp_ms: g.timestamp_ms + 1, ..Default::default() };
    let other = ChainBlock::new(c.blocks[4].id(), [1u8; 32], block, Vec::new(), &limits()).unwrap();
    let m = encode_certified(&wire(&other), &certify(&c.f, 6, other.id()));
    assert_eq!(f.offer(c.checker.check_block(&m).unwrap()), Offered::Conflict);
    // A certified block at height 1 that does not link to the tip is dropped at delivery.
    let block = bastion_types::Block { height: 1, timestamp_ms: g.timestamp_ms + 1, ..Default::default() };
    let stray = ChainBlock::new(genesis, [2u8; 32], block, Vec::new(), &limits()).unwrap();
    let mut f2 = Follower::new(0, Digest::from([5u8; 32]), 16);
    let m = encode_certified(&wire(&stray), &certify(&c.f, 1, stray.id()));
    assert_eq!(f2.offer(c.checker.check_block(&m).unwrap()), Offered::Buffered);
    assert!(f2.next().is_none());
    assert_eq!(f2.stats().conflicts, 1);
    // Fill 1..=4 from a range answer of a store.
    let certs_dir = tempfile::tempdir().unwrap();
    let mut certs = CertLog::open(certs_dir.path()).unwrap();
    for b in &c.blocks {
        let h = b.height_u64();
        let cert = (h % 4 == 0).then(|| certify(&c.f, h, b.id()));
        certs.append(h, cert.as_deref()).unwrap();
    }
    certs.commit().unwrap();
    let answer = serve_range(&c.store, &certs, &limits(), 1, 4, 1 << 20).unwrap();
    let blocks = c.checker.check_range(&answer, 1).unwrap();
    assert_eq!(f.offer_range(blocks), 4);
    let got = drain(&mut f);
    assert_eq!(
        got.iter().map(|r| r.block.id()).collect::<Vec<_>>(),
        c.blocks.iter().map(|b| b.id()).collect::<Vec<_>>()
    );
    assert_eq!(f.stats().conflicts, 1);
}

#[test]
fn serve_range_ends_at_a_certified_height_within_the_byte_budget() {
    let c = chain(10);
    let dir = tempfile::tempdir().unwrap();
    let mut certs = CertLog::open(dir.path()).unwrap();
    for b in &c.blocks {
        let h = b.height_u64();
        let cert = [3, 6, 9].contains(&h).then(|| certify(&c.f, h, b.id()));
        certs.append(h, cert.as_deref()).unwrap();
    }
    certs.commit().unwrap();
    let heights = |answer: Vec<u8>, from: u64| -> Vec<u64> {
        c.checker.check_range(&answer, from).unwrap().iter().map(|r| r.block.height_u64()).collect()
    };
    // To 4: the first certified height at or above it is 6.
    assert_eq!(
        heights(serve_range(&c.store, &certs, &limits(), 2, 4, 1 << 20).unwrap(), 2),
        vec![2, 3, 4, 5, 6]
    );
    // A budget that fits blocks 2 and 3 with 3's certificate but not 6's: ends at 3.
    let budget = 5
        + (4 + wire(&c.blocks[1]).len())
        + (4 + wire(&c.blocks[2]).len())
        + certify(&c.f, 3, c.blocks[2].id()).len();
    assert_eq!(heights(serve_range(&c.store, &certs, &limits(), 2, 9, budget).unwrap(), 2), vec![2, 3]);
    // Nothing certified at or after 10 yet, nothing before height 1, nothing above the store.
    assert!(serve_range(&c.store, &certs, &limits(), 10, 10, 1 << 20).is_none());
    assert!(serve_range(&c.store, &certs, &limits(), 0, 3, 1 << 20).is_none());
    assert!(serve_range(&c.store, &certs, &limits(), 11, 12, 1 << 20).is_none());
    // Too small for even one block.
    assert!(serve_range(&c.store, &certs, &limits(), 2, 3, 10).is_none());
}

#[test]
fn cert_log_reopens_and_fills_a_short_tail() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = CertLog::open(dir.path()).unwrap();
        assert_eq!(log.last_height(), None);
        log.append(1, Some(b"one")).unwrap();
        log.append(2, None).unwrap();
        log.append(3, Some(b"three")).unwrap();
        log.commit().unwrap();
        // Appended but not committed: lost at the "crash".
        log.append(4, Some(b"four")).unwrap();
    }
    let mut log = CertLog::open(dir.path()).unwrap();
    assert_eq!(log.last_height(), Some(3));
    assert_eq!(log.get(1).as_deref(), Some(&b"one"[..]));
    assert_eq!(log.get(2), None);
    assert_eq!(log.get(3).as_deref(), Some(&b"three"[..]));
    // The store reached 6 before the crash; the node executes 7 next: 4..=6 are filled empty.
    log.append(7, Some(b"seven")).unwrap();
    // Already recorded heights are ignored.
    log.append(3, Some(b"other")).unwrap();
    log.commit().unwrap();
    drop(log);
    let log = CertLog::open(dir.path()).unwrap();
    assert_eq!(log.last_height(), Some(7));
    assert_eq!((4..=6).map(|h| log.get(h)).collect::<Vec<_>>(), vec![None, None, None]);
    assert_eq!(log.get(7).as_deref(), Some(&b"seven"[..]));
    assert_eq!(log.get(3).as_deref(), Some(&b"three"[..]));
}

#[test]
fn execute_refuses_a_block_on_another_root_and_chain_tip_survives_a_restart() {
    let c = chain(3);
    let dir = tempfile::tempdir().unwrap();
    let g = sim_genesis();
    let (mut store, _) = Store::open(dir.path(), &g, sim_store_config()).unwrap();
    assert_eq!(chain_tip(&store, &g, &limits()).unwrap(), (0, genesis_block(&g).unwrap().id()));
    assert!(execute(&mut store, &c.blocks[1]).is_err(), "height 2 on an empty store");
    execute(&mut store, &c.blocks[0]).unwrap();
    let block = bastion_types::Block { height: 2, timestamp_ms: g.timestamp_ms + 200, ..Default::default() };
    let wrong_root = ChainBlock::new(c.blocks[0].id(), [7u8; 32], block, Vec::new(), &limits()).unwrap();
    let e = execute(&mut store, &wrong_root).unwrap_err();
    assert!(e.contains("parent root"), "{e}");
    assert_eq!(store.state().height, 1, "a refused block changed nothing");
    execute(&mut store, &c.blocks[1]).unwrap();
    store.commit().unwrap();
    drop(store);
    let (store, _) = Store::open(dir.path(), &g, sim_store_config()).unwrap();
    assert_eq!(chain_tip(&store, &g, &limits()).unwrap(), (2, c.blocks[1].id()));
    assert_eq!(store.state().state_root(), c.blocks[2].parent_state_root().to_owned());
}

/// What validator 0 published: per height, its wire bytes, certificate and root.
type Record = Arc<Mutex<Vec<(u64, Bytes, Option<Vec<u8>>, [u8; 32])>>>;

struct Recorder(Record);

impl Publisher for Recorder {
    fn finalized(&mut self, p: &Published<'_>) {
        assert_eq!(p.state.state_root(), p.root);
        self.0.lock().unwrap().push((
            p.block.height_u64(),
            p.wire.clone(),
            p.certificate.map(<[u8]>::to_vec),
            p.root,
        ));
    }
}

/// A deterministic simulation's validator 0 publishes every finalized block with its certificate;
/// a full node receives them shuffled, duplicated, some lost (filled by range answers from a
/// second node's store and certificate log), with a restart half-way, and its roots equal the
/// validators' at every height.
#[test]
fn a_full_node_follows_a_simulated_chain_with_the_validators_roots() {
    let record: Record = Arc::default();
    let r = record.clone();
    let target = 40;
    let o = simulate_outcome(Run {
        publisher: Some(Arc::new(move |i| {
            (i == 0).then(|| Box::new(Recorder(r.clone())) as Box<dyn Publisher>)
        })),
        ..Run::new(4, seeds(17), link(20, 5, probability!(1.0)), target)
    });
    let published = record.lock().unwrap().clone();
    let heights: Vec<u64> = published.iter().map(|p| p.0).collect();
    assert_eq!(heights, (1..=heights.len() as u64).collect::<Vec<_>>(), "published once each, in order");
    assert!(heights.len() as u64 >= target);
    let certified = published.iter().filter(|p| p.2.is_some()).count();
    println!("validator 0 published {} blocks, {certified} with their own certificate", published.len());
    assert!(certified * 2 > published.len(), "most blocks carry their own certificate");
    let limits = *o.checker.limits();
    let roots = &o.ledgers[0];
    for (h, _, _, root) in &published {
        assert_eq!(&roots[h].root, root, "published root at {h}");
    }

    // A serving node: executes everything (from the published blocks) and keeps certificates.
    let serve_dir = tempfile::tempdir().unwrap();
    let (mut server, _) = Store::open(serve_dir.path(), &o.genesis, sim_store_config()).unwrap();
    let mut certs = CertLog::open(serve_dir.path()).unwrap();
    let mut messages = Vec::new();
    for (h, wire, cert, _) in &published {
        let block = ChainBlock::decode_cfg(wire.slice(1..), &limits).unwrap();
        execute(&mut server, &block).unwrap();
        server.commit().unwrap();
        certs.append(*h, cert.as_deref()).unwrap();
        if let Some(cert) = cert {
            messages.push(encode_certified(wire, cert));
        }
    }
    certs.commit().unwrap();

    // The full node's inputs: every certified message twice, a deterministic shuffle, every
    // seventh one lost (and its duplicate too).
    let mut inbox: Vec<Vec<u8>> = messages
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 7 != 3)
        .flat_map(|(_, m)| [m.clone(), m.clone()])
        .collect();
    shuffle(&mut inbox, 17);
    let dir = tempfile::tempdir().unwrap();
    let open = || Store::open(dir.path(), &o.genesis, sim_store_config()).unwrap().0;
    let mut store = open();
    let (h0, d0) = chain_tip(&store, &o.genesis, &limits).unwrap();
    let mut follower = Follower::new(h0, d0, 16);
    let last = published.len() as u64;
    let mut executed = 0u64;
    let mut restarted = false;
    let mut backfills = 0;
    let mut rounds = 0;
    while follower.tip().0 < last {
        rounds += 1;
        assert!(rounds < 100, "no progress: tip {:?}, gap {:?}", follower.tip(), follower.gap());
        let mut later = Vec::new();
        for m in std::mem::take(&mut inbox) {
            let v = o.checker.check_block(&m).unwrap();
            if follower.offer(v) == Offered::TooFar {
                later.push(m);
            }
            while let Some(ready) = follower.next() {
                let h = ready.block.height_u64();
                let out = execute(&mut store, &ready.block).unwrap();
                assert_eq!(out.root, roots[&h].root, "full node root at {h}");
                executed += 1;
                store.commit().unwrap();
                if h == last / 2 && !restarted {
                    // Restart: the store reopens, the tip comes from its log.
                    drop(store);
                    store = open();
                    let (th, td) = chain_tip(&store, &o.genesis, &limits).unwrap();
                    assert_eq!((th, td), follower.tip());
                    let held = follower;
                    follower = Follower::new(th, td, 16);
                    drop(held);
                    restarted = true;
                }
            }
            if let Some((from, to)) = follower.gap() {
                let answer = serve_range(&server, &certs, &limits, from, to, 4 << 20).unwrap();
                let blocks = o.checker.check_range(&answer, from).unwrap();
                follower.offer_range(blocks);
                backfills += 1;
            }
        }
        // Lost messages past the window and whatever the restart dropped come again (gossip
        // re-delivery is not guaranteed: a range answer from the tip covers the rest).
        inbox = later;
        if inbox.is_empty() && follower.tip().0 < last {
            let from = follower.tip().0 + 1;
            if let Some(answer) = serve_range(&server, &certs, &limits, from, from, 4 << 20) {
                follower.offer_range(o.checker.check_range(&answer, from).unwrap());
                backfills += 1;
            }
            while let Some(ready) = follower.next() {
                let h = ready.block.height_u64();
                let out = execute(&mut store, &ready.block).unwrap();
                assert_eq!(out.root, roots[&h].root, "full node root at {h}");
                executed += 1;
                store.commit().unwrap();
            }
        }
    }
    println!("full node executed {executed} blocks with {backfills} range answers; {:?}", follower.stats());
    assert_eq!(executed, last);
    assert!(backfills > 0, "some gaps were filled by range answers");
    assert!(restarted);
    assert_eq!(store.state().state_root(), roots[&last].root);
    assert!(o.checker.refusals().iter().all(|(_, n)| *n == 0));
}
