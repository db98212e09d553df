//! Frames to and from peers: the replica's messages (split to fit a
//! frame), and the node's own frames (forwarded writes, refusals, read
//! index, liveness reports, forwarded membership calls).

use super::*;

impl NodeState {
    /// Sends a consensus message, split when its frame would be too large
    /// (accepts and catch-up carry consecutive slots, which split cleanly).
    /// A snapshot chunk that names its bytes in the snapshot file is read
    /// here, as the frame is made; if that fails the chunk is skipped, and
    /// the peer's acknowledgement (or its silence) asks for it again.
    pub(super) fn send_paxos(&mut self, to: NodeId, msg: Message<Vec<u8>>) {
        let message = PeerMessage::Paxos(msg);
        let frame = match message.encode() {
            Ok(frame) => frame,
            Err(error) => {
                tracing::warn!(%error, to, "snapshot chunk not sent; the transfer resumes from the peer's next acknowledgement");
                return;
            }
        };
        if frame.len() <= self.max_frame {
            if let Err(error) = self.send_frame(to, frame) {
                tracing::trace!(%error, to, "consensus message dropped");
            }
            return;
        }
        let PeerMessage::Paxos(msg) = message else {
            return;
        };
        type Make = fn(Ballot, Slot, Vec<Value<Vec<u8>>>, Slot) -> Message<Vec<u8>>;
        let (ballot, first, mut values, commit, make): (_, _, _, _, Make) = match msg {
            Message::Accept {
                ballot,
                first,
                values,
                commit,
            } if values.len() > 1 => (
                ballot,
                first,
                values,
                commit,
                |ballot, first, values, commit| Message::Accept {
                    ballot,
                    first,
                    values,
                    commit,
                },
            ),
            Message::Learn {
                ballot,
                first,
                values,
                commit,
            } if values.len() > 1 => (
                ballot,
                first,
                values,
                commit,
                |ballot, first, values, commit| Message::Learn {
                    ballot,
                    first,
                    values,
                    commit,
                },
            ),
            other => {
                tracing::error!(
                    to,
                    ballot = ?other.ballot(),
                    limit = self.max_frame,
                    "consensus message over the peer frame limit dropped; raise --max-peer-frame-bytes"
                );
                return;
            }
        };
        let rest = values.split_off(values.len() / 2);
        let second = first + values.len() as Slot;
        self.send_paxos(to, make(ballot, first, values, commit));
        self.send_paxos(to, make(ballot, second, rest, commit));
    }

    /// Sends one of the node's own frames (consensus messages go through
    /// [`Self::send_paxos`]).
    pub(super) fn send_message(
        &self,
        to: NodeId,
        message: &PeerMessage,
    ) -> Result<(), crate::peer::SendError> {
        self.send_frame(to, message.encode()?)
    }

    pub(super) fn send_frame(
        &self,
        to: NodeId,
        frame: Vec<u8>,
    ) -> Result<(), crate::peer::SendError> {
        match &self.peers {
            Some(peers) => peers.send(to, frame),
            None => Err(crate::peer::SendError::UnknownPeer(to)),
        }
    }

    /// A frame from a peer (already checked for sender and size).
    pub fn peer_frame(&mut self, inbound: Inbound) {
        let from = inbound.from;
        let message = match PeerMessage::decode(&inbound.payload) {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(from, %error, "dropped a malformed peer frame");
                return;
            }
        };
        // With an address template the transport takes any node id, so
        // that members added later are heard; others are dropped here.
        if self.peers.as_ref().is_some_and(PeerSender::open_membership)
            && !self.replica.membership().contains(from)
        {
            tracing::debug!(
                from,
                "dropped a frame from a node outside the configuration"
            );
            return;
        }
        match message {
            PeerMessage::Paxos(msg) => {
                let now = self.mono_now();
                let claim = Claim {
                    incarnation: inbound.incarnation,
                    abstaining: inbound.abstaining,
                };
                self.replica.step_claimed(from, claim, msg, now);
            }
            PeerMessage::Forward(txns) => {
                let actions = self.writes.forwarded(&self.replica, from, txns);
                self.write_actions(actions);
            }
            PeerMessage::Touch { round, sessions } => self.liveness_report(from, round, sessions),
            PeerMessage::TouchAck { round, expired } => {
                let now = self.mono_now();
                let settled =
                    self.sessions
                        .on_answer(from, round, &expired, self.machine.sessions(), now);
                self.answer_pings(settled);
            }
            PeerMessage::ReadIndex(request) => {
                let now = self.mono_now();
                let actions = self
                    .reads
                    .remote_asked(&mut self.replica, from, request, now);
                self.read_actions(actions);
            }
            PeerMessage::ReadIndexReply { request, index } => {
                let at = index.map(|index| ReadIndex {
                    index,
                    lease_until: None,
                });
                self.read_confirmed(request, at);
            }
            PeerMessage::Membership {
                request,
                change,
                node,
            } => self.forwarded_membership_call(from, request, change, node),
            PeerMessage::MembershipReply { request, answer } => {
                self.membership_answered(from, request, answer);
            }
            PeerMessage::Refused(requests) => {
                // Not in the log: the client may safely retry.
                let actions = self.writes.refused(from, requests);
                self.write_actions(actions);
            }
        }
    }
}
