//! The crash-safe, append-only log of finalized blocks.
//!
//! # Format
//!
//! The log is a directory of segment files named `{id:020}.log`, read in the order of `id`. The
//! id is the height of the first record the segment was created for, raised where needed so ids
//! strictly increase; it orders segments and says nothing else (heights come from records).
//!
//! A segment starts with a 16-byte header, then records back to back:
//!
//! ```text
//! segment header: magic "BASTNLOG" | version u32 (1) | crc32c(magic, version) u32
//! record header:  magic "BLK1" | len u32 | height u64 | data crc u32 | head crc u32
//!                 then `len` payload bytes
//! ```
//!
//! All integers are little-endian. The data crc is crc32c over (len, height, payload); the head
//! crc is crc32c over the first 20 header bytes, so a damaged length is caught before it is used
//! and a flipped height or length can never pass. A header with the right magic and checksum but
//! another version is refused ([`LogError::Version`]) rather than taken for damage.
//!
//! # Writing
//!
//! [`BlockLog::append`] only encodes into memory; [`BlockLog::commit`] writes everything buffered
//! and `fdatasync`s once (group commit). A record never spans segments: when the next record would
//! take a segment with records in it past [`LogConfig::segment_bytes`], a new segment is created,
//! written, synced, and the directory synced. Every write and sync goes through [`Faults`]. After a
//! failed write or sync the log is poisoned: the kernel may have dropped dirty pages, so nothing is
//! retried and every later mutation returns [`LogError::Poisoned`]; reads keep working.
//!
//! # Recovery
//!
//! [`BlockLog::open`] scans every record. A record is accepted when its magic, length bound and
//! both checksums hold and its height is above the last accepted one. Where that fails, the scan
//! searches forward byte by byte for the next valid record with a higher height: the skipped
//! region is reported as [`Damage`] and heights lost with it as gaps. A failure with no valid
//! record after it is a torn tail (a crash mid-write, never reported durable) when it is at the end
//! of the last segment, and the file is truncated there; anywhere else it is damage.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::ops::RangeInclusive;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::faults::{self, Faults};

/// Largest payload one record may hold (256 MiB).
pub const MAX_RECORD: usize = 256 << 20;

/// Default size at which a segment is closed and a new one started (64 MiB).
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

const SEG_MAGIC: [u8; 8] = *b"BASTNLOG";
const SEG_VERSION: u32 = 1;
const SEG_HDR: usize = 16;

const REC_MAGIC: [u8; 4] = *b"BLK1";
const REC_HDR: usize = 24;

/// How the block log is set up.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// A segment is closed and a new one started once it reaches this size (default 64 MiB).
    pub segment_bytes: u64,
    /// Injected failures (production: [`Faults::none`]).
    pub faults: Arc<Faults>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { segment_bytes: DEFAULT_SEGMENT_BYTES, faults: Faults::none() }
    }
}

/// Why a block-log operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A file operation failed.
    #[error("{op} of {path} failed: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done (`"read"`, `"create"`, ...).
        op: &'static str,
        /// The operating system's error.
        source: io::Error,
    },
    /// `fdatasync` failed: the data may be lost even though writing it succeeded.
    #[error(
        "fdatasync of {path} failed: {source}; the kernel may have dropped the dirty pages, so \
         retrying is not safe: stop the node, check the disk, restart to recover from the log"
    )]
    SyncFailed {
        /// The file or directory that failed to sync.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The disk is full.
    #[error(
        "no space left on the device holding {path}: free space and restart the node (the log was \
         truncated back to its last durable record)"
    )]
    NoSpace {
        /// The file being written.
        path: PathBuf,
    },
    /// An earlier write or sync failed; the log accepts no more changes.
    #[error("the block log stopped after an earlier write or sync failure; restart the node to recover")]
    Poisoned,
    /// A record was appended out of order.
    #[error("block log append out of order: expected height {expected}, got {got}")]
    Height {
        /// The only height the log accepts next.
        expected: u64,
        /// The height offered.
        got: u64,
    },
    /// The height is not a durable record of the log.
    #[error("height {0} is not in the block log")]
    NotFound(u64),
    /// A record failed its checks when read (damaged since the log was opened).
    #[error("block log record in {path} at offset {offset} is corrupt: {reason}")]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Offset of the record in it.
        offset: u64,
        /// What failed.
        reason: String,
    },
    /// A payload over [`MAX_RECORD`].
    #[error("block log record of {len} bytes is over the limit of {limit} bytes")]
    TooLarge {
        /// The payload's length.
        len: usize,
        /// [`MAX_RECORD`].
        limit: usize,
    },
    /// A segment written in a format version this build does not know.
    #[error(
        "{path} is in block-log format version {found}, this build reads version {known}: run a \
         build that knows that version",
        known = SEG_VERSION
    )]
    Version {
        /// The segment file.
        path: PathBuf,
        /// The version its header names.
        found: u32,
    },
}

/// A region of a segment that failed its checks and was skipped at open (not a torn tail).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    /// The segment file.
    pub path: PathBuf,
    /// Where the skipped region starts.
    pub offset: u64,
    /// Its length in bytes (0 where heights jump across an intact boundary, as when a whole
    /// segment or the end of one is missing).
    pub len: u64,
    /// Last valid height before the damage, if any.
    pub after_height: Option<u64>,
    /// What failed.
    pub reason: String,
}

/// What opening the log found.
#[derive(Clone, Debug, Default)]
pub struct LogRecovery {
    /// Segment files in the log.
    pub segments: usize,
    /// Valid records found.
    pub records: u64,
    /// Bytes cut from the end of the last segment: a record cut short by a crash (torn write),
    /// never reported durable.
    pub torn_tail_bytes: u64,
    /// Damaged regions skipped (bit flips, truncation in the middle): records after them were
    /// found again by resynchronising on the next valid record.
    pub damage: Vec<Damage>,
    /// Heights missing between the first and last valid record because of damage (sorted).
    pub gaps: Vec<RangeInclusive<u64>>,
}

/// One segment file.
#[derive(Debug)]
struct Segment {
    id: u64,
    path: PathBuf,
    /// Bytes of the file (durable ones, as far as this process knows).
    len: u64,
    /// Highest valid height in it.
    last: Option<u64>,
}

/// Consecutive heights stored back to back in one segment.
#[derive(Debug)]
struct Run {
    seg: u64,
    first: u64,
    offsets: Vec<u64>,
}

impl Run {
    /// One past the last height of the run.
    fn end(&self) -> u64 {
        self.first.saturating_add(self.offsets.len() as u64)
    }
}

/// Records buffered for one segment, written by the next commit.
struct Chunk {
    /// `Some(id)`: a segment to create; `None`: the last existing segment.
    new_id: Option<u64>,
    /// Offset in the segment where `buf` goes.
    start: u64,
    first: u64,
    buf: Vec<u8>,
    offsets: Vec<u64>,
}

impl Chunk {
    fn end(&self) -> u64 {
        self.start + self.buf.len() as u64
    }

    fn push(&mut self, height: u64, payload: &[u8]) {
        self.offsets.push(self.end());
        encode_record(&mut self.buf, height, payload);
    }
}

/// The append-only block log.
pub struct BlockLog {
    dir: PathBuf,
    cfg: LogConfig,
    /// Sorted by id; the last one is appended to.
    segments: Vec<Segment>,
    /// Read-append handle of the last segment (`Some` exactly when `segments` is not empty).
    active: Option<File>,
    /// Durable records by height, sorted, not overlapping.
    runs: Vec<Run>,
    durable: Option<u64>,
    last: Option<u64>,
    pending: Vec<Chunk>,
    poisoned: bool,
}

impl fmt::Debug for BlockLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockLog")
            .field("dir", &self.dir)
            .field("segments", &self.segments.len())
            .field("first_height", &self.first_height())
            .field("durable_height", &self.durable)
            .field("last_height", &self.last)
            .field("pending_bytes", &self.pending.iter().map(|c| c.buf.len()).sum::<usize>())
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

impl BlockLog {
    /// Opens the log in `dir` (created if absent), scanning every segment: torn tails are cut,
    /// damaged regions skipped and reported.
    pub fn open(dir: &Path, cfg: LogConfig) -> Result<(BlockLog, LogRecovery), LogError> {
        if !dir.is_dir() {
            fs::create_dir_all(dir).map_err(|e| io_err(dir, "create directory", e))?;
            let parent = match dir.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            faults::sync_dir(&cfg.faults, parent)
                .map_err(|source| LogError::SyncFailed { path: parent.to_path_buf(), source })?;
        }
        let mut ids = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| io_err(dir, "list", e))? {
            let entry = entry.map_err(|e| io_err(dir, "list", e))?;
            let is_file = entry.file_type().map_err(|e| io_err(&entry.path(), "stat", e))?.is_file();
            if let (true, Some(id)) = (is_file, entry.file_name().to_str().and_then(parse_segment_name)) {
                ids.push(id);
            }
        }
        ids.sort_unstable();

        let mut rec = LogRecovery::default();
        let mut state = ScanState::default();
        let mut segments = Vec::with_capacity(ids.len());
        let mut runs: Vec<Run> = Vec::new();
        let mut active = None;
        for (i, &id) in ids.iter().enumerate() {
            let path = segment_path(dir, id);
            let bytes = fs::read(&path).map_err(|e| io_err(&path, "read", e))?;
            let scan = scan_segment(&path, &bytes, &mut state)?;
            rec.records += scan.runs.iter().map(|(_, offs)| offs.len() as u64).sum::<u64>();
            rec.damage.extend(scan.damage);
            rec.gaps.extend(scan.gaps);
            runs.extend(scan.runs.into_iter().map(|(first, offsets)| Run { seg: id, first, offsets }));
            let mut len = bytes.len() as u64;
            let is_last = i + 1 == ids.len();
            match scan.tail {
                Some((offset, _)) if is_last => {
                    // A write cut short by a crash: cut it off so appends continue after the last
                    // valid record.
                    let mut file = open_active(&path)?;
                    rec.torn_tail_bytes = len - offset;
                    if offset < SEG_HDR as u64 {
                        // Not even the segment header survived: write a fresh one.
                        file.set_len(0).map_err(|e| io_err(&path, "truncate", e))?;
                        cfg.faults.write(&mut file, &segment_header()).map_err(|e| write_err(&path, e))?;
                        len = SEG_HDR as u64;
                    } else {
                        file.set_len(offset).map_err(|e| io_err(&path, "truncate", e))?;
                        len = offset;
                    }
                    cfg.faults
                        .sync(&file)
                        .map_err(|source| LogError::SyncFailed { path: path.clone(), source })?;
                    active = Some(file);
                }
                Some((offset, reason)) => {
                    rec.damage.push(Damage {
                        path: path.clone(),
                        offset,
                        len: len - offset,
                        after_height: state.last,
                        reason: format!("{reason}; no valid record follows in this segment"),
                    });
                    state.damaged = true;
                }
                None => {}
            }
            if is_last && active.is_none() {
                active = Some(open_active(&path)?);
            }
            segments.push(Segment { id, path, len, last: scan.last });
        }
        rec.segments = segments.len();
        let log = BlockLog {
            dir: dir.to_path_buf(),
            cfg,
            segments,
            active,
            runs,
            durable: state.last,
            last: state.last,
            pending: Vec::new(),
            poisoned: false,
        };
        Ok((log, rec))
    }

    /// Buffers a record. `height` must be last_height+1; when the log is empty any height is
    /// accepted as the first (a node whose snapshot is at S starts its log at S+1). Nothing is
    /// written until [`BlockLog::commit`].
    pub fn append(&mut self, height: u64, payload: &[u8]) -> Result<(), LogError> {
        if self.poisoned {
            return Err(LogError::Poisoned);
        }
        if payload.len() > MAX_RECORD {
            return Err(LogError::TooLarge { len: payload.len(), limit: MAX_RECORD });
        }
        if let Some(last) = self.last {
            match last.checked_add(1) {
                Some(expected) if expected == height => {}
                expected => {
                    return Err(LogError::Height { expected: expected.unwrap_or(u64::MAX), got: height });
                }
            }
        }
        let rec_len = (REC_HDR + payload.len()) as u64;
        let (tail, has_records) = match (self.pending.last(), self.segments.last()) {
            (Some(chunk), _) => (Some(chunk.end()), true),
            (None, Some(seg)) => (Some(seg.len), seg.len > SEG_HDR as u64),
            (None, None) => (None, false),
        };
        let roll = match tail {
            None => true,
            Some(tail) => has_records && tail.saturating_add(rec_len) > self.cfg.segment_bytes,
        };
        if roll {
            let prev_id =
                self.pending.iter().rev().find_map(|c| c.new_id).or(self.segments.last().map(|s| s.id));
            let id = prev_id.map_or(height, |prev| height.max(prev.saturating_add(1)));
            let mut buf = Vec::with_capacity(SEG_HDR + REC_HDR + payload.len());
            buf.extend_from_slice(&segment_header());
            self.pending.push(Chunk { new_id: Some(id), start: 0, first: height, buf, offsets: Vec::new() });
        } else if self.pending.is_empty() {
            let start = self.segments.last().map_or(0, |s| s.len);
            self.pending.push(Chunk {
                new_id: None,
                start,
                first: height,
                buf: Vec::new(),
                offsets: Vec::new(),
            });
        }
        if let Some(chunk) = self.pending.last_mut() {
            chunk.push(height, payload);
        }
        self.last = Some(height);
        Ok(())
    }

    /// Writes every buffered record and fdatasyncs once (group commit; once per segment when the
    /// batch fills one). Returns the durable height.
    ///
    /// After any write or sync failure the log is poisoned: this call returns the error and every
    /// later append or commit returns [`LogError::Poisoned`]. On `ENOSPC` the segment is first
    /// truncated back to its last durable record (best effort). When a batch spans segments, the
    /// records of segments synced before the failure stay durable: see
    /// [`BlockLog::durable_height`].
    pub fn commit(&mut self) -> Result<Option<u64>, LogError> {
        if self.poisoned {
            return Err(LogError::Poisoned);
        }
        for chunk in std::mem::take(&mut self.pending) {
            if let Err(e) = self.write_chunk(chunk) {
                self.poisoned = true;
                return Err(e);
            }
        }
        Ok(self.durable)
    }

    fn write_chunk(&mut self, chunk: Chunk) -> Result<(), LogError> {
        let faults = Arc::clone(&self.cfg.faults);
        let last = chunk.first.saturating_add((chunk.offsets.len() as u64).saturating_sub(1));
        let seg_id = match chunk.new_id {
            None => {
                let (Some(seg), Some(file)) = (self.segments.last_mut(), self.active.as_mut()) else {
                    return Err(LogError::Poisoned);
                };
                if let Err(e) = faults.write(file, &chunk.buf) {
                    // Best effort: leave no partial record behind for the next open to cut.
                    let _ = file.set_len(seg.len);
                    let _ = faults.sync(file);
                    return Err(write_err(&seg.path, e));
                }
                faults
                    .sync(file)
                    .map_err(|source| LogError::SyncFailed { path: seg.path.clone(), source })?;
                seg.len = chunk.end();
                seg.last = Some(last);
                seg.id
            }
            Some(id) => {
                let path = segment_path(&self.dir, id);
                let mut file =
                    OpenOptions::new().read(true).append(true).create_new(true).open(&path).map_err(|e| {
                        if is_no_space(&e) {
                            LogError::NoSpace { path: path.clone() }
                        } else {
                            io_err(&path, "create", e)
                        }
                    })?;
                if let Err(e) = faults.write(&mut file, &chunk.buf) {
                    drop(file);
                    // Best effort: the segment never held a durable record.
                    let _ = fs::remove_file(&path);
                    return Err(write_err(&path, e));
                }
                faults.sync(&file).map_err(|source| LogError::SyncFailed { path: path.clone(), source })?;
                faults::sync_dir(&faults, &self.dir)
                    .map_err(|source| LogError::SyncFailed { path: self.dir.clone(), source })?;
                self.segments.push(Segment { id, path, len: chunk.end(), last: Some(last) });
                self.active = Some(file);
                id
            }
        };
        match self.runs.last_mut() {
            Some(run) if run.seg == seg_id && run.end() == chunk.first => run.offsets.extend(chunk.offsets),
            _ => self.runs.push(Run { seg: seg_id, first: chunk.first, offsets: chunk.offsets }),
        }
        self.durable = Some(last);
        Ok(())
    }

    /// Highest height made durable by commit (or found at open).
    pub fn durable_height(&self) -> Option<u64> {
        self.durable
    }

    /// Lowest height present (durable).
    pub fn first_height(&self) -> Option<u64> {
        self.runs.first().map(|r| r.first)
    }

    /// Highest appended height, durable or not.
    pub fn last_height(&self) -> Option<u64> {
        self.last
    }

    /// Reads one durable record's payload, verifying its checksums again.
    pub fn read(&self, height: u64) -> Result<Vec<u8>, LogError> {
        let (seg, offset) = self.locate(height).ok_or(LogError::NotFound(height))?;
        let seg = self.segment(seg).ok_or(LogError::NotFound(height))?;
        match self.active_for(seg.id) {
            Some(file) => read_record(file, &seg.path, offset, height),
            None => {
                let file = File::open(&seg.path).map_err(|e| io_err(&seg.path, "open", e))?;
                read_record(&file, &seg.path, offset, height)
            }
        }
    }

    /// Durable records from `height` on, in order, read one at a time. Heights lost to damage
    /// (see [`LogRecovery::gaps`]) are skipped: each item carries its height. The iterator ends
    /// after the first error.
    pub fn iter_from(&self, height: u64) -> impl Iterator<Item = Result<(u64, Vec<u8>), LogError>> + '_ {
        LogIter { log: self, next: Some(height), open: None }
    }

    /// Deletes whole segments whose records are all below `height` (after a snapshot makes them
    /// unnecessary), oldest first. Returns segments removed. Never deletes the segment being
    /// appended to.
    pub fn prune_below(&mut self, height: u64) -> Result<usize, LogError> {
        if self.poisoned {
            return Err(LogError::Poisoned);
        }
        let mut removed = 0;
        while self.segments.len() > 1 {
            let Some(seg) = self.segments.first() else { break };
            if seg.last.is_some_and(|last| last >= height) {
                break;
            }
            remove_segment(&seg.path)?;
            let id = seg.id;
            self.segments.remove(0);
            let k = self.runs.partition_point(|r| r.seg <= id);
            self.runs.drain(..k);
            removed += 1;
        }
        if removed > 0 {
            self.sync_dir()?;
        }
        Ok(removed)
    }

    /// Discards every record (all segments, and anything buffered) and restarts empty; the next
    /// append may use any height. For a node whose log is damaged below a snapshot it recovered
    /// from. Durable (directory synced) when it returns; a failure poisons the log.
    pub fn reset(&mut self) -> Result<(), LogError> {
        if self.poisoned {
            return Err(LogError::Poisoned);
        }
        self.pending.clear();
        self.active = None;
        self.runs.clear();
        self.durable = None;
        self.last = None;
        while let Some(seg) = self.segments.first() {
            if let Err(e) = remove_segment(&seg.path) {
                self.poisoned = true;
                return Err(e);
            }
            self.segments.remove(0);
        }
        self.sync_dir()
    }

    /// Total bytes of segment files.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    fn sync_dir(&mut self) -> Result<(), LogError> {
        faults::sync_dir(&self.cfg.faults, &self.dir).map_err(|source| {
            self.poisoned = true;
            LogError::SyncFailed { path: self.dir.clone(), source }
        })
    }

    /// Segment id and offset of a durable height.
    fn locate(&self, height: u64) -> Option<(u64, u64)> {
        let i = self.runs.partition_point(|r| r.first <= height).checked_sub(1)?;
        let run = self.runs.get(i)?;
        let k = usize::try_from(height - run.first).ok()?;
        run.offsets.get(k).map(|&off| (run.seg, off))
    }

    fn segment(&self, id: u64) -> Option<&Segment> {
        let i = self.segments.binary_search_by_key(&id, |s| s.id).ok()?;
        self.segments.get(i)
    }

    /// The open handle of segment `id` when it is the one appended to.
    fn active_for(&self, id: u64) -> Option<&File> {
        match self.segments.last() {
            Some(seg) if seg.id == id => self.active.as_ref(),
            _ => None,
        }
    }
}

/// Reads durable records in order, keeping one segment open at a time.
#[derive(Debug)]
struct LogIter<'a> {
    log: &'a BlockLog,
    next: Option<u64>,
    open: Option<(u64, File)>,
}

impl LogIter<'_> {
    fn read(&mut self, seg_id: u64, offset: u64, height: u64) -> Result<Vec<u8>, LogError> {
        let seg = self.log.segment(seg_id).ok_or(LogError::NotFound(height))?;
        if let Some(file) = self.log.active_for(seg_id) {
            return read_record(file, &seg.path, offset, height);
        }
        let file = match self.open.take() {
            Some((id, file)) if id == seg_id => file,
            _ => File::open(&seg.path).map_err(|e| io_err(&seg.path, "open", e))?,
        };
        let res = read_record(&file, &seg.path, offset, height);
        self.open = Some((seg_id, file));
        res
    }
}

impl Iterator for LogIter<'_> {
    type Item = Result<(u64, Vec<u8>), LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        let from = self.next?;
        let runs = &self.log.runs;
        let run = runs.get(runs.partition_point(|r| r.end() <= from))?;
        let height = from.max(run.first);
        let offset = *run.offsets.get(usize::try_from(height - run.first).ok()?)?;
        let seg = run.seg;
        self.next = height.checked_add(1);
        let res = self.read(seg, offset, height);
        if res.is_err() {
            self.next = None;
        }
        Some(res.map(|payload| (height, payload)))
    }
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.log"))
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn open_active(path: &Path) -> Result<File, LogError> {
    OpenOptions::new().read(true).append(true).open(path).map_err(|e| io_err(path, "open", e))
}

fn remove_segment(path: &Path) -> Result<(), LogError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path, "remove", e)),
    }
}

fn io_err(path: &Path, op: &'static str, source: io::Error) -> LogError {
    LogError::Io { path: path.to_path_buf(), op, source }
}

fn is_no_space(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOSPC) || e.kind() == io::ErrorKind::StorageFull
}

fn write_err(path: &Path, e: io::Error) -> LogError {
    if is_no_space(&e) { LogError::NoSpace { path: path.to_path_buf() } } else { io_err(path, "write", e) }
}

fn segment_header() -> [u8; SEG_HDR] {
    let mut h = [0u8; SEG_HDR];
    h[..8].copy_from_slice(&SEG_MAGIC);
    h[8..12].copy_from_slice(&SEG_VERSION.to_le_bytes());
    let crc = crc32c::crc32c(&h[..12]);
    h[12..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// What a segment's first bytes hold.
#[derive(Debug, PartialEq, Eq)]
enum SegHeader {
    Valid,
    /// Damaged or cut short.
    Bad(&'static str),
    /// Intact, but another format version.
    Version(u32),
}

fn check_segment_header(bytes: &[u8]) -> SegHeader {
    let Some(h) = bytes.get(..SEG_HDR) else {
        return SegHeader::Bad("file ends inside the segment header");
    };
    if h[..8] != SEG_MAGIC {
        return SegHeader::Bad("bad segment magic");
    }
    if crc32c::crc32c(&h[..12]) != le_u32(&h[12..16]) {
        return SegHeader::Bad("segment header checksum mismatch");
    }
    match le_u32(&h[8..12]) {
        SEG_VERSION => SegHeader::Valid,
        v => SegHeader::Version(v),
    }
}

fn encode_record(buf: &mut Vec<u8>, height: u64, payload: &[u8]) {
    let mut h = [0u8; REC_HDR];
    h[..4].copy_from_slice(&REC_MAGIC);
    // `append` bounds the payload by MAX_RECORD, which fits a u32.
    h[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    h[8..16].copy_from_slice(&height.to_le_bytes());
    let data_crc = crc32c::crc32c_append(crc32c::crc32c(&h[4..16]), payload);
    h[16..20].copy_from_slice(&data_crc.to_le_bytes());
    let head_crc = crc32c::crc32c(&h[..20]);
    h[20..].copy_from_slice(&head_crc.to_le_bytes());
    buf.extend_from_slice(&h);
    buf.extend_from_slice(payload);
}

/// A checked record header.
struct RecHeader {
    len: usize,
    height: u64,
    data_crc: u32,
}

fn check_header(h: &[u8]) -> Result<RecHeader, &'static str> {
    let h = h.get(..REC_HDR).ok_or("file ends inside a record header")?;
    if h[..4] != REC_MAGIC {
        return Err("bad record magic");
    }
    if crc32c::crc32c(&h[..20]) != le_u32(&h[20..24]) {
        return Err("record header checksum mismatch");
    }
    let len = le_u32(&h[4..8]) as usize;
    if len > MAX_RECORD {
        return Err("record length over the limit");
    }
    Ok(RecHeader { len, height: le_u64(&h[8..16]), data_crc: le_u32(&h[16..20]) })
}

fn data_crc(h: &[u8], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(h.get(4..16).unwrap_or_default()), payload)
}

/// Checks the record at `pos`: its height and total length.
fn check_record(bytes: &[u8], pos: usize) -> Result<(u64, usize), &'static str> {
    let h = bytes.get(pos..).ok_or("file ends inside a record header")?;
    let hdr = check_header(h)?;
    let payload = h.get(REC_HDR..REC_HDR + hdr.len).ok_or("file ends inside a record payload")?;
    if data_crc(h, payload) != hdr.data_crc {
        return Err("record payload checksum mismatch");
    }
    Ok((hdr.height, REC_HDR + hdr.len))
}

fn read_record(file: &File, path: &Path, offset: u64, height: u64) -> Result<Vec<u8>, LogError> {
    let corrupt = |reason: String| LogError::Corrupt { path: path.to_path_buf(), offset, reason };
    let read = |buf: &mut [u8], at: u64| {
        file.read_exact_at(buf, at).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                corrupt("the file ends inside the record".into())
            } else {
                io_err(path, "read", e)
            }
        })
    };
    let mut h = [0u8; REC_HDR];
    read(&mut h, offset)?;
    let hdr = check_header(&h).map_err(|r| corrupt(r.into()))?;
    if hdr.height != height {
        return Err(corrupt(format!("holds height {} where height {height} was indexed", hdr.height)));
    }
    let mut payload = vec![0u8; hdr.len];
    read(&mut payload, offset + REC_HDR as u64)?;
    if data_crc(&h, &payload) != hdr.data_crc {
        return Err(corrupt("record payload checksum mismatch".into()));
    }
    Ok(payload)
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b.get(..4).unwrap_or(&[0; 4]));
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b.get(..8).unwrap_or(&[0; 8]));
    u64::from_le_bytes(a)
}

/// Offset of the next record magic at or after `from` (the end of `bytes` when none).
fn next_magic(bytes: &[u8], from: usize) -> usize {
    bytes
        .get(from..)
        .and_then(|rest| rest.windows(REC_MAGIC.len()).position(|w| w == REC_MAGIC))
        .map_or(bytes.len(), |p| from + p)
}

/// Carried from segment to segment while opening.
#[derive(Debug, Default)]
struct ScanState {
    /// Last valid height.
    last: Option<u64>,
    /// Damage was reported since the last valid record (so a height jump is already explained).
    damaged: bool,
}

/// What one segment holds.
#[derive(Debug, Default)]
struct SegScan {
    /// Runs of consecutive heights: first height and record offsets.
    runs: Vec<(u64, Vec<u64>)>,
    /// Highest valid height in the segment.
    last: Option<u64>,
    /// Regions skipped with a valid record after them.
    damage: Vec<Damage>,
    gaps: Vec<RangeInclusive<u64>>,
    /// A failure with no valid record after it: where it starts and why.
    tail: Option<(u64, String)>,
}

fn scan_segment(path: &Path, bytes: &[u8], state: &mut ScanState) -> Result<SegScan, LogError> {
    let mut scan = SegScan::default();
    // Start of the region failing checks, and why.
    let mut fail: Option<(usize, String)> = None;
    let mut pos = match check_segment_header(bytes) {
        SegHeader::Valid => SEG_HDR,
        SegHeader::Version(found) => return Err(LogError::Version { path: path.to_path_buf(), found }),
        SegHeader::Bad(reason) => {
            fail = Some((0, reason.into()));
            next_magic(bytes, 1)
        }
    };
    while pos < bytes.len() {
        let (height, len) = match check_record(bytes, pos) {
            Ok((height, _)) if state.last.is_some_and(|last| height <= last) => {
                if fail.is_none() {
                    let last = state.last.unwrap_or_default();
                    fail = Some((pos, format!("record of height {height} where height {last} came before")));
                }
                pos = next_magic(bytes, pos + 1);
                continue;
            }
            Ok(ok) => ok,
            Err(reason) => {
                if fail.is_none() {
                    fail = Some((pos, reason.into()));
                }
                pos = next_magic(bytes, pos + 1);
                continue;
            }
        };
        if let Some((start, reason)) = fail.take() {
            scan.damage.push(Damage {
                path: path.to_path_buf(),
                offset: start as u64,
                len: (pos - start) as u64,
                after_height: state.last,
                reason,
            });
            state.damaged = true;
        }
        if let Some(last) = state.last
            && height > last + 1
        {
            scan.gaps.push(last + 1..=height - 1);
            if !state.damaged {
                scan.damage.push(Damage {
                    path: path.to_path_buf(),
                    offset: pos as u64,
                    len: 0,
                    after_height: Some(last),
                    reason: format!(
                        "heights jump from {last} to {height}: records are missing before this one"
                    ),
                });
            }
        }
        match scan.runs.last_mut() {
            Some((first, offsets)) if *first + offsets.len() as u64 == height => offsets.push(pos as u64),
            _ => scan.runs.push((height, vec![pos as u64])),
        }
        state.last = Some(height);
        state.damaged = false;
        scan.last = Some(height);
        pos += len;
    }
    scan.tail = fail.map(|(start, reason)| (start as u64, reason));
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(segment_bytes: u64) -> LogConfig {
        LogConfig { segment_bytes, faults: Faults::none() }
    }

    fn payload(h: u64) -> Vec<u8> {
        let n = (h * 37 % 300) as usize;
        (0..n).map(|i| (h as usize * 31 + i) as u8).collect()
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        v.sort();
        v
    }

    fn write_log(dir: &Path, segment_bytes: u64, heights: RangeInclusive<u64>) -> BlockLog {
        let (mut log, _) = BlockLog::open(dir, cfg(segment_bytes)).unwrap();
        for h in heights {
            log.append(h, &payload(h)).unwrap();
            if h % 7 == 0 {
                log.commit().unwrap();
            }
        }
        log.commit().unwrap();
        log
    }

    #[test]
    fn record_round_trips_and_every_header_byte_is_checked() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 42, b"hello");
        assert_eq!(buf.len(), REC_HDR + 5);
        assert_eq!(check_record(&buf, 0), Ok((42, REC_HDR + 5)));
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut b = buf.clone();
                b[byte] ^= 1 << bit;
                assert!(check_record(&b, 0).is_err(), "flip of byte {byte} bit {bit} went unseen");
            }
        }
        // Cut short anywhere: an error, never a panic.
        for cut in 0..buf.len() {
            assert!(check_record(&buf[..cut], 0).is_err());
        }
    }

    #[test]
    fn length_is_bounded_before_it_is_used() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 1, b"x");
        buf[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        let crc = crc32c::crc32c(&buf[..20]);
        buf[20..24].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(check_record(&buf, 0), Err("record length over the limit"));
        buf[4..8].copy_from_slice(&1000u32.to_le_bytes());
        let crc = crc32c::crc32c(&buf[..20]);
        buf[20..24].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(check_record(&buf, 0), Err("file ends inside a record payload"));
    }

    #[test]
    fn segment_header_checks() {
        let h = segment_header();
        assert_eq!(check_segment_header(&h), SegHeader::Valid);
        assert!(matches!(check_segment_header(&h[..10]), SegHeader::Bad(_)));
        let mut v2 = h;
        v2[8..12].copy_from_slice(&2u32.to_le_bytes());
        let crc = crc32c::crc32c(&v2[..12]);
        v2[12..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(check_segment_header(&v2), SegHeader::Version(2));
        let mut flipped = h;
        flipped[9] ^= 4;
        assert!(matches!(check_segment_header(&flipped), SegHeader::Bad(_)));
    }

    #[test]
    fn unknown_version_is_refused_not_truncated() {
        let dir = tempfile::tempdir().unwrap();
        drop(write_log(dir.path(), 1 << 20, 1..=3));
        let file = &segment_files(dir.path())[0];
        let mut bytes = fs::read(file).unwrap();
        bytes[8..12].copy_from_slice(&7u32.to_le_bytes());
        let crc = crc32c::crc32c(&bytes[..12]);
        bytes[12..16].copy_from_slice(&crc.to_le_bytes());
        fs::write(file, &bytes).unwrap();
        let err = BlockLog::open(dir.path(), cfg(1 << 20)).unwrap_err();
        assert!(matches!(err, LogError::Version { found: 7, .. }), "{err}");
        assert!(err.to_string().contains("version 7"), "{err}");
        assert_eq!(fs::read(file).unwrap(), bytes, "the file must be left alone");
    }

    #[test]
    fn round_trip_over_segments_with_prune_and_reset() {
        let dir = tempfile::tempdir().unwrap();
        let log = write_log(dir.path(), 4096, 1..=200);
        assert_eq!(log.durable_height(), Some(200));
        let before = segment_files(dir.path());
        assert!(before.len() > 5, "{} segments", before.len());
        for f in &before {
            let len = fs::metadata(f).unwrap().len();
            assert!(len <= 4096, "{} is {len} bytes", f.display());
        }
        assert_eq!(log.size_bytes(), before.iter().map(|f| fs::metadata(f).unwrap().len()).sum::<u64>());
        for h in 1..=200 {
            assert_eq!(log.read(h).unwrap(), payload(h), "height {h} before reopen");
        }
        drop(log);

        let (mut log, rec) = BlockLog::open(dir.path(), cfg(4096)).unwrap();
        assert_eq!(rec.segments, before.len());
        assert_eq!(rec.records, 200);
        assert_eq!(rec.torn_tail_bytes, 0);
        assert!(rec.damage.is_empty() && rec.gaps.is_empty(), "{rec:?}");
        assert_eq!(
            (log.first_height(), log.durable_height(), log.last_height()),
            (Some(1), Some(200), Some(200))
        );
        for h in 1..=200 {
            assert_eq!(log.read(h).unwrap(), payload(h), "height {h} after reopen");
        }
        assert!(matches!(log.read(0), Err(LogError::NotFound(0))));
        assert!(matches!(log.read(201), Err(LogError::NotFound(201))));
        let got: Vec<(u64, Vec<u8>)> = log.iter_from(150).map(Result::unwrap).collect();
        assert_eq!(got, (150..=200).map(|h| (h, payload(h))).collect::<Vec<_>>());
        assert_eq!(log.iter_from(0).count(), 200);
        assert_eq!(log.iter_from(201).count(), 0);

        // Uncommitted records are not readable, and do not change the durable height.
        log.append(201, b"pending").unwrap();
        assert_eq!((log.durable_height(), log.last_height()), (Some(200), Some(201)));
        assert!(matches!(log.read(201), Err(LogError::NotFound(201))));
        assert_eq!(log.commit().unwrap(), Some(201));
        assert_eq!(log.read(201).unwrap(), b"pending");

        let removed = log.prune_below(100).unwrap();
        assert!(removed > 0);
        let first = log.first_height().unwrap();
        assert!(first <= 100 && first > 1, "first {first}");
        assert!(matches!(log.read(first - 1), Err(LogError::NotFound(_))));
        for h in first..=201 {
            assert_eq!(log.read(h).unwrap(), if h == 201 { b"pending".to_vec() } else { payload(h) });
        }
        assert_eq!(segment_files(dir.path()).len(), before.len() - removed);
        // Pruning everything keeps the segment being appended to.
        log.prune_below(u64::MAX).unwrap();
        assert_eq!(segment_files(dir.path()).len(), 1);
        assert_eq!(log.durable_height(), Some(201));
        log.append(202, b"after prune").unwrap();
        log.commit().unwrap();
        drop(log);
        let (mut log, rec) = BlockLog::open(dir.path(), cfg(4096)).unwrap();
        assert!(rec.damage.is_empty() && rec.gaps.is_empty() && rec.torn_tail_bytes == 0, "{rec:?}");
        assert_eq!(log.read(202).unwrap(), b"after prune");
        let first = log.first_height().unwrap();
        assert_eq!(log.iter_from(0).count() as u64, 202 - first + 1);

        log.append(203, b"discarded").unwrap();
        log.reset().unwrap();
        assert!(segment_files(dir.path()).is_empty());
        assert_eq!((log.first_height(), log.durable_height(), log.last_height()), (None, None, None));
        assert_eq!(log.size_bytes(), 0);
        log.append(1000, b"fresh").unwrap();
        log.append(1001, b"fresh2").unwrap();
        assert_eq!(log.commit().unwrap(), Some(1001));
        drop(log);
        let (log, rec) = BlockLog::open(dir.path(), cfg(4096)).unwrap();
        assert_eq!(rec.records, 2);
        assert_eq!(log.first_height(), Some(1000));
        assert_eq!(log.read(1000).unwrap(), b"fresh");
    }

    #[test]
    fn heights_must_follow_and_payloads_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, rec) = BlockLog::open(&dir.path().join("new/log"), cfg(4096)).unwrap();
        assert_eq!(rec.segments, 0);
        assert_eq!(log.last_height(), None);
        log.append(5, b"first may be anything").unwrap();
        assert!(matches!(log.append(7, b""), Err(LogError::Height { expected: 6, got: 7 })));
        assert!(matches!(log.append(5, b""), Err(LogError::Height { expected: 6, got: 5 })));
        log.append(6, b"").unwrap();
        let big = vec![0u8; MAX_RECORD + 1];
        let err = log.append(7, &big).unwrap_err();
        assert!(matches!(err, LogError::TooLarge { len, limit: MAX_RECORD } if len == MAX_RECORD + 1));
        assert_eq!(log.last_height(), Some(6));
        assert_eq!(log.commit().unwrap(), Some(6));
        assert_eq!(log.read(6).unwrap(), b"");
        assert_eq!(log.first_height(), Some(5));
    }

    #[test]
    fn height_cannot_pass_u64_max() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = BlockLog::open(dir.path(), cfg(4096)).unwrap();
        log.append(u64::MAX, b"last").unwrap();
        assert!(matches!(log.append(0, b""), Err(LogError::Height { .. })));
        assert!(matches!(log.append(u64::MAX, b""), Err(LogError::Height { .. })));
        log.commit().unwrap();
        let got: Vec<_> = log.iter_from(0).map(Result::unwrap).collect();
        assert_eq!(got, vec![(u64::MAX, b"last".to_vec())]);
    }

    #[test]
    fn duplicated_record_is_damage_not_a_second_copy() {
        let dir = tempfile::tempdir().unwrap();
        drop(write_log(dir.path(), 1 << 20, 1..=5));
        let file = &segment_files(dir.path())[0];
        let mut bytes = fs::read(file).unwrap();
        // Repeat record 2 right after itself.
        let off2 = SEG_HDR + REC_HDR + payload(1).len();
        let len2 = REC_HDR + payload(2).len();
        let copy = bytes[off2..off2 + len2].to_vec();
        bytes.splice(off2 + len2..off2 + len2, copy);
        fs::write(file, &bytes).unwrap();
        let (log, rec) = BlockLog::open(dir.path(), cfg(1 << 20)).unwrap();
        assert_eq!(rec.records, 5);
        assert!(rec.gaps.is_empty());
        assert_eq!(rec.damage.len(), 1, "{rec:?}");
        assert_eq!(rec.damage[0].offset, (off2 + len2) as u64);
        assert_eq!(rec.damage[0].len, len2 as u64);
        assert_eq!(rec.damage[0].after_height, Some(2));
        for h in 1..=5 {
            assert_eq!(log.read(h).unwrap(), payload(h));
        }
    }

    #[test]
    fn damage_found_after_open_is_a_read_error() {
        let dir = tempfile::tempdir().unwrap();
        let log = write_log(dir.path(), 1 << 20, 1..=5);
        let file = &segment_files(dir.path())[0];
        let mut bytes = fs::read(file).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x10;
        fs::write(file, &bytes).unwrap();
        let err = log.read(5).unwrap_err();
        assert!(matches!(err, LogError::Corrupt { .. }), "{err}");
        let items: Vec<_> = log.iter_from(4).collect();
        assert_eq!(items.len(), 2);
        assert!(items[0].is_ok() && items[1].is_err());
    }

    #[test]
    fn missing_middle_segment_is_a_gap() {
        let dir = tempfile::tempdir().unwrap();
        drop(write_log(dir.path(), 2048, 1..=100));
        let files = segment_files(dir.path());
        assert!(files.len() >= 4);
        fs::remove_file(&files[1]).unwrap();
        let (log, rec) = BlockLog::open(dir.path(), cfg(2048)).unwrap();
        assert_eq!(rec.gaps.len(), 1, "{rec:?}");
        assert_eq!(rec.damage.len(), 1);
        assert_eq!(rec.damage[0].len, 0);
        assert_eq!(rec.damage[0].path, files[2]);
        let gap = rec.gaps[0].clone();
        assert_eq!(rec.damage[0].after_height, Some(gap.start() - 1));
        let got: Vec<u64> = log.iter_from(0).map(|r| r.unwrap().0).collect();
        let want: Vec<u64> = (1..=100).filter(|h| !gap.contains(h)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn empty_or_headerless_last_segment_is_torn() {
        for len in [0usize, 5, 16, 30] {
            let dir = tempfile::tempdir().unwrap();
            drop(write_log(dir.path(), 1 << 20, 1..=3));
            let next = segment_path(dir.path(), 4);
            let mut bytes = segment_header().to_vec();
            encode_record(&mut bytes, 4, b"torn");
            bytes.truncate(len);
            fs::write(&next, &bytes).unwrap();
            let (mut log, rec) = BlockLog::open(dir.path(), cfg(1 << 20)).unwrap();
            assert_eq!(
                rec.torn_tail_bytes,
                len.saturating_sub(if len >= 16 { 16 } else { 0 }) as u64,
                "len {len}"
            );
            assert!(rec.damage.is_empty(), "{rec:?}");
            assert_eq!(fs::metadata(&next).unwrap().len(), SEG_HDR as u64);
            log.append(4, b"again").unwrap();
            log.commit().unwrap();
            drop(log);
            let (log, rec) = BlockLog::open(dir.path(), cfg(1 << 20)).unwrap();
            assert!(rec.damage.is_empty() && rec.torn_tail_bytes == 0, "{rec:?}");
            assert_eq!(log.read(4).unwrap(), b"again");
        }
    }

    #[test]
    fn garbage_files_do_not_panic() {
        let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
        for round in 0..200 {
            let dir = tempfile::tempdir().unwrap();
            let mut bytes = Vec::new();
            let n = (round * 13) % 700;
            for _ in 0..n {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                bytes.push(seed as u8);
            }
            if round % 3 == 0 {
                // Valid header and a valid record amid the garbage.
                let mut b = segment_header().to_vec();
                b.extend_from_slice(&bytes[..n / 2]);
                encode_record(&mut b, 9, b"found");
                b.extend_from_slice(&bytes[n / 2..]);
                bytes = b;
            }
            fs::write(segment_path(dir.path(), 1), &bytes).unwrap();
            fs::write(segment_path(dir.path(), 2), &bytes).unwrap();
            let (log, rec) = BlockLog::open(dir.path(), cfg(4096)).unwrap();
            if round % 3 == 0 {
                assert_eq!(log.read(9).unwrap(), b"found");
                assert_eq!(rec.records, 1, "round {round}: {rec:?}");
            }
        }
    }
}
