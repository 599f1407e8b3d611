//! Central limit order book with price-time priority for one market.
//!
//! # Data structure
//!
//! - **Orders** live in a slab (`Vec` of nodes plus a free list of slot numbers), so placing and
//!   removing an order in steady state allocates nothing. A dense `u32` slot names each node.
//! - **Levels** (one per price with resting orders) live in a second slab. Each level holds an
//!   intrusive doubly linked FIFO of its order slots (head = oldest), so removing an order from
//!   the middle of a queue is O(1) and time priority is the list order.
//! - **Sides** are sorted `Vec<(key, level slot)>` with the *best* level at the end: the key is
//!   the price for bids and the negated price for asks, so both sides sort ascending and the
//!   matching loop only ever pops from the end. Most activity happens near the touch, so
//!   inserting or removing a level moves only the few entries behind it; a `BTreeMap` costs a
//!   pointer chase per level where this is one cache-friendly binary search.
//! - **Lookups** by order id and by account go through `HashMap`s with a fixed-seed
//!   multiplicative hasher ([`hash::IdHasher`]). They are only ever queried by key, never
//!   iterated, so their internal order cannot leak into results. Ids are chosen by the exchange
//!   (not by clients), so a non-keyed hasher is not a flooding risk.
//! - **Expiry** is a `BTreeMap<(good_til_height, seq), OrderId>`; [`Book::expire`] looks at its
//!   first key only, so a block in which nothing expires costs one comparison.
//!
//! # Invariants (checked by [`Book::check_invariants`] in tests)
//!
//! - A level's `total` is the sum of its orders' remaining quantities, and no level is empty.
//! - The book is never crossed at rest: best bid < best ask.
//! - Per-account counts equal the number of resting orders of that account, and accounts with no
//!   order have no entry (so the map is bounded by the number of orders).
//! - Every operation either succeeds or returns an error having changed nothing.
//!
//! # Snapshots
//!
//! [`Book::orders`] lists the resting orders in exact priority order and [`Book::next_seq`] is
//! the only other state that shapes later behaviour (the expiry index and per-account counts
//! follow from the orders): [`Book::restore`] rebuilds from these an equivalent book, which
//! every later operation treats exactly as the original, refusing ([`RestoreError`]) any list a
//! book could not have produced.
//!
//! # Limits
//!
//! [`BookLimits`] bounds the resting orders in total and per account; both are checked before
//! anything changes, counting the makers the incoming order would remove first. Quantities and
//! prices must be positive; a level's total stays within `i64` (an order that would overflow it
//! is rejected as [`BookError::BadQuantity`]). Slot numbers are `u32`, so the book never holds
//! more than [`SLOTS_MAX`] orders whatever the configured limit.

mod book;
pub mod hash;

pub use book::{Book, LevelOrders};

use bastion_types::{AccountId, DoneReason, Lots, OrderId, SelfTradePrevention, Side, Ticks, TimeInForce};
use serde::{Deserialize, Serialize};

/// Largest number of orders a book can hold, whatever [`BookLimits::max_orders`] says: slots are
/// `u32` and `u32::MAX` marks "no slot" in the linked lists.
pub const SLOTS_MAX: u32 = u32::MAX - 1;

/// Bounds on what a book holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookLimits {
    /// Resting orders in the whole book.
    pub max_orders: u32,
    /// Resting orders of one account.
    pub max_orders_per_account: u32,
}

/// An incoming limit order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewOrder {
    /// Chosen by the exchange; must not be the id of a resting order.
    pub id: OrderId,
    /// Owner.
    pub account: AccountId,
    /// Buy or sell.
    pub side: Side,
    /// Limit price; positive.
    pub price: Ticks,
    /// Size; positive.
    pub qty: Lots,
    /// Lifetime and liquidity rule.
    pub tif: TimeInForce,
    /// What to do when it would trade with an order of the same account.
    pub stp: SelfTradePrevention,
    /// Expires at the first [`Book::expire`] call with a height above this.
    pub good_til_height: Option<u64>,
}

/// An order resting in the book.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestingOrder {
    /// Id given at placement (kept across [`Book::replace`]).
    pub id: OrderId,
    /// Owner.
    pub account: AccountId,
    /// Buy or sell.
    pub side: Side,
    /// Limit price.
    pub price: Ticks,
    /// Remaining size.
    pub qty: Lots,
    /// Size when it was placed (or last replaced).
    pub original_qty: Lots,
    /// Expiry height, if any.
    pub good_til_height: Option<u64>,
    /// Self-trade prevention mode it was placed with (applies again when a replace takes).
    pub stp: SelfTradePrevention,
    /// Time priority: strictly increasing in the order orders came to rest.
    pub seq: u64,
}

/// What an operation did, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BookEvent {
    /// A trade between the incoming order and a resting maker order, at the maker's price.
    Fill {
        /// The resting order.
        maker: OrderId,
        /// Its owner.
        maker_account: AccountId,
        /// The maker's price.
        price: Ticks,
        /// Traded size.
        qty: Lots,
        /// What the maker has left (0: a `Done { Filled }` follows).
        maker_remaining: Lots,
    },
    /// A resting order left the book (fully filled makers, STP-cancelled makers, expired).
    Done {
        /// The order.
        order: OrderId,
        /// Its owner.
        account: AccountId,
        /// Its side (callers release open-order exposure by side).
        side: Side,
        /// Why.
        reason: DoneReason,
        /// Quantity it still had when it left (0 when filled).
        remaining: Lots,
    },
    /// The incoming order rested with this remaining quantity.
    Rested {
        /// The order.
        order: OrderId,
        /// Its price.
        price: Ticks,
        /// Its resting size.
        qty: Lots,
    },
}

/// How an incoming order's size was disposed of: `filled + rested + cancelled` is its size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaceSummary {
    /// Traded against makers.
    pub filled: Lots,
    /// Left resting in the book.
    pub rested: Lots,
    /// Not traded and not resting: IOC remainder, STP-cancelled taker remainder.
    pub cancelled: Lots,
}

/// Why [`Book::restore`] refused a list of orders.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum RestoreError {
    /// Two orders have this id.
    #[error("duplicate order id {0}")]
    DuplicateId(OrderId),
    /// Non-positive price or size, or a size above the original size.
    #[error("order {0}: price and size must be positive and the size at most the original size")]
    BadOrder(OrderId),
    /// A sequence number the book has not handed out yet.
    #[error("order {order}: sequence {seq} is not below the book's next sequence {next_seq}")]
    SeqAhead {
        /// The order.
        order: OrderId,
        /// Its sequence number.
        seq: u64,
        /// The book's next sequence number.
        next_seq: u64,
    },
    /// The order comes before a better level, or before an older order of its level.
    #[error("order {0} is out of priority order")]
    OutOfOrder(OrderId),
    /// The order's level total would exceed `i64`.
    #[error("order {0} overflows its level's total")]
    LevelOverflow(OrderId),
    /// Another expiring order has the same expiry height and sequence number.
    #[error("order {0}: another order has the same expiry and sequence")]
    DuplicateExpiry(OrderId),
    /// More than [`SLOTS_MAX`] orders.
    #[error("more orders than a book can hold")]
    TooMany,
    /// The best bid is not below the best ask.
    #[error("crossed book: bid {bid} >= ask {ask}")]
    Crossed {
        /// Best bid.
        bid: Ticks,
        /// Best ask.
        ask: Ticks,
    },
}

/// Why the book refused an operation. The book is unchanged after every error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum BookError {
    /// An order with this id is resting.
    #[error("duplicate order id {0}")]
    DuplicateId(OrderId),
    /// Prices must be positive.
    #[error("bad price {0}: must be positive")]
    BadPrice(Ticks),
    /// Sizes must be positive (and fit the level total).
    #[error("bad quantity {0}: must be positive and fit the level")]
    BadQuantity(Lots),
    /// The book holds its maximum number of orders (the limit).
    #[error("book full: {0} orders")]
    BookFull(u32),
    /// The account holds its maximum number of orders (the limit).
    #[error("too many orders for the account: limit {0}")]
    TooManyOrders(u32),
    /// A post-only order would have traded.
    #[error("post-only order would take liquidity")]
    PostOnlyWouldTake,
    /// A fill-or-kill order cannot fill in full.
    #[error("fill-or-kill order cannot fill in full")]
    FokUnfillable,
    /// No resting order has this id.
    #[error("unknown order {0}")]
    UnknownOrder(OrderId),
    /// The order belongs to another account.
    #[error("order {0} belongs to another account")]
    NotOwner(OrderId),
}
