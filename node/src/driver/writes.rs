//! The write path's shell: the core (`synod_core::node::writes`) decides
//! where a txn goes and when it is answered with an error; this runs the
//! completions, sends the frames (split to fit the frame limit), holds a
//! session's reads back while its txns are on their way, and counts.

use super::*;

impl NodeState {
    /// Refuses new work while too much waits for the ensemble or the disk,
    /// so that a stalled disk or a lost quorum turns into errors for
    /// clients instead of unbounded memory.
    pub(super) fn admit(&self) -> Result<(), Error> {
        if let Some(error) = self.wal.as_ref().and_then(|w| w.commit.error()) {
            return Err(Error::Throttled(format!(
                "the write-ahead log cannot be written ({error}); retry later"
            )));
        }
        self.writes.admit()
    }

    /// Queues `txn` for the log; `done` runs once it is applied here (or
    /// could not be carried through the ensemble).
    pub fn submit(&mut self, txn: Txn, done: Done) {
        let now = self.mono_now();
        let request = self.writes.submit(txn, now);
        self.completions.0.insert(request, (done, Instant::now()));
    }

    /// Answers a request of this node, if it still waits; when it was its
    /// session's last txn in flight, the reads that waited for it run, in
    /// order.
    pub(super) fn answer(&mut self, request: u64, result: Result<&Applied, Error>) {
        let Some(finished) = self.writes.finish(request) else {
            return;
        };
        if let Some((done, submitted)) = self.completions.0.remove(&request) {
            if result.is_ok() {
                self.metrics
                    .commit_seconds
                    .observe(submitted.elapsed().as_secs_f64());
            }
            done(self, result);
        }
        if let Some(session) = finished.session_done {
            let jobs = self.deferred.release(session);
            self.run_released(session, jobs);
        }
    }

    /// Runs a read of `session` after every txn the session submitted
    /// before it has been answered: a client never reads around its own
    /// write. Reads of a session with nothing in flight run at once
    /// (`synod_core::node::deferred` decides).
    pub fn in_order<R, F>(&mut self, session: SessionId, read: F) -> Answer<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut NodeState) -> Result<R, Error> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |state| {
            let _ = tx.send(read(state));
        });
        if let Some(job) = self.deferred.admit(&self.writes, session, job) {
            job(self);
        }
        rx
    }

    /// Hands queued txns on: proposed here when leading, forwarded to the
    /// leader, or refused back to the follower that forwarded them.
    pub(super) fn route_txns(&mut self) {
        // Twice a turn, on every turn: no clock read when nothing waits.
        if !self.writes.has_txns_to_route() {
            return;
        }
        let actions = self
            .writes
            .route(&mut self.replica, wall_clock_ms(), self.max_frame / 2);
        self.write_actions(actions);
    }

    /// Carries out what the write path decided.
    pub(super) fn write_actions(&mut self, actions: Vec<WriteAction>) {
        for action in actions {
            match action {
                WriteAction::Forward { to, txns } => self.forward(to, txns),
                WriteAction::Refuse { to, requests } => {
                    if let Err(error) = self.send_message(to, &PeerMessage::Refused(requests)) {
                        tracing::debug!(%error, to, "cannot refuse forwarded writes; they time out");
                    }
                }
                WriteAction::Fail { request, error } => {
                    if let Error::Throttled(why) = &error {
                        tracing::warn!(why, "cannot propose");
                    }
                    self.answer(request, Err(error));
                }
            }
        }
    }

    /// Sends `txns` to the leader, split so no frame is over the limit.
    fn forward(&mut self, leader: NodeId, mut txns: Vec<(u64, Txn)>) {
        while !txns.is_empty() {
            let mut take = txns.len();
            loop {
                let frame = PeerMessage::Forward(txns[..take].to_vec())
                    .encode()
                    .map_err(crate::peer::SendError::from);
                if frame.as_ref().map_or(0, Vec::len) <= self.max_frame || take == 1 {
                    let rest = txns.split_off(take);
                    let sent = txns;
                    txns = rest;
                    if let Err(error) = frame.and_then(|frame| self.send_frame(leader, frame)) {
                        // The frame is lost: answer now rather than at the
                        // timeout, since the leader never saw these.
                        tracing::debug!(%error, "cannot forward writes to the leader");
                        let requests: Vec<u64> = sent.iter().map(|(r, _)| *r).collect();
                        let actions =
                            self.writes
                                .send_failed(leader, &requests, &error.to_string());
                        self.write_actions(actions);
                    }
                    break;
                }
                take = take.div_ceil(2);
            }
        }
    }

    /// Notices a change of leader: counts it, and answers requests that
    /// went to the old one (their outcome is unknown: they may still
    /// commit).
    pub(super) fn watch_leader(&mut self) {
        let leader = self.replica.leader();
        let (changed, actions) = self.writes.leader_is(leader);
        if changed {
            tracing::info!(new = ?leader, "leader changed");
            if leader.is_some() {
                self.metrics
                    .leader_changes
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        self.write_actions(actions);
    }

    /// Answers every request waiting with an error: the log can take no
    /// more.
    pub(super) fn fail_all(&mut self, why: &str) {
        let actions = self.writes.fail_all(why);
        self.write_actions(actions);
    }

    /// Answers requests, reads and keep-alives that waited longer than the
    /// request timeout.
    pub(super) fn expire_requests(&mut self) {
        let now = self.mono_now();
        let timeout_ms = u64::try_from(self.request_timeout.as_millis()).unwrap_or(u64::MAX);
        let late_reads = self.reads.expire(now, timeout_ms);
        self.read_actions(late_reads);
        let late_pings = self.sessions.expire_waiting(now, timeout_ms);
        self.answer_pings(late_pings);
        let late_writes = self.writes.expire(now, timeout_ms);
        self.write_actions(late_writes);
    }
}
