//! The portfolio-risk kernel's math (`cuda/bk_risk.cuh`) built for the host, behind a safe API.
//!
//! The exchange's portfolio margin (`portfolio_requirement` in `node/exchange`) reduces, per
//! account, a grid of 31 price scenarios: for each underlying the account holds positions on
//! (increasing underlying id), for each scenario `s`,
//! `pnl_s = Σ div_floor(diff[market][s] · size · lot[market], 10^9)` over its nonzero positions
//! (in the account's order), `worst_U = max(0, max_s −pnl_s)`; `worst_total = Σ worst_U` and
//! `mm = div_floor(worst_total · mm_ppm, 10^6)`. Everything is `i128` with `checked_*`
//! semantics; any overflow sends the account to the CPU path ([`STATUS_FALLBACK`]). The kernel
//! (`bk_portfolio_risk`, [`crate::source::PORTFOLIO_RISK`]) and the host functions here run the
//! same C function, bit-identical to that Rust arithmetic.
//!
//! [`RiskInput`] is the packed layout the GPU receives. [`RiskInput::validate`] checks every
//! length, offset and index, so neither the host loop nor the kernel can read out of bounds;
//! [`host_portfolio_risk`] and [`host_portfolio_risk_range`] validate before calling C.

use std::ops::Range;
use std::os::raw::{c_int, c_longlong, c_uchar, c_uint};

/// Scenarios per market (`BK_RISK_SCENARIOS`): 5 spot shocks × 5 vol shocks + 6 extended.
pub const SCENARIOS: usize = 31;

/// The largest `mm_ppm` accepted: 100% of the worst loss.
pub const PPM: i64 = 1_000_000;

/// `out_status` of an account whose `worst` and `mm` are valid.
pub const STATUS_OK: u8 = 0;

/// `out_status` of an account the CPU must decide (`acct_ok` 0, a nonzero position on a market
/// with `market_ok` 0, or an `i128` overflow); its `worst` and `mm` are 0.
pub const STATUS_FALLBACK: u8 = 1;

// The C side is `__int128`: 16 bytes, 16-aligned on x86_64 (host.cpp asserts the same). Rust's
// `i128` matches since 1.77; a platform where it does not fails to build here.
const _: () = assert!(size_of::<i128>() == 16 && align_of::<i128>() == 16);

unsafe extern "C" {
    fn bk_host_portfolio_risk(
        diffs: *const c_longlong,
        lots: *const c_longlong,
        market_ok: *const c_uchar,
        acct_groups: *const c_uint,
        group_pos: *const c_uint,
        pos_market: *const c_uint,
        pos_size: *const c_longlong,
        acct_ok: *const c_uchar,
        mm_ppm: c_longlong,
        begin: c_uint,
        end: c_uint,
        out_worst: *mut i128,
        out_mm: *mut i128,
        out_status: *mut c_uchar,
    );
    fn bk_host_i128_checked_add(a: *const i128, b: *const i128, out: *mut i128) -> c_int;
    fn bk_host_i128_checked_neg(a: *const i128, out: *mut i128) -> c_int;
    fn bk_host_i128_checked_mul(a: *const i128, b: *const i128, out: *mut i128) -> c_int;
    fn bk_host_i128_div_floor_nanos(x: *const i128, out: *mut i128);
    fn bk_host_i128_div_floor_ppm(x: *const i128, out: *mut i128);
}

/// The kernel's inputs in its packed layout (see `cuda/portfolio_risk.cu`).
#[derive(Debug, Clone, Copy)]
pub struct RiskInput<'a> {
    /// `n_markets · 31`, row-major: `diffs[m · 31 + s]` = scenario price − mark (quote micros).
    pub diffs: &'a [i64],
    /// `n_markets`: lot size in nanos of a unit.
    pub lots: &'a [i64],
    /// `n_markets`: 1 when every scenario of the market was computed and fits `i64`.
    pub market_ok: &'a [u8],
    /// `n_accounts + 1` offsets: account `a`'s groups are `acct_groups[a]..acct_groups[a + 1]`.
    pub acct_groups: &'a [u32],
    /// `n_groups + 1` offsets: group `g`'s positions are `group_pos[g]..group_pos[g + 1]`.
    pub group_pos: &'a [u32],
    /// `n_positions`: dense market index of each position.
    pub pos_market: &'a [u32],
    /// `n_positions`: signed size in lots.
    pub pos_size: &'a [i64],
    /// `n_accounts`: 0 when the host already knows the account needs the CPU path.
    pub acct_ok: &'a [u8],
    /// Maintenance fraction of the worst loss, ppm, in `1..=1_000_000`.
    pub mm_ppm: i64,
}

/// The sizes of a validated [`RiskInput`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RiskShape {
    /// Accounts (`acct_groups.len() - 1`).
    pub n_accounts: usize,
    /// Markets (`lots.len()`).
    pub n_markets: usize,
    /// Underlying groups (`group_pos.len() - 1`).
    pub n_groups: usize,
    /// Positions (`pos_market.len()`).
    pub n_positions: usize,
}

/// Why a [`RiskInput`] (or a call's range or outputs) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RiskError {
    /// An offset array has no entries (it needs `count + 1`).
    #[error("{what} is empty: it needs one more entry than the items it indexes")]
    EmptyOffsets {
        /// `acct_groups` or `group_pos`.
        what: &'static str,
    },
    /// An array's length disagrees with the others.
    #[error("{what} has {actual} entries, expected {expected}")]
    Length {
        /// The array.
        what: &'static str,
        /// The length implied by the other arrays.
        expected: usize,
        /// Its length.
        actual: usize,
    },
    /// More items than the kernel's 32-bit indices and offsets can address.
    #[error("{what}: {len} is more than the kernel's 32-bit indices allow")]
    TooLarge {
        /// What is counted.
        what: &'static str,
        /// The count.
        len: usize,
    },
    /// An offset array does not start at 0.
    #[error("{what}[0] is {value}, expected 0")]
    OffsetStart {
        /// `acct_groups` or `group_pos`.
        what: &'static str,
        /// The first offset.
        value: u32,
    },
    /// An offset array does not end at the length of the array it indexes.
    #[error("{what} ends at {value}, expected {expected}")]
    OffsetEnd {
        /// `acct_groups` or `group_pos`.
        what: &'static str,
        /// The last offset.
        value: u32,
        /// The length of the indexed array.
        expected: usize,
    },
    /// An offset is smaller than the one before it, or beyond the indexed array.
    #[error("{what}[{index}] = {value} is out of order or out of range (previous {previous}, limit {limit})")]
    BadOffset {
        /// `acct_groups` or `group_pos`.
        what: &'static str,
        /// The offending index.
        index: usize,
        /// Its value.
        value: u32,
        /// The previous offset.
        previous: u32,
        /// The length of the indexed array.
        limit: usize,
    },
    /// A position names a market that does not exist.
    #[error("pos_market[{position}] = {market} is not below n_markets = {n_markets}")]
    MarketOutOfRange {
        /// The position.
        position: usize,
        /// Its market index.
        market: u32,
        /// The number of markets.
        n_markets: usize,
    },
    /// `mm_ppm` is not in `1..=1_000_000`.
    #[error("mm_ppm = {0} is not in 1..=1000000")]
    MmPpm(i64),
    /// The account range is not within `0..n_accounts`.
    #[error("account range {begin}..{end} is not within 0..{n_accounts}")]
    Range {
        /// Range start.
        begin: usize,
        /// Range end.
        end: usize,
        /// The number of accounts.
        n_accounts: usize,
    },
}

/// The kernel's outputs, one entry per account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RiskOutput {
    /// `worst_total`: the summed worst scenario losses (0 where `status` is not OK).
    pub worst: Vec<i128>,
    /// The maintenance margin `div_floor(worst_total · mm_ppm, 10^6)` (0 where not OK).
    pub mm: Vec<i128>,
    /// [`STATUS_OK`] or [`STATUS_FALLBACK`].
    pub status: Vec<u8>,
}

impl RiskOutput {
    /// `(worst, mm)` of account `i` when its status is OK; `None` for a fallback or an index out
    /// of range.
    pub fn get(&self, i: usize) -> Option<(i128, i128)> {
        match self.status.get(i) {
            Some(&STATUS_OK) => Some((*self.worst.get(i)?, *self.mm.get(i)?)),
            _ => None,
        }
    }

    /// The number of accounts.
    pub fn len(&self) -> usize {
        self.status.len()
    }

    /// Whether there are no accounts.
    pub fn is_empty(&self) -> bool {
        self.status.is_empty()
    }
}

fn too_large(what: &'static str, len: usize) -> RiskError {
    RiskError::TooLarge { what, len }
}

fn check_len(what: &'static str, actual: usize, expected: usize) -> Result<(), RiskError> {
    if actual == expected { Ok(()) } else { Err(RiskError::Length { what, expected, actual }) }
}

/// Checks `offsets[range.start..=range.end]`: non-decreasing and at most `limit`.
fn check_offsets(
    what: &'static str,
    offsets: &[u32],
    range: Range<usize>,
    limit: usize,
) -> Result<(), RiskError> {
    let Some(window) = offsets.get(range.start..=range.end) else {
        return Err(RiskError::Length { what, expected: range.end + 1, actual: offsets.len() });
    };
    let mut previous = 0u32;
    for (k, &value) in window.iter().enumerate() {
        if (k > 0 && value < previous) || value as usize > limit {
            return Err(RiskError::BadOffset { what, index: range.start + k, value, previous, limit });
        }
        previous = value;
    }
    Ok(())
}

impl RiskInput<'_> {
    /// Checks everything the kernel relies on and returns the sizes: `acct_groups` and
    /// `group_pos` non-empty, starting at 0, non-decreasing and ending at `n_groups` and
    /// `n_positions`; `diffs` of `31 · n_markets`, `market_ok` of `n_markets`, `pos_size` of
    /// `n_positions`, `acct_ok` of `n_accounts` entries; every `pos_market < n_markets`;
    /// accounts, groups and positions addressable with `u32`; `mm_ppm` in `1..=1_000_000`.
    pub fn validate(&self) -> Result<RiskShape, RiskError> {
        let shape = self.shape()?;
        self.check_accounts(&shape, 0..shape.n_accounts)?;
        Ok(shape)
    }

    /// The O(1) checks: lengths, the first and last offsets, `mm_ppm`.
    fn shape(&self) -> Result<RiskShape, RiskError> {
        let (Some(&ag_first), Some(&ag_last)) = (self.acct_groups.first(), self.acct_groups.last()) else {
            return Err(RiskError::EmptyOffsets { what: "acct_groups" });
        };
        let (Some(&gp_first), Some(&gp_last)) = (self.group_pos.first(), self.group_pos.last()) else {
            return Err(RiskError::EmptyOffsets { what: "group_pos" });
        };
        let shape = RiskShape {
            n_accounts: self.acct_groups.len() - 1,
            n_markets: self.lots.len(),
            n_groups: self.group_pos.len() - 1,
            n_positions: self.pos_market.len(),
        };
        // Offsets and indices are u32 on the C side: every count must fit (an offset equal to
        // the count must be representable, so the count itself must fit in u32).
        for (what, len) in [
            ("n_accounts", shape.n_accounts),
            ("n_groups", shape.n_groups),
            ("n_positions", shape.n_positions),
        ] {
            u32::try_from(len).map_err(|_| too_large(what, len))?;
        }
        let n_diffs =
            shape.n_markets.checked_mul(SCENARIOS).ok_or(too_large("n_markets", shape.n_markets))?;
        check_len("diffs", self.diffs.len(), n_diffs)?;
        check_len("market_ok", self.market_ok.len(), shape.n_markets)?;
        check_len("pos_size", self.pos_size.len(), shape.n_positions)?;
        check_len("acct_ok", self.acct_ok.len(), shape.n_accounts)?;
        if ag_first != 0 {
            return Err(RiskError::OffsetStart { what: "acct_groups", value: ag_first });
        }
        if ag_last as usize != shape.n_groups {
            return Err(RiskError::OffsetEnd {
                what: "acct_groups",
                value: ag_last,
                expected: shape.n_groups,
            });
        }
        if gp_first != 0 {
            return Err(RiskError::OffsetStart { what: "group_pos", value: gp_first });
        }
        if gp_last as usize != shape.n_positions {
            return Err(RiskError::OffsetEnd {
                what: "group_pos",
                value: gp_last,
                expected: shape.n_positions,
            });
        }
        if !(1..=PPM).contains(&self.mm_ppm) {
            return Err(RiskError::MmPpm(self.mm_ppm));
        }
        Ok(shape)
    }

    /// Checks everything accounts `accounts` read: their group offsets, their groups' position
    /// offsets and their positions' markets. Over all accounts this covers every entry (the
    /// offsets start at 0 and end at the array lengths, see [`RiskInput::shape`]).
    fn check_accounts(&self, shape: &RiskShape, accounts: Range<usize>) -> Result<(), RiskError> {
        if accounts.start > accounts.end || accounts.end > shape.n_accounts {
            return Err(RiskError::Range {
                begin: accounts.start,
                end: accounts.end,
                n_accounts: shape.n_accounts,
            });
        }
        check_offsets("acct_groups", self.acct_groups, accounts.clone(), shape.n_groups)?;
        let groups = self.acct_groups[accounts.start] as usize..self.acct_groups[accounts.end] as usize;
        check_offsets("group_pos", self.group_pos, groups.clone(), shape.n_positions)?;
        let positions = self.group_pos[groups.start] as usize..self.group_pos[groups.end] as usize;
        for (k, &market) in self.pos_market[positions.clone()].iter().enumerate() {
            if market as usize >= shape.n_markets {
                return Err(RiskError::MarketOutOfRange {
                    position: positions.start + k,
                    market,
                    n_markets: shape.n_markets,
                });
            }
        }
        Ok(())
    }
}

/// Runs the kernel's math on the CPU for every account (one thread). Validates `input` first.
pub fn host_portfolio_risk(input: &RiskInput) -> Result<RiskOutput, RiskError> {
    let n = input.validate()?.n_accounts;
    let mut out = RiskOutput { worst: vec![0; n], mm: vec![0; n], status: vec![STATUS_FALLBACK; n] };
    run_range(input, 0..n, &mut out.worst, &mut out.mm, &mut out.status)?;
    Ok(out)
}

/// Runs the kernel's math on the CPU for accounts `begin..end`, writing account `a`'s results at
/// index `a - begin` of the outputs, which must each hold exactly `end - begin` entries: split
/// the output vectors with `split_at_mut` / `chunks_mut` to run disjoint ranges on threads.
///
/// Checks the O(1) properties of `input` (lengths, first and last offsets, `mm_ppm`) and every
/// offset and market index the range reads, so a range never reads out of bounds; the union of
/// the ranges of a full split checks as much as [`RiskInput::validate`].
pub fn host_portfolio_risk_range(
    input: &RiskInput,
    begin: usize,
    end: usize,
    out_worst: &mut [i128],
    out_mm: &mut [i128],
    out_status: &mut [u8],
) -> Result<(), RiskError> {
    run_range(input, begin..end, out_worst, out_mm, out_status)
}

fn run_range(
    input: &RiskInput,
    accounts: Range<usize>,
    out_worst: &mut [i128],
    out_mm: &mut [i128],
    out_status: &mut [u8],
) -> Result<(), RiskError> {
    let shape = input.shape()?;
    input.check_accounts(&shape, accounts.clone())?;
    let count = accounts.len();
    check_len("out_worst", out_worst.len(), count)?;
    check_len("out_mm", out_mm.len(), count)?;
    check_len("out_status", out_status.len(), count)?;
    if count == 0 {
        return Ok(());
    }
    // Both fit: accounts.end <= n_accounts, which fits u32 (checked in `shape`).
    let begin = u32::try_from(accounts.start).map_err(|_| too_large("begin", accounts.start))?;
    let end = u32::try_from(accounts.end).map_err(|_| too_large("end", accounts.end))?;
    // SAFETY: `shape` and `check_accounts` established everything the C loop reads for accounts
    // begin..end: acct_ok has n_accounts entries and acct_groups n_accounts + 1, with the range's
    // offsets non-decreasing and <= n_groups; those groups' group_pos entries non-decreasing and
    // <= n_positions (= pos_market.len() = pos_size.len()); those positions' markets
    // < n_markets (= lots.len() = market_ok.len() = diffs.len() / 31). The three outputs hold
    // exactly end - begin entries each, written at a - begin; out_worst/out_mm are `i128`,
    // 16 bytes and 16-aligned like `__int128` (asserted above). The C function keeps no
    // pointer and touches no global state, so concurrent calls on disjoint outputs are sound.
    unsafe {
        bk_host_portfolio_risk(
            input.diffs.as_ptr(),
            input.lots.as_ptr(),
            input.market_ok.as_ptr(),
            input.acct_groups.as_ptr(),
            input.group_pos.as_ptr(),
            input.pos_market.as_ptr(),
            input.pos_size.as_ptr(),
            input.acct_ok.as_ptr(),
            input.mm_ppm,
            begin,
            end,
            out_worst.as_mut_ptr(),
            out_mm.as_mut_ptr(),
            out_status.as_mut_ptr(),
        );
    }
    Ok(())
}

/// The kernel's `checked_add` on `i128` (host build), for tests against `i128::checked_add`.
pub fn kernel_checked_add(a: i128, b: i128) -> Option<i128> {
    let mut out = 0i128;
    // SAFETY: three valid, aligned pointers to live `i128`s; the C function reads two, writes one.
    let ok = unsafe { bk_host_i128_checked_add(&a, &b, &mut out) };
    (ok == 1).then_some(out)
}

/// The kernel's `checked_neg` on `i128` (host build), for tests against `i128::checked_neg`.
pub fn kernel_checked_neg(a: i128) -> Option<i128> {
    let mut out = 0i128;
    // SAFETY: two valid, aligned pointers to live `i128`s; the C function reads one, writes one.
    let ok = unsafe { bk_host_i128_checked_neg(&a, &mut out) };
    (ok == 1).then_some(out)
}

/// The kernel's general signed 128 × 128 `checked_mul` (host build), for tests against
/// `i128::checked_mul`.
pub fn kernel_checked_mul(a: i128, b: i128) -> Option<i128> {
    let mut out = 0i128;
    // SAFETY: three valid, aligned pointers to live `i128`s; the C function reads two, writes one.
    let ok = unsafe { bk_host_i128_checked_mul(&a, &b, &mut out) };
    (ok == 1).then_some(out)
}

/// The kernel's `div_floor(x, 10^9)` (host build).
pub fn kernel_div_floor_nanos(x: i128) -> i128 {
    let mut out = 0i128;
    // SAFETY: two valid, aligned pointers to live `i128`s; the C function reads one, writes one.
    unsafe { bk_host_i128_div_floor_nanos(&x, &mut out) };
    out
}

/// The kernel's `div_floor(x, 10^6)` (host build).
pub fn kernel_div_floor_ppm(x: i128) -> i128 {
    let mut out = 0i128;
    // SAFETY: two valid, aligned pointers to live `i128`s; the C function reads one, writes one.
    unsafe { bk_host_i128_div_floor_ppm(&x, &mut out) };
    out
}
