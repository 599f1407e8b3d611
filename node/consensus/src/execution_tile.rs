//! The execution tile: speculative execution of proposals (peers' and this validator's own) on
//! a thread of its own, joined to the consensus actor by a bounded queue.
//!
//! The actor hands the tile a chain of blocks and the state they start from
//! ([`ExecutionTile::submit`]); the tile executes them in order and sends back, per block, the
//! state after it and its outcome, or why it did not execute. Meanwhile the actor goes on
//! (votes, relays, other views); the verification that waited for the state is retried when the
//! result arrives, and only then does the validator persist the block and vote for it. A
//! leader's own proposal is returned to the engine before it is executed (its digest does not
//! depend on the execution), so its execution overlaps the broadcast and the peers' own.
//!
//! Back-pressure, never loss: when the queue is full the actor waits for room (counted as an
//! overrun). The results channel is unbounded but holds at most one result per job queued, so
//! it is bounded by the queue.

use crate::application::Ledger;
use bastion_exchange::{BlockOutcome, State};
use commonware_cryptography::sha256::Digest;
use commonware_utils::channel::mpsc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::Instant;

/// Jobs the tile's queue holds at most. A job's starting state shares its structure with the
/// actor's states, so a queued job costs its blocks.
pub const EXECUTION_QUEUE: usize = 64;

/// The tile's counters (the ingress tiles' shape: busy, in, out, overruns, queue depth and its
/// high-water mark; execution never drops, so it has no drop counter).
#[derive(Debug, Default)]
pub struct ExecutionCounters {
    /// Jobs queued.
    pub jobs_in: AtomicU64,
    /// Jobs done.
    pub jobs_out: AtomicU64,
    /// Blocks executed.
    pub blocks: AtomicU64,
    /// Blocks that did not execute (refused).
    pub refused: AtomicU64,
    /// Times the actor found the queue full and waited for room.
    pub overruns: AtomicU64,
    /// The most jobs queued at once.
    pub high_water: AtomicU64,
    /// Time spent executing, ns.
    pub busy_ns: AtomicU64,
}

impl ExecutionCounters {
    /// Jobs queued and not done yet.
    pub fn depth(&self) -> u64 {
        self.jobs_in.load(Ordering::Relaxed).saturating_sub(self.jobs_out.load(Ordering::Relaxed))
    }
}

/// One block of a job: its digest, the parent state root it claims, and the exchange block as
/// this validator executes it.
pub(crate) struct JobBlock {
    pub digest: Digest,
    pub parent_root: [u8; 32],
    pub block: bastion_types::Block,
}

/// A chain of blocks to execute from `start`.
pub(crate) struct Job {
    pub start: State,
    pub blocks: Vec<JobBlock>,
}

/// What one block of a job gave: the state after it and its outcome, or why it did not
/// execute (the blocks after a refused one are not executed, and answered as refused).
pub(crate) type Executed = (Digest, Result<(State, BlockOutcome), String>);

/// The tile: its thread, its queue and its counters.
pub(crate) struct ExecutionTile {
    jobs: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<ExecutionCounters>,
}

impl ExecutionTile {
    /// Starts the tile's thread, named `bastion-execution`; `on_start` runs first on it (the
    /// node pins the thread there). Results go to `results`; `ledger` gets the busy time as
    /// `execution_ns`.
    pub(crate) fn start(
        results: mpsc::UnboundedSender<Vec<Executed>>,
        ledger: Ledger,
        on_start: Option<Box<dyn FnOnce() + Send>>,
    ) -> Result<ExecutionTile, String> {
        let counters = Arc::new(ExecutionCounters::default());
        let (jobs, rx) = std::sync::mpsc::sync_channel::<Job>(EXECUTION_QUEUE);
        let c = counters.clone();
        let thread = std::thread::Builder::new()
            .name("bastion-execution".into())
            .spawn(move || {
                if let Some(f) = on_start {
                    f();
                }
                while let Ok(job) = rx.recv() {
                    let started = Instant::now();
                    let out = execute(job, &c);
                    c.busy_ns.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    ledger.add_execution_time(started);
                    c.jobs_out.fetch_add(1, Ordering::Relaxed);
                    if results.send(out).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| format!("cannot start the execution tile's thread: {e}"))?;
        Ok(ExecutionTile { jobs: Some(jobs), thread: Some(thread), counters })
    }

    /// The tile's counters.
    pub(crate) fn counters(&self) -> Arc<ExecutionCounters> {
        self.counters.clone()
    }

    /// Queues `job`, waiting for room when the queue is full.
    pub(crate) fn submit(&mut self, job: Job) -> Result<(), String> {
        let Some(jobs) = &self.jobs else { return Err("the execution tile was stopped".into()) };
        let job = match jobs.try_send(job) {
            Ok(()) => None,
            Err(TrySendError::Full(job)) => {
                self.counters.overruns.fetch_add(1, Ordering::Relaxed);
                Some(job)
            }
            Err(TrySendError::Disconnected(_)) => return Err("the execution tile's thread stopped".into()),
        };
        if let Some(job) = job {
            jobs.send(job).map_err(|_| "the execution tile's thread stopped".to_string())?;
        }
        let queued = self.counters.jobs_in.fetch_add(1, Ordering::Relaxed) + 1;
        let depth = queued.saturating_sub(self.counters.jobs_out.load(Ordering::Relaxed));
        self.counters.high_water.fetch_max(depth, Ordering::Relaxed);
        Ok(())
    }
}

impl Drop for ExecutionTile {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Executes a job's blocks in order from its start, each on the state the previous left, and
/// checks each block's claimed parent root against the state it starts from.
pub(crate) fn execute(job: Job, c: &ExecutionCounters) -> Vec<Executed> {
    let Job { start, blocks } = job;
    let mut state = start;
    let mut out = Vec::with_capacity(blocks.len());
    let mut failed = false;
    for b in blocks {
        if failed {
            // Every block of the job is answered: those after a refused one are refused too.
            out.push((b.digest, Err("an ancestor in the same chain did not execute".into())));
            continue;
        }
        if b.parent_root != state.state_root() {
            c.refused.fetch_add(1, Ordering::Relaxed);
            out.push((b.digest, Err("the block carries a parent state root we did not compute".into())));
            failed = true;
            continue;
        }
        // A refused block leaves the state untouched; the chain stops there.
        match state.apply_block(&b.block) {
            Ok(outcome) => {
                c.blocks.fetch_add(1, Ordering::Relaxed);
                // The copy shares the state's structure.
                out.push((b.digest, Ok((state.clone(), outcome))));
            }
            Err(e) => {
                c.refused.fetch_add(1, Ordering::Relaxed);
                out.push((b.digest, Err(format!("{e:?}"))));
                failed = true;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use bastion_exchange::Genesis;
    use bastion_exchange::testkit::{PathKind, Workload};
    use commonware_cryptography::Hasher as _;

    fn digest(i: u8) -> Digest {
        commonware_cryptography::Sha256::hash(&[&[i][..]])
    }

    /// A chain of `n` blocks from `start` (as the actor builds a job), with their states.
    fn chain(start: &State, w: &mut Workload, n: usize) -> (Vec<JobBlock>, Vec<State>) {
        let mut state = start.clone();
        let (mut blocks, mut states) = (Vec::new(), Vec::new());
        for i in 0..n {
            let parent_root = state.state_root();
            let block = if i == 0 {
                let funding = w.funding_txs(1_000_000_000);
                w.block_with(funding)
            } else {
                w.next_block(&state, 10)
            };
            state.apply_block(&block).unwrap();
            blocks.push(JobBlock { digest: digest(i as u8), parent_root, block });
            states.push(state.clone());
        }
        (blocks, states)
    }

    /// The tile executes a job's chain in order to the same states as the actor would, and a
    /// block that does not execute stops the chain: it and every block after it are answered
    /// as refused, none is left unanswered.
    #[test]
    fn the_tile_executes_chains_and_answers_every_block() {
        let g = Genesis::devnet();
        let start = State::from_genesis(&g).unwrap();
        let mut w = Workload::new(5, 20, PathKind::Calm, &g);
        let (blocks, states) = chain(&start, &mut w, 6);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut tile = ExecutionTile::start(tx, Ledger::bounded(4), None).unwrap();
        tile.submit(Job { start: start.clone(), blocks }).unwrap();
        let got = loop {
            if let Ok(v) = rx.try_recv() {
                break v;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        };
        assert_eq!(got.len(), 6);
        for ((d, r), (i, want)) in got.iter().zip(states.iter().enumerate()) {
            assert_eq!(*d, digest(i as u8));
            let (state, out) = r.as_ref().unwrap();
            assert_eq!(state.state_root(), want.state_root());
            assert_eq!(out.root, want.state_root());
        }
        // A wrong parent root at the third block: it and the rest are refused.
        let (mut blocks, _) = chain(&start, &mut Workload::new(5, 20, PathKind::Calm, &g), 5);
        blocks[2].parent_root = [9; 32];
        let c = ExecutionCounters::default();
        let got = execute(Job { start, blocks }, &c);
        assert_eq!(got.len(), 5);
        assert!(got[..2].iter().all(|(_, r)| r.is_ok()));
        assert!(got[2..].iter().all(|(_, r)| r.is_err()));
        assert_eq!(c.blocks.load(Ordering::Relaxed), 2);
        assert_eq!(c.refused.load(Ordering::Relaxed), 1);
        let counters = tile.counters();
        drop(tile);
        assert_eq!(counters.jobs_in.load(Ordering::Relaxed), 1);
        assert_eq!(counters.jobs_out.load(Ordering::Relaxed), 1);
        assert_eq!(counters.blocks.load(Ordering::Relaxed), 6);
        assert_eq!(counters.depth(), 0);
    }
}
