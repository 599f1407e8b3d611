//! JSON renderings of the state and the index, shared by REST and WebSocket.
//!
//! Units are the chain's: prices of orders and fills in ticks (`price`), with
//! `price_micros` = ticks x the market's tick size where useful; sizes in lots; money in
//! micro-units of the quote asset (`i128`, a JSON number).

use crate::index::{BlockRec, FillRec, TxRec};
use bastion_exchange::{Credited, Market, State, VoucherEntry};
use bastion_types::{
    AccountId, INSURANCE_FUND_ACCOUNT, MarketKind, MarketStatus, NANOS_PER_UNIT, Side, voucher_message,
};
use serde_json::{Value, json};

/// Lowercase hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(D[usize::from(b >> 4)]));
        s.push(char::from(D[usize::from(b & 15)]));
    }
    s
}

/// Decodes hex (either case, optional `0x`); `None` on odd length or a non-hex digit.
pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = s.strip_prefix("0x").unwrap_or(s);
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    s.as_bytes().chunks_exact(2).map(|p| Some((digit(p[0])? << 4) | digit(p[1])?)).collect()
}

/// Any serializable value as JSON, never failing: through the text form, so integers beyond
/// 64 bits (i128 money) become JSON numbers too (rendered as floats past 2^64).
pub(crate) fn val<T: serde::Serialize>(x: &T) -> Value {
    serde_json::to_string(x).ok().and_then(|s| serde_json::from_str(&s).ok()).unwrap_or(Value::Null)
}

/// An i128 amount: an exact JSON integer within 64 bits (always, for real balances).
pub(crate) fn big(x: i128) -> Value {
    i64::try_from(x).map(Value::from).unwrap_or_else(|_| val(&x))
}

pub(crate) fn side(s: Side) -> &'static str {
    match s {
        Side::Buy => "buy",
        Side::Sell => "sell",
    }
}

pub(crate) fn status(s: MarketStatus) -> &'static str {
    match s {
        MarketStatus::Active => "active",
        MarketStatus::ReduceOnly => "reduceOnly",
        MarketStatus::Halted => "halted",
        MarketStatus::Settled => "settled",
    }
}

pub(crate) fn block_header(b: &BlockRec) -> Value {
    json!({
        "height": b.height, "timestamp_ms": b.timestamp_ms, "digest": hex(&b.digest),
        "root": hex(&b.root), "txs": b.txs.len(), "events": b.events,
    })
}

pub(crate) fn tx_json(t: &TxRec, index: usize) -> Value {
    let outcome = match &t.outcome {
        None => json!({"result": "ok"}),
        Some(r) => json!({"result": "rejected", "reason": val(r), "message": r.to_string()}),
    };
    let mut v = json!({
        "index": index, "hash": hex(&t.hash), "signer": t.signer.0, "nonce": t.nonce,
        "action": val(&t.action), "outcome": outcome,
    });
    if let Some(id) = t.voucher {
        v["voucher"] = json!(id);
    }
    v
}

pub(crate) fn block_json(b: &BlockRec) -> Value {
    let txs: Vec<Value> = b.txs.iter().enumerate().map(|(i, t)| tx_json(t, i)).collect();
    let deposits: Vec<Value> = b
        .deposits
        .iter()
        .map(|(d, attestations)| {
            json!({
                "source_id": d.source_id.hex(), "account": d.to.0,
                "insurance_fund": d.to == INSURANCE_FUND_ACCOUNT, "asset": d.asset.0,
                "amount": big(d.amount), "attestations": attestations,
            })
        })
        .collect();
    let vouchers: Vec<Value> =
        b.vouchers.iter().map(|(id, n)| json!({"voucher": id, "signatures": n})).collect();
    json!({"header": block_header(b), "txs": txs, "deposits": deposits, "voucher_signatures": vouchers})
}

/// A withdrawal's voucher as a client presents it to the source chain: its fields, the
/// validators' signatures once 2/3 of stake's are on chain (each with the signer's identity
/// key from the genesis), and `message`, the exact bytes they signed
/// ([`voucher_message`]), so that a client in any language verifies without rebuilding them.
pub(crate) fn voucher_json(state: &State, e: &VoucherEntry) -> Value {
    let v = &e.voucher;
    let signatures: Vec<Value> = e
        .approvals
        .iter()
        .map(|a| {
            let key = state.validators.get(usize::from(a.validator.0)).and_then(|v| v.key);
            json!({
                "validator": a.validator.0, "public_key": key.map(|k| hex(&k)),
                "signature": hex(&a.signature),
            })
        })
        .collect();
    json!({
        "id": v.id, "account": v.account.0, "asset": v.asset.0, "amount": big(v.amount),
        "height": v.height, "signed": e.signed(), "signatures": signatures,
        "chain_id": state.chain_id, "message": hex(&voucher_message(&state.chain_id, v)),
    })
}

/// A credited bridge deposit.
pub(crate) fn credited_json(c: &Credited) -> Value {
    let d = &c.deposit;
    json!({
        "source_id": d.source_id.hex(), "credited": true, "height": c.height, "account": d.to.0,
        "insurance_fund": d.to == INSURANCE_FUND_ACCOUNT, "asset": d.asset.0, "amount": big(d.amount),
    })
}

/// The insurance fund, per collateral asset (the quote asset's entry is the fund proper).
pub(crate) fn insurance_json(state: &State) -> Value {
    let assets: Vec<Value> = state
        .assets
        .iter()
        .map(|a| json!({"asset": a.spec.asset.0, "name": a.spec.name, "amount": big(a.insurance)}))
        .collect();
    Value::Array(assets)
}

/// The bridge's counters: deposits credited since genesis and the last voucher id (`null`
/// before the first withdrawal; ids count from 1, so it is also the number of vouchers).
pub(crate) fn bridge_json(state: &State) -> Value {
    let last = state.last_voucher();
    json!({
        "deposits_credited": state.credited_count(),
        "last_voucher": (last > 0).then_some(last),
    })
}

/// Current funding rate estimate (ppm per 8 hours) from the premium samples since the last
/// settlement; `None` for options or before a sample.
fn funding_rate(m: &Market) -> Option<i64> {
    if !matches!(m.spec.kind, MarketKind::Perpetual) || m.funding.samples == 0 {
        return None;
    }
    let avg = m.funding.premium_sum / i128::from(m.funding.samples);
    let avg = i64::try_from(avg).ok()?;
    Some(bastion_exchange::rate_8h(avg))
}

pub(crate) fn market_json(state: &State, m: &Market) -> Value {
    let index = state.underlyings.get(usize::from(m.spec.underlying.0)).map(|u| u.index).unwrap_or(0);
    json!({
        "id": m.spec.id.0,
        "symbol": m.spec.name,
        "spec": val(&m.spec),
        "status": status(m.effective_status()),
        "mark_price_micros": m.mark,
        "index_price_micros": index,
        "last_trade_ticks": m.last_trade,
        "funding_rate_8h_ppm": funding_rate(m),
        "funding_index": big(m.funding.index),
        "open_interest_lots": m.open_interest,
        "best_bid": m.book.best_bid().map(|(p, q)| [p, q]),
        "best_ask": m.book.best_ask().map(|(p, q)| [p, q]),
    })
}

pub(crate) fn book_json(m: &Market, depth: usize) -> Value {
    let bids: Vec<[i64; 2]> = m.book.levels(Side::Buy).take(depth).map(|(p, q)| [p, q]).collect();
    let asks: Vec<[i64; 2]> = m.book.levels(Side::Sell).take(depth).map(|(p, q)| [p, q]).collect();
    json!({"market": m.spec.id.0, "symbol": m.spec.name, "tick_size_micros": m.spec.tick_size, "bids": bids, "asks": asks})
}

pub(crate) fn bbo_json(m: &Market) -> Value {
    json!({
        "market": m.spec.id.0,
        "bid": m.book.best_bid().map(|(p, q)| [p, q]),
        "ask": m.book.best_ask().map(|(p, q)| [p, q]),
    })
}

/// Base units (nano) per lot, as an i128.
fn lot_nanos(m: &Market) -> i128 {
    i128::from(m.spec.lot_size_nanos.max(1))
}

/// Entry price per whole base unit (quote micros) from the cost basis; `None` when flat.
fn entry_price(m: &Market, size: i64, cost: i128) -> Option<i128> {
    if size == 0 {
        return None;
    }
    let base_nanos = i128::from(size).checked_mul(lot_nanos(m))?;
    cost.checked_mul(i128::from(NANOS_PER_UNIT))?.checked_div(base_nanos).map(|p| p.abs())
}

pub(crate) fn account_json(state: &State, id: AccountId) -> Option<Value> {
    let a = state.accounts.get(&id)?;
    let health = state.account_health(id);
    let balances: Vec<Value> = state
        .assets
        .iter()
        .enumerate()
        .map(|(i, asset)| {
            json!({"asset": asset.spec.asset.0, "name": asset.spec.name, "amount": big(a.balances.get(i).copied().unwrap_or(0))})
        })
        .collect();
    // Liquidation price (estimate): the mark at which the cross account's collateral would
    // fall to its maintenance requirement if this position's mark alone moved, with every
    // other value and the requirement held constant. Isolated positions are not estimated.
    let buffer = health.map(|h| h.collateral.saturating_sub(h.maintenance));
    let positions: Vec<Value> = a
        .positions
        .iter()
        .map(|p| {
            let m = state.markets.get(&p.market);
            let entry = m.and_then(|m| entry_price(m, p.size, p.cost));
            let liq = match (m, buffer) {
                (Some(m), Some(buf)) if p.size != 0 && !p.isolated && m.mark > 0 => {
                    let base_nanos = i128::from(p.size).saturating_mul(lot_nanos(m));
                    buf.checked_mul(i128::from(NANOS_PER_UNIT))
                        .and_then(|x| x.checked_div(base_nanos))
                        .map(|move_per_unit| (i128::from(m.mark) - move_per_unit).max(0))
                }
                _ => None,
            };
            json!({
                "market": p.market.0,
                "symbol": m.map(|m| m.spec.name.clone()),
                "size_lots": p.size,
                "cost_micros": big(p.cost),
                "entry_price_micros": entry.map(big),
                "mark_price_micros": m.map(|m| m.mark),
                "liquidation_price_micros": liq.map(big),
                "open_buy_lots": p.open_buy,
                "open_sell_lots": p.open_sell,
                "isolated": p.isolated,
                "isolated_balance_micros": big(p.isolated_balance),
            })
        })
        .collect();
    let health = health.map(|h| {
        json!({
            "collateral_micros": big(h.collateral),
            "initial_micros": big(h.initial),
            "maintenance_micros": big(h.maintenance),
            "initial_ok": h.initial_ok(),
            "liquidatable": h.liquidatable(),
        })
    });
    Some(json!({
        "account": id.0, "nonce": a.nonce, "portfolio_margin": a.portfolio,
        "balances": balances, "positions": positions, "health": health,
    }))
}

/// Open orders of `id`: the book's orders in each market where the account has a record.
pub(crate) fn open_orders_json(state: &State, id: AccountId) -> Option<Vec<Value>> {
    let a = state.accounts.get(&id)?;
    let mut out = Vec::new();
    for p in &a.positions {
        if p.open_buy == 0 && p.open_sell == 0 {
            continue;
        }
        let Some(m) = state.markets.get(&p.market) else { continue };
        for o in m.book.orders().filter(|o| o.account == id) {
            out.push(json!({
                "market": p.market.0, "order": o.id.0, "side": side(o.side), "price": o.price,
                "remaining": o.qty, "original": o.original_qty, "good_til_height": o.good_til_height,
            }));
        }
    }
    Some(out)
}

pub(crate) fn trade_json(f: &FillRec) -> Value {
    json!({
        "height": f.height, "timestamp_ms": f.timestamp_ms, "index": f.index, "market": f.market.0,
        "price": f.price, "qty": f.qty, "taker_side": side(f.taker_side),
    })
}

/// A fill from one account's point of view.
pub(crate) fn fill_json(f: &FillRec, account: AccountId) -> Value {
    let maker = f.maker == account;
    let (my_side, fee, role) = if maker {
        (f.taker_side.opposite(), f.maker_fee, "maker")
    } else {
        (f.taker_side, f.taker_fee, "taker")
    };
    json!({
        "height": f.height, "timestamp_ms": f.timestamp_ms, "index": f.index, "market": f.market.0,
        "maker_order": f.maker_order, "maker": f.maker.0, "taker": f.taker.0,
        "side": side(my_side), "role": role, "price": f.price, "qty": f.qty, "fee_micros": big(fee),
    })
}
