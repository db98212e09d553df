//! Snapshots served from disk: the replica keeps the snapshot it serves to
//! lagging peers as the file it was written to (after a snapshot is taken,
//! and after recovery), not as bytes in memory; and a lagging follower
//! catches up by chunks read from that file as their frames are encoded,
//! even when the purge removed the file's name in the middle of the
//! transfer, or a chunk could not be read.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use synod_core::acl::Identity;
use synod_core::paxos::{
    Command, Config, Membership, Message, MonoMs, NodeId, Replica, Role, Slot, SnapshotBytes,
    SnapshotSource,
};
use synod_core::state::StateMachine;
use synod_core::txn::{CreateMode, WriteOp};
use synod_node::NodeConfig;
use synod_node::driver::DriverHandle;
use synod_node::peer::frame::PeerMessage;
use synod_node::storage::durable::{DurableLog, SnapshotState};

mod common;
use synod_node::storage::packed;
use synod_node::storage::record::snapshot_file_prefix;
use synod_node::storage::{FaultFs, FileSystem, RealFs, Storage, StorageConfig};

// ---- One node over a fault-injecting filesystem. ----

fn spawn(fs: &Arc<FaultFs>) -> DriverHandle {
    common::spawn_on(
        fs,
        &NodeConfig::parse_defaults(),
        StorageConfig::new(&PathBuf::from("/data")),
    )
}

/// Starts a driver over `fs` and waits until it serves.
async fn start(fs: &Arc<FaultFs>) -> DriverHandle {
    common::serving(spawn(fs)).await
}

async fn create(driver: &DriverHandle, path: String) {
    let op = WriteOp::Create {
        path,
        data: Some(vec![7; 100]),
        acl: synod_core::acl::Acl::open(),
        mode: CreateMode::Persistent,
        ttl_ms: 0,
    };
    let answer = driver
        .call(move |state| state.write(0, Identity::anonymous(), op))
        .await
        .expect("driver alive")
        .expect("write taken");
    answer.await.expect("answered").expect("write applied");
}

/// What the replica holds as its snapshot: the index, whether the bytes
/// are in memory, and the bytes as the replica's source gives them.
type Held = (Slot, bool, bytes::Bytes);

/// Waits until the replica holds a snapshot at `index` or later.
async fn replica_snapshot(driver: &DriverHandle, index: Slot) -> Held {
    for _ in 0..500 {
        let held = driver
            .call(move |state| {
                let snapshot = state.replica().snapshot()?;
                if snapshot.index < index {
                    return None;
                }
                let bytes = snapshot.data.read_all().expect("the snapshot reads back");
                Some((snapshot.index, snapshot.data.in_memory(), bytes))
            })
            .await
            .expect("driver alive");
        if let Some(held) = held {
            return held;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the replica never held a snapshot at {index} or later");
}

/// The znodes a snapshot's bytes decode to.
fn znodes(bytes: &[u8]) -> usize {
    packed::decode_state(NodeConfig::parse_defaults().state_config(), bytes)
        .expect("the bytes are a snapshot")
        .tree()
        .len()
}

#[tokio::test]
async fn the_replica_serves_its_snapshot_from_the_file_after_taking_it_and_after_recovery() {
    let fs = Arc::new(FaultFs::new());
    let driver = start(&fs).await;
    for i in 0..50 {
        create(&driver, format!("/n{i}")).await;
    }
    let index = driver
        .call(|state| state.take_snapshot())
        .await
        .expect("driver alive");
    let index = u64::try_from(index).expect("an applied index");
    let (at, in_memory, bytes) = replica_snapshot(&driver, index).await;
    assert!(
        !in_memory,
        "the snapshot at {at} is held in memory after its file was written"
    );
    let expected = driver
        .call(|state| state.machine().tree().len())
        .await
        .expect("driver alive");
    assert_eq!(
        znodes(&bytes),
        expected,
        "the file's state part, at the right offset"
    );

    drop(driver);
    fs.crash();
    let driver = start(&fs).await;
    let (recovered_at, in_memory, recovered) = replica_snapshot(&driver, at).await;
    assert_eq!(recovered_at, at);
    assert!(
        !in_memory,
        "recovery kept the snapshot's bytes instead of its file"
    );
    assert_eq!(recovered, bytes, "the same bytes, served from the file");
}

// ---- Three replicas, their frames encoded as the node encodes them. ----

/// A snapshot source that fails its first `failures` reads, as a disk
/// with a passing fault would.
#[derive(Debug)]
struct Flaky {
    inner: SnapshotState,
    failures: AtomicUsize,
}

impl SnapshotSource for Flaky {
    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let failing = self
            .failures
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(io::Error::other("injected read failure"));
        }
        self.inner.read_exact_at(offset, buf)
    }
}

/// Replicas 1, 2 and 3 exchanging the node's frames: a snapshot chunk that
/// names its bytes in a file is read as its frame is encoded, and skipped
/// when that read fails, as `send_paxos` does.
struct Cluster {
    replicas: Vec<Replica<Vec<u8>>>,
    now: MonoMs,
    /// Frames in flight: from, to, frame.
    wire: VecDeque<(NodeId, NodeId, Vec<u8>)>,
    /// A node whose frames are lost, both ways.
    cut: Option<NodeId>,
    /// Snapshot chunks that reached node 3, by snapshot index.
    chunks_to_3: Vec<Slot>,
    /// Chunks not sent because their bytes could not be read.
    unreadable: usize,
    /// Snapshots node 3 installed: index and bytes.
    installed: Vec<(Slot, Vec<u8>)>,
}

impl Cluster {
    fn new() -> Self {
        let replicas = (1..=3)
            .map(|id| {
                let mut config = Config::new(id, vec![1, 2, 3]);
                config.snapshot_chunk = 256;
                Replica::new(config, 0).expect("replica")
            })
            .collect();
        Cluster {
            replicas,
            now: 0,
            wire: VecDeque::new(),
            cut: None,
            chunks_to_3: Vec::new(),
            unreadable: 0,
            installed: Vec::new(),
        }
    }

    fn replica(&mut self, id: NodeId) -> &mut Replica<Vec<u8>> {
        &mut self.replicas[(id - 1) as usize]
    }

    /// Carries out every replica's commands: writes are durable at once,
    /// messages are encoded into frames and queued.
    fn execute(&mut self) {
        loop {
            let mut idle = true;
            for r in &mut self.replicas {
                let from = r.id();
                for command in r.take_commands() {
                    idle = false;
                    match command {
                        Command::Persist(write) => r.persisted(write.token),
                        Command::Send { to, msg } => match PeerMessage::Paxos(msg).encode() {
                            Ok(frame) => self.wire.push_back((from, to, frame)),
                            Err(_) => self.unreadable += 1,
                        },
                        Command::InstallSnapshot(snapshot) if from == 3 => {
                            let bytes = snapshot.data.read_all().expect("received bytes");
                            self.installed.push((snapshot.index, bytes.to_vec()));
                        }
                        _ => {}
                    }
                }
            }
            if idle {
                return;
            }
        }
    }

    /// Delivers one frame; false when none is in flight.
    fn deliver_one(&mut self) -> bool {
        self.execute();
        let Some((from, to, frame)) = self.wire.pop_front() else {
            return false;
        };
        if self.cut.is_some_and(|cut| cut == from || cut == to) {
            return true;
        }
        let Ok(PeerMessage::Paxos(msg)) = PeerMessage::decode(&frame) else {
            panic!("a consensus frame decodes");
        };
        if let (3, Message::Snapshot { index, data, .. }) = (to, &msg) {
            assert!(data.bytes().is_some(), "a received chunk carries bytes");
            self.chunks_to_3.push(*index);
        }
        let now = self.now;
        self.replica(to).step(from, msg, now);
        self.execute();
        true
    }

    /// Delivers frames until none is in flight or `done` holds.
    fn settle_until(&mut self, mut done: impl FnMut(&Cluster) -> bool) {
        while !done(self) && self.deliver_one() {}
    }

    /// Time passes: every replica's timers run, then the frames settle.
    fn tick(&mut self) {
        self.tick_until(|_| false);
    }

    /// Time passes, and frames are delivered until `done` holds.
    fn tick_until(&mut self, done: impl FnMut(&Cluster) -> bool) {
        self.now += 1;
        let now = self.now;
        for r in &mut self.replicas {
            r.tick(now);
        }
        self.settle_until(done);
    }

    /// Commits `n` more values through leader 1; returns its commit index.
    fn commit(&mut self, n: usize) -> Slot {
        for i in 0..n {
            self.replica(1)
                .propose(vec![format!("value {i}").into_bytes()])
                .expect("leader takes proposals");
            self.replica(1).flush_commit();
            self.settle_until(|_| false);
        }
        self.tick();
        self.replica(1).commit_index()
    }
}

/// The state bytes of a snapshot: distinct per snapshot, and many chunks.
fn state(seed: u8) -> Vec<u8> {
    (0..5_000u32)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Writes the snapshot at `slot` as the node does (file prefix, then the
/// state) and returns the replica's source for it.
fn store(storage: &mut Storage, log_index: u64, slot: Slot, state: &[u8]) -> SnapshotState {
    let prefix = snapshot_file_prefix(slot, &Membership::new(vec![1, 2, 3], vec![]));
    let written = storage
        .snapshot_writer()
        .write(log_index, &[&prefix, state])
        .expect("snapshot written");
    let source = SnapshotState::new(written.reader(), prefix.len() as u64, state.len() as u64);
    storage.add_snapshot(written).expect("snapshot registered");
    source
}

fn snapshot_names(fs: &dyn FileSystem, dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs
        .list(dir)
        .expect("snapshot directory")
        .into_iter()
        .map(|e| e.name)
        .filter(|name| name.ends_with(".snap"))
        .collect();
    names.sort();
    names
}

/// Node 1 leading nodes 1 and 2, with node 3 cut off.
fn leader_without_3() -> Cluster {
    let mut cluster = Cluster::new();
    cluster.cut = Some(3);
    cluster.replica(1).campaign();
    cluster.settle_until(|_| false);
    for _ in 0..5 {
        cluster.tick();
    }
    assert_eq!(cluster.replica(1).role(), Role::Leader);
    cluster
}

#[test]
fn a_lagging_follower_streams_the_snapshot_from_its_file_even_once_purged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fs: Arc<dyn FileSystem> = Arc::new(RealFs);
    let config = StorageConfig {
        keep_snapshots: 1,
        ..StorageConfig::new(dir.path())
    };
    let snapshot_dir = config.snapshot_dir.clone();
    let (mut storage, _) = Storage::open(config, fs.clone()).expect("storage");

    let mut cluster = leader_without_3();
    let first = cluster.commit(10);
    let first_state = state(1);
    let source = store(&mut storage, 100, first, &first_state);
    cluster
        .replica(1)
        .compact(first, SnapshotBytes::Source(Arc::new(source)))
        .expect("compacted");

    // Node 3 comes back behind the log's start: the leader streams the
    // snapshot. Stop once the first chunk has reached it.
    cluster.cut = None;
    for _ in 0..50 {
        cluster.tick_until(|c| !c.chunks_to_3.is_empty());
        if !cluster.chunks_to_3.is_empty() {
            break;
        }
    }
    assert_eq!(cluster.chunks_to_3, vec![first], "the transfer started");
    assert!(cluster.installed.is_empty());

    // Node 3 drops out again, and a newer snapshot is taken meanwhile:
    // the purge removes the file being sent, and the replica moves on to
    // the new one. The transfer in progress is pinned to the old one,
    // which only its open file still holds.
    cluster.cut = Some(3);
    let second = cluster.commit(10);
    let second_state = state(2);
    let newer = store(&mut storage, 200, second, &second_state);
    cluster
        .replica(1)
        .compact(second, SnapshotBytes::Source(Arc::new(newer)))
        .expect("compacted again");
    let names = snapshot_names(fs.as_ref(), &snapshot_dir);
    assert_eq!(names.len(), 1, "the first file was purged: {names:?}");
    assert!(cluster.installed.is_empty(), "the transfer is not over");
    let before_purge = cluster.chunks_to_3.len();

    cluster.cut = None;
    for _ in 0..200 {
        cluster.tick();
        if cluster.replica(3).commit_index() >= second {
            break;
        }
    }
    let after_purge = cluster.chunks_to_3[before_purge..]
        .iter()
        .filter(|i| **i == first)
        .count();
    assert!(
        after_purge > 0,
        "the first snapshot went on from its purged file"
    );
    assert_eq!(
        cluster.installed.first(),
        Some(&(first, first_state)),
        "node 3 installed the first snapshot as it was written"
    );
    assert!(
        cluster.replica(3).commit_index() >= second,
        "node 3 caught up: {}",
        cluster.replica(3).summary()
    );
    assert_eq!(cluster.unreadable, 0);
}

#[test]
fn a_chunk_that_cannot_be_read_is_skipped_and_the_transfer_resumes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut storage, _) =
        Storage::open(StorageConfig::new(dir.path()), Arc::new(RealFs)).expect("storage");
    let mut cluster = leader_without_3();
    let index = cluster.commit(10);
    let bytes = state(3);
    let flaky = Flaky {
        inner: store(&mut storage, 100, index, &bytes),
        failures: AtomicUsize::new(3),
    };
    cluster
        .replica(1)
        .compact(index, SnapshotBytes::Source(Arc::new(flaky)))
        .expect("compacted");
    cluster.cut = None;
    for _ in 0..200 {
        cluster.tick();
        if cluster.replica(3).commit_index() >= index {
            break;
        }
    }
    assert_eq!(cluster.unreadable, 3, "the failed reads were skipped");
    assert_eq!(
        cluster.installed,
        vec![(index, bytes)],
        "node 3 got every byte all the same"
    );
}

// ---- Recovery decodes the state from the file, a window at a time. ----

/// Writes a snapshot file of `state` at slot and log index `index`, as a
/// node's snapshot thread does: the prefix, then the state in pieces.
fn write_snapshot_file(fs: Arc<dyn FileSystem>, index: u64, state: &[u8]) {
    let (mut storage, _) =
        Storage::open(StorageConfig::new(Path::new("/data")), fs).expect("open storage");
    let mut file = storage.snapshot_writer().begin().expect("begin");
    file.append(&snapshot_file_prefix(
        index,
        &Membership::new(vec![1], vec![]),
    ))
    .expect("prefix");
    for piece in state.chunks(300_000) {
        file.append(piece).expect("a piece");
    }
    storage
        .add_snapshot(file.finish(index).expect("finish"))
        .expect("register");
}

/// A state several times larger than the decode window, a state in the
/// previous snapshot format, and the large state packed, recover from
/// their files to the state they were taken of; the replica then serves
/// the file's own bytes.
#[test]
fn recovery_decodes_large_and_older_states_from_the_file() {
    let config = NodeConfig::parse_defaults().state_config();
    let mut machine = StateMachine::new(config.clone());
    for i in 0..40_000i64 {
        machine.apply(
            i + 1,
            i,
            &synod_core::txn::Txn::Write {
                session: 0,
                identity: Identity::anonymous(),
                op: WriteOp::Create {
                    path: format!("/n{i:06}"),
                    data: Some(vec![(i % 251) as u8; 100]),
                    acl: synod_core::acl::Acl::open(),
                    mode: CreateMode::Persistent,
                    ttl_ms: 0,
                },
            },
        );
    }
    let state = machine.encode_snapshot();
    assert!(state.len() > 4 << 20, "{} bytes", state.len());
    let format_5: &[u8] = include_bytes!("../../core/tests/fixtures/snapshot-format5.bin");
    // Raw state, as nodes wrote it before compression (and with
    // --snapshot-compression none), and packed.
    let packed_state = packed::pack(&state);
    for (index, file_state, state) in [
        (40_000u64, &state[..], &state[..]),
        (67, format_5, format_5),
        (40_001, &packed_state[..], &state[..]),
    ] {
        let fs = Arc::new(FaultFs::new());
        write_snapshot_file(fs.clone(), index, file_state);
        let (_, recovered) = DurableLog::recover_with(
            StorageConfig::new(Path::new("/data")),
            config.clone(),
            fs.clone(),
        )
        .expect("recover");
        let expected =
            StateMachine::decode_snapshot(config.clone(), state).expect("decodes in memory");
        assert_eq!(recovered.machine.tree().dump(), expected.tree().dump());
        assert_eq!(recovered.machine.applied(), expected.applied());
        assert_eq!(recovered.machine.sessions(), expected.sessions());
        let served = recovered.durable.snapshot.expect("the snapshot");
        assert!(!served.data.in_memory(), "served from the file");
        assert_eq!(
            served.data.read_all().expect("readable").as_ref(),
            file_state,
            "the state part of the file, at the right offset"
        );
    }
}
