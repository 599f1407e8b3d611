//! Fault injection against snapshots: flipped bits, truncation, a full disk, failed syncs and
//! layout changes must each be detected, reported with the damaged file's name, and leave
//! the previous snapshot loadable.
//!
//! Randomness is seeded: the seed is printed, and `BASTION_SEED=<n>` replays a run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use bastion_storage::faults::Faults;
use bastion_storage::snapshot::{HEADER_LEN, SnapshotStore, SnapshotWriter};
use bastion_storage::{SnapshotError, SnapshotMeta};

const LAYOUT: u32 = 3;

/// SplitMix64: small, seedable, good enough to pick positions.
struct Rng(u64);

impl Rng {
    fn seeded(test: &str) -> Rng {
        let seed = match std::env::var("BASTION_SEED") {
            Ok(s) => s.trim().parse().expect("BASTION_SEED must be a u64"),
            Err(_) => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0x5eed),
        };
        eprintln!("{test}: seed {seed} (BASTION_SEED={seed} replays this run)");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn root(h: u64) -> [u8; 32] {
    let mut r = [h as u8; 32];
    r[..8].copy_from_slice(&h.to_le_bytes());
    r
}

/// A store with two snapshots (heights 10 and 20) of random payloads; returns the metas,
/// oldest first.
fn two_snapshots(dir: &Path, rng: &mut Rng, faults: Arc<Faults>) -> (SnapshotStore, [SnapshotMeta; 2]) {
    let store = SnapshotStore::open(dir, 4, faults).unwrap();
    let len_a = 1 + rng.below(20_000) as usize;
    let len_b = 1 + rng.below(20_000) as usize;
    let a = store.write(10, root(10), LAYOUT, &rng.bytes(len_a)).unwrap();
    let b = store.write(20, root(20), LAYOUT, &rng.bytes(len_b)).unwrap();
    (store, [a, b])
}

fn file_name(meta: &SnapshotMeta) -> String {
    meta.path.file_name().unwrap().to_str().unwrap().to_string()
}

/// `newest_valid` falls back to `older` and reports exactly one error, which names `damaged`.
fn expect_fallback(
    store: &SnapshotStore,
    older: &SnapshotMeta,
    damaged: &SnapshotMeta,
    what: &str,
) -> SnapshotError {
    let (snap, mut errors) = store.newest_valid(LAYOUT).unwrap();
    let snap = snap.unwrap_or_else(|| panic!("{what}: no valid snapshot, errors {errors:?}"));
    assert_eq!(snap.meta(), older, "{what}: fell back to the wrong snapshot");
    assert_eq!(errors.len(), 1, "{what}: errors {errors:?}");
    let err = errors.pop().unwrap();
    let msg = err.to_string();
    assert!(msg.contains(&file_name(damaged)), "{what}: error does not name the file: {msg}");
    err
}

fn flip_bit(path: &Path, pos: u64, bit: u8) {
    let f = OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, pos).unwrap();
    b[0] ^= 1 << bit;
    f.write_all_at(&b, pos).unwrap();
}

fn no_tmp_files(dir: &Path) {
    for entry in fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name();
        assert!(!name.to_string_lossy().ends_with(".tmp"), "temporary file left behind: {name:?}");
    }
}

#[test]
fn bit_flips_anywhere_are_detected() {
    let mut rng = Rng::seeded("bit_flips_anywhere_are_detected");
    let dir = tempfile::tempdir().unwrap();
    let (store, [older, newest]) = two_snapshots(dir.path(), &mut rng, Faults::none());
    let path = newest.path.clone();
    let file_len = fs::metadata(&path).unwrap().len();
    let payload_end = HEADER_LEN as u64 + newest.payload_len;
    assert!(file_len >= payload_end);

    let mut kinds = [0usize; 5];
    for i in 0..400 {
        // Aim a quarter of the flips at the header, where each field is checked differently.
        let pos = if i % 4 == 0 { rng.below(HEADER_LEN as u64) } else { rng.below(file_len) };
        let bit = rng.below(8) as u8;
        flip_bit(&path, pos, bit);
        let what = format!("flip bit {bit} of byte {pos} (payload ends at {payload_end}, file {file_len})");
        let err = expect_fallback(&store, &older, &newest, &what);
        let kind = match (&err, pos) {
            (SnapshotError::BadMagic { .. }, 0..8) => 0,
            (SnapshotError::Version { found, supported: 1, .. }, 8..12) => {
                assert_eq!(*found, 1 ^ (1 << (bit + 8 * (pos as u8 - 8))), "{what}");
                1
            }
            (SnapshotError::Header { reason, .. }, 12..128) => {
                assert!(reason.contains("checksum") || reason.contains("reserved"), "{what}: {reason}");
                2
            }
            (SnapshotError::Checksum { expected, found, .. }, p) if p >= 128 && p < payload_end => {
                assert_ne!(expected, found);
                3
            }
            (SnapshotError::Padding { offset, .. }, p) if p >= payload_end => {
                assert_eq!(*offset, pos, "{what}");
                4
            }
            _ => panic!("{what}: unexpected error {err:?}"),
        };
        kinds[kind] += 1;
        flip_bit(&path, pos, bit);
        let (snap, errors) = store.newest_valid(LAYOUT).unwrap();
        assert!(errors.is_empty(), "after restoring byte {pos}: {errors:?}");
        assert_eq!(snap.unwrap().meta(), &newest);
    }
    eprintln!("errors by kind [magic, version, header, checksum, padding]: {kinds:?}");
    assert!(kinds[2] > 0 && kinds[3] > 0, "flips missed the header or payload: {kinds:?}");
}

#[test]
fn header_fields_each_detected() {
    let mut rng = Rng::seeded("header_fields_each_detected");
    let dir = tempfile::tempdir().unwrap();
    let (store, [older, newest]) = two_snapshots(dir.path(), &mut rng, Faults::none());
    // One flip per header byte, a random bit each.
    for pos in 0..HEADER_LEN as u64 {
        let bit = rng.below(8) as u8;
        flip_bit(&newest.path, pos, bit);
        let err = expect_fallback(&store, &older, &newest, &format!("header byte {pos} bit {bit}"));
        match pos {
            0..8 => assert!(matches!(err, SnapshotError::BadMagic { .. }), "byte {pos}: {err:?}"),
            8..12 => assert!(matches!(err, SnapshotError::Version { .. }), "byte {pos}: {err:?}"),
            _ => assert!(matches!(err, SnapshotError::Header { .. }), "byte {pos}: {err:?}"),
        }
        flip_bit(&newest.path, pos, bit);
    }
    assert_eq!(store.newest_valid(LAYOUT).unwrap().0.unwrap().meta(), &newest);
}

#[test]
fn truncation_is_detected() {
    let mut rng = Rng::seeded("truncation_is_detected");
    let dir = tempfile::tempdir().unwrap();
    let (store, [older, newest]) = two_snapshots(dir.path(), &mut rng, Faults::none());
    let original = fs::read(&newest.path).unwrap();
    let payload_end = HEADER_LEN as u64 + newest.payload_len;
    for i in 0..200 {
        let len = match i {
            0 => 0,
            1 => HEADER_LEN as u64 - 1,
            2 => HEADER_LEN as u64,
            3 => payload_end - 1,
            _ => rng.below(payload_end),
        };
        fs::write(&newest.path, &original[..len as usize]).unwrap();
        let what = format!("truncated to {len} of {payload_end}");
        match expect_fallback(&store, &older, &newest, &what) {
            SnapshotError::Header { reason, .. } => assert!(reason.contains("truncated"), "{what}: {reason}"),
            other => panic!("{what}: expected a header error, got {other:?}"),
        }
    }
    // Cutting only padding leaves a valid snapshot.
    fs::write(&newest.path, &original[..payload_end as usize]).unwrap();
    let (snap, errors) = store.newest_valid(LAYOUT).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(snap.unwrap().meta(), &newest);
}

#[test]
fn layout_mismatch_is_reported() {
    let mut rng = Rng::seeded("layout_mismatch_is_reported");
    let dir = tempfile::tempdir().unwrap();
    let (store, [older, newest]) = two_snapshots(dir.path(), &mut rng, Faults::none());
    match store.open_snapshot(&newest.path, LAYOUT + 1) {
        Err(SnapshotError::Layout { found, expected, path }) => {
            assert_eq!((found, expected), (LAYOUT, LAYOUT + 1));
            assert_eq!(path, newest.path);
        }
        other => panic!("expected a layout error, got {other:?}"),
    }
    let (snap, errors) = store.newest_valid(LAYOUT + 1).unwrap();
    assert!(snap.is_none());
    assert_eq!(errors.len(), 2);
    assert!(errors.iter().all(|e| matches!(e, SnapshotError::Layout { .. })));
    assert!(errors[0].to_string().contains(&file_name(&newest)));
    assert!(errors[1].to_string().contains(&file_name(&older)));
    // A newer snapshot written with another layout is skipped for the older one.
    store.write(30, root(30), LAYOUT + 1, b"new layout").unwrap();
    let (snap, errors) = store.newest_valid(LAYOUT).unwrap();
    assert_eq!(snap.unwrap().meta(), &newest);
    assert!(matches!(&errors[..], [SnapshotError::Layout { found, .. }] if *found == LAYOUT + 1));
}

#[test]
fn damaged_snapshots_are_never_deleted() {
    let mut rng = Rng::seeded("damaged_snapshots_are_never_deleted");
    let dir = tempfile::tempdir().unwrap();
    let (store, [older, newest]) = two_snapshots(dir.path(), &mut rng, Faults::none());
    flip_bit(&newest.path, HEADER_LEN as u64 + rng.below(newest.payload_len), 0);
    let err = expect_fallback(&store, &older, &newest, "payload flip");
    assert!(err.to_string().contains("damaged"), "{err}");
    assert!(newest.path.exists());
    assert!(SnapshotStore::open(dir.path(), 4, Faults::none()).is_ok());
    assert!(newest.path.exists(), "reopening deleted the damaged snapshot");
    // At most: the newer damaged one is not even looked at.
    let (snap, errors) = store.newest_valid_at_most(15, LAYOUT).unwrap();
    assert_eq!(snap.unwrap().meta(), &older);
    assert!(errors.is_empty());
}

#[test]
fn full_disk_leaves_earlier_snapshots_intact() {
    let mut rng = Rng::seeded("full_disk_leaves_earlier_snapshots_intact");
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::none();
    let (store, [older, newest]) = two_snapshots(dir.path(), &mut rng, Arc::clone(&faults));
    let before = store.list().unwrap();
    for _ in 0..20 {
        let len = 1 + rng.below(50_000) as usize;
        // Any space short of the block-rounded file: never enough.
        faults.no_space_after(rng.below((HEADER_LEN + len) as u64));
        let err = store.write(30, root(30), LAYOUT, &rng.bytes(len)).unwrap_err();
        match &err {
            SnapshotError::NoSpace { path } => assert!(path.ends_with("snap-00000000000000000030.bsnap")),
            other => panic!("expected NoSpace, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains("snap-00000000000000000030.bsnap") && msg.contains("intact"), "{msg}");
        no_tmp_files(dir.path());
        assert_eq!(store.list().unwrap(), before);
        let (snap, errors) = store.newest_valid(LAYOUT).unwrap();
        assert!(errors.is_empty());
        assert_eq!(snap.unwrap().meta(), &newest);
    }
    assert!(store.open_snapshot(&older.path, LAYOUT).is_ok());
    faults.clear();
    store.write(30, root(30), LAYOUT, b"space again").unwrap();
    assert_eq!(store.newest_valid(LAYOUT).unwrap().0.unwrap().meta().height, 30);
}

#[test]
fn failed_syncs_publish_nothing() {
    let mut rng = Rng::seeded("failed_syncs_publish_nothing");
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::none();
    let (store, [_, newest]) = two_snapshots(dir.path(), &mut rng, Arc::clone(&faults));
    let before = store.list().unwrap();
    // 0: the file's own sync fails; 1: the directory sync after the rename fails.
    for n in [0, 1] {
        faults.fail_sync_after(n);
        let err = store.write(30, root(30), LAYOUT, &rng.bytes(5000)).unwrap_err();
        match &err {
            SnapshotError::Io { source, path, .. } => {
                assert_eq!(source.raw_os_error(), Some(libc::EIO), "sync after {n}: {err}");
                assert!(path.ends_with("snap-00000000000000000030.bsnap"));
            }
            other => panic!("sync after {n}: expected an I/O error, got {other:?}"),
        }
        faults.clear();
        no_tmp_files(dir.path());
        assert_eq!(store.list().unwrap(), before, "sync after {n}: a new snapshot is visible");
        assert_eq!(store.newest_valid(LAYOUT).unwrap().0.unwrap().meta(), &newest);
    }
}

#[test]
fn failed_writes_do_not_prune() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::none();
    let store = SnapshotStore::open(dir.path(), 2, Arc::clone(&faults)).unwrap();
    store.write(1, root(1), LAYOUT, b"one").unwrap();
    store.write(2, root(2), LAYOUT, b"two").unwrap();
    faults.fail_sync_after(0);
    assert!(store.write(3, root(3), LAYOUT, b"three").is_err());
    faults.clear();
    let heights: Vec<u64> = store.list().unwrap().into_iter().map(|(h, _)| h).collect();
    assert_eq!(heights, vec![2, 1]);
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
struct Accounts {
    height: u64,
    balances: Vec<u64>,
    name: String,
}

#[test]
fn rkyv_payload_is_accessible_in_place() {
    let mut rng = Rng::seeded("rkyv_payload_is_accessible_in_place");
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path(), 2, Faults::none()).unwrap();
    let state = Accounts {
        height: 77,
        balances: (0..1 + rng.below(5000)).map(|_| rng.next()).collect(),
        name: "bastion".into(),
    };
    let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&state).unwrap();
    store.write(77, root(77), LAYOUT, &bytes).unwrap();

    let snap = store.open_snapshot(&store.path_for(77), LAYOUT).unwrap();
    let archived = rkyv::access::<ArchivedAccounts, rkyv::rancor::Error>(snap.payload()).unwrap();
    assert_eq!(archived.height, 77);
    assert_eq!(archived.balances.len(), state.balances.len());
    assert!(archived.balances.iter().zip(&state.balances).all(|(a, b)| a.to_native() == *b));
    assert_eq!(archived.name.as_str(), "bastion");
    let back: Accounts = rkyv::deserialize::<Accounts, rkyv::rancor::Error>(archived).unwrap();
    assert_eq!(back, state);

    // The same through the background writer, as the node does it.
    let writer = SnapshotWriter::spawn(store);
    let state2 = Accounts { height: 78, balances: vec![1, 2, 3], name: "two".into() };
    writer
        .submit(Box::new(move || {
            let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&state2).map_err(|e| e.to_string())?;
            Ok((78, root(78), LAYOUT, bytes))
        }))
        .unwrap();
    let meta = writer.wait().pop().unwrap().unwrap();
    let snap = writer.store().open_snapshot(&meta.path, LAYOUT).unwrap();
    let archived = rkyv::access::<ArchivedAccounts, rkyv::rancor::Error>(snap.payload()).unwrap();
    assert_eq!(archived.balances.as_slice(), &[1u64, 2, 3].map(rkyv::rend::u64_le::from_native));
}
