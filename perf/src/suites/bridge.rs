//! Suite `bridge`: what the collateral bridge's signatures and records cost (issue 19).
//!
//! 1. **Crediting.** `attested-deposits`: `State::apply_block` on blocks of 256 attested
//!    deposits (`DEPOSITS_PER_BLOCK_MAX`), each attested by 3 of the 4 devnet validators (2/3 of
//!    equal stake needs 3), distinct source ids, half to accounts that exist and half to new
//!    ones, on a chain that is not a devnet. Baselines in the same run, the same deposits on the
//!    devnet genesis: `authority-deposits`, the authority's `Action::Deposit` transactions (the
//!    exchange trusts a transaction's signer, so no signature is checked), and
//!    `authority-deposits+client-sig`, the same plus one ed25519-zebra verification of each
//!    transaction's client signature, the cost the ingress pays for it. One sample is one
//!    block; ops/s are deposits credited per second on one core (execution is one thread).
//!    `attested-full-bridge-block`: 256 attested deposits and 256 voucher signature sets (3 of
//!    4 each), the most bridge work a block may carry. `empty-block`: the per-block floor on
//!    the same state (no oracle observations in any of these blocks).
//! 2. **Gossip.** `attestation-verifies`: `State::attestation_verifies` on the 768
//!    attestations of one block, one at a time, as a validator checks each gossiped item;
//!    `zebra-verify`: one ed25519-zebra verification of the same (key, signature, message), the
//!    message built beforehand.
//! 3. **Batch verification.** The same 768 signatures one by one (`one-by-one@768`, what
//!    `check_bridge` does) and with `ed25519_zebra::batch::Verifier` (`batch@768`). The batch
//!    verifier groups signatures by key, and a block's attestations come from at most as many
//!    keys as there are validators (3 here), so `batch@768-distinct-keys` (768 keys, the client
//!    transaction case) shows how much of the speedup that grouping is. `check-bridge@256x3`:
//!    `State::check_bridge` on the block, in place. The same at 100 validators (67 attest each
//!    deposit, 17,152 signatures a block): `check-bridge@256x67of100` against `batch@256x67of100`.
//! 4. **Growth of the credited set.** A chain with one validator (one attestation per deposit:
//!    only the set's size matters here, and building it costs a third of the 3-of-4 case)
//!    credits blocks of 256 deposits to 256 accounts, the first block creating them; at each
//!    checkpoint of credited deposits (256, then 100k, 250k, 500k, 1M; `--quick`: 256 and 10k)
//!    `clone@N` times `State::clone` (the drop is not timed; its mean is in `params`) and
//!    `digest-map-replica-clone@N` a `HashMap` shaped like the commitment's per-record digests
//!    with N entries (the one per-record structure of the state that is not persistent), and at
//!    256 and 100k `from-image@N` times `State::from_image_bytes` (the image's length and
//!    `to_image_bytes` time are in `params`). `growth-apply@A..B` holds the apply time of the
//!    blocks credited between two checkpoints (one attestation each, signed on the other core
//!    while this one applies, so it is noisier than part 1).
//!
//! Goals, and why these numbers:
//! - a full block of 256 attested deposits applies in p99 < 100 ms on one core: the block
//!   interval is tens of milliseconds and the leader timeout 1 s; a block that takes 100 ms to
//!   execute still finalizes well within the timeout, and bridge traffic at its limit (256
//!   deposits per block) then costs at most a few blocks' worth of delay, not a view change;
//! - one core verifies at least `BRIDGE_QUOTA_PER_S x ITEMS_PER_MESSAGE` = 12,800 gossiped
//!   attestations a second: one peer sending at its full bridge-channel quota cannot saturate
//!   a core;
//! - batch verification of one block's 768 attestation signatures is at least 2x faster than
//!   one by one: below that, switching `check_bridge` (an RNG in the state machine, a
//!   fallback to name the bad signature) is not worth it;
//! - cloning a state with 1M credited deposits takes p50 < 1 ms: consensus clones the state
//!   for each speculative block, and the credited set lives in persistent (`imbl`) maps so
//!   that it can be shared, not copied;
//! - a credited deposit adds at most 128 bytes to the image: its record is 66 bytes of fixed
//!   width (source id 32, account 8, asset 2, amount 16, height 8), so 128 allows the
//!   archive's overhead; 1M deposits then add at most 128 MB, about what 1M accounts take;
//! - loading 100k credited deposits adds at most 100 ms to `from_image_bytes` (1 us per
//!   deposit: 1M add a second, a state-sync join of 1M accounts takes about that).

use crate::harness::{self, Ctx, Measurement, Percentiles, Report};
use bastion_exchange::{DEVNET_VALIDATOR_SEEDS, Genesis, State, sign_deposit, sign_voucher};
use bastion_types::{
    AccountId, Action, Approval, AssetId, AttestedDeposit, Block, BridgeDeposit, DEPOSITS_PER_BLOCK_MAX,
    Event, Micros, SourceId, Tx, VOUCHERS_PER_BLOCK_MAX, ValidatorIndex, VoucherSignatures, deposit_message,
};
use ed25519_zebra::{Signature, SigningKey, VerificationKey, VerificationKeyBytes, batch};
use rand_chacha_0_10::ChaCha20Rng;
use rand_chacha_0_10::rand_core::SeedableRng;
use rayon::prelude::*;
use serde_json::json;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Deposits in a full block.
const BLOCK_DEPOSITS: usize = DEPOSITS_PER_BLOCK_MAX;
/// The attesting validators of the 4-validator devnet set: 300 of 400 stake, the fewest that
/// reach 2/3.
const SIGNERS: [u16; 3] = [0, 1, 2];
/// Existing accounts that half of each block's deposits go to.
const POOL: usize = 256;
/// 1,000 USDC.
const AMOUNT: Micros = 1_000_000_000;
/// Block spacing of the generated chains.
const BLOCK_MS: u64 = 100;
/// Validators of the scaling case, and how many attest each deposit (2/3 of equal stake).
const MANY_VALIDATORS: usize = 100;
const MANY_SIGNERS: usize = MANY_VALIDATORS * 2 / 3 + 1;

const _: () = assert!(POOL.is_multiple_of(2) && POOL <= BLOCK_DEPOSITS);
const _: () =
    assert!(MANY_SIGNERS * 3 >= MANY_VALIDATORS * 2 && (MANY_SIGNERS - 1) * 3 < MANY_VALIDATORS * 2);

/// One signature to check: key, signature, message.
type SigCase = ([u8; 32], [u8; 64], Vec<u8>);

/// The bridge's chain: the devnet's markets and validators, no authority, not a devnet.
fn bridge_genesis() -> Genesis {
    Genesis { devnet: false, authority: None, ..Genesis::devnet() }
}

fn hash(seed: u64, tag: &str, a: u64, b: u64) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(tag.as_bytes());
    h.update(&seed.to_le_bytes());
    h.update(&a.to_le_bytes());
    h.update(&b.to_le_bytes());
    *h.finalize().as_bytes()
}

fn pool_account(i: usize) -> AccountId {
    AccountId(1_000_000 + (i % POOL) as u64)
}

/// An account no earlier block created (random 62-bit ids above the pool's).
fn fresh_account(seed: u64, height: u64, i: usize) -> AccountId {
    let h = hash(seed, "bridge-fresh-account", height, i as u64);
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[..8]);
    AccountId((u64::from_le_bytes(b) >> 2) | (1 << 40))
}

/// The pool's first deposits: one to each pool account (they create the accounts).
fn pool_deposits(seed: u64) -> Vec<BridgeDeposit> {
    (0..POOL)
        .map(|i| BridgeDeposit {
            source_id: SourceId(hash(seed, "bridge-pool-source", 0, i as u64)),
            to: pool_account(i),
            asset: AssetId(0),
            amount: AMOUNT,
        })
        .collect()
}

/// A full block's deposits at `height`: even ones to pool accounts (half the pool, alternating
/// halves by height), odd ones to new accounts; every source id new.
fn mixed_deposits(seed: u64, tag: &str, height: u64) -> Vec<BridgeDeposit> {
    (0..BLOCK_DEPOSITS)
        .map(|i| BridgeDeposit {
            source_id: SourceId(hash(seed, tag, height, i as u64)),
            to: if i % 2 == 0 {
                pool_account(i / 2 + (height % 2) as usize * (POOL / 2))
            } else {
                fresh_account(seed, height, i)
            },
            asset: AssetId(0),
            amount: AMOUNT + i as Micros,
        })
        .collect()
}

/// `deposits` with attestations by `signers` of the devnet set, as validators sign them.
fn attest(chain_id: &str, deposits: Vec<BridgeDeposit>, signers: &[u16]) -> Vec<AttestedDeposit> {
    deposits
        .into_par_iter()
        .map(|deposit| {
            let attestations = signers
                .iter()
                .map(|&v| sign_deposit(DEVNET_VALIDATOR_SEEDS[usize::from(v)], v, chain_id, &deposit))
                .collect();
            AttestedDeposit { deposit, attestations }
        })
        .collect()
}

fn block_at(genesis: &Genesis, height: u64) -> Block {
    Block { height, timestamp_ms: genesis.timestamp_ms + height * BLOCK_MS, ..Block::default() }
}

/// The authority's `Action::Deposit` transactions for `deposits`, nonces from `first_nonce`.
fn authority_txs(authority: AccountId, deposits: &[BridgeDeposit], first_nonce: u64) -> Vec<Tx> {
    deposits
        .iter()
        .enumerate()
        .map(|(i, d)| Tx {
            signer: authority,
            nonce: first_nonce + i as u64,
            action: Action::Deposit { to: d.to, asset: d.asset, amount: d.amount },
        })
        .collect()
}

/// Accounts credited by a block's outcome: one `Deposited` per deposit, by attestation (which
/// also emits `BridgeCredited`) or by the authority; none of these deposits is to the
/// insurance fund.
fn credits(events: &[Event]) -> usize {
    events.iter().filter(|e| matches!(e, Event::Deposited { .. })).count()
}

fn verify_each(items: &[SigCase]) -> bool {
    items.iter().all(|(k, s, m)| {
        VerificationKey::try_from(*k).and_then(|vk| vk.verify(&Signature::from(*s), m)).is_ok()
    })
}

fn verify_batch(items: &[SigCase], rng: &mut ChaCha20Rng) -> bool {
    let mut v = batch::Verifier::new();
    for (k, s, m) in items {
        v.queue((VerificationKeyBytes::from(*k), Signature::from(*s), m.as_slice()));
    }
    v.verify(rng).is_ok()
}

/// Applies `blocks` in order to `state`, timing each after `warmup` untimed ones; `extra` runs
/// inside the timed part after each block (the client signatures of the second baseline).
/// Fails unless every block applies and credits `per_block` deposits.
#[allow(clippy::too_many_arguments)]
fn apply_series(
    report: &mut Report,
    name: &str,
    state: &mut State,
    blocks: &[Block],
    warmup: u64,
    per_block: usize,
    params: serde_json::Value,
    mut extra: impl FnMut(usize) -> bool,
) -> Result<(), String> {
    let mut failed: Option<String> = None;
    let rounds = (blocks.len() as u64).saturating_sub(warmup);
    let m = harness::rounds(name, "block", warmup, rounds, per_block as u64, params, |i| {
        let Some(block) = blocks.get(i as usize) else { return };
        match state.apply_block(block) {
            Ok(out) => {
                let n = credits(&out.events);
                if n != per_block && failed.is_none() {
                    failed = Some(format!("{name}: block {} credited {n} of {per_block}", block.height));
                }
                black_box(out);
            }
            Err(e) => {
                if failed.is_none() {
                    failed = Some(format!("{name}: block {} refused: {e}", block.height));
                }
            }
        }
        if !extra(i as usize) && failed.is_none() {
            failed = Some(format!("{name}: a client signature of block {} does not verify", block.height));
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    report.push(m);
    Ok(())
}

fn p(m: &Measurement, f: impl Fn(&Percentiles) -> u64) -> u64 {
    m.latency.as_ref().map_or(0, f)
}

pub fn run(ctx: &Ctx, report: &mut Report) -> Result<(), String> {
    crediting(ctx, report)?;
    scaling(ctx, report)?;
    growth(ctx, report)
}

/// Parts 1 to 3: crediting, gossip checks and the batch study, on the 4-validator set.
fn crediting(ctx: &Ctx, report: &mut Report) -> Result<(), String> {
    let seed = ctx.seed;
    let warmup = 2u64;
    let rounds = ctx.size(40, 5);
    let heights: Vec<u64> = (2..2 + warmup + rounds).collect();

    // The attested chain: block 1 creates the pool, then full mixed blocks.
    let genesis = bridge_genesis();
    let chain_id = genesis.chain_id.clone();
    let mut attested = State::from_genesis(&genesis).map_err(|e| e.to_string())?;
    let mut first = block_at(&genesis, 1);
    first.deposits = attest(&chain_id, pool_deposits(seed), &SIGNERS);
    attested.apply_block(&first).map_err(|e| format!("pool block: {e}"))?;
    let deposit_sets: Vec<Vec<BridgeDeposit>> =
        heights.iter().map(|h| mixed_deposits(seed, "bridge-source", *h)).collect();
    let attested_blocks: Vec<Block> = heights
        .iter()
        .zip(&deposit_sets)
        .map(|(h, d)| Block { deposits: attest(&chain_id, d.clone(), &SIGNERS), ..block_at(&genesis, *h) })
        .collect();

    // The authority's chain: the devnet genesis, the same deposits as transactions.
    let devnet = Genesis::devnet();
    let authority = devnet.authority.ok_or("the devnet genesis has an authority")?;
    let mut by_authority = State::from_genesis(&devnet).map_err(|e| e.to_string())?;
    let first_nonce = by_authority.accounts.get(&authority).map_or(0, |a| a.nonce) + 1;
    let mut first = block_at(&devnet, 1);
    first.txs = authority_txs(authority, &pool_deposits(seed), first_nonce);
    by_authority.apply_block(&first).map_err(|e| format!("authority pool block: {e}"))?;
    let mut with_sigs = by_authority.clone();
    let authority_blocks: Vec<Block> = heights
        .iter()
        .zip(&deposit_sets)
        .enumerate()
        .map(|(k, (h, d))| Block {
            txs: authority_txs(authority, d, first_nonce + ((k + 1) * BLOCK_DEPOSITS) as u64),
            ..block_at(&devnet, *h)
        })
        .collect();
    // What the ingress verifies for each: the client's signature over its signed message.
    let key = bastion_client::devnet_authority();
    let tx_chain = [7u8; 32];
    let client_sigs: Vec<Vec<SigCase>> = authority_blocks
        .par_iter()
        .map(|b| {
            b.txs
                .iter()
                .map(|tx| {
                    let s = key.sign(&tx_chain, tx.nonce, tx.action.clone());
                    let (mut body, mut msg) = (Vec::new(), Vec::new());
                    bastion_client::signed_message(&tx_chain, &s.tx, &mut body, &mut msg);
                    (s.auth.public_key, s.auth.signature, msg)
                })
                .collect()
        })
        .collect();

    let params = json!({
        "deposits_per_block": BLOCK_DEPOSITS,
        "attestations_per_deposit": SIGNERS.len(),
        "validators": DEVNET_VALIDATOR_SEEDS.len(),
        "to_existing": BLOCK_DEPOSITS / 2,
        "to_new": BLOCK_DEPOSITS / 2,
        "threads": 1,
    });
    apply_series(
        report,
        "authority-deposits",
        &mut by_authority,
        &authority_blocks,
        warmup,
        BLOCK_DEPOSITS,
        json!({ "deposits_per_block": BLOCK_DEPOSITS, "signatures_checked": 0, "threads": 1 }),
        |_| true,
    )?;
    apply_series(
        report,
        "attested-deposits",
        &mut attested,
        &attested_blocks,
        warmup,
        BLOCK_DEPOSITS,
        params,
        |_| true,
    )?;
    apply_series(
        report,
        "authority-deposits+client-sig",
        &mut with_sigs,
        &authority_blocks,
        warmup,
        BLOCK_DEPOSITS,
        json!({ "deposits_per_block": BLOCK_DEPOSITS, "signatures_checked": BLOCK_DEPOSITS, "verifier": "ed25519-zebra 5, one by one", "threads": 1 }),
        |i| client_sigs.get(i).is_some_and(|s| verify_each(s)),
    )?;
    let quote = |s: &State| s.assets.first().map_or(0, |a| a.deposits);
    if quote(&attested) != quote(&by_authority) || quote(&attested) != quote(&with_sigs) {
        return Err("the attested and the authority's chains credited different totals".into());
    }
    let ratio = report.ratio_throughput("attested_vs_authority", "attested-deposits", "authority-deposits");
    report.ratio_throughput(
        "attested_vs_authority_with_client_sig",
        "attested-deposits",
        "authority-deposits+client-sig",
    );
    let (att, auth, auth_sig) = (
        report.get("attested-deposits").cloned(),
        report.get("authority-deposits").cloned(),
        report.get("authority-deposits+client-sig").cloned(),
    );
    if let (Some(att), Some(auth), Some(auth_sig)) = (&att, &auth, &auth_sig) {
        // Medians: the machine is shared, and a mean takes every stall.
        let (att_ns, auth_ns, sig_ns) =
            (p(att, |p| p.p50_ns) as f64, p(auth, |p| p.p50_ns) as f64, p(auth_sig, |p| p.p50_ns) as f64);
        let attestations = (BLOCK_DEPOSITS * SIGNERS.len()) as f64;
        report.note(format!(
            "a block of {BLOCK_DEPOSITS} attested deposits: p50 {:.1} ms vs {:.2} ms by the authority ({:.0}x; {:.1} us per \
             attestation beyond the authority's path); with one client signature per deposit {:.1} ms ({:.2}x); \
             attested/authority throughput {:.4}",
            att_ns / 1e6,
            auth_ns / 1e6,
            att_ns / auth_ns,
            (att_ns - auth_ns) / attestations / 1e3,
            sig_ns / 1e6,
            att_ns / sig_ns,
            ratio.unwrap_or(f64::NAN),
        ));
        let p99 = p(att, |p| p.p99_ns) as f64 / 1e6;
        report.goal(
            "attested-block-apply",
            "a block of 256 attested deposits (3 of 4 validators) applies in p99 < 100 ms on one core",
            format!("p50 {:.1} ms, p99 {p99:.1} ms", p(att, |p| p.p50_ns) as f64 / 1e6),
            p99 < 100.0,
        );
    }

    // The most bridge work a block may carry: 256 deposits and 256 voucher signature sets.
    full_bridge_block(ctx, report, &genesis, &mut attested, seed)?;
    // The per-block floor on the same state.
    let mut empty_state = attested.clone();
    let h0 = empty_state.height;
    let empties: Vec<Block> = (1..=ctx.size(40, 5) + 2).map(|k| block_at(&genesis, h0 + k)).collect();
    let mut failed = None;
    report.push(harness::rounds("empty-block", "block", 2, ctx.size(40, 5), 1, json!({}), |i| {
        if let Some(b) = empties.get(i as usize)
            && let Err(e) = empty_state.apply_block(b)
        {
            failed = Some(e.to_string());
        }
    }));
    if let Some(e) = failed {
        return Err(format!("empty block: {e}"));
    }

    // Part 2: gossip checks, one attestation at a time.
    let block = attested_blocks.first().ok_or("no attested block")?;
    let items: Vec<(&BridgeDeposit, &Approval)> =
        block.deposits.iter().flat_map(|d| d.attestations.iter().map(move |a| (&d.deposit, a))).collect();
    let keys: Vec<[u8; 32]> = attested.validators.iter().map(|v| v.key.unwrap_or_default()).collect();
    let cases: Vec<SigCase> = items
        .iter()
        .map(|(d, a)| {
            let key = keys.get(usize::from(a.validator.0)).copied().unwrap_or_default();
            (key, a.signature, deposit_message(&chain_id, d))
        })
        .collect();
    // A fresh state of the same chain: the check does not depend on what was credited.
    let gossip_state = State::from_genesis(&genesis).map_err(|e| e.to_string())?;
    if !items.iter().all(|(d, a)| gossip_state.attestation_verifies(d, a)) || !verify_each(&cases) {
        return Err("an attestation does not verify".into());
    }
    let n = items.len();
    let ops = ctx.size(6_000, 600);
    report.push(harness::latency("attestation-verifies", 200, ops, json!({ "distinct": n }), |i| {
        let (d, a) = items[i as usize % n];
        black_box(gossip_state.attestation_verifies(black_box(d), black_box(a)));
    }));
    report.push(harness::latency(
        "zebra-verify",
        200,
        ops,
        json!({ "distinct": n, "key_parsed_per_call": true }),
        |i| {
            black_box(verify_each(black_box(std::slice::from_ref(&cases[i as usize % n]))));
        },
    ));
    report.ratio_throughput("attestation_vs_zebra_verify", "attestation-verifies", "zebra-verify");
    let quota = f64::from(bastion_consensus::BRIDGE_QUOTA_PER_S)
        * bastion_consensus::bridge::ITEMS_PER_MESSAGE as f64;
    let per_s = report.get("attestation-verifies").map_or(0.0, |m| m.ops_per_s);
    report.goal(
        "attestation-gossip",
        "one core verifies >= BRIDGE_QUOTA_PER_S x ITEMS_PER_MESSAGE attestations/s (one peer at its full quota)",
        format!("{per_s:.0}/s vs {quota:.0}/s ({:.2}x)", per_s / quota),
        per_s >= quota,
    );

    // Part 3: the same 768 signatures one by one and as a batch.
    batch_study(ctx, report, &attested_blocks, &cases, &genesis)
}

/// Part 1's worst case: blocks with 256 attested deposits and 256 voucher signature sets,
/// the vouchers created by withdrawals in a setup block.
fn full_bridge_block(
    ctx: &Ctx,
    report: &mut Report,
    genesis: &Genesis,
    state: &mut State,
    seed: u64,
) -> Result<(), String> {
    let chain_id = genesis.chain_id.clone();
    let warmup = 1u64;
    let rounds = ctx.size(15, 3);
    let blocks = (warmup + rounds) as usize;
    let vouchers_needed = blocks * VOUCHERS_PER_BLOCK_MAX;
    // Withdrawals: each pool account withdraws 1 USDC per voucher block (nonces from its next).
    let first_voucher = state.last_voucher() + 1;
    let per_account = vouchers_needed.div_ceil(POOL);
    let mut setup = block_at(genesis, state.height + 1);
    for r in 0..per_account {
        for i in 0..POOL {
            let to = pool_account(i);
            let nonce = state.accounts.get(&to).map_or(0, |a| a.nonce) + 1 + r as u64;
            setup.txs.push(Tx {
                signer: to,
                nonce,
                action: Action::Withdraw { asset: AssetId(0), amount: 1_000_000 },
            });
        }
    }
    state.apply_block(&setup).map_err(|e| format!("withdrawal block: {e}"))?;
    let created = state.last_voucher() + 1 - first_voucher;
    if created < vouchers_needed as u64 {
        return Err(format!("the withdrawal block created {created} vouchers of {vouchers_needed}"));
    }
    let h0 = state.height;
    let timed: Vec<Block> = (0..blocks)
        .map(|k| {
            let height = h0 + 1 + k as u64;
            let ids = (0..VOUCHERS_PER_BLOCK_MAX as u64)
                .map(|j| first_voucher + (k * VOUCHERS_PER_BLOCK_MAX) as u64 + j);
            let entries: Vec<_> = ids.filter_map(|id| state.voucher(id).map(|e| e.voucher.clone())).collect();
            let vouchers = entries
                .par_iter()
                .map(|v| VoucherSignatures {
                    id: v.id,
                    approvals: SIGNERS
                        .iter()
                        .map(|&s| sign_voucher(DEVNET_VALIDATOR_SEEDS[usize::from(s)], s, &chain_id, v))
                        .collect(),
                })
                .collect();
            Block {
                deposits: attest(&chain_id, mixed_deposits(seed, "bridge-full-source", height), &SIGNERS),
                vouchers,
                ..block_at(genesis, height)
            }
        })
        .collect();
    if timed.iter().any(|b| b.vouchers.len() != VOUCHERS_PER_BLOCK_MAX) {
        return Err("a voucher the withdrawals should have created is missing".into());
    }
    let params = json!({
        "deposits_per_block": BLOCK_DEPOSITS,
        "voucher_sets_per_block": VOUCHERS_PER_BLOCK_MAX,
        "signatures_per_block": (BLOCK_DEPOSITS + VOUCHERS_PER_BLOCK_MAX) * SIGNERS.len(),
        "threads": 1,
    });
    apply_series(
        report,
        "attested-full-bridge-block",
        state,
        &timed,
        warmup,
        BLOCK_DEPOSITS,
        params,
        |_| true,
    )?;
    let signed = state.vouchers().filter(|v| v.signed()).count();
    if signed != blocks * VOUCHERS_PER_BLOCK_MAX {
        return Err(format!("{signed} vouchers signed, {} expected", blocks * VOUCHERS_PER_BLOCK_MAX));
    }
    Ok(())
}

/// Part 3: one by one against `ed25519_zebra::batch::Verifier`, and `check_bridge` in place.
fn batch_study(
    ctx: &Ctx,
    report: &mut Report,
    blocks: &[Block],
    cases: &[SigCase],
    genesis: &Genesis,
) -> Result<(), String> {
    let mut rng = ChaCha20Rng::seed_from_u64(ctx.seed);
    if !verify_batch(cases, &mut rng) {
        return Err("the batch of valid attestations does not verify".into());
    }
    // A batch with one bad signature must fail, or the comparison is meaningless.
    let mut bad = cases.to_vec();
    if let Some(last) = bad.last_mut() {
        last.1[0] ^= 1;
    }
    if verify_batch(&bad, &mut rng) || verify_each(&bad) {
        return Err("a corrupted attestation verifies".into());
    }
    let n = cases.len() as u64;
    let rounds = ctx.size(30, 4);
    let unit = format!("{n} signatures");
    let params = json!({ "signatures": n, "keys": SIGNERS.len() });
    report.push(harness::rounds(&format!("one-by-one@{n}"), &unit, 2, rounds, n, params.clone(), |_| {
        black_box(verify_each(black_box(cases)));
    }));
    report.push(harness::rounds(&format!("batch@{n}"), &unit, 2, rounds, n, params, |_| {
        black_box(verify_batch(black_box(cases), &mut rng));
    }));
    // The same messages signed by as many keys as signatures.
    let distinct: Vec<SigCase> = cases
        .par_iter()
        .enumerate()
        .map(|(i, (_, _, m))| {
            let key = SigningKey::from(hash(ctx.seed, "bridge-distinct-key", i as u64, 0));
            let sig: [u8; 64] = key.sign(m).into();
            (VerificationKey::from(&key).into(), sig, m.clone())
        })
        .collect();
    if !verify_batch(&distinct, &mut rng) {
        return Err("the distinct-key batch does not verify".into());
    }
    report.push(harness::rounds(
        &format!("batch@{n}-distinct-keys"),
        &unit,
        2,
        rounds,
        n,
        json!({ "signatures": n, "keys": n }),
        |_| {
            black_box(verify_batch(black_box(&distinct), &mut rng));
        },
    ));
    let speedup =
        report.ratio_throughput("batch_vs_one_by_one", &format!("batch@{n}"), &format!("one-by-one@{n}"));
    report.ratio_throughput(
        "batch_distinct_keys_vs_one_by_one",
        &format!("batch@{n}-distinct-keys"),
        &format!("one-by-one@{n}"),
    );
    // `check_bridge` on the block, as execution runs it (on the pool state, before crediting).
    let mut state = State::from_genesis(genesis).map_err(|e| e.to_string())?;
    let mut first = block_at(genesis, 1);
    first.deposits = attest(&genesis.chain_id, pool_deposits(ctx.seed), &SIGNERS);
    state.apply_block(&first).map_err(|e| format!("pool block: {e}"))?;
    let block = blocks.first().ok_or("no attested block")?;
    state.check_bridge(block).map_err(|e| format!("check_bridge refuses the block: {e}"))?;
    report.push(harness::rounds(
        "check-bridge@256x3",
        "block",
        2,
        rounds,
        n,
        json!({ "deposits": BLOCK_DEPOSITS, "attestations_each": SIGNERS.len() }),
        |_| {
            black_box(state.check_bridge(black_box(block)).is_ok());
        },
    ));
    let speedup = speedup.unwrap_or(0.0);
    report.goal(
        "batch-verification",
        "ed25519-zebra batch verification of one block's 768 attestation signatures >= 2x one by one",
        format!("{speedup:.2}x"),
        speedup >= 2.0,
    );
    let p50 = |name: &str| report.get(name).map(|m| p(m, |p| p.p50_ns) as f64);
    if let (Some(check), Some(one), Some(b)) =
        (p50("check-bridge@256x3"), p50(&format!("one-by-one@{n}")), p50(&format!("batch@{n}")))
    {
        report.note(format!(
            "check_bridge on a full block: p50 {:.1} ms, signatures one by one {:.1} ms; with a batch instead about \
             {:.1} ms ({:.1}x the whole check)",
            check / 1e6,
            one / 1e6,
            (check - one + b) / 1e6,
            check / (check - one + b),
        ));
    }
    Ok(())
}

/// Part 3 at 100 validators: 67 attestations per deposit, 17,152 signatures a block.
fn scaling(ctx: &Ctx, report: &mut Report) -> Result<(), String> {
    let seeds: Vec<[u8; 32]> =
        (0..MANY_VALIDATORS).map(|i| *blake3::hash(&(i as u64).to_le_bytes()).as_bytes()).collect();
    let genesis = bridge_genesis().with_validator_seeds(&seeds);
    let state = State::from_genesis(&genesis).map_err(|e| e.to_string())?;
    let keys: Vec<SigningKey> = seeds.iter().map(|s| SigningKey::from(*s)).collect();
    let publics: Vec<[u8; 32]> = keys.iter().map(|k| VerificationKey::from(k).into()).collect();
    let deposits = mixed_deposits(ctx.seed, "bridge-many-source", 1);
    let signed: Vec<(AttestedDeposit, Vec<SigCase>)> = deposits
        .into_par_iter()
        .map(|deposit| {
            let msg = deposit_message(&genesis.chain_id, &deposit);
            let sigs: Vec<[u8; 64]> = keys.iter().take(MANY_SIGNERS).map(|k| k.sign(&msg).into()).collect();
            let attestations = sigs
                .iter()
                .enumerate()
                .map(|(v, s)| Approval { validator: ValidatorIndex(v as u16), signature: *s })
                .collect();
            let cases = sigs.iter().zip(&publics).map(|(s, k)| (*k, *s, msg.clone())).collect();
            (AttestedDeposit { deposit, attestations }, cases)
        })
        .collect();
    let first = signed.first().ok_or("no deposit")?;
    let check = sign_deposit(seeds[0], 0, &genesis.chain_id, &first.0.deposit);
    if first.0.attestations.first() != Some(&check) {
        return Err("the suite's cached-key signature differs from sign_deposit's".into());
    }
    let (deposits, cases): (Vec<AttestedDeposit>, Vec<Vec<SigCase>>) = signed.into_iter().unzip();
    let cases: Vec<SigCase> = cases.into_iter().flatten().collect();
    let block = Block { deposits, ..block_at(&genesis, 1) };
    state.check_bridge(&block).map_err(|e| format!("check_bridge refuses the 100-validator block: {e}"))?;
    let mut rng = ChaCha20Rng::seed_from_u64(ctx.seed ^ 1);
    if !verify_batch(&cases, &mut rng) {
        return Err("the 100-validator batch does not verify".into());
    }
    let n = cases.len() as u64;
    let rounds = ctx.size(3, 1);
    let params = json!({ "validators": MANY_VALIDATORS, "attestations_each": MANY_SIGNERS, "signatures": n });
    report.push(harness::rounds("check-bridge@256x67of100", "block", 1, rounds, n, params.clone(), |_| {
        black_box(state.check_bridge(black_box(&block)).is_ok());
    }));
    report.push(harness::rounds("batch@256x67of100", "block", 1, rounds, n, params, |_| {
        black_box(verify_batch(black_box(&cases), &mut rng));
    }));
    let r = report.ratio_throughput(
        "batch_vs_check_bridge_at_100_validators",
        "batch@256x67of100",
        "check-bridge@256x67of100",
    );
    if let Some(m) = report.get("check-bridge@256x67of100") {
        report.note(format!(
            "at 100 validators a full deposit block carries {n} attestations: check_bridge p50 {:.0} ms, a batch {:.2}x faster",
            p(m, |p| p.p50_ns) as f64 / 1e6,
            r.unwrap_or(f64::NAN)
        ));
    }
    Ok(())
}

/// Times `value.clone()` `rounds` times (the drop untimed; its mean goes in `params`, with
/// `params` given).
fn time_clones<T: Clone>(name: &str, value: &T, rounds: u64, mut params: serde_json::Value) -> Measurement {
    let mut h = harness::histogram();
    let (mut total, mut dropped) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds {
        let t = Instant::now();
        let copy = black_box(value.clone());
        let d = t.elapsed();
        let t = Instant::now();
        drop(copy);
        dropped += t.elapsed();
        total += d;
        h.saturating_record((d.as_nanos() as u64).max(1));
    }
    if let Some(p) = params.as_object_mut() {
        p.insert("drop_mean_ns".into(), json!(dropped.as_nanos() as f64 / rounds.max(1) as f64));
    }
    Measurement {
        name: name.into(),
        ops: rounds,
        elapsed_ns: total.as_nanos() as u64,
        ops_per_s: rounds as f64 / total.as_secs_f64().max(1e-12),
        latency: Some(Percentiles::from_histogram(&h)),
        unit: "clone".into(),
        params,
    }
}

/// A stand-in for the commitment's per-record digest map (`root::Commitment::digests`, a
/// `std::collections::HashMap<RecordKey, [u8; 32]>`, not public) with `n` records: a 40-byte
/// key (`RecordKey`'s size: a tag and 32 bytes, 8-aligned) and a 32-byte digest, grown by
/// insertion as the state grows it.
fn digest_map_replica(n: usize) -> std::collections::HashMap<[u64; 5], [u8; 32]> {
    let mut m = std::collections::HashMap::new();
    for i in 0..n as u64 {
        m.insert([7, i, i ^ 0x5555, 0, 0], [0u8; 32]);
    }
    m
}

/// Blocks of at most 256 deposits that reach each of `targets` credited deposits exactly,
/// one attestation each (the 1-validator chain), to the pool accounts.
fn growth_blocks(seed: u64, genesis: &Genesis, targets: Vec<usize>, out: std::sync::mpsc::SyncSender<Block>) {
    let key = SigningKey::from(DEVNET_VALIDATOR_SEEDS[0]);
    let mut made = 0usize;
    let mut height = 0u64;
    for target in targets {
        while made < target {
            let n = (target - made).min(BLOCK_DEPOSITS);
            height += 1;
            let deposits = (made..made + n)
                .map(|k| {
                    let deposit = BridgeDeposit {
                        source_id: SourceId(hash(seed, "bridge-growth-source", k as u64, 0)),
                        to: pool_account(k),
                        asset: AssetId(0),
                        amount: AMOUNT,
                    };
                    let signature: [u8; 64] = key.sign(&deposit_message(&genesis.chain_id, &deposit)).into();
                    AttestedDeposit {
                        deposit,
                        attestations: vec![Approval { validator: ValidatorIndex(0), signature }],
                    }
                })
                .collect();
            made += n;
            if out.send(Block { deposits, ..block_at(genesis, height) }).is_err() {
                return;
            }
        }
    }
}

/// Part 4: the credited set's cost as it grows.
fn growth(ctx: &Ctx, report: &mut Report) -> Result<(), String> {
    let genesis = bridge_genesis().with_validator_seeds(&[DEVNET_VALIDATOR_SEEDS[0]]);
    let mut state = State::from_genesis(&genesis).map_err(|e| e.to_string())?;
    let targets: Vec<usize> =
        if ctx.quick { vec![POOL, 10_000] } else { vec![POOL, 100_000, 250_000, 500_000, 1_000_000] };
    let image_at = [POOL, targets.get(1).copied().unwrap_or(POOL)];
    // The producer signs with a cached key; the bytes are sign_deposit's.
    let probe =
        BridgeDeposit { source_id: SourceId([1; 32]), to: AccountId(1), asset: AssetId(0), amount: 1 };
    let cached: [u8; 64] =
        SigningKey::from(DEVNET_VALIDATOR_SEEDS[0]).sign(&deposit_message(&genesis.chain_id, &probe)).into();
    if sign_deposit(DEVNET_VALIDATOR_SEEDS[0], 0, &genesis.chain_id, &probe).signature != cached {
        return Err("the suite's cached-key signature differs from sign_deposit's".into());
    }
    let (tx, rx) = std::sync::mpsc::sync_channel::<Block>(16);
    let producer = {
        let (seed, genesis, targets) = (ctx.seed, genesis.clone(), targets.clone());
        std::thread::spawn(move || growth_blocks(seed, &genesis, targets, tx))
    };
    let started = Instant::now();
    let clone_rounds = ctx.size(20, 5);
    let mut images: Vec<(usize, usize, f64, f64)> = Vec::new();
    let mut credited = 0usize;
    let mut from = 0usize;
    for &target in &targets {
        let mut h = harness::histogram();
        let mut total = Duration::ZERO;
        let mut blocks = 0u64;
        while credited < target {
            let block = rx.recv().map_err(|_| "the growth producer stopped early".to_string())?;
            let t = Instant::now();
            let out = state.apply_block(&block).map_err(|e| format!("growth block {}: {e}", block.height))?;
            let d = t.elapsed();
            black_box(out);
            total += d;
            blocks += 1;
            h.saturating_record((d.as_nanos() as u64).max(1));
            credited += block.deposits.len();
        }
        if state.credited_count() != target {
            return Err(format!("{} credited, {target} expected", state.credited_count()));
        }
        if from > 0 {
            report.push(Measurement {
                name: format!("growth-apply@{from}..{target}"),
                ops: (target - from) as u64,
                elapsed_ns: total.as_nanos() as u64,
                ops_per_s: (target - from) as f64 / total.as_secs_f64().max(1e-12),
                latency: Some(Percentiles::from_histogram(&h)),
                unit: "block of 256 deposits, 1 attestation each".into(),
                params: json!({ "blocks": blocks, "credited_before": from }),
            });
        }
        from = target;
        let params = json!({ "credited": target, "accounts": state.accounts.len() });
        report.push(time_clones(&format!("clone@{target}"), &state, clone_rounds, params));
        // What the one per-record structure of the state that is not persistent costs alone.
        let replica = digest_map_replica(target);
        let params = json!({ "entries": target, "entry_bytes": 72, "capacity": replica.capacity() });
        report.push(time_clones(
            &format!("digest-map-replica-clone@{target}"),
            &replica,
            clone_rounds,
            params,
        ));
        drop(replica);
        if image_at.contains(&target) {
            let t = Instant::now();
            let bytes = state.to_image_bytes().map_err(|e| e.to_string())?;
            let encode_ns = t.elapsed().as_nanos() as f64;
            let loaded = State::from_image_bytes(&bytes).map_err(|e| e.to_string())?;
            if loaded.credited_count() != target || loaded.state_root() != state.state_root() {
                return Err(format!("the image with {target} credited does not load back to the same state"));
            }
            drop(loaded);
            let m = harness::rounds(
                &format!("from-image@{target}"),
                "load",
                1,
                ctx.size(5, 2),
                1,
                json!({ "credited": target, "image_bytes": bytes.len(), "to_image_bytes_ns": encode_ns }),
                |_| {
                    black_box(State::from_image_bytes(black_box(&bytes)).is_ok());
                },
            );
            images.push((target, bytes.len(), p(&m, |p| p.p50_ns) as f64, encode_ns));
            report.push(m);
        }
    }
    drop(rx);
    producer.join().map_err(|_| "the growth producer panicked".to_string())?;
    report.note(format!(
        "growth: {credited} deposits credited in {:.1} s (producer signing on the other core)",
        started.elapsed().as_secs_f64()
    ));

    // Clone: the largest set against the smallest.
    let (small, large) = (targets.first().copied().unwrap_or(POOL), targets.last().copied().unwrap_or(POOL));
    report.ratio_throughput(
        "clone_time_largest_over_smallest",
        &format!("clone@{small}"),
        &format!("clone@{large}"),
    );
    report.ratio_throughput(
        "state_clone_time_over_digest_map_replica",
        &format!("digest-map-replica-clone@{large}"),
        &format!("clone@{large}"),
    );
    if let Some(m) = report.get(&format!("clone@{large}")).cloned() {
        let p50 = p(&m, |p| p.p50_ns) as f64 / 1e6;
        report.goal(
            "clone-credited",
            "cloning a state with 1M credited deposits takes p50 < 1 ms",
            format!("{large} credited: p50 {p50:.2} ms, p99 {:.2} ms", p(&m, |p| p.p99_ns) as f64 / 1e6),
            p50 < 1.0 && large >= 1_000_000,
        );
    }
    // Image: bytes and load time per credited deposit.
    if let [(n0, b0, t0, _), (n1, b1, t1, _)] = images[..] {
        let added = (n1 - n0) as f64;
        let bytes_each = (b1 as f64 - b0 as f64) / added;
        let load_each_ns = (t1 - t0) / added;
        report.ratio_throughput(
            "from_image_time_large_over_base",
            &format!("from-image@{n0}"),
            &format!("from-image@{n1}"),
        );
        report.goal(
            "image-bytes-per-credited",
            "a credited deposit adds at most 128 bytes to the state image",
            format!("{bytes_each:.1} bytes ({n0} -> {n1} credited: {b0} -> {b1} bytes)"),
            bytes_each <= 128.0,
        );
        report.goal(
            "image-load-100k-credited",
            "100k credited deposits add at most 100 ms to State::from_image_bytes (1 us each)",
            format!(
                "p50 {:.1} ms -> {:.1} ms: {:.2} us per credited deposit ({:.0} ms per 100k)",
                t0 / 1e6,
                t1 / 1e6,
                load_each_ns / 1e3,
                load_each_ns * 1e5 / 1e6
            ),
            load_each_ns <= 1_000.0 && n1 >= 100_000,
        );
    }
    if ctx.quick {
        report.note(
            "quick run: the credited set grows to 10k only; the clone and image goals need the full run",
        );
    }
    Ok(())
}
