//! The collateral bridge's vocabulary: deposits that validators attest, withdrawal vouchers that
//! validators sign, and the exact bytes each signature covers.
//!
//! A deposit on the source chain is credited on Bastion when a block carries it with
//! attestations (ed25519 signatures by validators' identity keys over [`deposit_message`])
//! weighing at least 2/3 of stake; each [`SourceId`] is credited at most once, forever. A
//! withdrawal debits the account and creates a [`Voucher`]; once signatures of at least 2/3 of
//! stake over [`voucher_message`] are on chain, anyone may present the voucher to the source
//! chain's bridge, which checks them against the validator set and pays out once.

use crate::{AccountId, Approval, AssetId, Micros};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A deposit's identity on its source chain (a transaction hash with its log index folded in,
/// or the simulated chain's deposit hash): 32 bytes. JSON writes it as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SourceId(pub [u8; 32]);

impl SourceId {
    /// Lower-case hex, 64 digits.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// From 64 hex digits (either case).
    pub fn from_hex(s: &str) -> Option<SourceId> {
        if s.len() != 64 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(SourceId(out))
    }
}

impl fmt::Debug for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "src:{}", self.hex())
    }
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl Serialize for SourceId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() { s.serialize_str(&self.hex()) } else { s.serialize_bytes(&self.0) }
    }
}

impl<'de> Deserialize<'de> for SourceId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SourceId, D::Error> {
        use serde::de::{Error, Visitor};
        struct V;
        impl Visitor<'_> for V {
            type Value = SourceId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a source id: 64 hex digits or 32 bytes")
            }
            fn visit_str<E: Error>(self, v: &str) -> Result<SourceId, E> {
                SourceId::from_hex(v).ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(v), &self))
            }
            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<SourceId, E> {
                v.try_into().map(SourceId).map_err(|_| E::invalid_length(v.len(), &self))
            }
        }
        if d.is_human_readable() { d.deserialize_str(V) } else { d.deserialize_bytes(V) }
    }
}

/// The account a deposit tops the insurance fund up with instead of crediting a trader (no key
/// derives to it: an account id is the first 8 bytes of a BLAKE3 hash).
pub const INSURANCE_FUND_ACCOUNT: AccountId = AccountId(u64::MAX);

/// A deposit to the bridge on the source chain, as validators attest it. Two attestations
/// count together only if every field is equal.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BridgeDeposit {
    /// The deposit's identity on the source chain: credited at most once, forever.
    pub source_id: SourceId,
    /// The credited account ([`INSURANCE_FUND_ACCOUNT`]: the insurance fund).
    pub to: AccountId,
    /// Collateral asset.
    pub asset: AssetId,
    /// Amount in the asset's micro-units; positive.
    pub amount: Micros,
}

/// A deposit with its validators' attestations, as a block carries it: credited if they are
/// valid signatures over [`deposit_message`] by distinct validators weighing at least 2/3 of
/// stake, and its source id was never credited; anything else refuses the block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestedDeposit {
    /// What was deposited.
    pub deposit: BridgeDeposit,
    /// Validators' signatures, at most one per validator.
    pub attestations: Vec<Approval>,
}

/// A withdrawal's claim on the bridge's funds on the source chain: pays `amount` of `asset` to
/// `account`'s address there, once, when presented with 2/3 of stake's signatures.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Voucher {
    /// Sequence number, from 1, in the order withdrawals executed: the source chain pays each
    /// id once.
    pub id: u64,
    /// The withdrawing account (on the simulated chain, also the payee).
    pub account: AccountId,
    /// Collateral asset.
    pub asset: AssetId,
    /// Amount in the asset's micro-units; positive.
    pub amount: Micros,
    /// The Bastion height whose block executed the withdrawal.
    pub height: u64,
}

/// Validators' signatures of a voucher, as a block carries them: recorded if they are valid
/// signatures over [`voucher_message`] of the stored voucher `id` by distinct validators
/// weighing at least 2/3 of stake, and the voucher has none recorded yet; anything else
/// refuses the block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoucherSignatures {
    /// The voucher.
    pub id: u64,
    /// Validators' signatures, at most one per validator.
    pub approvals: Vec<Approval>,
}

/// Domain separation tag of deposit attestations.
pub const DEPOSIT_DOMAIN: &[u8] = b"bastion/bridge-deposit/v1";

/// Domain separation tag of voucher signatures.
pub const VOUCHER_DOMAIN: &[u8] = b"bastion/bridge-voucher/v1";

/// Most attested deposits one block may carry.
pub const DEPOSITS_PER_BLOCK_MAX: usize = 256;

/// Most voucher signature sets one block may carry.
pub const VOUCHERS_PER_BLOCK_MAX: usize = 256;

fn domain_and_chain(domain: &[u8], chain_id: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(domain.len() + 1 + chain_id.len() + 96);
    m.extend_from_slice(domain);
    // Chain ids are at most 64 bytes (checked where the genesis is loaded).
    let id = &chain_id.as_bytes()[..chain_id.len().min(255)];
    m.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
    m.extend_from_slice(id);
    m
}

/// The bytes a validator signs to attest `deposit` on chain `chain_id`:
/// `DEPOSIT_DOMAIN | len(chain_id) as u8 | chain_id | source_id (32) | to (u64 BE) |
/// asset (u16 BE) | amount (i128 BE)`. Fixed width, so a contract on the source chain can
/// rebuild it without a serializer.
pub fn deposit_message(chain_id: &str, deposit: &BridgeDeposit) -> Vec<u8> {
    let mut m = domain_and_chain(DEPOSIT_DOMAIN, chain_id);
    m.extend_from_slice(&deposit.source_id.0);
    m.extend_from_slice(&deposit.to.0.to_be_bytes());
    m.extend_from_slice(&deposit.asset.0.to_be_bytes());
    m.extend_from_slice(&deposit.amount.to_be_bytes());
    m
}

/// The bytes a validator signs to release `voucher` on chain `chain_id`:
/// `VOUCHER_DOMAIN | len(chain_id) as u8 | chain_id | id (u64 BE) | account (u64 BE) |
/// asset (u16 BE) | amount (i128 BE) | height (u64 BE)`. Fixed width, as the source chain's
/// bridge rebuilds it to check the signatures.
pub fn voucher_message(chain_id: &str, voucher: &Voucher) -> Vec<u8> {
    let mut m = domain_and_chain(VOUCHER_DOMAIN, chain_id);
    m.extend_from_slice(&voucher.id.to_be_bytes());
    m.extend_from_slice(&voucher.account.0.to_be_bytes());
    m.extend_from_slice(&voucher.asset.0.to_be_bytes());
    m.extend_from_slice(&voucher.amount.to_be_bytes());
    m.extend_from_slice(&voucher.height.to_be_bytes());
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_id_is_hex_in_json_and_bytes_in_postcard() {
        let id = SourceId([0xAB; 32]);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{}\"", "ab".repeat(32)));
        assert_eq!(serde_json::from_str::<SourceId>(&json).unwrap(), id);
        let bytes = postcard::to_allocvec(&id).unwrap();
        assert_eq!(bytes.len(), 33, "a length byte and 32 bytes");
        assert_eq!(postcard::from_bytes::<SourceId>(&bytes).unwrap(), id);
        assert_eq!(SourceId::from_hex(&"AB".repeat(32)), Some(id));
        assert_eq!(SourceId::from_hex("ab"), None);
        assert_eq!(SourceId::from_hex(&"zz".repeat(32)), None);
    }

    #[test]
    fn messages_bind_every_field_and_the_chain() {
        let d =
            BridgeDeposit { source_id: SourceId([1; 32]), to: AccountId(7), asset: AssetId(0), amount: 5 };
        let base = deposit_message("c", &d);
        assert_ne!(base, deposit_message("d", &d));
        assert_ne!(base, deposit_message("c", &BridgeDeposit { amount: 6, ..d.clone() }));
        assert_ne!(base, deposit_message("c", &BridgeDeposit { to: AccountId(8), ..d.clone() }));
        assert_ne!(base, deposit_message("c", &BridgeDeposit { asset: AssetId(1), ..d.clone() }));
        assert_ne!(base, deposit_message("c", &BridgeDeposit { source_id: SourceId([2; 32]), ..d.clone() }));
        let v = Voucher { id: 1, account: AccountId(7), asset: AssetId(0), amount: 5, height: 9 };
        let vm = voucher_message("c", &v);
        assert_eq!(vm.len(), VOUCHER_DOMAIN.len() + 2 + 8 + 8 + 2 + 16 + 8);
        assert_ne!(vm, voucher_message("c", &Voucher { id: 2, ..v.clone() }));
        assert_ne!(vm, voucher_message("c", &Voucher { height: 10, ..v.clone() }));
        assert_ne!(vm[..VOUCHER_DOMAIN.len()], base[..VOUCHER_DOMAIN.len()]);
    }
}
