//! The node's durable chain state: the exchange state, the block log that makes it durable, and
//! the snapshots that make recovery fast.
//!
//! A finalized block is executed ([`Store::execute`]), its log entry (the block, its events and
//! the state root after it) is appended, and [`Store::commit`] makes every executed block
//! durable with one `fdatasync` (group commit). Only then is a height *durable*: the only
//! heights a node may acknowledge. Every `snapshot_every` durable blocks a copy-on-write view of
//! the state is handed to a background thread that serializes and writes it, so execution never
//! waits for the disk; once two or more snapshots are kept, log segments older than the oldest
//! of them are deleted (with a single snapshot the whole log stays: genesis is the fallback).
//!
//! [`Store::open`] recovers: it opens the newest snapshot that validates and whose successors
//! the log holds without a gap, replays the log after it and checks the state root at every
//! replayed height against the logged one. Replay skips what the logged execution already
//! answered ([`State::replay_block`]: the checks that can only refuse a block, and the margin
//! sweep when the logged events show it found nothing); the root comparison is what makes
//! that safe, and a mismatch replays again from the same base in full before anything is
//! concluded. When the data cannot be made consistent it refuses to start with an error
//! naming the file and height; it never starts on a state its peers do not share.
//!
//! # Recovery time and the snapshot cadence
//!
//! The worst case is a crash just before a snapshot becomes durable: recovery loads the
//! previous one and replays everything after it, `snapshot_every` blocks plus those executed
//! while the lost snapshot was being written:
//!
//! `T(C) = S + L + (C + W / b) * r`
//!
//! with `S` the scan of the log, `L` the image load, `C` the cadence, `W` the time to
//! serialize and write a snapshot, `b` the block interval and `r` the replay cost of a block.
//! (A snapshot due while the previous one is still being written is skipped and taken as soon
//! as that one is done, so where `W / b` exceeds `C`, `C` in the formula is `W / b`.) The
//! default cadence ([`DEFAULT_SNAPSHOT_EVERY`]) is chosen from those, measured in
//! `bastion-perf storage`.

use bastion_exchange::{
    BlockError, BlockOutcome, Genesis, IMAGE_LAYOUT, ImageError, ImageScratch, State, StateRoot,
    sweep_may_have_acted,
};
use bastion_storage::{
    DataDir, DirError, Faults, LogConfig, LogError, SnapshotError, SnapshotMeta, SnapshotStore,
    SnapshotWriter,
    snapshot::{AlignedVec, Paced, SnapshotFinish, StagedSnapshotJob},
};
use bastion_types::{Block, Event};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

pub use bastion_storage::{BlockLog, Damage};

/// Version of a log entry's encoding (its first byte). Version 2 added `parent_root` and `link`;
/// version 3 the `witness`.
pub const ENTRY_VERSION: u8 = 3;

/// 32 opaque bytes the caller attaches to each executed block and gets back from the log:
/// consensus stores the parent block's digest there, so its chain of digests can be rebuilt
/// from any suffix of the log (the log is pruned behind snapshots).
pub type ChainLink = [u8; 32];

/// Blocks between snapshots by default. Chosen from the costs measured in `bastion-perf
/// storage` (1M accounts, 50 transactions a block, the 2-core box shared with other work): a
/// logged block replays in 0.3 to 0.6 ms, the image loads in 0.25 to 0.55 s and about 110
/// blocks executed back to back are written while a snapshot is, so the worst case of the
/// module documentation is 0.5 to 0.95 s at 500 (and 0.7 to 1.3 s at 1000, the default
/// before). What a snapshot costs meanwhile, 96 MB written and about 0.3 s of CPU on the
/// snapshot threads, every 500 blocks, does not show in block latency (see [`SnapshotWriter`]).
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 500;

/// How many times faster than its writeback a snapshot's copies in memory may go
/// ([`StoreConfig::snapshot_write_bytes_per_s`]): 512 MiB/s by default, a tenth or so of
/// what one core copies, so the serialization and the copy into the file of a 1M-account
/// image take about 0.2 s each instead of 0.04 s, and the blocks executed meanwhile are not
/// slowed by half (`bastion-perf storage`).
pub const SNAPSHOT_COPY_PACE: u64 = 4;

/// How the store keeps its files.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// A snapshot is started every this many durable blocks (0: never).
    pub snapshot_every: u64,
    /// Snapshots kept; the log is kept back to the oldest of them.
    pub keep_snapshots: usize,
    /// Size at which a log segment is closed.
    pub segment_bytes: u64,
    /// Snapshot writeback pace in bytes/s (0: unpaced). A snapshot written at full speed
    /// onto the log's device delays the log's `fdatasync`s (block latency p99 4x in suite
    /// `storage`); paced, it leaves the device room for them. The snapshot's copies in memory
    /// (serializing the image, copying it into the file) are paced at
    /// [`SNAPSHOT_COPY_PACE`] times this: at full speed they take the memory bandwidth the
    /// execution thread needs.
    pub snapshot_write_bytes_per_s: u64,
    /// Injected I/O failures (tests and soak runs); [`Faults::none`] in production.
    pub faults: Arc<Faults>,
    /// Recovery replays every logged block in full, as live execution runs it (every check,
    /// every signature, the margin sweep), instead of with [`State::replay_block`]'s
    /// shortcuts. For tests and measurements; either way every root is compared.
    pub exact_replay: bool,
}

impl StoreConfig {
    /// The pace of a snapshot's copies in memory (bytes/s, 0: unpaced).
    fn copy_rate(&self) -> u64 {
        self.snapshot_write_bytes_per_s.saturating_mul(SNAPSHOT_COPY_PACE)
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            snapshot_every: DEFAULT_SNAPSHOT_EVERY,
            keep_snapshots: 3,
            segment_bytes: 64 << 20,
            snapshot_write_bytes_per_s: 128 << 20,
            faults: Faults::none(),
            exact_replay: false,
        }
    }
}

/// Why the store cannot go on. Every variant names what to look at.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be opened or locked.
    #[error(transparent)]
    Dir(#[from] DirError),
    /// The block log failed.
    #[error("block log: {0}")]
    Log(#[from] LogError),
    /// A snapshot operation failed.
    #[error("snapshot: {0}")]
    Snapshot(#[from] SnapshotError),
    /// The data dir was made for another chain.
    #[error(
        "data dir {path} belongs to a different genesis ({found}, this node's is {expected}); point \
         --data-dir elsewhere or remove it"
    )]
    Genesis {
        /// The genesis file in the data dir.
        path: PathBuf,
        /// Hash found there.
        found: String,
        /// Hash of the genesis this node runs.
        expected: String,
    },
    /// The genesis itself is invalid.
    #[error("genesis is invalid: {0}")]
    BadGenesis(String),
    /// The state cannot be rebuilt: blocks are missing.
    #[error(
        "cannot rebuild the state: {reason}; restore the data dir from a backup or resync it from a \
         peer"
    )]
    Unrecoverable {
        /// What is missing, with the files involved.
        reason: String,
    },
    /// A log entry could not be decoded.
    #[error("block log entry at height {height} in {dir} cannot be decoded: {reason}")]
    Decode {
        /// Height of the entry.
        height: u64,
        /// The log directory.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
    /// Replaying a logged block gave another state root than the one logged.
    #[error(
        "state root mismatch at height {height} replaying {dir} on top of {base}: logged {logged}, \
         computed {computed}; this node's data is inconsistent and it must not rejoin with it"
    )]
    RootMismatch {
        /// Height of the block.
        height: u64,
        /// The log directory.
        dir: PathBuf,
        /// What the replay started from (a snapshot file or genesis).
        base: String,
        /// Root in the log.
        logged: String,
        /// Root computed by replay.
        computed: String,
    },
    /// A logged block was refused on replay.
    #[error("replaying height {height} from {dir}: {error}")]
    Replay {
        /// Height of the block.
        height: u64,
        /// The log directory.
        dir: PathBuf,
        /// Why the exchange refused it.
        error: BlockError,
    },
    /// The block was refused by the exchange (the state is unchanged).
    #[error(transparent)]
    Block(#[from] BlockError),
    /// An earlier storage failure stopped the store.
    #[error("the store stopped after an earlier failure ({0}); restart the node to recover")]
    Stopped(String),
}

/// One block as the log holds it: the block, what executing it produced, the state roots
/// before and after it, and the caller's chain link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// The finalized block.
    pub block: Block,
    /// Its execution results.
    pub events: Vec<Event>,
    /// The state root before it (replay checks it: a log spliced from another chain is refused
    /// at the splice).
    pub parent_root: StateRoot,
    /// The state root after it.
    pub root: StateRoot,
    /// The caller's link (see [`ChainLink`]); zero when the caller attached none.
    pub link: ChainLink,
    /// Opaque bytes the caller needs to rebuild what it ordered from the log (consensus keeps
    /// each transaction's public key and signature here); empty when it attached none.
    pub witness: Vec<u8>,
}

impl LogEntry {
    /// The entry's bytes: a version byte, then postcard.
    pub fn encode(
        block: &Block,
        events: &[Event],
        parent_root: &StateRoot,
        root: &StateRoot,
        link: &ChainLink,
    ) -> Vec<u8> {
        Self::encode_witnessed(block, events, parent_root, root, link, &[])
    }

    /// [`LogEntry::encode`] with the caller's witness bytes.
    pub fn encode_witnessed(
        block: &Block,
        events: &[Event],
        parent_root: &StateRoot,
        root: &StateRoot,
        link: &ChainLink,
        witness: &[u8],
    ) -> Vec<u8> {
        #[derive(Serialize)]
        struct Borrowed<'a> {
            block: &'a Block,
            events: &'a [Event],
            parent_root: &'a StateRoot,
            root: &'a StateRoot,
            link: &'a ChainLink,
            witness: &'a [u8],
        }
        let mut out = vec![ENTRY_VERSION];
        // Serializing plain data into a Vec cannot fail; an empty body would fail to decode,
        // never decode wrongly.
        match postcard::to_extend(&Borrowed { block, events, parent_root, root, link, witness }, out) {
            Ok(v) => out = v,
            Err(_) => out = vec![ENTRY_VERSION],
        }
        out
    }

    /// Decodes [`LogEntry::encode`]'s bytes.
    pub fn decode(bytes: &[u8]) -> Result<LogEntry, String> {
        match bytes.split_first() {
            Some((&ENTRY_VERSION, body)) => postcard::from_bytes(body).map_err(|e| e.to_string()),
            Some((v, _)) => Err(format!("entry version {v}, this build reads {ENTRY_VERSION}")),
            None => Err("empty entry".into()),
        }
    }
}

/// What [`Store::open`] found and did.
#[derive(Clone, Debug, Default)]
pub struct Recovery {
    /// The snapshot recovery started from (`None`: genesis).
    pub snapshot: Option<SnapshotMeta>,
    /// Blocks replayed from the log after it.
    pub replayed: u64,
    /// Height of the recovered state.
    pub height: u64,
    /// Its state root.
    pub root: StateRoot,
    /// Bytes of a torn record cut from the end of the log.
    pub torn_tail_bytes: u64,
    /// Damaged log regions found (all below the recovered base, or recovery would have failed).
    pub log_damage: Vec<Damage>,
    /// Snapshots that failed validation or could not be used, with why.
    pub skipped_snapshots: Vec<String>,
    /// Time to open and validate the snapshot and rebuild the state from it.
    pub load: Duration,
    /// Time to replay the log.
    pub replay: Duration,
    /// Replayed blocks whose margin sweep ran (the others' logged events showed it found
    /// nothing; see [`State::replay_block`]).
    pub swept: u64,
    /// Why the replay with shortcuts was abandoned and the log replayed again in full from
    /// the same base (`None`: it was not). `load` and `replay` include both attempts.
    pub exact_after: Option<String>,
}

impl Recovery {
    /// One line per finding, for the node's log.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        match &self.snapshot {
            Some(s) => lines.push(format!(
                "recovered height {} from snapshot {} (height {}, {:.1} ms) + {} logged blocks ({:.1} ms)",
                self.height,
                s.path.display(),
                s.height,
                self.load.as_secs_f64() * 1e3,
                self.replayed,
                self.replay.as_secs_f64() * 1e3
            )),
            None => lines.push(format!(
                "recovered height {} from genesis + {} logged blocks ({:.1} ms)",
                self.height,
                self.replayed,
                self.replay.as_secs_f64() * 1e3
            )),
        }
        if self.torn_tail_bytes > 0 {
            lines.push(format!(
                "cut a torn record of {} bytes from the end of the log (never reported durable)",
                self.torn_tail_bytes
            ));
        }
        for d in &self.log_damage {
            lines.push(format!(
                "log damage in {} at offset {} ({} bytes, after height {:?}): {} (not needed: below the \
                 recovered base)",
                d.path.display(),
                d.offset,
                d.len,
                d.after_height,
                d.reason
            ));
        }
        for s in &self.skipped_snapshots {
            lines.push(format!("skipped snapshot: {s}"));
        }
        if let Some(why) = &self.exact_after {
            lines.push(format!(
                "replayed the log again in full after the replay with shortcuts failed: {why}"
            ));
        }
        lines
    }
}

/// Counters of a running store.
#[derive(Clone, Debug, Default)]
pub struct StoreStats {
    /// Blocks executed since open.
    pub blocks: u64,
    /// Group commits since open.
    pub commits: u64,
    /// Snapshots written since open.
    pub snapshots_written: u64,
    /// Snapshots not started because the previous one was still being written.
    pub snapshots_skipped_busy: u64,
    /// Height of the newest snapshot written or found.
    pub last_snapshot_height: u64,
    /// Snapshot failures (the log still holds everything; recent ones only).
    pub snapshot_errors: Vec<String>,
    /// Log segments deleted after snapshots made them unnecessary.
    pub segments_pruned: u64,
}

/// The durable exchange state of one node. Holds the data dir's lock while open.
#[derive(Debug)]
pub struct Store {
    dir: DataDir,
    log: BlockLog,
    writer: SnapshotWriter,
    /// Heights of the snapshots on disk, oldest first (retention mirror of the writer's store).
    retained: VecDeque<u64>,
    state: State,
    cfg: StoreConfig,
    stats: StoreStats,
    /// Height recovery started from (durable by being in a snapshot or genesis).
    base: u64,
    stopped: Option<String>,
    /// The memory of the last snapshot's image records, kept for the next snapshot to copy
    /// its records into (see [`ImageScratch`]): one image's account and position records, 96
    /// MB for 1M accounts; empty until the first snapshot.
    scratch: Arc<Mutex<ImageScratch>>,
}

/// Lower-case hex of `bytes` (roots and hashes in messages).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn genesis_hash(g: &Genesis) -> Result<String, StoreError> {
    let json = serde_json::to_vec(g).map_err(|e| StoreError::BadGenesis(e.to_string()))?;
    Ok(hex(blake3::hash(&json).as_bytes()))
}

fn check_genesis(dir: &DataDir, genesis: &Genesis) -> Result<(), StoreError> {
    let expected = genesis_hash(genesis)?;
    let path = dir.root().join("GENESIS");
    let io = |op: &'static str, path: &Path, source| {
        StoreError::Dir(DirError::Io { path: path.to_path_buf(), op, source })
    };
    match std::fs::read_to_string(&path) {
        Ok(found) if found.trim() == expected => Ok(()),
        Ok(found) => Err(StoreError::Genesis { path, found: found.trim().to_string(), expected }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, format!("{expected}\n")).map_err(|e| io("write", &tmp, e))?;
            std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| io("sync", &tmp, e))?;
            std::fs::rename(&tmp, &path).map_err(|e| io("rename", &path, e))?;
            bastion_storage::faults::sync_dir(&Faults::default(), dir.root())
                .map_err(|e| io("sync", dir.root(), e))?;
            Ok(())
        }
        Err(e) => Err(io("read", &path, e)),
    }
}

/// Whether the log holds every height in `after+1 ..= tip` (nothing to hold when `tip <= after`).
fn log_covers(log: &BlockLog, gaps: &[std::ops::RangeInclusive<u64>], after: u64) -> Result<(), String> {
    let Some(tip) = log.last_height() else { return Ok(()) };
    if tip <= after {
        return Ok(());
    }
    let first = log.first_height().unwrap_or(tip);
    if first > after.saturating_add(1) {
        return Err(format!("the log starts at height {first}, after height {}", after.saturating_add(1)));
    }
    if let Some(g) = gaps.iter().find(|g| *g.end() > after) {
        return Err(format!("the log is missing heights {}..={} (damaged)", g.start(), g.end()));
    }
    Ok(())
}

/// Opens, validates and loads the snapshot `file`: the state it holds, which must be the
/// height and root its header names, and its header. `Err` says why not, naming the file.
fn load_snapshot(snaps: &SnapshotStore, file: &Path) -> Result<(State, SnapshotMeta), String> {
    let snap = snaps.open_snapshot(file, IMAGE_LAYOUT).map_err(|e| e.to_string())?;
    let state = State::from_image_bytes(snap.payload()).map_err(|e| format!("{}: {e}", file.display()))?;
    let meta = snap.meta();
    if state.height != meta.height || state.state_root() != meta.root {
        return Err(format!(
            "{}: holds height {} root {}, its header says height {} root {}",
            file.display(),
            state.height,
            hex(&state.state_root()),
            meta.height,
            hex(&meta.root)
        ));
    }
    Ok((state, meta.clone()))
}

/// What [`replay`] did.
#[derive(Clone, Copy, Debug, Default)]
struct Replayed {
    /// Blocks replayed.
    blocks: u64,
    /// Of those, blocks whose margin sweep ran.
    swept: u64,
}

/// Replays every block the log holds after `state`'s height onto it, comparing the state root
/// before and after each with the logged ones. With `shortcuts`, each block by
/// [`State::replay_block`] (what the logged execution already answered is not done again),
/// else by [`State::apply_block`]. On an error `state` is at some height in between: the
/// caller discards it.
fn replay(
    state: &mut State,
    log: &BlockLog,
    log_dir: &Path,
    base: &str,
    shortcuts: bool,
) -> Result<Replayed, StoreError> {
    let mut done = Replayed::default();
    for item in log.iter_from(state.height.saturating_add(1)) {
        let (height, bytes) = item?;
        let entry = LogEntry::decode(&bytes).map_err(|reason| StoreError::Decode {
            height,
            dir: log_dir.to_path_buf(),
            reason,
        })?;
        if entry.block.height != height {
            return Err(StoreError::Decode {
                height,
                dir: log_dir.to_path_buf(),
                reason: format!("the entry holds block {}", entry.block.height),
            });
        }
        let mismatch = |height: u64, logged: &StateRoot, computed: &StateRoot| StoreError::RootMismatch {
            height,
            dir: log_dir.to_path_buf(),
            base: base.to_string(),
            logged: hex(logged),
            computed: hex(computed),
        };
        let before = state.state_root();
        if entry.parent_root != before {
            return Err(mismatch(height.saturating_sub(1), &entry.parent_root, &before));
        }
        let sweep = !shortcuts || sweep_may_have_acted(&entry.block, &entry.events);
        let out = if shortcuts {
            state.replay_block(&entry.block, &entry.events)
        } else {
            state.apply_block(&entry.block)
        };
        let out = out.map_err(|error| StoreError::Replay { height, dir: log_dir.to_path_buf(), error })?;
        if out.root != entry.root {
            return Err(mismatch(height, &entry.root, &out.root));
        }
        done.blocks = done.blocks.saturating_add(1);
        done.swept = done.swept.saturating_add(u64::from(sweep));
    }
    Ok(done)
}

impl Store {
    /// Opens the data dir at `path` (creating it for `genesis` when empty) and recovers the
    /// state: newest usable snapshot plus log replay, every replayed root checked.
    pub fn open(path: &Path, genesis: &Genesis, cfg: StoreConfig) -> Result<(Store, Recovery), StoreError> {
        let dir = DataDir::open(path)?;
        check_genesis(&dir, genesis)?;
        let (mut log, found) = BlockLog::open(
            &dir.log_dir(),
            LogConfig { segment_bytes: cfg.segment_bytes, faults: cfg.faults.clone() },
        )?;
        let snaps = SnapshotStore::open(&dir.snapshot_dir(), cfg.keep_snapshots.max(1), cfg.faults.clone())?
            .with_write_rate(cfg.snapshot_write_bytes_per_s)
            .with_copy_rate(cfg.copy_rate());
        let mut rec = Recovery { torn_tail_bytes: found.torn_tail_bytes, ..Recovery::default() };

        // The newest snapshot that validates, rebuilds, and has its successors in the log.
        let t_load = Instant::now();
        let listed = snaps.list()?;
        let mut base: Option<(State, SnapshotMeta)> = None;
        let mut gap_reasons = Vec::new();
        for (height, file) in &listed {
            if let Err(why) = log_covers(&log, &found.gaps, *height) {
                gap_reasons.push(format!("snapshot {} (height {height}): {why}", file.display()));
                rec.skipped_snapshots.push(format!("{}: {why}", file.display()));
                continue;
            }
            match load_snapshot(&snaps, file) {
                Ok(loaded) => {
                    base = Some(loaded);
                    break;
                }
                Err(why) => rec.skipped_snapshots.push(why),
            }
        }
        let (mut state, base_name) = match base {
            Some((state, meta)) => {
                let name = meta.path.display().to_string();
                rec.snapshot = Some(meta);
                (state, name)
            }
            None => {
                if let Err(why) = log_covers(&log, &found.gaps, 0) {
                    let mut reason = format!("no usable snapshot, and replay from genesis fails: {why}");
                    for g in gap_reasons {
                        reason.push_str("; ");
                        reason.push_str(&g);
                    }
                    for d in &found.damage {
                        reason.push_str(&format!(
                            "; damage in {} at offset {} after height {:?}: {}",
                            d.path.display(),
                            d.offset,
                            d.after_height,
                            d.reason
                        ));
                    }
                    return Err(StoreError::Unrecoverable { reason });
                }
                let state =
                    State::from_genesis(genesis).map_err(|e| StoreError::BadGenesis(e.to_string()))?;
                (state, "genesis".to_string())
            }
        };
        rec.load = t_load.elapsed();
        let base_height = state.height;
        rec.log_damage = found.damage.clone();

        // The log behind the snapshot (its tail was lost with a damaged disk, or it was reset):
        // start it again after the snapshot. A log that ends at the snapshot is kept: the next
        // block follows both, and the kept log is what recovery falls back to with an older
        // snapshot if this one is later found damaged.
        if log.last_height().is_some_and(|tip| tip < base_height) {
            log.reset()?;
        }

        let t_replay = Instant::now();
        let log_dir = dir.log_dir();
        let mut reload = Duration::ZERO;
        let replayed = match replay(&mut state, &log, &log_dir, &base_name, !cfg.exact_replay) {
            Ok(r) => r,
            // The shortcuts met something the log's roots disagree with (a liquidation the
            // events did not show, or a damaged entry): start again from the same base and
            // replay every block in full; only that replay's verdict counts.
            Err(e @ (StoreError::RootMismatch { .. } | StoreError::Replay { .. })) if !cfg.exact_replay => {
                rec.exact_after = Some(e.to_string());
                let t = Instant::now();
                state = match &rec.snapshot {
                    Some(meta) => {
                        load_snapshot(&snaps, &meta.path)
                            .map_err(|reason| StoreError::Unrecoverable { reason })?
                            .0
                    }
                    None => {
                        State::from_genesis(genesis).map_err(|e| StoreError::BadGenesis(e.to_string()))?
                    }
                };
                reload = t.elapsed();
                replay(&mut state, &log, &log_dir, &base_name, false)?
            }
            Err(e) => return Err(e),
        };
        rec.replayed = replayed.blocks;
        rec.swept = replayed.swept;
        rec.load = rec.load.saturating_add(reload);
        rec.replay = t_replay.elapsed().saturating_sub(reload);
        rec.height = state.height;
        rec.root = state.state_root();

        let mut retained: VecDeque<u64> = listed.iter().map(|(h, _)| *h).collect();
        retained.make_contiguous().sort_unstable();
        let stats = StoreStats { last_snapshot_height: base_height, ..StoreStats::default() };
        let store = Store {
            dir,
            log,
            writer: SnapshotWriter::spawn(snaps),
            retained,
            state,
            cfg,
            stats,
            base: base_height,
            stopped: None,
            scratch: Arc::default(),
        };
        Ok((store, rec))
    }

    /// The current state (all executed blocks, durable or not).
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Installs (or removes) the exchange's portfolio screen on the current state, and so on
    /// every state cloned from it (consensus's speculative states) and every state that later
    /// replaces it here ([`Store::adopt`], [`Store::install_synced`]). Changes no result.
    pub fn set_portfolio_screen(&mut self, screen: Option<bastion_exchange::ScreenHandle>) {
        self.state.set_portfolio_screen(screen);
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        self.dir.root()
    }

    /// Highest durable height (0 before the first block).
    pub fn durable_height(&self) -> u64 {
        self.log.durable_height().unwrap_or(0).max(self.base)
    }

    /// Counters.
    pub fn stats(&self) -> &StoreStats {
        &self.stats
    }

    /// Where this store's snapshots are (`<data_dir>/snapshots`), for a server of them.
    pub fn snapshot_dir(&self) -> PathBuf {
        self.dir.snapshot_dir()
    }

    /// The block log.
    pub fn log(&self) -> &BlockLog {
        &self.log
    }

    fn check(&self) -> Result<(), StoreError> {
        match &self.stopped {
            Some(why) => Err(StoreError::Stopped(why.clone())),
            None => Ok(()),
        }
    }

    fn stop<T>(&mut self, e: StoreError) -> Result<T, StoreError> {
        self.stopped = Some(e.to_string());
        Err(e)
    }

    /// Executes a finalized block and appends its log entry. Not durable until [`Store::commit`].
    /// A block the exchange refuses leaves everything unchanged; a log failure stops the store.
    pub fn execute(&mut self, block: &Block) -> Result<BlockOutcome, StoreError> {
        self.execute_linked(block, &[0u8; 32])
    }

    /// [`Store::execute`] with a [`ChainLink`] kept in the block's log entry.
    pub fn execute_linked(&mut self, block: &Block, link: &ChainLink) -> Result<BlockOutcome, StoreError> {
        self.execute_witnessed(block, link, &[])
    }

    /// [`Store::execute_linked`] with witness bytes kept in the log entry.
    pub fn execute_witnessed(
        &mut self,
        block: &Block,
        link: &ChainLink,
        witness: &[u8],
    ) -> Result<BlockOutcome, StoreError> {
        self.check()?;
        let parent_root = self.state.state_root();
        let out = self.state.apply_block(block)?;
        let entry = LogEntry::encode_witnessed(block, &out.events, &parent_root, &out.root, link, witness);
        if let Err(e) = self.log.append(block.height, &entry) {
            // The state is ahead of the log now: nothing may be acknowledged from it.
            return self.stop(e.into());
        }
        self.stats.blocks = self.stats.blocks.saturating_add(1);
        Ok(out)
    }

    /// Logs a block the caller already executed: `next` and `out` must be exactly what
    /// `apply_block(block)` on this store's current state produced (consensus executes each
    /// block once, speculatively, when it verifies the proposal, and hands that result over at
    /// finalization instead of executing it a second time). Checked here: the heights and that
    /// `out.root` is `next`'s root; the caller guarantees the rest. Not durable until
    /// [`Store::commit`].
    pub fn adopt(
        &mut self,
        block: &Block,
        link: &ChainLink,
        witness: &[u8],
        mut next: State,
        out: BlockOutcome,
    ) -> Result<BlockOutcome, StoreError> {
        self.check()?;
        if block.height != self.state.height.saturating_add(1)
            || next.height != block.height
            || next.state_root() != out.root
        {
            return Err(StoreError::Stopped(format!(
                "adopt: state at height {} with root {} does not follow height {} with block {}",
                next.height,
                hex(&out.root),
                self.state.height,
                block.height
            )));
        }
        let parent_root = self.state.state_root();
        let entry = LogEntry::encode_witnessed(block, &out.events, &parent_root, &out.root, link, witness);
        if let Err(e) = self.log.append(block.height, &entry) {
            return self.stop(e.into());
        }
        next.set_portfolio_screen(self.state.portfolio_screen().cloned());
        self.state = next;
        self.stats.blocks = self.stats.blocks.saturating_add(1);
        Ok(out)
    }

    /// Makes every executed block durable (one `fdatasync`), then starts a snapshot when one is
    /// due. Returns the durable height. A failure stops the store: the node must exit.
    pub fn commit(&mut self) -> Result<u64, StoreError> {
        self.check()?;
        if let Err(e) = self.log.commit() {
            return self.stop(e.into());
        }
        self.stats.commits = self.stats.commits.saturating_add(1);
        self.collect_snapshots();
        let durable = self.durable_height();
        let due = self.cfg.snapshot_every > 0
            && durable >= self.stats.last_snapshot_height.saturating_add(self.cfg.snapshot_every)
            && self.state.height == durable;
        if due {
            self.start_snapshot();
        }
        Ok(durable)
    }

    /// Executes and commits one block.
    pub fn apply(&mut self, block: &Block) -> Result<BlockOutcome, StoreError> {
        let out = self.execute(block)?;
        self.commit()?;
        Ok(out)
    }

    /// A job that serializes a copy-on-write view of the current state (taken now, on this
    /// thread) into a snapshot image: first the image's records are copied out of the view
    /// into the last image's memory, which lets each chunk of accounts go as soon as it is
    /// copied, so that this thread's copy-on-write copies stop early (on the `snapshot`
    /// thread, at the default priority); then they are serialized and written (on
    /// `snapshot-io`, at a lower priority).
    fn snapshot_job(&self) -> StagedSnapshotJob {
        let view = self.state.view();
        let scratch = Arc::clone(&self.scratch);
        let copy_rate = self.cfg.copy_rate();
        // The job runs at most once at a time (the writer refuses another while it runs), so
        // the lock is never contended; a poisoned one (a panicked job) is still memory.
        let take = |slot: &Mutex<ImageScratch>| {
            std::mem::take(&mut *slot.lock().unwrap_or_else(PoisonError::into_inner))
        };
        Box::new(move || {
            let (height, root) = (view.height(), view.root());
            // Into the last image's memory, already mapped: a third of the time of copying
            // into a new allocation, and so of the time this thread copies chunks.
            let image = view.into_image_with(take(&scratch)).map_err(|e: ImageError| e.to_string())?;
            let finish: SnapshotFinish = Box::new(move || {
                // Serialized at a pace, not at the speed of memory (see `SNAPSHOT_COPY_PACE`).
                let mut bytes = Paced::new(AlignedVec::with_capacity(image.len_bound()), copy_rate);
                let written = image.write_to(&mut bytes).map_err(|e: ImageError| e.to_string());
                *scratch.lock().unwrap_or_else(PoisonError::into_inner) = image.into_scratch();
                written?;
                Ok((height, root, IMAGE_LAYOUT, bytes.into_inner()))
            });
            Ok(finish)
        })
    }

    /// Hands a copy-on-write view of the (durable) state to the snapshot thread.
    fn start_snapshot(&mut self) {
        let job = self.snapshot_job();
        match self.writer.submit_staged(job) {
            Ok(()) => self.stats.last_snapshot_height = self.state.height,
            Err(SnapshotError::Busy) => {
                self.stats.snapshots_skipped_busy = self.stats.snapshots_skipped_busy.saturating_add(1)
            }
            Err(e) => self.note_snapshot_error(e.to_string()),
        }
    }

    fn note_snapshot_error(&mut self, e: String) {
        if self.stats.snapshot_errors.len() >= 16 {
            self.stats.snapshot_errors.remove(0);
        }
        self.stats.snapshot_errors.push(e);
    }

    fn collect_snapshots(&mut self) {
        let results = self.writer.poll();
        self.absorb(results);
    }

    fn absorb(&mut self, results: Vec<Result<SnapshotMeta, SnapshotError>>) {
        for r in results {
            match r {
                Ok(meta) => {
                    self.stats.snapshots_written = self.stats.snapshots_written.saturating_add(1);
                    // A snapshot at a height already kept replaced that file: one snapshot,
                    // not two (counted twice, it pushed the oldest out of the retention
                    // window and pruned the log behind a snapshot still kept).
                    if !self.retained.contains(&meta.height) {
                        self.retained.push_back(meta.height);
                    }
                    while self.retained.len() > self.cfg.keep_snapshots.max(1) {
                        self.retained.pop_front();
                    }
                    // Recovery may fall back to the oldest kept snapshot: keep the log after
                    // it. With a single snapshot, keep the whole log (genesis is the fallback).
                    if self.retained.len() >= 2
                        && let Some(oldest) = self.retained.front()
                    {
                        match self.log.prune_below(oldest.saturating_add(1)) {
                            Ok(n) => {
                                self.stats.segments_pruned =
                                    self.stats.segments_pruned.saturating_add(n as u64)
                            }
                            Err(e) => self.note_snapshot_error(format!("pruning the log: {e}")),
                        }
                    }
                }
                Err(e) => {
                    self.note_snapshot_error(e.to_string());
                }
            }
        }
    }

    /// Starts a snapshot of the current durable state now (if none is being written) and waits
    /// for it. For tools and tests; the node relies on `snapshot_every`.
    pub fn snapshot_now(&mut self) -> Result<Option<SnapshotMeta>, StoreError> {
        self.check()?;
        let pending = self.writer.wait();
        self.absorb(pending);
        if self.log.last_height() != self.log.durable_height() {
            self.commit()?;
        }
        let job = self.snapshot_job();
        self.writer.submit_staged(job)?;
        self.stats.last_snapshot_height = self.state.height;
        let mut meta = None;
        let mut err = None;
        for r in self.writer.wait() {
            match &r {
                Ok(m) => meta = Some(m.clone()),
                Err(e) => err = Some(e.to_string()),
            }
            self.absorb(vec![r]);
        }
        match err {
            Some(e) => Err(StoreError::Snapshot(SnapshotError::Job(e))),
            None => Ok(meta),
        }
    }

    /// Replaces this store's state with `state`, a state obtained by state sync and already
    /// verified by the caller against a certified root, whose image is `image`: the block log
    /// is emptied (its next append may be any height: the caller appends `state.height + 1`),
    /// every snapshot is deleted and `image` is written as the one snapshot, synchronously.
    ///
    /// Crash-safe in this order: after the log reset, any snapshot left recovers a real past
    /// state with nothing to replay; once the new snapshot is renamed into place, recovery
    /// starts from it. The caller keeps what it needs to finish (the blocks after `state`)
    /// until it has executed and committed them.
    pub fn install_synced(&mut self, mut state: State, image: &[u8]) -> Result<(), StoreError> {
        self.check()?;
        let pending = self.writer.wait();
        self.absorb(pending);
        if let Err(e) = self.log.reset() {
            return self.stop(e.into());
        }
        let snaps = self.writer.store();
        for (height, path) in snaps.list()? {
            if height != state.height {
                let _ = std::fs::remove_file(&path);
            }
        }
        let meta = snaps.write(state.height, state.state_root(), IMAGE_LAYOUT, image)?;
        self.retained.clear();
        self.retained.push_back(meta.height);
        self.base = state.height;
        self.stats.last_snapshot_height = state.height;
        state.set_portfolio_screen(self.state.portfolio_screen().cloned());
        self.state = state;
        Ok(())
    }

    /// Waits for a snapshot being written, then closes the store (releasing the lock).
    pub fn close(mut self) -> StoreStats {
        let pending = self.writer.wait();
        self.absorb(pending);
        self.stats.clone()
    }
}
