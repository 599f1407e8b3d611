//! Genesis: the initial state, and the embedded devnet genesis.

use crate::num::R;
use crate::params::{new_market, validate_spec};
use crate::state::{ASSETS_MAX, Account, Asset, State, UNDERLYINGS_MAX, Underlying, Validator};
use bastion_types::{
    AccountId, AssetId, CollateralSpec, LiquidationParams, MarginTier, MarketId, MarketKind, MarketSpec,
    OptionKind, OracleParams, Reject, RiskParams, UnderlyingId,
};
use serde::{Deserialize, Serialize};

/// Everything needed to build the initial state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    /// Consensus time of genesis.
    pub timestamp_ms: u64,
    /// The chain id governance approvals are signed for (the genesis file's `chain_id`; at
    /// most 64 bytes).
    #[serde(default)]
    pub chain_id: String,
    /// A test network: the authority may change any parameter with `Action::UpdateParams`. On
    /// any other chain parameters change only by validators' signed governance proposals.
    #[serde(default)]
    pub devnet: bool,
    /// The devnet's authority: the one key that may credit deposits (`Action::Deposit`) and
    /// change parameters (`Action::UpdateParams`). Allowed only with `devnet`: a genesis that
    /// is not a devnet's and names one is refused, since on a real chain no single key may mint
    /// collateral or bend the rules (deposits are credited by 2/3 of stake's attestations,
    /// parameters changed by 2/3 of stake's governance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<AccountId>,
    /// The insurance fund at genesis, quote micro-units (counted as a deposit of the quote
    /// asset). Bridge deposits to `INSURANCE_FUND_ACCOUNT` top it up later.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub insurance_fund: bastion_types::Micros,
    /// Validator stakes, by validator index.
    pub validator_stakes: Vec<u64>,
    /// Validators' ed25519 identity keys (hex), by validator index: they sign governance
    /// approvals. Empty: no approval can count (no parameter change by governance).
    #[serde(default)]
    pub validator_keys: Vec<String>,
    /// Collateral assets; the first is the quote asset.
    pub assets: Vec<CollateralSpec>,
    /// Underlying names, by id.
    pub underlyings: Vec<String>,
    /// Markets listed at genesis.
    pub markets: Vec<MarketSpec>,
    /// Oracle guards.
    pub oracle: OracleParams,
    /// Liquidation and funding parameters.
    pub liquidation: LiquidationParams,
}

const USD: i128 = 1_000_000;

fn is_zero(v: &bastion_types::Micros) -> bool {
    *v == 0
}

/// Secret seeds of the devnet genesis's four validator identity keys ([`Genesis::devnet`]).
/// Public, so only for tests and local devnets: they let the test workloads sign oracle
/// observations and governance approvals. A real network's genesis lists its validators'
/// own keys (the validator binary replaces these with the operators' identities).
pub const DEVNET_VALIDATOR_SEEDS: [[u8; 32]; 4] = [[21; 32], [22; 32], [23; 32], [24; 32]];

/// The devnet's insurance fund at genesis: 250,000 USDC.
pub const DEVNET_INSURANCE_FUND: bastion_types::Micros = 2_000_000 * USD;

/// Longest chain id (bytes), as the genesis file allows.
pub const CHAIN_ID_MAX: usize = 64;

/// The genesis's validator keys, decoded: none, or one 32-byte key per stake.
fn validator_keys(g: &Genesis) -> R<Vec<[u8; 32]>> {
    if g.validator_keys.is_empty() {
        return Ok(Vec::new());
    }
    if g.validator_keys.len() != g.validator_stakes.len() {
        return Err(Reject::InvalidParams(format!(
            "validator_keys lists {} keys for {} stakes: one key per validator, or none",
            g.validator_keys.len(),
            g.validator_stakes.len()
        )));
    }
    let mut out: Vec<[u8; 32]> = Vec::with_capacity(g.validator_keys.len());
    for (i, h) in g.validator_keys.iter().enumerate() {
        let key = decode_key(h)
            .ok_or_else(|| Reject::InvalidParams(format!("validator_keys[{i}] is not 64 hex digits")))?;
        if out.contains(&key) {
            return Err(Reject::InvalidParams(format!("validator_keys[{i}] repeats an earlier key")));
        }
        out.push(key);
    }
    Ok(out)
}

/// 64 hex digits as 32 bytes.
fn decode_key(h: &str) -> Option<[u8; 32]> {
    let b = h.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).and_then(|d| u8::try_from(d).ok());
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        let [hi, lo] = *<&[u8; 2]>::try_from(pair).ok()?;
        *o = (nibble(hi)? << 4) | nibble(lo)?;
    }
    Some(out)
}

fn perp_risk(imr: i64, mmr: i64, oi_cap: i64) -> RiskParams {
    RiskParams {
        tiers: vec![
            MarginTier { notional_floor: 0, imr_ppm: imr, mmr_ppm: mmr },
            // Only called below with small literal rates, so doubling never saturates.
            MarginTier {
                notional_floor: 5_000_000 * USD,
                imr_ppm: imr.saturating_mul(2),
                mmr_ppm: mmr.saturating_mul(2),
            },
        ],
        oi_imf_lower: 200_000_000 * USD,
        oi_imf_upper: 500_000_000 * USD,
        price_band_ppm: 50_000,
        open_interest_cap: oi_cap,
        max_orders_per_account: 64,
        taker_fee_ppm: 350,
        maker_fee_ppm: 100,
        impact_notional: 10_000 * USD,
        funding_cap_ppm: 40_000,
        volatility_ppm: 0,
        volatility_min_ppm: bastion_types::default_volatility_min_ppm(),
        volatility_max_ppm: bastion_types::default_volatility_max_ppm(),
    }
}

impl Genesis {
    /// Every (underlying, expiry) of the genesis option markets, ascending, each once: the
    /// expiries validators attest volatility for.
    pub fn option_expiries(&self) -> Vec<(bastion_types::UnderlyingId, u64)> {
        let mut e: Vec<(bastion_types::UnderlyingId, u64)> = self
            .markets
            .iter()
            .filter_map(|m| match m.kind {
                bastion_types::MarketKind::Option { expiry_ms, .. } => Some((m.underlying, expiry_ms)),
                bastion_types::MarketKind::Perpetual => None,
            })
            .collect();
        e.sort_unstable();
        e.dedup();
        e
    }

    /// The devnet: USDC quote, BTC and ETH collateral, BTC and ETH perpetuals and a strip of
    /// 30-day BTC calls and puts, four equal validators whose identity keys have the public
    /// seeds [`DEVNET_VALIDATOR_SEEDS`], authority account 0. Genesis time is
    /// 2026-01-01T00:00:00Z; see [`Genesis::devnet_at`] for another start time.
    pub fn devnet() -> Genesis {
        // 2026-01-01T00:00:00Z, only a label: time comes from blocks.
        const T0: u64 = 1_767_225_600_000;
        Genesis::devnet_at(T0)
    }

    /// The devnet genesis (see [`Genesis::devnet`]) with consensus time `t0_ms` at genesis;
    /// the options expire 30 days later (saturating at `u64::MAX`).
    pub fn devnet_at(t0_ms: u64) -> Genesis {
        // 30 days in ms: a literal product, evaluated (and overflow-checked) at compile time.
        const THIRTY_DAYS_MS: u64 = 30 * 24 * 3_600_000;
        let expiry_ms = t0_ms.saturating_add(THIRTY_DAYS_MS);
        let mut markets = vec![
            MarketSpec {
                id: MarketId(0),
                name: "BTC-PERP".into(),
                underlying: UnderlyingId(0),
                kind: MarketKind::Perpetual,
                tick_size: 100_000,        // $0.10
                lot_size_nanos: 1_000_000, // 0.001 BTC
                risk: perp_risk(25_000, 12_500, 100_000_000),
            },
            MarketSpec {
                id: MarketId(1),
                name: "ETH-PERP".into(),
                underlying: UnderlyingId(1),
                kind: MarketKind::Perpetual,
                tick_size: 10_000,           // $0.01
                lot_size_nanos: 100_000_000, // 0.1 ETH
                risk: perp_risk(50_000, 25_000, 100_000_000),
            },
        ];
        let mut next = 2u32;
        for strike_usd in [90_000i64, 100_000, 110_000] {
            for kind in [OptionKind::Call, OptionKind::Put] {
                let mut risk = perp_risk(100_000, 50_000, 10_000_000);
                risk.volatility_ppm = 600_000;
                // Attested volatility is clamped to 10%..=300% a year for these options.
                risk.volatility_min_ppm = 100_000;
                risk.volatility_max_ppm = 3_000_000;
                risk.price_band_ppm = 500_000;
                markets.push(MarketSpec {
                    id: MarketId(next),
                    name: format!("BTC-{strike_usd}-{}", if kind == OptionKind::Call { "C" } else { "P" }),
                    underlying: UnderlyingId(0),
                    // A literal strike in whole dollars: the conversion never saturates.
                    kind: MarketKind::Option {
                        kind,
                        strike: strike_usd.saturating_mul(1_000_000),
                        expiry_ms,
                    },
                    tick_size: 1_000_000,       // $1
                    lot_size_nanos: 10_000_000, // 0.01 BTC
                    risk,
                });
                // Six option markets after the two perpetuals: never near u32::MAX.
                next = next.saturating_add(1);
            }
        }
        Genesis {
            timestamp_ms: t0_ms,
            chain_id: "bastion-devnet".into(),
            devnet: true,
            authority: Some(AccountId(0)),
            insurance_fund: DEVNET_INSURANCE_FUND,
            validator_stakes: vec![100, 100, 100, 100],
            validator_keys: DEVNET_VALIDATOR_SEEDS.iter().map(|s| crate::public_key_hex(*s)).collect(),
            assets: vec![
                CollateralSpec { asset: AssetId(0), name: "USDC".into(), haircut_ppm: 0, price_source: None },
                CollateralSpec {
                    asset: AssetId(1),
                    name: "BTC".into(),
                    haircut_ppm: 100_000,
                    price_source: Some(UnderlyingId(0)),
                },
                CollateralSpec {
                    asset: AssetId(2),
                    name: "ETH".into(),
                    haircut_ppm: 150_000,
                    price_source: Some(UnderlyingId(1)),
                },
            ],
            underlyings: vec!["BTC".into(), "ETH".into()],
            markets,
            oracle: OracleParams {
                staleness_ms: 10_000,
                staleness_halt_ms: bastion_types::default_staleness_halt_ms(),
                observation_max_age_ms: bastion_types::default_observation_max_age_ms(),
                stable_move_ppm_per_s: bastion_types::default_stable_move_ppm_per_s(),
                max_move_ppm: 50_000,
                halt_divergence_ppm: 250_000,
                basis_ema_ppm: 50_000,
            },
            liquidation: LiquidationParams {
                max_fraction_ppm: 100_000,
                min_notional: 1_000 * USD,
                max_notional_per_block: 5_000_000 * USD,
                spread_to_maintenance_ppm: 100_000,
                max_insurance_fee_ppm: 15_000,
                funding_interval_ms: 3_600_000,
                portfolio_mm_ppm: 800_000,
            },
        }
    }

    /// The same genesis with validators whose identity keys have the secret seeds `seeds`
    /// (one stake each, in order): tests that sign governance approvals
    /// ([`crate::sign_approval`]).
    pub fn with_validator_seeds(mut self, seeds: &[[u8; 32]]) -> Genesis {
        self.validator_stakes = vec![100; seeds.len()];
        self.validator_keys = seeds.iter().map(|s| crate::public_key_hex(*s)).collect();
        self
    }

    /// The same genesis with `authority` as the bridge and parameter authority (a builder: the
    /// validator derives the authority's account id from its public key).
    pub fn with_authority(mut self, authority: AccountId) -> Genesis {
        self.authority = Some(authority);
        self
    }
}

impl State {
    /// Builds the initial state; every parameter is validated.
    pub fn from_genesis(g: &Genesis) -> R<State> {
        if g.assets.is_empty() || g.assets.len() > ASSETS_MAX {
            return Err(Reject::InvalidParams(format!("1..={ASSETS_MAX} collateral assets required")));
        }
        for (i, a) in g.assets.iter().enumerate() {
            if usize::from(a.asset.0) != i {
                return Err(Reject::InvalidParams(format!("asset #{i} must have id {i}")));
            }
            if i == 0 && a.price_source.is_some() {
                return Err(Reject::InvalidParams("asset 0 is the quote asset: no price source".into()));
            }
            if i > 0 && a.price_source.is_none_or(|u| usize::from(u.0) >= g.underlyings.len()) {
                return Err(Reject::InvalidParams(format!(
                    "asset {i} needs an existing underlying as price source"
                )));
            }
        }
        if g.underlyings.len() > UNDERLYINGS_MAX {
            return Err(Reject::InvalidParams(format!("at most {UNDERLYINGS_MAX} underlyings")));
        }
        if g.validator_stakes.is_empty() || g.validator_stakes.iter().all(|s| *s == 0) {
            return Err(Reject::InvalidParams("at least one validator with stake".into()));
        }
        if g.validator_stakes.len() > usize::from(u16::MAX) {
            return Err(Reject::InvalidParams("at most 65535 validators".into()));
        }
        if g.chain_id.len() > CHAIN_ID_MAX {
            return Err(Reject::InvalidParams(format!("chain_id is longer than {CHAIN_ID_MAX} bytes")));
        }
        if !g.devnet && g.authority.is_some() {
            return Err(Reject::InvalidParams(
                "authority is set but devnet is false: on a chain that is not a devnet no single key may mint \
                 collateral or change parameters (deposits are credited by 2/3 of stake's attestations, \
                 parameters changed by 2/3 of stake's governance); remove `authority`, or set `devnet` to \
                 true for a test network"
                    .into(),
            ));
        }
        if g.insurance_fund < 0 {
            return Err(Reject::InvalidParams(format!("insurance_fund {} is negative", g.insurance_fund)));
        }
        let keys = validator_keys(g)?;
        let mut s = State {
            height: 0,
            timestamp_ms: g.timestamp_ms,
            authority: g.authority,
            chain_id: g.chain_id.clone(),
            devnet: g.devnet,
            governance_nonce: 0,
            validators: g
                .validator_stakes
                .iter()
                .enumerate()
                .map(|(i, s)| Validator { stake: *s, key: keys.get(i).copied() })
                .collect(),
            observations: vec![None; g.validator_stakes.len()],
            oracle: g.oracle,
            liquidation: g.liquidation,
            assets: g
                .assets
                .iter()
                .enumerate()
                .map(|(i, spec)| {
                    // The genesis fund is the quote asset's (asset 0): a deposit into the fund.
                    let seed = if i == 0 { g.insurance_fund } else { 0 };
                    Asset { spec: spec.clone(), deposits: seed, withdrawals: 0, insurance: seed }
                })
                .collect(),
            underlyings: g
                .underlyings
                .iter()
                .enumerate()
                .map(|(i, n)| Underlying {
                    id: UnderlyingId(u16::try_from(i).unwrap_or(u16::MAX)),
                    name: n.clone(),
                    index: 0,
                    updated_ms: 0,
                    diverged: false,
                    stable: 0,
                    stable_ms: 0,
                    vols: Vec::new(),
                })
                .collect(),
            markets: Default::default(),
            accounts: Default::default(),
            fees: 0,
            pending: Vec::new(),
            next_order: 1,
            bridge: Default::default(),
            commitment: Default::default(),
            dirty: Vec::new(),
            screen: None,
        };
        s.validate_update(&bastion_types::ParamUpdate::Oracle(g.oracle))?;
        s.validate_update(&bastion_types::ParamUpdate::Liquidation(g.liquidation))?;
        for spec in &g.markets {
            if s.markets.contains_key(&spec.id) {
                return Err(Reject::InvalidParams(format!("market {} listed twice", spec.id)));
            }
            validate_spec(spec, s.underlyings.len())?;
            if let bastion_types::MarketKind::Option { expiry_ms, .. } = spec.kind
                && expiry_ms <= g.timestamp_ms
            {
                return Err(Reject::InvalidParams(format!(
                    "market {}: option expiry {expiry_ms} ms is not after genesis time {} ms",
                    spec.id, g.timestamp_ms
                )));
            }
            let mut m = new_market(spec.clone());
            m.funding.last_settled_ms = g.timestamp_ms;
            s.markets.insert(spec.id, m);
        }
        if let Some(authority) = g.authority {
            s.accounts.insert(authority, Account::default());
        }
        for key in crate::encode::all_keys(&s) {
            s.dirty.push(key);
        }
        s.commit();
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn devnet_is_devnet_at_its_t0() {
        let g = Genesis::devnet();
        assert_eq!(g, Genesis::devnet_at(1_767_225_600_000));
        assert_eq!(g.timestamp_ms, 1_767_225_600_000);
    }

    #[test]
    fn devnet_at_moves_genesis_time_and_option_expiry() {
        let t0 = 1_800_000_000_123;
        let g = Genesis::devnet_at(t0);
        assert_eq!(g.timestamp_ms, t0);
        let expiries: Vec<u64> = g
            .markets
            .iter()
            .filter_map(|m| match m.kind {
                MarketKind::Option { expiry_ms, .. } => Some(expiry_ms),
                _ => None,
            })
            .collect();
        assert_eq!(expiries, vec![t0 + 30 * 24 * 3_600_000; 6]);
        let s = State::from_genesis(&g).unwrap();
        assert_eq!(s.timestamp_ms, t0);
        assert_ne!(s.state_root(), State::from_genesis(&Genesis::devnet()).unwrap().state_root());
        // Saturates instead of overflowing.
        let late = Genesis::devnet_at(u64::MAX - 5);
        assert!(
            late.markets.iter().any(|m| matches!(m.kind, MarketKind::Option { expiry_ms: u64::MAX, .. }))
        );
    }

    #[test]
    fn with_authority_replaces_the_authority_only() {
        let g = Genesis::devnet().with_authority(AccountId(0xABCD));
        assert_eq!(g.authority, Some(AccountId(0xABCD)));
        assert_eq!(Genesis { authority: Some(AccountId(0)), ..g.clone() }, Genesis::devnet());
        let s = State::from_genesis(&g).unwrap();
        assert_eq!(s.authority, Some(AccountId(0xABCD)));
        assert!(s.accounts.get(&AccountId(0xABCD)).is_some());
        assert!(s.accounts.get(&AccountId(0)).is_none());
    }
}
