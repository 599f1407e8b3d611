//! Where a proposer's governance proposals come from.
//!
//! The exchange decides what a block may carry (`State::check_proposals`: the next nonce, the
//! window, 2/3 of stake's valid signatures) and refuses any other block; a source only offers
//! candidates, and `State::admissible_proposals` picks the ones that pass.

use bastion_exchange::State;
use bastion_types::GovernanceProposal;

/// A proposer's source of signed governance proposals (the validator reads them from its data
/// dir). Implementations must be cheap: `take` is called for every block this validator builds.
pub trait ProposalSource: Send {
    /// The proposals a block at `height` on `state` (its parent's state) should carry, in order;
    /// each must pass `state.admissible_proposals` (a block carrying anything else is refused by
    /// every validator, this one included).
    fn take(&mut self, state: &State, height: u64) -> Vec<GovernanceProposal>;
}
