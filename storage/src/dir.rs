//! The data directory: its layout and the lock that keeps a second process out.
//!
//! ```text
//! <data-dir>/
//!   LOCK         exclusive advisory lock (flock) held while a node runs; holds its pid
//!   VERSION      layout version of this directory
//!   log/         block log segments  (BlockLog)
//!   snapshots/   state snapshots     (SnapshotStore)
//! ```
//! The lock is `flock(2)` on `LOCK`: the kernel drops it when the process dies, even by
//! SIGKILL, so a crash never leaves a stale lock behind.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Layout version of the data directory.
pub const DIR_VERSION: u32 = 1;

/// Why a data directory could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    /// Another process holds the lock.
    #[error(
        "data dir {path} is in use by another process ({holder}); stop it first, or pick another \
         --data-dir"
    )]
    Locked {
        /// The data directory.
        path: PathBuf,
        /// Who holds it, as the lock file says.
        holder: String,
    },
    /// The directory was written by an incompatible version.
    #[error("data dir {path} has layout version {found}; this build reads version {DIR_VERSION}")]
    Version {
        /// The data directory.
        path: PathBuf,
        /// The version found.
        found: String,
    },
    /// A file operation failed.
    #[error("data dir {path}: {op} failed: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn io<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(std::io::Error) -> DirError + 'a {
    move |source| DirError::Io { path: path.to_path_buf(), op, source }
}

/// An open, locked data directory. The lock is released when this is dropped.
#[derive(Debug)]
pub struct DataDir {
    root: PathBuf,
    _lock: File,
}

impl DataDir {
    /// Opens `root` (created if absent), takes its lock and creates the layout.
    pub fn open(root: &Path) -> Result<DataDir, DirError> {
        fs::create_dir_all(root).map_err(io(root, "create"))?;
        let lock_path = root.join("LOCK");
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io(&lock_path, "open"))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                // Best effort: the holder may be rewriting it right now.
                let _ = lock.read_to_string(&mut holder);
                let holder = holder.trim();
                let holder =
                    if holder.is_empty() { "pid unknown".to_string() } else { format!("pid {holder}") };
                return Err(DirError::Locked { path: root.to_path_buf(), holder });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&lock_path, "lock")(e)),
        }
        lock.set_len(0).map_err(io(&lock_path, "truncate"))?;
        lock.seek(SeekFrom::Start(0)).map_err(io(&lock_path, "seek"))?;
        writeln!(lock, "{}", std::process::id()).map_err(io(&lock_path, "write"))?;

        let version_path = root.join("VERSION");
        match fs::read_to_string(&version_path) {
            Ok(v) if v.trim() == DIR_VERSION.to_string() => {}
            Ok(v) => return Err(DirError::Version { path: root.to_path_buf(), found: v.trim().to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::write(&version_path, format!("{DIR_VERSION}\n")).map_err(io(&version_path, "write"))?;
            }
            Err(e) => return Err(io(&version_path, "read")(e)),
        }
        for sub in ["log", "snapshots"] {
            let p = root.join(sub);
            fs::create_dir_all(&p).map_err(io(&p, "create"))?;
        }
        Ok(DataDir { root: root.to_path_buf(), _lock: lock })
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the block log lives.
    pub fn log_dir(&self) -> PathBuf {
        self.root.join("log")
    }

    /// Where snapshots live.
    pub fn snapshot_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_open_is_refused_until_the_first_is_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let first = DataDir::open(tmp.path()).unwrap();
        assert!(first.log_dir().is_dir() && first.snapshot_dir().is_dir());
        let err = DataDir::open(tmp.path()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, DirError::Locked { .. }), "{msg}");
        assert!(msg.contains(&format!("pid {}", std::process::id())), "{msg}");
        drop(first);
        DataDir::open(tmp.path()).unwrap();
    }

    #[test]
    fn a_foreign_layout_version_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("VERSION"), "99\n").unwrap();
        let err = DataDir::open(tmp.path()).unwrap_err();
        assert!(err.to_string().contains("layout version 99"), "{err}");
    }
}
