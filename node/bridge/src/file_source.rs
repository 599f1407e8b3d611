//! [`FileSource`]: the [`DepositSource`] validators use on the devnet, tailing the simulated
//! chain's ledger file.

use std::collections::VecDeque;
use std::path::PathBuf;

use crate::config::CONFIRMATIONS_MAX;
use crate::ledger::{LEDGER_FILE, LedgerReader};
use crate::source::{DepositSource, SourceDeposit, SourceError, SourcePoll};

/// A [`DepositSource`] over `<dir>/ledger.jsonl`, read incrementally: each poll reads only the
/// complete lines appended since the previous one (at most 32 MiB of them, so a poll never
/// takes long; a fresh source over a larger ledger catches up over several polls, reporting
/// as tip the last block it read). A ledger that does not exist yet reads as height 0 with
/// nothing confirmed. Keeps the [contract](crate::source) of every source: each deposit once
/// per instance, in order, once `confirmations` blocks hold it.
#[derive(Debug)]
pub struct FileSource {
    reader: LedgerReader,
    confirmations: u64,
    /// Deposits read but not yet confirmed, in source order.
    pending: VecDeque<SourceDeposit>,
}

impl FileSource {
    /// A source over the ledger of the chain in `dir`, reporting a deposit once `confirmations`
    /// blocks hold it (its own included). `confirmations` is taken within 1 to
    /// [`CONFIRMATIONS_MAX`]: 0 would report deposits before they exist.
    pub fn new(dir: PathBuf, confirmations: u64) -> FileSource {
        FileSource {
            reader: LedgerReader::new(dir.join(LEDGER_FILE)),
            confirmations: confirmations.clamp(1, CONFIRMATIONS_MAX),
            pending: VecDeque::new(),
        }
    }

    /// The confirmation depth in use.
    pub fn confirmations(&self) -> u64 {
        self.confirmations
    }
}

impl DepositSource for FileSource {
    fn poll(&mut self) -> Result<SourcePoll, SourceError> {
        // A failed read changes nothing (neither the reader nor `pending`): the next poll
        // retries the same lines and reports what this one could not.
        let chunk = self.reader.read(true)?;
        for block in chunk.blocks {
            let source_height = block.height;
            self.pending
                .extend(block.deposits.into_iter().map(|deposit| SourceDeposit { deposit, source_height }));
        }
        let height = self.reader.height();
        // A deposit at height h is confirmed once the tip reaches h + confirmations - 1.
        let depth = self.confirmations.saturating_sub(1);
        let mut confirmed = Vec::new();
        while let Some(front) = self.pending.front() {
            if front.source_height.saturating_add(depth) > height {
                break;
            }
            if let Some(d) = self.pending.pop_front() {
                confirmed.push(d);
            }
        }
        Ok(SourcePoll { height, confirmed })
    }

    fn describe(&self) -> String {
        format!("file {} ({} confirmations)", self.reader.path().display(), self.confirmations)
    }
}
