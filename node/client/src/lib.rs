//! The client side of Bastion's transaction format: ed25519 keys, the canonical body, the
//! signed message and the UDP packet. The load generator, the simulations' workload and the
//! validator's block checks all build the signed message through here, so there is one
//! definition of what a client signs.

use bastion_net::packet;
use bastion_types::tx::{encode_body, encode_body_into};
use bastion_types::{AccountId, Action, Tx, TxAuth, account_of};
use ed25519_zebra::{SigningKey, VerificationKey};

/// Key-derivation context of deterministic keys (devnets, simulations, benchmarks).
pub const DERIVE_CONTEXT: &str = "bastion 2026-11 deterministic test key v1";

/// Label of the devnet's bridge authority key ([`devnet_authority`]).
pub const DEVNET_AUTHORITY: &str = "devnet-authority";

/// Label of the devnet's trader keys ([`devnet_trader`]).
pub const DEVNET_TRADER: &str = "devnet-trader";

/// The devnet's bridge authority: anyone can derive it, so a chain whose genesis names its
/// account is a test network.
pub fn devnet_authority() -> Keypair {
    Keypair::derive(DEVNET_AUTHORITY, 0)
}

/// Devnet trader `i` (1-based in the synthetic workload).
pub fn devnet_trader(i: u64) -> Keypair {
    Keypair::derive(DEVNET_TRADER, i)
}

/// An ed25519 key pair that signs transactions for its account.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
    public: [u8; 32],
}

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        write!(f, "Keypair(account {:?})", self.account())
    }
}

impl Keypair {
    /// The key pair of a 32-byte secret seed.
    pub fn from_seed(seed: [u8; 32]) -> Keypair {
        let signing = SigningKey::from(seed);
        let public: [u8; 32] = VerificationKey::from(&signing).into();
        Keypair { signing, public }
    }

    /// A deterministic key pair for `(label, index)`: devnet traders, simulations and
    /// benchmarks, never real funds (anyone can derive it).
    pub fn derive(label: &str, index: u64) -> Keypair {
        let mut material = Vec::with_capacity(label.len() + 9);
        material.extend_from_slice(label.as_bytes());
        material.push(0);
        material.extend_from_slice(&index.to_le_bytes());
        Keypair::from_seed(blake3::derive_key(DERIVE_CONTEXT, &material))
    }

    /// The secret seed (for writing a key file).
    pub fn seed(&self) -> [u8; 32] {
        self.signing.into()
    }

    /// The public key.
    pub fn public(&self) -> &[u8; 32] {
        &self.public
    }

    /// The account this key acts for.
    pub fn account(&self) -> AccountId {
        account_of(&self.public)
    }

    /// Signs `action` with `nonce` for chain `chain` (its genesis digest).
    pub fn sign(&self, chain: &[u8; 32], nonce: u64, action: Action) -> Signed {
        let body = encode_body(nonce, &action);
        let mut msg = Vec::new();
        packet::signing_message(chain, &body, &mut msg);
        let signature: [u8; 64] = self.signing.sign(&msg).into();
        Signed {
            tx: Tx { signer: self.account(), nonce, action },
            auth: TxAuth { public_key: self.public, signature },
            body,
        }
    }
}

/// A signed transaction: what a block carries (`tx`, `auth`) and what the client sent (`body`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signed {
    /// The transaction, signer derived from the key.
    pub tx: Tx,
    /// Key and signature.
    pub auth: TxAuth,
    /// The canonical body that was signed.
    pub body: Vec<u8>,
}

impl Signed {
    /// The UDP datagram carrying this transaction, appended to `out`.
    pub fn packet_into(&self, out: &mut Vec<u8>) -> Result<(), packet::PacketError> {
        packet::encode(&self.auth.public_key, &self.auth.signature, &self.body, out)
    }

    /// The UDP datagram carrying this transaction.
    pub fn packet(&self) -> Result<Vec<u8>, packet::PacketError> {
        let mut out = Vec::new();
        self.packet_into(&mut out)?;
        Ok(out)
    }
}

/// Domain tag of [`tx_hash`].
pub const TX_HASH_DOMAIN: &[u8] = b"bastion/txhash/v1";

/// A transaction's identity in the public API (`POST /v1/tx`, `GET /v1/tx/{hash}`):
/// BLAKE3 of the domain tag, the signer's public key and the canonical body. It leaves out the
/// signature, so a re-encoded (malleated) signature over the same body names the same
/// transaction, and it can be recomputed from a block's transaction alone.
pub fn tx_hash(public_key: &[u8; 32], body: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(TX_HASH_DOMAIN);
    h.update(public_key);
    h.update(body);
    *h.finalize().as_bytes()
}

impl Signed {
    /// This transaction's [`tx_hash`].
    pub fn hash(&self) -> [u8; 32] {
        tx_hash(&self.auth.public_key, &self.body)
    }
}

/// The message that `tx`'s signer signed on chain `chain`, rebuilt from the transaction alone
/// (the body encoding is canonical): into `msg`, using `body` as scratch space.
pub fn signed_message(chain: &[u8; 32], tx: &Tx, body: &mut Vec<u8>, msg: &mut Vec<u8>) {
    encode_body_into(tx.nonce, &tx.action, body);
    packet::signing_message(chain, body, msg);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use bastion_accel::{SigItem, verify_one};
    use bastion_types::AssetId;

    #[test]
    fn a_signed_tx_verifies_from_its_packet_and_from_the_tx_alone() {
        let k = Keypair::derive("trader", 3);
        assert_eq!(k.account(), Keypair::derive("trader", 3).account(), "derivation is deterministic");
        assert_ne!(k.account(), Keypair::derive("trader", 4).account());
        let chain = [7u8; 32];
        let s = k.sign(&chain, 9, Action::Withdraw { asset: AssetId(0), amount: 5 });
        assert_eq!(s.tx.signer, k.account());

        // From the packet, as ingress sees it.
        let bytes = s.packet().unwrap();
        let p = packet::decode(&bytes).unwrap();
        let mut msg = Vec::new();
        packet::signing_message(&chain, p.body, &mut msg);
        assert!(verify_one(&SigItem { public_key: p.public_key, message: &msg, signature: p.signature }));
        assert_eq!(bastion_types::tx::tx_of(p.public_key, p.body).unwrap(), s.tx);

        // From the block's tx, as a validator re-checks it.
        let (mut body, mut msg2) = (Vec::new(), Vec::new());
        signed_message(&chain, &s.tx, &mut body, &mut msg2);
        assert_eq!(msg2, msg);

        // Another chain's message does not verify.
        signed_message(&[8; 32], &s.tx, &mut body, &mut msg2);
        let sig = s.auth.signature;
        assert!(!verify_one(&SigItem { public_key: &s.auth.public_key, message: &msg2, signature: &sig }));
        assert_eq!(Keypair::from_seed(k.seed()).public(), k.public());
    }
}
