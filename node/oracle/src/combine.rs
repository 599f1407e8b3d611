//! Combining venues into one value: pure functions, no I/O, no clock but the `now_ms` given.
//!
//! For one underlying (or one volatility series), [`combine`] takes every venue's latest quote
//! and:
//! 1. drops the stale ones (`now_ms - ts_ms > staleness_ms`);
//! 2. drops each venue more than `outlier_ppm` away from the weighted median of the *other*
//!    fresh venues (so one pumped venue among honest ones is dropped, while a move all venues
//!    make is kept);
//! 3. refuses (no value) if fewer than `min_sources` venues remain: never a guess;
//! 4. returns the lower weighted median of what remains (the first value, in ascending order,
//!    at which the cumulative weight reaches half of the total): the same rule the chain
//!    applies to validators' observations, so a venue never moves the result beyond the
//!    range of the others unless it holds half of the weight.

use bastion_types::PPM;

/// One venue's latest quote of one value (a price or an at-the-money volatility).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VenueQuote {
    /// The venue's weight (positive; its `weight` in the configuration).
    pub weight: u64,
    /// The quoted value (price micro-units, or ppm for volatilities); positive.
    pub value: i64,
    /// When the venue quoted it, ms since the Unix epoch.
    pub ts_ms: u64,
}

/// The rules of one combination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CombineRules {
    /// Fewest venues that must remain after dropping stale quotes and outliers.
    pub min_sources: usize,
    /// A quote older than this at `now_ms` is stale.
    pub staleness_ms: u64,
    /// A venue farther than this (ppm of the others' median) from the others' median is an
    /// outlier.
    pub outlier_ppm: i64,
}

/// What [`combine`] made of the quotes. Indexes are positions in its input.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Combined {
    /// The lower weighted median of the venues used, or `None` if fewer than `min_sources`
    /// fresh, agreeing venues remained.
    pub value: Option<i64>,
    /// The venues used, ascending.
    pub used: Vec<usize>,
    /// The stale venues, ascending.
    pub stale: Vec<usize>,
    /// The fresh venues dropped as outliers, ascending.
    pub outliers: Vec<usize>,
}

/// The lower weighted median of `(value, weight)` pairs: sorted by value, the first value at
/// which the cumulative weight reaches half of the total weight. `None` when the total weight
/// is zero. Equal values simply add their weights, so ties need no rule.
pub fn weighted_median(items: &[(i64, u64)]) -> Option<i64> {
    let mut sorted: Vec<(i64, u64)> = items.to_vec();
    sorted.sort_unstable();
    let total: u128 = sorted.iter().map(|(_, w)| u128::from(*w)).sum();
    if total == 0 {
        return None;
    }
    let mut cumulative: u128 = 0;
    for (value, weight) in sorted {
        cumulative = cumulative.saturating_add(u128::from(weight));
        if cumulative.saturating_mul(2) >= total {
            return Some(value);
        }
    }
    None
}

/// Distance of `value` from `reference` in ppm of `reference` (saturating; `reference > 0`).
pub fn deviation_ppm(value: i64, reference: i64) -> i64 {
    if reference <= 0 {
        return i64::MAX;
    }
    let diff = (i128::from(value) - i128::from(reference)).unsigned_abs();
    let ppm = diff.saturating_mul(PPM.unsigned_abs().into()) / u128::from(reference.unsigned_abs());
    i64::try_from(ppm).unwrap_or(i64::MAX)
}

/// Combines venues' quotes of one value at `now_ms` (see the module documentation).
pub fn combine(quotes: &[VenueQuote], now_ms: u64, rules: &CombineRules) -> Combined {
    let mut out = Combined::default();
    let mut fresh = Vec::with_capacity(quotes.len());
    for (i, q) in quotes.iter().enumerate() {
        if now_ms.saturating_sub(q.ts_ms) > rules.staleness_ms {
            out.stale.push(i);
        } else {
            fresh.push(i);
        }
    }
    for &i in &fresh {
        let others: Vec<(i64, u64)> =
            fresh.iter().filter(|&&j| j != i).map(|&j| (quotes[j].value, quotes[j].weight)).collect();
        let outlier = match weighted_median(&others) {
            Some(m) => deviation_ppm(quotes[i].value, m) > rules.outlier_ppm,
            None => false,
        };
        if outlier {
            out.outliers.push(i);
        } else {
            out.used.push(i);
        }
    }
    if out.used.len() >= rules.min_sources.max(1) {
        let items: Vec<(i64, u64)> = out.used.iter().map(|&i| (quotes[i].value, quotes[i].weight)).collect();
        out.value = weighted_median(&items);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const NOW: u64 = 1_000_000;
    const RULES: CombineRules = CombineRules { min_sources: 3, staleness_ms: 2_000, outlier_ppm: 20_000 };

    fn q(value: i64, weight: u64, age: u64) -> VenueQuote {
        VenueQuote { weight, value, ts_ms: NOW - age }
    }

    #[test]
    fn weighted_median_vectors() {
        // Stakes 10/20/30 on 100/200/300: cumulative 10, 30 (= half of 60) -> 200.
        assert_eq!(weighted_median(&[(100, 10), (200, 20), (300, 30)]), Some(200));
        // Order of the input does not matter.
        assert_eq!(weighted_median(&[(300, 30), (100, 10), (200, 20)]), Some(200));
        // 50/50: the lower one.
        assert_eq!(weighted_median(&[(100, 50), (200, 50)]), Some(100));
        assert_eq!(weighted_median(&[(200, 50), (100, 50)]), Some(100));
        // A heavy venue is the median on its own once it holds half.
        assert_eq!(weighted_median(&[(100, 1), (200, 1), (900, 2)]), Some(200));
        assert_eq!(weighted_median(&[(100, 1), (200, 1), (900, 3)]), Some(900));
        // Ties add up.
        assert_eq!(weighted_median(&[(5, 1), (5, 1), (7, 1), (9, 1), (9, 1)]), Some(7));
        assert_eq!(weighted_median(&[(5, 1), (5, 1), (5, 1), (9, 1), (9, 1)]), Some(5));
        // Odd count, equal weights: the middle.
        assert_eq!(weighted_median(&[(1, 1), (2, 1), (3, 1)]), Some(2));
        // Nothing to take the median of.
        assert_eq!(weighted_median(&[]), None);
        assert_eq!(weighted_median(&[(1, 0), (2, 0)]), None);
        // Zero weights are ignored, and huge weights do not overflow.
        assert_eq!(weighted_median(&[(1, 0), (2, 1)]), Some(2));
        assert_eq!(weighted_median(&[(1, u64::MAX), (2, u64::MAX), (3, u64::MAX)]), Some(2));
    }

    #[test]
    fn deviation_is_relative_to_the_reference() {
        assert_eq!(deviation_ppm(102, 100), 20_000);
        assert_eq!(deviation_ppm(98, 100), 20_000);
        assert_eq!(deviation_ppm(100, 100), 0);
        assert_eq!(deviation_ppm(1_000, 100), 9_000_000);
        assert_eq!(deviation_ppm(5, 0), i64::MAX);
        assert_eq!(deviation_ppm(i64::MAX, 1), i64::MAX);
        assert_eq!(deviation_ppm(i64::MIN, i64::MAX), 2_000_000);
    }

    #[test]
    fn agreeing_fresh_venues_give_their_median() {
        let quotes = [q(100_000, 1, 0), q(100_100, 1, 500), q(99_900, 1, 1_999), q(100_050, 1, 0)];
        let c = combine(&quotes, NOW, &RULES);
        assert_eq!(c.value, Some(100_000), "lower median of 99_900, 100_000, 100_050, 100_100");
        assert_eq!(c.used, vec![0, 1, 2, 3]);
        assert!(c.stale.is_empty() && c.outliers.is_empty());
    }

    #[test]
    fn weights_choose_among_venues() {
        let quotes = [q(100_000, 1, 0), q(100_500, 5, 0), q(101_000, 1, 0)];
        assert_eq!(combine(&quotes, NOW, &RULES).value, Some(100_500));
        let quotes = [q(100_000, 3, 0), q(100_500, 1, 0), q(101_000, 1, 0)];
        assert_eq!(combine(&quotes, NOW, &RULES).value, Some(100_000));
    }

    #[test]
    fn stale_venues_are_left_out_and_too_few_give_nothing() {
        // Exactly staleness_ms old is still fresh; one ms more is stale.
        let quotes = [q(100, 1, 2_000), q(101, 1, 2_001), q(102, 1, 0), q(103, 1, 10_000)];
        let c = combine(&quotes, NOW, &RULES);
        assert_eq!(c.stale, vec![1, 3]);
        assert_eq!(c.used, vec![0, 2]);
        assert_eq!(c.value, None, "two fresh venues, three needed");
        let two = CombineRules { min_sources: 2, ..RULES };
        assert_eq!(combine(&quotes, NOW, &two).value, Some(100));
        // A quote from the future (clock skew) is fresh.
        let ahead = [VenueQuote { weight: 1, value: 7, ts_ms: NOW + 5_000 }];
        assert_eq!(combine(&ahead, NOW, &CombineRules { min_sources: 1, ..RULES }).value, Some(7));
        assert_eq!(combine(&[], NOW, &RULES), Combined::default());
    }

    #[test]
    fn one_pumped_venue_is_an_outlier() {
        let quotes =
            [q(100_000, 1, 0), q(1_000_000, 1, 0), q(100_300, 1, 0), q(99_800, 1, 0), q(100_100, 1, 0)];
        let c = combine(&quotes, NOW, &RULES);
        assert_eq!(c.outliers, vec![1]);
        assert_eq!(c.used, vec![0, 2, 3, 4]);
        assert_eq!(c.value, Some(100_000));
    }

    #[test]
    fn the_outlier_threshold_is_inclusive() {
        // 102_000 is exactly 2% above the others' median (100_000): kept; 102_001 is dropped.
        let quotes = [q(100_000, 1, 0), q(100_000, 1, 0), q(100_000, 1, 0), q(102_000, 1, 0)];
        assert!(combine(&quotes, NOW, &RULES).outliers.is_empty());
        let quotes = [q(100_000, 1, 0), q(100_000, 1, 0), q(100_000, 1, 0), q(102_001, 1, 0)];
        assert_eq!(combine(&quotes, NOW, &RULES).outliers, vec![3]);
    }

    #[test]
    fn a_move_of_every_venue_is_not_an_outlier() {
        let quotes: Vec<VenueQuote> = (0..5).map(|i| q(1_000_000 + i * 100, 1, 0)).collect();
        let c = combine(&quotes, NOW, &RULES);
        assert!(c.outliers.is_empty());
        assert_eq!(c.value, Some(1_000_200));
    }

    #[test]
    fn outliers_leaving_too_few_give_nothing() {
        // Two honest, two pumped, one far below: the honest pair survives, but two are too few.
        let quotes = [q(100, 1, 0), q(100, 1, 0), q(500, 1, 0), q(500, 1, 0), q(10, 1, 0)];
        let c = combine(&quotes, NOW, &RULES);
        assert_eq!((c.used, c.outliers), (vec![0, 1], vec![2, 3, 4]));
        assert_eq!(c.value, None);
        // Two venues disagreeing: each is the other's outlier.
        let pair = [q(100, 1, 0), q(200, 1, 0)];
        let c = combine(&pair, NOW, &CombineRules { min_sources: 1, ..RULES });
        assert_eq!((c.outliers, c.value), (vec![0, 1], None));
    }

    #[test]
    fn stale_quotes_do_not_judge_outliers() {
        // The stale venues quote far away; only the fresh ones form the others' median.
        let quotes = [
            q(100_000, 1, 0),
            q(100_100, 1, 0),
            q(99_900, 1, 0),
            q(1_000_000, 1, 5_000),
            q(1_000_000, 1, 5_000),
        ];
        let c = combine(&quotes, NOW, &RULES);
        assert_eq!((c.stale, c.outliers, c.value), (vec![3, 4], vec![], Some(100_000)));
    }
}
