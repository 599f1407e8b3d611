//! The deterministic derivatives exchange.
