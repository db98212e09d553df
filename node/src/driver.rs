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

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rustc_hash::{FxHashMap, FxHashSet};
use synod_core::acl::{Id, Identity, digest_id};
use synod_core::codec::Proposal;
use synod_core::node::reads::{ReadAction, ReadBarriers, ReadError, ReadId, ReadIndex};
use synod_core::node::sessions::{PingAnswer, PingId, PingRefusal, SessionLiveness, Settled};
use synod_core::paxos::rng::Rng;
use synod_core::paxos::{
    self, Ballot, Command, Membership, Message, MonoMs, NodeId, PaxosError, ReadMode, Replica,
    Role, Slot, Snapshot, Value, Write,
};
use synod_core::state::{Applied, PendingSnapshot, StateConfig, StateMachine};
use synod_core::txn::{CloseReason, OpOutcome, Txn, TxnOutcome, WriteOp};
use synod_core::watch::{Trigger, WatchEvent, WatchKind, WatchRegistry, WatcherType};
use synod_core::{Error, Millis, SessionId, Zxid};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;

use crate::config::{Ensemble, NodeConfig};
use crate::durable::{DurableLog, LogWriter, Persisted, Records, Recovered, apply_value};
use crate::metrics::{Gauges, Metrics};
use crate::peer::{Inbound, PeerSender};
use crate::storage::StorageStats;
use crate::wire::{LogRecord, PeerMessage, snapshot_file_prefix};

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
}

/// The peer transport, for a node with peers.
#[derive(Debug)]
pub struct Network {
    pub sender: PeerSender,
    pub inbound: mpsc::Receiver<Inbound>,
}

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
/// without one the node keeps its state in memory only.
pub fn spawn(
    config: &NodeConfig,
    ensemble: &Ensemble,
    recovered: Recovered,
    log: Option<DurableLog>,
    metrics: Arc<Metrics>,
    network: Option<Network>,
) -> Result<(DriverHandle, tokio::task::JoinHandle<()>), StartError> {
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
    };
    let Recovered {
        machine,
        durable: durable_state,
    } = recovered;
    let single = replica_config.voters == [ensemble.id];
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
        next_record,
        buffer: Vec::new(),
        buffer_token: 0,
        in_flight: None,
        retry: None,
        next_batch: 0,
        error: None,
    });
    let mut state = NodeState::new(
        config, ensemble, started, machine, replica, wal, sender, metrics,
    );
    state.storage_stats = storage_stats;
    state.record_limits(config.state_config());
    state.turn();
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
                        break;
                    }
                },
                _ = paxos_ticker.tick() => {
                    let now = state.mono_now();
                    state.replica.tick(now);
                }
                _ = ticker.tick() => state.tick(),
                () = std::future::ready(()), if state.snapshotting() => state.snapshot_work(),
            }
            state.turn();
            if state.snapshotting() {
                // The snapshot branch is always ready, so without this the
                // driver would keep its worker thread until the snapshot is
                // encoded, and the network tasks queued on that worker
                // (other nodes' among them under `synod dev`) would wait.
                tokio::task::yield_now().await;
            }
        }
        tracing::debug!("driver stopped");
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

/// A request of this node's clients on its way through the ensemble.
struct Waiting {
    done: Done,
    submitted: Instant,
    /// Where the txn went: `None` while it waits here for a leader, then
    /// the leader that took it (this node, when leading).
    sent_to: Option<NodeId>,
}

impl std::fmt::Debug for Waiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiting")
            .field("sent_to", &self.sent_to)
            .finish_non_exhaustive()
    }
}

/// A proposal whose origin waits for it: a request of this node, or one
/// forwarded by a follower.
#[derive(Debug)]
struct Queued {
    origin: NodeId,
    request: u64,
    txn: Txn,
}

/// Reads waiting for the txns of their session.
#[derive(Default)]
struct DeferredReads(Vec<Job>);

impl std::fmt::Debug for DeferredReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} deferred reads", self.0.len())
    }
}

/// The write-ahead log as the driver feeds it.
#[derive(Debug)]
struct Wal {
    writer: LogWriter,
    next_record: u64,
    /// Records gathering for the next batch, and the highest replica
    /// token among them (0: none, for a checkpoint only).
    buffer: Vec<(u64, Vec<u8>)>,
    buffer_token: u64,
    in_flight: Option<WalBatch>,
    /// A batch that failed, appended again when `retry` is due.
    retry: Option<(WalBatch, Records, Instant)>,
    next_batch: u64,
    /// Why the last append failed, while it has not succeeded since.
    error: Option<String>,
}

#[derive(Debug, Clone, Copy)]
struct WalBatch {
    batch: u64,
    token: u64,
    last_record: u64,
    records: usize,
}

impl Wal {
    /// Queues a record; returns its index.
    fn push(&mut self, bytes: Vec<u8>, token: u64) -> u64 {
        let index = self.next_record;
        self.next_record += 1;
        self.buffer.push((index, bytes));
        self.buffer_token = self.buffer_token.max(token);
        index
    }
}

/// A snapshot after encoding, until the replica drops its log up to it.
#[derive(Debug)]
struct SnapshotInProgress {
    slot: Slot,
    membership: Membership,
    state: Bytes,
    stage: SnapshotStage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SnapshotStage {
    /// Waiting for the checkpoint record at this log index to be durable.
    Checkpoint(u64),
    /// The file is being written.
    Writing,
    /// Durable (or, in memory, nothing to write): the log can be dropped
    /// once the replica has committed the slot.
    Written,
}

/// Where a linearizable read's barrier is answered.
type ReadReply = oneshot::Sender<Result<(), Error>>;

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
    /// Request numbers; starts from the boot time so that a proposal of
    /// an earlier run of this node never answers a request of this one.
    next_request: u64,
    /// This node's requests not yet answered.
    waiting: FxHashMap<u64, Waiting>,
    /// This node's requests waiting for a leader to take them.
    queued: Vec<Queued>,
    /// At the leader: forwarded and own txns held back while a membership
    /// change commits.
    held: Vec<Queued>,
    /// Txns forwarded by followers, to propose.
    forwarded: Vec<Queued>,
    /// The leader seen at the end of the last turn.
    known_leader: Option<NodeId>,
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
    serving: bool,
    wal: Option<Wal>,
    snapshot_every: u64,
    last_snapshot: Zxid,
    /// The share, in thousandths, of `snapshot_every` and
    /// `snapshot_every_bytes` after which the next snapshot is due: drawn
    /// anew for every snapshot from [500, 1000), as ZooKeeper randomizes its
    /// snapCount. Nodes that apply the same log would otherwise all encode
    /// and write a snapshot at the same moment, and while all of them do, a
    /// majority's log writes wait behind the snapshot writes.
    snapshot_share: u64,
    snapshot_spacing: Rng,
    max_pending: usize,
    max_frame: usize,
    request_timeout: Duration,
    metrics: Arc<Metrics>,
    storage_stats: StorageStats,
    /// Txns of each session submitted and not yet answered.
    outstanding: FxHashMap<SessionId, u32>,
    /// Reads waiting for their session's outstanding txns.
    deferred: FxHashMap<SessionId, DeferredReads>,
    /// Bytes handed to the log since the last snapshot began.
    logged_since_snapshot: u64,
    snapshot_every_bytes: u64,
    snapshot_txns_per_znode: f64,
    /// The snapshot being encoded, a slice at a time.
    snapshotting: Option<PendingSnapshot>,
    /// The snapshot after encoding: waiting for its checkpoint, written,
    /// or waiting to compact the replica's log.
    snapshot: Option<SnapshotInProgress>,
    /// Containers and TTL nodes whose reap is on its way through the log.
    reaping: FxHashSet<String>,
}

/// Znodes encoded per slice of a running snapshot: a few milliseconds of
/// work between two jobs of the driver.
const SNAPSHOT_SLICE: usize = 1_000;

/// Bounds the reaps one tick submits, so a mass expiry of TTL nodes is
/// spread over ticks instead of flooding one batch.
const MAX_REAPS_PER_TICK: usize = 1024;

/// Wait before appending a failed batch again.
const WAL_RETRY: Duration = Duration::from_millis(500);

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
    #[allow(clippy::too_many_arguments, reason = "one constructor, called once")]
    fn new(
        config: &NodeConfig,
        ensemble: &Ensemble,
        started: Instant,
        machine: StateMachine,
        replica: Replica<Vec<u8>>,
        wal: Option<Wal>,
        peers: Option<PeerSender>,
        metrics: Arc<Metrics>,
    ) -> Self {
        // Whoever decides expiry gives every recovered session a full
        // timeout, as a new ZooKeeper leader does.
        let sessions = SessionLiveness::new(config.max_clock_drift_ppm, machine.sessions(), 0);
        let last_snapshot = machine.applied();
        let mut snapshot_spacing = Rng::new(ensemble.id ^ wall_clock_nanos() as u64);
        let snapshot_share = snapshot_spacing.range(500, 1000);
        NodeState {
            id: ensemble.id,
            replica,
            peers,
            machine,
            state_config: config.state_config(),
            watches: WatchRegistry::new(config.max_watches_per_session),
            sessions,
            ping_replies: FxHashMap::default(),
            authoritative: false,
            outboxes: FxHashMap::default(),
            auth: FxHashMap::default(),
            event_buffer: config.watch_event_buffer,
            started,
            scratch: Vec::new(),
            next_request: u64::try_from(wall_clock_nanos()).unwrap_or(u64::MAX / 2),
            waiting: FxHashMap::default(),
            queued: Vec::new(),
            held: Vec::new(),
            forwarded: Vec::new(),
            known_leader: None,
            leader_silence_limit: config.election_timeout_ms,
            // Read ids, like request numbers, differ between runs.
            reads: ReadBarriers::new(wall_clock_nanos() as u64),
            read_replies: FxHashMap::default(),
            serving: false,
            wal,
            snapshot_every: config.snapshot_every_txns,
            last_snapshot,
            snapshot_share,
            snapshot_spacing,
            max_pending: config.max_pending_txns,
            max_frame: config.max_peer_frame_bytes,
            request_timeout: Duration::from_millis(config.request_timeout_ms),
            metrics,
            storage_stats: StorageStats::default(),
            outstanding: FxHashMap::default(),
            deferred: FxHashMap::default(),
            logged_since_snapshot: 0,
            snapshot_every_bytes: config.snapshot_every_bytes,
            snapshot_txns_per_znode: config.snapshot_txns_per_znode,
            snapshotting: None,
            snapshot: None,
            reaping: FxHashSet::default(),
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
            pending_txns: self.waiting.len() as u64,
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
        }
    }

    pub fn machine(&self) -> &StateMachine {
        &self.machine
    }

    /// Whether this node should receive clients: it is a member, knows a
    /// leader and has applied everything it knows to be committed.
    pub fn readiness(&self) -> Result<(), String> {
        if !self.replica.membership().contains(self.id) {
            return Err(format!("node {} is not in the configuration", self.id));
        }
        let Some(leader) = self.replica.leader() else {
            return Err("no leader known".into());
        };
        if let Some(silence) = self.leader_silence() {
            return Err(format!(
                "no word from the leader (node {leader}) for {silence} ms"
            ));
        }
        if self.replica.role() == Role::Leader && !self.replica.leader_caught_up() {
            return Err("newly elected: committing what earlier leaders left".into());
        }
        let applied = u64::try_from(self.machine.applied()).unwrap_or(0);
        let commit = self.replica.commit_index();
        if applied < commit {
            return Err(format!(
                "catching up: applied {applied} of {commit} (leader {leader})"
            ));
        }
        Ok(())
    }

    /// At a follower that has not heard from its leader for the election
    /// timeout or longer: for how long. It then serves no client, so that
    /// they move to a member in contact with the leader; its keep-alive
    /// vouches run out on their own.
    fn leader_silence(&self) -> Option<u64> {
        if self.replica.role() == Role::Leader {
            return None;
        }
        let heard = self.replica.leader_heard_at()?;
        let silence = self.mono_now().saturating_sub(heard);
        (silence >= self.leader_silence_limit).then_some(silence)
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
        }
    }

    /// The core's time: milliseconds on the monotonic clock, read when an
    /// input is handled (after it arrived), so that a pause of the process
    /// is seen whole by the next decision. The replica, the read barriers
    /// and session liveness all read it.
    pub fn mono_now(&self) -> MonoMs {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Refuses new work while too much waits for the ensemble or the disk,
    /// so that a stalled disk or a lost quorum turns into errors for
    /// clients instead of unbounded memory.
    fn admit(&self) -> Result<(), Error> {
        if let Some(error) = self.wal.as_ref().and_then(|w| w.error.as_ref()) {
            return Err(Error::Throttled(format!(
                "the write-ahead log cannot be written ({error}); retry later"
            )));
        }
        let waiting = self.waiting.len();
        if waiting >= self.max_pending {
            return Err(Error::Throttled(format!(
                "{waiting} txns are waiting for the ensemble; retry later"
            )));
        }
        Ok(())
    }

    /// Queues `txn` for the log; `done` runs once it is applied here.
    pub fn submit(&mut self, txn: Txn, done: Done) {
        let session = match &txn {
            Txn::Write { session, .. } | Txn::CloseSession { session, .. } => *session,
            _ => 0,
        };
        // Count the session's txns on their way through the log, so that
        // its later reads wait for them (FIFO per session, as ZooKeeper).
        let done: Done = if session == 0 {
            done
        } else {
            *self.outstanding.entry(session).or_default() += 1;
            Box::new(move |state, applied| {
                done(state, applied);
                state.finished(session);
            })
        };
        let request = self.next_request;
        self.next_request += 1;
        self.waiting.insert(
            request,
            Waiting {
                done,
                submitted: Instant::now(),
                sent_to: None,
            },
        );
        self.queued.push(Queued {
            origin: self.id,
            request,
            txn,
        });
    }

    /// Answers a request of this node, if it still waits.
    fn answer(&mut self, request: u64, result: Result<&Applied, Error>) {
        if let Some(waiting) = self.waiting.remove(&request) {
            if result.is_ok() {
                self.metrics
                    .commit_seconds
                    .observe(waiting.submitted.elapsed().as_secs_f64());
            }
            (waiting.done)(self, result);
        }
    }

    /// One txn of `session` has been answered; when it was the last one,
    /// the reads that waited for it run, in order.
    fn finished(&mut self, session: SessionId) {
        let Some(count) = self.outstanding.get_mut(&session) else {
            return;
        };
        *count -= 1;
        if *count > 0 {
            return;
        }
        self.outstanding.remove(&session);
        for job in self
            .deferred
            .remove(&session)
            .map(|d| d.0)
            .unwrap_or_default()
        {
            job(self);
        }
    }

    /// Runs a read of `session` after every txn the session submitted
    /// before it has been answered: a client never reads around its own
    /// write. Reads of a session with nothing in flight run at once.
    pub fn in_order<R, F>(&mut self, session: SessionId, read: F) -> Answer<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut NodeState) -> Result<R, Error> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |state| {
            let _ = tx.send(read(state));
        });
        if session != 0 && self.outstanding.contains_key(&session) {
            self.deferred.entry(session).or_default().0.push(job);
        } else {
            job(self);
        }
        rx
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
        if self.replica.leader().is_none() || self.leader_silence().is_some() {
            if self.serving {
                tracing::info!(
                    why = %self.readiness().err().unwrap_or_default(),
                    "not serving clients"
                );
            }
            self.serving = false;
            let settled = self.sessions.lost_leader();
            self.answer_pings(settled);
        } else if !self.serving && self.readiness().is_ok() {
            tracing::info!(
                applied = self.machine.applied(),
                leader = ?self.replica.leader(),
                "serving clients"
            );
            self.serving = true;
        }
    }

    /// Starts a linearizable read: answered once this node has applied the
    /// commit index the leader confirmed after the request arrived (by its
    /// lease, or a heartbeat round when leases are off). A follower asks
    /// the leader for that index (`synod_core::node::reads` decides).
    pub fn read_barrier(&mut self) -> Result<Answer<()>, Error> {
        self.check_serving()?;
        let now = self.mono_now();
        let (id, actions) = self
            .reads
            .ask(&mut self.replica, now)
            .map_err(|e| Error::ConnectionLoss(e.to_string()))?;
        let (tx, rx) = oneshot::channel();
        self.read_replies.insert(id, tx);
        self.read_actions(actions);
        Ok(rx)
    }

    /// Carries out what the read barriers decided.
    fn read_actions(&mut self, actions: Vec<ReadAction>) {
        for action in actions {
            match action {
                ReadAction::AskLeader { to, request } => {
                    let frame = PeerMessage::ReadIndex(request).encode();
                    if let Err(e) = self.send_frame(to, frame) {
                        let error = ReadError::NotLeader(format!(
                            "cannot reach the leader (node {to}): {e}"
                        ));
                        let failed = self.reads.fail(request, error);
                        self.read_actions(failed);
                    }
                }
                ReadAction::ReplyIndex { to, request, index } => {
                    let reply = PeerMessage::ReadIndexReply { request, index };
                    if let Err(error) = self.send_frame(to, reply.encode()) {
                        tracing::debug!(%error, to, "cannot answer a read-index request");
                    }
                }
                ReadAction::Answer { id, result } => {
                    if let Some(reply) = self.read_replies.remove(&id) {
                        let _ =
                            reply.send(result.map_err(|e| Error::ConnectionLoss(e.to_string())));
                    }
                }
            }
        }
    }

    /// A read index arrived (or could not be had) for read `id`.
    fn read_confirmed(&mut self, id: ReadId, at: Option<ReadIndex>) {
        let applied = u64::try_from(self.machine.applied()).unwrap_or(0);
        let now = self.mono_now();
        let actions = self
            .reads
            .confirmed(&mut self.replica, id, at, applied, now);
        self.read_actions(actions);
    }

    /// Answers the linearizable reads whose index is now applied.
    fn release_reads(&mut self) {
        if self.reads.is_empty() {
            return;
        }
        let applied = u64::try_from(self.machine.applied()).unwrap_or(0);
        let now = self.mono_now();
        let actions = self.reads.applied(&mut self.replica, applied, now);
        self.read_actions(actions);
    }

    /// Whether clients are being served (see `serving`).
    pub fn is_serving(&self) -> bool {
        self.serving
    }

    /// Refuses client requests while the node is not serving.
    fn check_serving(&self) -> Result<(), Error> {
        if self.serving {
            return Ok(());
        }
        let why = self
            .readiness()
            .err()
            .unwrap_or_else(|| "starting".to_owned());
        Err(Error::ConnectionLoss(format!(
            "node {} is not serving clients yet ({why}); try another server or retry",
            self.id
        )))
    }

    fn route_txns(&mut self) {
        if self.queued.is_empty() && self.forwarded.is_empty() && self.held.is_empty() {
            return;
        }
        let leading = self.replica.role() == Role::Leader;
        match self.replica.leader() {
            Some(_) if leading => self.propose_queued(),
            Some(leader) if leader != self.id => {
                let queued = std::mem::take(&mut self.queued);
                let mut batch = Vec::with_capacity(queued.len());
                for q in queued {
                    if let Some(w) = self.waiting.get_mut(&q.request) {
                        w.sent_to = Some(leader);
                        batch.push((q.request, q.txn));
                    }
                }
                self.forward(leader, batch);
                self.refuse_forwarded();
                for q in std::mem::take(&mut self.held) {
                    self.requeue_or_refuse(q);
                }
            }
            _ => {
                // Our own wait for a leader (or time out); others' go back.
                self.refuse_forwarded();
                for q in std::mem::take(&mut self.held) {
                    self.requeue_or_refuse(q);
                }
            }
        }
    }

    /// Sends `txns` to the leader, split so no frame is over the limit.
    fn forward(&mut self, leader: NodeId, mut txns: Vec<(u64, Txn)>) {
        while !txns.is_empty() {
            let mut take = txns.len();
            loop {
                let frame = PeerMessage::Forward(txns[..take].to_vec()).encode();
                if frame.len() <= self.max_frame || take == 1 {
                    let rest = txns.split_off(take);
                    let sent = txns;
                    txns = rest;
                    if let Err(error) = self.send_frame(leader, frame) {
                        // The frame is lost: answer now rather than at the
                        // timeout, since the leader never saw these.
                        tracing::debug!(%error, "cannot forward writes to the leader");
                        for (request, _) in sent {
                            self.answer(
                                request,
                                Err(Error::ConnectionLoss(format!(
                                    "cannot reach the leader (node {leader}): {error}"
                                ))),
                            );
                        }
                    }
                    break;
                }
                take = take.div_ceil(2);
            }
        }
    }

    fn requeue_or_refuse(&mut self, q: Queued) {
        if q.origin == self.id {
            self.queued.push(q);
        } else {
            self.refuse(q.origin, vec![q.request]);
        }
    }

    fn refuse_forwarded(&mut self) {
        let mut by_origin: FxHashMap<NodeId, Vec<u64>> = FxHashMap::default();
        for q in std::mem::take(&mut self.forwarded) {
            by_origin.entry(q.origin).or_default().push(q.request);
        }
        for (origin, requests) in by_origin {
            self.refuse(origin, requests);
        }
    }

    fn refuse(&mut self, to: NodeId, requests: Vec<u64>) {
        let frame = PeerMessage::Refused(requests).encode();
        if let Err(error) = self.send_frame(to, frame) {
            tracing::debug!(%error, to, "cannot refuse forwarded writes; they time out");
        }
    }

    /// At the leader: proposes everything queued, forwarded and held, in
    /// slots of the next batches, stamped with this leader's time.
    fn propose_queued(&mut self) {
        let time = wall_clock_ms();
        let mut all = std::mem::take(&mut self.held);
        all.append(&mut self.forwarded);
        all.append(&mut self.queued);
        let mut iter = all.into_iter().peekable();
        let budget = self.max_frame / 2;
        while iter.peek().is_some() {
            // The txns stay here, so a refused batch can be held or answered
            // without decoding what was encoded.
            let mut batch = Vec::new();
            let mut values = Vec::new();
            let mut bytes = 0;
            while let Some(q) = iter.next_if(|_| values.len() < 1024 && bytes < budget) {
                let value = Proposal::encode_parts(q.origin, q.request, time, &q.txn);
                bytes += value.len();
                values.push(value);
                batch.push(q);
            }
            match self.replica.propose(values) {
                Ok(_) => {
                    for q in batch {
                        if q.origin == self.id
                            && let Some(w) = self.waiting.get_mut(&q.request)
                        {
                            w.sent_to = Some(self.id);
                        }
                    }
                }
                // Proposed again once the membership change commits.
                Err(PaxosError::ConfigChangePending) => self.held.extend(batch),
                Err(error) => {
                    tracing::warn!(%error, txns = batch.len(), "cannot propose");
                    for q in batch {
                        if q.origin == self.id {
                            self.answer(q.request, Err(Error::Throttled(error.to_string())));
                        } else {
                            self.refuse(q.origin, vec![q.request]);
                        }
                    }
                }
            }
        }
    }

    /// Executes the replica's commands, in order, until it has none.
    fn run_commands(&mut self) {
        loop {
            let commands = self.replica.take_commands();
            if commands.is_empty() {
                return;
            }
            for command in commands {
                match command {
                    Command::Persist(write) => self.persist(write),
                    Command::Send { to, msg } => self.send_paxos(to, msg),
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

    fn persist(&mut self, write: Write<Vec<u8>>) {
        let token = write.token;
        let Some(wal) = &mut self.wal else {
            // In memory: written as soon as asked.
            self.replica.persisted(token);
            return;
        };
        let record = LogRecord {
            commit: self.replica.commit_index(),
            write,
        }
        .encode();
        self.logged_since_snapshot += record.len() as u64;
        wal.push(record, token);
    }

    /// Starts the next log batch when none is in flight: everything
    /// gathered since the last one goes with one fdatasync.
    fn flush_wal(&mut self) {
        let Some(wal) = &mut self.wal else {
            return;
        };
        if wal.in_flight.is_some() {
            return;
        }
        let (batch, records) = match wal.retry.take() {
            Some((batch, records, due)) => {
                if Instant::now() < due {
                    wal.retry = Some((batch, records, due));
                    return;
                }
                (batch, records)
            }
            None => {
                if wal.buffer.is_empty() {
                    return;
                }
                let records = std::mem::take(&mut wal.buffer);
                let batch = WalBatch {
                    batch: wal.next_batch,
                    token: std::mem::take(&mut wal.buffer_token),
                    last_record: records.last().map_or(0, |(i, _)| *i),
                    records: records.len(),
                };
                wal.next_batch += 1;
                (batch, records)
            }
        };
        if wal.writer.append(batch.batch, records) {
            wal.in_flight = Some(batch);
        } else {
            self.fail_all("the storage thread has stopped");
        }
    }

    /// Storage finished a job.
    pub fn persisted(&mut self, done: Persisted) {
        match done {
            Persisted::Batch {
                batch,
                result,
                fsync_micros,
                stats,
            } => {
                self.storage_stats = stats;
                let Some(wal) = &mut self.wal else {
                    return;
                };
                let Some(in_flight) = wal.in_flight.take_if(|f| f.batch == batch) else {
                    tracing::error!(batch, "storage reported a batch that is not in flight");
                    return;
                };
                match result {
                    Ok(()) => {
                        if wal.error.take().is_some() {
                            tracing::info!("the write-ahead log is writable again");
                        }
                        self.metrics
                            .fsync_seconds
                            .observe(fsync_micros as f64 / 1e6);
                        self.metrics.batch_txns.observe(in_flight.records as f64);
                        if in_flight.token > 0 {
                            self.replica.persisted(in_flight.token);
                        }
                        self.checkpoint_durable(in_flight.last_record);
                    }
                    Err((message, records)) => {
                        // Nothing of the batch counts; the replica still
                        // needs it, so it is appended again. Meanwhile new
                        // writes are refused with the reason.
                        tracing::error!(%message, records = records.len(), "write to the log failed; retrying");
                        wal.error = Some(message);
                        wal.retry = Some((in_flight, records, Instant::now() + WAL_RETRY));
                    }
                }
            }
            Persisted::Snapshot {
                index,
                result,
                stats,
            } => {
                self.storage_stats = stats;
                match result {
                    Ok(()) => {
                        tracing::info!(log_index = index, "snapshot written");
                        if let Some(snapshot) = &mut self.snapshot {
                            snapshot.stage = SnapshotStage::Written;
                        }
                        self.try_compact();
                    }
                    Err(message) => {
                        tracing::error!(log_index = index, %message, "snapshot failed; will retry");
                        self.snapshot = None;
                    }
                }
            }
        }
    }

    /// Records up to `last_record` are durable: if the running snapshot's
    /// checkpoint is among them, its file can be written.
    fn checkpoint_durable(&mut self, last_record: u64) {
        let Some(snapshot) = &mut self.snapshot else {
            return;
        };
        let SnapshotStage::Checkpoint(checkpoint) = snapshot.stage else {
            return;
        };
        if checkpoint > last_record {
            return;
        }
        snapshot.stage = SnapshotStage::Writing;
        let prefix = snapshot_file_prefix(snapshot.slot, &snapshot.membership);
        let index = checkpoint - 1;
        tracing::debug!(
            slot = snapshot.slot,
            log_index = index,
            "writing snapshot file"
        );
        if let Some(wal) = &self.wal
            && !wal.writer.snapshot(index, prefix, snapshot.state.clone())
        {
            tracing::error!("the snapshot thread has stopped");
        }
    }

    /// Drops the replica's log up to the snapshot once the file is durable
    /// (or at once in memory) and the replica has committed its slot.
    fn try_compact(&mut self) {
        let commit = self.replica.commit_index();
        let Some(snapshot) = self
            .snapshot
            .take_if(|s| s.stage == SnapshotStage::Written && s.slot <= commit)
        else {
            return;
        };
        if let Err(error) = self.replica.compact(snapshot.slot, snapshot.state) {
            tracing::warn!(%error, "cannot compact the log");
        }
    }

    /// Sends a consensus message, split when its frame would be too large
    /// (accepts and catch-up carry consecutive slots, which split cleanly).
    fn send_paxos(&mut self, to: NodeId, msg: Message<Vec<u8>>) {
        let message = PeerMessage::Paxos(msg);
        let frame = message.encode();
        if frame.len() <= self.max_frame {
            if let Err(error) = self.send_frame(to, frame) {
                tracing::trace!(%error, to, "consensus message dropped");
            }
            return;
        }
        let PeerMessage::Paxos(msg) = message else {
            return;
        };
        type Make = fn(Ballot, Slot, Vec<Value<Vec<u8>>>, Slot) -> Message<Vec<u8>>;
        let (ballot, first, mut values, commit, make): (_, _, _, _, Make) = match msg {
            Message::Accept {
                ballot,
                first,
                values,
                commit,
            } if values.len() > 1 => (
                ballot,
                first,
                values,
                commit,
                |ballot, first, values, commit| Message::Accept {
                    ballot,
                    first,
                    values,
                    commit,
                },
            ),
            Message::Learn {
                ballot,
                first,
                values,
                commit,
            } if values.len() > 1 => (
                ballot,
                first,
                values,
                commit,
                |ballot, first, values, commit| Message::Learn {
                    ballot,
                    first,
                    values,
                    commit,
                },
            ),
            other => {
                tracing::error!(
                    to,
                    ballot = ?other.ballot(),
                    limit = self.max_frame,
                    "consensus message over the peer frame limit dropped; raise --max-peer-frame-bytes"
                );
                return;
            }
        };
        let rest = values.split_off(values.len() / 2);
        let second = first + values.len() as Slot;
        self.send_paxos(to, make(ballot, first, values, commit));
        self.send_paxos(to, make(ballot, second, rest, commit));
    }

    fn send_frame(&self, to: NodeId, frame: Vec<u8>) -> Result<(), crate::peer::SendError> {
        match &self.peers {
            Some(peers) => peers.send(to, frame),
            None => Err(crate::peer::SendError::UnknownPeer(to)),
        }
    }

    /// A frame from a peer (already checked for sender and size).
    pub fn peer_frame(&mut self, inbound: Inbound) {
        let from = inbound.from;
        let message = match PeerMessage::decode(&inbound.payload) {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(from, %error, "dropped a malformed peer frame");
                return;
            }
        };
        // With an address template the transport takes any node id, so
        // that members added later are heard; others are dropped here.
        if self.peers.as_ref().is_some_and(PeerSender::open_membership)
            && !self.replica.membership().contains(from)
        {
            tracing::debug!(
                from,
                "dropped a frame from a node outside the configuration"
            );
            return;
        }
        match message {
            PeerMessage::Paxos(msg) => {
                let now = self.mono_now();
                self.replica.step(from, msg, now);
            }
            PeerMessage::Forward(txns) => {
                if self.replica.role() == Role::Leader {
                    self.forwarded
                        .extend(txns.into_iter().map(|(request, txn)| Queued {
                            origin: from,
                            request,
                            txn,
                        }));
                } else {
                    self.refuse(from, txns.into_iter().map(|(r, _)| r).collect());
                }
            }
            PeerMessage::Touch { round, sessions } => self.liveness_report(from, round, sessions),
            PeerMessage::TouchAck { round, expired } => {
                let now = self.mono_now();
                let table = self.machine.sessions();
                let settled = self.sessions.on_answer(
                    from,
                    round,
                    &expired,
                    |s| table.get(s).map(|i| i.timeout_ms),
                    now,
                );
                self.answer_pings(settled);
            }
            PeerMessage::ReadIndex(request) => {
                let now = self.mono_now();
                let actions = self
                    .reads
                    .remote_asked(&mut self.replica, from, request, now);
                self.read_actions(actions);
            }
            PeerMessage::ReadIndexReply { request, index } => {
                let at = index.map(|index| ReadIndex {
                    index,
                    lease_until: None,
                });
                self.read_confirmed(request, at);
            }
            PeerMessage::Refused(requests) => {
                // Not in the log: the client may safely retry.
                for request in requests {
                    self.answer(
                        request,
                        Err(Error::ConnectionLoss(format!(
                            "node {from} is no longer the leader; retry"
                        ))),
                    );
                }
            }
        }
    }

    /// Applies committed slots. Slots this node already applied (replayed
    /// from its own log at start) are skipped.
    fn apply_committed(&mut self, first: Slot, values: Vec<Value<Vec<u8>>>) {
        for (i, value) in values.iter().enumerate() {
            let slot = first + i as Slot;
            if i64::try_from(slot).unwrap_or(i64::MAX) <= self.machine.applied() {
                continue;
            }
            if let Some((origin, request, applied)) = apply_value(&mut self.machine, slot, value) {
                self.after_apply(origin, request, applied);
            }
        }
        self.release_reads();
        self.maybe_snapshot();
    }

    fn after_apply(&mut self, origin: NodeId, request: u64, applied: Applied) {
        self.fire(&applied.triggers);
        match &applied.outcome {
            TxnOutcome::SessionClosed { session, .. } => self.forget_session(*session),
            // Every node tracks every session, so a new leader starts from
            // the full table.
            TxnOutcome::SessionCreated(Ok((session, timeout_ms))) => {
                let now = self.mono_now();
                self.sessions.opened(*session, *timeout_ms, now);
            }
            _ => {}
        }
        if origin == self.id {
            self.answer(request, Ok(&applied));
        }
    }

    /// The leader sent a snapshot: it replaces the state machine.
    fn install_snapshot(&mut self, snapshot: Snapshot) {
        let machine = match StateMachine::decode_snapshot(self.state_config.clone(), &snapshot.data)
        {
            Ok(machine) => machine,
            Err(error) => {
                tracing::error!(index = snapshot.index, %error, "snapshot from the leader does not decode; ignored");
                return;
            }
        };
        tracing::info!(
            index = snapshot.index,
            bytes = snapshot.data.len(),
            "installed a snapshot from the leader"
        );
        let old = std::mem::replace(&mut self.machine, machine);
        self.snapshotting = None;
        self.snapshot = None;
        self.last_snapshot = self.machine.applied();
        self.fire_skipped_changes(&old);
        let now = self.mono_now();
        self.sessions.restart(self.machine.sessions(), now);
        if self.wal.is_some() {
            // Compacted already inside the replica; only the file is owed.
            self.begin_snapshot_file(snapshot.index, snapshot.membership, snapshot.data);
        }
    }

    /// Matches triggers against the watches and queues the events for their
    /// sessions' streams.
    fn fire(&mut self, triggers: &[Trigger]) {
        for trigger in triggers {
            self.watches.fire(trigger, &mut self.scratch);
        }
        let events = std::mem::take(&mut self.scratch);
        for event in &events {
            self.enqueue(event);
        }
        self.scratch = events;
        self.scratch.clear();
    }

    /// After a jump from `old` to the installed state: fires the watches the
    /// skipped txns would have fired, and drops what belonged to sessions
    /// that ended among them.
    fn fire_skipped_changes(&mut self, old: &StateMachine) {
        let watched = self.watches.watched_paths();
        if !watched.is_empty() {
            let triggers =
                self.machine
                    .tree()
                    .jump_triggers(old.tree(), &watched, self.machine.applied());
            self.fire(&triggers);
        }
        let ended: Vec<SessionId> = self
            .outboxes
            .keys()
            .chain(self.auth.keys())
            .copied()
            .filter(|session| !self.machine.sessions().contains(*session))
            .collect();
        for session in ended {
            self.forget_session(session);
        }
    }

    /// Appends the checkpoint for a snapshot at `slot`; its file is written
    /// once the checkpoint is durable.
    fn begin_snapshot_file(&mut self, slot: Slot, membership: Membership, state: Bytes) {
        let checkpoint = || {
            LogRecord {
                commit: self.replica.commit_index(),
                write: Write {
                    token: 0,
                    promised: Some(self.replica.promised()),
                    entries: self.replica.accepted_after(slot),
                },
            }
            .encode()
        };
        let stage = match &mut self.wal {
            Some(wal) => SnapshotStage::Checkpoint(wal.push(checkpoint(), 0)),
            None => SnapshotStage::Written,
        };
        self.snapshot = Some(SnapshotInProgress {
            slot,
            membership,
            state,
            stage,
        });
    }

    /// Notices a change of leader: counts it, restarts session clocks on a
    /// new leader, and answers requests that went to the old one (their
    /// outcome is unknown: they may still commit).
    fn watch_leader(&mut self) {
        let leader = self.replica.leader();
        if leader == self.known_leader {
            return;
        }
        let old = self.known_leader;
        self.known_leader = leader;
        tracing::info!(?old, new = ?leader, "leader changed");
        if leader.is_some() {
            self.metrics
                .leader_changes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(old) = old {
            let lost: Vec<u64> = self
                .waiting
                .iter()
                .filter(|(_, w)| w.sent_to == Some(old))
                .map(|(r, _)| *r)
                .collect();
            for request in lost {
                self.answer(
                    request,
                    Err(Error::ConnectionLoss(format!(
                        "the leader (node {old}) changed while the request was in flight; its outcome is unknown"
                    ))),
                );
            }
        }
    }

    /// Whether this node leads and has applied everything committed,
    /// including what earlier leaders committed: only then is its session
    /// table the ensemble's, and only then does it decide about sessions (a
    /// Paxos leader may be elected with a stale log; the simulator found
    /// one that acknowledged a keep-alive of a session already closed).
    fn is_authoritative(&self) -> bool {
        self.replica.role() == Role::Leader
            && self.replica.leader_caught_up()
            && u64::try_from(self.machine.applied()).unwrap_or(0) >= self.replica.commit_index()
    }

    /// On becoming the authoritative leader, every session gets a full
    /// timeout and waiting keep-alives are answered.
    fn watch_authority(&mut self) {
        let authoritative = self.is_authoritative();
        if authoritative && !self.authoritative {
            let now = self.mono_now();
            let settled = self.sessions.became_leader(self.machine.sessions(), now);
            self.answer_pings(settled);
        }
        self.authoritative = authoritative;
    }

    fn maybe_snapshot(&mut self) {
        let applied = self.machine.applied();
        let share = |every: u64| every.saturating_mul(self.snapshot_share) / 1000;
        let txns = u64::try_from(applied - self.last_snapshot).unwrap_or(0);
        // As f64: counts far below 2^52 convert exactly enough.
        let enough_for_the_tree =
            txns as f64 >= self.machine.tree().len() as f64 * self.snapshot_txns_per_znode;
        let due = (txns >= share(self.snapshot_every).max(1) && enough_for_the_tree)
            || self.logged_since_snapshot >= share(self.snapshot_every_bytes).max(1);
        if !due || self.snapshot.is_some() || self.snapshotting.is_some() {
            return;
        }
        self.start_snapshot();
    }

    /// Starts encoding a snapshot of the applied state; returns its index.
    fn start_snapshot(&mut self) -> Zxid {
        let applied = self.machine.applied();
        let started = Instant::now();
        self.snapshotting = Some(self.machine.begin_snapshot());
        self.logged_since_snapshot = 0;
        self.last_snapshot = applied;
        self.snapshot_share = self.snapshot_spacing.range(500, 1000);
        tracing::info!(
            index = applied,
            begin_ms = started.elapsed().as_millis() as u64,
            "taking a snapshot"
        );
        applied
    }

    /// Whether a snapshot is being encoded.
    pub fn snapshotting(&self) -> bool {
        self.snapshotting.is_some()
    }

    /// Encodes the next slice of the running snapshot; the driver calls it
    /// between jobs, so requests are served while a large tree is encoded.
    pub fn snapshot_work(&mut self) {
        let Some(snapshot) = &mut self.snapshotting else {
            return;
        };
        let Some(index) = self.machine.snapshot_step(snapshot, SNAPSHOT_SLICE) else {
            return;
        };
        let Some(finished) = self.snapshotting.take() else {
            return;
        };
        let slot = u64::try_from(index).unwrap_or(0);
        tracing::debug!(slot, bytes = finished.bytes.len(), "snapshot encoded");
        let membership = self.replica.membership_at(slot);
        self.begin_snapshot_file(slot, membership, finished.bytes.into());
    }

    /// Answers every request waiting with an error: the log can take no
    /// more.
    fn fail_all(&mut self, why: &str) {
        let requests: Vec<u64> = self.waiting.keys().copied().collect();
        for request in requests {
            self.answer(request, Err(Error::Internal(why.to_owned())));
        }
        self.queued.clear();
    }

    fn enqueue(&mut self, event: &WatchEvent) {
        let outbox = self.outboxes.entry(event.session).or_default();
        outbox.seq += 1;
        let message = crate::convert::watch_event(event, outbox.seq);
        if outbox.recent.len() == self.event_buffer {
            outbox.recent.pop_front();
        }
        outbox.recent.push_back(message.clone());
        if let Some(subscriber) = &outbox.subscriber
            && subscriber.try_send(message).is_err()
        {
            // A full or closed stream is dropped; the client reconnects it
            // and is replayed from `recent`.
            outbox.subscriber = None;
        }
    }

    fn forget_session(&mut self, session: SessionId) {
        self.sessions.closed(session);
        self.watches.remove_session(session);
        self.outboxes.remove(&session);
        self.auth.remove(&session);
    }

    /// The header for a response to `session` from the current state.
    pub fn header(&self, session: SessionId) -> Header {
        Header {
            zxid: self.machine.applied(),
            watch_seq: self.outboxes.get(&session).map_or(0, |o| o.seq),
        }
    }

    /// At the leader: a follower's report of the sessions its clients were
    /// heard from. Answered only while the lease holds (see
    /// `synod_core::node::liveness` for why) and the state is caught up,
    /// naming the sessions that are no longer alive here.
    fn liveness_report(&mut self, from: NodeId, round: u64, sessions: Vec<SessionId>) {
        let now = self.mono_now();
        let may_vouch = self.replica.leader_caught_up()
            && u64::try_from(self.machine.applied()).unwrap_or(0) >= self.replica.commit_index()
            && self.replica.lease_holds(now);
        let table = self.machine.sessions();
        let answer = self.sessions.on_report(
            sessions,
            |s| table.get(s).map(|i| i.timeout_ms),
            may_vouch,
            now,
        );
        if let Some(expired) = answer {
            let ack = PeerMessage::TouchAck { round, expired };
            if let Err(error) = self.send_frame(from, ack.encode()) {
                tracing::debug!(%error, from, "cannot answer a liveness report");
            }
        }
    }

    /// Answers the keep-alives the core settled.
    fn answer_pings(&mut self, settled: Vec<Settled>) {
        for ping in settled {
            let Some(reply) = self.ping_replies.remove(&ping.id) else {
                continue;
            };
            let session = ping.session;
            let answer = match ping.result {
                Ok(()) => self
                    .machine
                    .sessions()
                    .get(session)
                    .map(|s| s.timeout_ms)
                    .ok_or(Error::SessionExpired(session)),
                Err(PingRefusal::Expired) => Err(Error::SessionExpired(session)),
                Err(PingRefusal::Unconfirmed) => Err(Error::ConnectionLoss(
                    "the leader did not confirm the session here; try another server".into(),
                )),
            };
            let _ = reply.send(answer);
        }
    }

    /// Checks that a request's session is open and counts it as a sign of
    /// life. Session 0 means none.
    fn live(&mut self, session: SessionId) -> Result<(), Error> {
        self.check_serving()?;
        if session == 0 {
            return Ok(());
        }
        match self.machine.sessions().get(session) {
            Some(info) => {
                // The leader decides expiry; a follower reports this with
                // the next tick's report.
                let now = self.mono_now();
                let authoritative = self.is_authoritative();
                self.sessions
                    .heard(session, info.timeout_ms, authoritative, now);
                Ok(())
            }
            None => Err(Error::SessionExpired(session)),
        }
    }

    /// The identity requests of `session` from `peer` run under.
    pub fn identity(&self, session: SessionId, peer: Option<std::net::IpAddr>) -> Identity {
        let mut identity = peer.map(Identity::with_ip).unwrap_or_default();
        if let Some(ids) = self.auth.get(&session) {
            identity.ids.extend(ids.iter().cloned());
        }
        identity
    }

    pub fn create_session(&mut self, timeout_ms: Millis) -> Answer<(SessionId, Millis, Header)> {
        let (tx, rx) = oneshot::channel();
        if let Err(error) = self.check_serving() {
            let _ = tx.send(Err(error));
            return rx;
        }
        self.submit(
            Txn::CreateSession { timeout_ms },
            Box::new(move |state, applied| {
                let result = applied.and_then(|applied| match &applied.outcome {
                    TxnOutcome::SessionCreated(Ok((session, timeout_ms))) => {
                        let (session, timeout_ms) = (*session, *timeout_ms);
                        state.outboxes.entry(session).or_default();
                        Ok((session, timeout_ms, state.header(session)))
                    }
                    TxnOutcome::SessionCreated(Err(e)) => Err(e.clone()),
                    other => unreachable_outcome(other),
                });
                let _ = tx.send(result);
            }),
        );
        rx
    }

    /// A keep-alive ping: the negotiated timeout, or SessionExpired.
    /// A keep-alive: answered with the negotiated timeout, or
    /// SessionExpired. The leader answers at once. A follower answers only
    /// while the leader's answers to its liveness reports vouch for the
    /// session, waiting for the next answer if none does yet: a member cut
    /// off from the leader never tells a client its session is alive after
    /// the ensemble may have expired it.
    pub fn ping(&mut self, session: SessionId) -> Answer<Millis> {
        let (reply, rx) = oneshot::channel();
        if session == 0 {
            let _ = reply.send(Err(Error::BadArguments(
                "keep-alive needs a session".into(),
            )));
            return rx;
        }
        if let Err(error) = self.live(session) {
            let _ = reply.send(Err(error));
            return rx;
        }
        let timeout = self
            .machine
            .sessions()
            .get(session)
            .map_or(0, |s| s.timeout_ms);
        let authoritative = self.is_authoritative();
        match self.sessions.ping(session, authoritative, self.mono_now()) {
            PingAnswer::Alive => {
                let _ = reply.send(Ok(timeout));
            }
            PingAnswer::Wait(id) => {
                self.ping_replies.insert(id, reply);
            }
        }
        rx
    }

    pub fn close_session(&mut self, session: SessionId) -> Result<Answer<Header>, Error> {
        self.live(session)?;
        let (tx, rx) = oneshot::channel();
        if session == 0 {
            let _ = tx.send(Ok(self.header(session)));
            return Ok(rx);
        }
        self.submit(
            Txn::CloseSession {
                session,
                reason: CloseReason::ClientClosed,
            },
            Box::new(move |state, applied| {
                let _ = tx.send(applied.map(|_| state.header(session)));
            }),
        );
        Ok(rx)
    }

    pub fn add_auth(
        &mut self,
        session: SessionId,
        scheme: &str,
        auth: &[u8],
    ) -> Result<Header, Error> {
        if session == 0 {
            return Err(Error::BadArguments("authentication needs a session".into()));
        }
        self.live(session)?;
        let id = match scheme {
            "digest" => {
                let credential = std::str::from_utf8(auth)
                    .map_err(|_| Error::AuthFailed("digest credentials must be UTF-8".into()))?;
                Id::new("digest", digest_id(credential)?)
            }
            other => {
                return Err(Error::AuthFailed(format!(
                    "unsupported auth scheme {other:?}"
                )));
            }
        };
        let ids = self.auth.entry(session).or_default();
        if !ids.contains(&id) {
            ids.push(id);
        }
        Ok(self.header(session))
    }

    /// Submits a client write; the answer arrives once it is applied.
    pub fn write(
        &mut self,
        session: SessionId,
        identity: Identity,
        op: WriteOp,
    ) -> Result<Answer<(OpOutcome, Header)>, Error> {
        self.live(session)?;
        // Refuse what the tree would refuse for size before it costs a log
        // write; apply checks again, with the limits in force then.
        self.machine.tree().check_limits(&op)?;
        self.admit()?;
        let (tx, rx) = oneshot::channel();
        self.submit(
            Txn::Write {
                session,
                identity,
                op,
            },
            Box::new(move |state, applied| {
                let result = applied.and_then(|applied| match &applied.outcome {
                    TxnOutcome::Write(result) => result
                        .clone()
                        .map(|outcome| (outcome, state.header(session))),
                    other => unreachable_outcome(other),
                });
                let _ = tx.send(result);
            }),
        );
        Ok(rx)
    }

    /// Runs a read against the applied state, after checking the session.
    pub fn read<R>(
        &mut self,
        session: SessionId,
        read: impl FnOnce(&StateMachine) -> Result<R, Error>,
    ) -> Result<(R, Header), Error> {
        self.live(session)?;
        let result = read(&self.machine)?;
        Ok((result, self.header(session)))
    }

    /// Leaves a one-shot watch for `session` on `path`.
    pub fn watch(&mut self, session: SessionId, path: &str, kind: WatchKind) -> Result<(), Error> {
        if session == 0 {
            return Err(Error::BadArguments("watches need a session".into()));
        }
        let limit = self.machine.tree().config().limits.max_path_bytes;
        if path.len() > limit {
            return Err(Error::TooLarge {
                what: "path length",
                limit: limit as u64,
                actual: path.len() as u64,
            });
        }
        self.watches.add(session, path, kind)
    }

    pub fn add_watch(
        &mut self,
        session: SessionId,
        path: &str,
        kind: WatchKind,
    ) -> Result<Header, Error> {
        self.live(session)?;
        synod_core::path::validate(path)?;
        self.watch(session, path, kind)?;
        Ok(self.header(session))
    }

    pub fn remove_watches(
        &mut self,
        session: SessionId,
        path: &str,
        watcher_type: WatcherType,
    ) -> Result<Header, Error> {
        self.live(session)?;
        synod_core::path::validate(path)?;
        let events = self
            .watches
            .remove(session, path, watcher_type, self.machine.applied())?;
        for event in &events {
            self.enqueue(event);
        }
        Ok(self.header(session))
    }

    /// Opens the session's event stream, replaying the buffered events after
    /// `after_seq`. Fails when those were already dropped from the buffer.
    pub fn subscribe(
        &mut self,
        session: SessionId,
        after_seq: u64,
    ) -> Result<mpsc::Receiver<synod_proto::v1::WatchEvent>, Error> {
        self.live(session)?;
        if session == 0 {
            return Err(Error::BadArguments("watch events need a session".into()));
        }
        let capacity = self.event_buffer.max(16);
        let outbox = self.outboxes.entry(session).or_default();
        let oldest_kept = outbox.seq - outbox.recent.len() as u64;
        if after_seq < oldest_kept {
            return Err(Error::BadArguments(format!(
                "events after {after_seq} are no longer buffered (oldest kept is {})",
                oldest_kept + 1
            )));
        }
        let (tx, rx) = mpsc::channel(capacity);
        for event in outbox.recent.iter().filter(|e| e.seq > after_seq) {
            if tx.try_send(event.clone()).is_err() {
                break;
            }
        }
        outbox.subscriber = Some(tx);
        Ok(rx)
    }

    /// Periodic work. On the leader: expire sessions whose clients went
    /// silent and remove empty containers and expired TTL nodes. On a
    /// follower: report the sessions heard from to the leader. Everywhere:
    /// answer requests that waited too long for the ensemble, and append a
    /// failed log batch again.
    pub fn tick(&mut self) {
        self.expire_requests();
        let now = self.mono_now();
        if self.replica.role() != Role::Leader {
            if let Some(leader) = self.replica.leader().filter(|l| *l != self.id)
                && let Some((round, sessions)) = self.sessions.report(leader, now)
            {
                let frame = PeerMessage::Touch { round, sessions }.encode();
                if let Err(error) = self.send_frame(leader, frame) {
                    tracing::debug!(%error, "cannot report session liveness to the leader");
                }
            }
            return;
        }
        // A leader still catching up decides no expiry: its clocks restart
        // when it is authoritative.
        let expired = if self.authoritative {
            self.sessions.to_expire(now)
        } else {
            Vec::new()
        };
        for session in expired {
            tracing::info!(session = format_args!("{session:#x}"), "session expired");
            self.metrics
                .sessions_expired
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // The session stays tracked until its close is applied (which
            // forgets it); if the close fails, the next tick tries again.
            self.submit(
                Txn::CloseSession {
                    session,
                    reason: CloseReason::Expired,
                },
                Box::new(move |state, _| {
                    state.sessions.close_failed(session);
                }),
            );
        }
        let candidates: Vec<String> = self
            .machine
            .tree()
            .reap_candidates(wall_clock_ms())
            .into_iter()
            .filter(|p| !self.reaping.contains(p))
            .take(MAX_REAPS_PER_TICK)
            .collect();
        for path in candidates {
            self.reaping.insert(path.clone());
            let done_path = path.clone();
            self.submit(
                Txn::Reap { path },
                Box::new(move |state, _| {
                    state.reaping.remove(&done_path);
                }),
            );
        }
    }

    /// Answers requests that waited longer than the request timeout. One
    /// never sent anywhere is dropped from the queue (it is not in the
    /// log); one sent to a leader may still commit, so its outcome is
    /// reported unknown.
    fn expire_requests(&mut self) {
        let timeout = self.request_timeout;
        let now = self.mono_now();
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let late_reads = self.reads.expire(now, timeout_ms);
        self.read_actions(late_reads);
        let late_pings = self.sessions.expire_waiting(now, timeout_ms);
        self.answer_pings(late_pings);

        let late: Vec<(u64, Option<NodeId>)> = self
            .waiting
            .iter()
            .filter(|(_, w)| w.submitted.elapsed() > timeout)
            .map(|(r, w)| (*r, w.sent_to))
            .collect();
        if late.is_empty() {
            return;
        }
        let unsent: FxHashSet<u64> = late
            .iter()
            .filter(|(_, to)| to.is_none())
            .map(|(r, _)| *r)
            .collect();
        self.queued.retain(|q| !unsent.contains(&q.request));
        for (request, sent_to) in late {
            let why = match sent_to {
                None => format!("no leader within {timeout:?}; the write was not made"),
                Some(leader) => format!(
                    "no answer from the ensemble (leader {leader}) within {timeout:?}; its outcome is unknown"
                ),
            };
            self.answer(request, Err(Error::ConnectionLoss(why)));
        }
    }

    /// Answers once everything submitted before it, and everything the
    /// leader committed before it, has been applied here (a no-op goes
    /// through the leader, as ZooKeeper's sync does).
    pub fn sync(&mut self, session: SessionId) -> Result<Answer<Header>, Error> {
        self.live(session)?;
        let (tx, rx) = oneshot::channel();
        if self.replica.membership().voters == [self.id] && self.waiting.is_empty() {
            // Alone, and everything submitted is applied already.
            let _ = tx.send(Ok(self.header(session)));
            return Ok(rx);
        }
        self.submit(
            Txn::Noop,
            Box::new(move |state, applied| {
                let _ = tx.send(applied.map(|_| state.header(session)));
            }),
        );
        Ok(rx)
    }
}

/// A result that arrives once a txn has gone through the log.
pub type Answer<T> = oneshot::Receiver<Result<T, Error>>;

/// Each txn kind has exactly one outcome kind; anything else is a bug in the
/// state machine, answered as a system error rather than a crash.
fn unreachable_outcome<T>(outcome: &TxnOutcome) -> Result<T, Error> {
    tracing::error!(?outcome, "state machine returned a mismatched outcome");
    Err(Error::Internal(format!("mismatched outcome {outcome:?}")))
}

/// A membership change asked for through the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipChange {
    AddObserver,
    PromoteVoter,
    DemoteVoter,
    Remove,
}

impl NodeState {
    /// At the leader: hands leadership to `to`.
    pub fn transfer_leadership(&mut self, to: NodeId) -> Result<(), PaxosError> {
        self.replica.transfer_leadership(to)
    }

    /// At the leader: proposes the membership with one member changed.
    /// Only nodes this node has an address for can take part.
    pub fn change_membership(
        &mut self,
        change: MembershipChange,
        node: NodeId,
    ) -> Result<(Slot, Membership), PaxosError> {
        let mut m = self.replica.membership().clone();
        let known = node == self.id || self.peers.as_ref().is_some_and(|p| p.knows(node));
        match change {
            MembershipChange::AddObserver => {
                if m.contains(node) {
                    return Err(PaxosError::InvalidConfig("already a member"));
                }
                if !known {
                    return Err(PaxosError::InvalidConfig(
                        "no peer address for that node (list it in --peers or --observers)",
                    ));
                }
                m.observers.push(node);
            }
            MembershipChange::PromoteVoter => {
                if !m.observers.contains(&node) {
                    return Err(PaxosError::InvalidConfig(
                        "only an observer can be promoted",
                    ));
                }
                m.observers.retain(|o| *o != node);
                m.voters.push(node);
            }
            MembershipChange::DemoteVoter => {
                if !m.voters.contains(&node) {
                    return Err(PaxosError::NotAVoter(node));
                }
                m.voters.retain(|v| *v != node);
                m.observers.push(node);
            }
            MembershipChange::Remove => {
                if !m.contains(node) {
                    return Err(PaxosError::InvalidConfig("not a member"));
                }
                m.voters.retain(|v| *v != node);
                m.observers.retain(|o| *o != node);
            }
        }
        let slot = self.replica.propose_membership(m.clone())?;
        Ok((slot, m))
    }

    /// Starts a snapshot now, unless one is running; returns the applied
    /// index it covers (or the running one's).
    pub fn take_snapshot(&mut self) -> Zxid {
        if let Some(running) = &self.snapshotting {
            return running.index;
        }
        if let Some(running) = &self.snapshot {
            return i64::try_from(running.slot).unwrap_or(i64::MAX);
        }
        self.start_snapshot()
    }
}

/// A node's view of the ensemble.
#[derive(Debug, Clone)]
pub struct Status {
    pub node_id: NodeId,
    pub role: Role,
    pub leader: Option<NodeId>,
    pub promised: Ballot,
    pub commit_index: Slot,
    pub applied_index: Slot,
    pub log_start: Slot,
    pub log_last: Slot,
    pub snapshot_index: Slot,
    pub membership: Membership,
    /// At the leader: each peer's commit index and ticks since heard.
    pub peers: Vec<(NodeId, Slot, u64)>,
}
