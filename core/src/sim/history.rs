//! The clients' history of a simulated run: every proposed value is a
//! write to one of a few keys (a register with a version, as a znode's data
//! and `Stat.version`), every linearizable read reads one key from its
//! node's applied state, and each is recorded with when it was asked and
//! answered, for the linearizability check at the end of the run
//! ([`super::invariants::linearizable`]).
//!
//! A write is answered when the node that proposed it applies it, as the
//! real node answers its client; if that node crashes first, the outcome is
//! unknown (the value may still be committed). Reads that are not answered
//! are unknown too.

use std::collections::BTreeMap;

use crate::lincheck::{History, Op, Ret, Znode};

/// Keys the values are spread over.
pub(super) const KEYS: u64 = 3;

/// The key a proposed value writes.
pub(super) fn key_of(value: u64) -> usize {
    (value % KEYS) as usize
}

pub(super) fn key_name(key: usize) -> String {
    format!("k{key}")
}

/// Each key's latest value and version in a node's applied state, from
/// the client writes among its applied values.
pub(super) fn state_of(writes: impl Iterator<Item = u64>) -> Vec<(u64, i32)> {
    let mut kv = vec![(0, 0); KEYS as usize];
    for x in writes {
        apply_write(&mut kv, x);
    }
    kv
}

/// Applies write `x` to a node's key state; returns its key's new version.
pub(super) fn apply_write(kv: &mut [(u64, i32)], x: u64) -> i32 {
    let (value, version) = &mut kv[key_of(x)];
    *value = x;
    *version += 1;
    *version
}

/// One recorded operation.
#[derive(Debug)]
struct Recorded {
    process: u64,
    key: usize,
    op: Op,
    asked: u64,
    /// The answer and when it came; `None` while unanswered (an unknown
    /// outcome if it stays so).
    answer: Option<(Ret, u64)>,
}

/// Records the history as the run goes; the checker's [`History`] is built
/// at the end, when it is known which unanswered writes never took effect.
#[derive(Debug, Default)]
pub(super) struct Recorder {
    ops: Vec<Recorded>,
    /// Writes not yet answered: value -> (node that proposed it, op index).
    writes: BTreeMap<u64, (usize, usize)>,
    /// Reads not yet answered: the cluster's read id -> op index.
    reads: BTreeMap<u64, usize>,
}

impl Recorder {
    pub(super) fn new() -> Self {
        Recorder::default()
    }

    fn record(&mut self, process: u64, key: usize, op: Op, asked: u64) -> usize {
        self.ops.push(Recorded {
            process,
            key,
            op,
            asked,
            answer: None,
        });
        self.ops.len() - 1
    }

    /// Node `origin` proposed `value` at tick `now`.
    pub(super) fn write_asked(&mut self, origin: usize, value: u64, now: u64) {
        let op = self.record(origin as u64, key_of(value), Op::Write { value }, now);
        self.writes.insert(value, (origin, op));
    }

    /// Node `node` applied `value` as version `version` of its key.
    pub(super) fn write_applied(&mut self, node: usize, value: u64, version: i32, now: u64) {
        if self
            .writes
            .get(&value)
            .is_some_and(|(origin, _)| *origin == node)
            && let Some((_, op)) = self.writes.remove(&value)
        {
            self.ops[op].answer = Some((Ret::Set { version }, now));
        }
    }

    /// Node `node` crashed: its clients' writes have unknown outcomes.
    pub(super) fn node_lost(&mut self, node: usize) {
        self.writes.retain(|_, (origin, _)| *origin != node);
    }

    /// Read `id` of `key` was asked at node `node` at tick `now`.
    pub(super) fn read_asked(&mut self, id: u64, node: usize, key: usize, now: u64) {
        let op = self.record(1_000 + node as u64, key, Op::Read, now);
        self.reads.insert(id, op);
    }

    /// Read `id` was answered with `(value, version)` at tick `now`.
    pub(super) fn read_answered(&mut self, id: u64, (value, version): (u64, i32), now: u64) {
        if let Some(op) = self.reads.remove(&id) {
            self.ops[op].answer = Some((Ret::Read(Some(Znode { value, version })), now));
        }
    }

    /// Ends the run: the history to check. `committed` says whether a
    /// value was ever applied: an unanswered write that never was took no
    /// effect and is left out (which the checker would otherwise have to
    /// try everywhere); the other unanswered ones have unknown outcomes.
    pub(super) fn finish(&self, committed: impl Fn(u64) -> bool) -> History {
        let mut history = History::new();
        for key in 0..KEYS as usize {
            history.set_initial(
                &key_name(key),
                Some(Znode {
                    value: 0,
                    version: 0,
                }),
            );
        }
        for r in &self.ops {
            if let (None, Op::Write { value }) = (&r.answer, &r.op)
                && !committed(*value)
            {
                continue;
            }
            let id = history.invoke(r.process, &key_name(r.key), r.op, r.asked);
            match &r.answer {
                Some((ret, at)) => history.complete(id, *ret, *at),
                None => history.unknown(id),
            }
        }
        history
    }
}
