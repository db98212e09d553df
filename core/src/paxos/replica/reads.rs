//! Linearizable reads at the leader: by lease (checked against `now`) or
//! by a heartbeat round (read index).

use super::*;

impl<T: Clone> Replica<T> {
    /// Asks at `now` for a linearizable read. Answered by
    /// [`Command::ReadReady`] (or [`Command::ReadFailed`]) now or later.
    /// `now` must be read after the request arrived: a lease is checked
    /// against it, so a read that waited in a paused process is checked
    /// after the pause.
    pub fn read(&mut self, id: u64, now: MonoMs) -> Result<(), PaxosError> {
        self.advance(now);
        let commit = self.commit;
        let now = self.now;
        let lease_mode = matches!(self.cfg.read_mode, ReadMode::Lease { .. });
        let State::Leader(l) = &mut self.state else {
            return Err(PaxosError::NotLeader {
                leader: self.leader_hint,
            });
        };
        let index = commit.max(l.ready_slot);
        if lease_mode && commit >= l.ready_slot && now < l.lease_until {
            let lease_until = Some(l.lease_until);
            self.out.push(Command::ReadReady {
                id,
                index,
                lease_until,
            });
            return Ok(());
        }
        // Read index: confirm with a fresh heartbeat round that no other
        // leader has been elected, then serve at the commit index as of now.
        l.reads.push((id, index, l.hb_seq + 1));
        self.broadcast_heartbeat();
        self.serve_reads();
        Ok(())
    }

    /// Whether a lease read may be answered at `now`: this replica leads
    /// and its lease runs past `now`. A shell that waited (to apply up to
    /// the read's index, say) checks again with the time it answers at.
    pub fn lease_holds(&self, now: MonoMs) -> bool {
        matches!(&self.state, State::Leader(l) if now.max(self.now) < l.lease_until)
    }

    pub(super) fn serve_reads(&mut self) {
        let commit = self.commit;
        let State::Leader(l) = &mut self.state else {
            return;
        };
        if l.reads.is_empty() || commit < l.ready_slot {
            return;
        }
        let q = l.quorum_seq;
        let mut i = 0;
        while i < l.reads.len() {
            let (id, index, seq) = l.reads[i];
            if seq <= q && index <= commit {
                l.reads.swap_remove(i);
                let lease_until = None;
                self.out.push(Command::ReadReady {
                    id,
                    index,
                    lease_until,
                });
            } else {
                i += 1;
            }
        }
    }

    pub(super) fn fail_reads(&mut self) {
        if let State::Leader(l) = &mut self.state {
            let reads = std::mem::take(&mut l.reads);
            for (id, _, _) in reads {
                self.out.push(Command::ReadFailed { id });
            }
        }
    }
}
