//! Applying committed slots and serving clients from the state machine:
//! writes, ordered reads, watches and their events, and the headers that
//! tell a client what state it was served from.

use super::*;

impl NodeState {
    /// Applies committed slots. Slots this node already applied (replayed
    /// from its own log at start) are skipped.
    pub(super) fn apply_committed(&mut self, first: Slot, values: Vec<Value<Vec<u8>>>) {
        for (i, value) in values.iter().enumerate() {
            let slot = first + i as Slot;
            if i64::try_from(slot).unwrap_or(i64::MAX) <= self.machine.applied() {
                continue;
            }
            match apply_value(&mut self.machine, slot, value) {
                AppliedValue::Txn {
                    origin,
                    request,
                    applied,
                } => self.after_apply(origin, request, applied),
                AppliedValue::Noop => {}
                AppliedValue::Undecodable(error) => {
                    tracing::error!(slot, %error, "committed value does not decode; applied as a no-op");
                }
            }
        }
        self.release_reads();
        self.maybe_snapshot();
    }

    pub(super) fn after_apply(&mut self, origin: NodeId, request: u64, applied: Applied) {
        self.fire(&applied.triggers);
        match &applied.outcome {
            TxnOutcome::SessionClosed { session, .. } => self.forget_session(*session),
            TxnOutcome::SessionMoved(Ok((session, owner))) => self.session_moved(*session, *owner),
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

    /// Matches triggers against the watches and queues the events for their
    /// sessions' streams.
    pub(super) fn fire(&mut self, triggers: &[Trigger]) {
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

    pub(super) fn enqueue(&mut self, event: &WatchEvent) {
        let outbox = self.outboxes.entry(event.session).or_default();
        outbox.seq += 1;
        let message = crate::api::convert::watch_event(event, outbox.seq);
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

    /// The header for a response to `session` from the current state.
    pub fn header(&self, session: SessionId) -> Header {
        Header {
            zxid: self.machine.applied(),
            watch_seq: self.outboxes.get(&session).map_or(0, |o| o.seq),
        }
    }

    /// The identity requests of `session` from `peer` run under.
    pub fn identity(&self, session: SessionId, origin: &crate::driver::Origin) -> Identity {
        let mut identity = origin.ip.map(Identity::with_ip).unwrap_or_default();
        if let Some(subject) = &origin.x509 {
            identity
                .ids
                .push(synod_core::acl::Id::new("x509", subject.as_ref()));
        }
        if let Some(ids) = self.auth.get(&session) {
            identity.ids.extend(ids.iter().cloned());
        }
        identity
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
}
