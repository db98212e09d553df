//! The binary encoding of the consensus protocol for the wire and the disk:
//! peer messages, and the durable writes (promised ballot, accepted
//! entries) that go through the write-ahead log. Payloads are opaque bytes
//! (encoded txns). Decoding checks every length against the bytes present,
//! so a hostile or corrupt frame gives an error, never a panic or a huge
//! allocation. A snapshot chunk that names its bytes in a source is read
//! here, straight into the frame: encoding is the shell's work, and that
//! read is the one way it can fail.

use std::io;

use bytes::Bytes;

use crate::codec::{CodecError, Decoder, Encoder};

use super::{Ballot, Chunk, Entry, Membership, Message, Slot, Value, Write};

/// A peer message with txn payloads.
pub type WireMessage = Message<Vec<u8>>;

/// Accepted entries by slot, as promises and durable writes carry them.
type SlotEntries = Vec<(Slot, Entry<Vec<u8>>)>;

fn ballot(e: &mut Encoder, b: Ballot) {
    e.u64(b.round);
    e.u64(b.node);
}

fn get_ballot(d: &mut Decoder<'_>) -> Result<Ballot, CodecError> {
    Ok(Ballot {
        round: d.u64("ballot round")?,
        node: d.u64("ballot node")?,
    })
}

fn ids(e: &mut Encoder, ids: &[u64]) {
    e.len(ids.len());
    for id in ids {
        e.u64(*id);
    }
}

fn get_ids(d: &mut Decoder<'_>, what: &'static str) -> Result<Vec<u64>, CodecError> {
    let n = d.len(what, 8)?;
    (0..n).map(|_| d.u64(what)).collect()
}

fn membership(e: &mut Encoder, m: &Membership) {
    ids(e, &m.voters);
    ids(e, &m.observers);
    e.len(m.incarnations.len());
    for (id, incarnation) in &m.incarnations {
        e.u64(*id);
        e.u64(*incarnation);
    }
}

/// A membership as written before incarnations were bound (value tag 2):
/// voters and observers only.
fn get_unbound_membership(d: &mut Decoder<'_>) -> Result<Membership, CodecError> {
    Ok(Membership::new(
        get_ids(d, "voters")?,
        get_ids(d, "observers")?,
    ))
}

fn get_membership(d: &mut Decoder<'_>) -> Result<Membership, CodecError> {
    let mut m = get_unbound_membership(d)?;
    let n = d.len("incarnations", 16)?;
    for _ in 0..n {
        let id = d.u64("member")?;
        let incarnation = d.u64("incarnation")?;
        m.bind(id, incarnation);
    }
    Ok(m)
}

fn value(e: &mut Encoder, v: &Value<Vec<u8>>) {
    match v {
        Value::Noop => e.u8(0),
        Value::Data(bytes) => {
            e.u8(1);
            e.bytes(bytes);
        }
        Value::Config(m) => {
            e.u8(3);
            membership(e, m);
        }
    }
}

fn get_value(d: &mut Decoder<'_>) -> Result<Value<Vec<u8>>, CodecError> {
    let at = d.position();
    Ok(match d.u8("value tag")? {
        0 => Value::Noop,
        1 => Value::Data(d.bytes("value data")?.to_vec()),
        // Tag 2: a log written before incarnations were bound.
        2 => Value::Config(Box::new(get_unbound_membership(d)?)),
        3 => Value::Config(Box::new(get_membership(d)?)),
        tag => {
            return Err(CodecError::BadTag {
                what: "value",
                tag,
                at,
            });
        }
    })
}

fn values(e: &mut Encoder, vs: &[Value<Vec<u8>>]) {
    e.len(vs.len());
    for v in vs {
        value(e, v);
    }
}

fn get_values(d: &mut Decoder<'_>) -> Result<Vec<Value<Vec<u8>>>, CodecError> {
    let n = d.len("values", 1)?;
    (0..n).map(|_| get_value(d)).collect()
}

fn entries(e: &mut Encoder, es: &[(Slot, Entry<Vec<u8>>)]) {
    e.len(es.len());
    for (slot, entry) in es {
        e.u64(*slot);
        ballot(e, entry.ballot);
        value(e, &entry.value);
    }
}

fn get_entries(d: &mut Decoder<'_>) -> Result<SlotEntries, CodecError> {
    let n = d.len("entries", 25)?;
    (0..n)
        .map(|_| {
            let slot = d.u64("slot")?;
            let ballot = get_ballot(d)?;
            Ok((
                slot,
                Entry {
                    ballot,
                    value: get_value(d)?,
                },
            ))
        })
        .collect()
}

/// Why a message could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("cannot read bytes {offset}..{} of the snapshot at slot {index} to send them: {source}", offset + len)]
    SnapshotRead {
        index: Slot,
        offset: u64,
        len: u64,
        #[source]
        source: io::Error,
    },
}

/// Writes a snapshot chunk as length-prefixed bytes, reading a source's
/// bytes into the frame's buffer (no copy in between).
fn chunk(e: &mut Encoder, index: Slot, data: &Chunk) -> Result<(), EncodeError> {
    let (source, offset, len) = match data {
        Chunk::Bytes(bytes) => {
            e.bytes(bytes);
            return Ok(());
        }
        Chunk::Source {
            source,
            offset,
            len,
        } => (source, *offset, *len),
    };
    let failed = |source| EncodeError::SnapshotRead {
        index,
        offset,
        len,
        source,
    };
    let n = u32::try_from(len).map_err(|_| {
        failed(io::Error::other(
            "a chunk of 4 GiB or more cannot be framed",
        ))
    })?;
    e.u32(n);
    let start = e.buf.len();
    e.buf.resize(start + n as usize, 0);
    let read = source.read_exact_at(offset, &mut e.buf[start..]);
    if let Err(error) = read {
        e.buf.truncate(start);
        return Err(failed(error));
    }
    Ok(())
}

/// Encodes a peer message. Fails only when a snapshot chunk's source
/// cannot be read.
pub fn encode_message(m: &WireMessage) -> Result<Vec<u8>, EncodeError> {
    let mut e = Encoder::default();
    match m {
        Message::PreVote { ballot: b } => {
            e.u8(1);
            ballot(&mut e, *b);
        }
        Message::PreVoteGranted { ballot: b } => {
            e.u8(2);
            ballot(&mut e, *b);
        }
        Message::Prepare { ballot: b, from } => {
            e.u8(3);
            ballot(&mut e, *b);
            e.u64(*from);
        }
        Message::Promise {
            ballot: b,
            from,
            accepted,
            commit,
        } => {
            e.u8(4);
            ballot(&mut e, *b);
            e.u64(*from);
            entries(&mut e, accepted);
            e.u64(*commit);
        }
        Message::Accept {
            ballot: b,
            first,
            values: vs,
            commit,
        } => {
            e.u8(5);
            ballot(&mut e, *b);
            e.u64(*first);
            values(&mut e, vs);
            e.u64(*commit);
        }
        Message::Accepted {
            ballot: b,
            first,
            last,
            commit,
        } => {
            e.u8(6);
            ballot(&mut e, *b);
            e.u64(*first);
            e.u64(*last);
            e.u64(*commit);
        }
        Message::Heartbeat {
            ballot: b,
            commit,
            seq,
        } => {
            e.u8(7);
            ballot(&mut e, *b);
            e.u64(*commit);
            e.u64(*seq);
        }
        Message::HeartbeatAck {
            ballot: b,
            seq,
            commit,
        } => {
            e.u8(8);
            ballot(&mut e, *b);
            e.u64(*seq);
            e.u64(*commit);
        }
        Message::Learn {
            ballot: b,
            first,
            values: vs,
            commit,
        } => {
            e.u8(9);
            ballot(&mut e, *b);
            e.u64(*first);
            values(&mut e, vs);
            e.u64(*commit);
        }
        Message::Snapshot {
            ballot: b,
            index,
            membership: m,
            total,
            offset,
            data,
        } => {
            e.u8(10);
            ballot(&mut e, *b);
            e.u64(*index);
            membership(&mut e, m);
            e.u64(*total);
            e.u64(*offset);
            chunk(&mut e, *index, data)?;
        }
        Message::SnapshotAck {
            ballot: b,
            index,
            offset,
        } => {
            e.u8(11);
            ballot(&mut e, *b);
            e.u64(*index);
            e.u64(*offset);
        }
        Message::CatchUp { commit } => {
            e.u8(12);
            e.u64(*commit);
        }
        Message::TimeoutNow { ballot: b } => {
            e.u8(13);
            ballot(&mut e, *b);
        }
        Message::Resign { ballot: b } => {
            e.u8(14);
            ballot(&mut e, *b);
        }
        Message::Nack {
            ballot: b,
            promised,
        } => {
            e.u8(15);
            ballot(&mut e, *b);
            ballot(&mut e, *promised);
        }
    }
    Ok(e.buf)
}

/// Decodes a peer message; the whole input must be one message.
pub fn decode_message(bytes: &[u8]) -> Result<WireMessage, CodecError> {
    let mut d = Decoder::new(bytes);
    let at = d.position();
    let m = match d.u8("message tag")? {
        1 => Message::PreVote {
            ballot: get_ballot(&mut d)?,
        },
        2 => Message::PreVoteGranted {
            ballot: get_ballot(&mut d)?,
        },
        3 => Message::Prepare {
            ballot: get_ballot(&mut d)?,
            from: d.u64("from")?,
        },
        4 => Message::Promise {
            ballot: get_ballot(&mut d)?,
            from: d.u64("from")?,
            accepted: get_entries(&mut d)?,
            commit: d.u64("commit")?,
        },
        5 => Message::Accept {
            ballot: get_ballot(&mut d)?,
            first: d.u64("first")?,
            values: get_values(&mut d)?,
            commit: d.u64("commit")?,
        },
        6 => Message::Accepted {
            ballot: get_ballot(&mut d)?,
            first: d.u64("first")?,
            last: d.u64("last")?,
            commit: d.u64("commit")?,
        },
        7 => Message::Heartbeat {
            ballot: get_ballot(&mut d)?,
            commit: d.u64("commit")?,
            seq: d.u64("seq")?,
        },
        8 => Message::HeartbeatAck {
            ballot: get_ballot(&mut d)?,
            seq: d.u64("seq")?,
            commit: d.u64("commit")?,
        },
        9 => Message::Learn {
            ballot: get_ballot(&mut d)?,
            first: d.u64("first")?,
            values: get_values(&mut d)?,
            commit: d.u64("commit")?,
        },
        10 => Message::Snapshot {
            ballot: get_ballot(&mut d)?,
            index: d.u64("index")?,
            membership: get_membership(&mut d)?,
            total: d.u64("total")?,
            offset: d.u64("offset")?,
            data: Chunk::Bytes(Bytes::copy_from_slice(d.bytes("snapshot chunk")?)),
        },
        11 => Message::SnapshotAck {
            ballot: get_ballot(&mut d)?,
            index: d.u64("index")?,
            offset: d.u64("offset")?,
        },
        12 => Message::CatchUp {
            commit: d.u64("commit")?,
        },
        13 => Message::TimeoutNow {
            ballot: get_ballot(&mut d)?,
        },
        14 => Message::Resign {
            ballot: get_ballot(&mut d)?,
        },
        15 => Message::Nack {
            ballot: get_ballot(&mut d)?,
            promised: get_ballot(&mut d)?,
        },
        tag => {
            return Err(CodecError::BadTag {
                what: "message",
                tag,
                at,
            });
        }
    };
    d.finish("message")?;
    Ok(m)
}

/// Encodes a durable write for the write-ahead log.
pub fn encode_write(w: &Write<Vec<u8>>) -> Vec<u8> {
    let mut e = Encoder::default();
    e.u64(w.token);
    match w.promised {
        Some(b) => {
            e.u8(1);
            ballot(&mut e, b);
        }
        None => e.u8(0),
    }
    entries(&mut e, &w.entries);
    e.buf
}

/// Decodes a durable write.
pub fn decode_write(bytes: &[u8]) -> Result<Write<Vec<u8>>, CodecError> {
    let mut d = Decoder::new(bytes);
    let token = d.u64("token")?;
    let at = d.position();
    let promised = match d.u8("promised flag")? {
        0 => None,
        1 => Some(get_ballot(&mut d)?),
        tag => {
            return Err(CodecError::BadTag {
                what: "promised flag",
                tag,
                at,
            });
        }
    };
    let entries = get_entries(&mut d)?;
    d.finish("write")?;
    Ok(Write {
        token,
        promised,
        entries,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn b(round: u64, node: u64) -> Ballot {
        Ballot { round, node }
    }

    fn samples() -> Vec<WireMessage> {
        let m = Membership {
            voters: vec![1, 2, 3],
            observers: vec![4],
            incarnations: vec![(1, 0xfeed), (4, 7)],
        };
        let vals = vec![
            Value::Noop,
            Value::Data(b"txn".to_vec()),
            Value::Config(Box::new(m.clone())),
        ];
        let entries: SlotEntries = vals
            .iter()
            .enumerate()
            .map(|(i, v)| {
                (
                    i as u64 + 7,
                    Entry {
                        ballot: b(3, 2),
                        value: v.clone(),
                    },
                )
            })
            .collect();
        vec![
            Message::PreVote { ballot: b(1, 1) },
            Message::PreVoteGranted { ballot: b(1, 2) },
            Message::Prepare {
                ballot: b(2, 1),
                from: 9,
            },
            Message::Promise {
                ballot: b(2, 1),
                from: 9,
                accepted: entries,
                commit: 8,
            },
            Message::Accept {
                ballot: b(2, 1),
                first: 10,
                values: vals.clone(),
                commit: 9,
            },
            Message::Accepted {
                ballot: b(2, 1),
                first: 10,
                last: 12,
                commit: 9,
            },
            Message::Heartbeat {
                ballot: b(2, 1),
                commit: 12,
                seq: 5,
            },
            Message::HeartbeatAck {
                ballot: b(2, 1),
                seq: 5,
                commit: 12,
            },
            Message::Learn {
                ballot: b(2, 1),
                first: 1,
                values: vals,
                commit: 3,
            },
            Message::Snapshot {
                ballot: b(2, 1),
                index: 100,
                membership: m,
                total: 9,
                offset: 3,
                data: vec![1, 2, 3].into(),
            },
            Message::SnapshotAck {
                ballot: b(2, 1),
                index: 100,
                offset: 6,
            },
            Message::CatchUp { commit: 4 },
            Message::TimeoutNow { ballot: b(2, 1) },
            Message::Resign { ballot: b(2, 1) },
            Message::Nack {
                ballot: b(2, 1),
                promised: b(3, 3),
            },
        ]
    }

    #[test]
    fn every_message_round_trips_and_every_cut_is_refused() {
        for m in samples() {
            let bytes = encode_message(&m).unwrap();
            assert_eq!(decode_message(&bytes).unwrap(), m);
            for cut in 0..bytes.len() {
                assert!(decode_message(&bytes[..cut]).is_err(), "{m:?} cut at {cut}");
            }
        }
    }

    /// A source that holds its bytes, or fails every read.
    #[derive(Debug)]
    struct Source(Option<Vec<u8>>);

    impl super::super::SnapshotSource for Source {
        fn len(&self) -> u64 {
            self.0.as_ref().map_or(64, |b| b.len() as u64)
        }

        fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
            let bytes = self.0.as_ref().ok_or_else(|| io::Error::other("gone"))?;
            let at = offset as usize;
            buf.copy_from_slice(&bytes[at..at + buf.len()]);
            Ok(())
        }
    }

    #[test]
    fn a_chunk_in_a_source_is_read_into_the_frame_or_refused() {
        let snapshot = |data| Message::Snapshot {
            ballot: b(2, 1),
            index: 100,
            membership: Membership::new(vec![1], vec![]),
            total: 9,
            offset: 3,
            data,
        };
        let held = super::super::SnapshotBytes::Source(std::sync::Arc::new(Source(Some(
            (0u8..9).collect(),
        ))));
        let sent = encode_message(&snapshot(held.chunk(3, 4))).unwrap();
        assert_eq!(
            decode_message(&sent).unwrap(),
            snapshot(vec![3, 4, 5, 6].into()),
            "the receiver gets the bytes"
        );
        let gone = super::super::SnapshotBytes::Source(std::sync::Arc::new(Source(None)));
        let refused = encode_message(&snapshot(gone.chunk(3, 4))).unwrap_err();
        assert!(
            matches!(
                refused,
                EncodeError::SnapshotRead {
                    index: 100,
                    offset: 3,
                    len: 4,
                    ..
                }
            ),
            "{refused}"
        );
    }

    #[test]
    fn a_membership_written_before_incarnations_decodes_unbound() {
        // Tag 2, voters [1, 2], observers [3], as older logs hold it.
        let mut e = Encoder::default();
        e.u8(2);
        ids(&mut e, &[1, 2]);
        ids(&mut e, &[3]);
        let mut d = Decoder::new(&e.buf);
        let value = get_value(&mut d).unwrap();
        assert_eq!(
            value,
            Value::Config(Box::new(Membership::new(vec![1, 2], vec![3])))
        );
    }

    #[test]
    fn writes_round_trip() {
        let w = Write {
            token: 42,
            promised: Some(b(7, 3)),
            entries: vec![(
                5,
                Entry {
                    ballot: b(7, 3),
                    value: Value::Data(vec![9; 20]),
                },
            )],
        };
        assert_eq!(decode_write(&encode_write(&w)).unwrap(), w);
        let empty = Write {
            token: 1,
            promised: None,
            entries: vec![],
        };
        assert_eq!(decode_write(&encode_write(&empty)).unwrap(), empty);
    }

    proptest! {
        /// Fuzz: arbitrary frames never panic the decoders.
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_message(&bytes);
            let _ = decode_write(&bytes);
        }

        /// Fuzz: a valid frame with one byte changed decodes or is refused.
        #[test]
        fn mutated_frames_never_panic(index in 0usize..15, at in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let mut bytes = encode_message(&samples()[index]).unwrap();
            let i = at.index(bytes.len());
            bytes[i] = byte;
            let _ = decode_message(&bytes);
        }
    }
}
