//! Elections: pre-vote, phase 1 (prepare and promise), becoming leader
//! with the values phase 1 found, stepping aside on a higher ballot, and the
//! followers' side of a resignation or a leadership transfer.

use super::*;

impl<T: Clone> Replica<T> {
    pub(super) fn on_timeout_now(&mut self, from: NodeId, ballot: Ballot) {
        if ballot < self.promised || !self.is_voter() || self.leader_hint != Some(from) {
            return;
        }
        self.leader_hint = None;
        self.leader_heard_at = None;
        self.elections.on_transfer += 1;
        self.campaign();
    }

    /// Starts an election now instead of waiting for the timeout.
    pub fn campaign(&mut self) {
        if !self.is_voter() {
            return;
        }
        let round = self.max_round.max(self.promised.round) + 1;
        self.campaign_at(Ballot::new(round, self.cfg.id));
    }

    /// Runs phase 1 for `ballot`, which must be above every round seen.
    pub(super) fn campaign_at(&mut self, ballot: Ballot) {
        self.max_round = self.max_round.max(ballot.round);
        let from = self.commit + 1;
        self.fail_reads();
        self.state = State::Candidate(Candidate {
            ballot,
            from,
            granted: Vec::new(),
            merged: BTreeMap::new(),
            self_vote: SelfVote::No,
            asked: self.others(),
        });
        self.reset_election_timer();
        for to in self.others() {
            self.send(to, Message::Prepare { ballot, from });
        }
        self.maybe_self_promise();
    }

    /// Election timeout: ask the voters whether they would promise a new
    /// ballot before raising anyone's promise.
    pub(super) fn pre_campaign(&mut self) {
        let round = self.max_round.max(self.promised.round) + 1;
        let ballot = Ballot::new(round, self.cfg.id);
        self.state = State::PreCandidate {
            ballot,
            granted: Vec::new(),
        };
        self.reset_election_timer();
        if self.quorum <= 1 {
            self.campaign();
            return;
        }
        for to in self.others() {
            self.send(to, Message::PreVote { ballot });
        }
    }

    pub(super) fn on_pre_vote(&mut self, from: NodeId, ballot: Ballot) {
        // At or below our promise: say so, so that the asker picks a higher
        // round. (Equal happens when it crashed mid-campaign and restarted
        // with an older promise: it would otherwise retry the same ballot
        // forever.)
        if ballot <= self.promised {
            self.send(
                from,
                Message::Nack {
                    ballot,
                    promised: self.promised,
                },
            );
            return;
        }
        if !self.would_promise(from) {
            return;
        }
        self.send(from, Message::PreVoteGranted { ballot });
    }

    pub(super) fn on_pre_vote_granted(&mut self, from: NodeId, ballot: Ballot) {
        let quorum = self.quorum;
        let State::PreCandidate { ballot: b, granted } = &mut self.state else {
            return;
        };
        if *b != ballot || granted.contains(&from) || !self.membership.is_voter(from) {
            return;
        }
        granted.push(from);
        if granted.len() + 1 >= quorum {
            // Keep the pre-voted ballot unless a higher round showed up since.
            if ballot.round >= self.max_round && ballot > self.promised {
                self.campaign_at(ballot);
            } else {
                self.campaign();
            }
        }
    }

    /// Lease stickiness: while a live leader is in charge, other proposers
    /// are not heard, so a node rejoining after a partition cannot depose
    /// it. The leader itself may always raise its ballot.
    pub(super) fn would_promise(&self, from: NodeId) -> bool {
        if matches!(self.state, State::Leader(_)) {
            return false;
        }
        let lease_over = self
            .leader_heard_at
            .is_none_or(|at| self.now >= at + self.cfg.election_ms);
        lease_over || self.leader_hint == Some(from)
    }

    pub(super) fn on_promise(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        accepted: Vec<(Slot, Entry<T>)>,
    ) {
        let State::Candidate(c) = &mut self.state else {
            return;
        };
        if c.ballot != ballot || c.granted.contains(&from) {
            return;
        }
        c.granted.push(from);
        merge(&mut c.merged, accepted);
        self.ask_discovered();
        self.maybe_self_promise();
        self.maybe_become_leader();
    }

    /// Phase 1 needs a majority of the committed membership and of every
    /// membership change found in the open range (it may have been chosen,
    /// and slots after it may have been chosen by its voters).
    pub(super) fn phase1_quorums(&self, with_self: bool) -> bool {
        let State::Candidate(c) = &self.state else {
            return false;
        };
        let counts = |m: &Membership| {
            let n = m
                .voters
                .iter()
                .filter(|v| c.granted.contains(v) || (with_self && **v == self.cfg.id))
                .count();
            n >= m.quorum()
        };
        counts(&self.membership)
            && c.merged.values().all(|e| match &e.value {
                Value::Config(m) => counts(m),
                _ => true,
            })
    }

    /// Sends the prepare to voters of membership changes phase 1 found.
    pub(super) fn ask_discovered(&mut self) {
        let id = self.cfg.id;
        let State::Candidate(c) = &mut self.state else {
            return;
        };
        let mut new = Vec::new();
        for e in c.merged.values() {
            if let Value::Config(m) = &e.value {
                for v in &m.voters {
                    if *v != id && !c.asked.contains(v) && !new.contains(v) {
                        new.push(*v);
                    }
                }
            }
        }
        c.asked.extend(&new);
        let (ballot, from) = (c.ballot, c.from);
        for to in new {
            self.send(to, Message::Prepare { ballot, from });
        }
    }

    /// The candidate promises its own ballot only once the others' promises
    /// make a majority with it. Until then it keeps accepting the current
    /// leader's values, so a candidate that cannot win (a node rejoining
    /// after a partition) never refuses the live leader.
    pub(super) fn maybe_self_promise(&mut self) {
        let promised = self.promised;
        if !self.phase1_quorums(true) {
            return;
        }
        let State::Candidate(c) = &mut self.state else {
            return;
        };
        if !matches!(c.self_vote, SelfVote::No) {
            return;
        }
        if promised > c.ballot {
            self.state = State::Follower;
            return;
        }
        let ballot = c.ballot;
        let from = c.from;
        c.self_vote = SelfVote::Pending;
        let own = self.accepted_from(from);
        if let State::Candidate(c) = &mut self.state {
            merge(&mut c.merged, own);
        }
        self.ask_discovered();
        self.promised = ballot;
        self.persist(Some(ballot), Vec::new());
        self.defer(Deferred::SelfPromise { ballot });
    }

    pub(super) fn maybe_become_leader(&mut self) {
        let State::Candidate(c) = &self.state else {
            return;
        };
        if !matches!(c.self_vote, SelfVote::Done) || !self.phase1_quorums(true) {
            return;
        }
        let State::Candidate(c) = std::mem::replace(&mut self.state, State::Follower) else {
            return;
        };
        let from = c.from.max(self.commit + 1);
        let top = c.merged.keys().next_back().copied().unwrap_or(0).max(from);
        // Re-propose the highest-ballot value of every slot; no-ops fill
        // the gaps. At least one entry, so that the leader commits in its
        // own ballot and then knows everything chosen before it.
        let values: Vec<Value<T>> = (from..=top)
            .map(|s| match c.merged.get(&s) {
                Some(e) => e.value.clone(),
                None => Value::Noop,
            })
            .collect();
        // Members of re-proposed membership changes get the accepts too,
        // and nothing new is proposed until the last of them commits.
        let mut extra = Vec::new();
        let mut pending_config = 0;
        for (i, v) in values.iter().enumerate() {
            if let Value::Config(m) = v {
                extra.extend(m.voters.iter().chain(&m.observers));
                pending_config = from + i as Slot;
            }
        }
        self.leader_hint = Some(self.cfg.id);
        self.state = State::Leader(Leader {
            ballot: c.ballot,
            next_slot: from,
            ready_slot: top,
            acks: VecDeque::new(),
            peers: Vec::new(),
            heartbeat_at: self.now,
            hb_seq: 0,
            hb_sent: VecDeque::new(),
            quorum_seq: 0,
            lease_until: 0,
            reads: Vec::new(),
            commit_sent: self.commit,
            pending_config,
        });
        self.sync_peers(&extra);
        self.start_phase2(from, values);
    }

    pub(super) fn on_resign(&mut self, from: NodeId, ballot: Ballot) {
        if ballot < self.promised || self.leader_hint != Some(from) {
            return;
        }
        // The leader no longer serves lease reads, so its lease may end
        // here. Campaign after a short random delay (not at once: several
        // followers may have heard the resignation).
        self.leader_hint = None;
        self.leader_heard_at = None;
        let hb = self.cfg.heartbeat_ms;
        let half = self.cfg.election_ms / 2;
        self.election_deadline = self.now + self.rng.range(hb, hb + half.max(1));
    }

    pub(super) fn on_nack(&mut self, ballot: Ballot, promised: Ballot) {
        if promised <= ballot {
            return;
        }
        match &self.state {
            State::Leader(l) if l.ballot == ballot => {
                // Some acceptor promised a higher ballot (a candidate that
                // could not win, or a new leader). Step down and at once try
                // a higher ballot: acceptors that still follow us let their
                // own leader raise its ballot, and if another leader is live
                // its followers ignore us and we follow it on its heartbeat.
                self.step_down();
                self.campaign();
            }
            State::Candidate(c) if c.ballot == ballot => self.state = State::Follower,
            _ => {}
        }
    }
}
