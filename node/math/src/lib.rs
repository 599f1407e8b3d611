//! `bastion-math`: deterministic Q64.64 fixed-point arithmetic, elementary functions and
//! option pricing (Black-Scholes-Merton, Black-76) for consensus code.
//!
//! # Number format
//! [`Fx`] is a signed Q64.64 number: an `i128` holding `value * 2^64`. Range about ±9.2e18,
//! resolution 2^-64 ≈ 5.4e-20. No floating point is used anywhere in this crate except
//! [`Fx::to_f64`], which exists for printing only.
//!
//! # Rounding
//! Every operation that can be inexact either takes a [`Rounding`] (`Down` = floor, `Up` =
//! ceiling, `Nearest` = ties away from zero) or documents its fixed rule. The public `checked_*`
//! operations compute the exact 256-bit intermediate and round once. The function kernels
//! (exp, ln, the normal CDF) round their internal steps half-up (`floor(x + 1/2)`), a rule that
//! is simple to reproduce bit for bit in CUDA C. Results are a pure function of the input bits.
//!
//! # Error bounds (absolute unless stated; 1 ulp = 2^-64)
//! - `exp`: relative error below 3e-19 before the final rounding to Q64.64.
//! - `ln`: below 2e-19.
//! - `sqrt`: exactly `floor(sqrt(x))` on the Q64.64 grid.
//! - `norm_cdf` and the tail `1 - N(x)`: below 1e-19 absolute, and relative 1e-18 in the tail
//!   down to ~1e-17 (the tail underflows to 0 beyond x ≈ 9.5); `N(x) + N(-x) = 1` exactly.
//! - `norm_pdf`: relative 5e-19 plus one rounding.
//!
//! - the pricer's internal reciprocal square root (`fl.rs`, 64-bit mantissas): relative error
//!   below 2^-61; its mantissa products truncate at 2^-63 relative each.
//!
//! Option prices and greeks from [`option`] match 50-digit references to about 1e-15 relative
//! on the exchange's ranges (the shared vector file is checked at 1e-9). The pricer uses no
//! division: see [`black_scholes_merton`] for how the formulas are evaluated.

mod fl;
mod func;
mod fx;
pub mod option;
mod tables;
mod wide;

pub use fx::{DECIMAL_DIGITS_MAX, DECIMAL_EXPONENT_MAX, FRAC_BITS, Fx, MICROS_PER_UNIT, MathError, Rounding};
pub use option::{
    MarkInputs, OptionGreeks, OptionInputs, OptionKind, PricingError, black_scholes_merton, black76,
    mark_price_micros, option_price_micros,
};
