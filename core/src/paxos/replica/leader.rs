//! The leader: phase 2 (accept and vote counting), heartbeats and
//! check-quorum, catch-up of lagging peers from the log, resigning,
//! stepping down and transferring leadership.

use super::*;

impl<T: Clone> Replica<T> {
    /// Hands leadership to voter `to`: resigns, and asks `to` to campaign
    /// at once. Followers drop the lease on the resignation, so they
    /// promise `to` without waiting for their election timeout.
    pub fn transfer_leadership(&mut self, to: NodeId) -> Result<(), PaxosError> {
        let State::Leader(l) = &self.state else {
            return Err(PaxosError::NotLeader {
                leader: self.leader_hint,
            });
        };
        if to == self.cfg.id {
            return Ok(());
        }
        if !self.membership.is_voter(to) {
            return Err(PaxosError::NotAVoter(to));
        }
        let ballot = l.ballot;
        self.resign(ballot, Some(to));
        Ok(())
    }

    /// Steps down and tells everyone; `successor` is asked to campaign.
    pub(super) fn resign(&mut self, ballot: Ballot, successor: Option<NodeId>) {
        let members: Vec<NodeId> = match &self.state {
            State::Leader(l) => l.peers.iter().map(|p| p.id).collect(),
            _ => self.others(),
        };
        self.step_down();
        for to in members {
            if Some(to) == successor {
                self.send(to, Message::TimeoutNow { ballot });
            } else {
                self.send(to, Message::Resign { ballot });
            }
        }
    }

    /// At the leader: tells the followers a commit index that moved since
    /// it was last sent, now rather than at the next tick. A shell calls it
    /// once per batch of inputs, so a follower answers its clients one
    /// round trip after the commit instead of up to a tick later; under
    /// load the accepts carry the commit index and this sends nothing.
    pub fn flush_commit(&mut self) {
        if let State::Leader(l) = &self.state
            && self.commit > l.commit_sent
        {
            self.broadcast_heartbeat();
        }
    }

    /// Proposes `values` for the next slots. Returns the first slot used.
    pub fn propose(&mut self, values: Vec<T>) -> Result<Slot, PaxosError> {
        let limit = self.cfg.max_inflight;
        let commit = self.commit;
        let State::Leader(l) = &mut self.state else {
            return Err(PaxosError::NotLeader {
                leader: self.leader_hint,
            });
        };
        let first = l.next_slot;
        if values.is_empty() {
            return Ok(first);
        }
        if l.pending_config > commit {
            return Err(PaxosError::ConfigChangePending);
        }
        if (first - commit - 1) as usize + values.len() > limit {
            return Err(PaxosError::Backpressure { limit });
        }
        let values: Vec<Value<T>> = values.into_iter().map(Value::Data).collect();
        self.start_phase2(first, values);
        Ok(first)
    }

    pub(super) fn start_phase2(&mut self, first: Slot, values: Vec<Value<T>>) {
        let commit = self.commit;
        // The entries are written by the persist at the end of this call.
        let next_token = self.next_token();
        let State::Leader(l) = &mut self.state else {
            return;
        };
        let ballot = l.ballot;
        let last = first + values.len() as Slot - 1;
        let mut entries = Vec::with_capacity(values.len());
        for (i, v) in values.iter().enumerate() {
            let slot = first + i as Slot;
            let entry = Entry {
                ballot,
                value: v.clone(),
            };
            entries.push((slot, entry.clone()));
            self.log.set(slot, entry, next_token);
            if slot > commit {
                l.acks.push_back(0);
            }
        }
        l.next_slot = last + 1;
        let peers: Vec<NodeId> = l.peers.iter().map(|p| p.id).collect();
        let n = peers.len();
        let mut values = Some(values);
        for (i, to) in peers.into_iter().enumerate() {
            let vs = if i + 1 == n {
                values.take().unwrap_or_default()
            } else {
                values.clone().unwrap_or_default()
            };
            self.send(
                to,
                Message::Accept {
                    ballot,
                    first,
                    values: vs,
                    commit,
                },
            );
        }
        if let State::Leader(l) = &mut self.state {
            l.commit_sent = commit;
        }
        self.persist(None, entries);
        self.defer(Deferred::SelfAccepted {
            ballot,
            first,
            last,
        });
    }

    pub(super) fn on_accepted(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        first: Slot,
        last: Slot,
        commit: Slot,
    ) {
        let State::Leader(l) = &mut self.state else {
            return;
        };
        if l.ballot != ballot {
            return;
        }
        let Some(p) = l.peers.iter_mut().find(|p| p.id == from) else {
            return;
        };
        p.last_heard = self.now;
        p.commit = p.commit.max(commit);
        let bit = p.bit;
        self.record_votes(ballot, bit, first, last);
    }

    pub(super) fn record_votes(&mut self, ballot: Ballot, bit: u32, first: Slot, last: Slot) {
        let commit = self.commit;
        let State::Leader(l) = &mut self.state else {
            return;
        };
        if l.ballot != ballot {
            return;
        }
        let lo = first.max(commit + 1);
        let hi = last.min(l.next_slot - 1);
        for s in lo..=hi {
            if let Some(m) = l.acks.get_mut((s - commit - 1) as usize) {
                *m |= 1 << bit;
            }
        }
        // Each slot needs a majority of the membership in force for it: a
        // membership change governs the slots after its own.
        let (mut mask, mut quorum) = (self.voter_mask, self.quorum);
        let mut new_commit = commit;
        while let Some(m) = l.acks.front() {
            if ((m & mask).count_ones() as usize) < quorum {
                break;
            }
            l.acks.pop_front();
            new_commit += 1;
            if let Some(Entry {
                value: Value::Config(c),
                ..
            }) = self.log.get(new_commit)
            {
                mask = mask_of(&self.universe, &c.voters);
                quorum = c.quorum();
            }
        }
        if new_commit > commit {
            self.commit = new_commit;
            self.emit_apply(commit + 1, new_commit);
            self.committed(commit, new_commit);
            self.serve_reads();
        }
    }

    pub(super) fn broadcast_heartbeat(&mut self) {
        let commit = self.commit;
        let now = self.now;
        let State::Leader(l) = &mut self.state else {
            return;
        };
        l.heartbeat_at = now;
        l.hb_seq += 1;
        l.hb_sent.push_back((l.hb_seq, now));
        while l.hb_sent.len() > 64 {
            l.hb_sent.pop_front();
        }
        l.commit_sent = commit;
        let ballot = l.ballot;
        let seq = l.hb_seq;
        let peers: Vec<NodeId> = l.peers.iter().map(|p| p.id).collect();
        for to in peers {
            self.send(
                to,
                Message::Heartbeat {
                    ballot,
                    commit,
                    seq,
                },
            );
        }
        self.update_quorum_seq();
    }

    pub(super) fn on_heartbeat_ack(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        seq: u64,
        commit: Slot,
    ) {
        let my_commit = self.commit;
        let max_batch = self.cfg.max_batch;
        let State::Leader(l) = &mut self.state else {
            return;
        };
        if l.ballot != ballot {
            return;
        }
        let Some(p) = l.peers.iter_mut().find(|p| p.id == from) else {
            return;
        };
        p.last_heard = self.now;
        p.commit = p.commit.max(commit);
        p.acked_seq = p.acked_seq.max(seq);
        let bit = p.bit;
        // Catch-up from the log: the peer lacks chosen values. The next
        // window goes out when the peer has the previous one, or when the
        // previous one looks lost.
        let resend = self.cfg.heartbeat_ms * 2;
        let base = self.log.base;
        if commit + 1 < base
            && (p.snap.is_none() || self.now >= p.learn_sent_at + resend)
            && let Some(snap) = &self.snapshot
        {
            // The peer needs slots we compacted: send the snapshot, resuming
            // where the peer's last acknowledgement left it.
            if p.snap.is_none() || p.snap_index <= commit {
                p.snap = Some(snap.clone());
                p.snap_index = snap.index;
                p.snap_offset = 0;
            }
            p.learn_sent_at = self.now;
            p.snap_sent = p.snap_offset;
            self.send_snapshot_window(from, ballot);
        } else if commit < my_commit
            && commit + 1 >= base
            && (commit >= p.learn_sent_to || self.now >= p.learn_sent_at + resend)
        {
            let first = commit + 1;
            let last = my_commit.min(commit + max_batch as Slot);
            if let Some(chosen) = self.log.chosen(first, last) {
                p.learn_sent_to = chosen.last(first);
                p.learn_sent_at = self.now;
                self.send_chosen(from, ballot, first, chosen);
            }
        }
        // Retransmit uncommitted slots the peer has not acknowledged, from
        // the first missing one (accepts may have been lost).
        if seq > 0
            && let State::Leader(l) = &self.state
        {
            let missing = l.acks.iter().position(|m| m & (1 << bit) == 0);
            if let Some(i) = missing {
                let first = my_commit + 1 + i as Slot;
                let last = (l.next_slot - 1).min(first + max_batch as Slot - 1);
                let values: Vec<Value<T>> = (first..=last)
                    .map_while(|s| self.log.get(s).map(|e| e.value.clone()))
                    .collect();
                if !values.is_empty() {
                    self.send(
                        from,
                        Message::Accept {
                            ballot,
                            first,
                            values,
                            commit: my_commit,
                        },
                    );
                }
            }
        }
        if seq > 0 {
            self.update_quorum_seq();
        }
    }

    /// Recomputes the highest heartbeat round a quorum acknowledged, the
    /// lease that follows from it, and serves reads that waited on it.
    pub(super) fn update_quorum_seq(&mut self) {
        let quorum = self.quorum;
        let mask = self.voter_mask;
        let lease = match self.cfg.read_mode {
            ReadMode::Lease { drift_ms } => Some(self.cfg.election_ms.saturating_sub(drift_ms)),
            ReadMode::ReadIndex => None,
        };
        let State::Leader(l) = &mut self.state else {
            return;
        };
        let mut seqs: Vec<u64> = l
            .peers
            .iter()
            .filter(|p| mask & (1 << p.bit) != 0)
            .map(|p| p.acked_seq)
            .collect();
        seqs.sort_unstable_by(|a, b| b.cmp(a));
        // We acknowledge our own rounds; quorum-1 peers must too.
        let q = if quorum <= 1 {
            l.hb_seq
        } else {
            seqs.get(quorum - 2).copied().unwrap_or(0)
        };
        if q > l.quorum_seq {
            l.quorum_seq = q;
            if let Some(lease) = lease
                && let Some(&(_, sent)) = l.hb_sent.iter().find(|(s, _)| *s == q)
            {
                // Every acceptor in that quorum heard us after `sent`, and
                // ignores other proposers for `election_ms` of its own
                // clock from then on; shorten by the drift bound. `sent`
                // is the time the round was recorded, never later than it
                // left, so a pause between the two only shortens the lease.
                l.lease_until = l.lease_until.max(sent + lease);
            }
        }
        self.serve_reads();
    }

    pub(super) fn step_down(&mut self) {
        self.fail_reads();
        self.state = State::Follower;
        self.leader_hint = None;
        // Our own lease over the others says nothing about us as an
        // acceptor: be ready to promise a successor at once.
        self.leader_heard_at = None;
        self.reset_election_timer();
    }
}
