//! Files written and read through memory maps, so the same code works on a disk filesystem,
//! on tmpfs and on hugetlbfs (which has no `write(2)`: a hugetlbfs file can only be filled
//! through a mapping).
//!
//! Files are sized in whole filesystem blocks (4 KiB on disk and tmpfs, 2 MiB or 1 GiB on
//! hugetlbfs); the caller's format must therefore record its own length and treat the bytes
//! after it as zero padding.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use memmap2::{Advice, Mmap, MmapOptions};

use crate::faults::Faults;

/// `statfs(2)` `f_type` of hugetlbfs.
pub const HUGETLBFS_MAGIC: u64 = 0x9584_58f6;

/// Block size used when a filesystem reports none.
const FALLBACK_BLOCK: u64 = 4096;

/// Creates `path` (truncating it if it exists) with room for `len` bytes rounded up to the
/// filesystem's block size, maps it writable, calls `fill` on exactly `len` bytes, unmaps it
/// and `fdatasync`s the file (through [`Faults::sync`]). Returns the file's size: `len`
/// rounded up to the block size; the bytes after `len` are zero.
///
/// The space is reserved with [`Faults::reserve`] and `posix_fallocate` before anything is
/// mapped, so a full disk (or an exhausted huge-page pool) is an `ENOSPC` error here rather
/// than a `SIGBUS` while `fill` runs. Filesystems without `fallocate` fall back to
/// `ftruncate`.
///
/// On error the file is removed.
pub fn write_mapped(
    path: &Path,
    len: usize,
    faults: &Faults,
    fill: impl FnOnce(&mut [u8]),
) -> io::Result<u64> {
    write_mapped_paced(path, len, faults, 0, fill)
}

/// [`write_mapped`], writing the bytes back to the device at no more than `bytes_per_s`
/// (0: as fast as the device takes them), so a large file does not starve other writers'
/// syncs on the same device (see [`staged_writeback`]).
pub fn write_mapped_paced(
    path: &Path,
    len: usize,
    faults: &Faults,
    bytes_per_s: u64,
    fill: impl FnOnce(&mut [u8]),
) -> io::Result<u64> {
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path)?;
    match fill_file(&file, len, faults, bytes_per_s, fill) {
        Ok(size) => Ok(size),
        Err(e) => {
            drop(file);
            // Best effort: the caller gets the original error; a leftover file is harmless
            // (the snapshot store removes stale temporaries when it opens).
            let _ = fs::remove_file(path);
            Err(e)
        }
    }
}

fn fill_file(
    file: &File,
    len: usize,
    faults: &Faults,
    bytes_per_s: u64,
    fill: impl FnOnce(&mut [u8]),
) -> io::Result<u64> {
    let (block, _) = statfs_fd(file)?;
    let rounded = round_up(len as u64, block)?;
    faults.reserve(rounded)?;
    if rounded == 0 {
        fill(&mut []);
        faults.sync(file)?;
        return Ok(0);
    }
    allocate(file, rounded)?;
    let map_len = usize::try_from(rounded).map_err(|_| too_big())?;
    // SAFETY: the file was just created (or truncated) by this call and is private to this
    // process: it lives in a data directory this process holds locked, and files there are
    // written once through this mapping, then renamed, and never modified in place. Nothing
    // else can truncate or write it while the mapping exists; its `rounded` bytes were
    // allocated above, so every page of the mapping is backed.
    let mut map = unsafe { MmapOptions::new().len(map_len).map_mut(file)? };
    let buf = map
        .get_mut(..len)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "mapping shorter than requested"))?;
    fill(buf);
    // Unmapped before the writeback: writing back a page that a process maps write-protects
    // it in that process's page tables, and each such change interrupts every other core
    // running one of its threads to flush its TLB. A 96 MB snapshot written back while mapped
    // slowed the blocks executed meanwhile by a third (`bastion-perf storage`). Unmapping
    // moves the pages' dirty bits to the page cache, which the writeback and the `fsync`
    // below write as they would any dirty page.
    drop(map);
    staged_writeback(file, len, bytes_per_s);
    faults.sync(file)?;
    Ok(rounded)
}

/// Bytes written back per step by [`staged_writeback`]: what a log `fdatasync` may have to wait
/// behind (256 KiB, under 1 ms on this box's disk; 1 MiB steps added up to 3 ms to a block's
/// commit at p99 while a snapshot was written).
const WRITEBACK_STEP: usize = 256 << 10;

/// Writes the first `len` bytes of `file` back to the device one [`WRITEBACK_STEP`] at a time,
/// waiting for each, before the final `fsync` (as RocksDB's `bytes_per_sync`). Written
/// all at once, a large snapshot's writeback fills the device queue, and the block log's
/// `fdatasync` of the next block waits behind all of it (measured: block p99 10x); in steps, a
/// log sync waits behind at most one step. With `bytes_per_s` > 0 the steps are paced, leaving
/// the device idle between them. Only an optimisation: errors are left to the `fsync` that
/// follows, which reports them.
#[cfg(target_os = "linux")]
fn staged_writeback(file: &File, len: usize, bytes_per_s: u64) {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    let start = std::time::Instant::now();
    let mut offset = 0usize;
    while offset < len {
        let step = WRITEBACK_STEP.min(len.saturating_sub(offset));
        let (Ok(off), Ok(n)) = (i64::try_from(offset), i64::try_from(step)) else { return };
        // SAFETY: `fd` is an open file descriptor owned by `file`, which outlives the call;
        // `sync_file_range` only reads the file's page cache and takes no pointers.
        let rc = unsafe {
            libc::sync_file_range(
                fd,
                off,
                n,
                libc::SYNC_FILE_RANGE_WAIT_BEFORE
                    | libc::SYNC_FILE_RANGE_WRITE
                    | libc::SYNC_FILE_RANGE_WAIT_AFTER,
            )
        };
        if rc != 0 {
            return;
        }
        offset = offset.saturating_add(step);
        if bytes_per_s > 0 {
            let due = std::time::Duration::from_secs_f64(offset as f64 / bytes_per_s as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn staged_writeback(_file: &File, _len: usize, _bytes_per_s: u64) {}

/// Maps `path` read-only, advising the kernel that it will be read soon and sequentially
/// (as validating a checksum does). Callers that then access it randomly may advise
/// [`Advice::Normal`].
pub fn map_readonly(path: &Path) -> io::Result<Mmap> {
    let file = File::open(path)?;
    // SAFETY: files mapped here live in a data directory this process holds locked; they were
    // written once (through `write_mapped`), renamed into place and are never modified in
    // place or truncated while the process runs, so the mapped bytes cannot change underneath
    // the returned slice.
    let map = unsafe { Mmap::map(&file)? };
    if !map.is_empty() {
        // Advice is a hint: a filesystem that ignores or rejects it reads correctly anyway.
        let _ = map.advise(Advice::Sequential);
        let _ = map.advise(Advice::WillNeed);
    }
    Ok(map)
}

/// The block size of the filesystem holding `dir` (`statfs` `f_bsize`: 4 KiB on disk and
/// tmpfs, the huge page size on hugetlbfs) and whether that filesystem is hugetlbfs.
pub fn fs_block_size(dir: &Path) -> io::Result<(u64, bool)> {
    let c = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    statfs_path(&c)
}

#[cfg(target_os = "linux")]
fn statfs_path(path: &CString) -> io::Result<(u64, bool)> {
    // SAFETY: `statfs` is plain old data; all-zero bytes are a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a NUL-terminated string that outlives the call and `st` is a valid,
    // writable `statfs` the kernel fills in.
    let rc = unsafe { libc::statfs(path.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(from_statfs(&st))
}

#[cfg(target_os = "linux")]
fn statfs_fd(file: &File) -> io::Result<(u64, bool)> {
    // SAFETY: `statfs` is plain old data; all-zero bytes are a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: the descriptor is open for the duration of the call (borrowed from `file`) and
    // `st` is a valid, writable `statfs` the kernel fills in.
    let rc = unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(from_statfs(&st))
}

#[cfg(target_os = "linux")]
#[allow(clippy::unnecessary_cast)] // `f_type`'s width and signedness differ between libcs
fn from_statfs(st: &libc::statfs) -> (u64, bool) {
    let block = u64::try_from(st.f_bsize).ok().filter(|b| *b > 0).unwrap_or(FALLBACK_BLOCK);
    // Compare the low 32 bits: on 32-bit glibc `f_type` is a signed 32-bit value.
    let huge = (st.f_type as u64) & 0xffff_ffff == HUGETLBFS_MAGIC;
    (block, huge)
}

#[cfg(not(target_os = "linux"))]
fn statfs_path(path: &CString) -> io::Result<(u64, bool)> {
    // SAFETY: `statvfs` is plain old data; all-zero bytes are a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a NUL-terminated string that outlives the call and `st` is a valid,
    // writable `statvfs` the kernel fills in.
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let block = u64::try_from(st.f_bsize).ok().filter(|b| *b > 0).unwrap_or(FALLBACK_BLOCK);
    Ok((block, false))
}

#[cfg(not(target_os = "linux"))]
fn statfs_fd(file: &File) -> io::Result<(u64, bool)> {
    // SAFETY: `statvfs` is plain old data; all-zero bytes are a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: the descriptor is open for the duration of the call (borrowed from `file`) and
    // `st` is a valid, writable `statvfs` the kernel fills in.
    let rc = unsafe { libc::fstatvfs(file.as_raw_fd(), &mut st) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let block = u64::try_from(st.f_bsize).ok().filter(|b| *b > 0).unwrap_or(FALLBACK_BLOCK);
    Ok((block, false))
}

/// Gives `file` `size` allocated bytes: `posix_fallocate` where the filesystem supports it,
/// else `ftruncate` (sparse: a later full disk would only show when pages are written back).
#[cfg(target_os = "linux")]
fn allocate(file: &File, size: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(size).map_err(|_| too_big())?;
    loop {
        // SAFETY: the descriptor is open for the duration of the call (borrowed from `file`);
        // `posix_fallocate` touches nothing but that file.
        let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
        match rc {
            0 => return Ok(()),
            libc::EINTR => continue,
            libc::EOPNOTSUPP | libc::EINVAL | libc::ENOSYS => return file.set_len(size),
            errno => return Err(io::Error::from_raw_os_error(errno)),
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn allocate(file: &File, size: u64) -> io::Result<()> {
    file.set_len(size)
}

fn round_up(len: u64, block: u64) -> io::Result<u64> {
    len.checked_next_multiple_of(block.max(1)).ok_or_else(too_big)
}

fn too_big() -> io::Error {
    io::Error::from_raw_os_error(libc::EFBIG)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn pattern(len: usize, salt: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt) ^ (i >> 8) as u8).collect()
    }

    /// Writes `len` bytes through `write_mapped` under `dir`, reads them back through
    /// `map_readonly` and checks size, contents and zero padding.
    fn round_trip(dir: &Path, len: usize) -> io::Result<()> {
        let (block, _) = fs_block_size(dir)?;
        let path = dir.join(format!("round-trip-{len}"));
        let data = pattern(len, 7);
        let size = write_mapped(&path, len, &Faults::default(), |buf| {
            assert_eq!(buf.len(), len);
            buf.copy_from_slice(&data);
        })?;
        assert_eq!(size % block, 0, "size {size} not a multiple of block {block}");
        assert!(size >= len as u64 && size < len as u64 + block.max(1), "size {size} for len {len}");
        assert_eq!(fs::metadata(&path)?.len(), size);
        let map = map_readonly(&path)?;
        assert_eq!(map.len() as u64, size);
        assert!(map[..len] == data[..], "contents differ after round trip");
        assert!(map[len..].iter().all(|b| *b == 0), "padding not zero");
        drop(map);
        fs::remove_file(&path)?;
        Ok(())
    }

    #[test]
    fn round_trip_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0, 1, 127, 128, 4095, 4096, 4097, 100_000] {
            round_trip(dir.path(), len).unwrap();
        }
    }

    #[test]
    fn round_trip_on_tmpfs() {
        let shm = Path::new("/dev/shm");
        if !shm.is_dir() {
            eprintln!("no /dev/shm; skipped");
            return;
        }
        let (block, huge) = fs_block_size(shm).unwrap();
        assert!(block >= 512 && block.is_power_of_two(), "tmpfs block size {block}");
        assert!(!huge, "/dev/shm reported as hugetlbfs");
        let dir = tempfile::tempdir_in(shm).unwrap();
        for len in [1, 4096, 4097, 65_536 + 3] {
            round_trip(dir.path(), len).unwrap();
        }
    }

    #[test]
    fn block_size_of_a_disk_dir() {
        let dir = tempfile::tempdir().unwrap();
        let (block, huge) = fs_block_size(dir.path()).unwrap();
        assert!(block >= 512, "block size {block}");
        assert!(!huge);
        assert!(fs_block_size(&dir.path().join("missing")).is_err());
    }

    fn hugetlbfs_mounts() -> Vec<PathBuf> {
        let Ok(mounts) = fs::read_to_string("/proc/mounts") else { return Vec::new() };
        mounts
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let (_dev, dir, kind) = (fields.next()?, fields.next()?, fields.next()?);
                // /proc/mounts escapes spaces as \040; such mounts are skipped.
                (kind == "hugetlbfs" && !dir.contains('\\')).then(|| PathBuf::from(dir))
            })
            .collect()
    }

    #[test]
    fn round_trip_on_hugetlbfs() {
        let mounts = hugetlbfs_mounts();
        if mounts.is_empty() {
            eprintln!("no hugetlbfs mount; skipped");
            return;
        }
        for mount in mounts {
            let (block, huge) = fs_block_size(&mount).unwrap();
            assert!(huge, "{} is hugetlbfs in /proc/mounts but not by statfs", mount.display());
            assert!(block >= 2 << 20, "huge page size {block}");
            let dir = match tempfile::tempdir_in(&mount) {
                Ok(dir) => dir,
                Err(e) => {
                    eprintln!("hugetlbfs {} not writable ({e}); skipped", mount.display());
                    continue;
                }
            };
            let len = 3 * 4096 + 5;
            match round_trip(dir.path(), len) {
                Ok(()) => eprintln!("hugetlbfs {} round trip ok (block {block})", mount.display()),
                // An empty huge page pool must be an error from `write_mapped`, never a SIGBUS.
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                    eprintln!("hugetlbfs {}: no free huge pages ({e}); skipped", mount.display());
                    assert!(!dir.path().join(format!("round-trip-{len}")).exists());
                }
                Err(e) => panic!("hugetlbfs {} round trip: {e}", mount.display()),
            }
        }
    }

    #[test]
    fn reserve_failure_is_enospc_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let faults = Faults::default();
        faults.no_space_after(100);
        let mut called = false;
        let err = write_mapped(&path, 5000, &faults, |_| called = true).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        assert!(!called, "fill ran although the space was not reserved");
        assert!(!path.exists(), "file left behind");
    }

    #[test]
    fn sync_failure_is_eio_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let faults = Faults::default();
        faults.fail_sync_after(0);
        let err = write_mapped(&path, 10, &faults, |b| b.fill(1)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EIO));
        assert!(!path.exists(), "file left behind");
    }

    #[test]
    fn rewrite_truncates_old_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let big = write_mapped(&path, 20_000, &Faults::default(), |b| b.fill(0xff)).unwrap();
        let small = write_mapped(&path, 10, &Faults::default(), |b| b.fill(1)).unwrap();
        assert!(small < big);
        let map = map_readonly(&path).unwrap();
        assert_eq!(map.len() as u64, small);
        assert!(map[..10].iter().all(|b| *b == 1));
        assert!(map[10..].iter().all(|b| *b == 0));
    }

    #[test]
    fn round_up_blocks() {
        assert_eq!(round_up(0, 4096).unwrap(), 0);
        assert_eq!(round_up(1, 4096).unwrap(), 4096);
        assert_eq!(round_up(4096, 4096).unwrap(), 4096);
        assert_eq!(round_up(4097, 2 << 20).unwrap(), 2 << 20);
        assert!(round_up(u64::MAX, 4096).is_err());
    }
}
