//! The devnet's oracle price path: a deterministic function of consensus time.
//!
//! The "true" price the `sim` venues of `bastion-oracle` quote around (each with its own noise,
//! latency and outages), and the price the load generator trades near. Not a feed: the chain's
//! index comes only from validators' signed observations. Integer arithmetic only (the geometric part of a crash
//! uses the deterministic Q64.64 `exp`/`ln` of `bastion-math`); no clock, no randomness beyond
//! a seeded hash.
//!
//! The calm path (also the background of a flash crash) is a wiggle within ±1% of the start
//! price: a piecewise-linear interpolation between knots every [`KNOT_MS`] whose offsets come
//! from a SplitMix64 hash of `(seed, underlying, knot)`. A flash crash multiplies the wiggle by
//! a factor that falls from 1 to `1 - drop` over `crash_over_ms` (geometrically, so every
//! step of the fall is the same relative move), holds at the bottom for `hold_ms`, then
//! recovers linearly to 1 over `recover_ms`.

use bastion_math::{Fx, Rounding};
use bastion_types::PPM;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Distance between two knots of the calm wiggle, in ms.
pub const KNOT_MS: u64 = 1_000;
/// Largest offset of a calm knot from the start price, in ppm (±1%).
pub const WIGGLE_PPM: i64 = 10_000;
/// Start index prices of the devnet underlyings (BTC $100,000, ETH $4,000), price micro-units.
pub const DEVNET_START: [i64; 2] = [100_000_000_000, 4_000_000_000];

/// Resolution of the crash factor: 1.0 = `FACTOR_ONE`.
const FACTOR_ONE: i128 = 1_000_000_000_000;
/// `PPM` as an i128.
const PPM_128: i128 = 1_000_000;

/// Which price path the devnet's oracle follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// The calm wiggle only.
    Calm,
    /// The calm wiggle with a crash, a hold at the bottom and a recovery.
    FlashCrash,
}

impl Scenario {
    /// Every scenario, in the order their names are listed.
    pub const ALL: [Scenario; 2] = [Scenario::Calm, Scenario::FlashCrash];

    /// The scenario's name, as parsed and displayed (`calm`, `flash-crash`).
    pub const fn name(self) -> &'static str {
        match self {
            Scenario::Calm => "calm",
            Scenario::FlashCrash => "flash-crash",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(s: &str) -> Result<Scenario, String> {
        Scenario::ALL.into_iter().find(|sc| sc.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Scenario::ALL.iter().map(|sc| sc.name()).collect();
            format!("unknown scenario {s:?}: expected one of {}", names.join(", "))
        })
    }
}

/// A deterministic index price path per underlying, a function of consensus time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricePath {
    /// The shape of the path.
    pub scenario: Scenario,
    /// Consensus time (ms) at which the path starts (the chain's genesis timestamp).
    pub t0_ms: u64,
    /// Start index price per underlying, price micro-units (devnet: [`DEVNET_START`]).
    pub start: Vec<i64>,
    /// Seed of the calm wiggle.
    pub seed: u64,
    /// FlashCrash: when the drop starts, ms after `t0_ms`.
    pub crash_at_ms: u64,
    /// FlashCrash: how long the drop takes, ms.
    pub crash_over_ms: u64,
    /// FlashCrash: the drop, ppm of the calm price (300_000 = 30%).
    pub drop_ppm: i64,
    /// FlashCrash: how long the price stays at the bottom, ms.
    pub hold_ms: u64,
    /// FlashCrash: how long the linear recovery to the calm price takes, ms.
    pub recover_ms: u64,
}

impl PricePath {
    /// The devnet path for `scenario` starting at `t0_ms`: [`DEVNET_START`] prices, and for a
    /// flash crash a 30% drop 10 s after `t0_ms` over 2 s, 3 s at the bottom and a 10 s
    /// recovery.
    pub fn devnet(scenario: Scenario, t0_ms: u64, seed: u64) -> PricePath {
        PricePath {
            scenario,
            t0_ms,
            start: DEVNET_START.to_vec(),
            seed,
            crash_at_ms: 10_000,
            crash_over_ms: 2_000,
            drop_ppm: 300_000,
            hold_ms: 3_000,
            recover_ms: 10_000,
        }
    }

    /// Checks the parameters: start prices positive, `drop_ppm` in `0..1_000_000`,
    /// `crash_over_ms > 0` and `recover_ms > 0`. The error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if let Some((u, p)) = self.start.iter().enumerate().find(|(_, p)| **p <= 0) {
            return Err(format!("start[{u}] must be positive, got {p}"));
        }
        if !(0..PPM).contains(&self.drop_ppm) {
            return Err(format!("drop_ppm must be in 0..{PPM}, got {}", self.drop_ppm));
        }
        if self.crash_over_ms == 0 {
            return Err("crash_over_ms must be positive".into());
        }
        if self.recover_ms == 0 {
            return Err("recover_ms must be positive".into());
        }
        Ok(())
    }

    /// When the path is back on the calm wiggle after a flash crash: `t0_ms` plus the crash
    /// start, drop, hold and recovery (saturating). For a calm path, `t0_ms`.
    pub fn crash_end_ms(&self) -> u64 {
        match self.scenario {
            Scenario::Calm => self.t0_ms,
            Scenario::FlashCrash => self
                .t0_ms
                .saturating_add(self.crash_at_ms)
                .saturating_add(self.crash_over_ms)
                .saturating_add(self.hold_ms)
                .saturating_add(self.recover_ms),
        }
    }

    /// Index price of underlying `u` at consensus time `t_ms`, price micro-units. Times before
    /// `t0_ms` evaluate as `t0_ms` (where the price is exactly the start price); `None` for an
    /// unknown underlying (or an arithmetic overflow on absurd parameters).
    pub fn price(&self, u: usize, t_ms: u64) -> Option<i64> {
        let start = i128::from(*self.start.get(u)?);
        let elapsed = t_ms.saturating_sub(self.t0_ms);
        let wiggle = self.wiggle_ppm(u, elapsed)?;
        let factor = match self.scenario {
            Scenario::Calm => FACTOR_ONE,
            Scenario::FlashCrash => self.crash_factor(elapsed)?,
        };
        // start * (1 + wiggle) * factor, rounded down; at most ~9.3e36, inside i128.
        let scaled = start.checked_mul(PPM_128.checked_add(wiggle)?)?.checked_mul(factor)?;
        let p = scaled.checked_div(PPM_128.checked_mul(FACTOR_ONE)?)?;
        let p = i64::try_from(p).ok()?;
        Some(if start > 0 { p.max(1) } else { p })
    }

    /// The calm wiggle of underlying `u`, `elapsed` ms after `t0_ms`, in ppm of the start price.
    fn wiggle_ppm(&self, u: usize, elapsed: u64) -> Option<i128> {
        let knot = elapsed.checked_div(KNOT_MS)?;
        let into = i128::from(elapsed.checked_rem(KNOT_MS)?);
        let u = u64::try_from(u).ok()?;
        let a = i128::from(knot_offset_ppm(self.seed, u, knot));
        let b = i128::from(knot_offset_ppm(self.seed, u, knot.saturating_add(1)));
        // a + (b - a) * into / KNOT_MS; |b - a| <= 20_000, so nothing here can overflow.
        let step = b.checked_sub(a)?.checked_mul(into)?.checked_div(i128::from(KNOT_MS))?;
        a.checked_add(step)
    }

    /// The crash factor `elapsed` ms after `t0_ms`, scaled by `FACTOR_ONE`.
    fn crash_factor(&self, elapsed: u64) -> Option<i128> {
        // Out-of-range drops (rejected by `validate`) are clamped so the factor stays positive.
        let drop = i128::from(self.drop_ppm.clamp(0, PPM.saturating_sub(1)));
        let bottom = PPM_128.checked_sub(drop)?.checked_mul(FACTOR_ONE.checked_div(PPM_128)?)?;
        let fall_at = self.crash_at_ms;
        let bottom_at = fall_at.saturating_add(self.crash_over_ms);
        let rise_at = bottom_at.saturating_add(self.hold_ms);
        let calm_at = rise_at.saturating_add(self.recover_ms);
        if elapsed < fall_at {
            Some(FACTOR_ONE)
        } else if elapsed < bottom_at {
            // (1 - drop)^x with x = into / crash_over_ms: each equal time step is the same
            // relative move (a linear fall would move most, relatively, near the bottom).
            let into = i128::from(elapsed.saturating_sub(fall_at));
            let x = Fx::from_ratio(into, i128::from(self.crash_over_ms), Rounding::Nearest).ok()?;
            let ln_bottom =
                Fx::from_ratio(PPM_128.checked_sub(drop)?, PPM_128, Rounding::Nearest).ok()?.ln().ok()?;
            let f = x.checked_mul(ln_bottom).ok()?.exp().ok()?;
            let scale = i64::try_from(FACTOR_ONE).ok()?;
            let f = f.checked_mul_int(scale).ok()?.to_int(Rounding::Nearest);
            Some(f.clamp(bottom, FACTOR_ONE))
        } else if elapsed < rise_at {
            Some(bottom)
        } else if elapsed < calm_at {
            let into = i128::from(elapsed.saturating_sub(rise_at));
            let rise = FACTOR_ONE
                .checked_sub(bottom)?
                .checked_mul(into)?
                .checked_div(i128::from(self.recover_ms))?;
            bottom.checked_add(rise)
        } else {
            Some(FACTOR_ONE)
        }
    }
}

/// SplitMix64's step: add the golden gamma, then the finalizer.
fn splitmix64(x: u64) -> u64 {
    let z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let z = (z ^ z.wrapping_shr(30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let z = (z ^ z.wrapping_shr(27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ z.wrapping_shr(31)
}

/// Offset of knot `knot` of underlying `u` from the start price, ppm in
/// `-WIGGLE_PPM..=WIGGLE_PPM`. Knot 0 is 0, so every path starts exactly at its start price.
fn knot_offset_ppm(seed: u64, u: u64, knot: u64) -> i64 {
    if knot == 0 {
        return 0;
    }
    let h = splitmix64(splitmix64(splitmix64(seed) ^ u) ^ knot);
    let span = WIGGLE_PPM.unsigned_abs().saturating_mul(2).saturating_add(1);
    let r = i64::try_from(h.checked_rem(span).unwrap_or(0)).unwrap_or(0);
    r.saturating_sub(WIGGLE_PPM)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const T0: u64 = 1_800_000_000_000;

    fn crash() -> PricePath {
        PricePath::devnet(Scenario::FlashCrash, T0, 42)
    }

    fn calm_twin(p: &PricePath) -> PricePath {
        PricePath { scenario: Scenario::Calm, ..p.clone() }
    }

    #[test]
    fn paths_are_deterministic() {
        let a = crash();
        let b = crash();
        let other_seed = PricePath::devnet(Scenario::FlashCrash, T0, 43);
        let mut differs = false;
        for t in (0..40_000).step_by(37) {
            for u in 0..2 {
                assert_eq!(a.price(u, T0 + t), b.price(u, T0 + t));
                differs |= a.price(u, T0 + t) != other_seed.price(u, T0 + t);
            }
        }
        assert!(differs, "the seed changes the wiggle");
    }

    #[test]
    fn the_path_starts_at_the_start_prices_and_before_t0_is_t0() {
        let p = crash();
        for (u, s) in DEVNET_START.iter().enumerate() {
            assert_eq!(p.price(u, T0), Some(*s));
            assert_eq!(p.price(u, 0), Some(*s));
            assert_eq!(p.price(u, T0 - 1), Some(*s));
        }
        assert_eq!(p.price(2, T0), None, "unknown underlying");
    }

    #[test]
    fn calm_stays_within_one_percent_of_start() {
        for seed in [0, 1, 42, u64::MAX] {
            let p = PricePath::devnet(Scenario::Calm, T0, seed);
            let (mut lo, mut hi) = (i64::MAX, i64::MIN);
            for t in (0..600_000).step_by(50) {
                for (u, s) in DEVNET_START.iter().enumerate() {
                    let x = p.price(u, T0 + t).unwrap();
                    let dev = (i128::from(x) - i128::from(*s)).abs() * 1_000_000 / i128::from(*s);
                    assert!(dev <= 11_000, "seed {seed} u {u} t {t}: {x} vs {s}");
                    if u == 0 {
                        lo = lo.min(x);
                        hi = hi.max(x);
                    }
                }
            }
            // It does wiggle: over 10 minutes the range spans more than 1%.
            assert!(hi - lo > DEVNET_START[0] / 100, "seed {seed}: {lo}..{hi}");
        }
    }

    #[test]
    fn crash_bottom_is_seventy_percent_of_calm() {
        let p = crash();
        let calm = calm_twin(&p);
        let bottom_from = p.crash_at_ms + p.crash_over_ms;
        for t in (bottom_from..bottom_from + p.hold_ms).step_by(100) {
            for u in 0..2 {
                let c = i128::from(calm.price(u, T0 + t).unwrap());
                let x = i128::from(p.price(u, T0 + t).unwrap());
                let target = c * 7 / 10;
                assert!((x - target).abs() * 1_000 <= target * 5, "t {t} u {u}: {x} vs {target}");
            }
        }
        // Before the crash the two paths agree exactly.
        for t in (0..p.crash_at_ms).step_by(100) {
            assert_eq!(p.price(0, T0 + t), calm.price(0, T0 + t));
        }
    }

    #[test]
    fn recovery_returns_to_calm() {
        let p = crash();
        let calm = calm_twin(&p);
        let end = p.crash_end_ms();
        assert_eq!(end, T0 + 25_000);
        // Mid-recovery the price is between the bottom and the calm price.
        let mid = end - p.recover_ms / 2;
        let (x, c) = (p.price(0, mid).unwrap(), calm.price(0, mid).unwrap());
        assert!(x < c && x > c * 7 / 10, "{x} vs {c}");
        for t in (end..end + 60_000).step_by(77) {
            for u in 0..2 {
                assert_eq!(p.price(u, t), calm.price(u, t), "t {t}");
            }
        }
    }

    /// The largest relative move, ppm of the earlier price, between prices `step` ms apart
    /// over the whole crash, starting at `offset`.
    fn max_move_ppm(p: &PricePath, step: u64, offset: u64) -> i128 {
        let mut worst = 0;
        for u in 0..2 {
            let mut prev = i128::from(p.price(u, T0 + offset).unwrap());
            let mut t = T0 + offset + step;
            while t <= p.crash_end_ms() + 2_000 {
                let x = i128::from(p.price(u, t).unwrap());
                worst = worst.max((x - prev).abs() * 1_000_000 / prev);
                prev = x;
                t += step;
            }
        }
        worst
    }

    #[test]
    fn no_step_moves_more_than_the_oracle_clamp() {
        let p = crash();
        // The exchange clamps index moves above max_move_ppm = 50_000 per block.
        assert!(max_move_ppm(&p, 1, 0) <= 50_000);
        for offset in [0, 1, 63, 125, 249] {
            let m = max_move_ppm(&p, 250, offset);
            assert!(m <= 50_000, "offset {offset}: {m} ppm");
            assert!(m > 30_000, "the crash is steep: {m} ppm");
        }
        for seed in 0..20 {
            let p = PricePath::devnet(Scenario::FlashCrash, T0, seed);
            assert!(max_move_ppm(&p, 250, 0) <= 50_000, "seed {seed}");
        }
    }

    #[test]
    fn serde_json_round_trip() {
        let p = crash();
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains("\"flash-crash\""), "{json}");
        assert_eq!(serde_json::from_str::<PricePath>(&json).unwrap(), p);
        assert_eq!(serde_json::to_string(&Scenario::Calm).unwrap(), "\"calm\"");
        let extra = json.replacen('{', "{\"bogus\":1,", 1);
        assert!(serde_json::from_str::<PricePath>(&extra).is_err(), "unknown fields are refused");
    }

    #[test]
    fn scenario_names_parse_and_display() {
        for s in Scenario::ALL {
            assert_eq!(s.to_string().parse::<Scenario>(), Ok(s));
        }
        assert_eq!("flash-crash".parse::<Scenario>(), Ok(Scenario::FlashCrash));
        let e = "crash".parse::<Scenario>().unwrap_err();
        assert!(e.contains("calm") && e.contains("flash-crash") && e.contains("crash"), "{e}");
        assert!("Calm".parse::<Scenario>().is_err());
    }

    #[test]
    fn validate_names_the_field() {
        assert_eq!(crash().validate(), Ok(()));
        let bad = |f: fn(&mut PricePath)| {
            let mut p = crash();
            f(&mut p);
            p.validate().unwrap_err()
        };
        assert!(bad(|p| p.start[1] = 0).contains("start[1]"));
        assert!(bad(|p| p.drop_ppm = 1_000_000).contains("drop_ppm"));
        assert!(bad(|p| p.drop_ppm = -1).contains("drop_ppm"));
        assert!(bad(|p| p.crash_over_ms = 0).contains("crash_over_ms"));
        assert!(bad(|p| p.recover_ms = 0).contains("recover_ms"));
    }

    #[test]
    fn absurd_parameters_do_not_panic() {
        let mut p = crash();
        p.start = vec![i64::MAX, 1, -5];
        p.drop_ppm = i64::MIN;
        p.crash_over_ms = 0;
        p.recover_ms = 0;
        p.hold_ms = u64::MAX;
        p.t0_ms = u64::MAX;
        for t in [0, 1, u64::MAX / 2, u64::MAX] {
            for u in 0..3 {
                let _ = p.price(u, t);
            }
        }
        p.drop_ppm = i64::MAX;
        p.t0_ms = 0;
        for t in [0, 10_000, 10_001, u64::MAX] {
            assert!(p.price(1, t).unwrap() >= 1);
        }
    }
}
