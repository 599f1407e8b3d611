//! Crash-safe storage for a validator: the data directory and its lock, an append-only
//! checksummed log of finalized blocks, and memory-mapped snapshots.
//!
//! This crate knows bytes, heights and checksums, never the exchange: what a payload means is
//! the caller's (`bastion-store` puts blocks in the log and state images in snapshots). Every
//! file operation goes through [`Faults`], so tests can inject a full disk or a failed sync.

pub mod dir;
pub mod faults;
pub mod log;
pub mod mapped;
pub mod records;
pub mod snapshot;

pub use dir::{DataDir, DirError};
pub use faults::Faults;
pub use log::{BlockLog, Damage, LogConfig, LogError, LogRecovery};
pub use records::RecordFile;
pub use snapshot::{Snapshot, SnapshotError, SnapshotMeta, SnapshotStore, SnapshotWriter};
