//! Verified chunks on disk, so a sync killed at any point resumes where it stopped.
//!
//! Layout, under `<data_dir>/statesync/`:
//! - `<height>-<manifest digest, 16 hex>/target.bin`: the manifest and its anchor (postcard,
//!   prefixed with their BLAKE3), written before the first chunk;
//! - `.../chunk-<index>`: one verified chunk each, written to a `.tmp`, synced, renamed;
//! - `.../ready`: written once every chunk is present and the rebuilt state's recomputed root
//!   equals the certified one (the install step may then run, and run again after a crash).
//!
//! Nothing read back is trusted: the target's checksum and every chunk's hash against the
//! manifest are checked again when a sync resumes and when the image is assembled; a torn or
//! wrong chunk file is deleted and fetched again.

use crate::SyncError;
use crate::wire::Manifest;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The state-sync directory inside a data dir.
pub const SYNC_DIR: &str = "statesync";

const TARGET_FILE: &str = "target.bin";
const READY_FILE: &str = "ready";

fn io(what: &str, path: &Path, e: std::io::Error) -> SyncError {
    SyncError::Io(format!("{what} {}: {e}", path.display()))
}

fn sync_dir(path: &Path) -> Result<(), SyncError> {
    fs::File::open(path).and_then(|f| f.sync_all()).map_err(|e| io("sync directory", path, e))
}

/// Writes `bytes` to `path` through a synced temporary file and a rename.
fn write_durable(path: &Path, bytes: &[u8]) -> Result<(), SyncError> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp).map_err(|e| io("create", &tmp, e))?;
    f.write_all(bytes).map_err(|e| io("write", &tmp, e))?;
    f.sync_all().map_err(|e| io("sync", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io("rename", path, e))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// A snapshot being fetched: its manifest, anchor and which chunks are on disk.
#[derive(Debug)]
pub struct ChunkStore {
    dir: PathBuf,
    manifest: Manifest,
    anchor: Vec<u8>,
    have: Vec<bool>,
    bytes: u64,
}

/// What [`ChunkStore::resume`] found on disk.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Resumed {
    /// Chunks that verified.
    pub chunks: u32,
    /// Chunk files deleted because they were torn or wrong.
    pub discarded: u32,
}

impl ChunkStore {
    fn target_dir(root: &Path, manifest: &Manifest) -> PathBuf {
        let d = manifest.digest();
        let hex: String = d.iter().take(8).map(|b| format!("{b:02x}")).collect();
        root.join(SYNC_DIR).join(format!("{}-{hex}", manifest.height))
    }

    /// The target saved in `data_dir` by an earlier run, if one validates: its manifest and
    /// anchor, and whether it was verified and is ready to install. Unreadable targets are
    /// ignored (and removed by the next [`ChunkStore::begin`]).
    pub fn saved(data_dir: &Path) -> Option<(Manifest, Vec<u8>, bool)> {
        let root = data_dir.join(SYNC_DIR);
        let mut found = None;
        for entry in fs::read_dir(&root).ok()?.flatten() {
            let dir = entry.path();
            let Ok(bytes) = fs::read(dir.join(TARGET_FILE)) else { continue };
            let Some((sum, body)) = bytes.split_first_chunk::<32>() else { continue };
            if blake3::hash(body).as_bytes() != sum {
                continue;
            }
            let Ok((manifest, anchor)) = postcard::from_bytes::<(Manifest, Vec<u8>)>(body) else { continue };
            if manifest.validate().is_err() || Self::target_dir(data_dir, &manifest) != dir {
                continue;
            }
            let ready = dir.join(READY_FILE).exists();
            if found.as_ref().is_none_or(|(m, _, _): &(Manifest, Vec<u8>, bool)| m.height < manifest.height) {
                found = Some((manifest, anchor, ready));
            }
        }
        found
    }

    /// Starts (or resumes) fetching `manifest`: other targets are removed; the chunks already
    /// on disk for this one are checked and kept, torn or wrong ones deleted.
    pub fn begin(
        data_dir: &Path,
        manifest: Manifest,
        anchor: Vec<u8>,
    ) -> Result<(ChunkStore, Resumed), SyncError> {
        let root = data_dir.join(SYNC_DIR);
        fs::create_dir_all(&root).map_err(|e| io("create", &root, e))?;
        let dir = Self::target_dir(data_dir, &manifest);
        for entry in fs::read_dir(&root).map_err(|e| io("list", &root, e))?.flatten() {
            if entry.path() != dir {
                let p = entry.path();
                let gone = if p.is_dir() { fs::remove_dir_all(&p) } else { fs::remove_file(&p) };
                gone.map_err(|e| io("remove", &p, e))?;
            }
        }
        fs::create_dir_all(&dir).map_err(|e| io("create", &dir, e))?;
        let body = postcard::to_stdvec(&(&manifest, &anchor)).map_err(|e| SyncError::Io(e.to_string()))?;
        let mut file = blake3::hash(&body).as_bytes().to_vec();
        file.extend_from_slice(&body);
        if fs::read(dir.join(TARGET_FILE)).ok().as_deref() != Some(&file[..]) {
            write_durable(&dir.join(TARGET_FILE), &file)?;
        }
        sync_dir(&root)?;
        let mut store =
            ChunkStore { dir, have: vec![false; manifest.chunks.len()], manifest, anchor, bytes: 0 };
        let resumed = store.scan()?;
        Ok((store, resumed))
    }

    fn chunk_path(&self, index: u32) -> PathBuf {
        self.dir.join(format!("chunk-{index:06}"))
    }

    /// Checks every chunk file against the manifest; deletes what does not verify.
    fn scan(&mut self) -> Result<Resumed, SyncError> {
        let mut r = Resumed::default();
        for entry in fs::read_dir(&self.dir).map_err(|e| io("list", &self.dir, e))?.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(".tmp") {
                let _ = fs::remove_file(entry.path());
                continue;
            }
            let Some(index) = name.strip_prefix("chunk-").and_then(|i| i.parse::<u32>().ok()) else {
                continue;
            };
            let ok = fs::read(entry.path()).is_ok_and(|b| self.manifest.chunk_ok(index, &b));
            if ok && (index as usize) < self.have.len() {
                if !self.have[index as usize] {
                    self.have[index as usize] = true;
                    self.bytes += self.manifest.range(index).map_or(0, |r| r.len() as u64);
                    r.chunks += 1;
                }
            } else {
                fs::remove_file(entry.path()).map_err(|e| io("remove", &entry.path(), e))?;
                r.discarded += 1;
            }
        }
        if r.discarded > 0 {
            let _ = fs::remove_file(self.dir.join(READY_FILE));
        }
        Ok(r)
    }

    /// The manifest being fetched.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Its anchor (the certified range answer after it).
    pub fn anchor(&self) -> &[u8] {
        &self.anchor
    }

    /// Whether chunk `index` is on disk.
    pub fn has(&self, index: u32) -> bool {
        self.have.get(index as usize).copied().unwrap_or(false)
    }

    /// Chunks on disk.
    pub fn count(&self) -> u32 {
        self.have.iter().filter(|h| **h).count() as u32
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether every chunk is on disk.
    pub fn complete(&self) -> bool {
        self.have.iter().all(|h| *h)
    }

    /// Stores chunk `index` if it verifies against the manifest; `Ok(false)` (nothing written)
    /// when it does not.
    pub fn put(&mut self, index: u32, bytes: &[u8]) -> Result<bool, SyncError> {
        if !self.manifest.chunk_ok(index, bytes) {
            return Ok(false);
        }
        if !self.has(index) {
            write_durable(&self.chunk_path(index), bytes)?;
            self.have[index as usize] = true;
            self.bytes += bytes.len() as u64;
        }
        Ok(true)
    }

    /// The whole image, every chunk read back and checked again. A chunk that no longer
    /// verifies is deleted and reported (the caller fetches it again).
    pub fn assemble(&mut self) -> Result<rkyv::util::AlignedVec<16>, SyncError> {
        let mut image = rkyv::util::AlignedVec::<16>::with_capacity(self.manifest.length as usize);
        for index in 0..self.manifest.count() {
            let path = self.chunk_path(index);
            let bytes = fs::read(&path).unwrap_or_default();
            if !self.manifest.chunk_ok(index, &bytes) {
                let _ = fs::remove_file(&path);
                if let Some(h) = self.have.get_mut(index as usize) {
                    *h = false;
                }
                return Err(SyncError::Io(format!(
                    "chunk {index} on disk ({}) no longer verifies",
                    path.display()
                )));
            }
            image.extend_from_slice(&bytes);
        }
        Ok(image)
    }

    /// Records that the assembled state verified: the install may run (again, after a crash).
    pub fn mark_ready(&self) -> Result<(), SyncError> {
        write_durable(&self.dir.join(READY_FILE), b"verified\n")
    }

    /// Drops every chunk of this target (its manifest proved wrong).
    pub fn discard(self) -> Result<(), SyncError> {
        fs::remove_dir_all(&self.dir).map_err(|e| io("remove", &self.dir, e))
    }
}

/// Removes `<data_dir>/statesync` (after an install finished).
pub fn clear(data_dir: &Path) -> Result<(), SyncError> {
    let root = data_dir.join(SYNC_DIR);
    match fs::remove_dir_all(&root) {
        Ok(()) => sync_dir(data_dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("remove", &root, e)),
    }
}
