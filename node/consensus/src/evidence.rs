//! Evidence of equivocation, bounded, and persisted off the engine's reporter callback.
//!
//! The engine reports a fault (conflicting notarize or finalize votes, a nullify and a finalize
//! in one view) through [`crate::Reporter`]. What is kept of it is bounded on every side:
//! - per (kind, signer), only the first [`EVIDENCE_PER_SIGNER`] pieces are recorded (in the
//!   ledger's fault list and in the file); one proof convicts a signer, more add nothing. Signers
//!   are indices in the validator set and kinds are three, so the list holds at most
//!   `3 × validators × EVIDENCE_PER_SIGNER` lines; later pieces are only counted;
//! - the evidence file ([`crate::application::EVIDENCE_FILE`]) stops growing at
//!   [`EVIDENCE_FILE_MAX_BYTES`] (an error line says so once);
//! - the synced append is done by a writer task fed by a bounded channel of
//!   [`EVIDENCE_QUEUE`] lines: the reporter callback only formats and enqueues, and a line that
//!   finds the queue full is dropped and counted (the ledger keeps it).

use commonware_runtime::{Clock, Spawner};
use commonware_utils::channel::mpsc;
use std::{
    collections::BTreeMap,
    io::Write as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};
use tracing::{error, warn};

/// Pieces of evidence kept per (kind, signer).
pub const EVIDENCE_PER_SIGNER: u32 = 4;

/// The evidence file is not appended to once it holds this many bytes.
pub const EVIDENCE_FILE_MAX_BYTES: u64 = 16 << 20;

/// Lines waiting for the writer task; beyond this a line is dropped (and counted).
pub const EVIDENCE_QUEUE: usize = 64;

/// What the reporter decided about one piece of evidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Record it (ledger and file).
    Record,
    /// Already [`EVIDENCE_PER_SIGNER`] pieces of this kind against this signer: count only.
    Enough,
}

/// Counts of evidence per (kind, signer): bounded by the validator set and the three kinds.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    seen: BTreeMap<(&'static str, String), u32>,
}

impl Tally {
    pub(crate) fn admit(&mut self, kind: &'static str, signer: String) -> Admit {
        let n = self.seen.entry((kind, signer)).or_insert(0);
        *n = n.saturating_add(1);
        if *n <= EVIDENCE_PER_SIGNER { Admit::Record } else { Admit::Enough }
    }
}

/// The reporter's side: formats, bounds and enqueues.
#[derive(Clone, Debug)]
pub(crate) struct EvidenceSink {
    tally: Arc<Mutex<Tally>>,
    queue: mpsc::Sender<String>,
}

impl EvidenceSink {
    /// A sink and the receiving end its writer task drains (see [`spawn_writer`]).
    pub(crate) fn new() -> (Self, mpsc::Receiver<String>) {
        let (queue, rx) = mpsc::channel(EVIDENCE_QUEUE);
        (EvidenceSink { tally: Arc::new(Mutex::new(Tally::default())), queue }, rx)
    }

    /// Whether this piece is recorded.
    pub(crate) fn admit(&self, kind: &'static str, signer: String) -> Admit {
        let mut t = match self.tally.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        t.admit(kind, signer)
    }

    /// Hands a line to the writer; false when the queue is full or the writer is gone.
    pub(crate) fn enqueue(&self, line: String) -> bool {
        self.queue.try_send(line).is_ok()
    }
}

/// Starts the task that appends (and syncs) each line to `path`, up to
/// [`EVIDENCE_FILE_MAX_BYTES`], until every [`EvidenceSink`] is dropped.
pub(crate) fn spawn_writer<E: Spawner + Clock>(
    context: E,
    path: PathBuf,
    mut rx: mpsc::Receiver<String>,
) -> commonware_runtime::Handle<()> {
    context.dedicated().spawn(move |_| async move {
        let mut size = std::fs::metadata(&path).map_or(0, |m| m.len());
        let mut full_logged = false;
        while let Some(line) = rx.recv().await {
            if size.saturating_add(line.len() as u64) > EVIDENCE_FILE_MAX_BYTES {
                if !full_logged {
                    error!(
                        file = %path.display(),
                        size,
                        limit = EVIDENCE_FILE_MAX_BYTES,
                        "evidence file full: further evidence is recorded in memory (first pieces per \
                         signer) but not written; archive the file and restart to record more"
                    );
                    full_logged = true;
                }
                continue;
            }
            match append_synced(&path, line.as_bytes()) {
                Ok(()) => size = size.saturating_add(line.len() as u64),
                Err(e) => warn!(file = %path.display(), %e, "cannot persist evidence"),
            }
        }
    })
}

/// Appends `bytes` to `path` and syncs it (creating the file if needed).
fn append_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    f.write_all(bytes)?;
    f.sync_data()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_the_first_pieces_per_kind_and_signer_are_recorded() {
        let mut t = Tally::default();
        for _ in 0..EVIDENCE_PER_SIGNER {
            assert_eq!(t.admit("conflicting notarize", "3".into()), Admit::Record);
        }
        assert_eq!(t.admit("conflicting notarize", "3".into()), Admit::Enough);
        assert_eq!(t.admit("conflicting finalize", "3".into()), Admit::Record);
        assert_eq!(t.admit("conflicting notarize", "2".into()), Admit::Record);
    }
}
