//! Governance: risk-parameter changes that at least 2/3 of stake signed.
//!
//! A block may carry up to [`PROPOSALS_PER_BLOCK_MAX`] [`GovernanceProposal`]s. Before the block
//! changes anything, every proposal is checked ([`State::check_proposals`]): the block's height
//! lies in its window, its nonce is the chain's next governance nonce, and its approvals are
//! valid ed25519 signatures (ZIP-215, as `ed25519-zebra` verifies them, the one rule every
//! client signature follows) by distinct validators' identity keys over
//! [`governance_message`], weighing at least 2/3 of stake. One failure refuses the whole
//! block: a leader that forges, pads or replays approvals gets its proposal voted down, and
//! the same check runs again when a finalized block is executed, so a log or a peer cannot
//! slip a change past it either. An accepted proposal consumes its nonce whether or not the
//! change itself validates (then `Event::ProposalRejected`), so it is applied at most once.

use crate::BlockError;
use crate::state::State;
use bastion_types::{
    Block, Event, GOVERNANCE_WINDOW_MAX, GovernanceProposal, PROPOSALS_PER_BLOCK_MAX, governance_message,
};

impl State {
    /// Checks the governance proposals of `block` (see the module documentation); changes
    /// nothing. `apply_block` runs it before anything else; consensus runs it when it verifies
    /// a proposal, to name (and block) the leader that forged one.
    pub fn check_proposals(&self, block: &Block) -> Result<(), BlockError> {
        if block.proposals.len() > PROPOSALS_PER_BLOCK_MAX {
            return Err(BlockError::Governance {
                index: PROPOSALS_PER_BLOCK_MAX,
                reason: format!(
                    "{} proposals, at most {PROPOSALS_PER_BLOCK_MAX} per block",
                    block.proposals.len()
                ),
            });
        }
        let mut nonce = self.governance_nonce;
        for (index, p) in block.proposals.iter().enumerate() {
            let fail = |reason: String| BlockError::Governance { index, reason };
            nonce = nonce.checked_add(1).ok_or_else(|| fail("governance nonce exhausted".into()))?;
            self.check_proposal(block.height, nonce, p).map_err(fail)?;
        }
        Ok(())
    }

    /// Whether a block at `height` may carry `p` as the proposal with governance nonce `nonce`:
    /// the nonce, the window, and at least 2/3 of stake's valid signatures; `Ok` is the stake
    /// that signed.
    fn check_proposal(&self, height: u64, nonce: u64, p: &GovernanceProposal) -> Result<u128, String> {
        if p.nonce != nonce {
            return Err(format!("nonce {} but the chain's next governance nonce is {nonce}", p.nonce));
        }
        if p.valid_until.checked_sub(p.valid_from).is_none_or(|w| w > GOVERNANCE_WINDOW_MAX) {
            return Err(format!(
                "window {}..={} is empty or longer than {GOVERNANCE_WINDOW_MAX} heights",
                p.valid_from, p.valid_until
            ));
        }
        if height < p.valid_from || height > p.valid_until {
            return Err(format!(
                "height {height} is outside the proposal's window {}..={}",
                p.valid_from, p.valid_until
            ));
        }
        self.approved_stake(p)
    }

    /// Of `candidates`, the proposals a block at `height` on this state may carry, in the
    /// order they must appear: for each next governance nonce, the first candidate with that
    /// nonce that passes every check of [`Self::check_proposals`], at most
    /// [`PROPOSALS_PER_BLOCK_MAX`]. The proposer's selection; never refuses a block.
    pub fn admissible_proposals(
        &self,
        height: u64,
        candidates: &[GovernanceProposal],
    ) -> Vec<GovernanceProposal> {
        let mut out: Vec<GovernanceProposal> = Vec::new();
        let mut nonce = self.governance_nonce;
        while out.len() < PROPOSALS_PER_BLOCK_MAX {
            let Some(next) = nonce.checked_add(1) else { break };
            let Some(p) = candidates.iter().find(|p| self.check_proposal(height, next, p).is_ok()) else {
                break;
            };
            out.push(p.clone());
            nonce = next;
        }
        out
    }

    /// The stake that signed `p`, if a block at `height` could carry it as the chain's next
    /// proposal; otherwise why not (operators' `bastion governance check`).
    pub fn proposal_verdict(&self, height: u64, p: &GovernanceProposal) -> Result<u128, String> {
        self.check_proposal(height, self.governance_nonce.saturating_add(1), p)
    }

    /// The stake whose valid signatures approve `p`, if at least 2/3 of all stake; otherwise
    /// (or on any invalid, duplicate or unknown approval) why not.
    fn approved_stake(&self, p: &GovernanceProposal) -> Result<u128, String> {
        let total = self.total_stake();
        let approved = self.signed_stake(p)?;
        if !self.is_quorum(approved) {
            return Err(format!("approvals carry stake {approved} of {total}; at least 2/3 is required"));
        }
        Ok(approved)
    }

    /// Whether every approval of `p` is a valid signature by a distinct validator (whatever
    /// the stake they add up to): operators' per-approval check.
    pub fn signature_verdict(&self, p: &GovernanceProposal) -> Result<(), String> {
        self.signed_stake(p).map(|_| ())
    }

    /// Checks a parameter change against this state as the exchange will when it is queued.
    pub fn check_update(&self, u: &bastion_types::ParamUpdate) -> Result<(), bastion_types::Reject> {
        self.validate_update(u)
    }

    /// The stake of `p`'s approvals, each a valid signature by a distinct known validator with
    /// a key; otherwise why not.
    fn signed_stake(&self, p: &GovernanceProposal) -> Result<u128, String> {
        self.signed_stake_of(&governance_message(&self.chain_id, p), &p.approvals)
    }

    /// Accepts the block's proposals (already checked by [`Self::check_proposals`]): each
    /// consumes its nonce; a change that validates is queued for the next block, one that does
    /// not is reported.
    pub(crate) fn accept_proposals(&mut self, proposals: &[GovernanceProposal], events: &mut Vec<Event>) {
        for (i, p) in proposals.iter().enumerate() {
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            self.governance_nonce = self.governance_nonce.saturating_add(1);
            self.touch(crate::root::RecordKey::Global);
            match self.validate_update(&p.update) {
                Ok(()) => self.pending.push(p.update.clone()),
                Err(reason) => events.push(Event::ProposalRejected { index, reason }),
            }
        }
    }
}

/// A validator's approval of `proposal` on chain `chain_id`: the ed25519 signature by the
/// identity key with secret seed `seed` (RFC 8032) over [`governance_message`], as validator
/// `index`. The one definition of what a validator signs; the node's keys and the tests use it.
pub fn sign_approval(
    seed: [u8; 32],
    index: u16,
    chain_id: &str,
    proposal: &GovernanceProposal,
) -> bastion_types::Approval {
    let signing = ed25519_zebra::SigningKey::from(seed);
    let signature = signing.sign(&governance_message(chain_id, proposal));
    bastion_types::Approval { validator: bastion_types::ValidatorIndex(index), signature: signature.into() }
}

/// The public identity key (hex, as the genesis file's `validator_keys` lists it) of the
/// secret seed `seed`.
pub fn public_key_hex(seed: [u8; 32]) -> String {
    let public: [u8; 32] =
        ed25519_zebra::VerificationKey::from(&ed25519_zebra::SigningKey::from(seed)).into();
    public.iter().map(|b| format!("{b:02x}")).collect()
}
