//! The driver: one task owns the state machine, the watch registry, the
//! session tracker and the per-session event outboxes, and runs every job in
//! arrival order. Front ends hand it closures and await their results, so no
//! lock guards the state and a request never observes half a change.
//!
//! Until replication lands the driver is its own log. Writes are submitted
//! as txns; the driver gathers them into a batch, numbers them (zxids) and
//! stamps their time, hands the batch to storage, and applies it and answers
//! only once storage reports it durable. While one batch is being synced the
//! next one gathers: that is the group commit. Without a data directory the
//! batch is applied at once.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rustc_hash::{FxHashMap, FxHashSet};
use synod_core::acl::{Id, Identity, digest_id};
use synod_core::codec::LogEntry;
use synod_core::session::SessionTracker;
use synod_core::state::{Applied, PendingSnapshot, StateMachine};
use synod_core::txn::{CloseReason, OpOutcome, Txn, TxnOutcome, WriteOp};
use synod_core::watch::{WatchEvent, WatchKind, WatchRegistry, WatcherType};
use synod_core::{Error, Millis, SessionId, Zxid};
use tokio::sync::{mpsc, oneshot};

use crate::config::NodeConfig;
use crate::durable::{DurableLog, LogWriter, Persisted};
use crate::metrics::{Gauges, Metrics};
use crate::storage::StorageStats;

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

/// Starts the driver task over a recovered state; it ends when every
/// handle is dropped. `log` makes txns durable before they are applied;
/// without one the node keeps its state in memory only.
pub fn spawn(
    config: &NodeConfig,
    machine: StateMachine,
    log: Option<DurableLog>,
    metrics: Arc<Metrics>,
) -> (DriverHandle, tokio::task::JoinHandle<()>) {
    let (jobs, mut inbox) = mpsc::channel::<Job>(4096);
    let durable = log.is_some();
    let (persisted_tx, mut persisted) = mpsc::unbounded_channel();
    let storage_stats = log.as_ref().map(DurableLog::stats).unwrap_or_default();
    let mut state = NodeState::new(
        config,
        machine,
        log.map(|log| log.start(persisted_tx)),
        metrics,
    );
    state.storage_stats = storage_stats;
    // The limits in force belong to the log: record the flags' settings
    // as a txn when they differ from the recovered ones (or on a fresh
    // start), so a replay checks every earlier txn as it was first checked.
    let wanted = config.state_config();
    if state.machine.applied() == 0 || state.machine.config() != wanted {
        tracing::info!(?wanted, "recording the configured limits in the log");
        state.submit(
            Txn::SetConfig(wanted),
            Box::new(|_, applied| {
                if let Err(error) = applied {
                    tracing::error!(%error, "cannot record the configured limits");
                }
            }),
        );
        state.flush();
    }
    let tick = config.tick();
    let task = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                job = inbox.recv() => match job {
                    Some(job) => job(&mut state),
                    None => break,
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
                _ = ticker.tick() => state.tick(),
                () = std::future::ready(()), if state.snapshotting() => state.snapshot_work(),
            }
            state.flush();
        }
        tracing::debug!("driver stopped");
    });
    (DriverHandle { jobs }, task)
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

/// Called on the driver once a submitted txn was applied, or failed to
/// become durable.
pub type Done = Box<dyn FnOnce(&mut NodeState, Result<&Applied, Error>) + Send>;

/// A txn waiting for its turn in the log.
struct Pending {
    txn: Txn,
    done: Done,
    submitted: Instant,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("txn", &self.txn)
            .finish_non_exhaustive()
    }
}

/// A numbered txn on its way through the log, with whom to tell.
struct Logged {
    entry: LogEntry,
    done: Done,
    submitted: Instant,
}

impl std::fmt::Debug for Logged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logged")
            .field("entry", &self.entry)
            .finish_non_exhaustive()
    }
}

/// A batch handed to storage, applied once it is durable.
#[derive(Debug)]
struct InFlight {
    batch: u64,
    entries: Vec<Logged>,
}

/// Reads waiting for the txns of their session.
#[derive(Default)]
struct DeferredReads(Vec<Job>);

impl std::fmt::Debug for DeferredReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} deferred reads", self.0.len())
    }
}

/// Everything the driver owns.
#[derive(Debug)]
pub struct NodeState {
    machine: StateMachine,
    watches: WatchRegistry,
    tracker: SessionTracker,
    outboxes: FxHashMap<SessionId, Outbox>,
    auth: FxHashMap<SessionId, Vec<Id>>,
    event_buffer: usize,
    started: Instant,
    scratch: Vec<WatchEvent>,
    /// Txns submitted since the last batch went to storage.
    pending: Vec<Pending>,
    /// At most one batch is being made durable; the next one gathers
    /// meanwhile, which is what makes group commit effective.
    in_flight: Option<InFlight>,
    log: Option<LogWriter>,
    next_batch: u64,
    snapshot_every: u64,
    last_snapshot: Zxid,
    snapshot_in_progress: bool,
    max_batch: usize,
    metrics: Arc<Metrics>,
    storage_stats: StorageStats,
    max_pending: usize,
    /// Txns of each session submitted and not yet answered.
    outstanding: FxHashMap<SessionId, u32>,
    /// Reads waiting for their session's outstanding txns.
    deferred: FxHashMap<SessionId, DeferredReads>,
    /// Bytes handed to the log since the last snapshot began.
    logged_since_snapshot: u64,
    snapshot_every_bytes: u64,
    /// The snapshot being encoded, a slice at a time.
    snapshotting: Option<PendingSnapshot>,
    /// Sessions whose expiry is on its way through the log.
    closing: FxHashSet<SessionId>,
    /// Containers and TTL nodes whose reap is on its way through the log.
    reaping: FxHashSet<String>,
}

/// Znodes encoded per slice of a running snapshot: a few milliseconds of
/// work between two jobs of the driver.
const SNAPSHOT_SLICE: usize = 5_000;

/// Bounds the reaps one tick submits, so a mass expiry of TTL nodes is
/// spread over ticks instead of flooding one batch.
const MAX_REAPS_PER_TICK: usize = 1024;

fn wall_clock_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl NodeState {
    pub fn new(
        config: &NodeConfig,
        machine: StateMachine,
        log: Option<LogWriter>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let started = Instant::now();
        let mut tracker = SessionTracker::default();
        // Whoever decides expiry now gives every recovered session a full
        // timeout, as a new ZooKeeper leader does.
        tracker.restart_all(machine.sessions(), 0);
        let last_snapshot = machine.applied();
        NodeState {
            machine,
            watches: WatchRegistry::new(config.max_watches_per_session),
            tracker,
            outboxes: FxHashMap::default(),
            auth: FxHashMap::default(),
            event_buffer: config.watch_event_buffer,
            started,
            scratch: Vec::new(),
            pending: Vec::new(),
            in_flight: None,
            log,
            next_batch: 0,
            snapshot_every: config.snapshot_every_txns,
            last_snapshot,
            snapshot_in_progress: false,
            max_batch: config.max_batch_txns,
            metrics,
            storage_stats: StorageStats::default(),
            max_pending: config.max_pending_txns,
            closing: FxHashSet::default(),
            snapshotting: None,
            logged_since_snapshot: 0,
            outstanding: FxHashMap::default(),
            deferred: FxHashMap::default(),
            snapshot_every_bytes: config.snapshot_every_bytes,
            reaping: FxHashSet::default(),
        }
    }

    /// Sizes and counts for the metrics endpoint.
    pub fn gauges(&self) -> Gauges {
        let stats = &self.storage_stats;
        Gauges {
            znodes: self.machine.tree().len() as u64,
            sessions: self.machine.sessions().len() as u64,
            watches: self.watches.len() as u64,
            applied_zxid: self.machine.applied(),
            pending_txns: (self.pending.len()
                + self.in_flight.as_ref().map_or(0, |f| f.entries.len()))
                as u64,
            log_bytes: stats.log_bytes,
            log_segments: stats.log_segments as u64,
            snapshot_bytes: stats.snapshot_bytes,
            snapshots: stats.snapshots as u64,
            snapshot_index: stats.snapshot_index,
        }
    }

    pub fn machine(&self) -> &StateMachine {
        &self.machine
    }

    /// Milliseconds on the monotonic clock that session liveness uses.
    fn monotonic_ms(&self) -> Millis {
        i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    /// Refuses new work while too much waits for the log, so that a
    /// stalled disk turns into errors for clients instead of unbounded
    /// memory.
    fn admit(&self) -> Result<(), Error> {
        let waiting = self.pending.len();
        if waiting >= self.max_pending {
            return Err(Error::Throttled(format!(
                "{waiting} txns are waiting for the log; retry later"
            )));
        }
        Ok(())
    }

    /// Queues `txn` for the log; `done` runs once it is applied.
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
        self.pending.push(Pending {
            txn,
            done,
            submitted: Instant::now(),
        });
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

    /// Sends the pending txns to storage as one batch when none is in
    /// flight; without storage, applies them at once. Zxids are assigned
    /// here, so a batch that fails leaves no gap.
    pub fn flush(&mut self) {
        if self.pending.is_empty() || self.in_flight.is_some() {
            return;
        }
        let take = self.pending.len().min(self.max_batch);
        let batch: Vec<Pending> = self.pending.drain(..take).collect();
        let time = wall_clock_ms();
        let first = self.machine.applied() + 1;
        let entries: Vec<Logged> = batch
            .into_iter()
            .enumerate()
            .map(|(i, p)| Logged {
                entry: LogEntry {
                    zxid: first + i as i64,
                    time,
                    txn: p.txn,
                },
                done: p.done,
                submitted: p.submitted,
            })
            .collect();
        let Some(log) = &self.log else {
            for logged in entries {
                self.apply_entry(logged);
            }
            return;
        };
        let records: Vec<(u64, Vec<u8>)> = entries
            .iter()
            .map(|l| (l.entry.zxid as u64, l.entry.encode()))
            .collect();
        self.logged_since_snapshot += records.iter().map(|(_, r)| r.len() as u64).sum::<u64>();
        let batch = self.next_batch;
        self.next_batch += 1;
        if log.append(batch, records) {
            self.in_flight = Some(InFlight { batch, entries });
        } else {
            for logged in entries {
                (logged.done)(
                    self,
                    Err(Error::Internal("the storage thread has stopped".into())),
                );
            }
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
                let Some(in_flight) = self.in_flight.take_if(|f| f.batch == batch) else {
                    tracing::error!(batch, "storage reported a batch that is not in flight");
                    return;
                };
                tracing::trace!(
                    batch,
                    txns = in_flight.entries.len(),
                    fsync_micros,
                    "batch durable"
                );
                match result {
                    Ok(()) => {
                        self.metrics
                            .fsync_seconds
                            .observe(fsync_micros as f64 / 1e6);
                        self.metrics
                            .batch_txns
                            .observe(in_flight.entries.len() as f64);
                        for logged in in_flight.entries {
                            self.apply_entry(logged);
                        }
                        self.maybe_snapshot();
                    }
                    Err(message) => {
                        tracing::error!(%message, txns = in_flight.entries.len(), "write to the log failed; the batch is refused");
                        for logged in in_flight.entries {
                            (logged.done)(
                                self,
                                Err(Error::Internal(format!("cannot write the log: {message}"))),
                            );
                        }
                    }
                }
            }
            Persisted::Snapshot {
                index,
                result,
                stats,
            } => {
                self.storage_stats = stats;
                self.snapshot_in_progress = false;
                match result {
                    Ok(()) => {
                        tracing::info!(index, "snapshot written");
                        self.last_snapshot = self.last_snapshot.max(index as Zxid);
                    }
                    // `last_snapshot` stays, so the next batch tries again.
                    Err(message) => tracing::error!(index, %message, "snapshot failed; will retry"),
                }
            }
        }
    }

    fn maybe_snapshot(&mut self) {
        let applied = self.machine.applied();
        let due = u64::try_from(applied - self.last_snapshot).unwrap_or(0) >= self.snapshot_every
            || self.logged_since_snapshot >= self.snapshot_every_bytes;
        if !due || self.snapshot_in_progress || self.snapshotting.is_some() || self.log.is_none() {
            return;
        }
        let started = Instant::now();
        self.snapshotting = Some(self.machine.begin_snapshot());
        self.logged_since_snapshot = 0;
        tracing::info!(
            index = applied,
            begin_ms = started.elapsed().as_millis() as u64,
            "taking a snapshot"
        );
    }

    /// Whether a snapshot is being encoded.
    pub fn snapshotting(&self) -> bool {
        self.snapshotting.is_some()
    }

    /// Encodes the next slice of the running snapshot; the driver calls it
    /// between jobs, so requests are served while a large tree is encoded.
    /// A finished snapshot goes to the storage thread.
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
        tracing::debug!(index, bytes = finished.bytes.len(), "snapshot encoded");
        if let Some(log) = &self.log
            && log.snapshot(index as u64, finished.bytes)
        {
            self.snapshot_in_progress = true;
        }
    }

    fn apply_entry(&mut self, logged: Logged) {
        let Logged {
            entry,
            done,
            submitted,
        } = logged;
        let applied = self.machine.apply(entry.zxid, entry.time, &entry.txn);
        self.metrics
            .commit_seconds
            .observe(submitted.elapsed().as_secs_f64());
        for trigger in &applied.triggers {
            self.watches.fire(trigger, &mut self.scratch);
        }
        let events = std::mem::take(&mut self.scratch);
        for event in &events {
            self.enqueue(event);
        }
        self.scratch = events;
        self.scratch.clear();
        if let TxnOutcome::SessionClosed { session, .. } = &applied.outcome {
            self.forget_session(*session);
        }
        done(self, Ok(&applied));
    }

    /// Answers every txn in flight or pending with an error: the log can
    /// take no more.
    fn fail_all(&mut self, why: &str) {
        let in_flight = self.in_flight.take().map(|f| f.entries).unwrap_or_default();
        for logged in in_flight {
            (logged.done)(self, Err(Error::Internal(why.to_owned())));
        }
        for pending in std::mem::take(&mut self.pending) {
            (pending.done)(self, Err(Error::Internal(why.to_owned())));
        }
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
        self.watches.remove_session(session);
        self.outboxes.remove(&session);
        self.auth.remove(&session);
        self.tracker.forget(session);
    }

    /// The header for a response to `session` from the current state.
    pub fn header(&self, session: SessionId) -> Header {
        Header {
            zxid: self.machine.applied(),
            watch_seq: self.outboxes.get(&session).map_or(0, |o| o.seq),
        }
    }

    /// Checks that a request's session is open and counts it as a sign of
    /// life. Session 0 means none.
    fn live(&mut self, session: SessionId) -> Result<(), Error> {
        if session == 0 {
            return Ok(());
        }
        match self.machine.sessions().get(session) {
            Some(info) => {
                let now = self.monotonic_ms();
                self.tracker.touch(session, info.timeout_ms, now);
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
        self.submit(
            Txn::CreateSession { timeout_ms },
            Box::new(move |state, applied| {
                let result = applied.and_then(|applied| match &applied.outcome {
                    TxnOutcome::SessionCreated(Ok((session, timeout_ms))) => {
                        let (session, timeout_ms) = (*session, *timeout_ms);
                        let now = state.monotonic_ms();
                        state.tracker.touch(session, timeout_ms, now);
                        state.outboxes.insert(session, Outbox::default());
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
    pub fn ping(&mut self, session: SessionId) -> Result<Millis, Error> {
        if session == 0 {
            return Err(Error::BadArguments("keep-alive needs a session".into()));
        }
        self.live(session)?;
        Ok(self
            .machine
            .sessions()
            .get(session)
            .map_or(0, |s| s.timeout_ms))
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

    /// Periodic work: expire sessions whose clients went silent and remove
    /// empty containers and expired TTL nodes.
    pub fn tick(&mut self) {
        let now = self.monotonic_ms();
        let expired: Vec<SessionId> = self
            .tracker
            .expired(now)
            .into_iter()
            .filter(|s| !self.closing.contains(s))
            .collect();
        for session in expired {
            tracing::info!(session = format_args!("{session:#x}"), "session expired");
            self.metrics
                .sessions_expired
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // The session stays tracked until its close is applied (which
            // forgets it); if the close fails, the next tick tries again.
            self.closing.insert(session);
            self.submit(
                Txn::CloseSession {
                    session,
                    reason: CloseReason::Expired,
                },
                Box::new(move |state, _| {
                    state.closing.remove(&session);
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

    /// Answers once everything submitted before it has been applied.
    pub fn sync(&mut self, session: SessionId) -> Result<Answer<Header>, Error> {
        self.live(session)?;
        let (tx, rx) = oneshot::channel();
        if self.pending.is_empty() && self.in_flight.is_none() {
            // Everything submitted is applied already.
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
