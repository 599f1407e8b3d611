//! [`SimChain`], the simulated collateral chain the devnet runs: it takes deposits, pays
//! vouchers signed by 2/3 of the validators' stake (each voucher id once), and records every
//! block as a line of its ledger file.

use bastion_types::{
    AccountId, Approval, AssetId, BridgeDeposit, Micros, SourceId, Voucher, voucher_message,
};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::BridgeConfig;
use crate::inbox::{self, Submission};
use crate::ledger::{
    CONFIG_FILE, INBOX_DIR, LEDGER_FILE, LINE_BYTES_MAX, LedgerError, LedgerReader, Payout, REJECTED_DIR,
    Refusal, SOURCE_BLOCK_DEPOSITS_MAX, SOURCE_BLOCK_INBOX_FILES_MAX, SOURCE_BLOCK_VOUCHERS_MAX, SourceBlock,
    encode_line,
};
use crate::state::{LedgerState, StateError, Totals};

/// Domain separation tag of the simulated chain's deposit ids.
pub const SIM_DEPOSIT_DOMAIN: &[u8] = b"bastion/sim-deposit/v1";

/// Longest sleep of [`run`] between checks of its stop flag, ms.
const RUN_SLEEP_MS_MAX: u64 = 50;

/// Why the source chain refuses a voucher.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VoucherError {
    /// The valid signatures weigh less than 2/3 of stake.
    #[error("voucher signatures weigh {signed} of {total} stake; at least 2/3 is needed")]
    TooFewSignatures {
        /// Stake of the validators that signed.
        signed: u128,
        /// Total stake.
        total: u128,
    },
    /// A signature does not verify over this voucher on this chain (a wrong key, another
    /// voucher, another chain id).
    #[error("validator {validator}'s signature does not verify over this voucher for this chain")]
    BadSignature {
        /// The validator the approval names.
        validator: u16,
    },
    /// An approval names a validator the bridge does not know.
    #[error("signature by validator {0}, who is not in the bridge's validator set")]
    UnknownValidator(u16),
    /// Two approvals name the same validator.
    #[error("validator {0} signs the voucher twice")]
    DuplicateSigner(u16),
    /// The voucher id was paid already, or is queued for payment in the next block.
    #[error("voucher {0} was already paid or is queued for payment")]
    AlreadyPaid(u64),
    /// The voucher's amount is zero or negative.
    #[error("the voucher's amount is not positive")]
    NonPositive,
    /// The bridge holds less of the asset than the voucher pays.
    #[error(
        "the bridge holds {have} of the voucher's asset (after payouts already queued), the voucher pays {need}"
    )]
    InsufficientBridgeBalance {
        /// The bridge's balance of the asset, less payouts queued for the next block.
        have: Micros,
        /// The voucher's amount.
        need: Micros,
    },
    /// The next block's payouts are full.
    #[error("{limit} vouchers already wait for the next source block; submit again after it")]
    QueueFull {
        /// [`SOURCE_BLOCK_VOUCHERS_MAX`].
        limit: usize,
    },
}

/// Why the simulated chain could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// A file of the chain could not be read or written.
    #[error("bridge chain file {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The ledger could not be read back.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The ledger reads, but does not add up (a voucher paid twice, an overdraft).
    #[error("bridge ledger {path} is inconsistent: {source}")]
    Inconsistent {
        /// The ledger file.
        path: PathBuf,
        /// What does not add up.
        source: StateError,
    },
    /// `bridge.json` is missing pieces or invalid.
    #[error("bridge chain config {path}: {reason}")]
    BadConfig {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// [`SimChain::create`] found a ledger already there.
    #[error("a bridge ledger already exists at {0}; open the chain instead of creating it")]
    AlreadyExists(PathBuf),
    /// A deposit of zero or less.
    #[error("a deposit's amount must be positive, got {0}")]
    NonPositiveDeposit(Micros),
    /// The next block's deposits are full.
    #[error("the next source block already holds {limit} deposits; produce a block first")]
    BlockFull {
        /// [`SOURCE_BLOCK_DEPOSITS_MAX`].
        limit: usize,
    },
    /// A deposit would overflow the bridge's balance of its asset.
    #[error("a deposit of {amount} would overflow the bridge's balance of {asset}")]
    Overflow {
        /// The asset.
        asset: AssetId,
        /// The deposit.
        amount: Micros,
    },
    /// Something could not be encoded as JSON (a bug).
    #[error("cannot encode bridge chain data as JSON: {0}")]
    Encode(String),
    /// An earlier ledger write failed midway; only reopening the chain (which truncates a torn
    /// line) tells whether that block is on the ledger.
    #[error("an earlier write to the bridge ledger {0} failed; reopen the chain to recover")]
    Poisoned(PathBuf),
}

/// A voucher accepted for the next block.
#[derive(Clone, Debug)]
struct Queued {
    voucher: Voucher,
    signers: u16,
}

/// The simulated collateral chain: one process owns a chain directory and produces its
/// blocks; readers ([`FileSource`](crate::FileSource), [`read_ledger`](crate::read_ledger))
/// tail its ledger.
///
/// Deposits and vouchers are queued for the next block by [`SimChain::deposit`] and
/// [`SimChain::submit_voucher`] (or through the inbox), and are on the chain once
/// [`SimChain::produce_block`] has returned the block: a crash before that loses what was
/// queued directly (inbox files are kept and applied after a restart).
#[derive(Debug)]
pub struct SimChain {
    dir: PathBuf,
    ledger_path: PathBuf,
    ledger: std::fs::File,
    config: BridgeConfig,
    state: LedgerState,
    deposits: Vec<BridgeDeposit>,
    deposits_in: BTreeMap<AssetId, Micros>,
    vouchers: Vec<Queued>,
    vouchers_out: BTreeMap<AssetId, Micros>,
    voucher_ids: BTreeSet<u64>,
    /// Inbox files the ledger names (applied): never applied again, deleted when seen.
    applied: BTreeSet<String>,
    poisoned: bool,
}

impl SimChain {
    /// Creates a new chain in `dir` (created if needed): writes `bridge.json`, an empty ledger
    /// and the inbox. Refuses if `dir` already holds a ledger.
    pub fn create(dir: &Path, config: BridgeConfig) -> Result<SimChain, ChainError> {
        let config_path = dir.join(CONFIG_FILE);
        config.check().map_err(|reason| ChainError::BadConfig { path: config_path.clone(), reason })?;
        let ledger_path = dir.join(LEDGER_FILE);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ChainError::Io { path, source }
        };
        std::fs::create_dir_all(dir.join(INBOX_DIR).join(REJECTED_DIR)).map_err(io(dir))?;
        if ledger_path.exists() {
            return Err(ChainError::AlreadyExists(ledger_path));
        }
        let mut json = serde_json::to_vec_pretty(&config).map_err(|e| ChainError::Encode(e.to_string()))?;
        json.push(b'\n');
        let tmp = dir.join(format!("{CONFIG_FILE}.tmp"));
        let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        file.write_all(&json).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        drop(file);
        std::fs::rename(&tmp, &config_path).map_err(io(&config_path))?;
        let ledger = std::fs::OpenOptions::new().write(true).create_new(true).open(&ledger_path);
        let ledger = match ledger {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(ChainError::AlreadyExists(ledger_path));
            }
            Err(e) => return Err(io(&ledger_path)(e)),
        };
        ledger.sync_all().map_err(io(&ledger_path))?;
        drop(ledger);
        inbox::sync_dir(dir)?;
        tracing::info!(dir = %dir.display(), chain_id = %config.chain_id, "bridge source chain created");
        SimChain::open(dir)
    }

    /// Opens the chain in `dir`: reads `bridge.json`, replays the ledger (truncating a torn
    /// last line left by a crash) and deletes inbox files the ledger shows were applied.
    pub fn open(dir: &Path) -> Result<SimChain, ChainError> {
        let config = load_config(dir)?;
        let ledger_path = dir.join(LEDGER_FILE);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ChainError::Io { path, source }
        };
        let mut reader = LedgerReader::new(ledger_path.clone());
        let mut state = LedgerState::default();
        let mut applied = BTreeSet::new();
        loop {
            let chunk = reader.read(false)?;
            for block in &chunk.blocks {
                state
                    .apply(block)
                    .map_err(|source| ChainError::Inconsistent { path: ledger_path.clone(), source })?;
                applied.extend(block.inbox.iter().cloned());
            }
            if !chunk.more {
                break;
            }
        }
        debug_assert_eq!(reader.height(), state.height());
        let ledger = std::fs::OpenOptions::new().append(true).open(&ledger_path).map_err(io(&ledger_path))?;
        let len = ledger.metadata().map_err(io(&ledger_path))?.len();
        if len > reader.offset() {
            tracing::warn!(
                ledger = %ledger_path.display(),
                torn_bytes = len.saturating_sub(reader.offset()),
                "bridge ledger ends in a torn line (a crash mid-write); truncating it"
            );
            ledger.set_len(reader.offset()).map_err(io(&ledger_path))?;
            ledger.sync_all().map_err(io(&ledger_path))?;
        }
        std::fs::create_dir_all(dir.join(INBOX_DIR).join(REJECTED_DIR)).map_err(io(dir))?;
        let mut chain = SimChain {
            dir: dir.to_path_buf(),
            ledger_path,
            ledger,
            config,
            state,
            deposits: Vec::new(),
            deposits_in: BTreeMap::new(),
            vouchers: Vec::new(),
            vouchers_out: BTreeMap::new(),
            voucher_ids: BTreeSet::new(),
            applied,
            poisoned: false,
        };
        chain.delete_applied_inbox_files()?;
        Ok(chain)
    }

    /// The chain's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The chain's configuration.
    pub fn config(&self) -> &BridgeConfig {
        &self.config
    }

    /// Everything the ledger adds up to so far.
    pub fn state(&self) -> &LedgerState {
        &self.state
    }

    /// The last block's height (0: none yet).
    pub fn height(&self) -> u64 {
        self.state.height()
    }

    /// What the bridge holds of `asset`: deposits minus payouts, over produced blocks.
    pub fn bridge_balance(&self, asset: AssetId) -> Micros {
        self.state.bridge_balance(asset)
    }

    /// Whether voucher `voucher_id` was paid in a produced block.
    pub fn paid(&self, voucher_id: u64) -> bool {
        self.state.paid(voucher_id)
    }

    /// What payouts credited to `account` in `asset` on this chain.
    pub fn payee_balance(&self, account: AccountId, asset: AssetId) -> Micros {
        self.state.payee_balance(account, asset)
    }

    /// Counts and sums over produced blocks.
    pub fn totals(&self) -> Totals {
        self.state.totals()
    }

    /// Queues a deposit of `amount` of `asset`, to be credited to `to` on Bastion, for the
    /// next block, and returns its source id (BLAKE3 over [`SIM_DEPOSIT_DOMAIN`], the chain
    /// id, the block height and the position in the block it goes into, and its fields:
    /// unique within the chain, and the same every time the same ledger is built).
    pub fn deposit(&mut self, to: AccountId, asset: AssetId, amount: Micros) -> Result<SourceId, ChainError> {
        if amount <= 0 {
            return Err(ChainError::NonPositiveDeposit(amount));
        }
        if self.deposits.len() >= SOURCE_BLOCK_DEPOSITS_MAX {
            return Err(ChainError::BlockFull { limit: SOURCE_BLOCK_DEPOSITS_MAX });
        }
        let queued = self.deposits_in.get(&asset).copied().unwrap_or(0);
        let in_after = queued.checked_add(amount).ok_or(ChainError::Overflow { asset, amount })?;
        self.bridge_balance(asset).checked_add(in_after).ok_or(ChainError::Overflow { asset, amount })?;
        let height = self.height().saturating_add(1);
        let index = u64::try_from(self.deposits.len()).unwrap_or(u64::MAX);
        let source_id = sim_source_id(&self.config.chain_id, height, index, to, asset, amount);
        self.deposits.push(BridgeDeposit { source_id, to, asset, amount });
        self.deposits_in.insert(asset, in_after);
        Ok(source_id)
    }

    /// Checks `voucher` and its `approvals` now and queues it for payment in the next block:
    /// the approvals must be valid signatures over `voucher_message(chain_id, voucher)` by
    /// distinct known validators weighing at least 2/3 of stake, the voucher id never paid nor
    /// queued, the amount positive and within the bridge's balance (less payouts already
    /// queued).
    pub fn submit_voucher(&mut self, voucher: &Voucher, approvals: &[Approval]) -> Result<(), VoucherError> {
        if voucher.amount <= 0 {
            return Err(VoucherError::NonPositive);
        }
        if self.state.paid(voucher.id) || self.voucher_ids.contains(&voucher.id) {
            return Err(VoucherError::AlreadyPaid(voucher.id));
        }
        if self.vouchers.len() >= SOURCE_BLOCK_VOUCHERS_MAX {
            return Err(VoucherError::QueueFull { limit: SOURCE_BLOCK_VOUCHERS_MAX });
        }
        let signed = verify_approvals(&self.config, voucher, approvals)?;
        if !self.config.is_quorum(signed) {
            return Err(VoucherError::TooFewSignatures { signed, total: self.config.total_stake() });
        }
        let out = self.vouchers_out.get(&voucher.asset).copied().unwrap_or(0);
        let have = self.bridge_balance(voucher.asset).saturating_sub(out);
        if have < voucher.amount {
            return Err(VoucherError::InsufficientBridgeBalance { have, need: voucher.amount });
        }
        // At most one approval per validator, and validators fit a u16 index.
        let signers = u16::try_from(approvals.len()).unwrap_or(u16::MAX);
        self.vouchers.push(Queued { voucher: voucher.clone(), signers });
        self.vouchers_out.insert(voucher.asset, out.saturating_add(voucher.amount));
        self.voucher_ids.insert(voucher.id);
        Ok(())
    }

    /// Produces the next block at `time_ms` (never earlier than the previous block's): applies
    /// the inbox, includes the queued deposits and pays the queued vouchers (re-checked: each
    /// id once, within the bridge's balance; anything else is refused with its reason),
    /// appends the block's line to the ledger and fsyncs it, then deletes the applied inbox
    /// files. Produces empty blocks too: the height advances with time.
    pub fn produce_block(&mut self, time_ms: u64) -> Result<SourceBlock, ChainError> {
        if self.poisoned {
            return Err(ChainError::Poisoned(self.ledger_path.clone()));
        }
        let (refused, applied) = self.apply_inbox()?;
        let block = self.next_block(time_ms, refused, applied);
        self.state
            .check(&block)
            .map_err(|source| ChainError::Inconsistent { path: self.ledger_path.clone(), source })?;
        let line = encode_line(&block).map_err(|e| ChainError::Encode(e.to_string()))?;
        if line.len() > LINE_BYTES_MAX {
            return Err(ChainError::Encode(format!(
                "block {} is {} bytes, over the {LINE_BYTES_MAX}-byte line limit",
                block.height,
                line.len()
            )));
        }
        // One write of the whole line, then fsync: a crash leaves at most a torn last line,
        // which readers ignore and `open` truncates.
        let written = self.ledger.write_all(&line).and_then(|()| self.ledger.sync_data());
        if let Err(source) = written {
            self.poisoned = true;
            return Err(ChainError::Io { path: self.ledger_path.clone(), source });
        }
        self.state
            .apply(&block)
            .map_err(|source| ChainError::Inconsistent { path: self.ledger_path.clone(), source })?;
        self.deposits_in.clear();
        self.vouchers_out.clear();
        self.voucher_ids.clear();
        self.applied.extend(block.inbox.iter().cloned());
        self.delete_applied_inbox_files()?;
        tracing::debug!(
            height = block.height,
            deposits = block.deposits.len(),
            payouts = block.payouts.len(),
            refused = block.refused.len(),
            "bridge source block"
        );
        Ok(block)
    }

    /// Takes the inbox's files in name order, up to the per-block limit: deposits and vouchers
    /// are queued, refused vouchers returned with their reasons, unparsable files rejected.
    /// Returns the refusals and the names of the files applied.
    fn apply_inbox(&mut self) -> Result<(Vec<Refusal>, Vec<String>), ChainError> {
        let inbox = self.dir.join(INBOX_DIR);
        let names = inbox::list(&inbox)?;
        let mut refused = Vec::new();
        let mut applied = Vec::new();
        for name in names.into_iter().take(SOURCE_BLOCK_INBOX_FILES_MAX) {
            if self.applied.contains(&name) {
                // Already on the ledger (its deletion failed earlier): not applied again.
                continue;
            }
            // A file that cannot be read or moved now stays, and this block takes no later
            // file: what was queued from earlier files stays consistent with `applied`.
            let submission = match inbox::read(&inbox, &name) {
                Ok(Ok(s)) => s,
                Ok(Err(reason)) => match inbox::reject(&inbox, &name, &reason) {
                    Ok(()) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "bridge inbox: cannot reject a submission; retrying next block");
                        break;
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "bridge inbox: cannot read a submission; retrying next block");
                    break;
                }
            };
            match submission {
                Submission::Deposit { to, asset, amount } => match self.deposit(to, asset, amount) {
                    Ok(_) => applied.push(name),
                    // The block is full: the file waits for the next one.
                    Err(ChainError::BlockFull { .. }) => break,
                    Err(e) => {
                        if let Err(e) = inbox::reject(&inbox, &name, &e.to_string()) {
                            tracing::warn!(error = %e, "bridge inbox: cannot reject a submission; retrying next block");
                            break;
                        }
                    }
                },
                Submission::Voucher { voucher, approvals } => match self.submit_voucher(&voucher, &approvals)
                {
                    Ok(()) => applied.push(name),
                    Err(VoucherError::QueueFull { .. }) => break,
                    Err(e) => {
                        refused.push(Refusal { voucher_id: voucher.id, reason: e.to_string() });
                        applied.push(name);
                    }
                },
            }
        }
        Ok((refused, applied))
    }

    /// Builds the next block from the queues (emptying them), re-checking each voucher against
    /// the balances after this block's deposits and the vouchers paid before it.
    fn next_block(&mut self, time_ms: u64, mut refused: Vec<Refusal>, inbox: Vec<String>) -> SourceBlock {
        let deposits = std::mem::take(&mut self.deposits);
        let mut balances: BTreeMap<AssetId, Micros> = BTreeMap::new();
        for d in &deposits {
            let b = balances.entry(d.asset).or_insert_with(|| self.state.bridge_balance(d.asset));
            // `deposit` checked this sum does not overflow.
            *b = b.saturating_add(d.amount);
        }
        let mut payouts = Vec::new();
        let mut paid_here = BTreeSet::new();
        for Queued { voucher, signers } in std::mem::take(&mut self.vouchers) {
            let b = balances.entry(voucher.asset).or_insert_with(|| self.state.bridge_balance(voucher.asset));
            let reason = if self.state.paid(voucher.id) || paid_here.contains(&voucher.id) {
                Some(VoucherError::AlreadyPaid(voucher.id))
            } else if *b < voucher.amount {
                Some(VoucherError::InsufficientBridgeBalance { have: *b, need: voucher.amount })
            } else {
                None
            };
            match reason {
                Some(e) => refused.push(Refusal { voucher_id: voucher.id, reason: e.to_string() }),
                None => {
                    *b = b.saturating_sub(voucher.amount);
                    paid_here.insert(voucher.id);
                    payouts.push(Payout { voucher, signers });
                }
            }
        }
        SourceBlock {
            height: self.state.height().saturating_add(1),
            time_ms: time_ms.max(self.state.time_ms()),
            deposits,
            payouts,
            refused,
            inbox,
        }
    }

    /// Deletes the inbox files the ledger names; a file that cannot be deleted is logged and
    /// skipped by later blocks (its name stays in `applied`).
    fn delete_applied_inbox_files(&mut self) -> Result<(), ChainError> {
        let inbox = self.dir.join(INBOX_DIR);
        let mut deleted = false;
        for name in inbox::list(&inbox)? {
            if !self.applied.contains(&name) {
                continue;
            }
            match std::fs::remove_file(inbox.join(&name)) {
                Ok(()) => deleted = true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(
                    file = %inbox.join(&name).display(),
                    error = %e,
                    "bridge inbox: cannot delete an applied submission; it will not be applied again"
                ),
            }
        }
        if deleted {
            inbox::sync_dir(&inbox)?;
        }
        Ok(())
    }
}

/// Reads and checks `<dir>/bridge.json`.
pub fn load_config(dir: &Path) -> Result<BridgeConfig, ChainError> {
    let path = dir.join(CONFIG_FILE);
    let bytes = std::fs::read(&path).map_err(|source| ChainError::Io { path: path.clone(), source })?;
    let config: BridgeConfig = serde_json::from_slice(&bytes)
        .map_err(|e| ChainError::BadConfig { path: path.clone(), reason: e.to_string() })?;
    config.check().map_err(|reason| ChainError::BadConfig { path, reason })?;
    Ok(config)
}

/// Checks `approvals` of `voucher` against the validator set of `config` and returns the stake
/// that signed: every approval must name a distinct known validator and verify (ed25519,
/// ZIP-215) over `voucher_message(config.chain_id, voucher)`. Whether that stake is a quorum
/// is the caller's question ([`BridgeConfig::is_quorum`]).
pub fn verify_approvals(
    config: &BridgeConfig,
    voucher: &Voucher,
    approvals: &[Approval],
) -> Result<u128, VoucherError> {
    // Cheap checks first, so a submission with many bogus approvals costs no verifications.
    let mut seen = BTreeSet::new();
    for a in approvals {
        let index = a.validator.0;
        if usize::from(index) >= config.validators.len() {
            return Err(VoucherError::UnknownValidator(index));
        }
        if !seen.insert(index) {
            return Err(VoucherError::DuplicateSigner(index));
        }
    }
    let message = voucher_message(&config.chain_id, voucher);
    let mut signed: u128 = 0;
    for a in approvals {
        let index = a.validator.0;
        let Some(v) = config.validators.get(usize::from(index)) else {
            return Err(VoucherError::UnknownValidator(index));
        };
        let valid = ed25519_zebra::VerificationKey::try_from(v.key)
            .and_then(|k| k.verify(&ed25519_zebra::Signature::from(a.signature), &message))
            .is_ok();
        if !valid {
            return Err(VoucherError::BadSignature { validator: index });
        }
        signed = signed.saturating_add(u128::from(v.stake));
    }
    Ok(signed)
}

/// The simulated chain's id of the deposit at position `index` of block `height`:
/// `BLAKE3(SIM_DEPOSIT_DOMAIN | len(chain_id) as u8 | chain_id | height (u64 BE) |
/// index (u64 BE) | to (u64 BE) | asset (u16 BE) | amount (i128 BE))`.
pub fn sim_source_id(
    chain_id: &str,
    height: u64,
    index: u64,
    to: AccountId,
    asset: AssetId,
    amount: Micros,
) -> SourceId {
    let mut h = blake3::Hasher::new();
    h.update(SIM_DEPOSIT_DOMAIN);
    let id = chain_id.as_bytes();
    let id = id.get(..id.len().min(usize::from(u8::MAX))).unwrap_or_default();
    h.update(&[u8::try_from(id.len()).unwrap_or(u8::MAX)]);
    h.update(id);
    h.update(&height.to_be_bytes());
    h.update(&index.to_be_bytes());
    h.update(&to.0.to_be_bytes());
    h.update(&asset.0.to_be_bytes());
    h.update(&amount.to_be_bytes());
    SourceId(*h.finalize().as_bytes())
}

/// Runs the chain in `dir` until `stop` is set: opens it and produces a block every
/// `block_ms` (from `bridge.json`) at the time `clock` gives (ms since the Unix epoch). If it
/// falls behind (a suspended process) it produces one block and resumes the cadence, rather
/// than a burst. Returns the first error; the devnet runs it on its own thread:
/// `std::thread::spawn(move || bastion_bridge::run(dir, stop, clock))`.
pub fn run(dir: PathBuf, stop: Arc<AtomicBool>, mut clock: impl FnMut() -> u64) -> Result<(), ChainError> {
    let mut chain = SimChain::open(&dir)?;
    let block_ms = chain.config().block_ms;
    tracing::info!(
        dir = %dir.display(),
        height = chain.height(),
        block_ms,
        "bridge source chain running"
    );
    let mut next_ms = clock();
    while !stop.load(Ordering::Relaxed) {
        let now = clock();
        if now >= next_ms {
            chain.produce_block(now)?;
            next_ms = next_ms.saturating_add(block_ms);
            if next_ms <= now {
                next_ms = now.saturating_add(block_ms);
            }
        }
        let wait_ms = next_ms.saturating_sub(now).clamp(1, RUN_SLEEP_MS_MAX);
        std::thread::sleep(std::time::Duration::from_millis(wait_ms));
    }
    tracing::info!(dir = %dir.display(), height = chain.height(), "bridge source chain stopped");
    Ok(())
}
