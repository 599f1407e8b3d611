//! What the simulated chain's ledger adds up to: the bridge's balance per asset, the vouchers
//! paid, what payouts credited to each payee, and totals for conservation checks.

use bastion_types::{AccountId, AssetId, Micros};
use std::collections::{BTreeMap, BTreeSet};

use crate::ledger::SourceBlock;

/// Counts and sums over a whole ledger.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Deposits made to the bridge.
    pub deposits: u64,
    /// Their amounts, summed over every asset.
    pub deposited: Micros,
    /// Vouchers paid.
    pub payouts: u64,
    /// Their amounts, summed over every asset.
    pub paid: Micros,
}

/// Why a block cannot follow the ledger it is applied to: the ledger is corrupt (or, for a
/// block the chain is producing, a bug).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The block's height does not follow.
    #[error("source block {found} follows block {previous}")]
    HeightGap {
        /// The last applied block's height.
        previous: u64,
        /// The block's height.
        found: u64,
    },
    /// A deposit or payout amount is zero or negative.
    #[error("source block {height}: an amount is not positive")]
    NonPositive {
        /// The block.
        height: u64,
    },
    /// A voucher is paid a second time.
    #[error("source block {height}: voucher {voucher_id} is paid a second time")]
    PaidTwice {
        /// The block.
        height: u64,
        /// The voucher.
        voucher_id: u64,
    },
    /// A payout exceeds the bridge's balance of the asset.
    #[error("source block {height}: voucher {voucher_id} pays {need} of {asset}, the bridge holds {have}")]
    Overdrawn {
        /// The block.
        height: u64,
        /// The voucher.
        voucher_id: u64,
        /// The asset.
        asset: AssetId,
        /// The bridge's balance before the payout.
        have: Micros,
        /// The payout.
        need: Micros,
    },
    /// A sum leaves the range of its type.
    #[error("source block {height}: a balance or total overflows")]
    Overflow {
        /// The block.
        height: u64,
    },
}

/// The state a ledger adds up to, block by block. The simulated chain keeps one; a
/// conservation check builds one with [`LedgerState::replay`] over
/// [`read_ledger`](crate::read_ledger)'s blocks and compares it with Bastion's books.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LedgerState {
    height: u64,
    time_ms: u64,
    balances: BTreeMap<AssetId, Micros>,
    payees: BTreeMap<(AccountId, AssetId), Micros>,
    paid: BTreeSet<u64>,
    totals: Totals,
}

/// A block's effect, checked and computed but not applied yet.
struct Staged {
    balances: BTreeMap<AssetId, Micros>,
    payees: BTreeMap<(AccountId, AssetId), Micros>,
    paid: Vec<u64>,
    totals: Totals,
}

impl LedgerState {
    /// The state after `blocks`, which must start at height 1.
    pub fn replay(blocks: &[SourceBlock]) -> Result<LedgerState, StateError> {
        let mut state = LedgerState::default();
        for block in blocks {
            state.apply(block)?;
        }
        Ok(state)
    }

    /// Applies `block`, or changes nothing and says why it cannot follow.
    pub fn apply(&mut self, block: &SourceBlock) -> Result<(), StateError> {
        let staged = self.stage(block)?;
        self.height = block.height;
        self.time_ms = self.time_ms.max(block.time_ms);
        self.balances.extend(staged.balances);
        self.payees.extend(staged.payees);
        self.paid.extend(staged.paid);
        self.totals = staged.totals;
        Ok(())
    }

    /// Checks `block` against this state and computes its effect.
    fn stage(&self, block: &SourceBlock) -> Result<Staged, StateError> {
        let height = block.height;
        if height != self.height.saturating_add(1) {
            return Err(StateError::HeightGap { previous: self.height, found: height });
        }
        let overflow = StateError::Overflow { height };
        let mut staged = Staged {
            balances: BTreeMap::new(),
            payees: BTreeMap::new(),
            paid: Vec::new(),
            totals: self.totals,
        };
        for d in &block.deposits {
            if d.amount <= 0 {
                return Err(StateError::NonPositive { height });
            }
            let balance = staged.balances.entry(d.asset).or_insert_with(|| self.bridge_balance(d.asset));
            *balance = balance.checked_add(d.amount).ok_or(overflow.clone())?;
            staged.totals.deposits = staged.totals.deposits.checked_add(1).ok_or(overflow.clone())?;
            staged.totals.deposited =
                staged.totals.deposited.checked_add(d.amount).ok_or(overflow.clone())?;
        }
        let mut paid_here = BTreeSet::new();
        for p in &block.payouts {
            let v = &p.voucher;
            if v.amount <= 0 {
                return Err(StateError::NonPositive { height });
            }
            if self.paid.contains(&v.id) || !paid_here.insert(v.id) {
                return Err(StateError::PaidTwice { height, voucher_id: v.id });
            }
            let balance = staged.balances.entry(v.asset).or_insert_with(|| self.bridge_balance(v.asset));
            if *balance < v.amount {
                return Err(StateError::Overdrawn {
                    height,
                    voucher_id: v.id,
                    asset: v.asset,
                    have: *balance,
                    need: v.amount,
                });
            }
            *balance = balance.checked_sub(v.amount).ok_or(overflow.clone())?;
            let payee = staged
                .payees
                .entry((v.account, v.asset))
                .or_insert_with(|| self.payee_balance(v.account, v.asset));
            *payee = payee.checked_add(v.amount).ok_or(overflow.clone())?;
            staged.totals.payouts = staged.totals.payouts.checked_add(1).ok_or(overflow.clone())?;
            staged.totals.paid = staged.totals.paid.checked_add(v.amount).ok_or(overflow.clone())?;
        }
        staged.paid = paid_here.into_iter().collect();
        Ok(staged)
    }

    /// Checks that `block` could follow this state, without applying it.
    pub fn check(&self, block: &SourceBlock) -> Result<(), StateError> {
        self.stage(block).map(|_| ())
    }

    /// The last applied block's height (0: none).
    pub fn height(&self) -> u64 {
        self.height
    }

    /// The last applied block's time, ms since the Unix epoch (0: none).
    pub fn time_ms(&self) -> u64 {
        self.time_ms
    }

    /// What the bridge holds of `asset`: deposits minus payouts.
    pub fn bridge_balance(&self, asset: AssetId) -> Micros {
        self.balances.get(&asset).copied().unwrap_or(0)
    }

    /// The bridge's balance of every asset it ever held, in asset order.
    pub fn bridge_balances(&self) -> impl Iterator<Item = (AssetId, Micros)> + '_ {
        self.balances.iter().map(|(a, m)| (*a, *m))
    }

    /// Whether voucher `voucher_id` was paid.
    pub fn paid(&self, voucher_id: u64) -> bool {
        self.paid.contains(&voucher_id)
    }

    /// What payouts credited to `account` in `asset` on the source chain.
    pub fn payee_balance(&self, account: AccountId, asset: AssetId) -> Micros {
        self.payees.get(&(account, asset)).copied().unwrap_or(0)
    }

    /// Counts and sums over every applied block.
    pub fn totals(&self) -> Totals {
        self.totals
    }
}
