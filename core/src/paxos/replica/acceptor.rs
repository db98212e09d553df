//! The acceptor and learner: promises, accepts, heartbeats, catch-up
//! received (`Learn`, `Snapshot`), following a leader and learning its
//! commit index.

use super::*;

impl<T: Clone> Replica<T> {
    pub(super) fn on_prepare(&mut self, from: NodeId, ballot: Ballot, slot: Slot) {
        if ballot < self.promised {
            self.send(
                from,
                Message::Nack {
                    ballot,
                    promised: self.promised,
                },
            );
            return;
        }
        if ballot > self.promised && !self.would_promise(from) {
            return;
        }
        // We compacted, or hold only on disk, slots the candidate has not
        // committed: a promise could not report what we accepted there, so
        // we must not promise (nor repeat a promise made before we let them
        // go). The candidate is caught up instead, and campaigns again from
        // further along, or a replica that is further along is elected.
        if slot < self.log.held_from() {
            self.on_catch_up(from, slot.saturating_sub(1));
            return;
        }
        if ballot > self.promised {
            match &self.state {
                State::Candidate(c) if c.ballot < ballot => self.state = State::Follower,
                State::PreCandidate { .. } => self.state = State::Follower,
                _ => {}
            }
            self.promised = ballot;
            // Granting a promise restarts the timer, so that we do not
            // compete with a candidate a majority is willing to elect.
            self.reset_election_timer();
            self.persist(Some(ballot), Vec::new());
        }
        // A duplicate prepare of the promised ballot gets the promise again.
        let accepted = self.accepted_from(slot);
        self.send_durable(
            from,
            Message::Promise {
                ballot,
                from: slot,
                accepted,
                commit: self.commit,
            },
        );
    }

    pub(super) fn accepted_from(&self, from: Slot) -> Vec<(Slot, Entry<T>)> {
        (from.max(self.log.held_from())..=self.log.last())
            .filter_map(|s| self.log.get(s).map(|e| (s, e.clone())))
            .collect()
    }

    pub(super) fn on_accept(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        first: Slot,
        values: Vec<Value<T>>,
        commit: Slot,
    ) {
        if ballot < self.promised {
            self.send(
                from,
                Message::Nack {
                    ballot,
                    promised: self.promised,
                },
            );
            return;
        }
        if first == 0 || values.is_empty() {
            return;
        }
        let raise = ballot > self.promised;
        if raise {
            self.promised = ballot;
        }
        self.follow(from, ballot);
        let last = first + values.len() as Slot - 1;
        let mut entries = Vec::with_capacity(values.len());
        for (i, value) in values.into_iter().enumerate() {
            let slot = first + i as Slot;
            // At or below the commit index the value is chosen and ours is
            // the same; nothing to write.
            if slot <= self.commit {
                continue;
            }
            let entry = Entry { ballot, value };
            entries.push((slot, entry.clone()));
            self.log.set(slot, entry, self.next_token());
        }
        if raise || !entries.is_empty() {
            self.persist(raise.then_some(ballot), entries);
        }
        self.learn_commit(ballot, commit);
        self.send_durable(
            from,
            Message::Accepted {
                ballot,
                first,
                last,
                commit: self.commit,
            },
        );
    }

    pub(super) fn on_heartbeat(&mut self, from: NodeId, ballot: Ballot, commit: Slot, seq: u64) {
        if ballot < self.promised {
            self.send(
                from,
                Message::Nack {
                    ballot,
                    promised: self.promised,
                },
            );
            return;
        }
        self.follow(from, ballot);
        self.learn_commit(ballot, commit);
        self.send(
            from,
            Message::HeartbeatAck {
                ballot,
                seq,
                commit: self.commit,
            },
        );
    }

    pub(super) fn on_learn(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        first: Slot,
        values: Vec<Value<T>>,
        commit: Slot,
    ) {
        let peer_served = ballot == Ballot::ZERO;
        if ballot < self.promised && !peer_served || peer_served && self.is_leader() {
            return;
        }
        if !peer_served {
            self.follow(from, ballot);
        }
        // Chosen values from a peer that is not the leader are marked
        // chosen rather than stored under some leader's ballot.
        let ballot = if peer_served { Ballot::CHOSEN } else { ballot };
        let old = self.commit;
        let mut entries = Vec::new();
        for (i, value) in values.into_iter().enumerate() {
            let slot = first + i as Slot;
            if slot <= self.commit {
                continue;
            }
            if slot != self.commit + 1 {
                break;
            }
            // The value is chosen, so storing it under the leader's ballot
            // is safe: any later phase 1 that sees it must propose it anyway.
            let entry = Entry { ballot, value };
            entries.push((slot, entry.clone()));
            self.log.set(slot, entry, self.next_token());
            self.commit = slot;
        }
        if !entries.is_empty() {
            self.persist(None, entries);
        }
        if self.commit > old {
            self.emit_apply(old + 1, self.commit);
            self.committed(old, self.commit);
        }
        if peer_served {
            if self.commit < commit && self.commit > old {
                self.send(
                    from,
                    Message::CatchUp {
                        commit: self.commit,
                    },
                );
            } else {
                self.caught_up_from_peer(old);
            }
            return;
        }
        self.learn_commit(ballot, commit);
        self.send(
            from,
            Message::HeartbeatAck {
                ballot,
                seq: 0,
                commit: self.commit,
            },
        );
    }

    pub(super) fn on_snapshot(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        (index, membership): (Slot, Membership),
        total: u64,
        offset: u64,
        data: Chunk,
    ) {
        // A chunk that only names its bytes never comes off the wire (the
        // sender's shell reads them into the frame): taken as lost.
        let Chunk::Bytes(data) = data else {
            return;
        };
        let peer_served = ballot == Ballot::ZERO;
        if ballot < self.promised && !peer_served || peer_served && self.is_leader() {
            return;
        }
        if !peer_served {
            self.follow(from, ballot);
        }
        if index <= self.commit {
            // Already have it (or more): tell the leader we are done. A
            // peer serving without being the leader keeps no transfer
            // state and needs no word: answering it would ask for the
            // chunk after the end, which it would serve, empty, and so on
            // forever (a storm once the network duplicates messages).
            self.snap_recv = None;
            if peer_served {
                return;
            }
            self.send(
                from,
                Message::SnapshotAck {
                    ballot,
                    index,
                    offset: total,
                },
            );
            return;
        }
        // Another transfer replaces the one being assembled only when it is
        // of a newer snapshot, or the current one made no progress for an
        // election timeout (its sender may be gone). Otherwise two members
        // offering their snapshots at once would restart each other's
        // transfer forever (simulator seed 1744).
        let current_stale = self.now >= self.snap_recv_progress + self.cfg.election_ms;
        match &self.snap_recv {
            Some((i, t, source, _)) if *i == index && *t == total && *source == from => {}
            Some((i, ..)) if offset == 0 && index <= *i && !current_stale => return,
            _ if offset == 0 => {
                self.snap_recv = Some((index, total, from, Vec::new()));
                self.snap_recv_progress = self.now;
            }
            // The middle of another transfer: tell the sender we have none
            // of it, so that it starts over from the beginning.
            _ => {
                self.send(
                    from,
                    Message::SnapshotAck {
                        ballot,
                        index,
                        offset: 0,
                    },
                );
                return;
            }
        }
        let mut extended = false;
        let have = match &mut self.snap_recv {
            Some((_, _, _, buf)) => {
                if offset == buf.len() as u64 && !data.is_empty() {
                    buf.extend_from_slice(&data);
                    extended = true;
                    self.snap_recv_progress = self.now;
                }
                buf.len() as u64
            }
            None => 0,
        };
        let old = self.commit;
        if have >= total
            && let Some((_, _, _, buf)) = self.snap_recv.take()
        {
            // Held in memory until the shell has stored it and hands the
            // replica its durable copy (`compact` at this index).
            let data = SnapshotBytes::Memory(Bytes::from(buf));
            self.log.compact(index);
            self.commit = index;
            let snap = Snapshot {
                index,
                membership: membership.clone(),
                data,
            };
            self.snapshot = Some(snap.clone());
            self.out.push(Command::InstallSnapshot(snap));
            self.install_membership(index, membership);
        }
        self.snap_src = (peer_served && self.snap_recv.is_some()).then_some((from, self.now));
        if peer_served {
            if self.commit == old {
                // Ask the peer for the next chunk (it keeps no state), but
                // only when this one moved the transfer on: answering a
                // duplicated or stale chunk too would start a second stream
                // of chunks, and every further duplicate another (simulator
                // seed 3451: 100,000 messages in flight). A lost chunk is
                // asked for again by the retry in `tick`.
                if extended {
                    self.send(
                        from,
                        Message::SnapshotAck {
                            ballot,
                            index,
                            offset: have,
                        },
                    );
                }
            } else {
                self.caught_up_from_peer(old);
            }
            return;
        }
        self.send(
            from,
            Message::SnapshotAck {
                ballot,
                index,
                offset: have,
            },
        );
    }

    /// Accepts `leader` at `ballot` as the live leader.
    pub(super) fn follow(&mut self, leader: NodeId, ballot: Ballot) {
        match &self.state {
            State::Leader(l) if l.ballot < ballot => self.step_down(),
            State::Candidate(_) | State::PreCandidate { .. } => self.state = State::Follower,
            _ => {}
        }
        self.leader_hint = Some(leader);
        self.leader_heard_at = Some(self.now);
        self.reset_election_timer();
    }

    /// Advances the commit index to `commit` as far as this replica holds
    /// the leader's values: an entry accepted in the leader's own ballot is
    /// the value the leader got chosen; an older one may not be.
    pub(super) fn learn_commit(&mut self, ballot: Ballot, commit: Slot) {
        // Committed slots stay committed under every later leader, so the
        // highest announced is the leader's commit index as last heard.
        self.leader_commit = self.leader_commit.max(commit);
        let old = self.commit;
        while self.commit < commit {
            match self.log.get(self.commit + 1) {
                Some(e) if e.ballot == ballot => self.commit += 1,
                _ => break,
            }
        }
        if self.commit > old {
            self.emit_apply(old + 1, self.commit);
            self.committed(old, self.commit);
        }
    }

    pub(super) fn emit_apply(&mut self, first: Slot, last: Slot) {
        let values = (first..=last)
            .map(|s| match self.log.get(s) {
                Some(e) => e.value.clone(),
                // Unreachable: the commit index only covers held slots.
                None => Value::Noop,
            })
            .collect();
        self.out.push(Command::Apply { first, values });
    }
}
