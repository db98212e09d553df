use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

fn config(segment_bytes: u64, preallocate: bool, keep_snapshots: usize) -> StorageConfig {
    StorageConfig {
        log_dir: PathBuf::from("/data/log"),
        snapshot_dir: PathBuf::from("/data/snapshot"),
        segment_bytes,
        preallocate,
        // Small, so that segments here are reserved in several steps.
        preallocate_step: 128,
        keep_snapshots,
    }
}

fn open(fs: &FaultFs, config: &StorageConfig) -> Result<(Storage, Recovered), StorageError> {
    Storage::open(config.clone(), Arc::new(fs.clone()))
}

/// A payload that names its index and the attempt that wrote it.
fn payload(index: u64, attempt: u64, len: usize) -> Vec<u8> {
    let mut p = format!("{index}/{attempt}:").into_bytes();
    p.resize(len.max(p.len()), (index * 31 + attempt) as u8);
    p
}

fn snap_bytes(index: u64) -> Vec<u8> {
    let mut b = format!("state@{index}").into_bytes();
    b.resize(b.len() + (index % 40) as usize, index as u8);
    b
}

/// Appends `first..=last`, one record per batch, each `len` bytes.
fn append_each(s: &mut Storage, first: u64, last: u64, len: usize) {
    for i in first..=last {
        s.append(&[(i, &payload(i, 0, len))]).unwrap();
    }
}

/// The index and payload of the snapshot recovery chose.
fn snapshot_of(r: &Recovered) -> Option<(u64, Vec<u8>)> {
    r.snapshot
        .as_ref()
        .map(|s| (s.index, read_payload(&s.file).expect("readable")))
}

fn expect_entries(r: &Recovered, first: u64, last: u64, len: usize) {
    let want: Vec<_> = (first..=last).map(|i| (i, payload(i, 0, len))).collect();
    assert_eq!(r.entries, want);
}

fn log_dir() -> PathBuf {
    PathBuf::from("/data/log")
}

fn segment_path(first: u64) -> PathBuf {
    log_dir().join(wal::segment_name(first))
}

#[test]
fn empty_then_round_trip() {
    let fs = FaultFs::new();
    let cfg = config(4096, true, 3);
    let (mut s, r) = open(&fs, &cfg).unwrap();
    assert_eq!(r, Recovered::default());
    assert_eq!(s.last_index(), 0);
    let batch: Vec<(u64, Vec<u8>)> = (1..=10).map(|i| (i, payload(i, 0, 20))).collect();
    let refs: Vec<(u64, &[u8])> = batch.iter().map(|(i, p)| (*i, p.as_slice())).collect();
    s.append(&refs[..4]).unwrap();
    s.append(&refs[4..]).unwrap();
    assert_eq!(s.last_index(), 10);
    drop(s);
    fs.crash();
    let (s, r) = open(&fs, &cfg).unwrap();
    expect_entries(&r, 1, 10, 20);
    assert_eq!(r.truncated_tail, None);
    assert_eq!(s.last_index(), 10);
}

#[test]
fn appends_must_continue_the_log() {
    let fs = FaultFs::new();
    let (mut s, _) = open(&fs, &config(4096, true, 3)).unwrap();
    let err = s.append(&[(2, b"x")]).unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::OutOfOrder {
                expected: 1,
                got: 2
            }
        ),
        "{err}"
    );
    s.append(&[(1, b"x")]).unwrap();
    assert!(s.append(&[(2, b"y"), (4, b"z")]).is_err());
    assert!(s.append(&[(1, b"y")]).is_err());
    s.append(&[(2, b"y")]).unwrap();
}

#[test]
fn torn_tail_is_truncated_and_reported() {
    let fs = FaultFs::new();
    let cfg = config(4096, true, 3);
    let (mut s, _) = open(&fs, &cfg).unwrap();
    append_each(&mut s, 1, 5, 30);
    // The power goes off during the fdatasync of a batch of three records;
    // the first 70 bytes of the write reached the disk.
    fs.cut_power_after(0);
    let batch: Vec<_> = (6..=8).map(|i| payload(i, 1, 30)).collect();
    let refs: Vec<(u64, &[u8])> = batch
        .iter()
        .enumerate()
        .map(|(k, p)| (6 + k as u64, p.as_slice()))
        .collect();
    assert!(s.append(&refs).is_err());
    drop(s);
    fs.crash_with(|_, _| 70);
    let (mut s, r) = open(&fs, &cfg).unwrap();
    // One whole record (47 bytes) of the batch made it; the second is torn.
    let end_of_5 = (wal::HEADER_LEN + 5 * (wal::FRAME_HEADER_LEN + 30)) as u64;
    assert_eq!(r.truncated_tail, Some((segment_path(1), end_of_5 + 47)));
    assert_eq!(r.entries.len(), 6);
    assert_eq!(r.entries[5], (6, payload(6, 1, 30)));
    assert_eq!(s.last_index(), 6);
    // The cut-off bytes are gone: the log continues cleanly.
    s.append(&[(7, b"after")]).unwrap();
    drop(s);
    fs.crash();
    let (_, r) = open(&fs, &cfg).unwrap();
    assert_eq!(r.truncated_tail, None);
    assert_eq!(r.entries.last(), Some(&(7, b"after".to_vec())));
}

#[test]
fn torn_tail_without_preallocation() {
    let fs = FaultFs::new();
    let cfg = config(4096, false, 3);
    let (mut s, _) = open(&fs, &cfg).unwrap();
    append_each(&mut s, 1, 3, 10);
    fs.cut_power_after(0);
    assert!(s.append(&[(4, &[7u8; 100])]).is_err());
    drop(s);
    fs.crash_with(|_, n| n - 1);
    let (_, r) = open(&fs, &cfg).unwrap();
    assert!(r.truncated_tail.is_some());
    expect_entries(&r, 1, 3, 10);
}

#[test]
fn bit_flip_mid_log_names_file_and_offset() {
    let fs = FaultFs::new();
    let cfg = config(4096, true, 3);
    let (mut s, _) = open(&fs, &cfg).unwrap();
    append_each(&mut s, 1, 10, 30);
    drop(s);
    // A bit in the payload of record 4, which has records after it.
    let rec4 = (wal::HEADER_LEN + 3 * (wal::FRAME_HEADER_LEN + 30)) as u64;
    fs.flip_bit(&segment_path(1), rec4 + 20, 3).unwrap();
    let err = open(&fs, &cfg).unwrap_err();
    match &err {
        StorageError::CorruptLog { path, offset, .. } => {
            assert_eq!(path, &segment_path(1));
            assert_eq!(*offset, rec4);
        }
        other => panic!("expected CorruptLog, got {other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("wal-00000000000000000001.log") && msg.contains(&rec4.to_string()),
        "{msg}"
    );
    assert!(msg.contains("rejoin"), "the message says what to do: {msg}");
}

#[test]
fn bit_flip_in_an_older_segment_is_an_error_even_at_its_end() {
    let fs = FaultFs::new();
    let cfg = config(300, true, 3);
    let (mut s, _) = open(&fs, &cfg).unwrap();
    append_each(&mut s, 1, 12, 40);
    assert!(s.stats().log_segments > 1);
    drop(s);
    // The last record of the first segment (4 records of 57 bytes fit).
    let last = (wal::HEADER_LEN + 3 * 57) as u64;
    fs.flip_bit(&segment_path(1), last + 30, 0).unwrap();
    let err = open(&fs, &cfg).unwrap_err();
    assert!(
        matches!(&err, StorageError::CorruptLog { path, offset, .. } if path == &segment_path(1) && *offset == last),
        "{err}"
    );
}

#[test]
fn damaged_segment_header_is_an_error() {
    let fs = FaultFs::new();
    let cfg = config(4096, true, 3);
    let (mut s, _) = open(&fs, &cfg).unwrap();
    append_each(&mut s, 1, 3, 10);
    drop(s);
    fs.flip_bit(&segment_path(1), 9, 1).unwrap();
    let err = open(&fs, &cfg).unwrap_err();
    assert!(
        matches!(err, StorageError::CorruptLog { offset: 0, .. }),
        "{err}"
    );
}

#[test]
fn corrupt_snapshot_is_an_error_when_the_log_cannot_cover_it() {
    let fs = FaultFs::new();
    let cfg = config(300, true, 1);
    let (mut s, _) = open(&fs, &cfg).unwrap();
    append_each(&mut s, 1, 20, 40);
    s.write_snapshot(18, &snap_bytes(18)).unwrap();
    // With one snapshot kept the log before it is purged.
    assert!(s.stats().log_segments < 5);
    drop(s);
    let snap = PathBuf::from("/data/snapshot").join(snapshot::snapshot_name(18));
    fs.flip_bit(&snap, 45, 2).unwrap();
    let err = open(&fs, &cfg).unwrap_err();
    assert!(
        matches!(&err, StorageError::CorruptSnapshot { path, .. } if path == &snap),
        "{err}"
    );
    assert!(
        err.to_string().contains("snap-00000000000000000018.snap"),
        "{err}"
    );
}

#[test]
fn corrupt_snapshot_falls_back_when_the_log_covers_it() {
    let fs = FaultFs::new();
    let cfg = config(300, true, 3);
    let (mut s, _) = open(&fs, &cfg).unwrap();
    append_each(&mut s, 1, 10, 40);
    s.write_snapshot(5, &snap_bytes(5)).unwrap();
    append_each(&mut s, 11, 20, 40);
    s.write_snapshot(15, &snap_bytes(15)).unwrap();
    drop(s);
    let snap = PathBuf::from("/data/snapshot").join(snapshot::snapshot_name(15));
    fs.flip_bit(&snap, 10, 0).unwrap();
    let (s, r) = open(&fs, &cfg).unwrap();
    assert_eq!(snapshot_of(&r), Some((5, snap_bytes(5))));
    expect_entries(&r, 6, 20, 40);
    assert_eq!(r.corrupt_snapshots.len(), 1);
    assert_eq!(r.corrupt_snapshots[0].0, snap);
    assert_eq!(s.stats().snapshots, 1);
    let names = fs.file_names(Path::new("/data/snapshot"));
    assert!(
        names.contains(&"snap-00000000000000000015.snap.corrupt".to_string()),
        "{names:?}"
    );
}

#[test]
fn recovery_reads_only_segments_above_the_snapshot() {
    let fs = FaultFs::new();
    let cfg = config(300, true, 3);
    let (mut s, _) = open(&fs, &cfg).unwrap();
    append_each(&mut s, 1, 40, 40);
    for index in [10, 30, 31] {
        s.write_snapshot(index, &snap_bytes(index)).unwrap();
    }
    drop(s);
    // Segment 13..=16 is kept for a fall back to snapshot 10, but a recovery
    // from snapshot 31 never reads it, so damage there does not matter.
    fs.flip_bit(&segment_path(13), 100, 4).unwrap();
    let (s, r) = open(&fs, &cfg).unwrap();
    assert_eq!(snapshot_of(&r), Some((31, snap_bytes(31))));
    expect_entries(&r, 32, 40, 40);
    drop(s);
    // With both newer snapshots damaged the fall back to 10 must read it:
    // the log damage is reported, not skipped.
    let snapshots = Path::new("/data/snapshot");
    fs.flip_bit(&snapshots.join(snapshot::snapshot_name(31)), 50, 0)
        .unwrap();
    fs.flip_bit(&snapshots.join(snapshot::snapshot_name(30)), 50, 0)
        .unwrap();
    let err = open(&fs, &cfg).unwrap_err();
    assert!(
        matches!(&err, StorageError::CorruptLog { path, .. } if path == &segment_path(13)),
        "{err}"
    );
}

#[test]
fn full_disk_is_an_error_and_appends_resume_when_space_returns() {
    for preallocate in [false, true] {
        let fs = FaultFs::new();
        let cfg = config(512, preallocate, 3);
        let (mut s, _) = open(&fs, &cfg).unwrap();
        append_each(&mut s, 1, 5, 50);
        fs.set_capacity(Some(fs.used() + 30));
        let mut failed = None;
        for i in 6..40 {
            if let Err(e) = s.append(&[(i, &payload(i, 0, 50))]) {
                failed = Some((i, e));
                break;
            }
        }
        let (i, err) = failed.expect("the disk fills up");
        assert!(err.is_disk_full(), "{err}");
        assert_eq!(s.last_index(), i - 1);
        // Still full: still an error, still nothing counted.
        assert!(
            s.append(&[(i, &payload(i, 0, 50))])
                .unwrap_err()
                .is_disk_full()
        );
        fs.set_capacity(None);
        append_each(&mut s, i, i + 5, 50);
        drop(s);
        fs.crash();
        let (_, r) = open(&fs, &cfg).unwrap();
        expect_entries(&r, 1, i + 5, 50);
    }
}

#[test]
fn failed_sync_counts_nothing_of_the_batch() {
    let fs = FaultFs::new();
    let cfg = config(4096, true, 3);
    let (mut s, _) = open(&fs, &cfg).unwrap();
    append_each(&mut s, 1, 3, 10);
    // The fdatasync and the clean-up's fdatasync both fail.
    fs.fail_syncs(2);
    assert!(s.append(&[(4, b"lost")]).is_err());
    assert_eq!(s.last_index(), 3);
    s.append(&[(4, &payload(4, 0, 10))]).unwrap();
    drop(s);
    fs.crash();
    let (_, r) = open(&fs, &cfg).unwrap();
    expect_entries(&r, 1, 4, 10);
}

#[test]
fn lock_held_by_another_storage_is_a_clear_error() {
    let fs = FaultFs::new();
    let cfg = config(4096, true, 3);
    let (s, _) = open(&fs, &cfg).unwrap();
    let err = open(&fs, &cfg).unwrap_err();
    assert!(matches!(&err, StorageError::Locked { path } if path == &log_dir().join("LOCK")));
    assert!(err.to_string().contains("another synod process"), "{err}");
    drop(s);
    open(&fs, &cfg).unwrap();
}

#[test]
fn real_fs_lock_round_trip_and_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StorageConfig::new(dir.path());
    cfg.segment_bytes = 1 << 20;
    let (mut s, _) = Storage::open(cfg.clone(), Arc::new(RealFs)).unwrap();
    let err = Storage::open(cfg.clone(), Arc::new(RealFs)).unwrap_err();
    assert!(matches!(err, StorageError::Locked { .. }), "{err}");
    append_each(&mut s, 1, 100, 100);
    s.write_snapshot(50, b"fifty").unwrap();
    assert_eq!(s.stats().log_bytes, 1 << 20, "the segment is preallocated");
    drop(s);
    let (s, r) = Storage::open(cfg.clone(), Arc::new(RealFs)).unwrap();
    assert_eq!(snapshot_of(&r), Some((50, b"fifty".to_vec())));
    expect_entries(&r, 51, 100, 100);
    assert_eq!(s.last_index(), 100);
    // Same directory for both: one lock.
    drop(s);
    let mut same = cfg.clone();
    same.snapshot_dir = same.log_dir.clone();
    let (_s, r) = Storage::open(same, Arc::new(RealFs)).unwrap();
    expect_entries(&r, 1, 100, 100);
}

#[test]
fn real_fs_segments_are_reserved_a_step_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StorageConfig::new(dir.path());
    cfg.segment_bytes = 1 << 20;
    cfg.preallocate_step = 64 << 10;
    let (mut s, _) = Storage::open(cfg.clone(), Arc::new(RealFs)).unwrap();
    append_each(&mut s, 1, 10, 100);
    let seg = cfg.log_dir.join(wal::segment_name(1));
    let on_disk = |path: &Path| std::fs::metadata(path).unwrap().len();
    assert_eq!(
        on_disk(&seg),
        64 << 10,
        "one step reserved, not the segment"
    );
    assert_eq!(s.stats().log_bytes, 64 << 10);
    // Past the first step: reserved up to the next boundary.
    append_each(&mut s, 11, 1000, 100);
    let written = (wal::HEADER_LEN + 1000 * (wal::FRAME_HEADER_LEN + 100)) as u64;
    let reserved = on_disk(&seg);
    assert!(
        reserved >= written && reserved % (64 << 10) == 0,
        "{reserved} for {written}"
    );
    assert!(reserved < written + (64 << 10), "{reserved} for {written}");
    drop(s);
    // The reserved zeros after the last record are not records.
    let (_, r) = Storage::open(cfg, Arc::new(RealFs)).unwrap();
    expect_entries(&r, 1, 1000, 100);
    assert_eq!(r.truncated_tail, None);
}

#[test]
fn real_fs_torn_tail_is_cut_and_preallocation_restored() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StorageConfig::new(dir.path());
    cfg.segment_bytes = 64 << 10;
    let (mut s, _) = Storage::open(cfg.clone(), Arc::new(RealFs)).unwrap();
    append_each(&mut s, 1, 10, 100);
    drop(s);
    // Half of a record, as if the machine died mid-write.
    let seg = cfg.log_dir.join(wal::segment_name(1));
    let end = (wal::HEADER_LEN + 10 * (wal::FRAME_HEADER_LEN + 100)) as u64;
    let mut half = Vec::new();
    wal::encode_record(&mut half, 11, &[3u8; 100]);
    half.truncate(60);
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
        f.write_all_at(&half, end).unwrap();
    }
    let (mut s, r) = Storage::open(cfg.clone(), Arc::new(RealFs)).unwrap();
    assert_eq!(r.truncated_tail, Some((seg.clone(), end)));
    expect_entries(&r, 1, 10, 100);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), 64 << 10);
    append_each(&mut s, 11, 12, 100);
    drop(s);
    let (_, r) = Storage::open(cfg, Arc::new(RealFs)).unwrap();
    assert_eq!(r.truncated_tail, None);
    expect_entries(&r, 1, 12, 100);
}

#[test]
fn purge_keeps_k_snapshots_and_deletes_covered_segments() {
    let fs = FaultFs::new();
    let cfg = config(300, true, 2);
    let (mut s, _) = open(&fs, &cfg).unwrap();
    // 4 records of 57 bytes per segment: segments start at 1, 5, 9, ...
    append_each(&mut s, 1, 40, 40);
    assert_eq!(s.stats().log_segments, 10);
    s.write_snapshot(10, &snap_bytes(10)).unwrap();
    s.write_snapshot(20, &snap_bytes(20)).unwrap();
    s.write_snapshot(30, &snap_bytes(30)).unwrap();
    let stats = s.stats();
    assert_eq!(stats.snapshots, 2);
    assert_eq!(stats.snapshot_index, 30);
    // The oldest kept snapshot is 20: segments holding nothing above 20
    // (up to 17..=20) go, the rest stay.
    let names = fs.file_names(&log_dir());
    let segs: Vec<_> = names
        .iter()
        .filter_map(|n| wal::parse_segment_name(n))
        .collect();
    assert_eq!(segs, vec![21, 25, 29, 33, 37]);
    let snaps = fs.file_names(Path::new("/data/snapshot"));
    assert_eq!(
        snaps.iter().filter(|n| n.ends_with(".snap")).count(),
        2,
        "{snaps:?}"
    );
    assert_eq!(stats.log_segments, 5);
    assert_eq!(stats.log_bytes, 5 * 300);
    // The active segment is never deleted, even when a snapshot covers it.
    s.write_snapshot(45, &snap_bytes(45)).unwrap();
    s.write_snapshot(46, &snap_bytes(46)).unwrap();
    assert_eq!(s.stats().log_segments, 1);
    drop(s);
    fs.crash();
    let (mut s, r) = open(&fs, &cfg).unwrap();
    assert_eq!(snapshot_of(&r), Some((46, snap_bytes(46))));
    assert!(r.entries.is_empty());
    assert_eq!(s.last_index(), 46);
    // The log continues after a snapshot that is ahead of it.
    append_each(&mut s, 47, 50, 40);
    drop(s);
    let (_, r) = open(&fs, &cfg).unwrap();
    expect_entries(&r, 47, 50, 40);
}

#[test]
fn segments_roll_at_the_size_limit() {
    let fs = FaultFs::new();
    let cfg = config(300, true, 3);
    let (mut s, _) = open(&fs, &cfg).unwrap();
    append_each(&mut s, 1, 4, 40);
    assert_eq!(s.stats().log_segments, 1);
    append_each(&mut s, 5, 5, 40);
    assert_eq!(s.stats().log_segments, 2);
    assert_eq!(
        fs.file_names(&log_dir()),
        vec!["LOCK", &wal::segment_name(1), &wal::segment_name(5)]
    );
    // A batch bigger than a segment gets a segment of its own.
    let big = vec![9u8; 1000];
    s.append(&[(6, &big), (7, &big)]).unwrap();
    append_each(&mut s, 8, 8, 40);
    assert_eq!(s.stats().log_segments, 4);
    drop(s);
    fs.crash();
    let (_, r) = open(&fs, &cfg).unwrap();
    assert_eq!(r.entries.len(), 8);
    assert_eq!(r.entries[5].1, big);
}

#[test]
fn interrupted_roll_and_snapshot_leave_no_debris() {
    let fs = FaultFs::new();
    let cfg = config(300, true, 3);
    let (mut s, _) = open(&fs, &cfg).unwrap();
    append_each(&mut s, 1, 4, 40);
    // The power goes off in the fsync of the new segment's temp file.
    fs.cut_power_after(0);
    assert!(s.append(&[(5, &payload(5, 0, 40))]).is_err());
    drop(s);
    fs.crash_with(|_, n| n);
    let (mut s, r) = open(&fs, &cfg).unwrap();
    expect_entries(&r, 1, 4, 40);
    s.write_snapshot(4, &snap_bytes(4)).unwrap();
    fs.cut_power_after(0);
    assert!(s.write_snapshot(4, &snap_bytes(4)).is_err());
    drop(s);
    fs.crash_with(|_, n| n);
    let (_, r) = open(&fs, &cfg).unwrap();
    assert_eq!(snapshot_of(&r), Some((4, snap_bytes(4))));
    let all = [
        fs.file_names(&log_dir()),
        fs.file_names(Path::new("/data/snapshot")),
    ]
    .concat();
    assert!(all.iter().all(|n| !n.ends_with(".tmp")), "{all:?}");
}

#[test]
fn config_is_checked() {
    let fs = FaultFs::new();
    assert!(matches!(
        open(&fs, &config(10, true, 3)),
        Err(StorageError::Config(_))
    ));
    assert!(matches!(
        open(&fs, &config(4096, true, 0)),
        Err(StorageError::Config(_))
    ));
}

// ---------------------------------------------------------------------------
// The crash property.

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<usize>),
    /// A snapshot `back` records behind the last index (never behind the
    /// newest snapshot), or `ahead` records in front of it when non-zero,
    /// as when a snapshot is installed from a peer.
    Snapshot {
        back: u64,
        ahead: u64,
    },
    /// The power goes off after `syncs` more syncs; then a crash keeps
    /// `keep`/100 of every unsynced tail, and the restart itself may lose
    /// power after `reopen_syncs` syncs.
    PowerCut {
        syncs: u32,
        keep: u8,
        reopen_syncs: Option<u32>,
    },
    Crash,
    DiskFull(u64),
    SpaceBack,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec(0usize..120, 1..6).prop_map(Op::Append),
        2 => (0u64..6, prop_oneof![8 => Just(0u64), 1 => 1u64..4])
            .prop_map(|(back, ahead)| Op::Snapshot { back, ahead }),
        2 => (0u32..4, 0u8..=100, prop::option::weighted(0.2, 0u32..3))
            .prop_map(|(syncs, keep, reopen_syncs)| Op::PowerCut { syncs, keep, reopen_syncs }),
        1 => Just(Op::Crash),
        1 => (0u64..400).prop_map(Op::DiskFull),
        1 => Just(Op::SpaceBack),
    ]
}

/// What the caller was told, and what may legitimately show up.
#[derive(Debug, Default)]
struct Model {
    /// Acknowledged records (and records recovered after a crash).
    log: BTreeMap<u64, Vec<u8>>,
    last: u64,
    snapshot: u64,
    /// The batch that was in flight when the power went off: it may or may
    /// not be there after the crash, as a contiguous suffix.
    in_doubt: BTreeMap<u64, Vec<u8>>,
    /// A snapshot that was being written when the power went off.
    snapshot_in_doubt: Option<u64>,
    attempt: u64,
}

impl Model {
    /// Checks a recovery against the model and adopts what it found.
    fn check(&mut self, r: &Recovered, s: &Storage) -> Result<(), TestCaseError> {
        let base = r.snapshot.as_ref().map_or(0, |s| s.index);
        prop_assert!(
            base >= self.snapshot,
            "snapshot {base} is older than the acked {}",
            self.snapshot
        );
        if let Some((i, bytes)) = &snapshot_of(r) {
            prop_assert!(
                *i == self.snapshot || Some(*i) == self.snapshot_in_doubt,
                "snapshot {i} came from nowhere"
            );
            prop_assert_eq!(bytes, &snap_bytes(*i));
        }
        for (expected, (i, p)) in (base + 1..).zip(&r.entries) {
            prop_assert_eq!(*i, expected, "entries are contiguous after the snapshot");
            if *i <= self.last {
                prop_assert_eq!(
                    Some(p),
                    self.log.get(i),
                    "acknowledged record {} changed",
                    i
                );
            } else {
                prop_assert_eq!(
                    Some(p),
                    self.in_doubt.get(i),
                    "record {} was never written",
                    i
                );
            }
        }
        let last = r.entries.last().map_or(base, |(i, _)| *i);
        prop_assert!(
            last >= self.last,
            "acknowledged records up to {} lost; recovered up to {last}",
            self.last
        );
        prop_assert_eq!(s.last_index(), last);
        prop_assert!(r.corrupt_snapshots.is_empty());
        for (i, p) in &r.entries {
            self.log.insert(*i, p.clone());
        }
        self.last = last;
        self.snapshot = base;
        self.in_doubt.clear();
        self.snapshot_in_doubt = None;
        Ok(())
    }
}

fn restart(
    fs: &FaultFs,
    cfg: &StorageConfig,
    keep: u8,
    reopen_syncs: Option<u32>,
    model: &mut Model,
) -> Result<Storage, TestCaseError> {
    fs.crash_with(|_, n| n * keep as usize / 100);
    if let Some(syncs) = reopen_syncs {
        fs.cut_power_after(syncs);
        match open(fs, cfg) {
            Ok((s, r)) => {
                // Recovery needed fewer syncs than that.
                fs.cut_power_after(u32::MAX);
                model.check(&r, &s)?;
                drop(s);
            }
            Err(e) => prop_assert!(fs.is_dead(), "recovery failed: {e}"),
        }
        fs.crash_with(|_, n| n * keep as usize / 100);
    }
    let (s, r) = open(fs, cfg).map_err(|e| TestCaseError::fail(format!("recovery failed: {e}")))?;
    model.check(&r, &s)?;
    Ok(s)
}

fn run(cfg: StorageConfig, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let fs = FaultFs::new();
    let mut model = Model::default();
    let (mut s, r) = open(&fs, &cfg).map_err(|e| TestCaseError::fail(e.to_string()))?;
    model.check(&r, &s)?;
    let mut pending_keep = None;
    for op in ops {
        match op {
            Op::Append(sizes) => {
                model.attempt += 1;
                let batch: Vec<(u64, Vec<u8>)> = sizes
                    .iter()
                    .enumerate()
                    .map(|(k, len)| {
                        let i = model.last + 1 + k as u64;
                        (i, payload(i, model.attempt, *len))
                    })
                    .collect();
                let refs: Vec<(u64, &[u8])> =
                    batch.iter().map(|(i, p)| (*i, p.as_slice())).collect();
                match s.append(&refs) {
                    Ok(()) => {
                        model.last = batch.last().map_or(model.last, |(i, _)| *i);
                        model.log.extend(batch);
                    }
                    Err(e) if fs.is_dead() => {
                        let _ = e;
                        model.in_doubt.extend(batch);
                    }
                    Err(e) => prop_assert!(e.is_disk_full(), "unexpected error {e}"),
                }
            }
            Op::Snapshot { back, ahead } => {
                let index = if ahead > 0 {
                    model.last + ahead
                } else {
                    model.last.saturating_sub(back).max(model.snapshot)
                };
                match s.write_snapshot(index, &snap_bytes(index)) {
                    Ok(()) => {
                        model.snapshot = index;
                        model.last = model.last.max(index);
                        prop_assert!(s.stats().snapshots <= cfg.keep_snapshots);
                    }
                    Err(_) if fs.is_dead() => model.snapshot_in_doubt = Some(index),
                    Err(e) => prop_assert!(e.is_disk_full(), "unexpected error {e}"),
                }
            }
            Op::PowerCut {
                syncs,
                keep,
                reopen_syncs,
            } => {
                fs.cut_power_after(syncs);
                pending_keep = Some((keep, reopen_syncs));
            }
            Op::Crash => {
                drop(s);
                let (keep, reopen) = pending_keep.take().unwrap_or((0, None));
                s = restart(&fs, &cfg, keep, reopen, &mut model)?;
            }
            Op::DiskFull(slack) => fs.set_capacity(Some(fs.used() + slack)),
            Op::SpaceBack => fs.set_capacity(None),
        }
        prop_assert_eq!(s.last_index(), model.last);
        if fs.is_dead() {
            drop(s);
            let (keep, reopen) = pending_keep.take().unwrap_or((0, None));
            s = restart(&fs, &cfg, keep, reopen, &mut model)?;
        }
    }
    drop(s);
    restart(&fs, &cfg, 0, None, &mut model)?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// After any crash the recovered snapshot and entries are exactly the
    /// acknowledged history, plus at most the batch in flight as a suffix.
    #[test]
    fn recovery_returns_exactly_the_durable_history(
        segment_bytes in 256u64..1200,
        preallocate in any::<bool>(),
        keep_snapshots in 1usize..4,
        ops in prop::collection::vec(op(), 1..60),
    ) {
        run(config(segment_bytes, preallocate, keep_snapshots), ops)?;
    }
}

/// Reads a reader's whole payload.
fn read_payload(reader: &SnapshotReader) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; reader.payload_len() as usize];
    reader.read_payload_at(0, &mut buf)?;
    Ok(buf)
}

/// The file a snapshot was written to, and the one recovery chose, stay
/// readable through their readers after the purge removed their names.
fn readers_outlive_the_purge(fs: Arc<dyn FileSystem>, dir: &Path) {
    let cfg = StorageConfig {
        keep_snapshots: 1,
        ..StorageConfig::new(dir)
    };
    let (mut s, _) = Storage::open(cfg.clone(), fs.clone()).unwrap();
    let written = s.snapshot_writer().write(5, &[b"sta", b"te@5"]).unwrap();
    let at_5 = written.reader();
    s.add_snapshot(written).unwrap();
    assert_eq!(read_payload(&at_5).unwrap(), b"state@5");
    let mut part = [0u8; 2];
    at_5.read_payload_at(3, &mut part).unwrap();
    assert_eq!(&part, b"te");
    assert!(
        at_5.read_payload_at(6, &mut part).is_err(),
        "past the payload's end"
    );
    drop(s);
    let (mut s, r) = Storage::open(cfg, fs.clone()).unwrap();
    let recovered = r.snapshot.expect("the snapshot at 5").file;
    assert_eq!(recovered.index(), 5);
    assert_eq!(read_payload(&recovered).unwrap(), b"state@5");
    s.write_snapshot(9, b"state@9").unwrap();
    let names = fs.list(&cfg_snapshot_dir(dir)).unwrap();
    assert!(
        !names.iter().any(|e| e.name == snapshot::snapshot_name(5)),
        "purged: {names:?}"
    );
    assert_eq!(read_payload(&at_5).unwrap(), b"state@5");
    assert_eq!(read_payload(&recovered).unwrap(), b"state@5");
}

fn cfg_snapshot_dir(dir: &Path) -> PathBuf {
    StorageConfig::new(dir).snapshot_dir
}

#[test]
fn snapshot_readers_outlive_the_purge_in_memory() {
    readers_outlive_the_purge(Arc::new(FaultFs::new()), Path::new("/data"));
}

#[test]
fn snapshot_readers_outlive_the_purge_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    readers_outlive_the_purge(Arc::new(RealFs), dir.path());
}

/// A snapshot written a piece at a time is relied on only once finished:
/// a crash before leaves the previous snapshot (and no leftover file), an
/// abandoned one is removed at once, and a finished one recovers with its
/// pieces in order, its payload checked.
#[test]
fn a_snapshot_written_in_pieces_counts_only_once_finished() {
    let fs = FaultFs::new();
    let cfg = config(4096, false, 2);
    let (mut s, _) = open(&fs, &cfg).unwrap();
    s.write_snapshot(4, b"state@4").unwrap();
    let mut partial = s.snapshot_writer().begin().unwrap();
    partial.append(b"state").unwrap();
    partial.append(b"@9").unwrap();
    assert_eq!(partial.len(), 7);
    let snapshots = Path::new("/data/snapshot");
    assert!(
        fs.file_names(snapshots).iter().any(|n| n.ends_with(".tmp")),
        "written under a temporary name"
    );
    drop(s);
    fs.crash_with(|_, n| n);
    let (mut s, r) = open(&fs, &cfg).unwrap();
    assert_eq!(snapshot_of(&r), Some((4, b"state@4".to_vec())));
    assert!(
        !fs.file_names(snapshots).iter().any(|n| n.ends_with(".tmp")),
        "the unfinished file was removed at recovery"
    );
    drop(partial);

    let mut abandoned = s.snapshot_writer().begin().unwrap();
    abandoned.append(b"moot").unwrap();
    drop(abandoned);
    assert!(
        !fs.file_names(snapshots).iter().any(|n| n.ends_with(".tmp")),
        "an abandoned file is removed"
    );

    let mut partial = s.snapshot_writer().begin().unwrap();
    let pieces: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 1000 + usize::from(i)]).collect();
    for piece in &pieces {
        partial.append(piece).unwrap();
    }
    s.add_snapshot(partial.finish(9).unwrap()).unwrap();
    drop(s);
    fs.crash();
    let (_, r) = open(&fs, &cfg).unwrap();
    assert_eq!(snapshot_of(&r), Some((9, pieces.concat())));
    // A damaged piece is found by the check at recovery (and, with no log
    // to rebuild it from the older snapshot, refused by name).
    let path = snapshots.join(snapshot::snapshot_name(9));
    fs.flip_bit(&path, snapshot::HEADER_LEN as u64 + 3_500, 2)
        .unwrap();
    match open(&fs, &cfg) {
        Err(StorageError::CorruptSnapshot {
            path: named,
            reason,
        }) => {
            assert_eq!(named, path);
            assert!(reason.contains("checksum"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn records_read_back_by_index_across_segments_and_a_restart() {
    let fs = FaultFs::new();
    // Small segments: the records span several.
    let cfg = config(256, true, 3);
    let (mut s, _) = open(&fs, &cfg).unwrap();
    append_each(&mut s, 1, 30, 40);
    let batch: Vec<(u64, Vec<u8>)> = (31..=34).map(|i| (i, payload(i, 0, 40))).collect();
    let refs: Vec<(u64, &[u8])> = batch.iter().map(|(i, p)| (*i, p.as_slice())).collect();
    s.append(&refs).unwrap();
    assert!(fs.file_names(&log_dir()).len() > 2, "several segments");
    for i in 1..=34 {
        assert_eq!(s.read_record(i).unwrap(), Some(payload(i, 0, 40)), "{i}");
    }
    assert_eq!(s.read_record(0).unwrap(), None);
    assert_eq!(s.read_record(35).unwrap(), None);
    drop(s);
    fs.crash();
    let (mut s, _) = open(&fs, &cfg).unwrap();
    append_each(&mut s, 35, 36, 40);
    for i in 1..=36 {
        assert_eq!(s.read_record(i).unwrap(), Some(payload(i, 0, 40)), "{i}");
    }
    // A damaged record is refused, not returned.
    let first_segment = segment_path(1);
    fs.flip_bit(&first_segment, wal::HEADER_LEN as u64 + 20, 3)
        .unwrap();
    assert!(s.read_record(1).is_err());
}
