//! The collateral bridge on Bastion's side: deposits credited by validators' attestations, and
//! withdrawal vouchers that validators sign for the source chain.
//!
//! **Deposits.** A block may carry up to [`DEPOSITS_PER_BLOCK_MAX`] [`AttestedDeposit`]s.
//! Before the block changes anything, each is checked ([`State::check_bridge`]): a positive
//! amount of a known asset, a source id never credited on this chain and not repeated in the
//! block, room for the account it creates, and attestations that are valid ed25519 signatures
//! (ZIP-215, the one rule of every signature on this chain) by distinct validators' identity
//! keys over [`deposit_message`], weighing at least 2/3 of stake. One failure refuses the whole
//! block, so no leader can credit what 2/3 of stake did not attest, and the same check runs when
//! a finalized block is replayed. A credited deposit is kept by source id
//! ([`State::credited`]) for ever: the same source deposit is never credited twice, whoever
//! re-signs or re-proposes it, after any restart or state sync (the set is part of the state,
//! its root and its snapshots). A deposit to [`INSURANCE_FUND_ACCOUNT`] tops up the insurance
//! fund.
//!
//! **Withdrawals.** `Action::Withdraw` debits the account (only while its initial margin still
//! holds) and stores a [`Voucher`] with the next voucher id. Validators sign stored vouchers
//! (over [`voucher_message`]); a block may carry up to [`VOUCHERS_PER_BLOCK_MAX`]
//! [`VoucherSignatures`], each for a stored voucher that has none yet, weighing 2/3 of stake,
//! checked like deposits. The signatures are stored with the voucher ([`State::voucher`]):
//! anyone can read them and present the voucher to the source chain, whose bridge checks them
//! against the validator set and pays each voucher id once.
//!
//! **What stake can do.** Less than 1/3 of stake can neither credit nor release anything, nor
//! stop either (2/3 signs without it). 1/3 or more can stop credits and releases by not
//! signing. 2/3 or more can credit deposits that never happened and sign vouchers for
//! withdrawals that never happened: the bridge's funds are exactly as safe as 2/3 of stake is
//! honest. No single key can do either on a chain that is not a devnet: the genesis authority's
//! `Action::Deposit` is refused there (`Reject::DevnetOnly`), and a production chain spec with
//! an authority does not load.

use crate::BlockError;
use crate::num::add;
use crate::root::RecordKey;
use crate::state::{ACCOUNTS_MAX, State};
use bastion_types::{
    AccountId, Approval, AssetId, AttestedDeposit, Block, BridgeDeposit, DEPOSITS_PER_BLOCK_MAX, Event,
    INSURANCE_FUND_ACCOUNT, Micros, Reject, SourceId, VOUCHERS_PER_BLOCK_MAX, Voucher, VoucherSignatures,
    deposit_message, voucher_message,
};
use std::collections::BTreeSet;

/// The bridge's records in the state: persistent maps, so cloning a state (one per
/// unfinalized block) shares them instead of copying every deposit ever credited.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BridgeState {
    /// Credited deposits by source id, for ever.
    pub(crate) credited: imbl::OrdMap<SourceId, Credited>,
    /// Vouchers by id.
    pub(crate) vouchers: imbl::OrdMap<u64, VoucherEntry>,
    /// The last voucher id assigned.
    pub(crate) last_voucher: u64,
}

/// A credited deposit, as the state keeps it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Credited {
    /// What was credited.
    pub deposit: BridgeDeposit,
    /// The height of the block that credited it.
    pub height: u64,
}

/// A withdrawal's voucher with the validators' signatures once a block carried 2/3 of stake's.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VoucherEntry {
    /// The claim on the source chain.
    pub voucher: Voucher,
    /// Signatures weighing at least 2/3 of stake; empty until a block carried them.
    pub approvals: Vec<Approval>,
}

impl VoucherEntry {
    /// Whether 2/3 of stake's signatures are on chain (the voucher can be paid out).
    pub fn signed(&self) -> bool {
        !self.approvals.is_empty()
    }
}

/// Why a block's bridge items are refused ([`BlockError::Bridge`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BridgeError {
    /// More items of one kind than a block may carry.
    #[error("{got} {what} in one block; at most {max}")]
    TooMany {
        /// "deposits" or "voucher signature sets".
        what: &'static str,
        /// Carried.
        got: usize,
        /// The limit.
        max: usize,
    },
    /// The deposit was credited before (at `height`).
    #[error("deposit {source_id} was credited at height {height}")]
    AlreadyCredited {
        /// Its source id.
        source_id: SourceId,
        /// Where.
        height: u64,
    },
    /// The same source id twice in one block.
    #[error("deposit {0} appears twice in the block")]
    Repeated(SourceId),
    /// Not a positive amount of a known asset, or a credit that would overflow or create an
    /// account beyond the limit.
    #[error("deposit {source_id}: {reason}")]
    Uncreditable {
        /// Its source id.
        source_id: SourceId,
        /// Why.
        reason: Reject,
    },
    /// Signatures for a voucher that does not exist.
    #[error("voucher {0} does not exist")]
    UnknownVoucher(u64),
    /// Signatures for a voucher that has them already, or twice in one block.
    #[error("voucher {0} is signed already")]
    VoucherSigned(u64),
    /// The signatures are invalid or weigh less than 2/3 of stake.
    #[error("{what}: {reason}")]
    Signatures {
        /// Which item.
        what: String,
        /// Why.
        reason: String,
    },
}

impl State {
    /// The credited deposit with source id `id`, if any.
    pub fn credited(&self, id: &SourceId) -> Option<&Credited> {
        self.bridge.credited.get(id)
    }

    /// Deposits credited since genesis.
    pub fn credited_count(&self) -> usize {
        self.bridge.credited.len()
    }

    /// Voucher `id`, if a withdrawal created it.
    pub fn voucher(&self, id: u64) -> Option<&VoucherEntry> {
        self.bridge.vouchers.get(&id)
    }

    /// Every voucher, ascending by id.
    pub fn vouchers(&self) -> impl Iterator<Item = &VoucherEntry> {
        self.bridge.vouchers.values()
    }

    /// The last voucher id assigned (0: none yet).
    pub fn last_voucher(&self) -> u64 {
        self.bridge.last_voucher
    }

    /// Checks the bridge items of `block` (see the module documentation); changes nothing.
    pub fn check_bridge(&self, block: &Block) -> Result<(), BlockError> {
        if block.deposits.len() > DEPOSITS_PER_BLOCK_MAX {
            return Err(BlockError::Bridge {
                index: DEPOSITS_PER_BLOCK_MAX,
                reason: Box::new(BridgeError::TooMany {
                    what: "deposits",
                    got: block.deposits.len(),
                    max: DEPOSITS_PER_BLOCK_MAX,
                }),
            });
        }
        if block.vouchers.len() > VOUCHERS_PER_BLOCK_MAX {
            return Err(BlockError::Bridge {
                index: VOUCHERS_PER_BLOCK_MAX,
                reason: Box::new(BridgeError::TooMany {
                    what: "voucher signature sets",
                    got: block.vouchers.len(),
                    max: VOUCHERS_PER_BLOCK_MAX,
                }),
            });
        }
        // Every check but the signatures' validity first; then all signatures of the block in
        // one batch (5x faster than one by one: `bastion-perf bridge`).
        let mut batch = Batch::default();
        let mut seen = BTreeSet::new();
        let mut new_to = BTreeSet::new();
        for (index, d) in block.deposits.iter().enumerate() {
            let fail = |reason| BlockError::Bridge { index, reason: Box::new(reason) };
            if !seen.insert(d.deposit.source_id) {
                return Err(fail(BridgeError::Repeated(d.deposit.source_id)));
            }
            if self.creates_account(&d.deposit) {
                new_to.insert(d.deposit.to);
            }
            self.check_deposit(d, new_to.len(), Some((&mut batch, index))).map_err(fail)?;
        }
        let mut signed = BTreeSet::new();
        for (i, v) in block.vouchers.iter().enumerate() {
            let index = block.deposits.len().saturating_add(i);
            let fail = |reason| BlockError::Bridge { index, reason: Box::new(reason) };
            if !signed.insert(v.id) {
                return Err(fail(BridgeError::VoucherSigned(v.id)));
            }
            self.check_voucher_signatures(v, Some((&mut batch, index))).map_err(fail)?;
        }
        batch.verify().map_err(|(index, what, reason)| BlockError::Bridge {
            index,
            reason: Box::new(BridgeError::Signatures { what, reason }),
        })
    }

    /// Of `candidates` (any order, repeats allowed), the deposits a block on this state may
    /// carry, in candidate order, at most [`DEPOSITS_PER_BLOCK_MAX`]: the proposer's selection;
    /// never refuses.
    pub fn admissible_deposits(&self, candidates: &[AttestedDeposit]) -> Vec<AttestedDeposit> {
        let (out, batch) = self.select_deposits(candidates);
        // One batch for the selection; should it fail (the pool verifies each signature it
        // takes, so it should not), the selection is made again from what verifies one by one.
        if batch.verify().is_ok() {
            return out;
        }
        let verified: Vec<AttestedDeposit> =
            out.into_iter().filter(|d| self.check_deposit(d, 0, None).is_ok()).collect();
        self.select_deposits(&verified).0
    }

    /// The selection of [`Self::admissible_deposits`] by every check but the signatures'
    /// validity, which are left in the returned batch.
    fn select_deposits(&self, candidates: &[AttestedDeposit]) -> (Vec<AttestedDeposit>, Batch) {
        let mut out: Vec<AttestedDeposit> = Vec::new();
        let mut batch = Batch::default();
        let mut seen = BTreeSet::new();
        let mut new_to = BTreeSet::new();
        for d in candidates {
            if out.len() >= DEPOSITS_PER_BLOCK_MAX {
                break;
            }
            if seen.contains(&d.deposit.source_id) {
                continue;
            }
            let creates = self.creates_account(&d.deposit) && !new_to.contains(&d.deposit.to);
            let new_accounts = new_to.len().saturating_add(usize::from(creates));
            let mut one = Batch::default();
            if self.check_deposit(d, new_accounts, Some((&mut one, out.len()))).is_ok() {
                batch.absorb(one);
                seen.insert(d.deposit.source_id);
                if creates {
                    new_to.insert(d.deposit.to);
                }
                out.push(d.clone());
            }
        }
        (out, batch)
    }

    /// Of `candidates`, the voucher signature sets a block on this state may carry, at most
    /// [`VOUCHERS_PER_BLOCK_MAX`], one per voucher.
    pub fn admissible_vouchers(&self, candidates: &[VoucherSignatures]) -> Vec<VoucherSignatures> {
        let mut out: Vec<VoucherSignatures> = Vec::new();
        for v in candidates {
            if out.len() >= VOUCHERS_PER_BLOCK_MAX {
                break;
            }
            if !out.iter().any(|o| o.id == v.id) && self.check_voucher_signatures(v, None).is_ok() {
                out.push(v.clone());
            }
        }
        out
    }

    /// Whether the validator signature `a` over `deposit` is valid (gossip's check of one
    /// attestation; the source chain is not consulted).
    pub fn attestation_verifies(&self, deposit: &BridgeDeposit, a: &Approval) -> bool {
        self.signature_verifies(&deposit_message(&self.chain_id, deposit), a)
    }

    /// Whether every attestation of `items` is a valid signature by its validator (one batch;
    /// gossip's check of a peer's message). `Err` is the position of the first invalid one (or
    /// of one by an unknown validator or one without a key).
    pub fn attestations_verify(&self, items: &[(&BridgeDeposit, &Approval)]) -> Result<(), usize> {
        let mut batch = Batch::default();
        for (i, (d, a)) in items.iter().enumerate() {
            let key = self.validators.get(usize::from(a.validator.0)).and_then(|v| v.key).ok_or(i)?;
            batch.push(
                i,
                String::new(),
                deposit_message(&self.chain_id, d),
                std::slice::from_ref(*a),
                &[(a.validator.0, key, 0)],
            );
        }
        batch.verify().map_err(|(i, _, _)| i)
    }

    /// Whether `a` is a valid signature of stored voucher `id`.
    pub fn voucher_signature_verifies(&self, id: u64, a: &Approval) -> bool {
        self.voucher(id)
            .is_some_and(|e| self.signature_verifies(&voucher_message(&self.chain_id, &e.voucher), a))
    }

    /// Whether the signatures weighing `stake` are enough: at least 2/3 of all stake.
    pub fn is_quorum(&self, stake: u128) -> bool {
        crate::oracle::quorum(stake, self.total_stake())
    }

    /// The stake of validator `v` (0 if unknown).
    pub fn stake_of(&self, v: u16) -> u128 {
        self.validators.get(usize::from(v)).map_or(0, |v| u128::from(v.stake))
    }

    /// All validators' stake.
    pub fn total_stake(&self) -> u128 {
        self.validators.iter().map(|v| u128::from(v.stake)).sum()
    }

    fn signature_verifies(&self, message: &[u8], a: &Approval) -> bool {
        let key = self.validators.get(usize::from(a.validator.0)).and_then(|v| v.key);
        key.is_some_and(|key| verify_one(&key, &a.signature, message))
    }

    fn creates_account(&self, d: &BridgeDeposit) -> bool {
        d.to != INSURANCE_FUND_ACCOUNT && !self.accounts.contains_key(&d.to)
    }

    /// One deposit against the state; `new_accounts` counts the accounts the block's deposits
    /// create up to and including this one.
    ///
    /// With `batch`, the signatures are left in it (as item `index`) for one verification of
    /// many; without, each is verified here.
    fn check_deposit(
        &self,
        d: &AttestedDeposit,
        new_accounts: usize,
        batch: Option<(&mut Batch, usize)>,
    ) -> Result<(), BridgeError> {
        let dep = &d.deposit;
        let uncreditable = |reason| BridgeError::Uncreditable { source_id: dep.source_id, reason };
        if let Some(c) = self.bridge.credited.get(&dep.source_id) {
            return Err(BridgeError::AlreadyCredited { source_id: dep.source_id, height: c.height });
        }
        if dep.amount <= 0 {
            return Err(uncreditable(Reject::NonPositiveAmount(dep.amount)));
        }
        let ai = self.asset_index(dep.asset).ok_or_else(|| uncreditable(Reject::UnknownAsset(dep.asset)))?;
        if self.accounts.len().saturating_add(new_accounts) > ACCOUNTS_MAX {
            return Err(uncreditable(Reject::TooManyAccounts(ACCOUNTS_MAX)));
        }
        let asset = self.assets.get(ai).ok_or_else(|| uncreditable(Reject::UnknownAsset(dep.asset)))?;
        let held = if dep.to == INSURANCE_FUND_ACCOUNT {
            asset.insurance
        } else {
            self.accounts.get(&dep.to).and_then(|a| a.balances.get(ai).copied()).unwrap_or(0)
        };
        if asset.deposits.checked_add(dep.amount).is_none() || held.checked_add(dep.amount).is_none() {
            return Err(uncreditable(Reject::Overflow));
        }
        let what = format!("deposit {}", dep.source_id);
        self.quorum_deferred(what, deposit_message(&self.chain_id, dep), &d.attestations, batch)
    }

    fn check_voucher_signatures(
        &self,
        v: &VoucherSignatures,
        batch: Option<(&mut Batch, usize)>,
    ) -> Result<(), BridgeError> {
        let entry = self.bridge.vouchers.get(&v.id).ok_or(BridgeError::UnknownVoucher(v.id))?;
        if entry.signed() {
            return Err(BridgeError::VoucherSigned(v.id));
        }
        let what = format!("voucher {}", v.id);
        self.quorum_deferred(what, voucher_message(&self.chain_id, &entry.voucher), &v.approvals, batch)
    }

    /// [`Self::quorum_of`], with the signatures' validity left to `batch` when given.
    fn quorum_deferred(
        &self,
        what: String,
        message: Vec<u8>,
        approvals: &[Approval],
        batch: Option<(&mut Batch, usize)>,
    ) -> Result<(), BridgeError> {
        let Some((batch, index)) = batch else {
            return self
                .quorum_of(&message, approvals)
                .map_err(|reason| BridgeError::Signatures { what, reason });
        };
        let fail = |reason| BridgeError::Signatures { what: what.clone(), reason };
        let keys = self.signers(approvals).map_err(fail)?;
        let signed = keys.iter().fold(0u128, |a, (_, _, stake)| a.saturating_add(*stake));
        if !self.is_quorum(signed) {
            return Err(fail(format!(
                "signatures carry stake {signed} of {}; at least 2/3 is required",
                self.total_stake()
            )));
        }
        batch.push(index, what, message, approvals, &keys);
        Ok(())
    }

    /// Each approval's validator, key and stake: distinct known validators with keys (the
    /// signatures are not verified); otherwise why not.
    fn signers(&self, approvals: &[Approval]) -> Result<Vec<(u16, [u8; 32], u128)>, String> {
        if approvals.len() > self.validators.len() {
            return Err(format!("{} signatures for {} validators", approvals.len(), self.validators.len()));
        }
        let mut seen = vec![false; self.validators.len()];
        let mut out = Vec::with_capacity(approvals.len());
        for a in approvals {
            let vi = usize::from(a.validator.0);
            let (Some(v), Some(s)) = (self.validators.get(vi), seen.get_mut(vi)) else {
                return Err(format!("signature by unknown validator {}", a.validator.0));
            };
            if std::mem::replace(s, true) {
                return Err(format!("validator {vi} signs twice"));
            }
            let Some(key) = v.key else {
                return Err(format!("validator {vi} has no identity key in the genesis"));
            };
            out.push((a.validator.0, key, u128::from(v.stake)));
        }
        Ok(out)
    }

    /// `Ok` if `approvals` are valid signatures of `message` by distinct validators with keys,
    /// weighing at least 2/3 of stake; otherwise why not.
    pub(crate) fn quorum_of(&self, message: &[u8], approvals: &[Approval]) -> Result<(), String> {
        let signed = self.signed_stake_of(message, approvals)?;
        if !self.is_quorum(signed) {
            return Err(format!(
                "signatures carry stake {signed} of {}; at least 2/3 is required",
                self.total_stake()
            ));
        }
        Ok(())
    }

    /// The stake of `approvals`, each a valid signature of `message` by a distinct known
    /// validator with a key; otherwise why not.
    pub(crate) fn signed_stake_of(&self, message: &[u8], approvals: &[Approval]) -> Result<u128, String> {
        let keys = self.signers(approvals)?;
        let mut signed: u128 = 0;
        for (a, (vi, key, stake)) in approvals.iter().zip(keys) {
            if !verify_one(&key, &a.signature, message) {
                return Err(format!("validator {vi}'s signature does not verify"));
            }
            signed = signed.saturating_add(stake);
        }
        Ok(signed)
    }

    /// Credits the block's deposits and records its voucher signatures (already checked by
    /// [`Self::check_bridge`]).
    pub(crate) fn apply_bridge(&mut self, block: &Block, events: &mut Vec<Event>) {
        for d in &block.deposits {
            let dep = &d.deposit;
            events.push(Event::BridgeCredited {
                source_id: dep.source_id,
                account: dep.to,
                asset: dep.asset,
                amount: dep.amount,
            });
            // Checked: a known asset, a positive amount, no overflow, room for the account.
            let r = if dep.to == INSURANCE_FUND_ACCOUNT {
                self.top_up_insurance(dep.asset, dep.amount, events)
            } else {
                self.credit(dep.to, dep.asset, dep.amount, events)
            };
            if let Err(reason) = r {
                events.push(Event::Fault { step: "bridge credit".into(), reason });
            }
            self.bridge
                .credited
                .insert(dep.source_id, Credited { deposit: dep.clone(), height: block.height });
            self.touch(RecordKey::Credited(dep.source_id.0));
        }
        for v in &block.vouchers {
            if let Some(e) = self.bridge.vouchers.get_mut(&v.id) {
                e.approvals = v.approvals.clone();
                self.dirty.push(RecordKey::Voucher(v.id));
                events.push(Event::VoucherSigned { voucher: v.id });
            }
        }
    }

    /// Adds `amount` of `asset` to the insurance fund (a bridge deposit to it).
    fn top_up_insurance(
        &mut self,
        asset: AssetId,
        amount: Micros,
        events: &mut Vec<Event>,
    ) -> Result<(), Reject> {
        let ai = self.asset_index(asset).ok_or(Reject::UnknownAsset(asset))?;
        let a = self.assets.get_mut(ai).ok_or(Reject::UnknownAsset(asset))?;
        let deposits = add(a.deposits, amount)?;
        let insurance = add(a.insurance, amount)?;
        a.deposits = deposits;
        a.insurance = insurance;
        self.touch(RecordKey::Asset(asset.0));
        events.push(Event::InsuranceToppedUp { amount });
        Ok(())
    }

    /// Stores the voucher of a withdrawal just executed; its id.
    pub(crate) fn create_voucher(&mut self, account: AccountId, asset: AssetId, amount: Micros) -> u64 {
        self.bridge.last_voucher = self.bridge.last_voucher.saturating_add(1);
        let id = self.bridge.last_voucher;
        let voucher = Voucher { id, account, asset, amount, height: self.height };
        self.bridge.vouchers.insert(id, VoucherEntry { voucher, approvals: Vec::new() });
        self.dirty.push(RecordKey::Voucher(id));
        self.touch(RecordKey::Global);
        id
    }
}

/// Whether `signature` is `key`'s over `message` (ZIP-215, as every signature on the chain).
fn verify_one(key: &[u8; 32], signature: &[u8; 64], message: &[u8]) -> bool {
    ed25519_zebra::VerificationKey::try_from(*key)
        .and_then(|k| k.verify(&ed25519_zebra::Signature::from(*signature), message))
        .is_ok()
}

/// Signatures left for one batch verification: per item its index, description and message,
/// and each signature with its signer.
#[derive(Default)]
pub(crate) struct Batch {
    items: Vec<(usize, String, Vec<u8>)>,
    /// (item position in `items`, validator, key, signature).
    sigs: Vec<(usize, u16, [u8; 32], [u8; 64])>,
}

impl Batch {
    fn push(
        &mut self,
        index: usize,
        what: String,
        message: Vec<u8>,
        approvals: &[Approval],
        keys: &[(u16, [u8; 32], u128)],
    ) {
        let at = self.items.len();
        self.items.push((index, what, message));
        for (a, (v, key, _)) in approvals.iter().zip(keys) {
            self.sigs.push((at, *v, *key, a.signature));
        }
    }

    /// Moves `other`'s signatures into this batch.
    fn absorb(&mut self, other: Batch) {
        let base = self.items.len();
        self.items.extend(other.items);
        self.sigs.extend(other.sigs.into_iter().map(|(at, v, k, s)| (at.saturating_add(base), v, k, s)));
    }

    /// Verifies every signature: `Ok` if all are valid; otherwise the first invalid one's item
    /// (index, description, reason), found one by one.
    ///
    /// ed25519-zebra's batch verifier implements ZIP-215 batch verification, which accepts
    /// exactly what single verification accepts. Its random coefficients come from a ChaCha20
    /// generator seeded with the BLAKE3 of every key, signature and message in the batch: the
    /// same on every validator, and unknown to whoever chose the signatures until all are fixed.
    fn verify(self) -> Result<(), (usize, String, String)> {
        if self.sigs.is_empty() {
            return Ok(());
        }
        let mut seed = blake3::Hasher::new();
        seed.update(b"bastion/bridge-batch/v1");
        for (at, _, key, sig) in &self.sigs {
            seed.update(key).update(sig);
            if let Some((_, _, m)) = self.items.get(*at) {
                seed.update(&(m.len() as u64).to_le_bytes()).update(m);
            }
        }
        let rng = <rand_chacha::ChaCha20Rng as rand_chacha::rand_core::SeedableRng>::from_seed(
            *seed.finalize().as_bytes(),
        );
        let mut batch = ed25519_zebra::batch::Verifier::new();
        for (at, _, key, sig) in &self.sigs {
            let message = self.items.get(*at).map_or(&[][..], |(_, _, m)| m.as_slice());
            batch.queue((
                ed25519_zebra::VerificationKeyBytes::from(*key),
                ed25519_zebra::Signature::from(*sig),
                message,
            ));
        }
        if batch.verify(rng).is_ok() {
            return Ok(());
        }
        for (at, v, key, sig) in &self.sigs {
            let Some((index, what, message)) = self.items.get(*at) else { continue };
            if !verify_one(key, sig, message) {
                return Err((*index, what.clone(), format!("validator {v}'s signature does not verify")));
            }
        }
        // The batch failed but every signature verifies alone: cannot happen under ZIP-215;
        // refuse rather than accept what the batch did not.
        Err((
            self.items.first().map_or(0, |i| i.0),
            "bridge signatures".into(),
            "the batch does not verify".into(),
        ))
    }
}

/// Validator `index`'s attestation of `deposit` on chain `chain_id`: the ed25519 signature by
/// the identity key with secret seed `seed` over [`deposit_message`]. The one definition of
/// what a validator signs; the node's bridge watcher and the tests use it.
pub fn sign_deposit(seed: [u8; 32], index: u16, chain_id: &str, deposit: &BridgeDeposit) -> Approval {
    let signing = ed25519_zebra::SigningKey::from(seed);
    let signature = signing.sign(&deposit_message(chain_id, deposit));
    Approval { validator: bastion_types::ValidatorIndex(index), signature: signature.into() }
}

/// Validator `index`'s signature of `voucher` on chain `chain_id` (over [`voucher_message`]).
pub fn sign_voucher(seed: [u8; 32], index: u16, chain_id: &str, voucher: &Voucher) -> Approval {
    let signing = ed25519_zebra::SigningKey::from(seed);
    let signature = signing.sign(&voucher_message(chain_id, voucher));
    Approval { validator: bastion_types::ValidatorIndex(index), signature: signature.into() }
}
