//! The driver: one task owns the state machine, the watch registry, the
//! session tracker and the per-session event outboxes, and runs every job in
//! arrival order. Front ends hand it closures and await their results, so no
//! lock guards the state and a request never observes half a change.
//!
//! Until replication lands the driver is its own log: it stamps each txn
//! with the next zxid and the wall-clock time and applies it at once.

use std::collections::VecDeque;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rustc_hash::FxHashMap;
use synod_core::acl::{Id, Identity, digest_id};
use synod_core::session::SessionTracker;
use synod_core::state::{Applied, StateMachine};
use synod_core::txn::{CloseReason, OpOutcome, Txn, TxnOutcome, WriteOp};
use synod_core::watch::{WatchEvent, WatchKind, WatchRegistry, WatcherType};
use synod_core::{Error, Millis, SessionId, Zxid};
use tokio::sync::{mpsc, oneshot};

use crate::config::NodeConfig;

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

/// Starts the driver task; it ends when every handle is dropped.
pub fn spawn(config: &NodeConfig) -> DriverHandle {
    let (jobs, mut inbox) = mpsc::channel::<Job>(4096);
    let mut state = NodeState::new(config);
    let tick = config.tick();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                job = inbox.recv() => match job {
                    Some(job) => job(&mut state),
                    None => break,
                },
                _ = ticker.tick() => state.tick(),
            }
        }
        tracing::debug!("driver stopped");
    });
    DriverHandle { jobs }
}

/// Where a session's watch events wait for its client.
#[derive(Debug)]
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
}

fn wall_clock_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl NodeState {
    pub fn new(config: &NodeConfig) -> Self {
        NodeState {
            machine: StateMachine::new(config.state_config()),
            watches: WatchRegistry::new(config.max_watches_per_session),
            tracker: SessionTracker::default(),
            outboxes: FxHashMap::default(),
            auth: FxHashMap::default(),
            event_buffer: config.watch_event_buffer,
            started: Instant::now(),
            scratch: Vec::new(),
        }
    }

    pub fn machine(&self) -> &StateMachine {
        &self.machine
    }

    /// Milliseconds on the monotonic clock that session liveness uses.
    fn monotonic_ms(&self) -> Millis {
        i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    /// Appends `txn` to the log and applies it, delivering its watch events.
    fn commit(&mut self, txn: Txn) -> Applied {
        let zxid = self.machine.applied() + 1;
        let applied = self.machine.apply(zxid, wall_clock_ms(), &txn);
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
        applied
    }

    fn enqueue(&mut self, event: &WatchEvent) {
        let outbox = self
            .outboxes
            .entry(event.session)
            .or_insert_with(|| Outbox {
                seq: 0,
                recent: VecDeque::new(),
                subscriber: None,
            });
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

    pub fn create_session(
        &mut self,
        timeout_ms: Millis,
    ) -> Result<(SessionId, Millis, Header), Error> {
        let applied = self.commit(Txn::CreateSession { timeout_ms });
        match applied.outcome {
            TxnOutcome::SessionCreated(Ok((session, timeout_ms))) => {
                let now = self.monotonic_ms();
                self.tracker.touch(session, timeout_ms, now);
                self.outboxes.insert(
                    session,
                    Outbox {
                        seq: 0,
                        recent: VecDeque::new(),
                        subscriber: None,
                    },
                );
                Ok((session, timeout_ms, self.header(session)))
            }
            TxnOutcome::SessionCreated(Err(e)) => Err(e),
            other => unreachable_outcome(&other),
        }
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

    pub fn close_session(&mut self, session: SessionId) -> Result<Header, Error> {
        self.live(session)?;
        if session != 0 {
            self.commit(Txn::CloseSession {
                session,
                reason: CloseReason::ClientClosed,
            });
        }
        Ok(self.header(session))
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

    pub fn write(
        &mut self,
        session: SessionId,
        identity: Identity,
        op: WriteOp,
    ) -> Result<(OpOutcome, Header), Error> {
        self.live(session)?;
        let applied = self.commit(Txn::Write {
            session,
            identity,
            op,
        });
        match applied.outcome {
            TxnOutcome::Write(result) => result.map(|outcome| (outcome, self.header(session))),
            other => unreachable_outcome(&other),
        }
    }

    /// Runs a read against the applied state, after checking the session;
    /// `watch` names a watch to leave when the read succeeded.
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
        let outbox = self.outboxes.entry(session).or_insert_with(|| Outbox {
            seq: 0,
            recent: VecDeque::new(),
            subscriber: None,
        });
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
        for session in self.tracker.expired(now) {
            tracing::info!(session = format_args!("{session:#x}"), "session expired");
            self.commit(Txn::CloseSession {
                session,
                reason: CloseReason::Expired,
            });
        }
        for path in self.machine.tree().reap_candidates(wall_clock_ms()) {
            self.commit(Txn::Reap { path });
        }
    }

    pub fn sync(&mut self, session: SessionId) -> Result<Header, Error> {
        self.live(session)?;
        Ok(self.header(session))
    }
}

/// Each txn kind has exactly one outcome kind; anything else is a bug in the
/// state machine, answered as a system error rather than a crash.
fn unreachable_outcome<T>(outcome: &TxnOutcome) -> Result<T, Error> {
    tracing::error!(?outcome, "state machine returned a mismatched outcome");
    Err(Error::Internal(format!("mismatched outcome {outcome:?}")))
}
