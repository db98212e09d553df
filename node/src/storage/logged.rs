//! Committed values read back from the write-ahead log: which record last
//! wrote each slot above the snapshot ([`SlotRecords`], kept by the
//! driver as it logs), and the read that answers the replica's
//! [`Command::SendLogged`](synod_core::paxos::Command::SendLogged) on the
//! storage thread. This is what lets the replica keep only a short tail of
//! committed values in memory (`--log-cache-entries`): a peer that needs
//! older ones is sent them from the disk, as ZooKeeper and etcd serve a
//! lagging follower from their logs.

use std::collections::VecDeque;

use synod_core::paxos::{Ballot, Message, NodeId, Slot, Value};

use super::Storage;
use super::record::LogRecord;

/// The record index that last wrote each slot above `forgotten` (0: none
/// yet). A committed slot's last write holds its chosen value: once a value
/// is chosen, any later ballot that writes the slot writes that value. An
/// earlier record may hold an older value for it (a snapshot's checkpoint
/// lists what was accepted above its slot, chosen or not), so a slot's
/// value is only ever taken from the record named here.
#[derive(Debug, Default)]
pub struct SlotRecords {
    /// The slots up to here are covered by a snapshot.
    forgotten: Slot,
    /// `records[i]` is for slot `forgotten + 1 + i`.
    records: VecDeque<u64>,
}

impl SlotRecords {
    /// An index of the slots after a snapshot at `slot` (0: none).
    pub fn after(slot: Slot) -> Self {
        SlotRecords {
            forgotten: slot,
            records: VecDeque::new(),
        }
    }

    /// Record `record` wrote `slots`.
    pub fn wrote(&mut self, slots: impl IntoIterator<Item = Slot>, record: u64) {
        for slot in slots {
            // At or below the snapshot: never read back.
            let Some(i) = slot.checked_sub(self.forgotten + 1) else {
                continue;
            };
            let i = usize::try_from(i).unwrap_or(usize::MAX);
            if i >= self.records.len() {
                self.records.resize(i + 1, 0);
            }
            self.records[i] = record;
        }
    }

    /// Forgets the slots up to `slot` (a snapshot covers them).
    pub fn forget_through(&mut self, slot: Slot) {
        while self.forgotten < slot {
            if self.records.pop_front().is_none() {
                self.forgotten = slot;
                break;
            }
            self.forgotten += 1;
        }
        if self.records.capacity() > 4 * self.records.len() + 1024 {
            self.records.shrink_to(2 * self.records.len());
        }
    }

    /// The record that last wrote each slot of `first..=last`, as far as
    /// every slot from `first` on has one.
    pub fn records_for(&self, first: Slot, last: Slot) -> Vec<u64> {
        (first..=last)
            .map_while(|slot| {
                let i = slot.checked_sub(self.forgotten + 1)?;
                let record = *self.records.get(usize::try_from(i).ok()?)?;
                (record != 0).then_some(record)
            })
            .collect()
    }
}

/// A peer to send committed values from the log, as the replica asked.
#[derive(Debug)]
pub struct LoggedRequest {
    pub to: NodeId,
    pub ballot: Ballot,
    pub first: Slot,
    pub commit: Slot,
    /// The record that last wrote each slot from `first` on
    /// ([`SlotRecords::records_for`]): one value is read per entry.
    pub records: Vec<u64>,
}

/// Reads the request's records and builds the `Learn` of the values they
/// hold, or says why it cannot (a record gone or damaged: the driver then
/// takes a snapshot, which the peer is sent instead).
pub fn read_logged(
    storage: &Storage,
    request: LoggedRequest,
) -> Result<(NodeId, Message<Vec<u8>>), String> {
    let LoggedRequest {
        to,
        ballot,
        first,
        commit,
        records,
    } = request;
    let mut distinct = records.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let mut found: Vec<Option<Value<Vec<u8>>>> = (0..records.len()).map(|_| None).collect();
    for index in distinct {
        let payload = match storage.read_record(index) {
            Ok(Some(payload)) => payload,
            Ok(None) => return Err(format!("log record {index} is no longer in the log")),
            Err(error) => return Err(format!("cannot read log record {index} back: {error}")),
        };
        let record = LogRecord::decode(&payload)
            .map_err(|error| format!("log record {index} read back does not decode: {error}"))?;
        // Only the values this record is the last write of.
        for (slot, entry) in record.write.entries {
            let Some(i) = slot
                .checked_sub(first)
                .and_then(|i| usize::try_from(i).ok())
            else {
                continue;
            };
            if records.get(i) == Some(&index) {
                found[i] = Some(entry.value);
            }
        }
    }
    let held = found.iter().flatten().count();
    let Some(values) = found.into_iter().collect::<Option<Vec<_>>>() else {
        return Err(format!(
            "the log holds {held} of the {} values from slot {first} on",
            records.len()
        ));
    };
    Ok((
        to,
        Message::Learn {
            ballot,
            first,
            values,
            commit,
        },
    ))
}
#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;

    use synod_core::paxos::{Entry, Write};

    use super::*;
    use crate::storage::{FaultFs, StorageConfig};

    #[test]
    fn slot_records_track_the_last_write_and_forget_what_a_snapshot_covers() {
        let mut slots = SlotRecords::after(4);
        // A write above a slot not written yet leaves a gap, filled later.
        slots.wrote(7..=8, 1);
        assert_eq!(slots.records_for(5, 8), Vec::<u64>::new());
        assert_eq!(slots.records_for(7, 9), vec![1, 1]);
        slots.wrote(5..=7, 2);
        assert_eq!(slots.records_for(5, 9), vec![2, 2, 2, 1]);
        // Below the snapshot: ignored.
        slots.wrote(3..=4, 3);
        assert_eq!(slots.records_for(3, 5), Vec::<u64>::new());
        slots.forget_through(6);
        assert_eq!(slots.records_for(5, 9), Vec::<u64>::new());
        assert_eq!(slots.records_for(7, 9), vec![2, 1]);
        // Forgetting everything keeps the floor: slot 10 is not the start.
        slots.forget_through(9);
        slots.wrote([11], 4);
        slots.wrote([10], 5);
        assert_eq!(slots.records_for(10, 11), vec![5, 4]);
    }

    fn record(commit: Slot, entries: &[(Slot, &str)]) -> Vec<u8> {
        LogRecord {
            commit,
            write: Write {
                token: 1,
                promised: None,
                entries: entries
                    .iter()
                    .map(|(slot, v)| {
                        (
                            *slot,
                            Entry {
                                ballot: Ballot::new(1, 1),
                                value: Value::Data(v.as_bytes().to_vec()),
                            },
                        )
                    })
                    .collect(),
            },
        }
        .encode()
    }

    fn storage() -> Storage {
        let config = StorageConfig {
            log_dir: PathBuf::from("/data/log"),
            snapshot_dir: PathBuf::from("/data/snapshot"),
            segment_bytes: 4096,
            preallocate: false,
            preallocate_step: 4096,
            keep_snapshots: 2,
        };
        Storage::open(config, Arc::new(FaultFs::new()))
            .expect("open")
            .0
    }

    #[test]
    fn each_value_comes_from_the_record_that_last_wrote_its_slot() {
        let mut storage = storage();
        let mut slots = SlotRecords::after(0);
        // Record 1 (a checkpoint, say) holds an old value at slots 1 and 2
        // and the chosen one at 3; record 2 rewrites 1 and 2 as chosen.
        let first = record(0, &[(1, "old1"), (2, "old2"), (3, "chosen3")]);
        let second = record(3, &[(1, "chosen1"), (2, "chosen2")]);
        storage
            .append(&[(1, &first), (2, &second)])
            .expect("append");
        slots.wrote(1..=3, 1);
        slots.wrote(1..=2, 2);
        let request = |records| LoggedRequest {
            to: 7,
            ballot: Ballot::ZERO,
            first: 1,
            commit: 3,
            records,
        };
        let (to, msg) = read_logged(&storage, request(slots.records_for(1, 3))).expect("read");
        assert_eq!(to, 7);
        let Message::Learn { first, values, .. } = msg else {
            panic!("not a Learn: {msg:?}");
        };
        assert_eq!(first, 1);
        let want: Vec<Value<Vec<u8>>> = ["chosen1", "chosen2", "chosen3"]
            .iter()
            .map(|v| Value::Data(v.as_bytes().to_vec()))
            .collect();
        assert_eq!(values, want);
        // A record the log does not have is an error, not a short answer.
        assert!(read_logged(&storage, request(vec![1, 2, 3])).is_err());
    }
}
