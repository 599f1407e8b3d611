//! Helpers shared by the bridge's integration tests: a four-validator chain, signing, and
//! reading the ledger file.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use bastion_bridge::{BridgeConfig, BridgeValidator, SimChain};
use bastion_types::{AccountId, Approval, AssetId, ValidatorIndex, Voucher, voucher_message};
use std::path::Path;

/// The Bastion chain the test bridge serves.
pub const CHAIN: &str = "bastion-test";

/// The four validators' secret seeds; validator i has seed `SEEDS[i]`.
pub const SEEDS: [[u8; 32]; 4] = [[21; 32], [22; 32], [23; 32], [24; 32]];

/// The trader account deposits credit and vouchers pay in the tests.
pub const ALICE: AccountId = AccountId(5);

/// The quote asset.
pub const USD: AssetId = AssetId(0);

/// A config with the four validators at `stakes`.
pub fn config_with_stakes(stakes: [u64; 4], confirmations: u64) -> BridgeConfig {
    BridgeConfig {
        chain_id: CHAIN.to_string(),
        validators: SEEDS
            .iter()
            .zip(stakes)
            .map(|(s, stake)| BridgeValidator::from_seed(*s, stake))
            .collect(),
        block_ms: 1000,
        confirmations,
    }
}

/// Four equal-stake validators, 2 confirmations.
pub fn config() -> BridgeConfig {
    config_with_stakes([1, 1, 1, 1], 2)
}

/// A new chain in `dir` with [`config`].
pub fn new_chain(dir: &Path) -> SimChain {
    SimChain::create(dir, config()).unwrap()
}

/// Validator `index`'s approval (with seed `seed`) of `voucher` on chain `chain_id`.
pub fn sign_with(seed: [u8; 32], index: u16, chain_id: &str, voucher: &Voucher) -> Approval {
    let signature = ed25519_zebra::SigningKey::from(seed).sign(&voucher_message(chain_id, voucher));
    Approval { validator: ValidatorIndex(index), signature: signature.into() }
}

/// Approvals of `voucher` on [`CHAIN`] by the validators at `indices`, with their own keys.
pub fn approvals(voucher: &Voucher, indices: &[u16]) -> Vec<Approval> {
    indices.iter().map(|&i| sign_with(SEEDS[usize::from(i)], i, CHAIN, voucher)).collect()
}

/// A voucher paying `amount` of USD to ALICE.
pub fn voucher(id: u64, amount: i128) -> Voucher {
    Voucher { id, account: ALICE, asset: USD, amount, height: 40 + id }
}

/// The ledger file's lines.
pub fn ledger_lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("ledger.jsonl")).unwrap().lines().map(str::to_string).collect()
}
