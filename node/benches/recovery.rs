//! Restart time of a durable node: a snapshot of N znodes (default 1M) plus
//! M log records after it (default 100k), recovered the way `synod serve`
//! does it (open and check the files, decode the snapshot, replay the log).
//! Also prints how long encoding that snapshot takes in all, and the longest
//! single pause it puts on the driver (the start, or one slice).
//!
//! `cargo bench -p synod-node --bench recovery [-- ZNODES RECORDS]`;
//! `SYNOD_BENCH_DIR` picks the directory (default: cargo's target tmp dir).

#![allow(
    clippy::print_stdout,
    reason = "a benchmark program reports by printing"
)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use synod_core::acl::{Acl, Identity};
use synod_core::codec::Proposal;
use synod_core::paxos::{Ballot, Entry, Membership, Value, Write};
use synod_core::state::{SnapshotBuffer, StateConfig, StateMachine};
use synod_core::txn::{CreateMode, Txn, WriteOp};
use synod_node::storage::durable::DurableLog;
use synod_node::storage::record::{LogRecord, snapshot_file_prefix};
use synod_node::storage::{RealFs, Storage, StorageConfig};

/// The allocator the `synod` binary uses, so the restart measured is the
/// binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let znodes: usize = args
        .first()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let records: usize = args
        .get(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let root = std::env::var_os("SYNOD_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    let dir = root.join("synod-recovery-bench");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).context("bench dir")?;

    let identity = Identity::anonymous();
    let mut machine = StateMachine::new(StateConfig::default());
    let mut zxid = 0;
    let mut apply = |machine: &mut StateMachine, op: WriteOp| {
        zxid += 1;
        let txn = Txn::Write {
            session: 0,
            identity: identity.clone(),
            op,
        };
        machine.apply(zxid, zxid, &txn);
        // What a follower's log holds: one accepted slot per record, with
        // the commit index known then.
        let slot = zxid as u64;
        let value = Proposal {
            origin: 1,
            request: slot,
            time: zxid,
            txn,
        }
        .encode();
        LogRecord {
            commit: slot,
            write: Write {
                token: slot,
                promised: None,
                entries: vec![(
                    slot,
                    Entry {
                        ballot: Ballot::new(1, 1),
                        value: Value::Data(value),
                    },
                )],
            },
        }
    };
    // 1000 parents of up to 1000 children each, 100-byte values.
    for p in 0..znodes.div_ceil(1000) {
        apply(&mut machine, create(format!("/p{p:04}")));
    }
    for i in 0..znodes {
        apply(&mut machine, create(format!("/p{:04}/n{i:07}", i / 1000)));
    }
    // The driver's view of a snapshot: a start that walks the paths, then
    // slices of 5,000 znodes between jobs, each megabyte encoded going to
    // the file (on the snapshot thread in the node, timed apart here). The
    // longest pause is what a request can wait.
    let config = StorageConfig::new(&dir);
    let (mut storage, _) =
        Storage::open(config.clone(), Arc::new(RealFs)).context("open storage")?;
    let snapshot_index = machine.applied() as u64;
    let mut write = std::time::Duration::ZERO;
    let write_started = Instant::now();
    let mut file = storage.snapshot_writer().begin()?;
    file.append(&snapshot_file_prefix(
        snapshot_index,
        &Membership::new(vec![1], vec![]),
    ))?;
    write += write_started.elapsed();
    let encode_started = Instant::now();
    let mut pending = machine.begin_snapshot(SnapshotBuffer::Slices);
    let begin = encode_started.elapsed();
    let mut longest_slice = std::time::Duration::ZERO;
    loop {
        let slice = Instant::now();
        let done = machine.snapshot_step(&mut pending, 5_000).is_some();
        longest_slice = longest_slice.max(slice.elapsed());
        if done || pending.pending_bytes() >= 1 << 20 {
            let write_started = Instant::now();
            file.append(&pending.take_encoded())?;
            file.append(&std::mem::take(&mut pending.bytes))?;
            write += write_started.elapsed();
        }
        if done {
            break;
        }
    }
    let encode = encode_started.elapsed().saturating_sub(write);
    let snapshot_len = pending.encoded_bytes();
    // The log before the snapshot is not needed for recovery; start it at
    // the snapshot index as a node that purged would.
    let write_started = Instant::now();
    storage.add_snapshot(file.finish(snapshot_index)?)?;
    write += write_started.elapsed();
    let mut batch = Vec::new();
    for r in 0..records {
        let entry = apply(
            &mut machine,
            WriteOp::SetData {
                path: format!("/p{:04}/n{:07}", (r % znodes) / 1000, r % znodes),
                data: Some(vec![1; 100]),
                version: -1,
            },
        );
        batch.push((entry.commit, entry.encode()));
        if batch.len() == 1000 || r + 1 == records {
            let refs: Vec<(u64, &[u8])> = batch.iter().map(|(i, b)| (*i, b.as_slice())).collect();
            storage.append(&refs)?;
            batch.clear();
        }
    }
    drop(storage);
    let expected = machine.tree().len();
    drop(machine);

    let started = Instant::now();
    let (_log, recovered) =
        DurableLog::recover(config, StateConfig::default()).context("recover")?;
    let elapsed = started.elapsed();
    let timings = recovered.timings;
    let recovered = recovered.machine;
    anyhow::ensure!(
        recovered.tree().len() == expected,
        "recovered {} znodes, expected {expected}",
        recovered.tree().len()
    );
    println!(
        "recovery: znodes={} snapshot_bytes={} log_records={records} restart={:.2}s (read {:.0}ms, snapshot decode {:.0}ms, log {:.0}ms) snapshot_encode={:.0}ms (longest pause: begin {:.0}ms, slice {:.1}ms) snapshot_write={:.0}ms",
        recovered.tree().len(),
        snapshot_len,
        elapsed.as_secs_f64(),
        timings.read.as_secs_f64() * 1000.0,
        timings.snapshot.as_secs_f64() * 1000.0,
        timings.log.as_secs_f64() * 1000.0,
        encode.as_secs_f64() * 1000.0,
        begin.as_secs_f64() * 1000.0,
        longest_slice.as_secs_f64() * 1000.0,
        write.as_secs_f64() * 1000.0,
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn create(path: String) -> WriteOp {
    WriteOp::Create {
        path,
        data: Some(vec![0; 100]),
        acl: Acl::open(),
        mode: CreateMode::Persistent,
        ttl_ms: 0,
    }
}
