//! Linearizable reads: the shell of `synod_core::node::reads`, which
//! decides; this sends the frames and answers the waiting clients.

use super::*;

impl NodeState {
    /// Starts a linearizable read: answered once this node has applied the
    /// commit index the leader confirmed after the request arrived (by its
    /// lease, or a heartbeat round when leases are off). A follower asks
    /// the leader for that index (`synod_core::node::reads` decides).
    pub fn read_barrier(&mut self) -> Result<Answer<()>, Error> {
        self.check_serving()?;
        let now = self.mono_now();
        let (id, actions) = self
            .reads
            .ask(&mut self.replica, now)
            .map_err(|e| Error::ConnectionLoss(e.to_string()))?;
        let (tx, rx) = oneshot::channel();
        self.read_replies.insert(id, tx);
        self.read_actions(actions);
        Ok(rx)
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
                ReadAction::Answer { id, result } => {
                    if let Some(reply) = self.read_replies.remove(&id) {
                        let _ =
                            reply.send(result.map_err(|e| Error::ConnectionLoss(e.to_string())));
                    }
                }
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
