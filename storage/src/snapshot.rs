//! Snapshots of the full state: written atomically, validated on load, retained `keep` deep.
//!
//! A snapshot is one file, `snap-{height:020}.bsnap`, written as `….bsnap.tmp` through a
//! memory map ([`mapped::write_mapped`]), synced, renamed into place and made durable by
//! syncing the directory. Its layout (all integers little endian):
//!
//! | offset | size | field                                              |
//! |-------:|-----:|----------------------------------------------------|
//! |      0 |    8 | magic `b"BSTNSNAP"`                                |
//! |      8 |    4 | format version ([`FORMAT_VERSION`])                |
//! |     12 |    4 | payload layout (the caller's version of its bytes) |
//! |     16 |    8 | height                                             |
//! |     24 |   32 | state root                                         |
//! |     56 |    8 | payload length                                     |
//! |     64 |    4 | CRC-32C of the payload                             |
//! |     68 |    4 | CRC-32C of bytes 0..68                             |
//! |     72 |   56 | zero                                               |
//! |    128 |    … | payload, then zero padding to the filesystem block |
//!
//! The header is [`HEADER_LEN`] (128) bytes, so the payload starts 16-byte aligned in the
//! page-aligned mapping and the caller can `rkyv::access` it in place.
//!
//! Every byte of the file is checked on load: header, payload and padding. A damaged
//! snapshot is reported, never deleted; loading falls back to the newest one that validates.

use std::fmt;
use std::fs;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use memmap2::{Advice, Mmap};
/// The payload buffer of a [`SnapshotJobOutput`] (16-byte aligned, as an image's loader needs).
pub use rkyv::util::AlignedVec;

use crate::faults::{self, Faults};
use crate::mapped;

/// Length of the snapshot header; the payload starts at this offset.
pub const HEADER_LEN: usize = 128;
/// The snapshot file format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// First bytes of every snapshot file.
pub const MAGIC: [u8; 8] = *b"BSTNSNAP";

/// Bytes covered by the header checksum (everything before it).
const HEADER_CRC_AT: usize = 68;
/// Where the zero tail of the header starts.
const HEADER_USED: usize = 72;

const PREFIX: &str = "snap-";
const SUFFIX: &str = ".bsnap";
const TMP_SUFFIX: &str = ".bsnap.tmp";

/// What a snapshot's header says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// The snapshot file.
    pub path: PathBuf,
    /// Height of the last block applied to the state.
    pub height: u64,
    /// State root after that block.
    pub root: [u8; 32],
    /// The caller's payload layout version.
    pub layout: u32,
    /// Payload length in bytes.
    pub payload_len: u64,
}

/// Why a snapshot could not be written or loaded. Every variant about a file names it.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// An I/O operation failed.
    #[error("snapshot {}: {op} failed: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The filesystem is full (or the huge page pool is exhausted).
    #[error(
        "no space left to write snapshot {}: free space; the previous snapshots are intact",
        path.display()
    )]
    NoSpace {
        /// The snapshot that could not be written.
        path: PathBuf,
    },
    /// The file does not start with [`MAGIC`].
    #[error("{}: not a snapshot file (bad magic)", path.display())]
    BadMagic {
        /// The file.
        path: PathBuf,
    },
    /// The file has a format version this build does not read.
    #[error("{}: snapshot format version {found}, this build reads version {supported}", path.display())]
    Version {
        /// The file.
        path: PathBuf,
        /// Version in the file.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// The payload has a layout the caller does not read.
    #[error("{}: payload layout {found}, expected layout {expected}", path.display())]
    Layout {
        /// The file.
        path: PathBuf,
        /// Layout in the file.
        found: u32,
        /// Layout the caller reads.
        expected: u32,
    },
    /// The header is damaged or inconsistent with the file.
    #[error("{}: bad snapshot header: {reason}", path.display())]
    Header {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The payload does not match its checksum.
    #[error(
        "{}: payload checksum mismatch (header {expected:#010x}, computed {found:#010x}): \
         the snapshot is damaged",
        path.display()
    )]
    Checksum {
        /// The file.
        path: PathBuf,
        /// Checksum in the header.
        expected: u32,
        /// Checksum of the payload as read.
        found: u32,
    },
    /// A byte of the padding after the payload is not zero.
    #[error("{}: nonzero byte at offset {offset} after the payload: the snapshot is damaged", path.display())]
    Padding {
        /// The file.
        path: PathBuf,
        /// Offset of the first nonzero byte in the file.
        offset: u64,
    },
    /// The background writer is still writing the previous snapshot.
    #[error("snapshot writer busy: the previous snapshot is still being written")]
    Busy,
    /// The caller's serialization job failed (or panicked).
    #[error("snapshot job failed: {0}")]
    Job(String),
}

impl SnapshotError {
    fn io(path: &Path, op: &'static str, source: io::Error) -> SnapshotError {
        if is_no_space(&source) {
            SnapshotError::NoSpace { path: path.to_path_buf() }
        } else {
            SnapshotError::Io { path: path.to_path_buf(), op, source }
        }
    }

    fn header(path: &Path, reason: impl Into<String>) -> SnapshotError {
        SnapshotError::Header { path: path.to_path_buf(), reason: reason.into() }
    }
}

fn is_no_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// Bytes written between two checks of a [`Paced`] writer's pace.
pub const PACE_STEP: usize = 256 << 10;

/// A writer that passes everything on to `inner` at no more than `bytes_per_s` (0: as fast as
/// it can), [`PACE_STEP`] bytes at a time, sleeping between steps when ahead. A snapshot's
/// copies (serializing the image, copying it into the file) stream 100 MB for 1M accounts;
/// at full speed they take the memory bandwidth and cache a block's execution on the other
/// core needs, and the blocks executed meanwhile ran up to twice as long.
#[derive(Debug)]
pub struct Paced<W> {
    inner: W,
    bytes_per_s: u64,
    written: u64,
    start: std::time::Instant,
}

impl<W> Paced<W> {
    /// Paces `inner` at `bytes_per_s` from now on.
    pub fn new(inner: W, bytes_per_s: u64) -> Paced<W> {
        Paced { inner, bytes_per_s, written: 0, start: std::time::Instant::now() }
    }

    /// The writer written to.
    pub fn into_inner(self) -> W {
        self.inner
    }

    /// Sleeps until `written` bytes are due at the pace (now, if behind or unpaced).
    fn pace(&mut self, n: usize) {
        self.written = self.written.saturating_add(n as u64);
        if self.bytes_per_s > 0 {
            let due = std::time::Duration::from_secs_f64(self.written as f64 / self.bytes_per_s as f64);
            if let Some(wait) = due.checked_sub(self.start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
}

impl<W: io::Write> io::Write for Paced<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let step = buf.get(..PACE_STEP).unwrap_or(buf);
        self.inner.write_all(step)?;
        self.pace(step.len());
        Ok(step.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The directory of snapshots.
#[derive(Debug)]
pub struct SnapshotStore {
    dir: PathBuf,
    keep: usize,
    faults: Arc<Faults>,
    /// Writeback pace in bytes/s (0: unpaced).
    write_rate: u64,
    /// Pace of the copy of the payload into the file in bytes/s (0: unpaced).
    copy_rate: u64,
}

impl SnapshotStore {
    /// Opens (creating) the snapshot directory and removes leftover `snap-*.bsnap.tmp` files
    /// from a crash mid-write. [`write`](Self::write) keeps the newest `keep` snapshots
    /// (`keep` 0 is taken as 1).
    ///
    /// Only one store (or [`SnapshotWriter`]) may use a directory at a time: the caller holds
    /// the data directory's lock.
    pub fn open(dir: &Path, keep: usize, faults: Arc<Faults>) -> Result<SnapshotStore, SnapshotError> {
        fs::create_dir_all(dir).map_err(|e| SnapshotError::io(dir, "create directory", e))?;
        let entries = fs::read_dir(dir).map_err(|e| SnapshotError::io(dir, "list directory", e))?;
        for entry in entries {
            let entry = entry.map_err(|e| SnapshotError::io(dir, "list directory", e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(PREFIX) && name.ends_with(TMP_SUFFIX) {
                let path = entry.path();
                fs::remove_file(&path).map_err(|e| SnapshotError::io(&path, "remove leftover", e))?;
            }
        }
        Ok(SnapshotStore { dir: dir.to_path_buf(), keep: keep.max(1), faults, write_rate: 0, copy_rate: 0 })
    }

    /// Paces snapshot writeback at `bytes_per_s` (0: as fast as the device takes it), so a
    /// snapshot sharing a device with the block log does not delay the log's syncs.
    pub fn with_write_rate(mut self, bytes_per_s: u64) -> SnapshotStore {
        self.write_rate = bytes_per_s;
        self
    }

    /// Paces the copy of a payload into its file at `bytes_per_s` (0: unpaced; see [`Paced`]).
    pub fn with_copy_rate(mut self, bytes_per_s: u64) -> SnapshotStore {
        self.copy_rate = bytes_per_s;
        self
    }

    /// The snapshot directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many snapshots [`write`](Self::write) keeps.
    pub fn keep(&self) -> usize {
        self.keep
    }

    /// Path of the snapshot at `height` (whether or not it exists).
    pub fn path_for(&self, height: u64) -> PathBuf {
        self.dir.join(file_name(height))
    }

    /// Snapshot files by height, newest first. Names only: nothing is opened or validated.
    /// Files that are not named like snapshots are ignored.
    pub fn list(&self) -> Result<Vec<(u64, PathBuf)>, SnapshotError> {
        list_in(&self.dir)
    }

    /// Writes a snapshot: fills `snap-{height}.bsnap.tmp` through a memory map, syncs it,
    /// renames it into place and syncs the directory; then deletes the oldest snapshots beyond
    /// `keep`. A snapshot already at `height` is replaced.
    ///
    /// On failure no new snapshot is visible, the temporary file is removed and the earlier
    /// snapshots are intact. A full disk is [`SnapshotError::NoSpace`]. Failing to delete an
    /// old snapshot does not fail the write (the next write tries again).
    pub fn write(
        &self,
        height: u64,
        root: [u8; 32],
        layout: u32,
        payload: &[u8],
    ) -> Result<SnapshotMeta, SnapshotError> {
        let path = self.path_for(height);
        let tmp = self.dir.join(format!("{PREFIX}{height:020}{TMP_SUFFIX}"));
        let total = HEADER_LEN
            .checked_add(payload.len())
            .ok_or_else(|| SnapshotError::io(&path, "size", io::Error::from_raw_os_error(libc::EFBIG)))?;
        let header = encode_header(height, &root, layout, payload);
        let existed = fs::symlink_metadata(&path).is_ok();

        let copy_rate = self.copy_rate;
        let written = mapped::write_mapped_paced(&tmp, total, &self.faults, self.write_rate, |buf| {
            if let Some((head, body)) = buf.split_at_mut_checked(HEADER_LEN)
                && body.len() == payload.len()
            {
                head.copy_from_slice(&header);
                let mut paced = Paced::new(body, copy_rate);
                // Writing into a slice of the payload's length cannot fail or come up short.
                let _ = io::Write::write_all(&mut paced, payload);
            }
        });
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(SnapshotError::io(&path, "write and sync", e));
        }
        if let Err(e) = fs::rename(&tmp, &path) {
            let _ = fs::remove_file(&tmp);
            return Err(SnapshotError::io(&path, "rename into place", e));
        }
        if let Err(e) = faults::sync_dir(&self.faults, &self.dir) {
            // The rename may not be durable; take it back so an error always means "no new
            // snapshot". (A replaced snapshot at the same height is gone either way.)
            if !existed {
                let _ = fs::remove_file(&path);
            }
            return Err(SnapshotError::io(&path, "sync directory after renaming", e));
        }
        self.prune();
        Ok(SnapshotMeta { path, height, root, layout, payload_len: payload.len() as u64 })
    }

    /// Deletes the oldest snapshots beyond `keep`, best effort.
    fn prune(&self) {
        let Ok(all) = self.list() else { return };
        for (_, path) in all.iter().skip(self.keep) {
            let _ = fs::remove_file(path);
        }
    }

    /// Opens and fully validates one snapshot: magic, format version, header checksum, layout
    /// (must equal `expected_layout`), height against the file name, file length, payload
    /// checksum and zero padding.
    pub fn open_snapshot(&self, path: &Path, expected_layout: u32) -> Result<Snapshot, SnapshotError> {
        Snapshot::open(path, expected_layout)
    }

    /// The newest snapshot that validates, with the errors of the newer ones that did not.
    /// Damaged snapshots are reported, never deleted. `Ok((None, errors))` when none
    /// validates (or there are none).
    pub fn newest_valid(
        &self,
        expected_layout: u32,
    ) -> Result<(Option<Snapshot>, Vec<SnapshotError>), SnapshotError> {
        self.newest_valid_at_most(u64::MAX, expected_layout)
    }

    /// The newest snapshot with height `<= max_height` that validates, with the errors of the
    /// newer ones (up to `max_height`) that did not. Used when the log after a newer snapshot
    /// is unusable.
    pub fn newest_valid_at_most(
        &self,
        max_height: u64,
        expected_layout: u32,
    ) -> Result<(Option<Snapshot>, Vec<SnapshotError>), SnapshotError> {
        let mut errors = Vec::new();
        for (_, path) in self.list()?.into_iter().filter(|(h, _)| *h <= max_height) {
            match Snapshot::open(&path, expected_layout) {
                Ok(snap) => return Ok((Some(snap), errors)),
                Err(e) => errors.push(e),
            }
        }
        Ok((None, errors))
    }
}

/// Snapshot files in `dir` by height, newest first, names only (nothing opened, nothing
/// removed: safe beside a writer). A missing directory lists nothing.
pub fn list_in(dir: &Path) -> Result<Vec<(u64, PathBuf)>, SnapshotError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(SnapshotError::io(dir, "list directory", e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| SnapshotError::io(dir, "list directory", e))?;
        if let Some(height) = entry.file_name().to_str().and_then(parse_name) {
            found.push((height, entry.path()));
        }
    }
    found.sort_unstable_by_key(|(height, _)| std::cmp::Reverse(*height));
    Ok(found)
}

fn file_name(height: u64) -> String {
    format!("{PREFIX}{height:020}{SUFFIX}")
}

/// The height in a snapshot file name, `None` for any other name.
fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn encode_header(height: u64, root: &[u8; 32], layout: u32, payload: &[u8]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    let fields: [&[u8]; 7] = [
        &MAGIC,
        &FORMAT_VERSION.to_le_bytes(),
        &layout.to_le_bytes(),
        &height.to_le_bytes(),
        root,
        &(payload.len() as u64).to_le_bytes(),
        &crc32c::crc32c(payload).to_le_bytes(),
    ];
    let mut at = 0;
    for field in fields {
        if let Some(dst) = h.get_mut(at..at + field.len()) {
            dst.copy_from_slice(field);
        }
        at += field.len();
    }
    let crc = crc32c::crc32c(h.get(..HEADER_CRC_AT).unwrap_or_default());
    if let Some(dst) = h.get_mut(HEADER_CRC_AT..HEADER_USED) {
        dst.copy_from_slice(&crc.to_le_bytes());
    }
    h
}

/// Reads fixed-size fields off the front of a byte slice (zeros past its end).
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        match self.0.split_first_chunk::<N>() {
            Some((field, rest)) => {
                self.0 = rest;
                *field
            }
            None => {
                self.0 = &[];
                [0; N]
            }
        }
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }

    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
}

/// A validated snapshot, mapped read-only. The payload stays valid while this lives.
pub struct Snapshot {
    meta: SnapshotMeta,
    map: Mmap,
    payload_end: usize,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot").field("meta", &self.meta).field("mapped_len", &self.map.len()).finish()
    }
}

impl Snapshot {
    /// What the header says (validated).
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// The payload: `meta().payload_len` bytes, 16-byte aligned (so `rkyv::access` works on
    /// it in place), checksum verified.
    pub fn payload(&self) -> &[u8] {
        self.map.get(HEADER_LEN..self.payload_end).unwrap_or_default()
    }

    /// Opens and fully validates the snapshot file at `path` (as
    /// [`SnapshotStore::open_snapshot`]), without a [`SnapshotStore`]: for readers beside the
    /// writer, such as a node serving its snapshots to peers.
    pub fn open(path: &Path, expected_layout: u32) -> Result<Snapshot, SnapshotError> {
        let map = mapped::map_readonly(path).map_err(|e| SnapshotError::io(path, "open and map", e))?;
        let file_len = map.len();
        let Some(header) = map.get(..HEADER_LEN) else {
            return Err(SnapshotError::header(
                path,
                format!("truncated: the file holds {file_len} bytes, less than the {HEADER_LEN}-byte header"),
            ));
        };
        let mut f = Fields(header);
        if f.take::<8>() != MAGIC {
            return Err(SnapshotError::BadMagic { path: path.to_path_buf() });
        }
        // The version comes before the checksum: a newer format may lay its header out
        // differently, and must be reported as such rather than as damage.
        let version = f.u32();
        if version != FORMAT_VERSION {
            return Err(SnapshotError::Version {
                path: path.to_path_buf(),
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let layout = f.u32();
        let height = f.u64();
        let root = f.take::<32>();
        let payload_len = f.u64();
        let payload_crc = f.u32();
        let header_crc = f.u32();
        let computed = crc32c::crc32c(header.get(..HEADER_CRC_AT).unwrap_or_default());
        if header_crc != computed {
            return Err(SnapshotError::header(
                path,
                format!("header checksum mismatch (stored {header_crc:#010x}, computed {computed:#010x})"),
            ));
        }
        if header.get(HEADER_USED..).unwrap_or_default().iter().any(|b| *b != 0) {
            return Err(SnapshotError::header(path, "reserved header bytes are not zero"));
        }
        if layout != expected_layout {
            return Err(SnapshotError::Layout {
                path: path.to_path_buf(),
                found: layout,
                expected: expected_layout,
            });
        }
        if let Some(named) = path.file_name().and_then(|n| n.to_str()).and_then(parse_name)
            && named != height
        {
            return Err(SnapshotError::header(
                path,
                format!("header says height {height}, the file name says {named}"),
            ));
        }
        let held = file_len - HEADER_LEN;
        let payload_end = usize::try_from(payload_len)
            .ok()
            .and_then(|len| HEADER_LEN.checked_add(len))
            .filter(|end| *end <= file_len)
            .ok_or_else(|| {
                SnapshotError::header(
                    path,
                    format!("truncated: header says {payload_len} payload bytes, file holds {held}"),
                )
            })?;
        let payload = map.get(HEADER_LEN..payload_end).unwrap_or_default();
        let found = crc32c::crc32c(payload);
        if found != payload_crc {
            return Err(SnapshotError::Checksum { path: path.to_path_buf(), expected: payload_crc, found });
        }
        let padding = map.get(payload_end..).unwrap_or_default();
        if let Some(i) = padding.iter().position(|b| *b != 0) {
            let offset = (payload_end + i) as u64;
            return Err(SnapshotError::Padding { path: path.to_path_buf(), offset });
        }
        if !map.is_empty() {
            // Validation read it sequentially; the caller's reads are not. A hint only.
            let _ = map.advise(Advice::Normal);
        }
        let meta = SnapshotMeta { path: path.to_path_buf(), height, root, layout, payload_len };
        Ok(Snapshot { meta, map, payload_end })
    }
}

/// What a [`SnapshotJob`] produces: height, state root, payload layout and the payload
/// (typically `rkyv::to_bytes`'s output, which is an [`AlignedVec`]).
pub type SnapshotJobOutput = (u64, [u8; 32], u32, AlignedVec);

/// A snapshot to write, run on the writer's `snapshot` thread: it serializes the state (an
/// error is reported as [`SnapshotError::Job`]) and returns what [`SnapshotStore::write`]
/// takes.
pub type SnapshotJob = Box<dyn FnOnce() -> Result<SnapshotJobOutput, String> + Send>;

/// The second stage of a [`StagedSnapshotJob`]: what is left of serializing once the first
/// stage has let go of what it shared with the caller.
pub type SnapshotFinish = Box<dyn FnOnce() -> Result<SnapshotJobOutput, String> + Send>;

/// A snapshot in two stages: the first runs on the `snapshot` thread at the default priority
/// (it should do only what must be fast, such as copying out the memory it shares
/// copy-on-write with the caller, so that the caller stops paying for copies soon) and
/// returns the second, which runs with the write on the `snapshot-io` thread at
/// [`SNAPSHOT_NICE`].
pub type StagedSnapshotJob = Box<dyn FnOnce() -> Result<SnapshotFinish, String> + Send>;

type JobResult = Result<SnapshotMeta, SnapshotError>;

#[derive(Debug, Default)]
struct State {
    in_flight: bool,
    results: Vec<JobResult>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    done: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave `State` inconsistent (two plain fields).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the result of the job in flight and lets the next one in.
    fn finish(&self, result: JobResult) {
        let mut state = self.lock();
        state.results.push(result);
        state.in_flight = false;
        drop(state);
        self.done.notify_all();
    }
}

/// Work for the `snapshot` thread.
enum Work {
    Whole(SnapshotJob),
    Staged(StagedSnapshotJob),
}

impl fmt::Debug for Work {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Work::Whole(_) => "Work::Whole",
            Work::Staged(_) => "Work::Staged",
        })
    }
}

/// Nice value of the `snapshot-io` thread (0 is the default, 19 the lowest priority). Where
/// the cores are all busy (a 2-core box running a node's execution, consensus and storage
/// threads, or several nodes), a snapshot's serialization and write at the default priority
/// take a full share of a core from them, and the blocks executed meanwhile are slower; at
/// 10 they get about a tenth of the share of a default-priority thread on the same core (CFS
/// weights 110 and 1024), so they still finish, later, and on an idle core run at full speed.
pub const SNAPSHOT_NICE: i32 = 10;

/// Lowers the calling thread's scheduling priority to [`SNAPSHOT_NICE`], best effort (a thread
/// may always lower its own priority; where it cannot, it keeps the default).
fn lower_priority() {
    // SAFETY: `gettid` has no preconditions and touches no memory of ours.
    let tid = unsafe { libc::gettid() };
    let Ok(tid) = libc::id_t::try_from(tid) else { return };
    // SAFETY: `setpriority` reads and writes no memory of ours; on Linux, `PRIO_PROCESS` with
    // a thread id sets that one thread's nice value, here the calling thread's own.
    let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, SNAPSHOT_NICE) };
}

/// Writes snapshots on background threads, so execution never waits for serialization or the
/// disk: `snapshot` runs a job (or a staged job's first stage) at the default priority and
/// hands what is left to `snapshot-io`, which finishes it (a staged job's second stage) and
/// writes the snapshot at the lower priority [`SNAPSHOT_NICE`]. At most one job is in flight, from its submission until its
/// snapshot is written, so the queues to and between the threads hold at most that one.
#[derive(Debug)]
pub struct SnapshotWriter {
    store: Arc<SnapshotStore>,
    shared: Arc<Shared>,
    jobs: Option<mpsc::Sender<Work>>,
    threads: Vec<JoinHandle<()>>,
    /// Why the threads could not be started, if they could not.
    spawn_error: Option<String>,
}

impl SnapshotWriter {
    /// Spawns the writer's threads, which own `store`. If they cannot be started, every
    /// [`submit`](Self::submit) fails with [`SnapshotError::Job`] saying why.
    pub fn spawn(store: SnapshotStore) -> SnapshotWriter {
        let store = Arc::new(store);
        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::channel::<Work>();
        let (io_tx, io_rx) = mpsc::channel::<SnapshotFinish>();
        let (io_store, io_shared) = (Arc::clone(&store), Arc::clone(&shared));
        let io = std::thread::Builder::new().name("snapshot-io".into()).spawn(move || {
            lower_priority();
            while let Ok(finish) = io_rx.recv() {
                io_shared.finish(write_job(&io_store, finish));
            }
        });
        let io = match io {
            Ok(io) => io,
            Err(e) => {
                let why = format!("the snapshot-io thread could not be started: {e}");
                return SnapshotWriter::failed(store, shared, why);
            }
        };
        let first_shared = Arc::clone(&shared);
        let first = std::thread::Builder::new().name("snapshot".into()).spawn(move || {
            while let Ok(work) = rx.recv() {
                let finish = match work {
                    // Serialized here; only the write is left.
                    Work::Whole(job) => run_stage(Box::new(move || {
                        let output = job()?;
                        Ok(Box::new(move || Ok(output)) as SnapshotFinish)
                    })),
                    Work::Staged(job) => run_stage(job),
                };
                match finish {
                    Ok(finish) => {
                        // The io thread runs as long as this thread holds its queue's sender.
                        if io_tx.send(finish).is_err() {
                            let stopped = SnapshotError::Job("the snapshot-io thread has stopped".into());
                            first_shared.finish(Err(stopped));
                        }
                    }
                    Err(e) => first_shared.finish(Err(e)),
                }
            }
        });
        match first {
            Ok(first) => {
                SnapshotWriter { store, shared, jobs: Some(tx), threads: vec![first, io], spawn_error: None }
            }
            Err(e) => {
                // The io thread's queue sender went with the closure that was not started, so
                // the io thread has ended or is ending.
                let _ = io.join();
                let why = format!("the snapshot thread could not be started: {e}");
                SnapshotWriter::failed(store, shared, why)
            }
        }
    }

    fn failed(store: Arc<SnapshotStore>, shared: Arc<Shared>, why: String) -> SnapshotWriter {
        SnapshotWriter { store, shared, jobs: None, threads: Vec::new(), spawn_error: Some(why) }
    }

    /// The store the threads write to (for listing and loading; do not open a second store
    /// on the same directory while the writer lives: opening removes temporary files).
    pub fn store(&self) -> &SnapshotStore {
        &self.store
    }

    /// Hands `job` to the threads, which run it (serialization) and write its snapshot.
    /// Never blocks: while the previous job is still running, returns
    /// [`SnapshotError::Busy`] and drops `job` (the caller skips this snapshot).
    pub fn submit(&self, job: SnapshotJob) -> Result<(), SnapshotError> {
        self.submit_work(Work::Whole(job))
    }

    /// [`submit`](Self::submit) for a job in two stages (see [`StagedSnapshotJob`]).
    pub fn submit_staged(&self, job: StagedSnapshotJob) -> Result<(), SnapshotError> {
        self.submit_work(Work::Staged(job))
    }

    fn submit_work(&self, work: Work) -> Result<(), SnapshotError> {
        let Some(jobs) = &self.jobs else {
            return Err(SnapshotError::Job(self.spawn_error.clone().unwrap_or_default()));
        };
        let mut state = self.shared.lock();
        if state.in_flight {
            return Err(SnapshotError::Busy);
        }
        if jobs.send(work).is_err() {
            return Err(SnapshotError::Job("the snapshot thread has stopped".into()));
        }
        state.in_flight = true;
        Ok(())
    }

    /// Results of the jobs finished since the last `poll` or [`wait`](Self::wait), oldest
    /// first, without blocking.
    pub fn poll(&self) -> Vec<Result<SnapshotMeta, SnapshotError>> {
        std::mem::take(&mut self.shared.lock().results)
    }

    /// Waits for the job in flight (if any), then returns what [`poll`](Self::poll) would.
    /// The threads stay alive for more jobs.
    pub fn wait(&self) -> Vec<Result<SnapshotMeta, SnapshotError>> {
        let mut state = self.shared.lock();
        while state.in_flight {
            state = self.shared.done.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
        std::mem::take(&mut state.results)
    }

    /// True while a job is running.
    pub fn busy(&self) -> bool {
        self.shared.lock().in_flight
    }
}

/// The message of a caught panic.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Runs a staged job's first stage; a failing or panicking one becomes [`SnapshotError::Job`].
fn run_stage(job: StagedSnapshotJob) -> Result<SnapshotFinish, SnapshotError> {
    match catch_unwind(AssertUnwindSafe(job)) {
        Ok(Ok(finish)) => Ok(finish),
        Ok(Err(message)) => Err(SnapshotError::Job(message)),
        Err(panic) => Err(SnapshotError::Job(format!("panicked: {}", panic_message(&*panic)))),
    }
}

/// Runs what is left of a job and writes its snapshot; a failing or panicking job becomes
/// [`SnapshotError::Job`].
fn write_job(store: &SnapshotStore, finish: SnapshotFinish) -> JobResult {
    let ran = catch_unwind(AssertUnwindSafe(move || match finish() {
        Ok((height, root, layout, payload)) => store.write(height, root, layout, &payload),
        Err(message) => Err(SnapshotError::Job(message)),
    }));
    ran.unwrap_or_else(|panic| Err(SnapshotError::Job(format!("panicked: {}", panic_message(&*panic)))))
}

impl Drop for SnapshotWriter {
    /// Waits for the job in flight, then stops and joins the threads (the first ends when its
    /// queue closes, and so closes the second's). Unpolled results are dropped.
    fn drop(&mut self) {
        drop(self.jobs.take());
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;
    use std::time::Duration;

    fn store(dir: &Path, keep: usize) -> SnapshotStore {
        SnapshotStore::open(dir, keep, Faults::none()).unwrap()
    }

    fn payload(height: u64, len: usize) -> Vec<u8> {
        (0..len).map(|i| (i as u64).wrapping_mul(height | 1).wrapping_add(height) as u8).collect()
    }

    #[test]
    fn a_paced_writer_passes_every_byte_on_at_no_more_than_its_pace() {
        let data = payload(7, 3 * PACE_STEP + 123);
        // 8 MiB/s: the 768 KiB after the first step are due no sooner than 94 ms in.
        let started = std::time::Instant::now();
        let mut paced = Paced::new(Vec::new(), 8 << 20);
        io::Write::write_all(&mut paced, &data).unwrap();
        let took = started.elapsed();
        assert_eq!(paced.into_inner(), data);
        let due = Duration::from_secs_f64((data.len() - 123) as f64 / f64::from(8u32 << 20));
        assert!(took >= due, "wrote {} bytes in {took:?}, faster than the pace allows ({due:?})", data.len());
        // Unpaced: the same bytes, no sleeping.
        let started = std::time::Instant::now();
        let mut unpaced = Paced::new(Vec::new(), 0);
        io::Write::write_all(&mut unpaced, &data).unwrap();
        assert_eq!(unpaced.into_inner(), data);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_copy_paced_snapshot_reads_back_the_same_payload() {
        let tmp = tempfile::tempdir().unwrap();
        let snaps = store(tmp.path(), 2).with_copy_rate(64 << 20).with_write_rate(64 << 20);
        let body = payload(9, 2 * PACE_STEP + 5);
        snaps.write(9, [9u8; 32], 1, &body).unwrap();
        let (newest, errors) = snaps.newest_valid(1).unwrap();
        let snap = newest.unwrap();
        assert!(errors.is_empty());
        assert_eq!((snap.meta().height, snap.payload()), (9, body.as_slice()));
    }

    fn root(height: u64) -> [u8; 32] {
        let mut r = [0u8; 32];
        r[..8].copy_from_slice(&height.to_le_bytes());
        r[31] = 0xab;
        r
    }

    fn aligned(bytes: &[u8]) -> AlignedVec {
        let mut v = AlignedVec::new();
        v.extend_from_slice(bytes);
        v
    }

    #[test]
    fn write_list_open() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir.path().join("snaps"), 3);
        assert!(s.list().unwrap().is_empty());
        let (none, errs) = s.newest_valid(1).unwrap();
        assert!(none.is_none() && errs.is_empty());

        for h in [5u64, 10, 7] {
            let meta = s.write(h, root(h), 1, &payload(h, 1000 + h as usize)).unwrap();
            assert_eq!(meta.path, s.path_for(h));
            assert_eq!(meta.payload_len, 1000 + h);
        }
        let heights: Vec<u64> = s.list().unwrap().into_iter().map(|(h, _)| h).collect();
        assert_eq!(heights, vec![10, 7, 5]);

        let snap = s.open_snapshot(&s.path_for(7), 1).unwrap();
        assert_eq!(snap.meta().height, 7);
        assert_eq!(snap.meta().root, root(7));
        assert_eq!(snap.meta().layout, 1);
        assert_eq!(snap.payload(), &payload(7, 1007)[..]);
        assert_eq!(snap.payload().as_ptr() as usize % 16, 0, "payload not 16-byte aligned");

        let (newest, errs) = s.newest_valid(1).unwrap();
        assert!(errs.is_empty());
        assert_eq!(newest.unwrap().meta().height, 10);
        let (at_most, _) = s.newest_valid_at_most(9, 1).unwrap();
        assert_eq!(at_most.unwrap().meta().height, 7);
        let (below, _) = s.newest_valid_at_most(4, 1).unwrap();
        assert!(below.is_none());
    }

    #[test]
    fn empty_payload() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), 1);
        s.write(1, [0; 32], 0, &[]).unwrap();
        let snap = s.open_snapshot(&s.path_for(1), 0).unwrap();
        assert!(snap.payload().is_empty());
        assert_eq!(snap.meta().payload_len, 0);
    }

    #[test]
    fn retention_keeps_exactly_keep() {
        for keep in [1usize, 2, 3] {
            let dir = tempfile::tempdir().unwrap();
            let s = store(dir.path(), keep);
            for h in 1..=6u64 {
                s.write(h * 10, root(h), 2, &payload(h, 300)).unwrap();
                let heights: Vec<u64> = s.list().unwrap().into_iter().map(|(h, _)| h).collect();
                let expect: Vec<u64> = (1..=h).rev().take(keep).map(|h| h * 10).collect();
                assert_eq!(heights, expect, "keep {keep} after writing {}", h * 10);
            }
        }
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(store(dir.path(), 0).keep(), 1);
    }

    #[test]
    fn rewrite_same_height_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), 2);
        s.write(3, root(1), 1, b"first").unwrap();
        let old = s.open_snapshot(&s.path_for(3), 1).unwrap();
        s.write(3, root(2), 1, b"second, longer").unwrap();
        // The mapping of the replaced file stays valid.
        assert_eq!(old.payload(), b"first");
        let new = s.open_snapshot(&s.path_for(3), 1).unwrap();
        assert_eq!(new.payload(), b"second, longer");
        assert_eq!(new.meta().root, root(2));
        assert_eq!(s.list().unwrap().len(), 1);
    }

    #[test]
    fn tmp_files_removed_at_open_and_unrelated_files_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), 3);
        s.write(1, root(1), 1, b"one").unwrap();
        let tmp = dir.path().join("snap-00000000000000000002.bsnap.tmp");
        fs::write(&tmp, b"half written").unwrap();
        for name in [
            "notes.txt",
            "snap-1.bsnap",
            "snap-0000000000000000000x.bsnap",
            "snap-00000000000000000003.bsnapx",
        ] {
            fs::write(dir.path().join(name), b"x").unwrap();
        }
        assert_eq!(s.list().unwrap().len(), 1, "tmp or unrelated files listed");
        let s = store(dir.path(), 3);
        assert!(!tmp.exists(), "leftover tmp not removed");
        assert!(dir.path().join("notes.txt").exists(), "unrelated file removed");
        assert_eq!(s.list().unwrap(), vec![(1, s.path_for(1))]);
    }

    #[test]
    fn names() {
        assert_eq!(file_name(42), "snap-00000000000000000042.bsnap");
        assert_eq!(parse_name(&file_name(42)), Some(42));
        assert_eq!(parse_name(&file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_name("snap-99999999999999999999.bsnap"), None);
        assert_eq!(parse_name("snap-0000000000000000004.bsnap"), None);
        assert_eq!(parse_name("snap-+0000000000000000042.bsnap"), None);
        assert_eq!(parse_name("snap-00000000000000000042.bsnap.tmp"), None);
    }

    #[test]
    fn header_layout() {
        let h = encode_header(0x0102_0304_0506_0708, &[9; 32], 77, b"abc");
        assert_eq!(&h[..8], b"BSTNSNAP");
        assert_eq!(u32::from_le_bytes(h[8..12].try_into().unwrap()), FORMAT_VERSION);
        assert_eq!(u32::from_le_bytes(h[12..16].try_into().unwrap()), 77);
        assert_eq!(u64::from_le_bytes(h[16..24].try_into().unwrap()), 0x0102_0304_0506_0708);
        assert_eq!(&h[24..56], &[9; 32]);
        assert_eq!(u64::from_le_bytes(h[56..64].try_into().unwrap()), 3);
        assert_eq!(u32::from_le_bytes(h[64..68].try_into().unwrap()), crc32c::crc32c(b"abc"));
        assert_eq!(u32::from_le_bytes(h[68..72].try_into().unwrap()), crc32c::crc32c(&h[..68]));
        assert!(h[72..].iter().all(|b| *b == 0));
    }

    #[test]
    fn height_must_match_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), 3);
        s.write(5, root(5), 1, b"five").unwrap();
        let renamed = s.path_for(6);
        fs::rename(s.path_for(5), &renamed).unwrap();
        match s.open_snapshot(&renamed, 1) {
            Err(SnapshotError::Header { reason, .. }) => assert!(reason.contains("height 5"), "{reason}"),
            other => panic!("expected a header error, got {other:?}"),
        }
        // Any other name is not checked against.
        let other = dir.path().join("copy.bin");
        fs::rename(&renamed, &other).unwrap();
        assert_eq!(s.open_snapshot(&other, 1).unwrap().meta().height, 5);
    }

    #[test]
    fn missing_and_empty_files() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), 3);
        let missing = s.path_for(1);
        match s.open_snapshot(&missing, 1) {
            Err(e @ SnapshotError::Io { .. }) => assert!(e.to_string().contains("snap-00000000000000000001")),
            other => panic!("expected an I/O error, got {other:?}"),
        }
        fs::write(&missing, b"").unwrap();
        match s.open_snapshot(&missing, 1) {
            Err(SnapshotError::Header { reason, .. }) => assert!(reason.contains("truncated"), "{reason}"),
            other => panic!("expected a header error, got {other:?}"),
        }
    }

    #[test]
    fn writer_submit_poll_wait() {
        let dir = tempfile::tempdir().unwrap();
        let w = SnapshotWriter::spawn(store(dir.path(), 2));
        assert!(!w.busy());
        assert!(w.poll().is_empty());
        assert!(w.wait().is_empty());

        let (go_tx, go_rx) = channel::<()>();
        let (started_tx, started_rx) = channel::<String>();
        w.submit(Box::new(move || {
            let name = std::thread::current().name().unwrap_or_default().to_string();
            started_tx.send(name).unwrap();
            go_rx.recv().map_err(|e| e.to_string())?;
            Ok((1, root(1), 4, aligned(b"payload one")))
        }))
        .unwrap();
        assert_eq!(started_rx.recv_timeout(Duration::from_secs(10)).unwrap(), "snapshot");
        assert!(w.busy());
        let skipped = w.submit(Box::new(|| Ok((2, root(2), 4, aligned(b"two")))));
        assert!(matches!(skipped, Err(SnapshotError::Busy)), "{skipped:?}");
        assert!(w.poll().is_empty(), "result before the job finished");
        go_tx.send(()).unwrap();
        let results = w.wait();
        assert_eq!(results.len(), 1);
        let meta = results.into_iter().next().unwrap().unwrap();
        assert_eq!((meta.height, meta.layout, meta.payload_len), (1, 4, 11));
        assert!(!w.busy());
        assert!(w.poll().is_empty());
        // The skipped job never ran.
        assert_eq!(w.store().list().unwrap(), vec![(1, w.store().path_for(1))]);

        w.submit(Box::new(|| Ok((3, root(3), 4, aligned(b"three"))))).unwrap();
        let mut results = Vec::new();
        for _ in 0..1000 {
            results.extend(w.poll());
            if !results.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(results.len(), 1);
        assert_eq!(results.pop().unwrap().unwrap().height, 3);
        let snap = w.store().open_snapshot(&w.store().path_for(3), 4).unwrap();
        assert_eq!(snap.payload(), b"three");
    }

    #[test]
    fn writer_job_errors_and_panics() {
        let dir = tempfile::tempdir().unwrap();
        let w = SnapshotWriter::spawn(store(dir.path(), 2));
        w.submit(Box::new(|| Err("serialization failed: out of cheese".to_string()))).unwrap();
        let results = w.wait();
        match &results[..] {
            [Err(SnapshotError::Job(msg))] => assert!(msg.contains("out of cheese"), "{msg}"),
            other => panic!("expected a job error, got {other:?}"),
        }
        w.submit(Box::new(|| panic!("boom"))).unwrap();
        match &w.wait()[..] {
            [Err(SnapshotError::Job(msg))] => assert!(msg.contains("boom"), "{msg}"),
            other => panic!("expected a job error, got {other:?}"),
        }
        // The thread survived both.
        w.submit(Box::new(|| Ok((9, root(9), 1, aligned(b"nine"))))).unwrap();
        assert_eq!(w.wait().pop().unwrap().unwrap().height, 9);
        assert!(w.store().list().unwrap().len() == 1);
    }

    #[test]
    fn writer_reports_write_errors() {
        let dir = tempfile::tempdir().unwrap();
        let faults = Faults::none();
        let s = SnapshotStore::open(dir.path(), 2, Arc::clone(&faults)).unwrap();
        let w = SnapshotWriter::spawn(s);
        faults.no_space_after(10);
        w.submit(Box::new(|| Ok((1, root(1), 1, aligned(&[7; 5000]))))).unwrap();
        assert!(matches!(&w.wait()[..], [Err(SnapshotError::NoSpace { .. })]));
        assert!(w.store().list().unwrap().is_empty());
    }

    #[test]
    fn drop_waits_for_the_job_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let path = {
            let w = SnapshotWriter::spawn(store(dir.path(), 2));
            w.submit(Box::new(|| {
                std::thread::sleep(Duration::from_millis(50));
                Ok((4, root(4), 1, aligned(b"four")))
            }))
            .unwrap();
            w.store().path_for(4)
        };
        assert!(path.exists(), "drop did not wait for the job");
        assert!(!dir.path().join("snap-00000000000000000004.bsnap.tmp").exists());
    }

    fn own_nice() -> i32 {
        // SAFETY: no memory of ours is involved; errors read as -1, which the test would show.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
    }

    #[test]
    fn staged_jobs_finish_at_a_lower_priority() {
        let dir = tempfile::tempdir().unwrap();
        let w = SnapshotWriter::spawn(store(dir.path(), 3));
        let (tx, rx) = channel();
        w.submit_staged(Box::new(move || {
            let first = (own_nice(), std::thread::current().name().map(String::from));
            let finish: SnapshotFinish = Box::new(move || {
                let second = (own_nice(), std::thread::current().name().map(String::from));
                tx.send((first, second)).unwrap();
                Ok((5, root(5), 1, aligned(b"five")))
            });
            Ok(finish)
        }))
        .unwrap();
        let results = w.wait();
        assert!(matches!(results.as_slice(), [Ok(m)] if m.height == 5), "{results:?}");
        let ((nice1, name1), (nice2, name2)) = rx.recv().unwrap();
        assert_eq!((name1.as_deref(), name2.as_deref()), (Some("snapshot"), Some("snapshot-io")));
        assert!(nice2 >= nice1, "the second stage runs at a priority no higher: {nice1} then {nice2}");
        assert!(nice2 == SNAPSHOT_NICE || nice1 > 0, "nice {nice2}, expected {SNAPSHOT_NICE}");

        // Failures and panics of either stage are the job's error; the writer goes on.
        w.submit_staged(Box::new(|| Err("no image".to_string()))).unwrap();
        let r = w.wait();
        assert!(matches!(r.as_slice(), [Err(SnapshotError::Job(m))] if m == "no image"), "{r:?}");
        w.submit_staged(Box::new(|| panic!("stage one"))).unwrap();
        let r = w.wait();
        assert!(matches!(r.as_slice(), [Err(SnapshotError::Job(m))] if m.contains("stage one")), "{r:?}");
        let panics: SnapshotFinish = Box::new(|| panic!("stage two"));
        w.submit_staged(Box::new(move || Ok(panics))).unwrap();
        let r = w.wait();
        assert!(matches!(r.as_slice(), [Err(SnapshotError::Job(m))] if m.contains("stage two")), "{r:?}");
        let six: SnapshotFinish = Box::new(|| Ok((6, root(6), 1, aligned(b"six"))));
        w.submit_staged(Box::new(move || Ok(six))).unwrap();
        let r = w.wait();
        assert!(matches!(r.as_slice(), [Ok(m)] if m.height == 6), "{r:?}");
    }
}
