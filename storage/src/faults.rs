//! Injected I/O failures, so tests and soak runs can prove that a full disk or a failed
//! `fdatasync` is detected and never turns into silently wrong state.
//!
//! Production code passes [`Faults::none`]; every write and sync in this crate goes through
//! [`Faults::write`] and [`Faults::sync`], which cost one relaxed atomic load when nothing is
//! armed.

use std::fs::File;
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const NEVER: u64 = u64::MAX;

/// Armed failures, shared by every file a log or snapshot store opens.
#[derive(Debug)]
pub struct Faults {
    /// Syncs that still succeed before every later one fails with `EIO`.
    syncs_left: AtomicU64,
    /// Bytes that still fit before writes fail with `ENOSPC`.
    space_left: AtomicU64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults { syncs_left: AtomicU64::new(NEVER), space_left: AtomicU64::new(NEVER) }
    }
}

impl Faults {
    /// No failures: what production uses.
    pub fn none() -> Arc<Faults> {
        Arc::new(Faults::default())
    }

    /// After `n` more successful syncs, every sync fails with `EIO` (as a disk that lost the
    /// dirty pages reports it).
    pub fn fail_sync_after(&self, n: u64) {
        self.syncs_left.store(n, Ordering::SeqCst);
    }

    /// After `bytes` more bytes, writes fail with `ENOSPC`; the write that crosses the limit
    /// writes what fits first, as a real full disk does.
    pub fn no_space_after(&self, bytes: u64) {
        self.space_left.store(bytes, Ordering::SeqCst);
    }

    /// Disarms everything.
    pub fn clear(&self) {
        self.syncs_left.store(NEVER, Ordering::SeqCst);
        self.space_left.store(NEVER, Ordering::SeqCst);
    }

    /// `file.write_all(buf)`, failing as armed.
    pub fn write(&self, file: &mut File, buf: &[u8]) -> io::Result<()> {
        let left = self.space_left.load(Ordering::Relaxed);
        if left == NEVER {
            return file.write_all(buf);
        }
        let len = buf.len() as u64;
        if len <= left {
            self.space_left.fetch_sub(len, Ordering::SeqCst);
            return file.write_all(buf);
        }
        let fits = usize::try_from(left).unwrap_or(0).min(buf.len());
        self.space_left.store(0, Ordering::SeqCst);
        file.write_all(buf.get(..fits).unwrap_or_default())?;
        Err(io::Error::from_raw_os_error(libc::ENOSPC))
    }

    /// Accounts for `len` bytes written through a memory map (which cannot fail part-way the
    /// way `write` does): fails with `ENOSPC` before anything is written when they do not fit.
    pub fn reserve(&self, len: u64) -> io::Result<()> {
        let left = self.space_left.load(Ordering::Relaxed);
        if left == NEVER {
            return Ok(());
        }
        if len <= left {
            self.space_left.fetch_sub(len, Ordering::SeqCst);
            return Ok(());
        }
        Err(io::Error::from_raw_os_error(libc::ENOSPC))
    }

    /// `file.sync_data()` (`fdatasync`), failing as armed.
    pub fn sync(&self, file: &File) -> io::Result<()> {
        let left = self.syncs_left.load(Ordering::Relaxed);
        if left != NEVER {
            if left == 0 {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            self.syncs_left.fetch_sub(1, Ordering::SeqCst);
        }
        file.sync_data()
    }
}

/// Syncs a directory, so a file created or renamed in it survives a crash.
pub fn sync_dir(faults: &Faults, dir: &std::path::Path) -> io::Result<()> {
    let f = File::open(dir)?;
    faults.sync(&f)
}
