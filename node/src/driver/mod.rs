//! The driver: one task owns the Multi-Paxos replica, the state machine,
//! the watch registry, the session tracker and the per-session event
//! outboxes, and runs every job in arrival order. Front ends hand it
//! closures and await their results, so no lock guards the state and a
//! request never observes half a change.
//!
//! A client's write becomes a txn that waits here under a request number.
//! On the leader the driver proposes it (stamped with the leader's time and
//! tagged with this node and the request number); on a follower it forwards
//! it to the leader, which proposes it the same way. Every node applies
//! committed slots in order, and the node that took the request answers it
//! when it applies the slot carrying its tag: a client always reads its own
//! writes. The replica's commands are executed in order: durable writes go
//! to the storage thread (one batch in flight, the next gathering: group
//! commit), messages to the peer transport, committed slots to the state
//! machine. Without a data directory writes are "durable" at once.
//!
//! Snapshots: the state machine is encoded a slice at a time between jobs.
//! Then a checkpoint record (the promised ballot and every accepted entry
//! after the snapshot's slot) is appended to the log, and once it is
//! durable the snapshot file is written with that record as its log
//! position, so recovery needs only the snapshot and the records from the
//! checkpoint on; older segments are purged. Once the file is durable the
//! replica drops its log up to the snapshot.
//!
//! This file holds the task (`spawn` and its loop), the node's state and
//! the turn that drives the replica; the rest is in the files beside it:
//! `writes`, `reads`, `sessions`, `client_ops` (apply and serve), `peers`,
//! `wal`, `snapshots` and `admin`. Read barriers and session liveness are
//! decided in `synod_core::node`; the other decisions here are still to
//! move there.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rustc_hash::FxHashMap;
use synod_core::acl::{Id, Identity, digest_id};
use synod_core::node::deferred::DeferredReads;
use synod_core::node::group_commit::{Completion, GroupCommit};
use synod_core::node::reads::{ReadAction, ReadBarriers, ReadError, ReadId, ReadIndex};
use synod_core::node::reaping::Reaping;
use synod_core::node::sessions::{PingAnswer, PingId, PingRefusal, SessionLiveness, Settled};
use synod_core::node::snapshots::{Snapshots, logged_bytes};
use synod_core::node::writes::{WriteAction, WritePath};
use synod_core::paxos::{
    self, Ballot, Claim, Command, Membership, Message, MonoMs, NodeId, PaxosError, ReadMode,
    Replica, Role, Slot, Snapshot, Value, Write,
};
use synod_core::session::SessionPassword;
use synod_core::state::{Applied, PendingSnapshot, SnapshotBuffer, StateConfig, StateMachine};
use synod_core::txn::{CloseReason, OpOutcome, Txn, TxnOutcome, WriteOp};
use synod_core::watch::{Trigger, WatchEvent, WatchKind, WatchRegistry, WatcherType};
use synod_core::{Error, Millis, SessionId, Zxid};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;

use crate::config::{Ensemble, NodeConfig};
use crate::metrics::{Gauges, Metrics};
use crate::peer::frame::PeerMessage;
use crate::peer::{Inbound, PeerSender};
use crate::storage::StorageStats;
use crate::storage::durable::{DurableLog, LogWriter, Persisted, Recovered};
use crate::storage::identity::IdentityFile;
use crate::storage::logged::{LoggedRequest, SlotRecords};
use crate::storage::packed::{self, SnapshotCompression};
use crate::storage::record::{LogRecord, snapshot_file_prefix};
use synod_core::node::apply::{AppliedValue, apply_value};
use synod_core::node::serving::{Change, Serving};

mod admin;
mod client_ops;
mod identity;
mod peers;
mod reads;
mod sessions;
mod snapshots;
mod stop;
mod wal;
mod writes;
mod zookeeper;

pub use zookeeper::{Attach, SetWatchLists, ZkSummary};

pub use admin::{MembershipCall, MembershipError, MembershipOutcome, Status};
pub use synod_core::node::membership::MembershipChange;

/// A unit of work for the driver task.
pub type Job = Box<dyn FnOnce(&mut NodeState) + Send>;

/// The driver task has stopped; the node is shutting down.
#[derive(Debug, thiserror::Error)]
#[error("the node is shutting down")]
pub struct DriverGone;

/// A cheap handle to submit jobs to the driver.
#[derive(Debug, Clone)]
pub struct DriverHandle {
    jobs: mpsc::Sender<Job>,
}

impl DriverHandle {
    /// Runs `f` on the driver task and returns its result.
    pub async fn call<R, F>(&self, f: F) -> Result<R, DriverGone>
    where
        R: Send + 'static,
        F: FnOnce(&mut NodeState) -> R + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |state| {
            // The caller may have gone away; its result is then not needed.
            let _ = tx.send(f(state));
        });
        self.jobs.send(job).await.map_err(|_| DriverGone)?;
        rx.await.map_err(|_| DriverGone)
    }

    /// Queues `f` to run on the driver task without waiting for it: jobs
    /// run in the order they are queued, so a caller that hands results
    /// on from inside `f` keeps its order without a round trip per job.
    /// Waits only while the job queue is full.
    pub async fn submit<F>(&self, f: F) -> Result<(), DriverGone>
    where
        F: FnOnce(&mut NodeState) + Send + 'static,
    {
        self.jobs.send(Box::new(f)).await.map_err(|_| DriverGone)
    }
}

/// The peer transport, for a node with peers.
#[derive(Debug)]
pub struct Network {
    pub sender: PeerSender,
    pub inbound: mpsc::Receiver<Inbound>,
}

/// Why the driver stopped on its own, phrased for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DriverFailed(pub String);

/// Why the driver could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot build the consensus replica: {0}")]
    Replica(#[from] PaxosError),
}

/// Jobs and frames handled before the driver proposes, sends and syncs:
/// the more a turn gathers, the larger the batches.
const MAX_EVENTS_PER_TURN: usize = 512;

/// Starts the driver task over a recovered state; it ends when every
/// handle is dropped. `log` makes writes durable before they count;
/// without one the node keeps its state in memory only. The task ends with
/// an error when the node cannot go on (its storage stopped, or its state
/// turned out to be another ensemble's).
pub fn spawn(
    config: &NodeConfig,
    ensemble: &Ensemble,
    recovered: Recovered,
    log: Option<DurableLog>,
    identity: IdentityFile,
    metrics: Arc<Metrics>,
    network: Option<Network>,
) -> Result<
    (
        DriverHandle,
        tokio::task::JoinHandle<Result<(), DriverFailed>>,
    ),
    StartError,
> {
    let (jobs, mut inbox) = mpsc::channel::<Job>(4096);
    let durable = log.is_some();
    let (persisted_tx, mut persisted) = mpsc::unbounded_channel();
    let storage_stats = log.as_ref().map(DurableLog::stats).unwrap_or_default();
    let next_record = log.as_ref().map_or(1, DurableLog::next_record);
    // The replica's timers only need to be looked at often; how often
    // does not matter for safety, since it compares real times.
    let paxos_tick = Duration::from_millis((config.heartbeat_ms / 2).max(1));
    let replica_config = paxos::Config {
        id: ensemble.id,
        voters: ensemble.voters.keys().copied().collect(),
        observers: ensemble.observers.keys().copied().collect(),
        heartbeat_ms: config.heartbeat_ms,
        election_ms: config.election_timeout_ms,
        max_batch: 1024,
        max_inflight: config.max_pending_txns.saturating_mul(4).max(1024),
        read_mode: ReadMode::Lease {
            drift_ms: config.lease_drift_ms(),
        },
        snapshot_chunk: (config.max_peer_frame_bytes / 2).clamp(4096, 4 << 20),
        // Election timeouts must differ between nodes and between runs.
        seed: ensemble.id ^ (wall_clock_nanos() as u64),
        incarnation: identity.identity().incarnation,
        joined_existing: identity.identity().joined_existing,
    };
    let Recovered {
        machine,
        durable: durable_state,
        slot_records,
        ..
    } = recovered;
    let single = replica_config.voters == [ensemble.id];
    // The snapshot schedule goes on from the snapshot recovered, counting
    // the log replayed after it.
    let snapshot_slot = durable_state.snapshot.as_ref().map_or(0, |s| s.index);
    let logged_since = logged_bytes(&durable_state.entries);
    // The origin of the monotonic clock the replica and the session
    // tracker read; the replica starts at its 0.
    let started = Instant::now();
    let mut replica = Replica::restore(replica_config, durable_state, 0)?;
    if single {
        // No one else can hold a lease: take the lead at once.
        replica.campaign();
    }
    let (sender, mut peer_inbox, networked) = match network {
        Some(n) => (Some(n.sender), n.inbound, true),
        None => (None, mpsc::channel(1).1, false),
    };
    let wal = log.map(|log| Wal {
        writer: log.start(persisted_tx),
        commit: GroupCommit::new(next_record, WAL_RETRY_MS),
        snapshot_file: None,
        slots: slot_records,
        cache_entries: config.log_cache_entries,
    });
    let mut state = NodeState::new(
        config, ensemble, started, machine, replica, wal, sender, metrics, identity,
    );
    state.storage_stats = storage_stats;
    state.snapshots.resume(snapshot_slot, logged_since);
    state.record_limits(config.state_config());
    state.turn();
    // The first turn let the replica drop the log tail recovery replayed
    // (all but `--log-cache-entries`): return that memory before serving.
    crate::memory::release_freed();
    let tick = config.tick();
    let task = async move {
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut paxos_ticker = tokio::time::interval(paxos_tick);
        paxos_ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                job = inbox.recv() => match job {
                    Some(job) => {
                        job(&mut state);
                        // Take what else is queued, so one turn proposes
                        // and syncs many requests together.
                        for _ in 0..MAX_EVENTS_PER_TURN {
                            match inbox.try_recv() {
                                Ok(job) => job(&mut state),
                                Err(_) => break,
                            }
                        }
                    }
                    None => break,
                },
                frame = peer_inbox.recv(), if networked => {
                    if let Some(frame) = frame {
                        state.peer_frame(frame);
                        for _ in 0..MAX_EVENTS_PER_TURN {
                            match peer_inbox.try_recv() {
                                Ok(frame) => state.peer_frame(frame),
                                Err(_) => break,
                            }
                        }
                    }
                },
                done = persisted.recv(), if durable => match done {
                    Some(done) => state.persisted(done),
                    None => {
                        // Without its storage thread the node can neither
                        // make writes durable nor answer the ones in flight.
                        tracing::error!("the storage thread has stopped; stopping the node");
                        state.fail_all("the storage thread has stopped");
                        return Err(DriverFailed("its storage stopped".into()));
                    }
                },
                _ = paxos_ticker.tick() => {
                    let now = state.mono_now();
                    state.replica.tick(now);
                }
                _ = ticker.tick() => state.tick(),
                () = std::future::ready(()), if state.snapshot_ready() => state.snapshot_work(),
            }
            state.turn();
            if let Some(why) = state.identity_failure().map(str::to_owned) {
                state.fail_all(&why);
                return Err(DriverFailed(why));
            }
            if state.snapshot_ready() {
                // The snapshot branch is always ready, so without this the
                // driver would keep its worker thread until the snapshot is
                // encoded, and the network tasks queued on that worker
                // (other nodes' among them under `synod dev`) would wait.
                tokio::task::yield_now().await;
            }
        }
        tracing::debug!("driver stopped");
        Ok(())
    }
    // Its log lines carry the caller's span (the node id under `synod dev`).
    .in_current_span();
    let task = tokio::spawn(task);
    Ok((DriverHandle { jobs }, task))
}

/// Where a session's watch events wait for its client.
#[derive(Debug, Default)]
struct Outbox {
    /// Number of events ever queued; the seq of the latest one.
    seq: u64,
    /// The latest events, for a client that reconnects its stream.
    recent: VecDeque<synod_proto::v1::WatchEvent>,
    subscriber: Option<mpsc::Sender<synod_proto::v1::WatchEvent>>,
}

/// What a response tells the client about the state it was served from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub zxid: Zxid,
    pub watch_seq: u64,
}

/// Called on the driver once a submitted txn was applied, or could not be
/// carried through the ensemble.
pub type Done = Box<dyn FnOnce(&mut NodeState, Result<&Applied, Error>) + Send>;

/// The completions of this node's requests, by request number, with when
/// each was submitted (for the commit latency metric).
#[derive(Default)]
struct Completions(FxHashMap<u64, (Done, Instant)>);

impl std::fmt::Debug for Completions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} requests waiting", self.0.len())
    }
}

/// The write-ahead log as the driver feeds it: the storage thread, and
/// the group commit that decides what goes to it
/// (`synod_core::node::group_commit`).
#[derive(Debug)]
struct Wal {
    writer: LogWriter,
    commit: GroupCommit<Vec<u8>>,
    /// The snapshot thread's file for the snapshot being encoded (or
    /// installed) and waiting for its checkpoint.
    snapshot_file: Option<u64>,
    /// Which record last wrote each slot above the snapshot, to read the
    /// values the replica let go of back for a peer.
    slots: SlotRecords,
    /// Committed entries the replica keeps in memory behind what is
    /// applied (`--log-cache-entries`).
    cache_entries: u64,
}

/// Who waits for a read barrier.
#[derive(Debug)]
enum ReadReply {
    /// A linearizable read: it reads once answered.
    Read(oneshot::Sender<Result<(), Error>>),
    /// A ZooKeeper `sync` of `session`, whose later reads wait for it.
    Sync {
        session: SessionId,
        reply: oneshot::Sender<Result<Header, Error>>,
    },
}

/// Where a keep-alive is answered: the session's timeout, or why not.
type PingReply = oneshot::Sender<Result<Millis, Error>>;

/// Everything the driver owns.
#[derive(Debug)]
pub struct NodeState {
    id: NodeId,
    replica: Replica<Vec<u8>>,
    peers: Option<PeerSender>,
    machine: StateMachine,
    state_config: StateConfig,
    /// How this node stores the snapshots it encodes.
    snapshot_compression: SnapshotCompression,
    watches: WatchRegistry,
    /// Session liveness: expiry at the leader, reports and vouches at a
    /// follower (decided in `synod_core::node::sessions`).
    sessions: SessionLiveness,
    /// Keep-alives waiting for a vouch, by the core's ping id.
    ping_replies: FxHashMap<PingId, PingReply>,
    /// Whether this node was the authoritative leader (leading, caught up)
    /// at the end of the last turn.
    authoritative: bool,
    outboxes: FxHashMap<SessionId, Outbox>,
    auth: FxHashMap<SessionId, Vec<Id>>,
    event_buffer: usize,
    started: Instant,
    scratch: Vec<WatchEvent>,
    /// The write path: what the core decides about this node's requests
    /// and the txns followers forward (`synod_core::node::writes`).
    writes: WritePath,
    /// What runs when each of this node's requests is answered.
    completions: Completions,
    /// A follower that has not heard from its leader for this long stops
    /// serving clients (the election timeout).
    leader_silence_limit: u64,
    /// Linearizable read barriers: what the core decides about them.
    reads: ReadBarriers,
    /// Where each of this node's reads is answered.
    read_replies: FxHashMap<ReadId, ReadReply>,
    /// Whether clients are served: since a leader is known and everything
    /// known committed was applied, until no leader is known. A node that
    /// restarted or lost its leader does not answer from a state it cannot
    /// vouch for, as a ZooKeeper server outside a quorum does not.
    serving: Serving,
    wal: Option<Wal>,
    /// When snapshots are due and where the one in progress is in its
    /// protocol (`synod_core::node::snapshots`).
    snapshots: Snapshots,
    max_frame: usize,
    request_timeout: Duration,
    metrics: Arc<Metrics>,
    storage_stats: StorageStats,
    /// Reads waiting for their session's outstanding txns
    /// (`synod_core::node::deferred`).
    deferred: DeferredReads<Job>,
    /// The snapshot being encoded, a slice at a time.
    snapshotting: Option<PendingSnapshot>,
    /// Which containers and TTL nodes to reap, and whose reap is on its
    /// way through the log (`synod_core::node::reaping`).
    reaping: Reaping,
    /// Membership calls forwarded to the leader, by request number: the
    /// leader they went to and where its answer goes.
    membership_calls: FxHashMap<u64, (NodeId, admin::MembershipReply)>,
    /// The last request number given to a forwarded membership call.
    membership_requests: u64,
    /// The data directory's identity: cluster name, incarnation and the
    /// cluster id once applied.
    identity: IdentityFile,
    /// Why this node must stop: its state is another ensemble's, or its
    /// identity cannot be recorded.
    identity_failure: Option<String>,
    /// A `SetClusterId` of this node's is on its way through the log.
    minting_cluster_id: bool,
    /// What this node last reported of incarnations: whether it abstains,
    /// and the members refused for theirs (logged on change only).
    claim_seen: (bool, Vec<NodeId>),
}

/// Znodes encoded per slice of a running snapshot: a few milliseconds of
/// work between two jobs of the driver.
const SNAPSHOT_SLICE: usize = 1_000;

/// Encoded snapshot bytes gathered before they go to the snapshot thread
/// (one write of its file).
const SNAPSHOT_PIECE: usize = 1 << 20;

/// Encoded snapshot bytes the snapshot thread may have queued: beyond
/// this, encoding waits for the next event of the driver, so a slow disk
/// holds the encoding back rather than piling the snapshot up in memory.
const SNAPSHOT_BACKLOG: usize = 8 << 20;

/// Bounds the reaps one tick submits, so a mass expiry of TTL nodes is
/// spread over ticks instead of flooding one batch.
const MAX_REAPS_PER_TICK: usize = 1024;

/// Wait before appending a failed batch again.
const WAL_RETRY_MS: u64 = 500;

fn wall_clock_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn wall_clock_ms() -> Millis {
    i64::try_from(wall_clock_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

impl NodeState {
    #[expect(clippy::too_many_arguments, reason = "one constructor, called once")]
    fn new(
        config: &NodeConfig,
        ensemble: &Ensemble,
        started: Instant,
        machine: StateMachine,
        replica: Replica<Vec<u8>>,
        wal: Option<Wal>,
        peers: Option<PeerSender>,
        metrics: Arc<Metrics>,
        identity: IdentityFile,
    ) -> Self {
        // Whoever decides expiry gives every recovered session a full
        // timeout, as a new ZooKeeper leader does.
        let sessions = SessionLiveness::new(config.max_clock_drift_ppm, machine.sessions(), 0);
        // Each member spreads its snapshot points differently, and
        // differently in every run.
        let snapshots = Snapshots::new(
            config.snapshot_every_txns,
            config.snapshot_every_bytes,
            config.snapshot_txns_per_znode,
            u64::try_from(machine.applied()).unwrap_or(0),
            ensemble.id ^ wall_clock_nanos() as u64,
        );
        NodeState {
            id: ensemble.id,
            replica,
            peers,
            machine,
            state_config: config.state_config(),
            snapshot_compression: config.snapshot_compression,
            watches: WatchRegistry::new(config.max_watches_per_session),
            sessions,
            ping_replies: FxHashMap::default(),
            authoritative: false,
            outboxes: FxHashMap::default(),
            auth: FxHashMap::default(),
            event_buffer: config.watch_event_buffer,
            started,
            scratch: Vec::new(),
            // Request numbers start from the boot time, so that a proposal
            // of an earlier run never answers a request of this one.
            writes: WritePath::new(
                ensemble.id,
                u64::try_from(wall_clock_nanos()).unwrap_or(u64::MAX / 2),
                config.max_pending_txns,
            )
            .with_max_proposals_in_flight(config.max_proposals_in_flight),
            completions: Completions::default(),
            leader_silence_limit: config.election_timeout_ms,
            // Read ids, like request numbers, differ between runs.
            reads: ReadBarriers::new(wall_clock_nanos() as u64),
            read_replies: FxHashMap::default(),
            serving: Serving::new(config.election_timeout_ms),
            wal,
            snapshots,
            max_frame: config.max_peer_frame_bytes,
            request_timeout: Duration::from_millis(config.request_timeout_ms),
            metrics,
            storage_stats: StorageStats::default(),
            deferred: DeferredReads::new(),
            snapshotting: None,
            reaping: Reaping::new(MAX_REAPS_PER_TICK),
            membership_calls: FxHashMap::default(),
            // Numbered from the boot time, as requests are, so that a late
            // answer to an earlier run's call matches nothing.
            membership_requests: u64::try_from(wall_clock_nanos()).unwrap_or(0),
            identity,
            identity_failure: None,
            minting_cluster_id: false,
            claim_seen: (false, Vec::new()),
        }
    }

    /// The limits in force belong to the log: record the flags' settings
    /// as a txn when they differ from the recovered ones (or on a fresh
    /// start), so a replay checks every earlier txn as it was first
    /// checked. In an ensemble every node does this with its own flags;
    /// they are meant to agree, and the last one applied wins.
    fn record_limits(&mut self, wanted: StateConfig) {
        if self.machine.applied() != 0 && self.machine.config() == wanted {
            return;
        }
        tracing::info!(?wanted, "recording the configured limits in the log");
        self.submit(
            Txn::SetConfig(wanted),
            Box::new(|_, applied| {
                if let Err(error) = applied {
                    tracing::warn!(%error, "cannot record the configured limits yet");
                }
            }),
        );
    }

    /// Sizes and counts for the metrics endpoint.
    pub fn gauges(&self) -> Gauges {
        let stats = &self.storage_stats;
        let membership = self.replica.membership();
        Gauges {
            znodes: self.machine.tree().len() as u64,
            sessions: self.machine.sessions().len() as u64,
            watches: self.watches.len() as u64,
            applied_zxid: self.machine.applied(),
            pending_txns: self.writes.pending() as u64,
            log_bytes: stats.log_bytes,
            log_segments: stats.log_segments as u64,
            snapshot_bytes: stats.snapshot_bytes,
            snapshots: stats.snapshots as u64,
            snapshot_index: self.replica.snapshot().map_or(0, |s| s.index),
            node_id: self.id,
            is_leader: self.replica.role() == Role::Leader,
            leader_id: self.replica.leader().unwrap_or(0),
            commit_index: self.replica.commit_index(),
            voters: membership.voters.len() as u64,
            observers: membership.observers.len() as u64,
            elections_on_timeout: self.replica.elections().on_timeout,
            elections_on_transfer: self.replica.elections().on_transfer,
            cluster: self.identity.identity().cluster.clone(),
            cluster_id: self.machine.cluster_id().unwrap_or(0),
            incarnation: self.identity.identity().incarnation,
            foreign_members: self.claim_seen.1.len() as u64,
            awaiting_readd: self.replica.awaiting_readd(),
            refused_claims: self.replica.refused_claims(),
            peer_links: self
                .peers
                .as_ref()
                .map(PeerSender::link_stats)
                .unwrap_or_default(),
        }
    }

    pub fn machine(&self) -> &StateMachine {
        &self.machine
    }

    /// The consensus replica, to look at (tests, diagnostics).
    pub fn replica(&self) -> &Replica<Vec<u8>> {
        &self.replica
    }

    /// Whether this node should receive clients: it is a member, knows a
    /// leader and has applied everything it knows to be committed
    /// (decided in `synod_core::node::serving`).
    pub fn readiness(&self) -> Result<(), String> {
        if let Some(why) = &self.identity_failure {
            return Err(why.clone());
        }
        let applied = u64::try_from(self.machine.applied()).unwrap_or(0);
        synod_core::node::serving::readiness(
            &self.replica,
            applied,
            self.mono_now(),
            self.leader_silence_limit,
        )
        .map_err(|why| why.to_string())
    }

    /// The node's view of the ensemble, for the admin API.
    pub fn status(&self) -> Status {
        let membership = self.replica.membership().clone();
        Status {
            node_id: self.id,
            role: self.replica.role(),
            leader: self.replica.leader(),
            promised: self.replica.promised(),
            commit_index: self.replica.commit_index(),
            applied_index: u64::try_from(self.machine.applied()).unwrap_or(0),
            log_start: self.replica.log_start(),
            log_last: self.replica.log_last(),
            snapshot_index: self.replica.snapshot().map_or(0, |s| s.index),
            membership,
            peers: self.replica.peer_progress(),
            leader_commit: self.replica.leader_commit(),
            membership_pending: self.replica.pending_membership().is_some(),
            cluster_id: self.machine.cluster_id(),
            incarnation: self.identity.identity().incarnation,
            foreign: self.replica.foreign_members(),
            awaiting_readd: self.replica.awaiting_readd(),
        }
    }

    /// The core's time: milliseconds on the monotonic clock, read when an
    /// input is handled (after it arrived), so that a pause of the process
    /// is seen whole by the next decision. The replica, the read barriers
    /// and session liveness all read it.
    pub fn mono_now(&self) -> MonoMs {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The end of every turn of the driver loop: hand queued txns to the
    /// leader (or propose them), execute what the replica asks for until it
    /// has nothing more, notice leader changes, and start the next log
    /// batch when none is in flight.
    pub fn turn(&mut self) {
        self.route_txns();
        self.run_commands();
        self.watch_leader();
        self.watch_authority();
        self.route_txns();
        self.run_commands();
        self.replica.flush_commit();
        self.run_commands();
        self.try_compact();
        self.flush_wal();
        self.check_cluster_id();
        self.watch_claim();
        let applied = u64::try_from(self.machine.applied()).unwrap_or(0);
        let now = self.mono_now();
        let (change, lost) = self.serving.turn(&self.replica, applied, now);
        match change {
            Change::Stopped => tracing::info!(
                why = %self.readiness().err().unwrap_or_default(),
                "not serving clients"
            ),
            Change::Started => tracing::info!(
                applied = self.machine.applied(),
                leader = ?self.replica.leader(),
                "serving clients"
            ),
            Change::Unchanged => {}
        }
        if lost {
            let settled = self.sessions.lost_leader();
            self.answer_pings(settled);
        }
    }

    /// Whether clients are being served (see `serving`).
    pub fn is_serving(&self) -> bool {
        self.serving.is_serving()
    }

    /// Refuses client requests while the node is not serving.
    fn check_serving(&self) -> Result<(), Error> {
        let applied = u64::try_from(self.machine.applied()).unwrap_or(0);
        let Err(why) = self.serving.check(&self.replica, applied, self.mono_now()) else {
            return Ok(());
        };
        Err(Error::ConnectionLoss(format!(
            "node {} is not serving clients yet ({why}); try another server or retry",
            self.id
        )))
    }

    /// Executes the replica's commands, in order, until it has none.
    fn run_commands(&mut self) {
        loop {
            let commands = self.replica.take_commands();
            if commands.is_empty() {
                self.release_log();
                return;
            }
            for command in commands {
                match command {
                    Command::Persist(write) => self.persist(write),
                    Command::Send { to, msg } => self.send_paxos(to, msg),
                    Command::SendLogged {
                        to,
                        ballot,
                        first,
                        last,
                        commit,
                    } => self.send_logged(to, ballot, first, last, commit),
                    Command::Apply { first, values } => self.apply_committed(first, values),
                    Command::ReadReady {
                        id,
                        index,
                        lease_until,
                    } => self.read_confirmed(id, Some(ReadIndex { index, lease_until })),
                    Command::ReadFailed { id } => self.read_confirmed(id, None),
                    Command::InstallSnapshot(snapshot) => self.install_snapshot(snapshot),
                }
            }
        }
    }
}

/// A result that arrives once a txn has gone through the log.
pub type Answer<T> = oneshot::Receiver<Result<T, Error>>;

/// Where a request comes from, as its connection tells: the client's
/// address (the `ip` ACL scheme) and the subject of the certificate it
/// presented over TLS (the `x509` scheme).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    pub ip: Option<std::net::IpAddr>,
    pub x509: Option<Arc<str>>,
}

/// Each txn kind has exactly one outcome kind; anything else is a bug in the
/// state machine, answered as a system error rather than a crash.
fn unreachable_outcome<T>(outcome: &TxnOutcome) -> Result<T, Error> {
    tracing::error!(?outcome, "state machine returned a mismatched outcome");
    Err(Error::Internal(format!("mismatched outcome {outcome:?}")))
}
