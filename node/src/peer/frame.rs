//! The envelope of a frame between peers: a Paxos message, or the node's
//! own traffic (writes a follower forwards to the leader, refusals, read
//! index, session liveness reports and their answers, membership calls
//! forwarded to the leader and its answers). The decoder checks
//! lengths against the bytes present and returns an error on anything
//! malformed, because frames come from the network. Encoding reads a
//! snapshot chunk that a Paxos message names in a snapshot file: that read
//! is the one way encoding fails.

use synod_core::SessionId;
use synod_core::codec::{CodecError, Decoder, Encoder, decode_txn, encode_txn};
use synod_core::paxos::codec::{EncodeError, WireMessage, decode_message, encode_message};
use synod_core::paxos::{Membership, NodeId, Slot};
use synod_core::txn::Txn;

/// A frame between two nodes.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerMessage {
    Paxos(WireMessage),
    /// Txns a follower's clients asked for, to be proposed by the leader;
    /// each with the follower's request number, echoed in the proposal.
    Forward(Vec<(u64, Txn)>),
    /// Sessions whose clients were heard from at the sender since its last
    /// report, for the leader, which alone decides expiry. `round` numbers
    /// the sender's reports; the leader answers each with a `TouchAck`.
    Touch {
        round: u64,
        sessions: Vec<SessionId>,
    },
    /// The leader's answer to report `round`: it counts every session of
    /// the report alive as of its arrival, except `expired` (sessions it
    /// has expired or is closing). A follower acknowledges a client's
    /// keep-alive only while such an answer vouches for its session.
    TouchAck {
        round: u64,
        expired: Vec<SessionId>,
    },
    /// Forwarded requests the receiver did not propose (it is not the
    /// leader): they are not in the log and may be retried.
    Refused(Vec<u64>),
    /// A follower's linearizable read asks the leader for a confirmed
    /// commit index (read index), under the follower's request number.
    ReadIndex(u64),
    /// The leader's answer: the index to apply before serving, or `None`
    /// when it could not confirm its leadership.
    ReadIndexReply {
        request: u64,
        index: Option<Slot>,
    },
    /// An operator's membership call that reached a follower, for the
    /// leader, under the follower's request number. `change` is the
    /// Admin API's `MembershipChange` number.
    Membership {
        request: u64,
        change: u8,
        node: NodeId,
    },
    /// The leader's answer to a forwarded membership call.
    MembershipReply {
        request: u64,
        answer: Result<MembershipAnswer, String>,
    },
}

/// What the leader did with a forwarded membership call (see
/// `driver::MembershipOutcome`); a refusal travels as its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipAnswer {
    pub slot: Slot,
    pub membership: Membership,
    pub already_done: bool,
}

const TAG_PAXOS: u8 = 0;
const TAG_FORWARD: u8 = 1;
const TAG_TOUCH: u8 = 2;
const TAG_REFUSED: u8 = 3;
const TAG_READ_INDEX: u8 = 4;
const TAG_READ_INDEX_REPLY: u8 = 5;
const TAG_TOUCH_ACK: u8 = 6;
const TAG_MEMBERSHIP: u8 = 7;
const TAG_MEMBERSHIP_REPLY: u8 = 8;

fn put_ids(e: &mut Encoder, ids: &[NodeId]) {
    e.len(ids.len());
    for id in ids {
        e.u64(*id);
    }
}

fn get_ids(d: &mut Decoder<'_>) -> Result<Vec<NodeId>, CodecError> {
    let n = d.len("node ids", 8)?;
    (0..n).map(|_| d.u64("node id")).collect()
}

fn put_sessions(e: &mut Encoder, sessions: &[SessionId]) {
    e.len(sessions.len());
    for s in sessions {
        e.i64(*s);
    }
}

fn get_sessions(d: &mut Decoder<'_>) -> Result<Vec<SessionId>, CodecError> {
    let n = d.len("sessions", 8)?;
    (0..n).map(|_| d.i64("session")).collect()
}

impl PeerMessage {
    /// Encodes the frame; fails only when a snapshot chunk cannot be read.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut e = Encoder::default();
        match self {
            PeerMessage::Paxos(m) => {
                e.u8(TAG_PAXOS);
                e.buf.extend_from_slice(&encode_message(m)?);
            }
            PeerMessage::Forward(txns) => {
                e.u8(TAG_FORWARD);
                e.len(txns.len());
                for (request, txn) in txns {
                    e.u64(*request);
                    encode_txn(&mut e, txn);
                }
            }
            PeerMessage::Touch { round, sessions } => {
                e.u8(TAG_TOUCH);
                e.u64(*round);
                put_sessions(&mut e, sessions);
            }
            PeerMessage::TouchAck { round, expired } => {
                e.u8(TAG_TOUCH_ACK);
                e.u64(*round);
                put_sessions(&mut e, expired);
            }
            PeerMessage::Refused(requests) => {
                e.u8(TAG_REFUSED);
                e.len(requests.len());
                for r in requests {
                    e.u64(*r);
                }
            }
            PeerMessage::ReadIndex(request) => {
                e.u8(TAG_READ_INDEX);
                e.u64(*request);
            }
            PeerMessage::ReadIndexReply { request, index } => {
                e.u8(TAG_READ_INDEX_REPLY);
                e.u64(*request);
                match index {
                    Some(index) => {
                        e.u8(1);
                        e.u64(*index);
                    }
                    None => e.u8(0),
                }
            }
            PeerMessage::Membership {
                request,
                change,
                node,
            } => {
                e.u8(TAG_MEMBERSHIP);
                e.u64(*request);
                e.u8(*change);
                e.u64(*node);
            }
            PeerMessage::MembershipReply { request, answer } => {
                e.u8(TAG_MEMBERSHIP_REPLY);
                e.u64(*request);
                match answer {
                    Ok(answer) => {
                        e.u8(1);
                        e.u64(answer.slot);
                        e.u8(u8::from(answer.already_done));
                        put_ids(&mut e, &answer.membership.voters);
                        put_ids(&mut e, &answer.membership.observers);
                    }
                    Err(message) => {
                        e.u8(0);
                        e.str(message);
                    }
                }
            }
        }
        Ok(e.buf)
    }

    pub fn decode(bytes: &[u8]) -> Result<PeerMessage, CodecError> {
        let mut d = Decoder::new(bytes);
        let message = match d.u8("frame tag")? {
            TAG_PAXOS => return decode_message(&bytes[1..]).map(PeerMessage::Paxos),
            TAG_FORWARD => {
                let n = d.len("forwarded txns", 9)?;
                let txns = (0..n)
                    .map(|_| Ok((d.u64("request")?, decode_txn(&mut d)?)))
                    .collect::<Result<Vec<_>, CodecError>>()?;
                PeerMessage::Forward(txns)
            }
            TAG_TOUCH => PeerMessage::Touch {
                round: d.u64("round")?,
                sessions: get_sessions(&mut d)?,
            },
            TAG_TOUCH_ACK => PeerMessage::TouchAck {
                round: d.u64("round")?,
                expired: get_sessions(&mut d)?,
            },
            TAG_REFUSED => {
                let n = d.len("requests", 8)?;
                PeerMessage::Refused((0..n).map(|_| d.u64("request")).collect::<Result<_, _>>()?)
            }
            TAG_READ_INDEX => PeerMessage::ReadIndex(d.u64("request")?),
            TAG_READ_INDEX_REPLY => {
                let request = d.u64("request")?;
                let at = d.position();
                let index = match d.u8("index flag")? {
                    0 => None,
                    1 => Some(d.u64("index")?),
                    tag => {
                        return Err(CodecError::BadTag {
                            what: "index flag",
                            tag,
                            at,
                        });
                    }
                };
                PeerMessage::ReadIndexReply { request, index }
            }
            TAG_MEMBERSHIP => PeerMessage::Membership {
                request: d.u64("request")?,
                change: d.u8("membership change")?,
                node: d.u64("node id")?,
            },
            TAG_MEMBERSHIP_REPLY => {
                let request = d.u64("request")?;
                let at = d.position();
                let answer = match d.u8("answer flag")? {
                    0 => Err(d.string("refusal")?),
                    1 => Ok(MembershipAnswer {
                        slot: d.u64("slot")?,
                        already_done: d.u8("already done")? != 0,
                        membership: Membership::new(get_ids(&mut d)?, get_ids(&mut d)?),
                    }),
                    tag => {
                        return Err(CodecError::BadTag {
                            what: "answer flag",
                            tag,
                            at,
                        });
                    }
                };
                PeerMessage::MembershipReply { request, answer }
            }
            tag => {
                return Err(CodecError::BadTag {
                    what: "frame tag",
                    tag,
                    at: 0,
                });
            }
        };
        d.finish("peer frame")?;
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use synod_core::acl::Identity;
    use synod_core::paxos::{Ballot, Message, Value};
    use synod_core::txn::WriteOp;

    fn samples() -> Vec<PeerMessage> {
        vec![
            PeerMessage::Paxos(Message::Accept {
                ballot: Ballot::new(3, 1),
                first: 7,
                values: vec![Value::Data(vec![1, 2, 3]), Value::Noop],
                commit: 6,
            }),
            PeerMessage::Forward(vec![
                (
                    1,
                    Txn::Write {
                        session: 5,
                        identity: Identity::anonymous(),
                        op: WriteOp::Delete {
                            path: "/a".into(),
                            version: -1,
                        },
                    },
                ),
                (
                    2,
                    Txn::CreateSession {
                        timeout_ms: 4000,
                        password: [9; 16],
                    },
                ),
            ]),
            PeerMessage::Touch {
                round: 7,
                sessions: vec![1, 2, 99],
            },
            PeerMessage::TouchAck {
                round: 7,
                expired: vec![99],
            },
            PeerMessage::Refused(vec![4, 5]),
            PeerMessage::ReadIndex(77),
            PeerMessage::ReadIndexReply {
                request: 77,
                index: Some(1234),
            },
            PeerMessage::ReadIndexReply {
                request: 78,
                index: None,
            },
            PeerMessage::Membership {
                request: 5,
                change: 1,
                node: 4,
            },
            PeerMessage::MembershipReply {
                request: 5,
                answer: Ok(MembershipAnswer {
                    slot: 42,
                    membership: Membership::new(vec![1, 2, 3], vec![4]),
                    already_done: true,
                }),
            },
            PeerMessage::MembershipReply {
                request: 6,
                answer: Err("node 9 is not a member".into()),
            },
        ]
    }

    #[test]
    fn frames_round_trip_and_truncations_fail() {
        for m in samples() {
            let bytes = m.encode().unwrap();
            assert_eq!(PeerMessage::decode(&bytes).unwrap(), m);
            for cut in 0..bytes.len() {
                assert!(
                    PeerMessage::decode(&bytes[..cut]).is_err(),
                    "{m:?} cut at {cut}"
                );
            }
        }
    }

    proptest! {
        /// Fuzz: no byte string panics the decoder.
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = PeerMessage::decode(&bytes);
        }

        /// Fuzz: a valid frame with one byte changed decodes or fails, never panics.
        #[test]
        fn mutated_frames_never_panic(index in 0usize..11, at in any::<prop::sample::Index>(), value in any::<u8>()) {
            let mut bytes = samples().swap_remove(index).encode().unwrap();
            let i = at.index(bytes.len());
            bytes[i] = value;
            let _ = PeerMessage::decode(&bytes);
        }
    }
}
