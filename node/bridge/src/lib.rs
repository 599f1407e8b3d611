//! The collateral bridge's source-chain side: what validators watch for deposits, and the
//! simulated collateral chain the devnet runs.
//!
//! # What is here
//!
//! - [`DepositSource`] ([`source`]): the interface a validator polls for confirmed deposits to
//!   the bridge, with its contract (each deposit once per instance, only at the confirmation
//!   depth, stable unique source ids). A real chain's client implements it.
//! - [`SimChain`] ([`chain`]): a simulated collateral chain. It takes deposits and pays
//!   vouchers, producing a block every `block_ms`, each block one line of an append-only,
//!   fsynced JSON-lines ledger (format in [`ledger`]); [`run`] drives it on a thread.
//! - The inbox ([`inbox`]): other processes submit deposits and vouchers as files
//!   ([`submit_to_inbox`]), applied in the chain's next block.
//! - [`FileSource`]: the [`DepositSource`] over the ledger file that the devnet's validators
//!   use.
//! - [`read_ledger`] and [`LedgerState`]: the ledger read back and added up, for conservation
//!   checks (what the bridge holds must equal what Bastion credited less what it released).
//!
//! Nothing here is consensus code: Bastion's crediting and voucher rules live in
//! `bastion-exchange`, and its messages in `bastion_types::bridge`.
//!
//! # Trust model
//!
//! - **Minting on Bastion** needs validators weighing 2/3 of stake to attest a deposit (each
//!   signs `deposit_message` after seeing it at the confirmation depth on its own source);
//!   Bastion credits each source id at most once, forever. This crate only *observes* the
//!   source; it signs nothing.
//! - **Releasing funds on the source chain** needs validators weighing 2/3 of stake to sign a
//!   voucher (`voucher_message`, binding the Bastion chain id). The simulated chain checks
//!   the signatures against the validator set in its `bridge.json`, pays each voucher id at
//!   most once (also across restarts: the paid set is rebuilt from the ledger), and never
//!   pays more than the bridge holds of the asset.
//! - The simulated chain **never credits anything itself**: its balances change only by
//!   deposits made to it and payouts of signed vouchers; the deposits it records are what
//!   validators attest.
//! - The validator set is the one written in `bridge.json` when the chain was created, and the
//!   chain trusts it as is. A real bridge contract would hold the validator set on chain and
//!   follow Bastion's validator-set changes (each change signed by 2/3 of the outgoing set);
//!   that is not built: after a validator-set change on Bastion, the simulated chain still
//!   checks vouchers against the old set.
//! - Anyone who can write the chain's directory can forge its ledger: the simulation trusts
//!   its file system, as a devnet does.

pub mod chain;
mod codec;
pub mod config;
mod file_source;
pub mod inbox;
pub mod ledger;
pub mod source;
pub mod state;

pub use chain::{ChainError, SimChain, VoucherError, load_config, run, sim_source_id, verify_approvals};
pub use config::{BridgeConfig, BridgeValidator};
pub use file_source::FileSource;
pub use inbox::{Submission, submit_to_inbox};
pub use ledger::{LedgerError, Payout, Refusal, SourceBlock, read_ledger};
pub use source::{DepositSource, SourceDeposit, SourceError, SourcePoll};
pub use state::{LedgerState, StateError, Totals};
