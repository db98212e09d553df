//! Linearizability checking of znode histories.
//!
//! This module owns the sequential model of one znode (a versioned register
//! with compare-and-set, create and delete, as ZooKeeper's `getData`,
//! `setData`, `create` and `delete` see it) and a checker that decides
//! whether a concurrent history of client operations, recorded as invocation
//! and completion times, could have been produced by atomic znodes.
//!
//! The search is Wing and Gong's algorithm with Lowe's memoisation (G. Lowe,
//! "Testing for linearizability", Concurrency and Computation: Practice and
//! Experience 29(4), 2017), the algorithm of the Porcupine checker: a
//! depth-first search over linearization orders, walking a doubly-linked list
//! of call and return events, which remembers every (set of linearized
//! operations, model state) pair it has been in so that no configuration is
//! explored twice. Linearizability is local (Herlihy and Wing, 1990) and
//! operations on different paths are independent, so a history is split by
//! key and each key is checked on its own. Operations whose outcome is
//! unknown (timeouts) make the plain search explode; the sound reductions
//! that tame them are described on the private `Search` type.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use rustc_hash::{FxHashMap, FxHashSet};

/// An existing znode, as far as the model cares: its data, abstracted to a
/// number, and its data version (`Stat.version`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Znode {
    /// The data last written.
    pub value: u64,
    /// The data version: 0 at creation, +1 on every successful set.
    pub version: i32,
}

/// An operation on one znode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `getData` (or `exists`): answered by [`Ret::Read`].
    Read,
    /// Unconditional `setData` (version -1): [`Ret::Set`] or [`Ret::NoNode`].
    Write {
        /// The data written.
        value: u64,
    },
    /// Conditional `setData`: [`Ret::Set`], [`Ret::BadVersion`] or
    /// [`Ret::NoNode`]. An `expected_version` of -1 is unconditional, as in
    /// ZooKeeper.
    Cas {
        /// The version the znode must have.
        expected_version: i32,
        /// The data written.
        value: u64,
    },
    /// `create`: [`Ret::Ok`] (the znode now exists at version 0) or
    /// [`Ret::NodeExists`].
    Create {
        /// The initial data.
        value: u64,
    },
    /// `delete`: [`Ret::Ok`], [`Ret::NoNode`] or [`Ret::BadVersion`]. `None`
    /// (or `Some(-1)`, as in ZooKeeper) deletes whatever the version.
    Delete {
        /// The version the znode must have.
        expected_version: Option<i32>,
    },
}

/// The result a client observed (or the model produces) for an [`Op`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ret {
    /// A read's answer: the znode, or `None` if it did not exist. A read
    /// completed with [`Ret::NoNode`] is recorded as `Read(None)`.
    Read(Option<Znode>),
    /// A write or CAS succeeded and gave the znode this new version.
    Set {
        /// The version after the write.
        version: i32,
    },
    /// A create or delete succeeded.
    Ok,
    /// The znode did not exist.
    NoNode,
    /// A create found the znode already there.
    NodeExists,
    /// A CAS or conditional delete found another version.
    BadVersion,
}

impl Op {
    /// Applies the operation to a znode's state (`None`: absent), returning
    /// the new state and the result. This is the sequential specification.
    pub fn apply(self, state: Option<Znode>) -> (Option<Znode>, Ret) {
        let Some(z) = state else {
            return match self {
                Op::Read => (None, Ret::Read(None)),
                Op::Create { value } => (Some(Znode { value, version: 0 }), Ret::Ok),
                _ => (None, Ret::NoNode),
            };
        };
        let version = z.version.wrapping_add(1);
        let set = |value| (Some(Znode { value, version }), Ret::Set { version });
        // -1 stands for "any version", as in ZooKeeper.
        let matches = |e: i32| e == -1 || e == z.version;
        match self {
            Op::Read => (state, Ret::Read(state)),
            Op::Create { .. } => (state, Ret::NodeExists),
            Op::Write { value } => set(value),
            Op::Cas {
                expected_version: e,
                value,
            } if matches(e) => set(value),
            Op::Delete {
                expected_version: e,
            } if e.is_none_or(matches) => (None, Ret::Ok),
            Op::Cas { .. } | Op::Delete { .. } => (state, Ret::BadVersion),
        }
    }
}

impl fmt::Display for Znode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@v{}", self.value, self.version)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Op::Read => write!(f, "read"),
            Op::Write { value } => write!(f, "write({value})"),
            Op::Cas {
                expected_version,
                value,
            } => write!(f, "cas(v{expected_version}, {value})"),
            Op::Create { value } => write!(f, "create({value})"),
            Op::Delete {
                expected_version: None,
            } => write!(f, "delete(any)"),
            Op::Delete {
                expected_version: Some(v),
            } => write!(f, "delete(v{v})"),
        }
    }
}

impl fmt::Display for Ret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Ret::Read(state) => write!(f, "{}", shown(state)),
            Ret::Set { version } => write!(f, "ok v{version}"),
            Ret::Ok => write!(f, "ok"),
            Ret::NoNode => write!(f, "NoNode"),
            Ret::NodeExists => write!(f, "NodeExists"),
            Ret::BadVersion => write!(f, "BadVersion"),
        }
    }
}

/// A znode state for display: `absent` or `value@vversion`.
fn shown(state: Option<Znode>) -> String {
    state.map_or_else(|| "absent".to_owned(), |z| z.to_string())
}

/// Names one invoked operation of a [`History`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(usize);

impl OpId {
    /// The operation's rank among the history's invocations, from 0; a
    /// [`Verdict`]'s explanation names operations as `#rank`.
    pub fn index(self) -> usize {
        self.0
    }
}

/// One invoked operation.
#[derive(Clone, Debug)]
struct Record {
    process: u64,
    key: String,
    op: Op,
    call: u64,
    /// The observed result and when it arrived; `None` while the outcome is
    /// unknown (timed out, connection lost, never completed).
    ret: Option<(Ret, u64)>,
}

/// A concurrent history of znode operations, built by recording each
/// invocation and then its outcome. Times are in any monotonic unit shared by
/// all processes.
#[derive(Clone, Debug, Default)]
pub struct History {
    records: Vec<Record>,
    initial: BTreeMap<String, Option<Znode>>,
}

impl History {
    /// An empty history in which every znode starts absent.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `process` invoked `op` on `key` at time `at`. Until
    /// [`complete`](Self::complete) is called, the outcome is unknown.
    pub fn invoke(&mut self, process: u64, key: &str, op: Op, at: u64) -> OpId {
        let (key, call, ret) = (key.to_owned(), at, None);
        self.records.push(Record {
            process,
            key,
            op,
            call,
            ret,
        });
        OpId(self.records.len() - 1)
    }

    /// Records that operation `id` returned `ret` at time `at` (taken as the
    /// invocation time if earlier). A read's [`Ret::NoNode`] is recorded as
    /// `Ret::Read(None)`. An `id` from another history is ignored.
    pub fn complete(&mut self, id: OpId, ret: Ret, at: u64) {
        debug_assert!(id.0 < self.records.len(), "OpId from another history");
        if let Some(r) = self.records.get_mut(id.0) {
            let read_nonode = (r.op, ret) == (Op::Read, Ret::NoNode);
            r.ret = Some((
                if read_nonode { Ret::Read(None) } else { ret },
                at.max(r.call),
            ));
        }
    }

    /// Records that operation `id` has an unknown outcome: it may have taken
    /// effect at any time after its invocation, or never.
    pub fn unknown(&mut self, id: OpId) {
        if let Some(r) = self.records.get_mut(id.0) {
            r.ret = None;
        }
    }

    /// Sets the state `key` is in before the history starts (default absent).
    pub fn set_initial(&mut self, key: &str, state: Option<Znode>) {
        self.initial.insert(key.to_owned(), state);
    }

    /// The number of operations invoked.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no operation was invoked.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// Bounds the search, so that a pathological history yields
/// [`Verdict::Unknown`] instead of running for hours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// The most search steps spent on one key (a step: trying one op at one
    /// point, or comparing eight memo entries). Time and memory grow about
    /// linearly with it: at most one memo entry, of some 100 bytes, a step.
    pub max_steps: u64,
}

impl Default for Budget {
    /// Ten million steps per key: about 0.1 s in a release build, 1 s in a
    /// debug one; histories of a real test rarely need a thousandth of it.
    fn default() -> Self {
        Self {
            max_steps: 10_000_000,
        }
    }
}

/// The conclusion of [`check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every key's sub-history has a linearization.
    Linearizable,
    /// This key's sub-history has none (the first such key in key order).
    NotLinearizable {
        /// The key.
        key: String,
        /// A readable account: the longest linearizable prefix found, the
        /// operation that could not take effect in time, and the operations
        /// concurrent with it.
        explanation: String,
    },
    /// No violation was found, but the search of this key ran out of budget.
    Unknown {
        /// The (first) key whose search was cut short.
        key: String,
    },
}

impl Verdict {
    /// Whether the verdict is [`Verdict::Linearizable`].
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }
}

/// Checks `history` for linearizability, key by key.
///
/// Intervals are closed: an operation that returned at `t` and one invoked at
/// the same `t` are taken as concurrent (the permissive choice, so that a
/// reported violation never rests on clock granularity). An operation whose
/// outcome is unknown may take effect anywhere after its invocation, with any
/// result, or not at all; reads with an unknown outcome are dropped.
pub fn check(history: &History, budget: Budget) -> Verdict {
    let mut by_key: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, r) in history.records.iter().enumerate() {
        if r.ret.is_some() || r.op != Op::Read {
            by_key.entry(r.key.as_str()).or_default().push(i);
        }
    }
    let mut exhausted = None;
    for (key, mut ids) in by_key {
        // Completed ops first, then the lost ones, each in invocation order.
        ids.sort_by_key(|&i| (history.records[i].ret.is_none(), history.records[i].call));
        let initial = history.initial.get(key).copied().flatten();
        let mut search = Search::new(history, &ids, initial);
        match search.run(budget) {
            KeyResult::Linearizable => {}
            KeyResult::Violation(stuck) => {
                let explanation = search.explain(key, stuck.as_ref());
                return Verdict::NotLinearizable {
                    key: key.to_owned(),
                    explanation,
                };
            }
            KeyResult::OutOfBudget => {
                exhausted.get_or_insert(key);
            }
        }
    }
    exhausted.map_or(Verdict::Linearizable, |key| Verdict::Unknown {
        key: key.into(),
    })
}

/// What the search of one key concluded.
enum KeyResult {
    Linearizable,
    /// No linearization; where the search got deepest, if anywhere.
    Violation(Option<Stuck>),
    OutOfBudget,
}

/// A doubly-linked list over `0..len`, with sentinels at 0 and `len - 1`,
/// from which entries are unlinked and relinked in LIFO order.
struct Links {
    next: Vec<usize>,
    prev: Vec<usize>,
}

impl Links {
    const HEAD: usize = 0;

    fn new(len: usize) -> Self {
        let prev = (0..len).map(|e| e.wrapping_sub(1)).collect();
        Links {
            next: (1..=len).collect(),
            prev,
        }
    }

    fn unlink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = n;
        self.prev[n] = p;
    }

    fn relink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = e;
        self.prev[n] = e;
    }
}

/// Where the search looks for the next op to place: an entry of the event
/// list of completed ops, or a position in the list of lost ones.
#[derive(Clone, Copy)]
enum Cursor {
    Done(usize),
    Lost(usize),
}

/// A placed op on the search stack.
struct Frame {
    op: usize,
    /// The state before it.
    state: Option<Znode>,
    /// A completed op that left the state as it was.
    neutral: bool,
    /// The first return entry when it was placed.
    first_ret: usize,
    /// The shallowest depth (stack index) that a run of lost ops in the
    /// search below was cut back to; if shallower than this frame's own
    /// configuration, its failure is not recorded (see `Search`).
    low: usize,
}

/// The deepest point the search reached: kept to explain a violation.
struct Stuck {
    /// The placed ops, in order.
    prefix: Vec<usize>,
    /// The op whose return came before it could be placed.
    blocked: usize,
    /// The other ops not placed yet and invoked before that return.
    pending: Vec<usize>,
}

/// Lowe's search over one key's ops, numbered key-locally: the `done`
/// completed ops, then the lost ones (outcome unknown), each group in
/// invocation order.
///
/// Completed ops sit in a linked list of call and return events sorted by
/// time (calls first at equal times): the search places ops whose call comes
/// before the first return, and backtracks when it reaches that return. A
/// lost op has no return: it may be placed any time after its call, or
/// never. Lost ops make the plain search explode; sound reductions tame them:
/// - values no completed read returned are merged into one (`unread`): no
///   completed op can tell them apart;
/// - equal lost ops are placed in invocation order (the `twin` first);
/// - lost ops are tried after completed ones, newest first, and never where
///   they would change nothing;
/// - a configuration fails if one with the same completed ops and state but
///   a subset of its lost ops did (fewer placed lost ops, more options);
/// - a run of lost ops back to a state it passed through is cut, since the
///   linearizations with the fewest lost ops have none. A configuration whose
///   search cut such a run back past it is not recorded as failed: that rests
///   on an ancestor still being searched.
///
/// And a completed op that changes nothing (a read, a failed update) and can
/// go next is placed without trying alternatives: its result says it changes
/// nothing wherever it goes, and every op left returns after it was invoked,
/// so if a linearization exists, one starts with it.
struct Search<'a> {
    ids: &'a [usize],
    recs: Vec<&'a Record>,
    /// The ops, values canonicalised.
    ops: Vec<Op>,
    done: usize,
    /// The initial state, and the same with its value canonicalised.
    initial: Option<Znode>,
    start: Option<Znode>,
    /// Completed ops' events: (time, is_return, op), sentinels at both ends.
    events: Vec<(u64, bool, usize)>,
    /// Each completed op's call and return entries.
    entries: Vec<(usize, usize)>,
    list: Links,
    /// Lost ops not placed: position `p` holds op `done + p - 1`.
    lost_list: Links,
    /// For a lost op, the previous lost op equal to it.
    twin: Vec<Option<usize>>,
    /// The placed ops: completed ones in the first `split` words, then lost.
    bits: Vec<u64>,
    split: usize,
}

impl<'a> Search<'a> {
    fn new(history: &'a History, ids: &'a [usize], initial: Option<Znode>) -> Self {
        let recs: Vec<&Record> = ids.iter().map(|&i| &history.records[i]).collect();
        let (n, done) = (
            recs.len(),
            recs.iter().take_while(|r| r.ret.is_some()).count(),
        );
        let read = |r: &&Record| match r.ret {
            Some((Ret::Read(Some(z)), _)) => Some(z.value),
            _ => None,
        };
        let seen: FxHashSet<u64> = recs.iter().filter_map(read).collect();
        let unread = (0..=u64::MAX)
            .rev()
            .find(|v| !seen.contains(v))
            .unwrap_or(0);
        let canon = |value| if seen.contains(&value) { value } else { unread };
        let canonical = |r: &&Record| {
            let mut op = r.op;
            if let Op::Write { value } | Op::Cas { value, .. } | Op::Create { value } = &mut op {
                *value = canon(*value);
            }
            // Version -1 is "any version", as in ZooKeeper.
            match op {
                Op::Cas { value, .. } if op == cas(-1, value) => w(value),
                Op::Delete { .. } if op == del(Some(-1)) => del(None),
                op => op,
            }
        };
        let ops: Vec<Op> = recs.iter().map(canonical).collect();
        let mut events = vec![(0, false, 0)];
        for (i, r) in recs[..done].iter().enumerate() {
            let at = r.ret.map_or(r.call, |(_, at)| at);
            events.extend([(r.call, false, i), (at, true, i)]);
        }
        events[1..].sort_unstable();
        let mut entries = vec![(0, 0); done];
        for (e, &(_, is_return, op)) in events.iter().enumerate().skip(1) {
            if is_return {
                entries[op].1 = e
            } else {
                entries[op].0 = e
            }
        }
        events.push((u64::MAX, true, 0));
        let mut last = FxHashMap::default();
        let twin = (done..n).map(|i| last.insert(ops[i], i)).collect();
        let split = done.div_ceil(64);
        Search {
            ids,
            recs,
            ops,
            done,
            initial,
            start: initial.map(|z| Znode {
                value: canon(z.value),
                ..z
            }),
            list: Links::new(events.len()),
            events,
            entries,
            lost_list: Links::new(n - done + 2),
            twin,
            bits: vec![0; split + (n - done).div_ceil(64)],
            split,
        }
    }

    /// The bit of `op` in `bits`.
    fn slot(&self, op: usize) -> (usize, u64) {
        let s = if op < self.done {
            op
        } else {
            64 * self.split + op - self.done
        };
        (s / 64, 1 << (s % 64))
    }

    fn placed(&self, op: usize) -> bool {
        let (word, bit) = self.slot(op);
        self.bits[word] & bit != 0
    }

    /// Places `op` (`lift`) or takes it back (`!lift`, in LIFO order);
    /// returns its cursor.
    fn toggle(&mut self, op: usize, lift: bool) -> Cursor {
        let (word, bit) = self.slot(op);
        self.bits[word] ^= bit;
        if op >= self.done {
            let p = op - self.done + 1;
            if lift {
                self.lost_list.unlink(p)
            } else {
                self.lost_list.relink(p)
            }
            return Cursor::Lost(p);
        }
        let (call, ret) = self.entries[op];
        if lift {
            self.list.unlink(call);
            self.list.unlink(ret);
        } else {
            self.list.relink(ret);
            self.list.relink(call);
        }
        Cursor::Done(call)
    }

    fn advance(&self, cursor: Cursor) -> Cursor {
        match cursor {
            Cursor::Done(e) => Cursor::Done(self.list.next[e]),
            Cursor::Lost(p) => Cursor::Lost(self.lost_list.prev[p]),
        }
    }

    /// Writes the memo key of the current configuration into `key`: the
    /// placed completed ops (mostly a prefix: full and empty words are left
    /// out), then `state`. The placed lost ops are the memo's value.
    fn memo_key(&self, key: &mut Vec<u64>, state: Option<Znode>) {
        let done_bits = &self.bits[..self.split];
        let lo = done_bits.iter().take_while(|&&w| w == u64::MAX).count();
        let zeros = done_bits[lo..]
            .iter()
            .rev()
            .take_while(|&&w| w == 0)
            .count();
        key.clear();
        key.push(lo as u64);
        key.extend_from_slice(&done_bits[lo..done_bits.len() - zeros]);
        key.extend_from_slice(&match state {
            None => [0, 0],
            Some(z) => [1 << 32 | u64::from(z.version.cast_unsigned()), z.value],
        });
    }

    /// Whether the current configuration is known to fail: one with the same
    /// completed ops and state, and a subset of its lost ops (fewer placed,
    /// more options), failed. Also returns the cost of the lookup, in steps.
    fn failed_before(&self, memo: &Memo, key: &mut Vec<u64>, state: Option<Znode>) -> (bool, u64) {
        self.memo_key(key, state);
        let seen = memo.get(&key[..]).map_or(&[][..], Vec::as_slice);
        let lost_bits = &self.bits[self.split..];
        let failed = seen.iter().any(|s| subset(s, lost_bits));
        (failed, 1 + seen.len() as u64 / 8)
    }

    /// Records that the current configuration fails.
    fn record_failure(&self, memo: &mut Memo, key: &mut Vec<u64>, state: Option<Znode>) {
        self.memo_key(key, state);
        let lost_bits = &self.bits[self.split..];
        let seen = memo.entry(key.as_slice().into()).or_default();
        seen.retain(|s| !subset(lost_bits, s));
        seen.push(lost_bits.into());
    }

    fn run(&mut self, budget: Budget) -> KeyResult {
        let (done, n) = (self.done, self.recs.len());
        let mut memo = Memo::default();
        let (mut key, mut stack) = (Vec::new(), Vec::<Frame>::new());
        let (mut state, mut remaining, mut steps) = (self.start, done, 0u64);
        let (mut stuck, mut first_ret) = (None::<Stuck>, 0);
        let mut cursor = Cursor::Done(self.list.next[Links::HEAD]);
        loop {
            // Done once every completed op is placed: the lost ones left can
            // take effect later or never.
            if remaining == 0 {
                return KeyResult::Linearizable;
            }
            let op = match cursor {
                Cursor::Done(e) if !self.events[e].1 => Some(self.events[e].2),
                Cursor::Done(e) => {
                    // The first return: lost ops invoked by then may go now,
                    // the most recent first (the likeliest to take effect).
                    first_ret = e;
                    let limit = self.events[e].0;
                    let mut p = self.recs[done..].partition_point(|r| r.call <= limit);
                    while p > 0 && self.placed(done + p - 1) {
                        p -= 1;
                    }
                    cursor = Cursor::Lost(p);
                    continue;
                }
                Cursor::Lost(p) => (p != Links::HEAD).then(|| done + p - 1),
            };
            let mut dead_end = true;
            if let Some(op) = op {
                let (after, got) = self.ops[op].apply(state);
                let fits = match self.recs[op].ret {
                    Some((want, _)) => want == got,
                    None => after != state && self.twin[op - done].is_none_or(|t| self.placed(t)),
                };
                let neutral = op < done && after == state;
                let (mut fits, back) = (fits, stack.iter().rposition(|f| f.op < done));
                if fits && op >= done {
                    // A run of lost ops back to a state it passed through is
                    // useless: cut it, and taint the configuration.
                    let back = back.map_or(0, |i| i + 1);
                    steps += (stack.len() - back) as u64;
                    if let Some(j) = (back..stack.len()).find(|&j| stack[j].state == after) {
                        fits = false;
                        if let Some(top) = stack.last_mut() {
                            top.low = top.low.min(j);
                        }
                    }
                }
                dead_end = false;
                steps += 1;
                if fits {
                    self.toggle(op, true);
                    let (failed, cost) = self.failed_before(&memo, &mut key, after);
                    steps += cost;
                    if !failed {
                        let low = usize::MAX;
                        stack.push(Frame {
                            op,
                            state,
                            neutral,
                            first_ret,
                            low,
                        });
                        (state, remaining) = (after, remaining - usize::from(op < done));
                        cursor = Cursor::Done(self.list.next[Links::HEAD]);
                        continue;
                    }
                    self.toggle(op, false);
                    dead_end = neutral;
                }
                if steps > budget.max_steps {
                    return KeyResult::OutOfBudget;
                }
            } else if stuck.as_ref().is_none_or(|s| stack.len() > s.prefix.len()) {
                let (limit, _, blocked) = self.events[first_ret];
                let prefix = stack.iter().map(|f| f.op).collect();
                let pending = (0..n).filter(|&op| op != blocked && !self.placed(op));
                let pending = pending.filter(|&op| self.recs[op].call <= limit).collect();
                stuck = Some(Stuck {
                    prefix,
                    blocked,
                    pending,
                });
            }
            if !dead_end {
                cursor = self.advance(cursor);
                continue;
            }
            // Backtrack, past neutral ops too: their siblings cannot do better.
            loop {
                let Some(frame) = stack.pop() else {
                    return KeyResult::Violation(stuck);
                };
                if frame.low > stack.len() {
                    self.record_failure(&mut memo, &mut key, state);
                }
                if let Some(parent) = stack.last_mut() {
                    parent.low = parent.low.min(frame.low);
                }
                let at = self.toggle(frame.op, false);
                cursor = self.advance(at);
                (state, first_ret) = (frame.state, frame.first_ret);
                remaining += usize::from(frame.op < done);
                if !frame.neutral {
                    break;
                }
            }
        }
    }

    /// Writes a readable account of a violation on `key`.
    fn explain(&self, key: &str, stuck: Option<&Stuck>) -> String {
        let (n, initial) = (self.recs.len(), shown(self.initial));
        let mut s = format!("key {key:?}: no linearization of its {n} ops (initial: {initial})\n");
        let Some(stuck) = stuck else { return s };
        // Replay the prefix with the real values.
        let state =
            (stuck.prefix.iter()).fold(self.initial, |st, &op| self.recs[op].op.apply(st).0);
        let line = |op: usize, model: bool| {
            let (id, r) = (self.ids[op], self.recs[op]);
            let (at, ret) = r.ret.map_or(("?".into(), "unknown".into()), |(ret, at)| {
                (at.to_string(), ret.to_string())
            });
            let model = if model {
                format!("   (would get {})", r.op.apply(state).1)
            } else {
                String::new()
            };
            format!(
                "  #{id} p{} [{}, {at}] {} -> {ret}{model}\n",
                r.process, r.call, r.op
            )
        };
        let k = stuck.prefix.len();
        let _ = writeln!(
            s,
            "longest linearizable prefix: {k} ops, reaching {}",
            shown(state)
        );
        for &op in &stuck.prefix[k.saturating_sub(SHOWN)..] {
            s += &line(op, false);
        }
        s += "then this op cannot take effect before it returns:\n";
        s += &line(stuck.blocked, true);
        if !stuck.pending.is_empty() {
            s += "nor can these ops, invoked by then, go next:\n";
        }
        for &op in stuck.pending.iter().take(SHOWN) {
            s += &line(op, true);
        }
        if let Some(more) = stuck.pending.len().checked_sub(SHOWN).filter(|&m| m > 0) {
            let _ = writeln!(s, "  ... and {more} more");
        }
        s
    }
}

/// Lowe's memo of failed configurations: per (placed completed ops, state),
/// the minimal sets of placed lost ops that fail.
type Memo = FxHashMap<Box<[u64]>, Vec<Box<[u64]>>>;

/// Whether bitset `a` is a subset of `b`.
fn subset(a: &[u64], b: &[u64]) -> bool {
    a.iter().zip(b).all(|(x, y)| x & !y == 0)
}

/// How many ops of each kind an explanation lists at most.
const SHOWN: usize = 8;

/// `Op::Write` with this field.
fn w(value: u64) -> Op {
    Op::Write { value }
}

/// `Op::Cas` with these fields.
fn cas(expected_version: i32, value: u64) -> Op {
    Op::Cas {
        expected_version,
        value,
    }
}

/// `Op::Delete` with this field.
fn del(expected_version: Option<i32>) -> Op {
    Op::Delete { expected_version }
}

#[cfg(test)]
mod tests;
