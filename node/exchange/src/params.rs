//! Risk parameter changes. An update is validated when it is submitted (by the genesis
//! authority, or by validators with at least 2/3 of stake) and takes effect at the next block
//! boundary, so every transaction in a block sees one set of parameters.

use crate::num::R;
use crate::state::{MARKETS_MAX, Market, State};
use bastion_book::Book;
use bastion_types::{Event, MarketKind, MarketSpec, MarketStatus, PPM, ParamUpdate, Reject, RiskParams};

/// Largest funding rate cap per interval (10%).
pub const FUNDING_CAP_MAX_PPM: i64 = 100_000;
/// Shortest and longest funding interval: one minute, one day.
pub const FUNDING_INTERVAL_MS: std::ops::RangeInclusive<u64> = 60_000..=86_400_000;
/// Shortest and longest oracle staleness: one second, one hour.
pub const STALENESS_MS: std::ops::RangeInclusive<u64> = 1_000..=3_600_000;
/// Shortest and longest age of an includable observation: 100 ms, one minute.
pub const OBSERVATION_MAX_AGE_MS: std::ops::RangeInclusive<u64> = 100..=60_000;

fn bad(msg: impl Into<String>) -> Reject {
    Reject::InvalidParams(msg.into())
}

/// Checks a market's risk parameters.
pub fn validate_risk(r: &RiskParams) -> Result<(), Reject> {
    let Some(first) = r.tiers.first() else { return Err(bad("at least one margin tier is required")) };
    if first.notional_floor != 0 {
        return Err(bad("the first margin tier must start at notional 0"));
    }
    if r.tiers.len() > 16 {
        return Err(bad("at most 16 margin tiers"));
    }
    for w in r.tiers.windows(2) {
        if let [a, b] = w {
            if b.notional_floor <= a.notional_floor {
                return Err(bad("margin tier floors must increase"));
            }
            if b.imr_ppm < a.imr_ppm || b.mmr_ppm < a.mmr_ppm {
                return Err(bad("margin tier rates must not decrease"));
            }
        }
    }
    for t in &r.tiers {
        if !(0 < t.mmr_ppm && t.mmr_ppm < t.imr_ppm && t.imr_ppm <= PPM) {
            return Err(bad(format!(
                "tier rates need 0 < maintenance < initial <= 100% (got mm {} im {} ppm)",
                t.mmr_ppm, t.imr_ppm
            )));
        }
    }
    if r.oi_imf_upper != 0 && r.oi_imf_upper <= r.oi_imf_lower {
        return Err(bad("oi_imf_upper must exceed oi_imf_lower (or be 0 to disable)"));
    }
    if !(0 < r.price_band_ppm && r.price_band_ppm < PPM) {
        return Err(bad("price_band_ppm must be in (0, 1_000_000)"));
    }
    if r.open_interest_cap <= 0 || r.max_orders_per_account == 0 {
        return Err(bad("open_interest_cap and max_orders_per_account must be positive"));
    }
    if !(0..=100_000).contains(&r.taker_fee_ppm) || !(0..=100_000).contains(&r.maker_fee_ppm) {
        return Err(bad("fees must be within 0..=10%"));
    }
    if !(0..=FUNDING_CAP_MAX_PPM).contains(&r.funding_cap_ppm) {
        return Err(bad(format!(
            "funding_cap_ppm must be within 0..={FUNDING_CAP_MAX_PPM} (10% per interval), got {}",
            r.funding_cap_ppm
        )));
    }
    if r.volatility_ppm < 0 || r.volatility_ppm > 10 * PPM {
        return Err(bad("volatility_ppm must be within 0..=1000%"));
    }
    if !(0 < r.volatility_min_ppm
        && r.volatility_min_ppm <= r.volatility_max_ppm
        && r.volatility_max_ppm <= 10 * PPM)
    {
        return Err(bad(format!(
            "volatility bounds need 0 < volatility_min_ppm <= volatility_max_ppm <= 1000% (got {}..={})",
            r.volatility_min_ppm, r.volatility_max_ppm
        )));
    }
    Ok(())
}

/// Checks a market specification.
pub fn validate_spec(spec: &MarketSpec, underlyings: usize) -> Result<(), Reject> {
    if usize::from(spec.underlying.0) >= underlyings {
        return Err(bad(format!("unknown underlying {}", spec.underlying)));
    }
    if spec.tick_size <= 0 || spec.lot_size_nanos <= 0 {
        return Err(bad("tick_size and lot_size_nanos must be positive"));
    }
    // Trade notionals must be exact integers: one tick on one lot is a whole micro-unit.
    let product = crate::num::wide_mul(spec.tick_size, spec.lot_size_nanos);
    if product.checked_rem(i128::from(bastion_types::NANOS_PER_UNIT)) != Some(0) {
        return Err(bad("tick_size * lot_size_nanos must be a multiple of 1e9 (exact trade notionals)"));
    }
    if let MarketKind::Option { strike, .. } = spec.kind
        && strike <= 0
    {
        return Err(bad("option strike must be positive"));
    }
    validate_risk(&spec.risk)
}

impl State {
    pub(crate) fn validate_update(&self, u: &ParamUpdate) -> R<()> {
        match u {
            ParamUpdate::Risk { market, risk } => {
                if !self.markets.contains_key(market) {
                    return Err(Reject::UnknownMarket(*market));
                }
                validate_risk(risk)
            }
            ParamUpdate::Status { market, status } => {
                let m = self.markets.get(market).ok_or(Reject::UnknownMarket(*market))?;
                if *status == MarketStatus::Settled || m.status == MarketStatus::Settled {
                    return Err(bad("settlement happens only at expiry"));
                }
                Ok(())
            }
            ParamUpdate::Haircut { asset, haircut_ppm } => {
                self.asset_index(*asset).ok_or(Reject::UnknownAsset(*asset))?;
                if !(0..=PPM).contains(haircut_ppm) {
                    return Err(bad("haircut_ppm must be within 0..=1_000_000"));
                }
                if asset.0 == 0 && *haircut_ppm != 0 {
                    return Err(bad("the quote asset has no haircut"));
                }
                Ok(())
            }
            ParamUpdate::List(spec) => {
                if self.markets.contains_key(&spec.id) {
                    return Err(bad(format!("market {} already listed", spec.id)));
                }
                if let MarketKind::Option { expiry_ms, .. } = spec.kind
                    && expiry_ms <= self.timestamp_ms
                {
                    return Err(bad(format!(
                        "option expiry {expiry_ms} ms is not after the chain's time {} ms",
                        self.timestamp_ms
                    )));
                }
                if self.markets.len() >= MARKETS_MAX {
                    return Err(bad("market limit reached"));
                }
                validate_spec(spec, self.underlyings.len())
            }
            ParamUpdate::Oracle(o) => {
                let guard = |v: i64| 0 < v && v <= PPM;
                if !guard(o.max_move_ppm)
                    || !guard(o.halt_divergence_ppm)
                    || !(0..=PPM).contains(&o.basis_ema_ppm)
                {
                    return Err(bad(
                        "oracle guards must be within (0, 1_000_000] and the EMA weight within 0..=1_000_000",
                    ));
                }
                if !STALENESS_MS.contains(&o.staleness_ms) {
                    return Err(bad(format!(
                        "staleness_ms must be within {}..={}, got {}",
                        STALENESS_MS.start(),
                        STALENESS_MS.end(),
                        o.staleness_ms
                    )));
                }
                if o.staleness_halt_ms < o.staleness_ms || o.staleness_halt_ms > *STALENESS_MS.end() {
                    return Err(bad(format!(
                        "staleness_halt_ms must be within staleness_ms ({})..={}, got {}",
                        o.staleness_ms,
                        STALENESS_MS.end(),
                        o.staleness_halt_ms
                    )));
                }
                if !OBSERVATION_MAX_AGE_MS.contains(&o.observation_max_age_ms)
                    || o.observation_max_age_ms > o.staleness_ms
                {
                    return Err(bad(format!(
                        "observation_max_age_ms must be within {}..={} and at most staleness_ms, got {}",
                        OBSERVATION_MAX_AGE_MS.start(),
                        OBSERVATION_MAX_AGE_MS.end(),
                        o.observation_max_age_ms
                    )));
                }
                if !(1..=PPM).contains(&o.stable_move_ppm_per_s) {
                    return Err(bad(format!(
                        "stable_move_ppm_per_s must be within 1..=1_000_000, got {}",
                        o.stable_move_ppm_per_s
                    )));
                }
                Ok(())
            }
            ParamUpdate::Liquidation(l) => {
                if !(0 < l.max_fraction_ppm && l.max_fraction_ppm <= PPM)
                    || l.min_notional < 0
                    || l.max_notional_per_block <= 0
                    || !(0..=PPM).contains(&l.spread_to_maintenance_ppm)
                    || !(0..=PPM).contains(&l.max_insurance_fee_ppm)
                    || !(0 < l.portfolio_mm_ppm && l.portfolio_mm_ppm <= PPM)
                {
                    return Err(bad("liquidation parameters out of range"));
                }
                if !FUNDING_INTERVAL_MS.contains(&l.funding_interval_ms) {
                    return Err(bad(format!(
                        "funding_interval_ms must be within {}..={}, got {}",
                        FUNDING_INTERVAL_MS.start(),
                        FUNDING_INTERVAL_MS.end(),
                        l.funding_interval_ms
                    )));
                }
                Ok(())
            }
        }
    }

    /// Applies the updates queued by the previous block.
    pub(crate) fn apply_pending(&mut self, events: &mut Vec<Event>) {
        let pending = std::mem::take(&mut self.pending);
        for u in pending {
            // Re-validate: an earlier update in the same batch may have changed the context.
            if let Err(reason) = self.validate_update(&u) {
                events.push(Event::ProposalRejected { index: u32::MAX, reason });
                continue;
            }
            match &u {
                ParamUpdate::Risk { market, risk } => {
                    if let Some(m) = self.markets.get_mut(market) {
                        m.spec.risk = risk.clone();
                        // Derived tier caches are rebuilt with the next mark; until then
                        // requirements are computed from the parameters.
                        m.mm_tiers.clear();
                        m.im_tiers.clear();
                        let limits = m.book_limits();
                        m.book.set_limits(limits);
                    }
                    self.touch_market(*market);
                }
                ParamUpdate::Status { market, status } => {
                    if let Some(m) = self.markets.get_mut(market) {
                        m.status = *status;
                        events.push(Event::Status { market: *market, status: m.effective_status() });
                    }
                    self.touch_market(*market);
                }
                ParamUpdate::Haircut { asset, haircut_ppm } => {
                    if let Some(a) = self.assets.get_mut(usize::from(asset.0)) {
                        a.spec.haircut_ppm = *haircut_ppm;
                    }
                    self.touch(crate::root::RecordKey::Asset(asset.0));
                }
                ParamUpdate::List(spec) => {
                    let id = spec.id;
                    let mut m = new_market(spec.clone());
                    m.funding.last_settled_ms = self.timestamp_ms;
                    self.markets.insert(id, m);
                    self.touch_market(id);
                }
                ParamUpdate::Oracle(o) => {
                    self.oracle = *o;
                    self.touch(crate::root::RecordKey::Global);
                }
                ParamUpdate::Liquidation(l) => {
                    self.liquidation = *l;
                    self.touch(crate::root::RecordKey::Global);
                }
            }
            events.push(Event::ParamsApplied { update: u });
        }
    }
}

/// A freshly listed market.
pub(crate) fn new_market(spec: MarketSpec) -> Market {
    let volatility_ppm =
        if matches!(spec.kind, MarketKind::Option { .. }) { spec.risk.volatility_ppm } else { 0 };
    let mut m = Market {
        spec,
        status: MarketStatus::Active,
        breaker: MarketStatus::ReduceOnly,
        book: Book::new(bastion_book::BookLimits { max_orders: 1, max_orders_per_account: 1 }),
        mark: 0,
        basis_ema: 0,
        last_trade: None,
        open_interest: 0,
        funding: Default::default(),
        holders: Default::default(),
        lot_value_floor: 0,
        lot_value_ceil: 0,
        index_cache: 0,
        volatility_ppm,
        stable_lot_floor: 0,
        stable_lot_ceil: 0,
        mm_tiers: Vec::new(),
        im_tiers: Vec::new(),
        memo: Default::default(),
    };
    let limits = m.book_limits();
    m.book.set_limits(limits);
    m
}
