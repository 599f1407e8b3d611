//! The [`DepositSource`] interface: what a validator needs from the chain that holds the
//! bridge's collateral, and the contract every implementation keeps.
//!
//! A validator polls its source every so often. Each [`SourcePoll`] carries the source's tip
//! height and the deposits that became *confirmed* since the previous poll; the validator signs
//! an attestation for each (over `bastion_types::deposit_message`) unless Bastion already
//! credited its [`SourceId`](bastion_types::SourceId), and Bastion credits a deposit once
//! attestations weighing 2/3 of stake are in a block. This crate ships one implementation,
//! [`FileSource`](crate::FileSource), over the simulated chain's ledger file; a client of a
//! real chain implements the same trait.
//!
//! # Contract
//!
//! An implementation must keep all of the following; the validator relies on each.
//!
//! 1. **Confirmation depth.** A deposit included in source block `h` is reported only once
//!    the source's tip `t` satisfies `t >= h + confirmations - 1` (with `confirmations = 1`, as
//!    soon as its block exists; with 2, once one more block is on top). The depth is chosen so
//!    that the source does not reorganise deeper than it.
//! 2. **Each deposit once per instance, in source order.** One instance reports each deposit
//!    in exactly one poll, in the order of the source chain (block height, then position in
//!    the block). A *fresh* instance (after a validator restart) reports everything from the
//!    beginning again: the source keeps no memory across restarts. The caller deduplicates
//!    against the source ids Bastion already credited (and against its own attestations in
//!    flight), which is cheap and makes a restart safe.
//! 3. **Stable, unique source ids.** Two different deposits never share a source id, and a
//!    deposit's id never changes once it is confirmed (a real chain uses the transaction hash
//!    with the log index folded in; a reorg deeper than the confirmation depth is outside what
//!    the bridge can survive, and is an incident). Bastion credits each source id at most once,
//!    forever, so an id that changed would be credited twice and an id reused would be lost.
//! 4. **Exact fields.** `to`, `asset` and `amount` are what the source chain's bridge
//!    received, `amount > 0`; validators' attestations only count together when every field is
//!    equal, so two honest validators must report the same bytes for the same deposit.
//! 5. **Bounded polls.** [`DepositSource::poll`] returns quickly (it reads what is new, never
//!    waits for new blocks) and never panics.
//!
//! # Errors
//!
//! A poll that cannot read the source (a file it may not read, a node unreachable, an
//! answer that does not parse, a ledger line that is malformed) returns a [`SourceError`] and
//! reports nothing. The validator logs it, keeps running (it still proposes, votes and
//! signs vouchers), attests no deposits meanwhile, and polls again later; a poll after the
//! problem is gone reports what the failed polls could not. A deposit missed by one
//! validator is still credited when the others weighing 2/3 of stake attest it.

use bastion_types::BridgeDeposit;

use crate::ledger::LedgerError;

/// A deposit seen on the source chain, with where it was seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceDeposit {
    /// The deposit, as validators attest it.
    pub deposit: BridgeDeposit,
    /// The source block that includes it.
    pub source_height: u64,
}

/// What one poll of a source found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourcePoll {
    /// The source's tip height as this poll saw it (0: no block yet).
    pub height: u64,
    /// Deposits that reached the confirmation depth since the previous poll of this instance,
    /// in source order (height, then position in the block).
    pub confirmed: Vec<SourceDeposit>,
}

/// Why a poll of a source failed. The validator logs it, attests nothing new and retries.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The simulated chain's ledger file could not be read, or holds a malformed line.
    #[error("bridge deposit source: {0}")]
    Ledger(#[from] LedgerError),
    /// Any other source (a real chain's client) failed: unreachable, or an answer that does not
    /// parse.
    #[error("bridge deposit source {source_name}: {reason}")]
    Other {
        /// The source, as [`DepositSource::describe`] names it.
        source_name: String,
        /// What went wrong, for the operator.
        reason: String,
    },
}

/// A chain that holds the bridge's collateral, as a validator watches it. See the module
/// documentation for the contract every implementation keeps.
pub trait DepositSource: Send {
    /// Reads what is new on the source: its tip height and the deposits confirmed since the
    /// previous poll of this instance, each once, in source order. Returns quickly; an error
    /// reports nothing, and a later successful poll reports what it missed.
    fn poll(&mut self) -> Result<SourcePoll, SourceError>;

    /// The source, for logs: for example `file /x/ledger.jsonl (2 confirmations)`.
    fn describe(&self) -> String;
}
