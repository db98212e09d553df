//! The node's on-disk encodings around the consensus core: the
//! write-ahead log record (a Paxos durable write plus the commit index known
//! when it was written) and the snapshot file (the slot it covers, the
//! membership in force there and the state machine's bytes). Every decoder
//! checks lengths against the bytes present and returns an error on anything
//! malformed, because records come from a disk that may be damaged.

use synod_core::codec::{CodecError, Decoder, Encoder};
use synod_core::paxos::codec::decode_write;
use synod_core::paxos::{Membership, NodeId, Slot, Write};

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

/// Version of the snapshot file payload: 2 adds the members' incarnation
/// bindings after the observers; version 1 files (none) still read.
const SNAPSHOT_FILE_FORMAT: u32 = 2;

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
    e.len(membership.incarnations.len());
    for (id, incarnation) in &membership.incarnations {
        e.u64(*id);
        e.u64(*incarnation);
    }
    e.buf
}

/// The slot, the membership and where the state machine's bytes start in
/// a snapshot file, so a large snapshot is not copied to be read.
pub fn decode_snapshot_file_header(bytes: &[u8]) -> Result<(Slot, Membership, usize), CodecError> {
    let mut d = Decoder::new(bytes);
    let format = d.u32("snapshot file format")?;
    if format != 1 && format != SNAPSHOT_FILE_FORMAT {
        return Err(CodecError::BadTag {
            what: "snapshot file format",
            tag: u8::try_from(format).unwrap_or(u8::MAX),
            at: 0,
        });
    }
    let slot = d.u64("snapshot slot")?;
    let voters = get_ids(&mut d, "voters")?;
    let observers = get_ids(&mut d, "observers")?;
    let mut membership = Membership::new(voters, observers);
    if format >= 2 {
        let n = d.len("incarnations", 16)?;
        for _ in 0..n {
            let id = d.u64("member")?;
            let incarnation = d.u64("incarnation")?;
            membership.bind(id, incarnation);
        }
    }
    Ok((slot, membership, d.position()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use synod_core::paxos::{Ballot, Entry, Value};

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
        let mut membership = Membership::new(vec![1, 2, 3], vec![4]);
        membership.bind(2, 0xabc);
        membership.bind(4, 7);
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
            let _ = LogRecord::decode(&bytes);
            let _ = decode_snapshot_file_header(&bytes);
        }
    }
}
