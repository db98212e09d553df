//! Snapshot transfer and catch-up served without being the leader: the
//! leader's windowed snapshot stream and its acknowledgements, and the
//! stateless service any replica gives a peer that is behind.

use super::*;

impl<T: Clone> Replica<T> {
    /// Serves a lagging peer without being its leader: chosen values from
    /// the log, or the snapshot when the log no longer has them.
    pub(super) fn on_catch_up(&mut self, from: NodeId, commit: Slot) {
        if commit >= self.commit {
            return;
        }
        if commit + 1 >= self.log.base {
            let first = commit + 1;
            let last = self.commit.min(commit + self.cfg.max_batch as Slot);
            if let Some(chosen) = self.log.chosen(first, last) {
                self.send_chosen(from, Ballot::ZERO, first, chosen);
            }
        } else if let Some(snap) = self.snapshot_for(from, None) {
            self.serve_snapshot_chunk(from, &snap, 0);
        }
    }

    /// Sends `to` the chosen values `chosen`, from `first` on: from
    /// memory, or through the shell's log.
    pub(super) fn send_chosen(
        &mut self,
        to: NodeId,
        ballot: Ballot,
        first: Slot,
        chosen: log::Chosen<T>,
    ) {
        let commit = self.commit;
        match chosen {
            log::Chosen::Held(values) => self.send(
                to,
                Message::Learn {
                    ballot,
                    first,
                    values,
                    commit,
                },
            ),
            log::Chosen::Logged { last } => self.out.push(Command::SendLogged {
                to,
                ballot,
                first,
                last,
                commit,
            }),
        }
    }

    /// The snapshot to serve `to`, at `index` when it asks for more of
    /// one: the one pinned for it while it keeps asking for chunks of it;
    /// on a fresh request (`index` none) the latest, pinned anew once the
    /// pinned one went unasked for an election timeout. Pins of peers that
    /// went quiet are dropped, so that old snapshots are not kept alive.
    fn snapshot_for(&mut self, to: NodeId, index: Option<Slot>) -> Option<Snapshot> {
        let now = self.now;
        let idle = self.cfg.election_ms;
        self.served.retain(|_, (_, asked)| now < *asked + idle);
        match (self.served.get_mut(&to), index) {
            (Some((pinned, asked)), Some(i)) if pinned.index == i => {
                *asked = now;
                return Some(pinned.clone());
            }
            (Some((pinned, _)), None) => return Some(pinned.clone()),
            _ => {}
        }
        let latest = self
            .snapshot
            .clone()
            .filter(|s| index.is_none_or(|i| s.index == i))?;
        self.served.insert(to, (latest.clone(), now));
        Some(latest)
    }

    pub(super) fn serve_snapshot_chunk(&mut self, to: NodeId, snap: &Snapshot, offset: u64) {
        let total = snap.data.len();
        if offset >= total && total > 0 {
            // The peer has it all: nothing to send.
            return;
        }
        let start = offset.min(total);
        let data = snap
            .data
            .chunk(start, self.cfg.snapshot_chunk.max(1) as u64);
        self.send(
            to,
            Message::Snapshot {
                ballot: Ballot::ZERO,
                index: snap.index,
                membership: snap.membership.clone(),
                total,
                offset: start,
                data,
            },
        );
    }

    /// A peer caught us up past `old`: a campaign started from the old
    /// commit index is stale, start again from the new one.
    pub(super) fn caught_up_from_peer(&mut self, old: Slot) {
        if self.commit > old && matches!(self.state, State::Candidate(_)) {
            self.state = State::Follower;
            self.campaign();
        }
    }

    /// Sends the chunks from what peer `to` was last sent up to a window
    /// of [`SNAPSHOT_WINDOW`] chunks past what it acknowledged.
    pub(super) fn send_snapshot_window(&mut self, to: NodeId, ballot: Ballot) {
        let chunk = self.cfg.snapshot_chunk.max(1) as u64;
        let State::Leader(l) = &mut self.state else {
            return;
        };
        let Some(p) = l.peers.iter_mut().find(|p| p.id == to) else {
            return;
        };
        let Some(Snapshot {
            index,
            membership,
            data,
        }) = p.snap.clone()
        else {
            return;
        };
        let total = data.len();
        let limit = total.min(p.snap_offset + SNAPSHOT_WINDOW * chunk);
        let mut msgs = Vec::new();
        // An empty snapshot still needs one (empty) chunk.
        while p.snap_sent < limit || (total == 0 && msgs.is_empty()) {
            let start = p.snap_sent.min(total);
            // A chunk of a snapshot the shell holds only names its bytes:
            // the shell reads them as it sends the message.
            let piece = data.chunk(start, chunk);
            p.snap_sent = start + piece.len();
            msgs.push(Message::Snapshot {
                ballot,
                index,
                membership: membership.clone(),
                total,
                offset: start,
                data: piece,
            });
            if total == 0 {
                break;
            }
        }
        for msg in msgs {
            self.send(to, msg);
        }
    }

    pub(super) fn on_snapshot_ack(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        index: Slot,
        offset: u64,
    ) {
        if ballot == Ballot::ZERO {
            if let Some(snap) = self.snapshot_for(from, Some(index)) {
                self.serve_snapshot_chunk(from, &snap, offset);
            }
            return;
        }
        let now = self.now;
        let State::Leader(l) = &mut self.state else {
            return;
        };
        if l.ballot != ballot {
            return;
        }
        let Some(p) = l.peers.iter_mut().find(|p| p.id == from) else {
            return;
        };
        p.last_heard = now;
        let Some(data) = &p.snap else {
            return;
        };
        // Only acknowledgements of the transfer in progress move it on;
        // a duplicate of an old one must not fork a second stream.
        if p.snap_index != index || offset == p.snap_offset {
            return;
        }
        if offset < p.snap_offset {
            // The peer has less than we thought (it restarted, or this
            // acknowledgement is late): resume from what it reports.
            p.snap_sent = offset;
        }
        p.snap_offset = offset;
        p.snap_sent = p.snap_sent.max(offset);
        p.learn_sent_at = now;
        if offset < data.data.len() {
            self.send_snapshot_window(from, ballot);
        } else {
            p.commit = p.commit.max(index);
            p.snap = None;
        }
    }

    /// Whether a snapshot transfer to this replica is under way and moved
    /// on within the last election timeout.
    pub(super) fn receiving_snapshot(&self) -> bool {
        self.snap_recv.is_some() && self.now < self.snap_recv_progress + self.cfg.election_ms
    }
}
