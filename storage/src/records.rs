//! A small append-only file of checksummed records, each durable once [`RecordFile::append`]
//! returns: for state that must survive a crash but is short-lived and unordered (consensus
//! keeps the blocks it voted for and that are not finalized yet here). Records are
//! `magic (u32 LE) | len (u32 LE) | crc32c of payload (u32 LE) | payload`. Opening reads every
//! record up to the first one that does not check out (a torn append: never acknowledged) and
//! cuts the file there. [`RecordFile::rewrite`] replaces the whole file atomically (write a
//! temporary file, sync it, rename it over, sync the directory), which is how it is compacted.

use crate::faults::{Faults, sync_dir};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const MAGIC: u32 = 0xB457_0DEC;
const HEADER: usize = 12;

/// Largest record accepted (a record claiming more is treated as damage).
pub const MAX_RECORD: usize = 64 << 20;

/// An open record file.
#[derive(Debug)]
pub struct RecordFile {
    path: PathBuf,
    file: File,
    len: u64,
    faults: Arc<Faults>,
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Splits `bytes` into the records that check out, and the length they cover.
fn parse(bytes: &[u8]) -> (Vec<Vec<u8>>, usize) {
    let mut records = Vec::new();
    let mut at = 0usize;
    while let Some(h) = bytes.get(at..at + HEADER) {
        let word = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let (magic, len, crc) = (word(0), word(4) as usize, word(8));
        if magic != MAGIC || len > MAX_RECORD {
            break;
        }
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else { break };
        if crc32c::crc32c(payload) != crc {
            break;
        }
        records.push(payload.to_vec());
        at += HEADER + len;
    }
    (records, at)
}

impl RecordFile {
    /// Opens (creating if needed) the file and returns every intact record, cutting a torn
    /// tail.
    pub fn open(path: &Path, faults: Arc<Faults>) -> io::Result<(RecordFile, Vec<Vec<u8>>)> {
        let created = !path.exists();
        let mut file = OpenOptions::new().read(true).append(true).create(true).open(path)?;
        if created && let Some(dir) = path.parent() {
            faults.sync(&file)?;
            sync_dir(&faults, dir)?;
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (records, good) = parse(&bytes);
        if good < bytes.len() {
            file.set_len(good as u64)?;
            faults.sync(&file)?;
        }
        Ok((RecordFile { path: path.to_path_buf(), file, len: good as u64, faults }, records))
    }

    /// Appends one record and syncs it: durable when this returns `Ok`. After an error the
    /// file must be reopened (a partial record is cut then).
    pub fn append(&mut self, payload: &[u8]) -> io::Result<()> {
        if payload.len() > MAX_RECORD {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "record too large"));
        }
        let bytes = frame(payload);
        self.faults.write(&mut self.file, &bytes)?;
        self.faults.sync(&self.file)?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Replaces the file's contents with `records`, atomically.
    pub fn rewrite<'a>(&mut self, records: impl IntoIterator<Item = &'a [u8]>) -> io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        let mut bytes = Vec::new();
        for r in records {
            bytes.extend_from_slice(&frame(r));
        }
        {
            let mut f = File::create(&tmp)?;
            self.faults.write(&mut f, &bytes)?;
            self.faults.sync(&f)?;
        }
        fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            sync_dir(&self.faults, dir)?;
        }
        self.file = OpenOptions::new().read(true).append(true).open(&self.path)?;
        self.len = bytes.len() as u64;
        Ok(())
    }

    /// Bytes in the file.
    pub fn len_bytes(&self) -> u64 {
        self.len
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn append_reopen_cut_torn_tail_and_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pending.rec");
        let (mut f, none) = RecordFile::open(&path, Faults::none()).unwrap();
        assert!(none.is_empty());
        for i in 0..5u8 {
            f.append(&vec![i; 100 + usize::from(i)]).unwrap();
        }
        drop(f);
        let (_, back) = RecordFile::open(&path, Faults::none()).unwrap();
        assert_eq!(back.len(), 5);
        assert_eq!(back[3], vec![3u8; 103]);

        // A torn append at every length: the intact prefix survives, the tail is cut.
        let full = fs::read(&path).unwrap();
        let last = full.len() - (HEADER + 104);
        for cut in last..full.len() {
            fs::write(&path, &full[..cut]).unwrap();
            let (f, back) = RecordFile::open(&path, Faults::none()).unwrap();
            assert_eq!(back.len(), 4, "cut at {cut}");
            assert_eq!(f.len_bytes() as usize, last);
            assert_eq!(fs::metadata(&path).unwrap().len() as usize, last);
        }
        // A flipped payload byte ends the readable prefix there.
        let mut bad = full.clone();
        bad[HEADER + 2 * (HEADER + 100) + 5] ^= 1; // inside record 2
        fs::write(&path, &bad).unwrap();
        let (mut f, back) = RecordFile::open(&path, Faults::none()).unwrap();
        assert_eq!(back.len(), 2);

        f.rewrite([b"a".as_slice(), b"bc".as_slice()]).unwrap();
        f.append(b"def").unwrap();
        drop(f);
        let (_, back) = RecordFile::open(&path, Faults::none()).unwrap();
        assert_eq!(back, vec![b"a".to_vec(), b"bc".to_vec(), b"def".to_vec()]);
    }

    #[test]
    fn a_failed_sync_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let faults = Faults::none();
        let (mut f, _) = RecordFile::open(&dir.path().join("p.rec"), faults.clone()).unwrap();
        faults.fail_sync_after(0);
        assert!(f.append(b"x").is_err());
    }
}
