//! The clients' history of a simulated run, for the linearizability check
//! at the end ([`super::invariants::linearizable`]): every operation on
//! the register znodes (`/k0`, `/k1`, ...: getData, setData with and
//! without a version, create, delete), recorded with the tick it was asked
//! and the tick and result of its answer.
//!
//! A write is answered when the node the client asked applies it (or with
//! an error); an error or no answer leaves its outcome unknown, since it
//! may still have been committed. An unanswered write that was never
//! committed anywhere took no effect and is left out, which saves the
//! checker from trying it everywhere. A write applied as a no-op because
//! its session had expired by then is left out too: it changed nothing.

use crate::lincheck::{History, Op, Ret};
use crate::paxos::NodeId;

/// The register znodes the clients read and write.
pub(super) const KEYS: usize = 3;

/// The path of register `key`.
pub(super) fn key_path(key: usize) -> String {
    format!("/k{key}")
}

/// One recorded operation.
#[derive(Debug)]
struct Recorded {
    process: u64,
    key: usize,
    op: Op,
    asked: u64,
    /// The write's (origin node, request), once submitted.
    request: Option<(NodeId, u64)>,
    /// The answer and when it came; `None` while unanswered.
    answer: Option<(Ret, u64)>,
    /// It changed nothing and was answered so: left out.
    no_effect: bool,
}

/// Records the history as the run goes; the checker's [`History`] is built
/// at the end, when it is known which unanswered writes were committed.
#[derive(Debug, Default)]
pub(super) struct Recorder {
    ops: Vec<Recorded>,
}

impl Recorder {
    pub(super) fn new() -> Self {
        Recorder::default()
    }

    /// `process` asks `op` on register `key` at tick `now`; returns the
    /// operation's index.
    pub(super) fn invoke(&mut self, process: u64, key: usize, op: Op, now: u64) -> usize {
        self.ops.push(Recorded {
            process,
            key,
            op,
            asked: now,
            request: None,
            answer: None,
            no_effect: false,
        });
        self.ops.len() - 1
    }

    /// Write `op` went into the log as `request` of node `origin`.
    pub(super) fn submitted(&mut self, op: usize, origin: NodeId, request: u64) {
        if let Some(r) = self.ops.get_mut(op) {
            r.request = Some((origin, request));
        }
    }

    /// Operation `op` was answered with `ret` at tick `now`.
    pub(super) fn answered(&mut self, op: usize, ret: Ret, now: u64) {
        if let Some(r) = self.ops.get_mut(op) {
            r.answer = Some((ret, now));
        }
    }

    /// Operation `op` was answered, having changed nothing.
    pub(super) fn no_effect(&mut self, op: usize) {
        if let Some(r) = self.ops.get_mut(op) {
            r.no_effect = true;
        }
    }

    /// Operations recorded.
    pub(super) fn len(&self) -> usize {
        self.ops.len()
    }

    /// Ends the run: the history to check. `committed` says whether the
    /// request (origin, request number) reached the log.
    pub(super) fn finish(&self, committed: impl Fn(NodeId, u64) -> bool) -> History {
        let mut history = History::new();
        for key in 0..KEYS {
            history.set_initial(&key_path(key), None);
        }
        for r in &self.ops {
            if r.no_effect {
                continue;
            }
            let is_write = r.op != Op::Read;
            if is_write
                && r.answer.is_none()
                && !r
                    .request
                    .is_some_and(|(origin, request)| committed(origin, request))
            {
                continue;
            }
            let id = history.invoke(r.process, &key_path(r.key), r.op, r.asked);
            match &r.answer {
                Some((ret, at)) => history.complete(id, *ret, *at),
                None => history.unknown(id),
            }
        }
        history
    }
}
