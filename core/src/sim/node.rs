//! One simulated node: what survives a crash (its disk), what does not
//! (the replica, the state machine, the node core's pieces, the watches,
//! the requests waiting), and how it starts, crashes and restarts. A start
//! builds everything the way `synod`'s driver does at boot: the state
//! machine from the durable snapshot, the replica restored from the disk,
//! and fresh node-core pieces whose request and read ids differ from every
//! earlier run of the node.

use std::collections::{BTreeMap, BTreeSet};

use crate::SessionId;
use crate::node::deferred::DeferredReads;
use crate::node::group_commit::{Batch, GroupCommit, Records};
use crate::node::reads::{ReadBarriers, ReadId};
use crate::node::reaping::Reaping;
use crate::node::serving::Serving;
use crate::node::sessions::SessionLiveness;
use crate::node::snapshots::{Snapshots, WriteFile, logged_bytes};
use crate::node::writes::WritePath;
use crate::paxos::{Durable, MonoMs, NodeId, Replica, Slot, Write};
use crate::session::SessionLimits;
use crate::state::{PendingSnapshot, StateConfig, StateMachine};
use crate::watch::WatchRegistry;

use super::{Cluster, SimConfig, invariants};

/// Clock drift margin of the simulated sessions, in ppm: the simulated
/// clocks gain or lose a millisecond every 25 ticks and jump too, far more
/// than real ones.
pub(super) const SESSION_DRIFT_PPM: u64 = 200_000;

/// A failed log batch is appended again after this many milliseconds.
const WAL_RETRY_MS: u64 = 5;

/// Most requests a node holds for the ensemble before it refuses more.
const MAX_PENDING: usize = 64;

/// Watches one session may hold at a node.
const MAX_WATCHES: usize = 16;

/// Reaps the leader proposes a tick: small, so that the limit is reached
/// now and then.
const MAX_REAPS_PER_TICK: usize = 2;

/// The settings every simulated state machine shares: sessions of the
/// simulated timeouts (tens of milliseconds) are allowed.
pub(super) fn state_config() -> StateConfig {
    StateConfig {
        tree: Default::default(),
        sessions: SessionLimits {
            min_timeout_ms: 1,
            max_timeout_ms: 10_000,
            max_sessions: 1_000,
        },
    }
}

/// What a request of this node's clients answers when it is applied (or
/// fails), as the driver's completion closures do.
#[derive(Debug, Clone)]
pub(super) enum Pending {
    /// Client `client`'s operation.
    Op {
        client: usize,
        session: SessionId,
        op: super::ops::ClientOp,
    },
    /// Client `client` opens a session.
    OpenSession { client: usize },
    /// Client `client` closes its session.
    CloseSession { client: usize },
    /// The leader's expiry of a session: if it fails, the next tick tries
    /// again.
    Expire(SessionId),
    /// The leader's reap of a container or TTL node: once answered, the
    /// path may be proposed again.
    Reap(String),
    /// The tester's probe.
    Probe,
}

/// A log batch at the disk.
#[derive(Debug)]
pub(super) struct DiskBatch {
    pub due: u64,
    pub batch: Batch,
    pub records: Records<Write<Vec<u8>>>,
}

#[derive(Debug)]
pub(super) struct Node {
    pub id: NodeId,
    /// The node's monotonic clock.
    pub clock: MonoMs,
    /// Timer firings it handled (what a [`super::Plant::LeaseInTicks`]
    /// shell passes as the time).
    pub firings: MonoMs,
    /// Paused until this cluster tick.
    pub paused_until: Option<u64>,
    /// Reads asked while paused, handled first when it resumes.
    pub waiting_reads: Vec<u64>,
    /// The tick of its last forward clock jump.
    pub jumped_at: u64,
    /// What the monotonicity checks last saw of it.
    pub seen: invariants::monotonic::Seen,
    pub incarnation: u64,
    /// The incarnation of its data directory (drawn anew when the disk is
    /// wiped), and whether the directory was initialised as joined to an
    /// existing ensemble (after a wipe).
    pub directory: u64,
    pub joined_existing: bool,
    /// Wiped and not yet re-added by the simulated operator: whether it
    /// was a voter when its disk was wiped.
    pub replacing: Option<bool>,
    pub disk_delay: u64,
    /// Clock skew: +1 (fast), -1 (slow) or 0, applied every drift period.
    pub skew: i8,
    pub skew_phase: u64,
    /// What survives a crash.
    pub disk: Durable<Vec<u8>>,
    // Everything below is lost in a crash and rebuilt at a start.
    pub replica: Option<Replica<Vec<u8>>>,
    pub machine: StateMachine,
    pub watches: WatchRegistry,
    /// Sessions that left watches here (the driver's outboxes).
    pub watchers: BTreeSet<SessionId>,
    pub writes: WritePath,
    /// What each waiting request answers.
    pub completions: BTreeMap<u64, Pending>,
    pub reads: ReadBarriers,
    /// The cluster's read id of each of the node's reads.
    pub read_ids: BTreeMap<ReadId, u64>,
    /// Reads held behind their session's outstanding writes (cluster read
    /// ids), as the driver's `in_order` holds them.
    pub deferred: DeferredReads<u64>,
    pub sessions: SessionLiveness,
    /// Whether it was the authoritative leader at the end of its last turn.
    pub authoritative: bool,
    /// The containers and TTL nodes it reaps, and the reaps on their way.
    pub reaping: Reaping,
    pub serving: Serving,
    pub wal: GroupCommit<Write<Vec<u8>>>,
    /// The log batch at the disk (one at a time).
    pub batch: Option<DiskBatch>,
    /// The replica's commit index when each write waiting for the disk was
    /// made, by token: the node writes it in the write's log record, and
    /// the disk knows it once the record is durable.
    pub commit_at: std::collections::VecDeque<(u64, Slot)>,
    pub snapshots: Snapshots,
    /// The snapshot being encoded, a slice at a time.
    pub snapshotting: Option<PendingSnapshot>,
    /// The bytes of the encoded snapshot waiting for its checkpoint, as
    /// the node keeps them in a temporary file.
    pub snapshot_bytes: Option<bytes::Bytes>,
    /// The snapshot file being written (with its bytes), and when it is
    /// done.
    pub snapshot_file: Option<(u64, WriteFile, bytes::Bytes)>,
}

impl Node {
    pub(super) fn new(id: NodeId, cfg: &SimConfig, skew: i8, skew_phase: u64) -> Self {
        let machine = StateMachine::new(state_config());
        Node {
            id,
            clock: 0,
            firings: 0,
            paused_until: None,
            waiting_reads: Vec::new(),
            jumped_at: 0,
            seen: Default::default(),
            incarnation: 0,
            directory: id << 32 | 1,
            joined_existing: false,
            replacing: None,
            disk_delay: cfg.max_disk_delay.min(1),
            skew,
            skew_phase,
            disk: Durable::default(),
            replica: None,
            sessions: SessionLiveness::new(SESSION_DRIFT_PPM, machine.sessions(), 0),
            machine,
            watches: WatchRegistry::new(MAX_WATCHES),
            watchers: BTreeSet::new(),
            writes: WritePath::new(id, 1, MAX_PENDING)
                .with_max_proposals_in_flight(proposals_in_flight(id)),
            completions: BTreeMap::new(),
            reads: ReadBarriers::new(1),
            read_ids: BTreeMap::new(),
            deferred: DeferredReads::new(),
            authoritative: false,
            reaping: Reaping::new(MAX_REAPS_PER_TICK),
            serving: Serving::new(cfg.election_ms),
            wal: GroupCommit::new(1, WAL_RETRY_MS),
            batch: None,
            commit_at: Default::default(),
            snapshots: snapshots(cfg, 0, id),
            snapshotting: None,
            snapshot_bytes: None,
            snapshot_file: None,
        }
    }

    /// The slot its state machine has applied up to.
    pub(super) fn applied(&self) -> Slot {
        Slot::try_from(self.machine.applied()).unwrap_or(0)
    }
}

/// The node's snapshot schedule, from `last`: about every
/// `2 * compact_every` txns (never when 0), spread by a per-node seed.
fn snapshots(cfg: &SimConfig, last: Slot, seed: u64) -> Snapshots {
    let every = match cfg.compact_every {
        0 => u64::MAX,
        n => n * 2,
    };
    Snapshots::new(every, u64::MAX, 0.0, last, seed)
}

impl Cluster {
    /// Starts node `i` from its disk, as `synod` boots.
    pub(super) fn start(&mut self, i: usize) {
        let cfg = self.replica_config(i);
        let now = self.clock(i);
        let sim = self.cfg.clone();
        let node = &mut self.nodes[i];
        let machine = match &node.disk.snapshot {
            // The simulated disk holds its snapshots in memory.
            Some(snap) => match snap
                .data
                .read_all()
                .map_err(|e| e.to_string())
                .and_then(|data| {
                    StateMachine::decode_snapshot(state_config(), &data).map_err(|e| e.to_string())
                }) {
                Ok(machine) => machine,
                Err(e) => {
                    let id = node.id;
                    self.violation(format!("node {id}'s durable snapshot does not decode: {e}"));
                    return;
                }
            },
            None => StateMachine::new(state_config()),
        };
        // As `synod` recovers: the entries after the snapshot up to the
        // durable commit index are applied before the replica starts (it
        // takes them as committed).
        let mut machine = machine;
        let base = node.disk.snapshot.as_ref().map_or(0, |s| s.index);
        for (expected, (slot, entry)) in (base + 1..).zip(&node.disk.entries) {
            if *slot != expected || *slot > node.disk.commit {
                break;
            }
            crate::node::apply::apply_value(&mut machine, *slot, &entry.value);
        }
        let replica = if node.incarnation == 0 {
            Replica::new(cfg, now)
        } else {
            Replica::restore(cfg, node.disk.clone(), now)
        };
        let replica = match replica {
            Ok(r) => r,
            Err(e) => {
                let id = node.id;
                self.violation(format!("node {id} failed to start: {e}"));
                return;
            }
        };
        // Request and read ids differ between runs of a node, as the real
        // node's (from its boot time) do.
        let first_id = (node.incarnation << 40) + 1;
        let applied = Slot::try_from(machine.applied()).unwrap_or(0);
        node.replica = Some(replica);
        node.sessions = SessionLiveness::new(SESSION_DRIFT_PPM, machine.sessions(), now);
        node.machine = machine;
        node.watches = WatchRegistry::new(MAX_WATCHES);
        node.watchers.clear();
        node.writes = WritePath::new(node.id, first_id, MAX_PENDING)
            .with_max_proposals_in_flight(proposals_in_flight(node.id));
        node.completions.clear();
        node.reads = ReadBarriers::new(first_id);
        node.read_ids.clear();
        node.deferred = DeferredReads::new();
        node.authoritative = false;
        node.reaping = Reaping::new(MAX_REAPS_PER_TICK);
        node.serving = Serving::new(sim.election_ms);
        node.wal = GroupCommit::new(1, WAL_RETRY_MS);
        node.batch = None;
        node.snapshots = snapshots(&sim, applied, node.id ^ (node.incarnation << 16));
        let replayed = node.disk.entries.iter().filter(|(slot, _)| *slot > base);
        node.snapshots.resume(base, logged_bytes(replayed));
        node.snapshotting = None;
        node.snapshot_bytes = None;
        node.snapshot_file = None;
    }

    /// Crash: the replica, its unsynced writes, its snapshot in progress,
    /// its clients' requests and messages to it are lost.
    pub fn crash(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.replica = None;
        node.batch = None;
        node.commit_at.clear();
        node.snapshot_file = None;
        node.snapshot_bytes = None;
        node.snapshotting = None;
        node.completions.clear();
        node.deferred = DeferredReads::new();
        node.paused_until = None;
        node.waiting_reads.clear();
        // Its clients' reads, writes and keep-alives are lost with it:
        // their outcomes are unknown.
        self.reads.retain(|_, ask| ask.node != i);
        self.connection_lost(i);
        self.net.retain(|m| m.to != i);
    }

    /// Restarts node `i` from its disk, if it is down.
    pub fn restart(&mut self, i: usize) {
        if self.nodes[i].replica.is_some() {
            return;
        }
        self.nodes[i].incarnation += 1;
        // A restarted node relearns its commit index from its snapshot.
        self.nodes[i].seen.commit = 0;
        self.start(i);
    }
}

/// How many proposals a simulated node may lead uncommitted at once: one,
/// as a real node does by default, on odd ids, and a pipeline of three on
/// even ones, so that every run has leaders of both kinds.
fn proposals_in_flight(id: NodeId) -> usize {
    if id % 2 == 1 { 1 } else { 3 }
}
