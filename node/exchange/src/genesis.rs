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
    /// The bridge and devnet parameter authority.
    pub authority: AccountId,
    /// Validator stakes, by validator index.
    pub validator_stakes: Vec<u64>,
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
    }
}

impl Genesis {
    /// The devnet: USDC quote, BTC and ETH collateral, BTC and ETH perpetuals and a strip of
    /// 30-day BTC calls and puts, four equal validators, authority account 0. Genesis time is
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
            authority: AccountId(0),
            validator_stakes: vec![100, 100, 100, 100],
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

    /// The same genesis with `authority` as the bridge and parameter authority (a builder: the
    /// validator derives the authority's account id from its public key).
    pub fn with_authority(mut self, authority: AccountId) -> Genesis {
        self.authority = authority;
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
        let mut s = State {
            height: 0,
            timestamp_ms: g.timestamp_ms,
            authority: g.authority,
            validators: g.validator_stakes.iter().map(|s| Validator { stake: *s }).collect(),
            oracle: g.oracle,
            liquidation: g.liquidation,
            assets: g
                .assets
                .iter()
                .map(|spec| Asset { spec: spec.clone(), deposits: 0, withdrawals: 0, insurance: 0 })
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
                })
                .collect(),
            markets: Default::default(),
            accounts: Default::default(),
            fees: 0,
            pending: Vec::new(),
            next_order: 1,
            commitment: Default::default(),
            dirty: Vec::new(),
        };
        s.validate_update(&bastion_types::ParamUpdate::Oracle(g.oracle))?;
        s.validate_update(&bastion_types::ParamUpdate::Liquidation(g.liquidation))?;
        for spec in &g.markets {
            if s.markets.contains_key(&spec.id) {
                return Err(Reject::InvalidParams(format!("market {} listed twice", spec.id)));
            }
            validate_spec(spec, s.underlyings.len())?;
            let mut m = new_market(spec.clone());
            m.funding.last_settled_ms = g.timestamp_ms;
            s.markets.insert(spec.id, m);
        }
        s.accounts.insert(g.authority, Account::default());
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
        assert_eq!(g.authority, AccountId(0xABCD));
        assert_eq!(Genesis { authority: AccountId(0), ..g.clone() }, Genesis::devnet());
        let s = State::from_genesis(&g).unwrap();
        assert_eq!(s.authority, AccountId(0xABCD));
        assert!(s.accounts.get(&AccountId(0xABCD)).is_some());
        assert!(s.accounts.get(&AccountId(0)).is_none());
    }
}
