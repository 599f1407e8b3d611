//! The in-memory index of the last `history_blocks` blocks: block records, transaction
//! outcomes by hash, fills by account, trades by market; each account's voucher ids (vouchers
//! live in the state for ever; the index only finds an account's); and what each block
//! changed, for the WebSocket fan-out.

use crate::views::{self, hex};
use crate::{Shared, Update, lock, write};
use bastion_exchange::State;
use bastion_types::{AccountId, Action, BridgeDeposit, DoneReason, Event, MarketId, Reject, Side, Ticks};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Fills kept per account (within the history window).
pub(crate) const FILLS_PER_ACCOUNT_MAX: usize = 1_000;
/// Trades kept per market (within the history window).
pub(crate) const TRADES_PER_MARKET_MAX: usize = 1_000;
/// Transactions submitted here and not yet seen in a block, remembered at most.
pub(crate) const PENDING_MAX: usize = 100_000;
/// Refusals by [`crate::Submit`] remembered at most.
pub(crate) const REFUSED_MAX: usize = 100_000;
/// Voucher ids indexed per account, the newest (older vouchers stay readable by id).
pub(crate) const VOUCHERS_PER_ACCOUNT_MAX: usize = 1_000;

/// One fill, as the API reports it.
#[derive(Clone, Debug)]
pub(crate) struct FillRec {
    pub(crate) height: u64,
    pub(crate) timestamp_ms: u64,
    pub(crate) market: MarketId,
    pub(crate) maker_order: u64,
    pub(crate) maker: AccountId,
    pub(crate) taker: AccountId,
    pub(crate) taker_side: Side,
    pub(crate) price: Ticks,
    pub(crate) qty: i64,
    pub(crate) maker_fee: i128,
    pub(crate) taker_fee: i128,
    /// Position among the block's fills (a fill's identity with the height).
    pub(crate) index: u32,
}

/// One transaction of a block.
#[derive(Clone, Debug)]
pub(crate) struct TxRec {
    pub(crate) hash: [u8; 32],
    pub(crate) signer: AccountId,
    pub(crate) nonce: u64,
    pub(crate) action: Action,
    pub(crate) outcome: Option<Reject>,
    /// The voucher an executed withdrawal created.
    pub(crate) voucher: Option<u64>,
}

/// One block's record.
#[derive(Clone, Debug)]
pub(crate) struct BlockRec {
    pub(crate) height: u64,
    pub(crate) timestamp_ms: u64,
    pub(crate) digest: [u8; 32],
    pub(crate) root: [u8; 32],
    pub(crate) events: usize,
    pub(crate) txs: Vec<TxRec>,
    /// The bridge deposits the block credited, each with its number of attestations.
    pub(crate) deposits: Vec<(BridgeDeposit, usize)>,
    /// The vouchers whose signatures the block carried, each with their number.
    pub(crate) vouchers: Vec<(u64, usize)>,
}

/// What the index says of a transaction hash.
#[derive(Clone, Debug)]
pub(crate) enum TxStatus {
    Included { height: u64, index: usize, outcome: Option<Reject>, voucher: Option<u64> },
    Pending,
    Refused { code: String, message: String },
}

/// The latest block's header fields and state.
#[derive(Clone, Debug)]
pub(crate) struct Head {
    pub(crate) height: u64,
    pub(crate) timestamp_ms: u64,
    pub(crate) digest: [u8; 32],
    pub(crate) root: [u8; 32],
    pub(crate) state: Arc<State>,
}

#[derive(Debug)]
pub(crate) struct Index {
    history: u64,
    pub(crate) head: Option<Head>,
    blocks: VecDeque<BlockRec>,
    tx_at: HashMap<[u8; 32], (u64, usize)>,
    pending: HashMap<[u8; 32], ()>,
    pending_order: VecDeque<[u8; 32]>,
    refused: HashMap<[u8; 32], (String, String)>,
    refused_order: VecDeque<[u8; 32]>,
    /// A faucet deposit re-signed with a fresh nonce: old hash -> new hash.
    aliases: HashMap<[u8; 32], [u8; 32]>,
    alias_order: VecDeque<[u8; 32]>,
    fills: HashMap<AccountId, VecDeque<Arc<FillRec>>>,
    /// Accounts with fills per height, oldest first, for pruning.
    fill_accounts: VecDeque<(u64, Vec<AccountId>)>,
    trades: HashMap<MarketId, VecDeque<Arc<FillRec>>>,
    /// Liquidation events of recent blocks (for the snapshot of `liquidations`).
    pub(crate) liquidations: VecDeque<(u64, Value)>,
    /// Voucher ids by account, oldest first, at most [`VOUCHERS_PER_ACCOUNT_MAX`] each.
    vouchers: HashMap<AccountId, VecDeque<u64>>,
    /// Vouchers `1..=vouchers_indexed` are in `vouchers`.
    vouchers_indexed: u64,
}

impl Index {
    pub(crate) fn new(history: u64) -> Self {
        Index {
            history: history.max(1),
            head: None,
            blocks: VecDeque::new(),
            tx_at: HashMap::new(),
            pending: HashMap::new(),
            pending_order: VecDeque::new(),
            refused: HashMap::new(),
            refused_order: VecDeque::new(),
            aliases: HashMap::new(),
            alias_order: VecDeque::new(),
            fills: HashMap::new(),
            fill_accounts: VecDeque::new(),
            trades: HashMap::new(),
            liquidations: VecDeque::new(),
            vouchers: HashMap::new(),
            vouchers_indexed: 0,
        }
    }

    pub(crate) fn history(&self) -> u64 {
        self.history
    }

    pub(crate) fn block(&self, height: u64) -> Option<&BlockRec> {
        let first = self.blocks.front()?.height;
        let i = usize::try_from(height.checked_sub(first)?).ok()?;
        self.blocks.get(i).filter(|b| b.height == height)
    }

    pub(crate) fn oldest_height(&self) -> Option<u64> {
        self.blocks.front().map(|b| b.height)
    }

    /// Follows faucet re-signings from `hash` to the transaction that stands for it now.
    pub(crate) fn resolve(&self, hash: [u8; 32]) -> [u8; 32] {
        let mut h = hash;
        for _ in 0..32 {
            match self.aliases.get(&h) {
                Some(n) => h = *n,
                None => break,
            }
        }
        h
    }

    pub(crate) fn status(&self, hash: &[u8; 32]) -> Option<TxStatus> {
        if let Some(&(height, index)) = self.tx_at.get(hash) {
            let tx = self.block(height).and_then(|b| b.txs.get(index));
            let outcome = tx.and_then(|t| t.outcome.clone());
            let voucher = tx.and_then(|t| t.voucher);
            return Some(TxStatus::Included { height, index, outcome, voucher });
        }
        if self.pending.contains_key(hash) {
            return Some(TxStatus::Pending);
        }
        self.refused.get(hash).map(|(c, m)| TxStatus::Refused { code: c.clone(), message: m.clone() })
    }

    pub(crate) fn is_included(&self, hash: &[u8; 32]) -> bool {
        self.tx_at.contains_key(hash)
    }

    pub(crate) fn add_pending(&mut self, hash: [u8; 32]) {
        self.refused.remove(&hash);
        if self.pending.insert(hash, ()).is_none() {
            self.pending_order.push_back(hash);
            while self.pending_order.len() > PENDING_MAX {
                if let Some(old) = self.pending_order.pop_front() {
                    self.pending.remove(&old);
                }
            }
        }
    }

    pub(crate) fn add_refused(&mut self, hash: [u8; 32], code: &str, message: &str) {
        self.pending.remove(&hash);
        if self.refused.insert(hash, (code.to_string(), message.to_string())).is_none() {
            self.refused_order.push_back(hash);
            while self.refused_order.len() > REFUSED_MAX {
                if let Some(old) = self.refused_order.pop_front() {
                    self.refused.remove(&old);
                }
            }
        }
    }

    pub(crate) fn add_alias(&mut self, old: [u8; 32], new: [u8; 32]) {
        self.pending.remove(&old);
        self.aliases.insert(old, new);
        self.alias_order.push_back(old);
        while self.alias_order.len() > PENDING_MAX {
            if let Some(o) = self.alias_order.pop_front() {
                self.aliases.remove(&o);
            }
        }
    }

    pub(crate) fn fills_of(&self, account: AccountId, limit: usize) -> Vec<Arc<FillRec>> {
        self.fills
            .get(&account)
            .map(|q| q.iter().rev().take(limit).rev().cloned().collect())
            .unwrap_or_default()
    }

    pub(crate) fn trades_of(&self, market: MarketId, limit: usize) -> Vec<Arc<FillRec>> {
        self.trades
            .get(&market)
            .map(|q| q.iter().rev().take(limit).rev().cloned().collect())
            .unwrap_or_default()
    }

    /// The ids of `account`'s newest vouchers, newest first, at most `limit`.
    pub(crate) fn vouchers_of(&self, account: AccountId, limit: usize) -> Vec<u64> {
        self.vouchers.get(&account).map(|q| q.iter().rev().take(limit).copied().collect()).unwrap_or_default()
    }

    /// Adds the vouchers `state` created since the last call: `(account, id)` ascending by id,
    /// from [`new_vouchers`].
    fn add_vouchers(&mut self, last: u64, new: Vec<(AccountId, u64)>) {
        if last < self.vouchers_indexed {
            // Voucher ids only grow on one chain; a state behind the index is another chain's
            // (never fed to one API): index it afresh.
            self.vouchers.clear();
        }
        for (account, id) in new {
            let q = self.vouchers.entry(account).or_default();
            q.push_back(id);
            if q.len() > VOUCHERS_PER_ACCOUNT_MAX {
                q.pop_front();
            }
        }
        self.vouchers_indexed = last;
    }

    fn prune(&mut self, latest: u64) {
        let keep_from = latest.saturating_sub(self.history - 1);
        while self.blocks.front().is_some_and(|b| b.height < keep_from) {
            if let Some(b) = self.blocks.pop_front() {
                for t in &b.txs {
                    if self.tx_at.get(&t.hash).is_some_and(|&(h, _)| h == b.height) {
                        self.tx_at.remove(&t.hash);
                    }
                }
            }
        }
        while self.fill_accounts.front().is_some_and(|(h, _)| *h < keep_from) {
            if let Some((_, accounts)) = self.fill_accounts.pop_front() {
                for a in accounts {
                    if let Some(q) = self.fills.get_mut(&a) {
                        while q.front().is_some_and(|f| f.height < keep_from) {
                            q.pop_front();
                        }
                        if q.is_empty() {
                            self.fills.remove(&a);
                        }
                    }
                }
            }
        }
        for q in self.trades.values_mut() {
            while q.front().is_some_and(|f| f.height < keep_from) {
                q.pop_front();
            }
        }
        while self.liquidations.front().is_some_and(|(h, _)| *h < keep_from) {
            self.liquidations.pop_front();
        }
    }
}

/// What one block changed, derived once and shared by the fan-out.
#[derive(Debug, Default)]
pub(crate) struct Derived {
    pub(crate) height: u64,
    pub(crate) fills: Vec<Arc<FillRec>>,
    /// Order updates by account.
    pub(crate) order_updates: HashMap<AccountId, Vec<Value>>,
    pub(crate) liquidations: Vec<Value>,
    /// Vouchers created or signed in the block, by account, in event order.
    pub(crate) vouchers: HashMap<AccountId, Vec<u64>>,
    /// Markets whose book may have changed.
    pub(crate) books: BTreeSet<MarketId>,
    pub(crate) header: Value,
}

fn done_status(reason: DoneReason) -> &'static str {
    match reason {
        DoneReason::Filled => "filled",
        DoneReason::Cancelled => "cancelled",
        DoneReason::Expired => "expired",
        DoneReason::SelfTrade => "selfTradeCancelled",
        DoneReason::Unfilled => "unfilledCancelled",
        DoneReason::Removed => "removed",
    }
}

/// Derives the block's fills, order updates, liquidations and records.
fn derive(u: &Update, prev: Option<&State>) -> (BlockRec, Derived) {
    let mut rejected: HashMap<u32, Reject> = HashMap::new();
    // Withdrawals that executed, in order: only an executed `Action::Withdraw` emits
    // `Withdrew`, so the n-th of these belongs to the n-th withdrawal that was not rejected.
    let mut withdrew = VecDeque::new();
    for e in u.events.iter() {
        match e {
            Event::Rejected { tx, reason } => {
                rejected.insert(*tx, reason.clone());
            }
            Event::Withdrew { account, asset, amount, voucher } => {
                withdrew.push_back((*account, *asset, *amount, *voucher));
            }
            _ => {}
        }
    }
    let mut txs = Vec::with_capacity(u.block.txs.len());
    let mut d = Derived { height: u.height, ..Derived::default() };
    let mut body = Vec::new();
    for (i, tx) in u.block.txs.iter().enumerate() {
        let pk = u.auths.get(i).map(|a| a.public_key).unwrap_or([0; 32]);
        bastion_types::tx::encode_body_into(tx.nonce, &tx.action, &mut body);
        let hash = bastion_client::tx_hash(&pk, &body);
        let outcome = u32::try_from(i).ok().and_then(|i| rejected.get(&i).cloned());
        if let Some(reason) = &outcome {
            let order = match &tx.action {
                Action::Place(r) => Some((r.market, None)),
                Action::Cancel { market, order } => Some((*market, Some(order.0))),
                Action::Replace { market, order, .. } => Some((*market, Some(order.0))),
                _ => None,
            };
            if let Some((market, order)) = order {
                d.order_updates.entry(tx.signer).or_default().push(json!({
                    "status": "rejected", "market": market.0, "order": order, "tx": hex(&hash),
                    "reason": views::val(reason), "message": reason.to_string(),
                }));
            }
        }
        if let Action::Replace { market, .. } | Action::Cancel { market, .. } = &tx.action {
            d.books.insert(*market);
        }
        let mut voucher = None;
        if let (Action::Withdraw { asset, amount }, None) = (&tx.action, &outcome)
            && let Some(&(account, a, m, id)) = withdrew.front()
            && (account, a, m) == (tx.signer, *asset, *amount)
        {
            voucher = Some(id);
            withdrew.pop_front();
        }
        txs.push(TxRec {
            hash,
            signer: tx.signer,
            nonce: tx.nonce,
            action: tx.action.clone(),
            outcome,
            voucher,
        });
    }
    let mut fill_index = 0u32;
    for e in u.events.iter() {
        match e {
            Event::Fill {
                market,
                maker_order,
                maker,
                taker,
                taker_side,
                price,
                qty,
                maker_fee,
                taker_fee,
            } => {
                let f = Arc::new(FillRec {
                    height: u.height,
                    timestamp_ms: u.timestamp_ms,
                    market: *market,
                    maker_order: maker_order.0,
                    maker: *maker,
                    taker: *taker,
                    taker_side: *taker_side,
                    price: *price,
                    qty: *qty,
                    maker_fee: *maker_fee,
                    taker_fee: *taker_fee,
                    index: fill_index,
                });
                fill_index = fill_index.saturating_add(1);
                d.books.insert(*market);
                let remaining = u
                    .state
                    .markets
                    .get(market)
                    .and_then(|m| m.book.get(*maker_order))
                    .map(|o| o.qty)
                    .unwrap_or(0);
                if remaining > 0 {
                    d.order_updates.entry(*maker).or_default().push(json!({
                        "status": "partiallyFilled", "market": market.0, "order": maker_order.0,
                        "filled": qty, "price": price, "remaining": remaining,
                    }));
                }
                d.fills.push(f);
            }
            Event::Rested { market, order, account, side, price, qty } => {
                d.books.insert(*market);
                let replaced =
                    prev.and_then(|s| s.markets.get(market)).is_some_and(|m| m.book.get(*order).is_some());
                d.order_updates.entry(*account).or_default().push(json!({
                    "status": if replaced { "replaced" } else { "resting" }, "market": market.0,
                    "order": order.0, "side": views::side(*side), "price": price, "remaining": qty,
                }));
            }
            Event::Done { market, order, account, reason } => {
                d.books.insert(*market);
                d.order_updates.entry(*account).or_default().push(json!({
                    "status": done_status(*reason), "market": market.0, "order": order.0,
                }));
            }
            Event::Liquidated { account, market, qty, price, insurance_delta } => {
                d.books.insert(*market);
                d.liquidations.push(json!({
                    "type": "liquidated", "account": account.0, "market": market.0, "qty": qty,
                    "price": price, "insurance_delta": views::big(*insurance_delta),
                }));
            }
            Event::Deleveraged { account, counterparty, market, qty, price } => {
                d.liquidations.push(json!({
                    "type": "deleveraged", "account": account.0, "counterparty": counterparty.0,
                    "market": market.0, "qty": qty, "price_micros": price,
                }));
            }
            Event::InsuranceCovered { account, amount } => {
                d.liquidations.push(
                    json!({"type": "insuranceCovered", "account": account.0, "amount": views::big(*amount)}),
                );
            }
            Event::Status { market, .. } | Event::OptionSettled { market, .. } => {
                d.books.insert(*market);
            }
            Event::Withdrew { account, voucher, .. } => {
                d.vouchers.entry(*account).or_default().push(*voucher);
            }
            Event::VoucherSigned { voucher } => {
                if let Some(e) = u.state.voucher(*voucher) {
                    d.vouchers.entry(e.voucher.account).or_default().push(*voucher);
                }
            }
            _ => {}
        }
    }
    let rec = BlockRec {
        height: u.height,
        timestamp_ms: u.timestamp_ms,
        digest: u.digest,
        root: u.root,
        events: u.events.len(),
        txs,
        deposits: u.block.deposits.iter().map(|d| (d.deposit.clone(), d.attestations.len())).collect(),
        vouchers: u.block.vouchers.iter().map(|v| (v.id, v.approvals.len())).collect(),
    };
    d.header = views::block_header(&rec);
    (rec, d)
}

/// The vouchers `state` holds after id `indexed`, as `(account, id)` ascending: every voucher
/// on the first update (the API may start on a long chain), a block's withdrawals after.
fn new_vouchers(state: &State, indexed: u64) -> Vec<(AccountId, u64)> {
    let last = state.last_voucher();
    let from = if last < indexed { 1 } else { indexed.saturating_add(1) };
    (from..=last).filter_map(|id| state.voucher(id).map(|e| (e.voucher.account, id))).collect()
}

/// Indexes one update and fans it out to WebSocket subscribers.
pub(crate) fn apply(shared: &Shared, u: Update) {
    let (prev_head, indexed) = {
        let ix = crate::read(&shared.index);
        (ix.head.clone(), ix.vouchers_indexed)
    };
    let (rec, derived) = derive(&u, prev_head.as_ref().map(|h| h.state.as_ref()));
    // Outside the lock: on the first update this reads every voucher of the chain. Updates are
    // applied by one task, in order, so `indexed` cannot move in between.
    let new_vouchers = new_vouchers(&u.state, indexed);
    let gap = prev_head.as_ref().is_some_and(|h| u.height != h.height.saturating_add(1));
    let included: Vec<[u8; 32]> = rec.txs.iter().map(|t| t.hash).collect();
    {
        let mut ix = write(&shared.index);
        for (i, t) in rec.txs.iter().enumerate() {
            ix.tx_at.insert(t.hash, (rec.height, i));
            ix.pending.remove(&t.hash);
        }
        let mut accounts = Vec::new();
        for f in &derived.fills {
            let both = [f.maker, f.taker];
            for &a in both.iter().take(if f.maker == f.taker { 1 } else { 2 }) {
                let q = ix.fills.entry(a).or_default();
                q.push_back(f.clone());
                if q.len() > FILLS_PER_ACCOUNT_MAX {
                    q.pop_front();
                }
                accounts.push(a);
            }
            let q = ix.trades.entry(f.market).or_default();
            q.push_back(f.clone());
            if q.len() > TRADES_PER_MARKET_MAX {
                q.pop_front();
            }
        }
        accounts.sort_unstable();
        accounts.dedup();
        if !accounts.is_empty() {
            ix.fill_accounts.push_back((rec.height, accounts));
        }
        for l in &derived.liquidations {
            ix.liquidations.push_back((rec.height, l.clone()));
        }
        while ix.liquidations.len() > TRADES_PER_MARKET_MAX {
            ix.liquidations.pop_front();
        }
        ix.add_vouchers(u.state.last_voucher(), new_vouchers);
        ix.blocks.push_back(rec);
        ix.head = Some(Head {
            height: u.height,
            timestamp_ms: u.timestamp_ms,
            digest: u.digest,
            root: u.root,
            state: u.state.clone(),
        });
        ix.prune(u.height);
    }
    shared.counters.updates_applied.fetch_add(1, Ordering::Relaxed);
    shared.counters.height.store(u.height, Ordering::Relaxed);
    if let Some(f) = &shared.faucet {
        let resubmit = lock(f).on_update(&shared.chain.genesis_digest, &u.state, &included);
        crate::faucet::resubmit(shared, resubmit);
    }
    let mut hub = lock(&shared.hub);
    if gap {
        let from = prev_head.as_ref().map(|h| h.height.saturating_add(1)).unwrap_or(0);
        hub.close_all(&format!(
            "api fell behind: blocks {from}..{} were not indexed; resubscribe",
            u.height.saturating_sub(1)
        ));
    }
    hub.fan_out(shared, &u.state, &derived);
}
