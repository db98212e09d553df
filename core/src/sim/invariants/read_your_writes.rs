//! Read your writes: a read of a session never returns a state older than
//! a write the session sent before it and had acknowledged. The state a
//! read returns is its node's state at the slot it has applied, and a
//! write's slot is its zxid, so "older" is "served at a slot below the
//! write's".
//!
//! A client that pipelines (a write, then at once a read on the same
//! session without waiting for the write's answer) is owed this too, in
//! whichever order the answers come: the node must hold the read until
//! the write is answered. So a read served while an earlier write of its
//! session is still unanswered is remembered, and checked when that write
//! is acknowledged. The linearizability check cannot see this on its own:
//! a pipelined read overlaps its write in real time, so the history lets
//! it take effect before the write.

use crate::SessionId;
use crate::paxos::Slot;

/// What the check knows of one client's current session.
#[derive(Debug, Default)]
pub(in crate::sim) struct Session {
    session: SessionId,
    /// The slot of its latest acknowledged write.
    acked: Slot,
    /// Reads served while a write sent before them was unanswered: (read,
    /// node, slot applied there when served).
    early: Vec<(u64, usize, Slot)>,
}

impl Session {
    /// Forgets what it knew if `session` is not the one it followed.
    fn follow(&mut self, session: SessionId) {
        if self.session != session {
            *self = Session {
                session,
                ..Session::default()
            };
        }
    }

    /// A write of `session` was answered: acknowledged at `slot`, or with
    /// an error (`None`: its outcome is unknown, nothing is owed).
    pub(in crate::sim) fn on_write_answered(
        &mut self,
        session: SessionId,
        slot: Option<Slot>,
    ) -> Option<String> {
        self.follow(session);
        let early = std::mem::take(&mut self.early);
        let slot = slot?;
        self.acked = self.acked.max(slot);
        let stale: Vec<_> = early.into_iter().filter(|(_, _, at)| *at < slot).collect();
        (!stale.is_empty()).then(|| {
            format!(
                "session {session:#x}: reads (read, node, served at slot) {stale:?} were sent \
                 after its write acknowledged at slot {slot} and answered without it"
            )
        })
    }

    /// Read `read` of `session` was served at node `node` from the state
    /// at slot `applied`; `write_unanswered`: a write the session sent
    /// before this read has no answer yet.
    pub(in crate::sim) fn on_read(
        &mut self,
        session: SessionId,
        read: u64,
        node: usize,
        applied: Slot,
        write_unanswered: bool,
    ) -> Option<String> {
        self.follow(session);
        if write_unanswered {
            self.early.push((read, node, applied));
        }
        (applied < self.acked).then(|| {
            format!(
                "session {session:#x}: read {read} at node {node} was served at slot {applied}, \
                 older than its acknowledged write at slot {}",
                self.acked
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_served_before_its_pipelined_write_is_caught_when_the_write_is_acknowledged() {
        let mut s = Session::default();
        assert_eq!(s.on_read(7, 1, 0, 4, true), None);
        assert!(s.on_write_answered(7, Some(5)).is_some());
        // Served at the write's slot or later: fine.
        assert_eq!(s.on_read(7, 2, 0, 6, true), None);
        assert_eq!(s.on_write_answered(7, Some(6)), None);
    }

    #[test]
    fn a_later_read_older_than_an_acknowledged_write_is_caught() {
        let mut s = Session::default();
        assert_eq!(s.on_write_answered(7, Some(5)), None);
        assert!(s.on_read(7, 1, 2, 4, false).is_some());
        // Another session owes nothing to session 7's writes.
        assert_eq!(s.on_read(8, 2, 2, 1, false), None);
    }

    #[test]
    fn a_write_of_unknown_outcome_owes_nothing() {
        let mut s = Session::default();
        assert_eq!(s.on_read(7, 1, 0, 4, true), None);
        assert_eq!(s.on_write_answered(7, None), None);
        assert_eq!(s.on_read(7, 2, 0, 4, false), None);
    }
}
