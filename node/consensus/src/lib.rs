//! Bastion's consensus: commonware Simplex (`=2026.10.0`) with `bls12381_multisig` certificates,
//! whose application is the real exchange and store.
//!
//! Built (first slice of issue 5):
//! - [`block::ChainBlock`]: the chain block (parent digest, height, the parent's state root,
//!   the exchange block), a canonical encoding (the postcard body is re-encoded on decode and
//!   must match byte for byte) with size and transaction limits, SHA-256 digest; it implements
//!   commonware's `Block`, `Heightable`, `Digestible`, `Encode` and `Read`.
//! - [`application`]: one actor that is the engine's `Automaton` (propose: a block built on the
//!   engine's parent from a deterministic workload; verify: parent link, height, timestamp,
//!   limits, the parent state root, and speculative execution on a copy of the parent's state),
//!   `Relay` (the full block to every peer on one p2p channel, plus requests for missing blocks
//!   by digest, retried every 250 ms) and `Reporter` (finalized blocks executed and committed
//!   through `bastion_store::Store`, in height order, exactly once; equivocation reported by
//!   the engine is recorded). A validator whose durable execution disagrees with a finalized
//!   block (its parent state root, or the speculative root) halts loudly: it stops executing,
//!   proposing and voting.
//! - Restart: a reopened store's block log is replayed into the chain's digests (the encoding
//!   is canonical, so the digests follow from the logged blocks and roots); the engine resumes
//!   from its journal partition; missing blocks are fetched from peers.
//! - [`sim`] (used by `tests/simulation.rs` and the `consensus` perf suite): deterministic
//!   whole-node simulations (4 and 7 validators, latency and jitter, 30% message loss, one
//!   validator crashed and restarted, one validator whose execution diverges by an injected
//!   [`Fault`] and must halt; a minority partition and a 2|2 split, each healed, with liveness
//!   bounds after the heal; a Byzantine validator played by commonware's conflicter, nuller and
//!   outdated mocks) with safety, agreement, exactly-once, liveness and evidence checkers
//!   (evidence only ever against the Byzantine signer); `BASTION_SEED` replays a seed. It
//!   records each block's proposal time (the leader's clock when propose completes) and each
//!   validator's finalization time, for finality latency.
//!
//! - Issue 15 (this branch's part): one `BlockLimits` for decode, verify and propose;
//!   [`relay`]: unsolicited blocks bounded per peer, peers blocked by reason; [`backfill`]:
//!   range requests served off the actor at a per-peer rate; the block time window bounded on
//!   both sides ([`MAX_PAST_MS`], [`MAX_FUTURE_MS`]); [`evidence`]: bounded, written off the
//!   reporter; [`byzantine`]: a Byzantine leader's tricks for the simulation.
//!
//! - Issue 16 (this branch's part): [`observations`]: each validator with an [`Observer`] and
//!   an identity key signs one observation per finalized height and sends it on p2p channel
//!   [`OBSERVATION_CHANNEL`]; peers check it (size, chain, sender, the exchange's verdict,
//!   clock skew), count every rejection by reason, block senders of what no honest validator
//!   sends, and pool it (bounded per validator); the leader includes
//!   `State::admissible_observations`; a proposal the exchange refuses for its observations
//!   blocks its leader; two observations of one validator for one height are evidence;
//!   disagreement of the index with the validator's own observation is counted. [`byzantine`]:
//!   lying oracles ([`Lie`]) and oracle tricks of a Byzantine leader. `sim`: validators
//!   observe a noisy price path ([`PathObserver`]); every run checks the index bound (an
//!   unclamped index move lies within the honest validators' fresh stored observations).
//!
//! - Issue 17 (this branch's part): [`certified`]: finalized blocks with their finalization
//!   certificates on the public network ([`encode_certified`], [`encode_range`]) and their check
//!   against the genesis validator set ([`CertChecker`]: certificate first, then the digest);
//!   [`follower`]: ordered, exactly-once delivery of certified blocks in any order
//!   ([`Follower`]) and their execution into a `Store` ([`execute`], [`chain_tip`]);
//!   [`certlog`]: durable certificates per height ([`CertLog`]) and range answers from the
//!   store's log ([`serve_range`]); [`publish`]: the application tells a [`Publisher`] about
//!   every executed finalized block, with its certificate.
//!
//! Not built yet: marshal (archival backfill beyond the 64 most recent finalized blocks kept in
//! memory; restart needs the whole block log), validator keys from a genesis file with proofs
//! of possession (tests use commonware's fixture keys), evidence persistence, signature
//! re-checks through `accel`, the sequencer's mempool as block source (the proposer uses
//! `bastion_exchange::testkit::Workload`), evidence persistence, the tokio runtime and
//! authenticated p2p for production.
//!
//! - Issue 20: [`twins`] (with `sim`): a Byzantine validator run as two real Bastion nodes
//!   sharing its keys, on a seeded schedule of network splits, each proposing valid blocks and
//!   voting honestly in its own part of the network (the equivocating proposer that
//!   commonware's equivocator mock, with opaque payloads, could not be).

pub mod application;
pub mod backfill;
pub mod block;
pub mod bridge;
pub mod byzantine;
pub mod certified;
pub mod certlog;
pub mod engine;
pub mod evidence;
pub mod execution_tile;
pub mod follower;
pub mod governance;
pub mod observations;
pub mod observe;
pub mod publish;
pub mod relay;
#[cfg(feature = "sim")]
pub mod sim;
pub mod spec;
pub mod storage_tile;
#[cfg(feature = "sim")]
pub mod twins;

pub use application::{
    Application, BlockSource, Config, DEFAULT_OBSERVE_EVERY_MS, Fault, Finalized, Ledger, MAX_FUTURE_MS,
    MAX_PAST_MS, Mailbox, Reporter, Synthetic, Totals, TxSource, genesis_block, timestamp_in_window,
};
pub use bastion_exchange::State;
pub use block::{BlockLimits, ChainBlock, StateRoot};
pub use bridge::{BRIDGE_CHANNEL, BRIDGE_QUOTA_PER_S, BridgeTotals, DepositFeed, FeedPoll};
pub use byzantine::{Lie, Trick};
pub use certified::{CertChecker, Refusal, Verified, certified_block_bytes, encode_certified, encode_range};
pub use certlog::{CertLog, serve_range};
pub use follower::{Follower, FollowerStats, Offered, Ready, chain_tip, execute, logged_digest};
pub use governance::ProposalSource;
pub use observations::{OBSERVATION_CHANNEL, OBSERVATION_QUOTA_PER_S, OracleRecord};
pub use observe::{Observed, Observer, PathObserver};
pub use publish::{Published, Publisher};
pub use relay::{BlockReason, PeerBlocks};
pub use spec::{ChainSpec, Multisig, SpecError, ValidatorInfo, ValidatorKeys};
