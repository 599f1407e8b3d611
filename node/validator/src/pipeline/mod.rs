//! The validator's ingress pipeline: three pinned tiles joined by bounded lock-free rings.
//!
//! ```text
//! UDP ─▶ net ─▶ ring A ─▶ verify ─▶ ring B ─▶ admission ─▶ Mempool ─▶ (proposer)
//! ```
//!
//! - **net** receives datagrams ([`bastion_net::Ingress`]), checks the envelope's shape and
//!   pushes frames into ring A;
//! - **verify** checks signatures in bounded batches under a time budget
//!   ([`bastion_accel::VerifyStage`]);
//! - **admission** decodes the body, refuses duplicates, signers without an account in the
//!   committed state, replays, nonces too far ahead and over-rate accounts, and inserts into
//!   the [`Mempool`].
//!
//! Transactions from the public network or the API enter ring A through an [`Injector`] and
//! pass the same checks. Admitted transactions that arrived over UDP or the API are also put
//! on the [`Outbound`] ring, from which the public network publishes them on its `txs` topic
//! (once: what the public network delivered is not published again).
//!
//! Every ring is bounded and never blocks: a full ring drops the frame and counts it
//! ([`DropReason::Backpressure`]), so memory stays fixed however hard the network pushes. Each
//! tile counts frames in, frames out and drops by reason ([`TileStats`]); for every tile,
//! once idle, `frames_in == frames_out + dropped`.

mod mempool;
mod pin;
mod ring;
mod stats;
mod tiles;

pub use mempool::Mempool;
pub use pin::pin_current_thread;
pub use ring::{Ring, TxFrame};
pub use stats::{DropReason, TileSnapshot, TileStats};
pub use tiles::{
    CommittedNonce, Injector, NONCE_AHEAD_MAX, Outbound, PinConfig, Pipeline, PipelineConfig, start,
};
