//! Invariants that hold after every block. Tests and simulations call
//! [`State::check_invariants`]; a violation is a bug in the engine, never bad input.

use crate::num::{add, add64, sub, sub64};
use crate::state::State;
use bastion_types::{MarketId, Side};
use std::collections::BTreeMap;

impl State {
    /// Checks, returning the first violation found:
    /// - collateral is conserved per asset: balances (cross and isolated) + insurance + fees =
    ///   deposits - withdrawals, and the insurance fund's value never goes negative;
    /// - long open interest equals short open interest, and equals the market's counter;
    /// - each market's holder set is exactly the accounts with a non-zero position or funding
    ///   time accrued since the last settlement, and that time sums to zero over the holders;
    /// - each account's resting exposure equals its orders in the book;
    /// - no account (or isolated position) ends the block with negative collateral while it
    ///   has no position left to liquidate, and none in a tradable market stays negative;
    /// - the incremental state root equals a full recomputation.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (i, asset) in self.assets.iter().enumerate() {
            let overflow = || format!("asset {i}: collateral sum overflows");
            let mut sum: i128 = 0;
            for a in self.accounts.values() {
                sum = add(sum, a.balances.get(i).copied().unwrap_or(0)).map_err(|_| overflow())?;
                if i == 0 {
                    for p in &a.positions {
                        sum = add(sum, p.isolated_balance).map_err(|_| overflow())?;
                    }
                }
            }
            sum = add(sum, asset.insurance).map_err(|_| overflow())?;
            if i == 0 {
                sum = add(sum, self.fees).map_err(|_| overflow())?;
            }
            let expected = sub(asset.deposits, asset.withdrawals).map_err(|_| overflow())?;
            if sum != expected {
                return Err(format!(
                    "asset {i} not conserved: balances+insurance+fees = {sum}, deposits-withdrawals = {expected} (diff {})",
                    sub(sum, expected).map_or_else(|_| "overflow".to_string(), |d| d.to_string())
                ));
            }
        }
        // The fund holds quote and, after taking over bankrupt accounts, other collateral; its
        // value at the index after haircuts must never be negative. (Its quote holding alone
        // may be: taking over an account's collateral also takes over the quote it borrowed.)
        let mut holdings = crate::state::Account::default();
        for (slot, asset) in holdings.balances.iter_mut().zip(self.assets.iter()) {
            *slot = asset.insurance;
        }
        let fund_value = self.balances_value(&holdings).map_err(|e| format!("insurance fund value: {e}"))?;
        if fund_value < 0 {
            return Err(format!("insurance fund value is negative ({fund_value})"));
        }
        for (id, m) in &self.markets {
            let overflow = || format!("market {id}: open interest overflows");
            let mut long = 0i64;
            let mut short = 0i64;
            let mut holders = Vec::new();
            let perpetual = matches!(m.spec.kind, bastion_types::MarketKind::Perpetual);
            let mut held: i128 = 0;
            for (aid, a) in &self.accounts {
                if let Some(p) = a.position(*id) {
                    if p.size > 0 {
                        long = add64(long, p.size).map_err(|_| overflow())?;
                    } else {
                        short = sub64(short, p.size).map_err(|_| overflow())?;
                    }
                    if p.holds() {
                        holders.push(*aid);
                    }
                    if p.funding_since_ms > self.timestamp_ms || (!perpetual && p.funding_lot_ms != 0) {
                        return Err(format!(
                            "account {aid} market {id}: funding accrual {} since {} at time {}",
                            p.funding_lot_ms, p.funding_since_ms, self.timestamp_ms
                        ));
                    }
                    if perpetual {
                        let h = crate::funding::held_lot_ms(p, m.funding.last_settled_ms, self.timestamp_ms)
                            .map_err(|_| format!("market {id}: funding time overflows"))?;
                        held = add(held, h).map_err(|_| format!("market {id}: funding time overflows"))?;
                    }
                }
            }
            // Every trade moves size from one account to another, so the sizes sum to zero at
            // every instant and so does the time they were held: the exact funding of an
            // interval is zero-sum, and each holder's rounding up leaves only dust for the fund.
            if held != 0 {
                return Err(format!(
                    "market {id}: lots x ms held since the last funding sum to {held}, not 0"
                ));
            }
            if long != short || long != m.open_interest {
                return Err(format!(
                    "market {id}: long OI {long}, short OI {short}, counter {}",
                    m.open_interest
                ));
            }
            if !holders.iter().eq(m.holders.iter()) {
                return Err(format!("market {id}: holder set out of date"));
            }
        }
        let mut exposure: BTreeMap<(bastion_types::AccountId, MarketId), (i64, i64)> = BTreeMap::new();
        for (id, m) in &self.markets {
            for o in m.book.orders() {
                let e = exposure.entry((o.account, *id)).or_default();
                let side = match o.side {
                    Side::Buy => &mut e.0,
                    Side::Sell => &mut e.1,
                };
                *side =
                    add64(*side, o.qty).map_err(|_| format!("market {id}: resting exposure overflows"))?;
            }
        }
        for (aid, a) in &self.accounts {
            for p in &a.positions {
                let e = exposure.remove(&(*aid, p.market)).unwrap_or_default();
                if (p.open_buy, p.open_sell) != e {
                    return Err(format!(
                        "account {aid} market {}: recorded exposure {:?}, book has {e:?}",
                        p.market,
                        (p.open_buy, p.open_sell)
                    ));
                }
            }
        }
        if let Some(((aid, mid), e)) = exposure.into_iter().next() {
            return Err(format!("account {aid} has orders {e:?} in {mid} but no position record"));
        }
        for (aid, a) in &self.accounts {
            if let Ok(h) = self.cross_health(a, None) {
                let open = a.positions.iter().any(|p| !p.isolated && p.size != 0);
                if h.collateral < 0 && !open {
                    return Err(format!(
                        "account {aid}: negative collateral {} with no position",
                        h.collateral
                    ));
                }
                if h.collateral < 0 && open && self.all_tradable(a) {
                    return Err(format!(
                        "account {aid}: negative collateral {} survived the block",
                        h.collateral
                    ));
                }
            }
            for p in a.positions.iter().filter(|p| p.isolated) {
                if let Ok(h) = self.isolated_health(p, None)
                    && h.collateral < 0
                    && self
                        .markets
                        .get(&p.market)
                        .is_some_and(|m| m.effective_status() != bastion_types::MarketStatus::Halted)
                {
                    return Err(format!(
                        "account {aid} isolated {}: negative collateral {}",
                        p.market, h.collateral
                    ));
                }
            }
        }
        self.sweep_agrees_with_full_health()?;
        let incremental = self.state_root();
        let full = self.recompute_root();
        if incremental != full {
            let current: Vec<_> = crate::encode::all_keys(self)
                .into_iter()
                .filter_map(|k| crate::encode::record(self, k).map(|v| (k, v)))
                .collect();
            let keys = self
                .commitment
                .mismatches(&current, |id| self.accounts.slot_of(&bastion_types::AccountId(id)));
            return Err(format!(
                "incremental state root differs from a full recomputation; records: {keys:?}"
            ));
        }
        Ok(())
    }

    fn all_tradable(&self, a: &crate::state::Account) -> bool {
        a.positions.iter().filter(|p| p.size != 0).all(|p| {
            self.markets.get(&p.market).is_some_and(|m| {
                !matches!(
                    m.effective_status(),
                    bastion_types::MarketStatus::Halted | bastion_types::MarketStatus::Settled
                )
            })
        })
    }
}
