//! The node's own encodings around the consensus core: the envelope of a
//! frame between peers (a Paxos message, or node-level traffic: writes a
//! follower forwards to the leader, session liveness it forwards, refusals),
//! the write-ahead log record (a Paxos durable write plus the commit index
//! known when it was written) and the snapshot file (the slot it covers, the
//! membership in force there and the state machine's bytes). Every decoder
//! checks lengths against the bytes present and returns an error on
//! anything malformed, because frames come from the network and records
//! from a disk that may be damaged.

use synod_core::SessionId;
use synod_core::codec::{CodecError, Decoder, Encoder, decode_txn, encode_txn};
use synod_core::paxos::codec::{WireMessage, decode_message, decode_write, encode_message};
use synod_core::paxos::{Membership, NodeId, Slot, Write};
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
}

const TAG_PAXOS: u8 = 0;
const TAG_FORWARD: u8 = 1;
const TAG_TOUCH: u8 = 2;
const TAG_REFUSED: u8 = 3;
const TAG_READ_INDEX: u8 = 4;
const TAG_READ_INDEX_REPLY: u8 = 5;
const TAG_TOUCH_ACK: u8 = 6;

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
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::default();
        match self {
            PeerMessage::Paxos(m) => {
                e.u8(TAG_PAXOS);
                e.buf.extend_from_slice(&encode_message(m));
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
        }
        e.buf
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

/// Version byte of a log record, bumped on any incompatible change.
const RECORD_FORMAT: u8 = 1;

/// One record of the write-ahead log: a Paxos write and the commit index
/// the replica knew when it was written. Every slot up to that index is
/// chosen and, by log order, held by this record or an earlier one, so
/// recovery can apply them before hearing from any peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub commit: Slot,
    pub write: Write<Vec<u8>>,
}

impl LogRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::default();
        e.u8(RECORD_FORMAT);
        e.u64(self.commit);
        e.buf
            .extend_from_slice(&synod_core::paxos::codec::encode_write(&self.write));
        e.buf
    }

    pub fn decode(bytes: &[u8]) -> Result<LogRecord, CodecError> {
        let mut d = Decoder::new(bytes);
        let format = d.u8("record format")?;
        if format != RECORD_FORMAT {
            return Err(CodecError::BadTag {
                what: "record format",
                tag: format,
                at: 0,
            });
        }
        let commit = d.u64("commit index")?;
        let write = decode_write(&bytes[d.position()..])?;
        Ok(LogRecord { commit, write })
    }
}

/// Version of the snapshot file payload.
const SNAPSHOT_FILE_FORMAT: u32 = 1;

fn put_ids(e: &mut Encoder, ids: &[NodeId]) {
    e.len(ids.len());
    for id in ids {
        e.u64(*id);
    }
}

fn get_ids(d: &mut Decoder<'_>, what: &'static str) -> Result<Vec<NodeId>, CodecError> {
    let n = d.len(what, 8)?;
    (0..n).map(|_| d.u64(what)).collect()
}

/// The payload of a snapshot file: a header (the slot the state machine is
/// at and the membership in force there) followed by the state machine's
/// bytes, which the caller passes by reference so they are copied once.
pub fn encode_snapshot_file(slot: Slot, membership: &Membership, state: &[u8]) -> Vec<u8> {
    let mut file = snapshot_file_prefix(slot, membership);
    file.extend_from_slice(state);
    file
}

/// What a snapshot file holds before the state machine's bytes, so that a
/// large state can be written after it without being copied.
pub fn snapshot_file_prefix(slot: Slot, membership: &Membership) -> Vec<u8> {
    let mut e = Encoder::default();
    e.u32(SNAPSHOT_FILE_FORMAT);
    e.u64(slot);
    put_ids(&mut e, &membership.voters);
    put_ids(&mut e, &membership.observers);
    e.buf
}

/// The slot, the membership and where the state machine's bytes start in
/// a snapshot file, so a large snapshot is not copied to be read.
pub fn decode_snapshot_file_header(bytes: &[u8]) -> Result<(Slot, Membership, usize), CodecError> {
    let mut d = Decoder::new(bytes);
    let format = d.u32("snapshot file format")?;
    if format != SNAPSHOT_FILE_FORMAT {
        return Err(CodecError::BadTag {
            what: "snapshot file format",
            tag: u8::try_from(format).unwrap_or(u8::MAX),
            at: 0,
        });
    }
    let slot = d.u64("snapshot slot")?;
    let voters = get_ids(&mut d, "voters")?;
    let observers = get_ids(&mut d, "observers")?;
    Ok((slot, Membership::new(voters, observers), d.position()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use synod_core::acl::Identity;
    use synod_core::paxos::{Ballot, Entry, Message, Value};
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
                (2, Txn::CreateSession { timeout_ms: 4000 }),
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
        ]
    }

    #[test]
    fn frames_round_trip_and_truncations_fail() {
        for m in samples() {
            let bytes = m.encode();
            assert_eq!(PeerMessage::decode(&bytes).unwrap(), m);
            for cut in 0..bytes.len() {
                assert!(
                    PeerMessage::decode(&bytes[..cut]).is_err(),
                    "{m:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn records_and_snapshot_files_round_trip() {
        let record = LogRecord {
            commit: 9,
            write: Write {
                token: 4,
                promised: Some(Ballot::new(2, 3)),
                entries: vec![(
                    10,
                    Entry {
                        ballot: Ballot::new(2, 3),
                        value: Value::Data(vec![9; 20]),
                    },
                )],
            },
        };
        let bytes = record.encode();
        assert_eq!(LogRecord::decode(&bytes).unwrap(), record);
        for cut in 0..bytes.len() {
            assert!(LogRecord::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let membership = Membership::new(vec![1, 2, 3], vec![4]);
        let file = encode_snapshot_file(42, &membership, b"state");
        let (slot, decoded, at) = decode_snapshot_file_header(&file).unwrap();
        assert_eq!(
            (slot, decoded, &file[at..]),
            (42, membership, &b"state"[..])
        );
    }

    proptest! {
        /// Fuzz: no byte string panics a decoder.
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = PeerMessage::decode(&bytes);
            let _ = LogRecord::decode(&bytes);
            let _ = decode_snapshot_file_header(&bytes);
        }

        /// Fuzz: a valid frame with one byte changed decodes or fails, never panics.
        #[test]
        fn mutated_frames_never_panic(index in 0usize..8, at in any::<prop::sample::Index>(), value in any::<u8>()) {
            let mut bytes = samples().swap_remove(index).encode();
            let i = at.index(bytes.len());
            bytes[i] = value;
            let _ = PeerMessage::decode(&bytes);
        }
    }
}
