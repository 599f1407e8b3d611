//! Central limit order book with price-time priority for one market.
