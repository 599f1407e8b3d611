//! The simulated chain's configuration (`<dir>/bridge.json`): which Bastion chain it serves and
//! the validator set whose signatures release its funds.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

use crate::codec;

/// Longest chain id, in bytes (as Bastion's genesis allows).
pub const CHAIN_ID_BYTES_MAX: usize = 64;

/// Most validators a bridge's set may hold: every index fits a `ValidatorIndex` (u16).
pub const VALIDATORS_MAX: usize = 1 << 16;

/// Deepest confirmation depth a source may wait for: it bounds what a
/// [`FileSource`](crate::FileSource) holds back.
pub const CONFIRMATIONS_MAX: u64 = 10_000;

const _: () = assert!(VALIDATORS_MAX - 1 == u16::MAX as usize);

/// One validator as the source chain's bridge knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeValidator {
    /// The validator's ed25519 identity key (the one that signs vouchers); 64 hex digits in
    /// JSON.
    #[serde(with = "codec::hex32")]
    pub key: [u8; 32],
    /// Its stake (the same weights as Bastion's validator set).
    pub stake: u64,
}

impl BridgeValidator {
    /// The validator whose identity key has the secret seed `seed` (RFC 8032), with `stake`.
    pub fn from_seed(seed: [u8; 32], stake: u64) -> BridgeValidator {
        let key: [u8; 32] =
            ed25519_zebra::VerificationKey::from(&ed25519_zebra::SigningKey::from(seed)).into();
        BridgeValidator { key, stake }
    }
}

/// The simulated chain's configuration, as `bridge.json` holds it:
///
/// ```json
/// {"chain_id":"bastion-devnet","validators":[{"key":"<64 hex>","stake":1}],"block_ms":1000,"confirmations":2}
/// ```
///
/// A real bridge contract would hold the validator set itself and follow Bastion's validator
/// set changes; the simulated chain trusts this list as written when the chain was created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    /// The Bastion chain whose vouchers this chain pays (signatures cover it).
    pub chain_id: String,
    /// Bastion's validators, in index order: `ValidatorIndex(i)` is `validators[i]`.
    pub validators: Vec<BridgeValidator>,
    /// How often the chain produces a block, ms.
    pub block_ms: u64,
    /// How many blocks validators wait for before attesting a deposit (1: its own block).
    pub confirmations: u64,
}

impl BridgeConfig {
    /// The validators' stake summed.
    pub fn total_stake(&self) -> u128 {
        self.validators.iter().map(|v| u128::from(v.stake)).sum()
    }

    /// Whether `signed` stake is a quorum: at least 2/3 of the total (`signed * 3 >= total * 2`).
    pub fn is_quorum(&self, signed: u128) -> bool {
        let total = self.total_stake();
        // Both sides fit: stakes are u64 and there are at most 2^16 validators.
        signed.saturating_mul(3) >= total.saturating_mul(2)
    }

    /// Checks the configuration, saying what is wrong for the operator.
    pub fn check(&self) -> Result<(), String> {
        if self.chain_id.is_empty() || self.chain_id.len() > CHAIN_ID_BYTES_MAX {
            return Err(format!(
                "chain_id must be 1 to {CHAIN_ID_BYTES_MAX} bytes, got {}",
                self.chain_id.len()
            ));
        }
        if self.validators.is_empty() || self.validators.len() > VALIDATORS_MAX {
            return Err(format!(
                "validators must list 1 to {VALIDATORS_MAX} validators, got {}",
                self.validators.len()
            ));
        }
        let mut keys = BTreeSet::new();
        for (i, v) in self.validators.iter().enumerate() {
            if ed25519_zebra::VerificationKey::try_from(v.key).is_err() {
                return Err(format!("validator {i}'s key is not an ed25519 public key"));
            }
            if !keys.insert(v.key) {
                return Err(format!("validator {i}'s key is listed twice"));
            }
        }
        if self.total_stake() == 0 {
            return Err("the validators' total stake is zero".to_string());
        }
        if self.block_ms == 0 {
            return Err("block_ms must be positive".to_string());
        }
        if self.confirmations == 0 || self.confirmations > CONFIRMATIONS_MAX {
            return Err(format!(
                "confirmations must be 1 to {CONFIRMATIONS_MAX}, got {}",
                self.confirmations
            ));
        }
        Ok(())
    }
}
