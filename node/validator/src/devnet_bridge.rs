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
use std::collections::{BTreeMap, BTreeSet};
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
        let mut s = 0usize; // source blocks applied
        let (mut src_deposited, mut src_paid): (Micros, Micros) = (0, 0);
        let mut src_deposits: BTreeMap<SourceId, Micros> = BTreeMap::new();
        let mut src_paid_ids: BTreeSet<u64> = BTreeSet::new();
        let (mut credited, mut withdrawn): (Micros, Micros) = (0, 0);
        let mut credited_ids: BTreeMap<SourceId, Micros> = BTreeMap::new();
        let mut vouchers: BTreeMap<u64, Micros> = BTreeMap::new();
        let mut checked = 0u64;
        let check = |src_deposited: Micros,
                     src_paid: Micros,
                     src_deposits: &BTreeMap<SourceId, Micros>,
                     src_paid_ids: &BTreeSet<u64>,
                     credited: Micros,
                     withdrawn: Micros,
                     credited_ids: &BTreeMap<SourceId, Micros>,
                     vouchers: &BTreeMap<u64, Micros>|
         -> Option<String> {
            let uncredited: Micros =
                src_deposits.iter().filter(|(id, _)| !credited_ids.contains_key(id)).map(|(_, a)| *a).sum();
            let unpaid: Micros =
                vouchers.iter().filter(|(id, _)| !src_paid_ids.contains(id)).map(|(_, a)| *a).sum();
            let balance = src_deposited - src_paid;
            let owed = credited - withdrawn + uncredited + unpaid;
            (balance != owed).then(|| {
                format!(
                    "source balance {balance} != credited {credited} - withdrawn {withdrawn} + uncredited {uncredited} + unpaid {unpaid}"
                )
            })
        };
        for h in &self.heights {
            while let Some(b) = ledger.get(s).filter(|b| b.time_ms <= h.timestamp_ms) {
                for d in &b.deposits {
                    src_deposited += d.amount;
                    src_deposits.insert(d.source_id, d.amount);
                }
                for p in &b.payouts {
                    src_paid += p.voucher.amount;
                    src_paid_ids.insert(p.voucher.id);
                }
                s += 1;
            }
            for (id, a) in &h.credited {
                credited += a;
                credited_ids.insert(*id, *a);
            }
            for (id, a) in &h.withdrawn {
                withdrawn += a;
                vouchers.insert(*id, *a);
            }
            checked += 1;
            if let Some(v) = check(
                src_deposited,
                src_paid,
                &src_deposits,
                &src_paid_ids,
                credited,
                withdrawn,
                &credited_ids,
                &vouchers,
            ) {
                return (checked, Some(format!("at Bastion height {}: {v}", h.height)));
            }
        }
        for b in ledger.get(s..).unwrap_or_default() {
            for d in &b.deposits {
                src_deposited += d.amount;
                src_deposits.insert(d.source_id, d.amount);
            }
            for p in &b.payouts {
                src_paid += p.voucher.amount;
                src_paid_ids.insert(p.voucher.id);
            }
        }
        checked += 1;
        let end = check(
            src_deposited,
            src_paid,
            &src_deposits,
            &src_paid_ids,
            credited,
            withdrawn,
            &credited_ids,
            &vouchers,
        );
        (checked, end.map(|v| format!("at the last source block: {v}")))
    }
}
