//! The block log under crashes, disk damage, a full disk and failed syncs: reopening never returns
//! a wrong payload and never loses a record it reported durable (except to damage it reports).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bastion_storage::Faults;
use bastion_storage::log::{BlockLog, LogConfig, LogError, LogRecovery};

fn cfg(segment_bytes: u64, faults: &Arc<Faults>) -> LogConfig {
    LogConfig { segment_bytes, faults: Arc::clone(faults) }
}

fn open(dir: &Path, segment_bytes: u64) -> (BlockLog, LogRecovery) {
    BlockLog::open(dir, cfg(segment_bytes, &Faults::none())).unwrap()
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn seed(test: &str) -> u64 {
    let seed = match std::env::var("BASTION_SEED") {
        Ok(s) => s.parse().unwrap(),
        Err(_) => {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
        }
    };
    eprintln!("{test}: seed {seed} (BASTION_SEED={seed} repeats it)");
    seed
}

/// The payload of height `h`: 1 to 150 bytes, different for every height.
fn payload(h: u64) -> Vec<u8> {
    let mut rng = Rng(h ^ 0xA5A5_5A5A);
    let n = 1 + rng.below(150) as usize;
    (0..n).map(|_| rng.next() as u8).collect()
}

/// Where one record landed: the bytes `start..end` of `file` (for the first record of a segment
/// `start` is 0: the range includes the segment header).
#[derive(Clone, Debug)]
struct Placed {
    height: u64,
    file: PathBuf,
    start: u64,
    end: u64,
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

/// Writes heights `1..=n`, one commit each, noting where every record went.
fn write_placed(dir: &Path, segment_bytes: u64, n: u64) -> Vec<Placed> {
    let (mut log, _) = open(dir, segment_bytes);
    let mut placed: Vec<Placed> = Vec::new();
    for h in 1..=n {
        log.append(h, &payload(h)).unwrap();
        assert_eq!(log.commit().unwrap(), Some(h));
        let file = segment_files(dir).pop().unwrap();
        let end = fs::metadata(&file).unwrap().len();
        let start = match placed.last() {
            Some(p) if p.file == file => p.end,
            _ => 0,
        };
        placed.push(Placed { height: h, file, start, end });
    }
    placed
}

fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    segment_files(dir).into_iter().map(|f| (f.file_name().unwrap().into(), fs::read(&f).unwrap())).collect()
}

fn restore(dir: &Path, files: &BTreeMap<PathBuf, Vec<u8>>) {
    for (name, bytes) in files {
        fs::write(dir.join(name), bytes).unwrap();
    }
}

/// Every record the log returns, checked against what was written.
fn check_contents(log: &BlockLog) -> Vec<u64> {
    let mut heights = Vec::new();
    for item in log.iter_from(0) {
        let (h, p) = item.unwrap();
        assert_eq!(p, payload(h), "wrong payload returned for height {h}");
        assert_eq!(log.read(h).unwrap(), p, "read({h}) differs from the iterator");
        heights.push(h);
    }
    heights
}

fn truncate(path: &Path, len: u64) {
    OpenOptions::new().write(true).open(path).unwrap().set_len(len).unwrap();
}

#[test]
fn torn_tail_at_every_byte_of_the_last_record() {
    for segment_bytes in [1 << 20, 600] {
        let src = tempfile::tempdir().unwrap();
        let placed = write_placed(src.path(), segment_bytes, 12);
        let pristine = snapshot(src.path());
        let last = placed.last().unwrap().clone();
        let name = PathBuf::from(last.file.file_name().unwrap());
        for cut in last.start..last.end {
            let dir = tempfile::tempdir().unwrap();
            restore(dir.path(), &pristine);
            let file = dir.path().join(&name);
            truncate(&file, cut);
            let (mut log, rec) = open(dir.path(), segment_bytes);
            let ctx = format!("segment_bytes {segment_bytes} cut {cut}: {rec:?}");
            assert!(rec.damage.is_empty() && rec.gaps.is_empty(), "{ctx}");
            assert!(rec.torn_tail_bytes <= cut - last.start + 16, "{ctx}");
            if last.start > 0 {
                // The record shares its segment: exactly what was cut of it is torn.
                assert_eq!(rec.torn_tail_bytes, cut - last.start, "{ctx}");
                assert_eq!(fs::metadata(&file).unwrap().len(), last.start, "{ctx}");
            }
            assert_eq!(rec.records, 11, "{ctx}");
            assert_eq!(log.durable_height(), Some(11), "{ctx}");
            assert_eq!(check_contents(&log), (1..=11).collect::<Vec<_>>(), "{ctx}");
            // Appending continues at the right height and survives another reopen.
            log.append(12, b"twelve again").unwrap();
            log.append(13, &payload(13)).unwrap();
            assert_eq!(log.commit().unwrap(), Some(13));
            drop(log);
            let (log, rec) = open(dir.path(), segment_bytes);
            assert!(
                rec.damage.is_empty() && rec.gaps.is_empty() && rec.torn_tail_bytes == 0,
                "{ctx}: {rec:?}"
            );
            assert_eq!(log.read(12).unwrap(), b"twelve again");
            assert_eq!(log.read(13).unwrap(), payload(13));
            assert_eq!(log.read(11).unwrap(), payload(11));
        }
    }
}

#[test]
fn garbage_after_the_last_record_is_a_torn_tail() {
    let mut rng = Rng(seed("garbage_after_the_last_record_is_a_torn_tail"));
    let src = tempfile::tempdir().unwrap();
    let placed = write_placed(src.path(), 1 << 20, 10);
    let pristine = snapshot(src.path());
    let file = placed[0].file.file_name().unwrap().to_owned();
    let mut partial = b"BLK1".to_vec();
    partial.extend_from_slice(&[7, 0, 0, 0, 11, 0, 0, 0]);
    for round in 0..50 {
        let dir = tempfile::tempdir().unwrap();
        restore(dir.path(), &pristine);
        let mut garbage: Vec<u8> = (0..1 + rng.below(300)).map(|_| rng.next() as u8).collect();
        if round % 2 == 0 {
            garbage.splice(0..0, partial.iter().copied());
        }
        let path = dir.path().join(&file);
        let mut bytes = fs::read(&path).unwrap();
        let good = bytes.len() as u64;
        bytes.extend_from_slice(&garbage);
        fs::write(&path, &bytes).unwrap();
        let (mut log, rec) = open(dir.path(), 1 << 20);
        assert_eq!(rec.torn_tail_bytes, garbage.len() as u64, "round {round}: {rec:?}");
        assert!(rec.damage.is_empty(), "round {round}: {rec:?}");
        assert_eq!(fs::metadata(&path).unwrap().len(), good);
        assert_eq!(check_contents(&log), (1..=10).collect::<Vec<_>>());
        log.append(11, &payload(11)).unwrap();
        log.commit().unwrap();
        drop(log);
        let (log, rec) = open(dir.path(), 1 << 20);
        assert_eq!(rec.torn_tail_bytes, 0);
        assert_eq!(check_contents(&log), (1..=11).collect::<Vec<_>>());
    }
}

#[test]
fn bit_flips_never_return_a_wrong_payload() {
    const N: u64 = 60;
    let mut rng = Rng(seed("bit_flips_never_return_a_wrong_payload"));
    let trials = std::env::var("BASTION_TRIALS").map_or(400, |t| t.parse().unwrap());
    let src = tempfile::tempdir().unwrap();
    let placed = write_placed(src.path(), 1024, N);
    let pristine = snapshot(src.path());
    let names: Vec<&PathBuf> = pristine.keys().collect();
    assert!(names.len() >= 4, "{} segments", names.len());
    let total: u64 = pristine.values().map(|b| b.len() as u64).sum();
    for trial in 0..trials {
        // Every fourth flip lands in a middle segment; the rest anywhere.
        let (name, pos) = if trial % 4 == 0 {
            let name = names[names.len() / 2];
            (name, rng.below(pristine[name].len() as u64))
        } else {
            let mut at = rng.below(total);
            let mut pick = None;
            for (name, bytes) in &pristine {
                if at < bytes.len() as u64 {
                    pick = Some((name, at));
                    break;
                }
                at -= bytes.len() as u64;
            }
            pick.unwrap()
        };
        let bit = rng.below(8);
        let dir = tempfile::tempdir().unwrap();
        restore(dir.path(), &pristine);
        let path = dir.path().join(name);
        let mut bytes = pristine[name].clone();
        bytes[pos as usize] ^= 1 << bit;
        fs::write(&path, &bytes).unwrap();

        let victim = placed
            .iter()
            .find(|p| p.file.file_name() == path.file_name() && (p.start..p.end).contains(&pos))
            .unwrap();
        let (log, rec) = open(dir.path(), 1024);
        let ctx = format!(
            "trial {trial}: flip bit {bit} of byte {pos} in {name:?} (height {}): {rec:?}",
            victim.height
        );
        let got = check_contents(&log);
        let missing: Vec<u64> = (1..=N).filter(|h| !got.contains(h)).collect();
        assert!(!rec.damage.is_empty() || rec.torn_tail_bytes > 0, "flip not detected: {ctx}");
        assert_eq!(rec.records, got.len() as u64, "{ctx}");
        match missing[..] {
            [] => {
                // Only the segment header in front of a segment's first record can be lost alone.
                assert_eq!(victim.start, 0, "{ctx}");
                assert_eq!((rec.damage.len(), rec.damage[0].offset), (1, 0), "{ctx}");
                assert!(rec.gaps.is_empty(), "{ctx}");
            }
            [h] => {
                assert_eq!(h, victim.height, "{ctx}");
                if h == N {
                    assert!(rec.torn_tail_bytes > 0 && rec.gaps.is_empty(), "{ctx}");
                } else if h == 1 {
                    assert_eq!(log.first_height(), Some(2), "{ctx}");
                    assert!(rec.gaps.is_empty(), "{ctx}");
                    assert_eq!(rec.damage[0].after_height, None, "{ctx}");
                } else {
                    assert_eq!(rec.gaps, vec![h..=h], "{ctx}");
                    assert_eq!(rec.torn_tail_bytes, 0, "{ctx}");
                    assert!(rec.damage.iter().all(|d| d.after_height == Some(h - 1)), "{ctx}");
                }
            }
            _ => panic!("more than the damaged record lost: {missing:?}: {ctx}"),
        }
        if trial % 10 == 0 {
            // The damaged log still takes appends, and they survive a reopen.
            let mut log = log;
            let next = log.last_height().unwrap() + 1;
            log.append(next, &payload(next)).unwrap();
            log.commit().unwrap();
            drop(log);
            let (log, rec2) = open(dir.path(), 1024);
            assert_eq!(rec2.gaps, rec.gaps, "{ctx}");
            let mut want = got.clone();
            want.push(next);
            assert_eq!(check_contents(&log), want, "{ctx}");
        }
    }
}

#[test]
fn middle_segment_cut_short_at_every_offset() {
    const N: u64 = 80;
    let src = tempfile::tempdir().unwrap();
    let placed = write_placed(src.path(), 1024, N);
    let pristine = snapshot(src.path());
    assert!(pristine.len() >= 4, "{} segments", pristine.len());
    let name = pristine.keys().nth(pristine.len() / 2).unwrap().clone();
    let len = pristine[&name].len() as u64;
    for cut in (0..len).rev() {
        let dir = tempfile::tempdir().unwrap();
        restore(dir.path(), &pristine);
        let path = dir.path().join(&name);
        truncate(&path, cut);
        let lost: Vec<u64> = placed
            .iter()
            .filter(|p| p.file.file_name() == path.file_name() && p.end > cut)
            .map(|p| p.height)
            .collect();
        let (log, rec) = open(dir.path(), 1024);
        let ctx = format!("cut {name:?} at {cut} of {len}, losing {lost:?}: {rec:?}");
        let got = check_contents(&log);
        assert_eq!(got, (1..=N).filter(|h| !lost.contains(h)).collect::<Vec<_>>(), "{ctx}");
        assert_eq!(rec.gaps, vec![lost[0]..=*lost.last().unwrap()], "{ctx}");
        assert_eq!(rec.torn_tail_bytes, 0, "{ctx}");
        assert!(!rec.damage.is_empty(), "{ctx}");
        assert!(rec.damage.iter().all(|d| d.after_height == Some(lost[0] - 1)), "{ctx}");
    }
}

#[test]
fn no_space_keeps_exactly_the_durable_records() {
    for k in [0, 1, 15, 16, 17, 23, 24, 25, 40, 100, 333, 700, 1023, 1024, 1500, 3000, 5000] {
        let dir = tempfile::tempdir().unwrap();
        let faults = Faults::none();
        let (mut log, _) = BlockLog::open(dir.path(), cfg(1024, &faults)).unwrap();
        for h in 1..=20 {
            log.append(h, &payload(h)).unwrap();
            if h % 3 == 0 {
                log.commit().unwrap();
            }
        }
        assert_eq!(log.commit().unwrap(), Some(20));
        faults.no_space_after(k);
        let mut h = 20;
        let err = loop {
            h += 1;
            assert!(h < 400, "k {k}: the disk never filled");
            log.append(h, &payload(h)).unwrap();
            if h % 4 == 0
                && let Err(e) = log.commit()
            {
                break e;
            }
        };
        assert!(matches!(err, LogError::NoSpace { .. }), "k {k}: {err}");
        assert!(err.to_string().contains("no space left"), "{err}");
        let durable = log.durable_height().unwrap();
        assert!((20..h).contains(&durable), "k {k}: durable {durable}, last {h}");
        assert!(matches!(log.append(h + 1, b"x"), Err(LogError::Poisoned)));
        assert!(matches!(log.commit(), Err(LogError::Poisoned)));
        assert!(matches!(log.prune_below(10), Err(LogError::Poisoned)));
        assert!(matches!(log.reset(), Err(LogError::Poisoned)));
        assert!(LogError::Poisoned.to_string().contains("restart"));
        assert_eq!(log.read(durable).unwrap(), payload(durable));
        drop(log);

        faults.clear();
        let (mut log, rec) = BlockLog::open(dir.path(), cfg(1024, &faults)).unwrap();
        assert!(rec.damage.is_empty() && rec.gaps.is_empty(), "k {k}: {rec:?}");
        assert_eq!(rec.torn_tail_bytes, 0, "k {k}: the failed write was not truncated");
        assert_eq!(log.durable_height(), Some(durable), "k {k}");
        assert_eq!(check_contents(&log), (1..=durable).collect::<Vec<_>>(), "k {k}");
        log.append(durable + 1, &payload(durable + 1)).unwrap();
        assert_eq!(log.commit().unwrap(), Some(durable + 1));
    }
}

#[test]
fn failed_sync_poisons_and_keeps_the_durable_height() {
    for segment_bytes in [1 << 20, 700] {
        for n in 0..8 {
            let ctx = format!("segment_bytes {segment_bytes}, syncs before failure {n}");
            let dir = tempfile::tempdir().unwrap();
            let faults = Faults::none();
            let (mut log, _) = BlockLog::open(dir.path(), cfg(segment_bytes, &faults)).unwrap();
            faults.fail_sync_after(n);
            let mut h = 0;
            let (before, err) = loop {
                let before = log.durable_height();
                for _ in 0..3 {
                    h += 1;
                    log.append(h, &payload(h)).unwrap();
                }
                match log.commit() {
                    Ok(d) => assert_eq!(d, Some(h), "{ctx}"),
                    Err(e) => break (before, e),
                }
                assert!(h < 300, "{ctx}: no sync failed");
            };
            let LogError::SyncFailed { path, .. } = &err else { panic!("{ctx}: {err}") };
            let msg = err.to_string();
            assert!(msg.contains("fdatasync") && msg.contains(&path.display().to_string()), "{msg}");
            assert!(path == dir.path() || path.parent() == Some(dir.path()), "{ctx}: {msg}");
            if segment_bytes == 1 << 20 {
                // One segment: one sync per commit, so nothing of the failed batch is durable.
                assert_eq!(log.durable_height(), before, "{ctx}");
            } else {
                // A batch that started a segment synced the old one first.
                assert!(log.durable_height() >= before && log.durable_height() < Some(h), "{ctx}");
            }
            let durable = log.durable_height();
            assert!(matches!(log.append(h + 1, b"x"), Err(LogError::Poisoned)), "{ctx}");
            assert!(matches!(log.commit(), Err(LogError::Poisoned)), "{ctx}");
            assert_eq!(log.durable_height(), durable);
            if let Some(d) = durable {
                assert_eq!(log.read(d).unwrap(), payload(d), "{ctx}: reads still work");
            }
            drop(log);

            let (log, rec) = open(dir.path(), segment_bytes);
            assert!(rec.damage.is_empty(), "{ctx}: {rec:?}");
            let got = check_contents(&log);
            // What was durable is there; what was written but not synced may be too.
            let d = durable.unwrap_or(0);
            assert!(got.len() as u64 >= d && got.iter().copied().eq(1..=got.len() as u64), "{ctx}: {got:?}");
        }
    }
}
