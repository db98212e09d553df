//! Benchmarks of the znode tree, `synod_core::tree::DataTree`, in process and
//! single-threaded: no log, no network, no `StateMachine` around it.
//!
//! Throughput (criterion, printed as elements/s = operations/s), each on a
//! tree of 100,000 znodes `/bench/n0000000`..`/bench/n0099999` holding 100
//! bytes each, open ACL, anonymous identity:
//!
//! * `tree/setData`: `DataTree::apply(SetData)` with version -1 on the
//!   existing nodes in a fixed pseudo-random order. The tree does not grow.
//! * `tree/getData`: `DataTree::get_data` on the same nodes and order.
//! * `tree/create`: `DataTree::apply(Create)` of fresh persistent nodes
//!   `/bench/c<counter>` (100 bytes). Every create uses a name never used
//!   before. Creates run in chunks of 10,000; after each chunk the clock is
//!   stopped and the chunk is deleted again, so the tree stays between 100k
//!   and 110k znodes however many iterations criterion asks for.
//! * `tree/create-scattered`: the same, each new node named after an
//!   existing one picked at random (`/bench/n0031337-<counter>`), so that
//!   every insert lands somewhere else in `/bench`'s 100,000 children.
//! * `tree/delete`: the mirror image: a chunk of fresh nodes is created with
//!   the clock stopped, then deleted with the clock running.
//! * `tree/snapshot`: `DataTree::encode_snapshot` of a tree whose nodes were
//!   created in the shuffled order, as clients create them, so that the
//!   walk (by name) visits them in no order of their memory; printed per
//!   node encoded.
//!
//! Timed work includes what `apply` does for a real txn: path validation,
//! the ACL check, copying the data into the node, the `Trigger`s it reports
//! (cleared, i.e. freed, right after each op) and the outcome it returns.
//! Building the `WriteOp`s is not timed: in the server they arrive decoded
//! from the log.
//!
//! Memory (printed after the criterion groups when run by `cargo bench`, by
//! a fresh process of this program): live heap bytes per znode at 1,000,000
//! znodes, measured with a counting global allocator, minus each znode's
//! data bytes and its full path bytes.
//! See `docs/benchmarks.md`.
//!
//! Run: `cargo bench -p synod-core --bench tree`. SYNOD_BENCH_NODES=<n>
//! changes the 100,000; SYNOD_BENCH_SKIP_MEMORY=1 skips the memory report.

// The only unsafe code here is the `GlobalAlloc` impl below, which must be
// `unsafe impl` by definition. It forwards every call unchanged to `System`
// and only adds to a counter, so it upholds `GlobalAlloc`'s contract exactly
// as `System` does. The workspace denies unsafe code; this bench opts out for
// that one impl, which cannot be written without it.
#![allow(unsafe_code)]
// A bench program reports on stdout.
#![allow(clippy::print_stdout)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};
use synod_core::acl::{Acl, Identity};
use synod_core::codec::Encoder;
use synod_core::tree::{DataTree, TreeConfig, WriteCtx};
use synod_core::txn::{CreateMode, WriteOp};
use synod_core::watch::Trigger;

/// Counts live heap bytes (requested sizes, not the allocator's rounded-up
/// chunk sizes) while `COUNTING` is on; otherwise it costs one relaxed load
/// per call, so the timed benches are not slowed by an atomic add.
struct CountingAlloc;

static COUNTING: AtomicBool = AtomicBool::new(false);
/// Signed: memory allocated before counting started may be freed while it
/// runs. Only differences between two readings mean anything.
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() && COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() && COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; `ptr` came from `System` via this type.
        unsafe { System.dealloc(ptr, layout) };
        if COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds `realloc`'s contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() && COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Znodes below `/bench` for the throughput benches; SYNOD_BENCH_NODES
/// overrides it (e.g. 1000 for a tree that fits in cache).
fn nodes() -> usize {
    std::env::var("SYNOD_BENCH_NODES")
        .ok()
        .map(|v| v.parse().expect("SYNOD_BENCH_NODES is a number"))
        .unwrap_or(100_000)
}
const MEMORY_NODES: usize = 1_000_000;
const DATA_LEN: usize = 100;
const CHUNK: u64 = 10_000;

fn node_path(i: usize) -> String {
    format!("/bench/n{i:07}")
}

fn create_op(path: String, fill: u8) -> WriteOp {
    WriteOp::Create {
        path,
        data: Some(vec![fill; DATA_LEN]),
        acl: Acl::open(),
        mode: CreateMode::Persistent,
        ttl_ms: 0,
    }
}

/// Applies `op` at the next zxid and panics if it fails: a bench that
/// silently measured errors would be worthless.
fn apply(
    tree: &mut DataTree,
    zxid: &mut i64,
    identity: &Identity,
    op: &WriteOp,
    triggers: &mut Vec<Trigger>,
) {
    *zxid += 1;
    let ctx = WriteCtx {
        zxid: *zxid,
        time: *zxid,
        session: 0,
        identity,
    };
    let outcome = tree.apply(op, &ctx, triggers).expect("bench op applies");
    black_box(outcome);
    triggers.clear();
}

/// A tree holding `/bench` and `n` children with `DATA_LEN` bytes each, and
/// the zxid it was built up to.
fn build_tree(n: usize, identity: &Identity) -> (DataTree, i64) {
    build_tree_in(0..n, identity)
}

/// As [`build_tree`], the children created in the order `order` gives.
fn build_tree_in(order: impl IntoIterator<Item = usize>, identity: &Identity) -> (DataTree, i64) {
    let mut tree = DataTree::new(TreeConfig::default());
    let mut zxid = 0;
    let mut triggers = Vec::new();
    let root = create_op("/bench".to_owned(), 0);
    apply(&mut tree, &mut zxid, identity, &root, &mut triggers);
    for i in order {
        let op = create_op(node_path(i), i as u8);
        apply(&mut tree, &mut zxid, identity, &op, &mut triggers);
    }
    (tree, zxid)
}

/// 0..n in a fixed pseudo-random order (xorshift-driven Fisher-Yates), so
/// that successive ops touch unrelated nodes, as independent clients would.
fn shuffled(n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (1..n).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        order.swap(i, (state % (i as u64 + 1)) as usize);
    }
    order
}

fn bench_tree(c: &mut Criterion) {
    let identity = Identity::anonymous();
    let n = nodes();
    let order = shuffled(n);
    let mut group = c.benchmark_group("tree");
    group.throughput(Throughput::Elements(1));

    // Each bench builds its tree on first use, so that a filtered run
    // (`cargo bench ... -- getData`) builds only the tree it needs. The
    // position in `order` lives on across criterion's calls of the closure
    // (warm-up, then each sample), so that every sample moves on to other
    // nodes instead of revisiting the ones the previous sample warmed up.
    let mut state = None;
    group.bench_function("setData", |b| {
        let (tree, zxid, ops, next, triggers) = state.get_or_insert_with(|| {
            let (tree, zxid) = build_tree(n, &identity);
            let ops: Vec<WriteOp> = order
                .iter()
                .map(|&i| WriteOp::SetData {
                    path: node_path(i),
                    data: Some(vec![i as u8 ^ 0x5a; DATA_LEN]),
                    version: -1,
                })
                .collect();
            (tree, zxid, ops, 0, Vec::new())
        });
        b.iter(|| {
            apply(tree, zxid, &identity, &ops[*next], triggers);
            *next += 1;
            if *next == ops.len() {
                *next = 0;
            }
        })
    });
    drop(state);

    let mut state = None;
    group.bench_function("getData", |b| {
        let (tree, paths, next) = state.get_or_insert_with(|| {
            let (tree, _) = build_tree(n, &identity);
            let paths: Vec<String> = order.iter().map(|&i| node_path(i)).collect();
            (tree, paths, 0)
        });
        b.iter(|| {
            let got = tree
                .get_data(&paths[*next], &identity)
                .expect("node exists");
            black_box(got);
            *next += 1;
            if *next == paths.len() {
                *next = 0;
            }
        })
    });
    drop(state);

    // create and delete: chunks of fresh nodes, one phase timed and the
    // other not, so the tree returns to its size after every chunk.
    for (name, timed_phase, scattered) in [
        ("create", Phase::Create, false),
        ("create-scattered", Phase::Create, true),
        ("delete", Phase::Delete, false),
    ] {
        let mut state = None;
        let mut counter = 0u64;
        group.bench_function(name, |b| {
            let (tree, zxid) = state.get_or_insert_with(|| build_tree(n, &identity));
            let mut triggers = Vec::new();
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                let mut remaining = iters;
                while remaining > 0 {
                    let chunk = remaining.min(CHUNK);
                    remaining -= chunk;
                    let paths = (counter..counter + chunk).map(|i| {
                        if scattered {
                            // Right after an existing node picked at
                            // random: every insert searches the whole
                            // child list.
                            let next = (i as usize).wrapping_mul(7919) % n;
                            format!("{}-{i}", node_path(next))
                        } else {
                            format!("/bench/c{i:010}")
                        }
                    });
                    let creates: Vec<WriteOp> =
                        paths.clone().map(|p| create_op(p, counter as u8)).collect();
                    let deletes: Vec<WriteOp> = paths
                        .map(|path| WriteOp::Delete { path, version: -1 })
                        .collect();
                    counter += chunk;
                    for (phase, ops) in [(Phase::Create, &creates), (Phase::Delete, &deletes)] {
                        let start = Instant::now();
                        for op in ops {
                            apply(tree, zxid, &identity, op, &mut triggers);
                        }
                        if phase == timed_phase {
                            timed += start.elapsed();
                        }
                    }
                }
                timed
            })
        });
        if let Some((tree, _)) = state {
            assert_eq!(tree.len(), n + 5, "{name} left the tree as it found it");
        }
    }

    group.throughput(Throughput::Elements(n as u64));
    let mut state = None;
    group.bench_function("snapshot", |b| {
        let (tree, zxid, out) = state.get_or_insert_with(|| {
            let (tree, zxid) = build_tree_in(order.iter().copied(), &identity);
            (tree, zxid, Encoder::default())
        });
        b.iter(|| {
            out.buf.clear();
            tree.encode_snapshot(*zxid, out);
            black_box(out.buf.len());
        })
    });
    drop(state);

    group.finish();
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Create,
    Delete,
}

/// Live heap bytes of the tree per znode at `MEMORY_NODES` znodes, beyond
/// each znode's data bytes and full path bytes.
fn memory_report() {
    let identity = Identity::anonymous();
    COUNTING.store(true, Ordering::SeqCst);
    let rss_before = rss_bytes();
    let before = LIVE.load(Ordering::SeqCst);
    // Build exactly what `build_tree` does, with `/bench` first so that the
    // difference holds only the MEMORY_NODES children.
    let mut tree = DataTree::new(TreeConfig::default());
    let mut zxid = 0;
    let mut triggers = Vec::new();
    apply(
        &mut tree,
        &mut zxid,
        &identity,
        &create_op("/bench".to_owned(), 0),
        &mut triggers,
    );
    drop(triggers);
    let base = LIVE.load(Ordering::SeqCst);
    let (tree, data_bytes, path_bytes) = {
        let mut triggers = Vec::new();
        let mut data_bytes = 0usize;
        let mut path_bytes = 0usize;
        for i in 0..MEMORY_NODES {
            let path = node_path(i);
            path_bytes += path.len();
            data_bytes += DATA_LEN;
            let op = create_op(path, i as u8);
            apply(&mut tree, &mut zxid, &identity, &op, &mut triggers);
        }
        (tree, data_bytes, path_bytes)
    };
    let after = LIVE.load(Ordering::SeqCst);
    let rss_after = rss_bytes();
    COUNTING.store(false, Ordering::SeqCst);
    assert_eq!(tree.len(), MEMORY_NODES + 5);

    let grown = (after - base) as usize;
    let overhead = grown - data_bytes - path_bytes;
    let n = MEMORY_NODES as f64;
    println!(
        "memory: {MEMORY_NODES} znodes /bench/n0000000../bench/n{:07}, {DATA_LEN} data bytes each, one parent",
        MEMORY_NODES - 1
    );
    println!(
        "memory:   empty tree + /bench          {:>12} bytes",
        base - before
    );
    println!(
        "memory:   live heap growth             {grown:>12} bytes = {:>7.1} per znode",
        grown as f64 / n
    );
    println!(
        "memory:   - data bytes                 {data_bytes:>12} bytes = {:>7.1} per znode",
        data_bytes as f64 / n
    );
    println!(
        "memory:   - path bytes (full path)     {path_bytes:>12} bytes = {:>7.1} per znode",
        path_bytes as f64 / n
    );
    println!(
        "memory:   = overhead                   {overhead:>12} bytes = {:>7.1} per znode",
        overhead as f64 / n
    );
    if let (Some(a), Some(b)) = (rss_before, rss_after) {
        println!(
            "memory:   RSS growth (incl. malloc overhead, for reference) {:>7.1} bytes per znode",
            b.saturating_sub(a) as f64 / n
        );
    }
    drop(black_box(tree));
}

/// Resident set size from /proc (Linux), if readable.
fn rss_bytes() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    targets = bench_tree
}

/// The argument that makes this program print the memory report and exit.
const MEMORY_ONLY: &str = "--synod-memory-report";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    if has(MEMORY_ONLY) {
        memory_report();
        return;
    }
    benches();
    // The memory report runs in a fresh process of this program: building
    // and freeing a million znodes leaves the heap laid out so that trees
    // built afterwards are slower to walk, and memory the benches freed
    // would hide part of the RSS growth. `cargo bench` passes `--bench`;
    // `cargo test --benches` does not, and then only criterion's quick test
    // run happens. Profiling (`--profile-time`) and listing skip the report
    // too, as does setting SYNOD_BENCH_SKIP_MEMORY.
    if has("--bench")
        && !has("--profile-time")
        && !has("--list")
        && std::env::var_os("SYNOD_BENCH_SKIP_MEMORY").is_none()
    {
        let exe = std::env::current_exe().expect("path of the bench program");
        let status = std::process::Command::new(exe)
            .arg(MEMORY_ONLY)
            .status()
            .expect("memory report runs");
        assert!(status.success(), "memory report failed: {status}");
    }
    Criterion::default().configure_from_args().final_summary();
}
