//! Canonical byte encodings of state records for the commitment. Fixed field order, little
//! endian, no padding; changing an encoding changes every state root, so it is versioned by
//! the leading byte of each record.

use crate::root::RecordKey;
use crate::state::{Account, Market, State};
use bastion_book::RestingOrder;

const VERSION: u8 = 1;

struct Enc(Vec<u8>);

impl Enc {
    /// Room for a typical record up front: growing from one byte reallocates five times, and
    /// reallocation is what threads recomputing the root in parallel contend on.
    fn new() -> Self {
        let mut out = Vec::with_capacity(256);
        out.push(VERSION);
        Enc(out)
    }
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.0.extend_from_slice(v);
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn i64(&mut self, v: i64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn i128(&mut self, v: i128) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn json<T: serde::Serialize>(&mut self, v: &T) -> &mut Self {
        // serde_json writes struct fields in declaration order: deterministic for our types
        // (no maps inside). Used for rarely changing parameter records only.
        let bytes = serde_json::to_vec(v).unwrap_or_default();
        self.u64(bytes.len() as u64);
        self.0.extend_from_slice(&bytes);
        self
    }
}

/// The record of an account (its key is `RecordKey::Account(id)`).
pub(crate) fn account(a: &Account) -> Vec<u8> {
    let mut e = Enc::new();
    e.u64(a.nonce).u8(u8::from(a.portfolio));
    for b in &a.balances {
        e.i128(*b);
    }
    // At most POSITIONS_PER_ACCOUNT_MAX positions: the conversion never fails.
    e.u32(u32::try_from(a.positions.len()).unwrap_or(u32::MAX));
    for p in &a.positions {
        e.u32(p.market.0)
            .i64(p.size)
            .i128(p.cost)
            .i128(p.funding_snapshot)
            .i128(p.funding_lot_ms)
            .u64(p.funding_since_ms)
            .i64(p.open_buy)
            .i64(p.open_sell)
            .u8(u8::from(p.isolated))
            .i128(p.isolated_balance);
    }
    e.0
}

fn market(m: &Market) -> Vec<u8> {
    let mut e = Enc::new();
    e.json(&m.spec)
        .json(&m.status)
        .json(&m.breaker)
        .i64(m.mark)
        .i64(m.basis_ema)
        .i64(m.last_trade.unwrap_or(0))
        .i64(m.open_interest)
        .i128(m.funding.index)
        .i128(m.funding.premium_sum)
        .u64(m.funding.samples)
        .u64(m.funding.last_settled_ms)
        .i64(m.volatility_ppm);
    e.0
}

fn order(o: &RestingOrder) -> Vec<u8> {
    let mut e = Enc::new();
    e.u64(o.id.0)
        .u64(o.account.0)
        .u8(u8::from(o.side == bastion_types::Side::Buy))
        .i64(o.price)
        .i64(o.qty)
        .i64(o.original_qty)
        .u64(o.good_til_height.unwrap_or(0))
        .json(&o.stp)
        .u64(o.seq);
    e.0
}

fn global(s: &State) -> Vec<u8> {
    let mut e = Enc::new();
    e.u64(s.height)
        .u64(s.timestamp_ms)
        .u8(u8::from(s.authority.is_some()))
        .u64(s.authority.map_or(0, |a| a.0))
        .json(&s.oracle)
        .json(&s.liquidation)
        .i128(s.fees)
        .u64(s.next_order)
        .json(&s.pending)
        // Validators are addressed by u16 indices, so the set is far below u32::MAX.
        .u32(u32::try_from(s.validators.len()).unwrap_or(u32::MAX));
    for v in &s.validators {
        e.u64(v.stake);
        match &v.key {
            Some(k) => k.iter().fold(e.u8(1), |e, b| e.u8(*b)),
            None => e.u8(0),
        };
    }
    e.json(&s.chain_id).u8(u8::from(s.devnet)).u64(s.governance_nonce).u64(s.bridge.last_voucher);
    e.0
}

/// The current encoding of `key`, or `None` when the record does not exist.
pub(crate) fn record(s: &State, key: RecordKey) -> Option<Vec<u8>> {
    match key {
        RecordKey::Global => Some(global(s)),
        RecordKey::Asset(a) => s.assets.get(usize::from(a)).map(|a| {
            let mut e = Enc::new();
            e.json(&a.spec).i128(a.deposits).i128(a.withdrawals).i128(a.insurance);
            e.0
        }),
        RecordKey::Underlying(u) => s.underlyings.get(usize::from(u)).map(|u| {
            let mut e = Enc::new();
            e.json(&u.name)
                .i64(u.index)
                .u64(u.updated_ms)
                .u8(u8::from(u.diverged))
                .i64(u.stable)
                .u64(u.stable_ms);
            // At most one entry per option market (MARKETS_MAX).
            e.u32(u32::try_from(u.vols.len()).unwrap_or(u32::MAX));
            for v in &u.vols {
                e.u64(v.expiry_ms).i64(v.atm_ppm).i64(v.skew_ppm).u64(v.updated_ms);
            }
            e.0
        }),
        RecordKey::Market(m) => s.markets.get(&bastion_types::MarketId(m)).map(market),
        RecordKey::Account(a) => s.accounts.get(&bastion_types::AccountId(a)).map(account),
        RecordKey::Order(m, o) => s
            .markets
            .get(&bastion_types::MarketId(m))
            .and_then(|m| m.book.get(bastion_types::OrderId(o)))
            .map(order),
        RecordKey::Observation(v) => {
            s.observations.get(usize::from(v)).and_then(Option::as_ref).map(observation)
        }
        RecordKey::Credited(id) => s.bridge.credited.get(&bastion_types::SourceId(id)).map(|c| {
            let d = &c.deposit;
            let mut e = Enc::new();
            e.bytes(&d.source_id.0).u64(d.to.0).u32(u32::from(d.asset.0)).i128(d.amount).u64(c.height);
            e.0
        }),
        RecordKey::Voucher(id) => s.bridge.vouchers.get(&id).map(|v| {
            let mut e = Enc::new();
            let w = &v.voucher;
            e.u64(w.id).u64(w.account.0).u32(u32::from(w.asset.0)).i128(w.amount).u64(w.height);
            // At most one signature per validator (checked on inclusion).
            e.u32(u32::try_from(v.approvals.len()).unwrap_or(u32::MAX));
            for a in &v.approvals {
                e.u32(u32::from(a.validator.0)).bytes(&a.signature);
            }
            e.0
        }),
    }
}

fn observation(o: &bastion_types::Observation) -> Vec<u8> {
    let mut e = Enc::new();
    e.u32(u32::from(o.validator.0)).u64(o.height).u64(o.timestamp_ms);
    // At most OBSERVATION_PRICES_MAX and OBSERVATION_VOLS_MAX entries (checked on inclusion).
    e.u32(u32::try_from(o.prices.len()).unwrap_or(u32::MAX));
    for (u, p) in &o.prices {
        e.u32(u32::from(u.0)).i64(*p);
    }
    e.u32(u32::try_from(o.vols.len()).unwrap_or(u32::MAX));
    for q in &o.vols {
        e.u32(u32::from(q.underlying.0)).u64(q.expiry_ms).i64(q.atm_ppm).i64(q.skew_ppm);
    }
    e.0
}

/// Every record key of the state, for a full recomputation of the commitment.
pub(crate) fn all_keys(s: &State) -> Vec<RecordKey> {
    keys(s, true)
}

/// Every record key of the state but the accounts' (an image's loader digests the accounts
/// from the arena, by slot).
pub(crate) fn keys_but_accounts(s: &State) -> Vec<RecordKey> {
    keys(s, false)
}

fn keys(s: &State, accounts: bool) -> Vec<RecordKey> {
    let mut keys = vec![RecordKey::Global];
    keys.extend((0..s.assets.len()).filter_map(|i| u16::try_from(i).ok()).map(RecordKey::Asset));
    keys.extend((0..s.underlyings.len()).filter_map(|i| u16::try_from(i).ok()).map(RecordKey::Underlying));
    for (id, m) in &s.markets {
        keys.push(RecordKey::Market(id.0));
        keys.extend(m.book.orders().map(|o| RecordKey::Order(id.0, o.id.0)));
    }
    if accounts {
        keys.extend(s.accounts.keys().map(|a| RecordKey::Account(a.0)));
    }
    keys.extend(
        s.observations
            .iter()
            .enumerate()
            .filter(|(_, o)| o.is_some())
            .filter_map(|(i, _)| u16::try_from(i).ok())
            .map(RecordKey::Observation),
    );
    keys.extend(s.bridge.credited.keys().map(|id| RecordKey::Credited(id.0)));
    keys.extend(s.bridge.vouchers.keys().map(|id| RecordKey::Voucher(*id)));
    keys
}
