//! A graceful stop: a leader that is asked to stop first hands leadership
//! to the most caught-up live voter (`synod_core::node::handoff`), so that
//! a rolling restart or a node drain does not cost the ensemble an
//! election timeout.

use super::*;

impl NodeState {
    /// At the leader: asks the best successor to take over now; returns it.
    /// Elsewhere, or with no live voter to take over, does nothing.
    pub fn hand_off(&mut self) -> Option<NodeId> {
        if self.replica.role() != Role::Leader {
            return None;
        }
        let to = synod_core::node::handoff::successor(
            self.replica.membership(),
            self.id,
            &self.replica.peer_progress(),
            self.leader_silence_limit,
        )?;
        match self.replica.transfer_leadership(to) {
            Ok(()) => {
                self.run_commands();
                Some(to)
            }
            Err(error) => {
                tracing::warn!(%error, to, "cannot hand leadership over");
                None
            }
        }
    }

    /// Whether another node leads now (the hand-off is done).
    pub fn led_by_another(&self) -> bool {
        self.replica
            .leader()
            .is_some_and(|leader| leader != self.id)
    }
}
