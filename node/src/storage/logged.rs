//! Committed values read back from the write-ahead log: which record last
//! wrote each slot above the snapshot ([`SlotRecords`], kept by the
//! driver as it logs), and the read that answers the replica's
//! [`Command::SendLogged`](synod_core::paxos::Command::SendLogged) on the
//! storage thread. This is what lets the replica keep only a short tail of
//! committed values in memory (`--log-cache-entries`): a peer that needs
//! older ones is sent them from the disk, as ZooKeeper and etcd serve a
//! lagging follower from their logs.

use std::collections::{BTreeMap, VecDeque};

use synod_core::paxos::{Ballot, Message, NodeId, Slot, Value};

use super::Storage;
use super::record::LogRecord;

/// The record index that last wrote each slot from `first` on (0: none).
/// A committed slot's last write holds its chosen value: once a value is
/// chosen, any later ballot that writes the slot writes that value.
#[derive(Debug, Default)]
pub struct SlotRecords {
    first: Slot,
    records: VecDeque<u64>,
}

impl SlotRecords {
    /// Record `record` wrote `slots`.
    pub fn wrote(&mut self, slots: impl IntoIterator<Item = Slot>, record: u64) {
        for slot in slots {
            if self.records.is_empty() {
                self.first = slot;
            }
            if slot < self.first {
                // Below what is tracked: older than the snapshot the log
                // restarted from, never read back.
                continue;
            }
            let i = usize::try_from(slot - self.first).unwrap_or(usize::MAX);
            if i >= self.records.len() {
                self.records.resize(i + 1, 0);
            }
            self.records[i] = record;
        }
    }

    /// Forgets the slots up to `slot` (a snapshot covers them).
    pub fn forget_through(&mut self, slot: Slot) {
        while self.first <= slot && !self.records.is_empty() {
            self.records.pop_front();
            self.first += 1;
        }
        if self.records.capacity() > 4 * self.records.len() + 1024 {
            self.records.shrink_to(2 * self.records.len());
        }
    }

    /// The records to read for `first..=last`, in order of first need,
    /// each once; they stop at the first slot with no record.
    pub fn records_for(&self, first: Slot, last: Slot) -> Vec<u64> {
        let mut out: Vec<u64> = Vec::new();
        for slot in first..=last {
            let record = slot
                .checked_sub(self.first)
                .and_then(|i| self.records.get(usize::try_from(i).ok()?))
                .copied()
                .unwrap_or(0);
            if record == 0 {
                break;
            }
            if !out.contains(&record) {
                out.push(record);
            }
        }
        out
    }
}

/// A peer to send committed values from the log, as the replica asked.
#[derive(Debug)]
pub struct LoggedRequest {
    pub to: NodeId,
    pub ballot: Ballot,
    pub first: Slot,
    pub last: Slot,
    pub commit: Slot,
    /// The records holding them ([`SlotRecords::records_for`]).
    pub records: Vec<u64>,
}

/// Reads the request's records and builds the `Learn` of the values at
/// `first..=last` they hold contiguously from `first`; `None` when they
/// hold none (the log was purged meanwhile, or a record is unreadable:
/// the peer asks again and gets the snapshot).
pub fn read_logged(
    storage: &Storage,
    request: LoggedRequest,
) -> Option<(NodeId, Message<Vec<u8>>)> {
    let LoggedRequest {
        to,
        ballot,
        first,
        last,
        commit,
        records,
    } = request;
    let mut found: BTreeMap<Slot, Value<Vec<u8>>> = BTreeMap::new();
    for index in records {
        let payload = match storage.read_record(index) {
            Ok(Some(payload)) => payload,
            Ok(None) => break,
            Err(error) => {
                tracing::warn!(%error, index, "cannot read a log record back for a peer");
                break;
            }
        };
        let record = match LogRecord::decode(&payload) {
            Ok(record) => record,
            Err(error) => {
                tracing::warn!(%error, index, "a log record read back does not decode");
                break;
            }
        };
        // A later record wins: it is the slot's last write.
        for (slot, entry) in record.write.entries {
            if (first..=last).contains(&slot) {
                found.insert(slot, entry.value);
            }
        }
    }
    let values: Vec<Value<Vec<u8>>> = found
        .into_iter()
        .zip(first..)
        .take_while(|((slot, _), want)| slot == want)
        .map(|((_, value), _)| value)
        .collect();
    (!values.is_empty()).then(|| {
        (
            to,
            Message::Learn {
                ballot,
                first,
                values,
                commit,
            },
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_records_track_the_last_write_and_forget_what_a_snapshot_covers() {
        let mut slots = SlotRecords::default();
        slots.wrote(5..=7, 1);
        slots.wrote(7..=9, 2);
        assert_eq!(slots.records_for(5, 9), vec![1, 2]);
        assert_eq!(slots.records_for(8, 12), vec![2]);
        assert_eq!(slots.records_for(1, 9), Vec::<u64>::new());
        slots.forget_through(6);
        assert_eq!(slots.records_for(5, 9), Vec::<u64>::new());
        assert_eq!(slots.records_for(7, 9), vec![2]);
        // A checkpoint rewrites what is above a snapshot.
        slots.wrote(8..=9, 3);
        assert_eq!(slots.records_for(7, 9), vec![2, 3]);
    }
}
