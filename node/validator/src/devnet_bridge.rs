//! The devnet's side of the bridge: the simulated collateral chain it runs (a thread producing
//! a source block every [`SOURCE_BLOCK_MS`] into `<devnet>/source/ledger.jsonl`, which every
//! validator watches through its `[bridge]` table), the relayer that presents every signed
//! voucher to it at the end, and the summary's `bridge` figures with the conservation check
//! across both chains.
//!
//! **Conservation, checked from the logs.** At every Bastion height `h` of validator 0's
//! replayed block log, with `s` the newest source block made no later than block `h`'s time:
//! the bridge's balance on the source at `s` (deposited minus paid out) must equal what Bastion
//! credited by `h` minus what it withdrew by `h`, plus the source deposits up to `s` that
//! Bastion has not credited by `h`, plus the vouchers created by `h` that the source has not
//! paid by `s`. Each term is summed from its own log, so the equation fails if Bastion credits
//! a deposit the source does not hold (yet), credits one with another amount, or the source
//! pays a voucher Bastion never created. After the relayer's payouts it is checked once more at
//! the last source block.

use bastion_bridge::{BridgeConfig, BridgeValidator, SimChain, SourceBlock};
use bastion_consensus::ChainSpec;
use bastion_exchange::State;
use bastion_types::{Action, Block, Event, Micros, SourceId};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often the simulated source chain makes a block (ms).
pub const SOURCE_BLOCK_MS: u64 = 250;

/// Source blocks a deposit needs (its own included) before validators attest it.
pub const CONFIRMATIONS: u64 = 2;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The running simulated source chain.
#[derive(Debug)]
pub struct Source {
    /// The chain (the load generator deposits into it; the relayer pays vouchers from it).
    pub chain: Arc<Mutex<SimChain>>,
    dir: PathBuf,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Result<(), String>>>,
}

impl Source {
    /// Creates the chain in `<root>/source`, its bridge trusting `spec`'s validator set with
    /// its stakes, and starts making blocks.
    pub fn start(root: &Path, spec: &ChainSpec) -> Result<Source, String> {
        let dir = root.join("source");
        let validators = spec
            .exchange
            .validator_keys
            .iter()
            .zip(&spec.exchange.validator_stakes)
            .map(|(k, stake)| {
                let key = bastion_consensus::spec::from_hex(k)
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| format!("validator key {k} is not 64 hex digits"))?;
                Ok(BridgeValidator { key, stake: *stake })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let cfg = BridgeConfig {
            chain_id: spec.chain_id.clone(),
            validators,
            block_ms: SOURCE_BLOCK_MS,
            confirmations: CONFIRMATIONS,
        };
        let chain = SimChain::create(&dir, cfg).map_err(|e| format!("source chain: {e}"))?;
        let chain = Arc::new(Mutex::new(chain));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (chain.clone(), stop.clone());
        let handle = std::thread::Builder::new()
            .name("source-chain".into())
            .spawn(move || {
                while !s.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(SOURCE_BLOCK_MS));
                    let mut chain =
                        c.lock().map_err(|_| "the source chain's lock is poisoned".to_string())?;
                    chain.produce_block(now_ms()).map_err(|e| format!("source chain: {e}"))?;
                }
                Ok(())
            })
            .map_err(|e| format!("cannot start the source chain thread: {e}"))?;
        Ok(Source { chain, dir, stop, handle: Some(handle) })
    }

    /// The `[bridge]` table every validator's node.toml gets.
    pub fn node_table(&self) -> String {
        format!(
            "\n[bridge]\n# The devnet's simulated source chain: attest its deposits after {CONFIRMATIONS} blocks.\nsource = \"{}\"\nconfirmations = {CONFIRMATIONS}\n",
            self.dir.display()
        )
    }

    /// Stops making blocks; an error the chain thread hit.
    pub fn stop(&mut self) -> Result<(), String> {
        self.stop.store(true, Ordering::SeqCst);
        match self.handle.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err("the source chain thread panicked".into()),
            None => Ok(()),
        }
    }

    /// The relayer: presents every voucher of `state` that 2/3 of stake signed to the source
    /// chain (as anyone may) and makes a block with the payouts. Returns (presented, refused
    /// with the reasons).
    pub fn relay(&self, state: &State) -> Result<(u64, Vec<String>), String> {
        let mut chain = self.chain.lock().map_err(|_| "the source chain's lock is poisoned")?;
        let (mut presented, mut refused) = (0u64, Vec::new());
        for v in state.vouchers().filter(|v| v.signed()) {
            presented += 1;
            if let Err(e) = chain.submit_voucher(&v.voucher, &v.approvals) {
                refused.push(format!("voucher {}: {e}", v.voucher.id));
            }
        }
        chain.produce_block(now_ms()).map_err(|e| format!("source chain: {e}"))?;
        Ok((presented, refused))
    }

    /// The source chain's ledger.
    pub fn ledger(&self) -> Result<Vec<SourceBlock>, String> {
        bastion_bridge::read_ledger(&self.dir.join("ledger.jsonl")).map_err(|e| e.to_string())
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// What one Bastion block did to the bridge.
#[derive(Debug, Default)]
struct Height {
    height: u64,
    timestamp_ms: u64,
    credited: Vec<(SourceId, Micros)>,
    /// Vouchers created: (id, amount).
    withdrawn: Vec<(u64, Micros)>,
}

/// The bridge figures of validator 0's replayed chain (fed block by block).
#[derive(Debug, Default)]
pub struct BridgeFigures {
    heights: Vec<Height>,
    /// Deposits the authority key signed (must be 0 in the default devnet).
    pub authority_deposits: u64,
    /// Vouchers whose 2/3-of-stake signatures a block carried.
    pub vouchers_completed: u64,
}

impl BridgeFigures {
    /// One replayed block and its events.
    pub fn block(&mut self, block: &Block, events: &[Event]) {
        let mut h = Height { height: block.height, timestamp_ms: block.timestamp_ms, ..Height::default() };
        for e in events {
            match e {
                Event::BridgeCredited { source_id, amount, .. } => h.credited.push((*source_id, *amount)),
                Event::Withdrew { amount, voucher, .. } => h.withdrawn.push((*voucher, *amount)),
                Event::VoucherSigned { .. } => self.vouchers_completed += 1,
                _ => {}
            }
        }
        self.authority_deposits +=
            block.txs.iter().filter(|t| matches!(t.action, Action::Deposit { .. })).count() as u64;
        self.heights.push(h);
    }

    /// The summary's `bridge` object: figures from both chains' logs and the conservation
    /// check (see the module documentation). `relayed`: what the relayer presented and what the
    /// source refused.
    pub fn summary(&self, ledger: &[SourceBlock], relayed: (u64, &[String])) -> serde_json::Value {
        let deposits: BTreeMap<SourceId, (u64, Micros)> = ledger
            .iter()
            .flat_map(|b| b.deposits.iter().map(|d| (d.source_id, (b.height, d.amount))))
            .collect();
        let credited: Vec<&(SourceId, Micros)> = self.heights.iter().flat_map(|h| &h.credited).collect();
        let credited_amount: Micros = credited.iter().map(|c| c.1).sum();
        let withdrawn: Micros = self.heights.iter().flat_map(|h| &h.withdrawn).map(|w| w.1).sum();
        let withdrawals = self.heights.iter().map(|h| h.withdrawn.len()).sum::<usize>();
        let paid: Micros = ledger.iter().flat_map(|b| &b.payouts).map(|p| p.voucher.amount).sum();
        let payouts = ledger.iter().map(|b| b.payouts.len()).sum::<usize>();
        let deposited: Micros = deposits.values().map(|d| d.1).sum();
        let (checked, violation) = self.conservation(ledger);
        serde_json::json!({
            "deposits_seen": deposits.len(),
            "deposits_credited": credited.len(),
            "credited_amount": credited_amount as f64 / 1e6,
            "deposited_amount": deposited as f64 / 1e6,
            "withdrawals": withdrawals,
            "withdrawn_amount": withdrawn as f64 / 1e6,
            "vouchers_completed": self.vouchers_completed,
            "vouchers_presented": relayed.0,
            // At most 20 reasons; the count is `vouchers_presented - vouchers_paid`.
            "vouchers_refused": relayed.1.iter().take(20).collect::<Vec<_>>(),
            "vouchers_paid": payouts,
            "vouchers_refused_count": relayed.1.len(),
            "paid_amount": paid as f64 / 1e6,
            "authority_deposits": self.authority_deposits,
            "source_height": ledger.last().map_or(0, |b| b.height),
            "bridge_balance": (deposited - paid) as f64 / 1e6,
            "conservation_heights_checked": checked,
            "conservation": violation.clone().unwrap_or_else(|| "holds".into()),
            "conservation_holds": violation.is_none(),
        })
    }

    /// Checks the conservation equation at every Bastion height and at the last source block;
    /// (heights checked, the first violation).
    fn conservation(&self, ledger: &[SourceBlock]) -> (u64, Option<String>) {
        let mut books = Books::default();
        let mut source = ledger.iter().peekable();
        let mut checked = 0u64;
        for h in &self.heights {
            while let Some(b) = source.next_if(|b| b.time_ms <= h.timestamp_ms) {
                books.source_block(b);
            }
            books.bastion_block(h);
            checked += 1;
            if let Some(v) = books.violation() {
                return (checked, Some(format!("at Bastion height {}: {v}", h.height)));
            }
        }
        source.for_each(|b| books.source_block(b));
        checked += 1;
        (checked, books.violation().map(|v| format!("at the last source block: {v}")))
    }
}

/// Both chains' books as far as the conservation check has read them: running totals (so an
/// id counted twice shows) and the ids behind them.
#[derive(Debug, Default)]
struct Books {
    /// Deposited to the bridge and paid out by it on the source; credited and withdrawn on
    /// Bastion.
    deposited: Micros,
    paid: Micros,
    credited_total: Micros,
    withdrawn: Micros,
    /// Deposits to the source chain's bridge, by source id.
    src_deposits: BTreeMap<SourceId, Micros>,
    /// Vouchers the source chain paid: id and amount.
    src_paid: BTreeMap<u64, Micros>,
    /// Deposits Bastion credited, by source id.
    credited: BTreeMap<SourceId, Micros>,
    /// Vouchers Bastion created (withdrawals): id and amount.
    vouchers: BTreeMap<u64, Micros>,
}

impl Books {
    fn source_block(&mut self, b: &SourceBlock) {
        for d in &b.deposits {
            self.deposited += d.amount;
            self.src_deposits.insert(d.source_id, d.amount);
        }
        for p in &b.payouts {
            self.paid += p.voucher.amount;
            self.src_paid.insert(p.voucher.id, p.voucher.amount);
        }
    }

    fn bastion_block(&mut self, h: &Height) {
        for (id, a) in &h.credited {
            self.credited_total += a;
            self.credited.insert(*id, *a);
        }
        for (id, a) in &h.withdrawn {
            self.withdrawn += a;
            self.vouchers.insert(*id, *a);
        }
    }

    /// The source's balance (deposited - paid) against what Bastion owes it (credited -
    /// withdrawn + uncredited source deposits + unpaid vouchers), if they differ.
    fn violation(&self) -> Option<String> {
        let balance = self.deposited - self.paid;
        let (credited, withdrawn) = (self.credited_total, self.withdrawn);
        let uncredited: Micros =
            self.src_deposits.iter().filter(|(id, _)| !self.credited.contains_key(id)).map(|(_, a)| *a).sum();
        let unpaid: Micros =
            self.vouchers.iter().filter(|(id, _)| !self.src_paid.contains_key(id)).map(|(_, a)| *a).sum();
        let owed = credited - withdrawn + uncredited + unpaid;
        (balance != owed).then(|| {
            format!(
                "source balance {balance} != credited {credited} - withdrawn {withdrawn} + uncredited {uncredited} + unpaid {unpaid}"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use bastion_bridge::Payout;
    use bastion_types::{AccountId, AssetId, BridgeDeposit, Voucher};

    fn dep(id: u8, amount: Micros) -> BridgeDeposit {
        BridgeDeposit { source_id: SourceId([id; 32]), to: AccountId(1), asset: AssetId(0), amount }
    }

    fn source(
        height: u64,
        time_ms: u64,
        deposits: Vec<BridgeDeposit>,
        paid: &[(u64, Micros)],
    ) -> SourceBlock {
        SourceBlock {
            height,
            time_ms,
            deposits,
            payouts: paid
                .iter()
                .map(|(id, amount)| Payout {
                    voucher: Voucher {
                        id: *id,
                        account: AccountId(1),
                        asset: AssetId(0),
                        amount: *amount,
                        height: 1,
                    },
                    signers: 3,
                })
                .collect(),
            ..SourceBlock::default()
        }
    }

    /// A Bastion block at `time_ms`: credited (source id, amount), withdrawn (voucher, amount).
    type Block = (u64, Vec<(SourceId, Micros)>, Vec<(u64, Micros)>);

    fn figures(heights: Vec<Block>) -> BridgeFigures {
        BridgeFigures {
            heights: heights
                .into_iter()
                .map(|(t, credited, withdrawn)| Height {
                    height: t / 100,
                    timestamp_ms: t,
                    credited,
                    withdrawn,
                })
                .collect(),
            ..BridgeFigures::default()
        }
    }

    #[test]
    fn the_books_balance_only_when_every_credit_and_payout_has_its_counterpart() {
        let ledger =
            vec![source(1, 100, vec![dep(1, 50), dep(2, 30)], &[]), source(2, 400, vec![], &[(1, 20)])];
        // Credited after the source held them, a voucher of 20 paid after it was created.
        let good = figures(vec![
            (200, vec![(SourceId([1; 32]), 50)], vec![]),
            (300, vec![(SourceId([2; 32]), 30)], vec![(1, 20)]),
        ]);
        assert_eq!(good.conservation(&ledger), (3, None));
        // Credited before the source held it (deposit 3 never existed).
        let minted = figures(vec![(200, vec![(SourceId([3; 32]), 50)], vec![])]);
        assert!(minted.conservation(&ledger).1.unwrap().contains("at Bastion height 2"));
        // The same deposit credited twice.
        let twice = figures(vec![
            (200, vec![(SourceId([1; 32]), 50)], vec![]),
            (300, vec![(SourceId([1; 32]), 50)], vec![]),
        ]);
        assert!(twice.conservation(&ledger).1.is_some());
        // A different amount credited.
        let more = figures(vec![(200, vec![(SourceId([1; 32]), 60)], vec![])]);
        assert!(more.conservation(&ledger).1.is_some());
        // A payout of a voucher Bastion never created.
        let unpaid = figures(vec![(200, vec![(SourceId([1; 32]), 50)], vec![])]);
        assert!(unpaid.conservation(&ledger).1.unwrap().contains("at the last source block"));
    }
}
