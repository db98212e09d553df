//! The write path at a node: admission, a txn waiting under its request
//! number, FIFO per session, proposing at the leader or forwarding to it,
//! refusals, answers when the leader changes or a request waits too long.

use super::*;

impl NodeState {
    /// Refuses new work while too much waits for the ensemble or the disk,
    /// so that a stalled disk or a lost quorum turns into errors for
    /// clients instead of unbounded memory.
    pub(super) fn admit(&self) -> Result<(), Error> {
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
    pub(super) fn answer(&mut self, request: u64, result: Result<&Applied, Error>) {
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
    pub(super) fn finished(&mut self, session: SessionId) {
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

    pub(super) fn route_txns(&mut self) {
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
    pub(super) fn forward(&mut self, leader: NodeId, mut txns: Vec<(u64, Txn)>) {
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

    pub(super) fn requeue_or_refuse(&mut self, q: Queued) {
        if q.origin == self.id {
            self.queued.push(q);
        } else {
            self.refuse(q.origin, vec![q.request]);
        }
    }

    pub(super) fn refuse_forwarded(&mut self) {
        let mut by_origin: FxHashMap<NodeId, Vec<u64>> = FxHashMap::default();
        for q in std::mem::take(&mut self.forwarded) {
            by_origin.entry(q.origin).or_default().push(q.request);
        }
        for (origin, requests) in by_origin {
            self.refuse(origin, requests);
        }
    }

    pub(super) fn refuse(&mut self, to: NodeId, requests: Vec<u64>) {
        let frame = PeerMessage::Refused(requests).encode();
        if let Err(error) = self.send_frame(to, frame) {
            tracing::debug!(%error, to, "cannot refuse forwarded writes; they time out");
        }
    }

    /// At the leader: proposes everything queued, forwarded and held, in
    /// slots of the next batches, stamped with this leader's time.
    pub(super) fn propose_queued(&mut self) {
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

    /// Notices a change of leader: counts it, restarts session clocks on a
    /// new leader, and answers requests that went to the old one (their
    /// outcome is unknown: they may still commit).
    pub(super) fn watch_leader(&mut self) {
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

    /// Answers every request waiting with an error: the log can take no
    /// more.
    pub(super) fn fail_all(&mut self, why: &str) {
        let requests: Vec<u64> = self.waiting.keys().copied().collect();
        for request in requests {
            self.answer(request, Err(Error::Internal(why.to_owned())));
        }
        self.queued.clear();
    }

    /// Answers requests that waited longer than the request timeout. One
    /// never sent anywhere is dropped from the queue (it is not in the
    /// log); one sent to a leader may still commit, so its outcome is
    /// reported unknown.
    pub(super) fn expire_requests(&mut self) {
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
