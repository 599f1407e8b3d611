//! Identifiers. Each is a newtype so an account can never be passed where a market is meant.

use std::fmt;

macro_rules! id {
    ($(#[$m:meta])* $name:ident($inner:ty), $prefix:literal) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[derive(serde::Serialize, serde::Deserialize)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

id!(
    /// A trader's account (one per signing key).
    AccountId(u64),
    "acct:"
);
id!(
    /// A market: one perpetual, or one option series.
    MarketId(u32),
    "mkt:"
);
id!(
    /// An order, unique within its market; chosen by the exchange at acceptance.
    OrderId(u64),
    "ord:"
);
id!(
    /// A collateral asset. Asset 0 is always the quote asset in which PnL settles.
    AssetId(u16),
    "asset:"
);
id!(
    /// An underlying with an oracle index price (BTC, ETH, ...).
    UnderlyingId(u16),
    "und:"
);
id!(
    /// A validator's index in the validator set.
    ValidatorIndex(u16),
    "val:"
);

/// The quote asset: balances in it carry PnL, fees and funding.
pub const QUOTE_ASSET: AssetId = AssetId(0);
