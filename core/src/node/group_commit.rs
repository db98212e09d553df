//! Group commit of the write-ahead log: records gather while one batch is
//! being appended and synced, and go together as the next batch, so one
//! fdatasync covers every write that arrived meanwhile. A batch that failed
//! (a full disk, an I/O error) counts for nothing; it is appended again
//! after a pause, and until an append succeeds the error is kept so that
//! the node can refuse new work with the reason.
//!
//! This module decides what goes in a batch, when a failed one is retried
//! and what a completed one makes durable; the shell hands the batches to
//! its storage thread. Time is the node's monotonic clock, passed as `now`.

use crate::paxos::MonoMs;

/// One batch of log records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    /// The batch's number, echoed by the storage when it completes.
    pub batch: u64,
    /// The highest replica token among its records (0: none, a checkpoint
    /// record only): once the batch is durable, so is every write up to it.
    pub token: u64,
    /// The index of its last record.
    pub last_record: u64,
    /// How many records it holds.
    pub records: usize,
}

/// A batch's records, each with its index.
pub type Records<R> = Vec<(u64, R)>;

/// A failed batch waiting to be appended again at its time.
#[derive(Debug)]
struct Retry<R> {
    batch: Batch,
    records: Records<R>,
    due: MonoMs,
}

/// What a completed append settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// The batch is durable. `recovered` says the log was failing before.
    Durable { batch: Batch, recovered: bool },
    /// The batch failed; it is appended again after the retry pause.
    Failed { records: usize },
    /// No batch with that number is in flight (a bug in the storage).
    Unknown,
}

/// The log's records on their way to disk. `R` is a record's bytes.
#[derive(Debug)]
pub struct GroupCommit<R> {
    next_record: u64,
    /// Records gathering for the next batch, and the highest replica
    /// token among them.
    buffer: Records<R>,
    buffer_token: u64,
    in_flight: Option<Batch>,
    /// A batch that failed, appended again at its time.
    retry: Option<Retry<R>>,
    next_batch: u64,
    /// Why the last append failed, while none has succeeded since.
    error: Option<String>,
    retry_ms: u64,
}

impl<R> GroupCommit<R> {
    /// Records are numbered from `next_record` (after what recovery found);
    /// a failed batch is retried `retry_ms` later.
    pub fn new(next_record: u64, retry_ms: u64) -> Self {
        GroupCommit {
            next_record,
            buffer: Vec::new(),
            buffer_token: 0,
            in_flight: None,
            retry: None,
            next_batch: 0,
            error: None,
            retry_ms,
        }
    }

    /// Queues a record carrying replica token `token` (0: none); returns
    /// its index.
    pub fn push(&mut self, record: R, token: u64) -> u64 {
        let index = self.next_record;
        self.next_record += 1;
        self.buffer.push((index, record));
        self.buffer_token = self.buffer_token.max(token);
        index
    }

    /// Why the log cannot be written, while it cannot.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// The batch to append now, if none is in flight: a failed one whose
    /// pause is over, or everything gathered. It is in flight from here.
    pub fn next(&mut self, now: MonoMs) -> Option<(Batch, Records<R>)> {
        if self.in_flight.is_some() {
            return None;
        }
        let (batch, records) = match self.retry.take() {
            Some(retry) if now < retry.due => {
                self.retry = Some(retry);
                return None;
            }
            Some(Retry { batch, records, .. }) => (batch, records),
            None => {
                if self.buffer.is_empty() {
                    return None;
                }
                let records = std::mem::take(&mut self.buffer);
                let batch = Batch {
                    batch: self.next_batch,
                    token: std::mem::take(&mut self.buffer_token),
                    last_record: records.last().map_or(0, |(i, _)| *i),
                    records: records.len(),
                };
                self.next_batch += 1;
                (batch, records)
            }
        };
        self.in_flight = Some(batch);
        Some((batch, records))
    }

    /// The storage finished appending `batch` at `now`: durable, or failed
    /// with `message`, handing the records back.
    pub fn completed(
        &mut self,
        batch: u64,
        result: Result<(), (String, Records<R>)>,
        now: MonoMs,
    ) -> Completion {
        let Some(in_flight) = self.in_flight.take_if(|f| f.batch == batch) else {
            return Completion::Unknown;
        };
        match result {
            Ok(()) => Completion::Durable {
                batch: in_flight,
                recovered: self.error.take().is_some(),
            },
            Err((message, records)) => {
                // Nothing of the batch counts; the replica still needs it,
                // so it is appended again, after a pause.
                let count = records.len();
                self.error = Some(message);
                self.retry = Some(Retry {
                    batch: in_flight,
                    records,
                    due: now + self.retry_ms,
                });
                Completion::Failed { records: count }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_gather_while_a_batch_is_in_flight() {
        let mut g = GroupCommit::new(10, 500);
        assert_eq!(g.push("a", 1), 10);
        let (first, records) = g.next(0).expect("a batch");
        assert_eq!(records, vec![(10, "a")]);
        assert_eq!((first.token, first.last_record, first.records), (1, 10, 1));
        g.push("b", 2);
        g.push("c", 3);
        assert_eq!(g.next(0), None, "one batch in flight at a time");
        assert_eq!(
            g.completed(first.batch, Ok(()), 1),
            Completion::Durable {
                batch: first,
                recovered: false
            }
        );
        let (second, records) = g.next(1).expect("the gathered batch");
        assert_eq!(records, vec![(11, "b"), (12, "c")]);
        assert_eq!((second.token, second.records), (3, 2));
    }

    #[test]
    fn a_failed_batch_is_retried_after_the_pause_and_the_error_kept_until_then() {
        let mut g = GroupCommit::new(1, 500);
        g.push("a", 1);
        let (batch, records) = g.next(0).expect("a batch");
        assert_eq!(
            g.completed(batch.batch, Err(("disk full".into(), records)), 100),
            Completion::Failed { records: 1 }
        );
        assert_eq!(g.error(), Some("disk full"));
        g.push("b", 2);
        assert_eq!(g.next(599), None, "waits out the pause");
        let (again, records) = g.next(600).expect("the same batch again");
        assert_eq!((again, records), (batch, vec![(1, "a")]));
        assert_eq!(
            g.completed(again.batch, Ok(()), 601),
            Completion::Durable {
                batch,
                recovered: true
            }
        );
        assert_eq!(g.error(), None);
        let (next, records) = g.next(601).expect("what gathered meanwhile");
        assert_eq!((next.token, records), (2, vec![(2, "b")]));
    }

    #[test]
    fn a_completion_of_a_batch_not_in_flight_is_unknown() {
        let mut g: GroupCommit<&str> = GroupCommit::new(1, 500);
        assert_eq!(g.completed(7, Ok(()), 0), Completion::Unknown);
        assert_eq!(g.next(0), None, "nothing gathered");
    }
}
