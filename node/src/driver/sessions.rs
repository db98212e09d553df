//! Sessions at a node: opening, keep-alives, closing, authentication, and
//! the periodic work (liveness reports, expiry at the authoritative leader,
//! reaping containers and TTL nodes); liveness itself is decided by
//! `synod_core::node::sessions`.

use super::*;

impl NodeState {
    /// Whether this node leads and has applied everything committed,
    /// including what earlier leaders committed: only then is its session
    /// table the ensemble's, and only then does it decide about sessions (a
    /// Paxos leader may be elected with a stale log; the simulator found
    /// one that acknowledged a keep-alive of a session already closed).
    pub(super) fn is_authoritative(&self) -> bool {
        let applied = u64::try_from(self.machine.applied()).unwrap_or(0);
        synod_core::node::authoritative(&self.replica, applied)
    }

    /// Whether this node may vouch for sessions now: the authoritative
    /// leader within its lease (a leader that was paused past its lease
    /// must not answer keep-alives from its own table).
    pub(super) fn is_vouching(&self) -> bool {
        let applied = u64::try_from(self.machine.applied()).unwrap_or(0);
        synod_core::node::may_vouch(&self.replica, applied, self.mono_now())
    }

    /// On becoming the authoritative leader, every session gets a full
    /// timeout; while it may vouch, waiting keep-alives are answered.
    pub(super) fn watch_authority(&mut self) {
        let authoritative = self.is_authoritative();
        if authoritative && !self.authoritative {
            let now = self.mono_now();
            self.sessions.became_leader(self.machine.sessions(), now);
            self.mint_cluster_id(true);
        }
        self.authoritative = authoritative;
        if self.sessions.waiting() > 0 && self.is_vouching() {
            let settled = self.sessions.vouching(self.machine.sessions());
            self.answer_pings(settled);
        }
    }

    pub(super) fn forget_session(&mut self, session: SessionId) {
        self.sessions.closed(session);
        self.watches.remove_session(session);
        self.outboxes.remove(&session);
        self.auth.remove(&session);
    }

    /// At the leader: a follower's report of the sessions its clients were
    /// heard from. Answered only while the lease holds (see
    /// `synod_core::node::liveness` for why) and the state is caught up,
    /// naming the sessions that are no longer alive here.
    pub(super) fn liveness_report(&mut self, from: NodeId, round: u64, sessions: Vec<SessionId>) {
        let now = self.mono_now();
        let applied = u64::try_from(self.machine.applied()).unwrap_or(0);
        let may_vouch = synod_core::node::may_vouch(&self.replica, applied, now);
        let answer = self
            .sessions
            .on_report(sessions, self.machine.sessions(), may_vouch, now);
        if let Some(expired) = answer {
            let ack = PeerMessage::TouchAck { round, expired };
            if let Err(error) = self.send_message(from, &ack) {
                tracing::debug!(%error, from, "cannot answer a liveness report");
            }
        }
    }

    /// Answers the keep-alives the core settled.
    pub(super) fn answer_pings(&mut self, settled: Vec<Settled>) {
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
    pub(super) fn live(&mut self, session: SessionId) -> Result<(), Error> {
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

    /// Proposes a new session with a fresh random password; answers its
    /// id, negotiated timeout and password once it is applied.
    pub fn create_session(
        &mut self,
        timeout_ms: Millis,
    ) -> Answer<(SessionId, Millis, SessionPassword, Header)> {
        let (tx, rx) = oneshot::channel();
        if let Err(error) = self.check_serving() {
            let _ = tx.send(Err(error));
            return rx;
        }
        let mut password = SessionPassword::default();
        if let Err(error) = getrandom::fill(&mut password) {
            let _ = tx.send(Err(Error::Internal(format!(
                "no randomness for a session password: {error}"
            ))));
            return rx;
        }
        self.submit(
            Txn::CreateSession {
                timeout_ms,
                password,
            },
            Box::new(move |state, applied| {
                let result = applied.and_then(|applied| match &applied.outcome {
                    TxnOutcome::SessionCreated(Ok((session, timeout_ms))) => {
                        let (session, timeout_ms) = (*session, *timeout_ms);
                        state.outboxes.entry(session).or_default();
                        Ok((session, timeout_ms, password, state.header(session)))
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
        let vouching = self.is_vouching();
        match self.sessions.ping(session, vouching, self.mono_now()) {
            PingAnswer::Alive => {
                let _ = reply.send(Ok(timeout));
            }
            PingAnswer::Wait(id) => {
                self.ping_replies.insert(id, reply);
            }
            PingAnswer::Expired => {
                let _ = reply.send(Err(Error::SessionExpired(session)));
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

    /// Periodic work. On the leader: expire sessions whose clients went
    /// silent and remove empty containers and expired TTL nodes. On a
    /// follower: report the sessions heard from to the leader. Everywhere:
    /// answer requests that waited too long for the ensemble, forget
    /// forwarded membership calls no one waits for, and append a failed log
    /// batch again.
    pub fn tick(&mut self) {
        self.expire_requests();
        self.forget_abandoned_membership_calls();
        let now = self.mono_now();
        if self.replica.role() != Role::Leader {
            if let Some(leader) = self.replica.leader().filter(|l| *l != self.id)
                && let Some((round, sessions)) = self.sessions.report(leader, now)
            {
                let report = PeerMessage::Touch { round, sessions };
                if let Err(error) = self.send_message(leader, &report) {
                    tracing::debug!(%error, "cannot report session liveness to the leader");
                }
            }
            return;
        }
        if self.authoritative {
            self.mint_cluster_id(false);
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
        let now_ms = wall_clock_ms();
        for path in self
            .reaping
            .due(self.replica.role(), self.machine.tree(), now_ms)
        {
            let done_path = path.clone();
            self.submit(
                Txn::Reap { path },
                Box::new(move |state, _| {
                    state.reaping.done(&done_path);
                }),
            );
        }
    }
}
