//! JSON helpers shared by the ledger, the config and the inbox: hex for keys and signatures,
//! decimal strings for amounts.
//!
//! Amounts are `i128` micro-units. They are written as decimal strings (`"1000000"`) so that
//! tools that read JSON numbers as doubles (jq, JavaScript) never round them; readers accept a
//! JSON integer too.

use bastion_types::{AccountId, Approval, AssetId, BridgeDeposit, SourceId, ValidatorIndex, Voucher};
use serde::de::{Error, Unexpected, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Lower-case hex of `bytes`.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len().saturating_mul(2));
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Exactly `N` bytes from `2 * N` hex digits (either case).
pub(crate) fn from_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N.checked_mul(2)? || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        let start = i.checked_mul(2)?;
        *o = u8::from_str_radix(s.get(start..start.checked_add(2)?)?, 16).ok()?;
    }
    Some(out)
}

/// `#[serde(with = "hex32")]`: 32 bytes as 64 hex digits.
pub(crate) mod hex32 {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&to_hex(bytes))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        d.deserialize_str(HexVisitor::<32>)
    }
}

/// `#[serde(with = "hex64")]`: 64 bytes as 128 hex digits.
pub(crate) mod hex64 {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&to_hex(bytes))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        d.deserialize_str(HexVisitor::<64>)
    }
}

struct HexVisitor<const N: usize>;

impl<const N: usize> Visitor<'_> for HexVisitor<N> {
    type Value = [u8; N];

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} hex digits", N.saturating_mul(2))
    }

    fn visit_str<E: Error>(self, v: &str) -> Result<[u8; N], E> {
        from_hex::<N>(v).ok_or_else(|| E::invalid_value(Unexpected::Str(v), &self))
    }
}

/// `#[serde(with = "amount")]`: an `i128` as a decimal string; a JSON integer is accepted too.
pub(crate) mod amount {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &i128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i128, D::Error> {
        d.deserialize_any(AmountVisitor)
    }

    struct AmountVisitor;

    impl Visitor<'_> for AmountVisitor {
        type Value = i128;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an amount in micro-units: a decimal string or an integer")
        }

        fn visit_str<E: Error>(self, v: &str) -> Result<i128, E> {
            // `i128::from_str` accepts a leading '+'; the format does not.
            if v.starts_with('+') {
                return Err(E::invalid_value(Unexpected::Str(v), &self));
            }
            v.parse().map_err(|_| E::invalid_value(Unexpected::Str(v), &self))
        }

        fn visit_i64<E: Error>(self, v: i64) -> Result<i128, E> {
            Ok(i128::from(v))
        }

        fn visit_u64<E: Error>(self, v: u64) -> Result<i128, E> {
            Ok(i128::from(v))
        }

        fn visit_i128<E: Error>(self, v: i128) -> Result<i128, E> {
            Ok(v)
        }

        fn visit_u128<E: Error>(self, v: u128) -> Result<i128, E> {
            i128::try_from(v).map_err(|_| E::custom(format!("amount {v} exceeds i128")))
        }
    }
}

/// A [`BridgeDeposit`] as JSON writes it: the amount as a decimal string.
#[derive(Serialize, Deserialize)]
struct DepositJson {
    source_id: SourceId,
    to: AccountId,
    asset: AssetId,
    #[serde(with = "amount")]
    amount: i128,
}

/// `#[serde(with = "deposit_list")]`: a list of [`BridgeDeposit`]s with decimal-string amounts.
pub(crate) mod deposit_list {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &[BridgeDeposit], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|d| DepositJson {
            source_id: d.source_id,
            to: d.to,
            asset: d.asset,
            amount: d.amount,
        }))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<BridgeDeposit>, D::Error> {
        let list = Vec::<DepositJson>::deserialize(d)?;
        Ok(list
            .into_iter()
            .map(|d| BridgeDeposit { source_id: d.source_id, to: d.to, asset: d.asset, amount: d.amount })
            .collect())
    }
}

/// A [`Voucher`] as JSON writes it: the amount as a decimal string.
#[derive(Serialize, Deserialize)]
struct VoucherJson {
    id: u64,
    account: AccountId,
    asset: AssetId,
    #[serde(with = "amount")]
    amount: i128,
    height: u64,
}

/// `#[serde(with = "voucher_json")]`: a [`Voucher`] with a decimal-string amount.
pub(crate) mod voucher_json {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &Voucher, s: S) -> Result<S::Ok, S::Error> {
        VoucherJson { id: v.id, account: v.account, asset: v.asset, amount: v.amount, height: v.height }
            .serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Voucher, D::Error> {
        let v = VoucherJson::deserialize(d)?;
        Ok(Voucher { id: v.id, account: v.account, asset: v.asset, amount: v.amount, height: v.height })
    }
}

/// An [`Approval`] as JSON writes it: the signature as 128 hex digits.
#[derive(Serialize, Deserialize)]
struct ApprovalJson {
    validator: ValidatorIndex,
    #[serde(with = "hex64")]
    signature: [u8; 64],
}

/// `#[serde(with = "approval_list")]`: a list of [`Approval`]s with hex signatures.
pub(crate) mod approval_list {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &[Approval], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|a| ApprovalJson { validator: a.validator, signature: a.signature }))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Approval>, D::Error> {
        let list = Vec::<ApprovalJson>::deserialize(d)?;
        Ok(list.into_iter().map(|a| Approval { validator: a.validator, signature: a.signature }).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Probe {
        #[serde(with = "amount")]
        a: i128,
        #[serde(with = "hex32")]
        k: [u8; 32],
    }

    #[test]
    fn amounts_are_strings_and_hex_round_trips() {
        let p = Probe { a: i128::MAX, k: [0xAB; 32] };
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, format!("{{\"a\":\"{}\",\"k\":\"{}\"}}", i128::MAX, "ab".repeat(32)));
        assert_eq!(serde_json::from_str::<Probe>(&json).unwrap(), p);
        let int: Probe =
            serde_json::from_str(&format!("{{\"a\":-5,\"k\":\"{}\"}}", "AB".repeat(32))).unwrap();
        assert_eq!(int, Probe { a: -5, k: [0xAB; 32] });
        assert!(
            serde_json::from_str::<Probe>(&format!("{{\"a\":\"+5\",\"k\":\"{}\"}}", "ab".repeat(32)))
                .is_err()
        );
        assert!(
            serde_json::from_str::<Probe>(&format!("{{\"a\":\"5\",\"k\":\"{}\"}}", "ab".repeat(31))).is_err()
        );
        assert_eq!(from_hex::<2>("0aFf"), Some([0x0a, 0xff]));
        assert_eq!(from_hex::<2>("0aF"), None);
        assert_eq!(from_hex::<2>("é12"), None);
    }
}
