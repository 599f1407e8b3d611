//! Identifiers, fixed-point units, transactions, blocks and events shared by every Bastion crate.
//!
//! Everything here is plain data: no I/O, no clocks, no floating point. The units are integers
//! with an explicit scale, named in the type alias so a reader never has to guess:
//!
//! | alias    | unit                                                        |
//! |----------|-------------------------------------------------------------|
//! | [`Ticks`]  | an order price, in multiples of the market's tick size     |
//! | [`Lots`]   | an order or position size, in multiples of the lot size    |
//! | [`Micros`] | money, in micro-units (1e-6) of the quote asset            |
//! | [`PriceMicros`] | a price per whole base unit, in quote micro-units     |
//! | [`Ppm`]    | a rate in parts per million (1_000_000 = 100%)             |

mod block;
mod bridge;
mod ids;
pub mod tx;

pub use block::*;
pub use bridge::*;
pub use ids::*;
pub use tx::{TxAuth, account_of};

/// An order price in multiples of the market's tick size.
pub type Ticks = i64;
/// An order or position size in multiples of the market's lot size; positions are signed
/// (positive long, negative short).
pub type Lots = i64;
/// Money in micro-units (1e-6) of the quote asset (or of a collateral asset's own unit).
pub type Micros = i128;
/// A price per whole base unit, in micro-units of the quote asset.
pub type PriceMicros = i64;
/// A rate in parts per million: 1_000_000 is 100%.
pub type Ppm = i64;

/// One whole rate, in [`Ppm`].
pub const PPM: i64 = 1_000_000;
/// Base units are counted in nano-units (1e-9) when a lot size is stated.
pub const NANOS_PER_UNIT: i64 = 1_000_000_000;
/// Micro-units per whole unit of money.
pub const MICROS_PER_UNIT: i64 = 1_000_000;

/// The side of an order, or the direction a position trades to reduce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum Side {
    /// Buy: increases a position.
    Buy,
    /// Sell: decreases a position.
    Sell,
}

impl Side {
    /// +1 for buy, -1 for sell.
    pub const fn sign(self) -> i64 {
        match self {
            Side::Buy => 1,
            Side::Sell => -1,
        }
    }

    /// The other side.
    pub const fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }
}

/// How long an order may live and whether it may take liquidity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum TimeInForce {
    /// Good till cancelled (or till its good-til-block height): matches, then rests.
    Gtc,
    /// Immediate or cancel: matches what it can, the rest is cancelled.
    Ioc,
    /// Fill or kill: matches in full or not at all.
    Fok,
    /// Post only: rests in full or is rejected; never takes liquidity.
    PostOnly,
}

/// What happens when an order would trade against a resting order of the same account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum SelfTradePrevention {
    /// Cancel the resting order and keep matching (the default on most venues).
    CancelResting,
    /// Cancel the rest of the incoming order.
    CancelTaker,
    /// Cancel both.
    CancelBoth,
}
