//! Suite `defence`: what a Byzantine leader's junk costs an honest verifier (issue 15).
//!
//! - `refuse-junk-block`: `State::check_txs` on a full block (4,096 transactions) whose last
//!   transaction comes from a key without an account, the worst place for it: every earlier
//!   transaction is looked up before the refusal. `verify` runs this before any signature.
//! - `verify-block-signatures`: what the same block's signatures cost the `batch` backend (one
//!   core, as the application verifies), fresh keys so nothing is cached: what a verifier would
//!   spend on such a block without the pre-check (and still spends on an honest full block).
//! - `governance-check`: `State::check_proposals` on a block with the most proposals a block may
//!   carry, each approved by 2/3 of 100 validators (valid signatures, checked one by one as the
//!   exchange does); `scalar-verify` is one ed25519 verification on the same machine, so the
//!   per-approval overhead beyond the signature shows.
//!
//! Goals: refusing a junk block is at least 100x cheaper than verifying its signatures, and a
//! governance approval costs at most 1.5x a plain signature verification.

use crate::harness::{self, Ctx, Report};
use bastion_accel::{Backend, SigItem};
use bastion_client::Keypair;
use bastion_exchange::{Genesis, State, sign_approval};
use bastion_types::{
    Action, AssetId, Block, GovernanceProposal, PROPOSALS_PER_BLOCK_MAX, ParamUpdate, Tx, TxAuth,
};

/// Transactions in a full block (the chain spec's default `block_txs_max`).
const BLOCK_TXS: usize = 4_096;

/// A state with `n` funded accounts (keys derived from `label`), and those keys.
fn funded(n: usize, label: &str, genesis: &Genesis) -> Result<(State, Vec<Keypair>), String> {
    let mut state = State::from_genesis(genesis).map_err(|e| e.to_string())?;
    let keys: Vec<Keypair> = (0..n as u64).map(|i| Keypair::derive(label, i)).collect();
    let authority = genesis.authority.ok_or("the defence suite funds accounts with a devnet authority")?;
    let txs = keys
        .iter()
        .enumerate()
        .map(|(i, k)| Tx {
            signer: authority,
            nonce: i as u64 + 1,
            action: Action::Deposit { to: k.account(), asset: AssetId(0), amount: 1_000_000 },
        })
        .collect();
    let block = Block { height: 1, timestamp_ms: genesis.timestamp_ms + 1, txs, ..Block::default() };
    state.apply_block(&block).map_err(|e| format!("funding block: {e}"))?;
    Ok((state, keys))
}

pub fn run(ctx: &Ctx, report: &mut Report) -> Result<(), String> {
    let rounds = ctx.size(200, 20);
    let chain = [7u8; 32];

    // A full block: 4,095 transactions of funded accounts, then one from a fresh key.
    let genesis = Genesis::devnet();
    let (state, keys) = funded(BLOCK_TXS - 1, "defence-trader", &genesis)?;
    let mut signed: Vec<(Tx, TxAuth)> = keys
        .iter()
        .map(|k| {
            let s = k.sign(&chain, 1, Action::SetMarginMode { portfolio: false });
            (s.tx, s.auth)
        })
        .collect();
    let fresh =
        Keypair::derive("defence-fresh", 0).sign(&chain, 1, Action::SetMarginMode { portfolio: false });
    signed.push((fresh.tx, fresh.auth));
    let txs: Vec<Tx> = signed.iter().map(|(t, _)| t.clone()).collect();
    if state.check_txs(&txs).is_ok() {
        return Err("the junk block was not refused".into());
    }
    let params = serde_json::json!({ "txs": BLOCK_TXS, "junk": "last" });
    report.push(harness::rounds("refuse-junk-block", "block", 3, rounds, 1, params.clone(), |_| {
        std::hint::black_box(state.check_txs(std::hint::black_box(&txs)).is_err());
    }));

    // The same block's signatures, as the application's `batch` backend verifies them.
    let messages: Vec<Vec<u8>> = signed
        .iter()
        .map(|(t, _)| {
            let (mut body, mut msg) = (Vec::new(), Vec::new());
            bastion_client::signed_message(&chain, t, &mut body, &mut msg);
            msg
        })
        .collect();
    let items: Vec<SigItem<'_>> = signed
        .iter()
        .zip(&messages)
        .map(|((_, a), m)| SigItem { public_key: &a.public_key, signature: &a.signature, message: m })
        .collect();
    let batch = bastion_accel::verifier(Backend::Batch).map_err(|e| e.to_string())?;
    let sig_rounds = ctx.size(10, 2);
    report.push(harness::rounds("verify-block-signatures", "block", 1, sig_rounds, 1, params, |_| {
        std::hint::black_box(batch.verify(std::hint::black_box(&items)));
    }));
    let ratio =
        report.ratio_throughput("refusal_vs_signatures", "refuse-junk-block", "verify-block-signatures");
    let ratio = ratio.unwrap_or(0.0);
    report.goal(
        "junk-block-refusal",
        "refusing a full block with a fresh-key transaction >= 100x cheaper than verifying its signatures",
        format!("{ratio:.0}x"),
        ratio >= 100.0,
    );

    // Governance: the most proposals a block may carry, each with 2/3 of 100 validators.
    let validators = 100usize;
    let seeds: Vec<[u8; 32]> =
        (0..validators).map(|i| *blake3::hash(&(i as u64).to_le_bytes()).as_bytes()).collect();
    let genesis = Genesis::devnet().with_validator_seeds(&seeds);
    let state = State::from_genesis(&genesis).map_err(|e| e.to_string())?;
    let signers = validators * 2 / 3 + 1;
    let proposals: Vec<GovernanceProposal> = (0..PROPOSALS_PER_BLOCK_MAX)
        .map(|i| {
            let mut p = GovernanceProposal {
                update: ParamUpdate::Haircut { asset: AssetId(1), haircut_ppm: 100_000 + i as i64 },
                nonce: i as u64 + 1,
                valid_from: 1,
                valid_until: 10,
                approvals: Vec::new(),
            };
            p.approvals =
                (0..signers).map(|v| sign_approval(seeds[v], v as u16, &genesis.chain_id, &p)).collect();
            p
        })
        .collect();
    let block = Block { height: 1, timestamp_ms: genesis.timestamp_ms + 1, proposals, ..Block::default() };
    state.check_proposals(&block).map_err(|e| format!("the governance block was refused: {e}"))?;
    let approvals = (PROPOSALS_PER_BLOCK_MAX * signers) as u64;
    let gov_rounds = ctx.size(10, 2);
    let params = serde_json::json!({ "proposals": PROPOSALS_PER_BLOCK_MAX, "validators": validators, "approvals": approvals });
    report.push(harness::rounds("governance-check", "approval", 1, gov_rounds, approvals, params, |_| {
        std::hint::black_box(state.check_proposals(std::hint::black_box(&block)).is_ok());
    }));
    let scalar = bastion_accel::verifier(Backend::Scalar).map_err(|e| e.to_string())?;
    let one = &items[..1];
    report.push(harness::latency("scalar-verify", 20, ctx.size(2_000, 200), serde_json::Value::Null, |_| {
        std::hint::black_box(scalar.verify(std::hint::black_box(one)));
    }));
    let ratio =
        report.ratio_throughput("approval_vs_signature", "governance-check", "scalar-verify").unwrap_or(0.0);
    report.goal(
        "governance-overhead",
        "a governance approval costs at most 1.5x one ed25519 verification",
        format!("{:.2}x the signature's cost", if ratio > 0.0 { 1.0 / ratio } else { f64::INFINITY }),
        ratio >= 1.0 / 1.5,
    );
    report.note(format!(
        "a block with {PROPOSALS_PER_BLOCK_MAX} proposals of {signers} approvals costs {approvals} verifications, \
         paid once by each verifier (its speculative execution is the one it keeps)"
    ));
    Ok(())
}
