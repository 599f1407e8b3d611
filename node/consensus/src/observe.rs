//! Where a validator's observations of the market come from.
//!
//! The application asks its [`Observer`] for what this validator sees now (its own sources,
//! combined: `bastion-oracle` in production, simulated venues in tests), signs it as an
//! [`bastion_types::Observation`] and sends it to the other validators.

use bastion_types::{PriceMicros, UnderlyingId, VolQuote};

/// What a validator's sources show at one moment: an index price per underlying (only those
/// with enough fresh sources) and implied volatilities per underlying and expiry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// Ascending by underlying, at most one each.
    pub prices: Vec<(UnderlyingId, PriceMicros)>,
    /// Ascending by (underlying, expiry).
    pub vols: Vec<VolQuote>,
}

/// A validator's view of the market. Must never block for long or panic: a source that
/// fails yields fewer prices (or none), never a guess.
pub trait Observer: Send {
    /// What the sources show at `now_ms` (ms since the Unix epoch, the node's clock; the
    /// simulation's clock in tests).
    fn observe(&mut self, now_ms: u64) -> Observed;
}
