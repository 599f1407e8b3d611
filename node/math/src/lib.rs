//! Deterministic fixed-point arithmetic and option pricing.
