//! WAL throughput next to the raw fdatasync rate of the same directory.
//!
//! `cargo bench -p synod-node --bench wal` (optionally `-- <seconds per run>`;
//! `SYNOD_BENCH_DIR` picks the directory, by default cargo's target tmp dir,
//! which must be on the real disk, not tmpfs, for the numbers to mean
//! anything).
//!
//! W concurrent writers that each wait for durability are modelled as
//! group-commit batches of W records: each fdatasync covers up to W records,
//! which is what the driver's batching gives under that load. A second table
//! runs W real writer threads against one storage thread that batches
//! whatever is pending. Each row reports the raw fdatasync rate of the same
//! directory measured alongside it (interleaved slices for the batch model,
//! before and after for the threads), because on a shared disk that rate
//! moves by several times within a minute.

#![allow(
    clippy::print_stdout,
    reason = "a benchmark program reports by printing"
)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::Context;
use synod_node::storage::{FileSystem, RealFs, Storage, StorageConfig, StorageFile};

fn fresh_dir(root: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let dir = root.join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// 100-byte appends + fdatasync to a preallocated file in the same
/// directory: the disk's own rate, with no WAL in the way.
struct RawProbe {
    file: Box<dyn StorageFile>,
    offset: u64,
    syncs: u64,
    time: Duration,
}

impl RawProbe {
    fn new(root: &Path) -> anyhow::Result<RawProbe> {
        let dir = fresh_dir(root, "raw")?;
        let mut file = RealFs.create(&dir.join("raw"))?;
        file.allocate(256 << 20)?;
        file.sync_all()?;
        Ok(RawProbe {
            file,
            offset: 0,
            syncs: 0,
            time: Duration::ZERO,
        })
    }

    fn run_for(&mut self, secs: Duration) -> anyhow::Result<()> {
        let buf = [0x5au8; 100];
        let started = Instant::now();
        while started.elapsed() < secs {
            // Wrap around rather than grow past the preallocation.
            self.offset = (self.offset + 100) % (256 << 20);
            self.file.write_all_at(self.offset, &buf)?;
            self.file.sync_data()?;
            self.syncs += 1;
        }
        self.time += started.elapsed();
        Ok(())
    }

    fn rate(&self) -> f64 {
        self.syncs as f64 / self.time.as_secs_f64()
    }
}

struct Run {
    records: u64,
    batches: u64,
    elapsed: f64,
    /// The raw fdatasync rate measured alongside.
    raw: f64,
}

/// Slices of WAL appends and of raw fdatasyncs alternate, so both see the
/// same disk: on a shared virtual disk the rate moves by several times
/// within a minute, with whatever else writes to the filesystem.
const SLICE: Duration = Duration::from_millis(250);

fn wal_run(root: &Path, record: usize, writers: usize, secs: Duration) -> anyhow::Result<Run> {
    let mut probe = RawProbe::new(root)?;
    let dir = fresh_dir(root, &format!("wal-{record}-{writers}"))?;
    let config = StorageConfig::new(&dir);
    let (mut storage, _) = Storage::open(config, Arc::new(RealFs))?;
    let payload = vec![0xa5u8; record];
    let mut next = 1u64;
    let mut batches = 0u64;
    let mut wal_time = Duration::ZERO;
    while wal_time < secs {
        probe.run_for(SLICE / 2)?;
        let started = Instant::now();
        while started.elapsed() < SLICE {
            let batch: Vec<(u64, &[u8])> = (next..next + writers as u64)
                .map(|i| (i, payload.as_slice()))
                .collect();
            storage.append(&batch)?;
            next += writers as u64;
            batches += 1;
        }
        wal_time += started.elapsed();
    }
    drop(storage);
    std::fs::remove_dir_all(&dir)?;
    Ok(Run {
        records: next - 1,
        batches,
        elapsed: wal_time.as_secs_f64(),
        raw: probe.rate(),
    })
}

/// Real threads: `writers` threads each submit one record and wait until it
/// is durable; one storage thread takes everything pending as a batch, as
/// the driver does. Checks that the batch model above holds with real
/// queueing and wake-ups.
fn threaded_run(root: &Path, record: usize, writers: usize, secs: Duration) -> anyhow::Result<Run> {
    let mut probe = RawProbe::new(root)?;
    probe.run_for(secs / 4)?;
    let dir = fresh_dir(root, &format!("threaded-{record}-{writers}"))?;
    let (mut storage, _) = Storage::open(StorageConfig::new(&dir), Arc::new(RealFs))?;
    let (submit, inbox) = mpsc::channel::<mpsc::SyncSender<()>>();
    let started = Instant::now();
    let deadline = started + secs;
    let committer = std::thread::spawn(move || -> anyhow::Result<(u64, u64)> {
        let payload = vec![0xa5u8; record];
        let mut next = 1u64;
        let mut batches = 0u64;
        while let Ok(first) = inbox.recv() {
            let mut waiting = vec![first];
            waiting.extend(inbox.try_iter());
            let n = waiting.len() as u64;
            let batch: Vec<(u64, &[u8])> =
                (next..next + n).map(|i| (i, payload.as_slice())).collect();
            storage.append(&batch)?;
            next += n;
            batches += 1;
            for w in waiting {
                // A writer that stopped waiting is fine.
                let _ = w.send(());
            }
        }
        Ok((next - 1, batches))
    });
    let threads: Vec<_> = (0..writers)
        .map(|_| {
            let submit = submit.clone();
            std::thread::spawn(move || {
                while Instant::now() < deadline {
                    let (done, wait) = mpsc::sync_channel(1);
                    if submit.send(done).is_err() || wait.recv().is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
    drop(submit);
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("a writer thread panicked"))?;
    }
    let (records, batches) = committer
        .join()
        .map_err(|_| anyhow::anyhow!("the storage thread panicked"))??;
    let elapsed = started.elapsed().as_secs_f64();
    std::fs::remove_dir_all(&dir)?;
    probe.run_for(secs / 4)?;
    let raw = probe.rate();
    Ok(Run {
        records,
        batches,
        elapsed,
        raw,
    })
}

/// Time for `Storage::open` over `records` 100-byte records and a snapshot
/// of `snapshot_bytes` (storage layer only: reading and checking, no state
/// machine).
fn recovery(root: &Path, records: u64, snapshot_bytes: usize) -> anyhow::Result<(f64, usize)> {
    let dir = fresh_dir(root, "recovery")?;
    let config = StorageConfig::new(&dir);
    {
        let (mut storage, _) = Storage::open(config.clone(), Arc::new(RealFs))?;
        storage.write_snapshot(0, &vec![7u8; snapshot_bytes])?;
        let payload = [0x11u8; 100];
        let mut next = 1;
        while next <= records {
            let end = (next + 999).min(records);
            let batch: Vec<(u64, &[u8])> = (next..=end).map(|i| (i, &payload[..])).collect();
            storage.append(&batch)?;
            next = end + 1;
        }
    }
    let started = Instant::now();
    let (_storage, recovered) = Storage::open(config, Arc::new(RealFs))?;
    let elapsed = started.elapsed().as_secs_f64();
    let entries = recovered.entries.len();
    drop(_storage);
    std::fs::remove_dir_all(&dir)?;
    Ok((elapsed, entries))
}

#[derive(Clone, Copy)]
enum Mode {
    /// Batches of W records from one thread.
    Batches,
    /// W writer threads and a storage thread.
    Threads,
}

/// Runs and prints one case.
fn row(
    root: &Path,
    mode: Mode,
    record: usize,
    writers: usize,
    secs: Duration,
) -> anyhow::Result<()> {
    let run = match mode {
        Mode::Batches => wal_run(root, record, writers, secs)?,
        Mode::Threads => threaded_run(root, record, writers, secs)?,
    };
    let per_sec = run.records as f64 / run.elapsed;
    let fsyncs = run.batches as f64 / run.elapsed;
    println!(
        "{:>7} {:>7} {:>12.0} {:>9.2} {:>10.0} {:>13.1} {:>11.0} {:>9.2}x",
        record,
        writers,
        per_sec,
        per_sec * record as f64 / 1e6,
        fsyncs,
        run.records as f64 / run.batches as f64,
        run.raw,
        fsyncs / run.raw,
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; a bare number is the seconds per run.
    let secs = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<f64>().ok())
        .unwrap_or(3.0);
    let secs = Duration::from_secs_f64(secs);
    let root = std::env::var_os("SYNOD_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("wal-bench"));
    std::fs::create_dir_all(&root)?;
    println!("directory: {}", root.display());
    let header = || {
        println!(
            "{:>7} {:>7} {:>12} {:>9} {:>10} {:>13} {:>11} {:>10}",
            "record",
            "writers",
            "records/s",
            "MB/s",
            "fsyncs/s",
            "records/fsync",
            "raw fsync/s",
            "vs raw"
        )
    };
    println!();
    println!("group-commit batches of W records (W writers each waiting for durability):");
    header();
    for record in [100usize, 4096] {
        for writers in [1usize, 16, 64] {
            row(&root, Mode::Batches, record, writers, secs)?;
        }
    }
    println!();
    println!(
        "beyond the brief: larger batches (where the WAL stops scaling once fdatasync is amortised):"
    );
    header();
    for writers in [256usize, 1024] {
        row(&root, Mode::Batches, 100, writers, secs)?;
    }
    println!();
    println!("real threads: W writer threads, one storage thread batching whatever is pending:");
    header();
    for record in [100usize, 4096] {
        for writers in [1usize, 16, 64] {
            row(&root, Mode::Threads, record, writers, secs)?;
        }
    }
    println!();
    let (elapsed, entries) = recovery(&root, 100_000, 64 << 20)?;
    println!(
        "recovery (storage layer): open over a 64 MiB snapshot + {entries} log records of 100 B \
         in {:.0} ms",
        elapsed * 1e3
    );
    Ok(())
}
