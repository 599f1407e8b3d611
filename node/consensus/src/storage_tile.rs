//! The storage tile: the store's log appends, `fdatasync`s and snapshot hand-offs on a thread of
//! their own, joined to the consensus actor by a bounded queue.
//!
//! The actor executes each finalized block (or adopts its speculative execution), keeps the
//! executed tip's state for itself, and hands the block, its outcome and the next state to this
//! tile: [`Storage::adopt`] queues the log append, [`Storage::commit`] queues one group commit
//! (`fdatasync`) for every block queued before it. The tile drains the queue in order, so when
//! several blocks finalize at once (a catch-up) their appends share one sync. It reports each
//! durable height back ([`Storage::poll`]); the actor uses it for the one promise that depends on
//! it: a block leaves the pending file (the record of blocks voted for) only once the log holds
//! it durably, so a crash never loses a finalized block that this validator had made durable
//! before voting for it.
//!
//! Back-pressure, never loss: when the queue is full the actor waits for room (counted as an
//! overrun); nothing is dropped. A storage failure stops the tile, which reports it; the actor
//! halts. Reads of the log (the backfill server's) go through the same queue, after the appends
//! queued before them.
//!
//! [`Storage::inline`] runs the same operations on the caller's thread (the deterministic
//! simulation, which must not depend on a second thread's timing, and tools); the node uses
//! [`Storage::threaded`].

use crate::application::{Ledger, RANGE_MAX};
use crate::backfill::{LogAnswer, LogRead};
use bastion_exchange::{BlockOutcome, State};
use bastion_store::{ChainLink, Store};
use bastion_types::Block;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::thread::JoinHandle;
use std::time::Instant;
use tracing::debug;

/// Jobs the tile's queue holds at most (each a block's outcome and state, or a read or commit
/// marker). A state shares its structure with the actor's copy, so a queued block costs its
/// own changes, not a copy of the state.
pub const STORAGE_QUEUE: usize = 256;

/// The tile's counters, shared with the metrics (the ingress tiles' shape: busy, in, out,
/// overruns, queue depth and its high-water mark; storage never drops, so it has no drop
/// counter).
#[derive(Debug, Default)]
pub struct StorageCounters {
    /// Jobs queued (appends, commits, reads).
    pub jobs_in: AtomicU64,
    /// Jobs done.
    pub jobs_out: AtomicU64,
    /// Blocks appended to the log.
    pub blocks: AtomicU64,
    /// Group commits (`fdatasync`s of the log).
    pub syncs: AtomicU64,
    /// Times the actor found the queue full and waited for room.
    pub overruns: AtomicU64,
    /// The most jobs queued at once.
    pub high_water: AtomicU64,
    /// Time spent working, ns.
    pub busy_ns: AtomicU64,
    /// The highest durable height.
    pub durable: AtomicU64,
}

impl StorageCounters {
    /// Jobs queued and not done yet.
    pub fn depth(&self) -> u64 {
        self.jobs_in.load(Ordering::Relaxed).saturating_sub(self.jobs_out.load(Ordering::Relaxed))
    }
}

/// A block for the log: what [`Store::adopt`] takes.
pub(crate) struct Adopt {
    pub block: Block,
    pub link: ChainLink,
    pub witness: Vec<u8>,
    pub next: State,
    pub out: BlockOutcome,
}

enum Job {
    Adopt(Box<Adopt>),
    Commit,
    Read(LogRead, u64),
    /// Answered once every job before it is done.
    Flush(std::sync::mpsc::Sender<()>),
}

/// What the tile reports back.
enum Done {
    Durable(u64),
    Failed(String),
}

/// The store, on the caller's thread or on the storage tile.
pub(crate) enum Storage {
    Inline {
        store: Box<Store>,
        durable: u64,
        failed: Option<String>,
        counters: Arc<StorageCounters>,
        ledger: Ledger,
    },
    Threaded(Threaded),
}

pub(crate) struct Threaded {
    jobs: Option<SyncSender<Job>>,
    done: Receiver<Done>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<StorageCounters>,
    durable: u64,
}

impl Storage {
    /// The store driven on the caller's thread; `ledger` gets its busy time as `storage_ns`.
    pub(crate) fn inline(store: Store, ledger: Ledger) -> Storage {
        let durable = store.durable_height();
        let counters = Arc::new(StorageCounters::default());
        counters.durable.store(durable, Ordering::Relaxed);
        Storage::Inline { store: Box::new(store), durable, failed: None, counters, ledger }
    }

    /// The store moved onto its own thread, named `bastion-storage`; `on_start` runs first on
    /// it (the node pins the thread there). `ledger` gets the tile's busy time as
    /// `storage_ns`.
    pub(crate) fn threaded(
        store: Store,
        ledger: Ledger,
        on_start: Option<Box<dyn FnOnce() + Send>>,
    ) -> Result<Storage, String> {
        let durable = store.durable_height();
        let counters = Arc::new(StorageCounters::default());
        counters.durable.store(durable, Ordering::Relaxed);
        let (jobs, rx) = std::sync::mpsc::sync_channel::<Job>(STORAGE_QUEUE);
        let (done_tx, done) = std::sync::mpsc::channel::<Done>();
        let c = counters.clone();
        let thread = std::thread::Builder::new()
            .name("bastion-storage".into())
            .spawn(move || {
                if let Some(f) = on_start {
                    f();
                }
                run(store, &rx, &done_tx, &c, &ledger);
            })
            .map_err(|e| format!("cannot start the storage tile's thread: {e}"))?;
        Ok(Storage::Threaded(Threaded { jobs: Some(jobs), done, thread: Some(thread), counters, durable }))
    }

    /// The tile's counters.
    pub(crate) fn counters(&self) -> Arc<StorageCounters> {
        match self {
            Storage::Inline { counters, .. } => counters.clone(),
            Storage::Threaded(t) => t.counters.clone(),
        }
    }

    /// Queues `adopt`'s log append (inline: does it).
    pub(crate) fn adopt(&mut self, adopt: Adopt) -> Result<(), String> {
        match self {
            Storage::Inline { store, failed, counters, ledger, .. } => {
                if let Some(why) = failed {
                    return Err(why.clone());
                }
                let Adopt { block, link, witness, next, out } = adopt;
                let started = Instant::now();
                let r = store.adopt(&block, &link, &witness, next, out).map(|_| ());
                counters.busy_ns.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
                ledger.add_storage_time(started);
                counters.jobs_in.fetch_add(1, Ordering::Relaxed);
                counters.jobs_out.fetch_add(1, Ordering::Relaxed);
                counters.blocks.fetch_add(1, Ordering::Relaxed);
                r.map_err(|e| {
                    let why = format!("store cannot log block {}: {e}", block.height);
                    *failed = Some(why.clone());
                    why
                })
            }
            Storage::Threaded(t) => t.send(Job::Adopt(Box::new(adopt))),
        }
    }

    /// Queues a group commit of every block queued so far (inline: syncs now).
    pub(crate) fn commit(&mut self) -> Result<(), String> {
        match self {
            Storage::Inline { store, durable, failed, counters, ledger } => {
                if let Some(why) = failed {
                    return Err(why.clone());
                }
                let started = Instant::now();
                let r = store.commit();
                counters.busy_ns.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
                ledger.add_storage_time(started);
                counters.jobs_in.fetch_add(1, Ordering::Relaxed);
                counters.jobs_out.fetch_add(1, Ordering::Relaxed);
                counters.syncs.fetch_add(1, Ordering::Relaxed);
                match r {
                    Ok(h) => {
                        *durable = h;
                        counters.durable.store(h, Ordering::Relaxed);
                        Ok(())
                    }
                    Err(e) => {
                        let why = format!("store commit failed: {e}");
                        *failed = Some(why.clone());
                        Err(why)
                    }
                }
            }
            Storage::Threaded(t) => t.send(Job::Commit),
        }
    }

    /// Serves the backfill server's read (after every append queued before it); `tip` bounds
    /// the heights read.
    pub(crate) fn read(&mut self, read: LogRead, tip: u64) -> Result<(), String> {
        match self {
            Storage::Inline { store, .. } => {
                serve_read(store, read, tip);
                Ok(())
            }
            Storage::Threaded(t) => t.send(Job::Read(read, tip)),
        }
    }

    /// The highest height known durable, after taking the tile's reports; `Err` once the tile
    /// failed.
    pub(crate) fn poll(&mut self) -> Result<u64, String> {
        match self {
            Storage::Inline { durable, failed, .. } => match failed {
                Some(why) => Err(why.clone()),
                None => Ok(*durable),
            },
            Storage::Threaded(t) => {
                loop {
                    match t.done.try_recv() {
                        Ok(Done::Durable(h)) => t.durable = t.durable.max(h),
                        Ok(Done::Failed(why)) => return Err(why),
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            return Err("the storage tile's thread stopped".into());
                        }
                    }
                }
                Ok(t.durable)
            }
        }
    }

    /// Waits until every queued job is done (for shutdown and tests); returns the durable
    /// height.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn flush(&mut self) -> Result<u64, String> {
        if let Storage::Threaded(t) = self {
            let (tx, rx) = std::sync::mpsc::channel();
            t.send(Job::Flush(tx))?;
            let _ = rx.recv();
        }
        self.poll()
    }
}

impl Threaded {
    /// A tile with no thread whose every operation fails (a placeholder while the store moves).
    pub(crate) fn closed() -> Threaded {
        let (_, done) = std::sync::mpsc::channel();
        Threaded { jobs: None, done, thread: None, counters: Arc::default(), durable: 0 }
    }

    fn send(&mut self, job: Job) -> Result<(), String> {
        let Some(jobs) = &self.jobs else { return Err("the storage tile was stopped".into()) };
        let job = match jobs.try_send(job) {
            Ok(()) => None,
            Err(TrySendError::Full(job)) => {
                self.counters.overruns.fetch_add(1, Ordering::Relaxed);
                Some(job)
            }
            Err(TrySendError::Disconnected(_)) => return Err("the storage tile's thread stopped".into()),
        };
        if let Some(job) = job {
            // Back-pressure: wait for room (the disk is the bottleneck; nothing is dropped).
            jobs.send(job).map_err(|_| "the storage tile's thread stopped".to_string())?;
        }
        let depth = self.counters.jobs_in.fetch_add(1, Ordering::Relaxed) + 1;
        let depth = depth.saturating_sub(self.counters.jobs_out.load(Ordering::Relaxed));
        self.counters.high_water.fetch_max(depth, Ordering::Relaxed);
        Ok(())
    }
}

impl Drop for Threaded {
    /// Stops the tile after it has done every queued job (the store is closed on its thread).
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The tile's loop: jobs in order until the queue closes or the store fails.
fn run(
    mut store: Store,
    rx: &Receiver<Job>,
    done: &std::sync::mpsc::Sender<Done>,
    c: &StorageCounters,
    ledger: &Ledger,
) {
    while let Ok(job) = rx.recv() {
        let started = Instant::now();
        let mut ack = None;
        let failed = match job {
            Job::Adopt(a) => {
                let Adopt { block, link, witness, next, out } = *a;
                c.blocks.fetch_add(1, Ordering::Relaxed);
                store
                    .adopt(&block, &link, &witness, next, out)
                    .err()
                    .map(|e| format!("store cannot log block {}: {e}", block.height))
            }
            Job::Commit => {
                c.syncs.fetch_add(1, Ordering::Relaxed);
                match store.commit() {
                    Ok(h) => {
                        c.durable.store(h, Ordering::Relaxed);
                        let _ = done.send(Done::Durable(h));
                        None
                    }
                    Err(e) => Some(format!("store commit failed: {e}")),
                }
            }
            Job::Read(read, tip) => {
                serve_read(&store, read, tip);
                None
            }
            Job::Flush(a) => {
                ack = Some(a);
                None
            }
        };
        c.busy_ns.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        ledger.add_storage_time(started);
        c.jobs_out.fetch_add(1, Ordering::Relaxed);
        // (A flush is answered once it counts as done.)
        if let Some(a) = ack {
            let _ = a.send(());
        }
        if let Some(why) = failed {
            let _ = done.send(Done::Failed(why));
            break;
        }
    }
    let stats = store.close();
    debug!(?stats, "storage tile stopped");
}

/// The backfill server's read of raw block-log entries (file reads only; decoding and sending
/// are the server's).
fn serve_read(store: &Store, read: LogRead, tip: u64) {
    let log = store.log();
    let mut answer = LogAnswer { entries: Vec::new(), first: log.first_height() };
    let mut bytes = 0u64;
    for h in read.from..=read.to.min(tip) {
        if bytes >= read.max_bytes || answer.entries.len() as u64 >= RANGE_MAX {
            break;
        }
        match log.read(h) {
            Ok(raw) => {
                bytes = bytes.saturating_add(raw.len() as u64);
                answer.entries.push((h, raw));
            }
            Err(e) => {
                debug!(h, %e, "cannot serve a backfill height (pruned or damaged)");
                break;
            }
        }
    }
    let _ = read.response.send(answer);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use bastion_exchange::Genesis;
    use bastion_exchange::testkit::{PathKind, Workload};
    use bastion_store::StoreConfig;

    /// `blocks` blocks of trading, executed on the caller's state and handed to `storage` as
    /// the actor does; returns the tip state.
    fn feed(storage: &mut Storage, state: &mut State, w: &mut Workload, blocks: usize) {
        for _ in 0..blocks {
            let block = w.next_block(state, 20);
            let out = state.apply_block(&block).unwrap();
            let adopt = Adopt { block, link: [7; 32], witness: Vec::new(), next: state.clone(), out };
            storage.adopt(adopt).unwrap();
        }
    }

    /// The tile logs and syncs in order, reports the durable height, serves reads after the
    /// appends queued before them, and a reopened store recovers exactly the tip the actor
    /// holds; inline and threaded give the same log.
    #[test]
    fn the_tile_logs_in_order_and_a_reopened_store_recovers_the_tip() {
        let g = Genesis::devnet();
        let mut roots = Vec::new();
        for threaded in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let (store, _) = Store::open(dir.path(), &g, StoreConfig::default()).unwrap();
            let mut state = store.state().clone();
            let ledger = Ledger::bounded(16);
            let mut storage = if threaded {
                let started = Arc::new(AtomicU64::new(0));
                let s = started.clone();
                let on_start: Box<dyn FnOnce() + Send> = Box::new(move || s.store(1, Ordering::SeqCst));
                let t = Storage::threaded(store, ledger.clone(), Some(on_start)).unwrap();
                let mut t = t;
                t.flush().unwrap();
                assert_eq!(started.load(Ordering::SeqCst), 1, "on_start ran on the tile");
                t
            } else {
                Storage::inline(store, ledger.clone())
            };
            let mut w = Workload::new(11, 50, PathKind::Calm, &g);
            let funding = w.funding_txs(1_000_000_000);
            let block = w.block_with(funding);
            let out = state.apply_block(&block).unwrap();
            storage
                .adopt(Adopt { block, link: [7; 32], witness: Vec::new(), next: state.clone(), out })
                .unwrap();
            feed(&mut storage, &mut state, &mut w, 30);
            storage.commit().unwrap();
            // A read queued after the appends sees all of them.
            let (tx, mut rx) = commonware_utils::channel::oneshot::channel();
            storage.read(LogRead { from: 1, to: 31, max_bytes: u64::MAX, response: tx }, 31).unwrap();
            assert_eq!(storage.flush().unwrap(), 31, "threaded={threaded}");
            let answer = rx.try_recv().expect("answered before the flush returned");
            assert_eq!(answer.entries.len(), 31);
            assert_eq!(answer.entries.first().map(|e| e.0), Some(1));
            let c = storage.counters();
            assert_eq!(c.blocks.load(Ordering::Relaxed), 31);
            assert_eq!(c.syncs.load(Ordering::Relaxed), 1);
            assert_eq!(c.durable.load(Ordering::Relaxed), 31);
            assert_eq!(c.depth(), 0);
            assert!(c.busy_ns.load(Ordering::Relaxed) > 0);
            assert!(ledger.totals().storage_ns > 0);
            drop(storage);
            let (store, rec) = Store::open(dir.path(), &g, StoreConfig::default()).unwrap();
            assert_eq!(rec.height, 31);
            assert_eq!(store.state().state_root(), state.state_root());
            roots.push(store.state().state_root());
        }
        assert_eq!(roots[0], roots[1]);
    }

    /// Back-pressure: with the tile busy, a full queue makes the sender wait (counted as
    /// overruns), never drop; every block still lands.
    #[test]
    fn a_full_queue_waits_and_loses_nothing() {
        let g = Genesis::devnet();
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), &g, StoreConfig::default()).unwrap();
        let mut state = store.state().clone();
        // The tile starts only after the whole queue (and more) was offered.
        let gate = Arc::new(std::sync::Barrier::new(2));
        let g2 = gate.clone();
        let on_start: Box<dyn FnOnce() + Send> = Box::new(move || {
            g2.wait();
        });
        let mut storage = Storage::threaded(store, Ledger::bounded(4), Some(on_start)).unwrap();
        let mut w = Workload::new(3, 10, PathKind::Calm, &g);
        let funding = w.funding_txs(1_000_000_000);
        let block = w.block_with(funding);
        let out = state.apply_block(&block).unwrap();
        storage.adopt(Adopt { block, link: [0; 32], witness: Vec::new(), next: state.clone(), out }).unwrap();
        // Opens the gate once the sender found the queue full.
        let watched = storage.counters();
        let opener = std::thread::spawn(move || {
            while watched.overruns.load(Ordering::Relaxed) == 0 {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            gate.wait();
        });
        let n = STORAGE_QUEUE + 10;
        feed(&mut storage, &mut state, &mut w, n);
        opener.join().unwrap();
        storage.commit().unwrap();
        let durable = storage.flush().unwrap();
        assert_eq!(durable, n as u64 + 1);
        let c = storage.counters();
        assert!(c.overruns.load(Ordering::Relaxed) >= 1, "the full queue was counted");
        assert!(c.high_water.load(Ordering::Relaxed) >= STORAGE_QUEUE as u64);
        assert_eq!(c.blocks.load(Ordering::Relaxed), n as u64 + 1);
    }
}
