//! What a client signs: the canonical encoding of a transaction's body, and the binding of an
//! account to the key that signs for it.
//!
//! A signed transaction travels as `public key | signature | body` (the envelope is in
//! `bastion-net`). The body is `postcard((nonce, action))`; the signer is not in it, because the
//! account is derived from the public key ([`account_of`]): a key can only ever act for its own
//! account, and a block carries the key and signature next to each [`Tx`] so every validator
//! re-checks both.
//!
//! Canonical: postcard admits several byte strings for one value (padded varints), so
//! [`decode_body`] re-encodes what it read and refuses bytes that differ. The bytes a client
//! signed are therefore exactly [`encode_body`] of the transaction the block carries, and a
//! validator can rebuild the signed message from the block alone.

use crate::{AccountId, Action, Tx};

/// Largest body accepted (one UDP datagram minus the envelope's 97 header bytes).
pub const MAX_BODY_BYTES: usize = 1232 - 97;

/// Key-derivation context of account ids (BLAKE3 `derive_key`).
pub const ACCOUNT_CONTEXT: &str = "bastion 2026-11 account id from ed25519 public key v1";

/// The account an ed25519 public key acts for: the first 8 bytes (little-endian) of
/// BLAKE3-derive-key([`ACCOUNT_CONTEXT`], key).
///
/// 64 bits: finding a second key for an existing account takes about 2^64 hash evaluations.
/// That is the margin this format accepts for now; a wider id is a state-format change.
pub fn account_of(public_key: &[u8; 32]) -> AccountId {
    let h = blake3::derive_key(ACCOUNT_CONTEXT, public_key);
    let mut id = [0u8; 8];
    id.copy_from_slice(&h[..8]);
    AccountId(u64::from_le_bytes(id))
}

/// The signature and key that authorise one transaction of a block (`txs[i]` by `auth[i]`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TxAuth {
    /// The signer's ed25519 public key; [`account_of`] of it must be the tx's signer.
    pub public_key: [u8; 32],
    /// Signature over the envelope's signing message of [`encode_body`] of the tx.
    pub signature: [u8; 64],
}

impl std::fmt::Debug for TxAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hex = |b: &[u8]| b.iter().take(4).map(|x| format!("{x:02x}")).collect::<String>();
        write!(f, "TxAuth(pk {}…, sig {}…)", hex(&self.public_key), hex(&self.signature))
    }
}

/// Bytes of one [`TxAuth`] in a block's witness.
pub const AUTH_BYTES: usize = 96;

/// The witness bytes of a block's authorisations: each key then signature, in tx order.
pub fn auth_to_bytes(auth: &[TxAuth]) -> Vec<u8> {
    let mut out = Vec::with_capacity(auth.len().saturating_mul(AUTH_BYTES));
    for a in auth {
        out.extend_from_slice(&a.public_key);
        out.extend_from_slice(&a.signature);
    }
    out
}

/// Reads [`auth_to_bytes`]' output; `None` unless it is a whole number of records.
pub fn auth_from_bytes(bytes: &[u8]) -> Option<Vec<TxAuth>> {
    if !bytes.len().is_multiple_of(AUTH_BYTES) {
        return None;
    }
    bytes
        .chunks_exact(AUTH_BYTES)
        .map(|c| {
            let (pk, sig) = c.split_first_chunk::<32>()?;
            Some(TxAuth { public_key: *pk, signature: sig.try_into().ok()? })
        })
        .collect()
}

/// Why a body is refused; each is counted by the admission stage.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Longer than a datagram can carry.
    #[error("body of {0} bytes exceeds {MAX_BODY_BYTES}")]
    TooLong(usize),
    /// Not a postcard `(nonce, action)`, or bytes left over after it.
    #[error("body does not decode: {0}")]
    Malformed(String),
    /// Decodes, but is not the canonical encoding of what it decodes to.
    #[error("body is not canonically encoded")]
    NotCanonical,
}

/// The canonical body of a transaction: `postcard((nonce, action))`.
pub fn encode_body(nonce: u64, action: &Action) -> Vec<u8> {
    let mut out = Vec::new();
    encode_body_into(nonce, action, &mut out);
    out
}

/// [`encode_body`] into `out` (cleared first), reusing its allocation.
pub fn encode_body_into(nonce: u64, action: &Action, out: &mut Vec<u8>) {
    out.clear();
    // Serializing plain data into a Vec cannot fail (no maps with non-string keys, no I/O);
    // should it ever, the body is left empty and no signature can verify against it.
    if let Ok(v) = postcard::to_extend(&(nonce, action), std::mem::take(out)) {
        *out = v;
    }
}

/// Reads a body: the nonce and action, refusing anything but the canonical encoding.
pub fn decode_body(body: &[u8]) -> Result<(u64, Action), BodyError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(BodyError::TooLong(body.len()));
    }
    let ((nonce, action), rest): ((u64, Action), &[u8]) =
        postcard::take_from_bytes(body).map_err(|e| BodyError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(BodyError::Malformed(format!("{} trailing bytes", rest.len())));
    }
    if encode_body(nonce, &action) != body {
        return Err(BodyError::NotCanonical);
    }
    Ok((nonce, action))
}

/// The transaction a signed body stands for: the signer is the key's account.
pub fn tx_of(public_key: &[u8; 32], body: &[u8]) -> Result<Tx, BodyError> {
    let (nonce, action) = decode_body(body)?;
    Ok(Tx { signer: account_of(public_key), nonce, action })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::{AssetId, MarketId, OrderRequest, SelfTradePrevention, Side, TimeInForce};
    use proptest::prelude::*;
    /// account_of(&[0; 32]), pinned: changing the derivation would re-home every account.
    const PINNED: u64 = 15_674_302_340_451_090_962;

    fn order() -> Action {
        Action::Place(OrderRequest {
            market: MarketId(1),
            side: Side::Buy,
            price: Some(400_000),
            qty: 3,
            tif: TimeInForce::Gtc,
            reduce_only: false,
            good_til_height: Some(900),
            stp: SelfTradePrevention::CancelResting,
        })
    }

    #[test]
    fn body_round_trips_and_binds_the_key() {
        let body = encode_body(7, &order());
        assert_eq!(decode_body(&body).unwrap(), (7, order()));
        let tx = tx_of(&[3; 32], &body).unwrap();
        assert_eq!((tx.signer, tx.nonce), (account_of(&[3; 32]), 7));
        assert_ne!(account_of(&[3; 32]), account_of(&[4; 32]));
        assert_eq!(account_of(&[0; 32]), AccountId(PINNED));
        let mut reused = vec![9u8; 50];
        encode_body_into(7, &order(), &mut reused);
        assert_eq!(reused, body);
    }

    #[test]
    fn padded_varints_trailing_bytes_and_oversize_are_refused() {
        let body = encode_body(5, &Action::Withdraw { asset: AssetId(0), amount: 10 });
        // Nonce 5 as a two-byte varint (0x85 0x00) decodes to the same value.
        let mut padded = vec![0x85, 0x00];
        padded.extend_from_slice(&body[1..]);
        assert_eq!(decode_body(&padded), Err(BodyError::NotCanonical));
        let mut trailing = body.clone();
        trailing.push(0);
        assert!(matches!(decode_body(&trailing), Err(BodyError::Malformed(_))));
        assert!(matches!(decode_body(&[]), Err(BodyError::Malformed(_))));
        assert_eq!(decode_body(&vec![0; MAX_BODY_BYTES + 1]), Err(BodyError::TooLong(MAX_BODY_BYTES + 1)));
    }

    #[test]
    fn auth_bytes_round_trip() {
        let auth = vec![
            TxAuth { public_key: [1; 32], signature: [2; 64] },
            TxAuth { public_key: [3; 32], signature: [4; 64] },
        ];
        let bytes = auth_to_bytes(&auth);
        assert_eq!(bytes.len(), 2 * AUTH_BYTES);
        assert_eq!(auth_from_bytes(&bytes).unwrap(), auth);
        assert_eq!(auth_from_bytes(&bytes[1..]), None);
        assert_eq!(auth_from_bytes(&[]).unwrap(), vec![]);
    }

    proptest! {
        /// Any bytes: decoding returns, never panics, and whatever it accepts re-encodes to
        /// exactly those bytes.
        #[test]
        fn any_bytes_decode_or_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok((nonce, action)) = decode_body(&bytes) {
                prop_assert_eq!(encode_body(nonce, &action), bytes);
            }
        }

        /// Mutating one byte of a valid body never yields a different accepted encoding of
        /// the same transaction.
        #[test]
        fn mutated_bodies_are_canonical_or_refused(nonce in any::<u64>(), at in 0usize..64, to in any::<u8>()) {
            let mut body = encode_body(nonce, &order());
            let i = at % body.len();
            body[i] = to;
            if let Ok((n, a)) = decode_body(&body) {
                prop_assert_eq!(encode_body(n, &a), body);
            }
        }
    }
}
