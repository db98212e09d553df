//! WAL throughput next to the raw fdatasync rate of the same directory.
//!
//! `cargo bench -p synod-node --bench wal` (optionally `-- <seconds per run>`;
//! `SYNOD_BENCH_DIR` picks the directory, by default cargo's target tmp dir,
//! which must be on the real disk, not tmpfs, for the numbers to mean
//! anything).
//!
//! W concurrent writers that each wait for durability are modelled as
//! group-commit batches of W records: each fdatasync covers up to W records,
//! which is what the driver's batching gives under that load.

#![allow(
    clippy::print_stdout,
    reason = "a benchmark program reports by printing"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use synod_node::storage::{FileSystem, RealFs, Storage, StorageConfig};

fn fresh_dir(root: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let dir = root.join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// fdatasyncs per second of 100-byte appends to a preallocated file.
fn raw_fdatasync_rate(root: &Path, secs: Duration) -> anyhow::Result<f64> {
    let dir = fresh_dir(root, "raw")?;
    let fs = RealFs;
    let mut file = fs.create(&dir.join("raw"))?;
    file.allocate(64 << 20)?;
    file.sync_all()?;
    let buf = [0x5au8; 100];
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < secs {
        file.write_all_at(n * 100, &buf)?;
        file.sync_data()?;
        n += 1;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

struct Run {
    records: u64,
    batches: u64,
    elapsed: f64,
}

fn wal_run(root: &Path, record: usize, writers: usize, secs: Duration) -> anyhow::Result<Run> {
    let dir = fresh_dir(root, &format!("wal-{record}-{writers}"))?;
    let config = StorageConfig::new(&dir);
    let (mut storage, _) = Storage::open(config, Arc::new(RealFs))?;
    let payload = vec![0xa5u8; record];
    let mut next = 1u64;
    let mut batches = 0u64;
    let started = Instant::now();
    while started.elapsed() < secs {
        let batch: Vec<(u64, &[u8])> = (next..next + writers as u64)
            .map(|i| (i, payload.as_slice()))
            .collect();
        storage.append(&batch)?;
        next += writers as u64;
        batches += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    drop(storage);
    std::fs::remove_dir_all(&dir)?;
    Ok(Run {
        records: next - 1,
        batches,
        elapsed,
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

    let raw = raw_fdatasync_rate(&root, secs)?;
    println!("raw fdatasync (100 B write + fdatasync, preallocated file): {raw:.0}/s");
    println!();
    println!(
        "{:>7} {:>7} {:>12} {:>9} {:>10} {:>13} {:>10}",
        "record", "writers", "records/s", "MB/s", "fsyncs/s", "records/fsync", "vs raw"
    );
    let mut rows = Vec::new();
    for record in [100usize, 4096] {
        for writers in [1usize, 16, 64] {
            rows.push((record, writers, false));
        }
    }
    // Beyond the brief: larger batches show where the WAL itself stops
    // scaling once fdatasync is amortised further.
    rows.push((100, 256, true));
    rows.push((100, 1024, true));
    for (record, writers, extra) in rows {
        let run = wal_run(&root, record, writers, secs)?;
        let per_sec = run.records as f64 / run.elapsed;
        let fsyncs = run.batches as f64 / run.elapsed;
        println!(
            "{:>7} {:>7} {:>12.0} {:>9.2} {:>10.0} {:>13.1} {:>9.2}x{}",
            record,
            writers,
            per_sec,
            per_sec * record as f64 / 1e6,
            fsyncs,
            run.records as f64 / run.batches as f64,
            fsyncs / raw,
            if extra {
                "  (batch larger than the brief's writers)"
            } else {
                ""
            }
        );
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
