//! Linearizable reads: the shell of `synod_core::node::reads`, which
//! decides; this sends the frames and answers the waiting clients.

use super::*;

impl NodeState {
    /// Starts a linearizable read: answered once this node has applied the
    /// commit index the leader confirmed after the request arrived (by its
    /// lease, or a heartbeat round when leases are off). A follower asks
    /// the leader for that index (`synod_core::node::reads` decides).
    pub fn read_barrier(&mut self) -> Result<Answer<()>, Error> {
        let (tx, rx) = oneshot::channel();
        self.start_barrier(ReadReply::Read(tx))
            .map_err(|(error, _waiter)| error)?;
        Ok(rx)
    }

    /// Asks for a read index for `waiter`; if none can be asked for, the
    /// waiter comes back with the reason.
    fn start_barrier(&mut self, waiter: ReadReply) -> Result<(), (Error, ReadReply)> {
        if let Err(error) = self.check_serving() {
            return Err((error, waiter));
        }
        let now = self.mono_now();
        let (id, actions) = match self.reads.ask(&mut self.replica, now) {
            Ok(asked) => asked,
            Err(error) => return Err((Error::ConnectionLoss(error.to_string()), waiter)),
        };
        self.read_replies.insert(id, waiter);
        self.read_actions(actions);
        Ok(())
    }

    /// ZooKeeper's `sync`: answered once this member has applied what the
    /// leader had committed when the sync ran, that is after the session's
    /// earlier txns (it waits behind them like a read) and with a read
    /// barrier, not a log entry. The session's later reads wait for it
    /// (`synod_core::node::deferred`), so a `sync` then `getData` sees
    /// everything committed before the sync.
    pub fn sync(&mut self, session: SessionId) -> Result<Answer<Header>, Error> {
        self.live(session)?;
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |state| {
            let waiter = ReadReply::Sync { session, reply: tx };
            // Begun first: a barrier that is answered at once (a leader
            // holding a lease with everything applied) ends it at once.
            state.deferred.begin_barrier(session);
            if let Err((error, waiter)) = state.start_barrier(waiter) {
                if let ReadReply::Sync { reply, .. } = waiter {
                    let _ = reply.send(Err(error));
                }
                // Not started: nothing will end it but this.
                let released = state.deferred.end_barrier(&state.writes, session);
                state.run_released(session, released);
            }
        });
        if let Some(job) = self.deferred.admit(&self.writes, session, job) {
            job(self);
        }
        Ok(rx)
    }

    /// Runs reads released for `session`, in order; if one of them starts
    /// a barrier or a txn, the rest wait again.
    pub(super) fn run_released(&mut self, session: SessionId, jobs: Vec<Job>) {
        let mut jobs = jobs.into_iter();
        while let Some(job) = jobs.next() {
            job(self);
            if self.deferred.blocked(&self.writes, session) {
                self.deferred.hold_again(session, jobs.collect());
                return;
            }
        }
    }

    /// Carries out what the read barriers decided.
    pub(super) fn read_actions(&mut self, actions: Vec<ReadAction>) {
        for action in actions {
            match action {
                ReadAction::AskLeader { to, request } => {
                    if let Err(e) = self.send_message(to, &PeerMessage::ReadIndex(request)) {
                        let error = ReadError::NotLeader(format!(
                            "cannot reach the leader (node {to}): {e}"
                        ));
                        let failed = self.reads.fail(request, error);
                        self.read_actions(failed);
                    }
                }
                ReadAction::ReplyIndex { to, request, index } => {
                    let reply = PeerMessage::ReadIndexReply { request, index };
                    if let Err(error) = self.send_message(to, &reply) {
                        tracing::debug!(%error, to, "cannot answer a read-index request");
                    }
                }
                ReadAction::Answer { id, result } => match self.read_replies.remove(&id) {
                    Some(ReadReply::Read(reply)) => {
                        let _ =
                            reply.send(result.map_err(|e| Error::ConnectionLoss(e.to_string())));
                    }
                    Some(ReadReply::Sync { session, reply }) => {
                        let answer = result
                            .map(|()| self.header(session))
                            .map_err(|e| Error::ConnectionLoss(e.to_string()));
                        let _ = reply.send(answer);
                        let released = self.deferred.end_barrier(&self.writes, session);
                        self.run_released(session, released);
                    }
                    None => {}
                },
            }
        }
    }

    /// A read index arrived (or could not be had) for read `id`.
    pub(super) fn read_confirmed(&mut self, id: ReadId, at: Option<ReadIndex>) {
        let applied = u64::try_from(self.machine.applied()).unwrap_or(0);
        let now = self.mono_now();
        let actions = self
            .reads
            .confirmed(&mut self.replica, id, at, applied, now);
        self.read_actions(actions);
    }

    /// Answers the linearizable reads whose index is now applied.
    pub(super) fn release_reads(&mut self) {
        if self.reads.is_empty() {
            return;
        }
        let applied = u64::try_from(self.machine.applied()).unwrap_or(0);
        let now = self.mono_now();
        let actions = self.reads.applied(&mut self.replica, applied, now);
        self.read_actions(actions);
    }
}
