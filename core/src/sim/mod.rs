//! A seeded, single-threaded whole-cluster simulator for [`crate::paxos`].
//!
//! One [`Cluster`] holds N replicas, a network and a disk per replica, all
//! driven by one [`Rng`] seeded by the caller, so a run is a pure function of
//! its seed and configuration and any failure replays exactly. The network
//! loses, duplicates, delays and (through random delays) reorders messages,
//! and obeys a directed link matrix, which expresses symmetric, one-way and
//! partial partitions. Disks complete writes in order after a random delay;
//! a crash discards every write not yet reported durable and every message
//! in flight to the node, and a restart rebuilds the replica from its disk.
//! Each node has its own monotonic clock (one millisecond per simulated
//! tick), running at a slightly different rate from the others and
//! sometimes jumping forward, within the drift bound the lease is
//! configured for. A node can be *paused*, as SIGSTOP, a debugger or VM
//! steal pause a process: it takes no messages, client requests or timer
//! firings while its clock runs on, and at the end of the pause it first
//! handles the client requests that waited, then everything else.
//!
//! Checked on every step: no two values are committed in one slot; every
//! replica applies a contiguous prefix of the one log; a lease or read-index
//! read sees every write applied anywhere before it was asked; a `Promise`
//! or `Accepted` leaves a node only once its disk holds what it reports.
//! [`run`] adds a random fault schedule and, after healing everything,
//! requires that the cluster commits again, on every replica, within a
//! bounded number of ticks.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::hash::{DefaultHasher, Hash, Hasher};

use crate::SessionId;
use crate::node::reads::ReadBarriers;
use crate::node::sessions::SessionLiveness;
use crate::paxos::rng::Rng;
use crate::paxos::{
    Command, Config, Durable, Membership, Message, MonoMs, NodeId, Replica, Role, Slot, Snapshot,
    Value, Write,
};
use crate::session::SessionTable;

pub use config::{Plant, SimConfig};
use encoding::{decode, encode};

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub seed: u64,
    pub nodes: usize,
    pub steps: u64,
    /// Slots committed (the longest applied log at the end).
    pub commits: u64,
    pub violations: Vec<String>,
    /// Ticks from healing to a new value applied on every replica.
    pub recovery_ticks: Option<u64>,
    /// A hash of every command every node emitted, with when and where:
    /// two runs of one seed must agree on it exactly.
    pub trace_hash: u64,
}

/// What travels between simulated nodes: the replica's messages and the
/// node's own frames, as between real ones.
#[derive(Debug, Clone, Hash)]
enum Frame {
    Paxos(Message<u64>),
    ReadIndex(u64),
    ReadIndexReply {
        request: u64,
        index: Option<Slot>,
    },
    Touch {
        round: u64,
        sessions: Vec<SessionId>,
    },
    TouchAck {
        round: u64,
        expired: Vec<SessionId>,
    },
}

#[derive(Debug)]
struct InFlight {
    due: u64,
    order: u64,
    from: usize,
    to: usize,
    msg: Frame,
}

#[derive(Debug)]
struct Node {
    id: NodeId,
    /// The node's monotonic clock.
    clock: MonoMs,
    /// Timer firings it handled (what a [`Plant::LeaseInTicks`] shell
    /// passes as the time).
    firings: MonoMs,
    /// Paused until this cluster tick.
    paused_until: Option<u64>,
    /// Reads asked while paused, handled first when it resumes.
    waiting_reads: Vec<u64>,
    /// The tick of its last forward clock jump.
    jumped_at: u64,
    /// What the monotonicity checks last saw of it.
    seen: invariants::monotonic::Seen,
    /// The node's read barriers and session liveness (the node core),
    /// rebuilt at every start.
    reads: ReadBarriers,
    sessions: SessionLiveness,
    /// The node's read ids of the cluster's reads it is serving.
    read_ids: BTreeMap<u64, u64>,
    /// The sessions open in its applied state.
    open: SessionTable,
    /// Whether it was the authoritative leader (leading, caught up) at the
    /// end of its last turn.
    was_leader: bool,
    replica: Option<Replica<u64>>,
    disk: Durable<u64>,
    /// Writes handed to the disk, not yet durable: `(due tick, write)`.
    unsynced: VecDeque<(u64, Write<u64>)>,
    /// A snapshot file being written (one at a time, beside the log, as
    /// the node writes its snapshot files): lost if the node crashes first.
    snapshot_write: Option<SnapshotWrite>,
    applied: Slot,
    /// The state machine: every value applied, from slot 1.
    values: Vec<Value<u64>>,
    /// Each key's latest value and version in `values` (see `history`).
    kv: Vec<(u64, i32)>,
    incarnation: u64,
    disk_delay: u64,
    /// Clock skew: +1 (fast), -1 (slow) or 0, applied every drift period.
    skew: i8,
    skew_phase: u64,
}

/// A snapshot on its way to disk.
#[derive(Debug)]
struct SnapshotWrite {
    due: u64,
    snapshot: Snapshot,
    /// Taken here: once durable, the replica's log is compacted up to it
    /// (as the node compacts only after the file is durable). An installed
    /// snapshot was compacted into the replica on receipt.
    compact: bool,
}

/// A simulated cluster. Nodes are indexed `0..n`; node `i` has id `i + 1`.
#[derive(Debug)]
pub struct Cluster {
    pub cfg: SimConfig,
    seed: u64,
    rng: Rng,
    now: u64,
    nodes: Vec<Node>,
    /// `links[from][to]`: messages from `from` reach `to`.
    links: Vec<Vec<bool>>,
    net: Vec<InFlight>,
    /// The value applied at each slot (index `slot - 1`), by whoever applied
    /// it first; every later apply must agree.
    chosen: Vec<Value<u64>>,
    next_value: u64,
    next_read: u64,
    /// Read id -> (node index, lowest index the answer may name).
    reads: BTreeMap<u64, (usize, Slot)>,
    /// Committed membership changes by slot (each governs the slots after
    /// its own), for the quorum-durability check.
    memberships: Vec<(Slot, Membership)>,
    /// Client sessions and where each is kept alive.
    clients: Vec<clients::Client>,
    /// The tick each closed session's close was first applied.
    closed_at: BTreeMap<SessionId, u64>,
    /// The clients' writes and reads, for the linearizability check.
    history: history::Recorder,
    pub violations: Vec<String>,
    pub steps: u64,
    /// When set, every delivered message is recorded here (debugging).
    pub trace: Option<Vec<String>>,
    /// Hashes every command executed (see [`Outcome::trace_hash`]); the
    /// default hasher's keys are fixed, so the hash is reproducible.
    trace_hash: DefaultHasher,
}

impl Cluster {
    pub fn new(seed: u64, cfg: SimConfig) -> Self {
        let mut rng = Rng::new(seed);
        let n = cfg.nodes.max(1);
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let skew = if cfg.drift_period == 0 {
                0
            } else {
                rng.range(0, 3) as i8 - 1
            };
            let skew_phase = rng.range(0, cfg.drift_period.max(1));
            nodes.push(Node {
                id: i as NodeId + 1,
                clock: 0,
                firings: 0,
                paused_until: None,
                waiting_reads: Vec::new(),
                jumped_at: 0,
                seen: Default::default(),
                reads: ReadBarriers::new(1),
                read_ids: BTreeMap::new(),
                sessions: SessionLiveness::new(0, &SessionTable::default(), 0),
                open: SessionTable::default(),
                was_leader: false,
                replica: None,
                disk: Durable::default(),
                unsynced: VecDeque::new(),
                snapshot_write: None,
                applied: 0,
                values: Vec::new(),
                kv: history::state_of(std::iter::empty()),
                incarnation: 0,
                disk_delay: cfg.max_disk_delay.min(1),
                skew,
                skew_phase,
            });
        }
        let mut c = Cluster {
            links: vec![vec![true; n]; n],
            cfg,
            seed,
            rng,
            now: 0,
            nodes,
            net: Vec::new(),
            chosen: Vec::new(),
            next_value: 1,
            next_read: 1,
            reads: BTreeMap::new(),
            memberships: Vec::new(),
            clients: Vec::new(),
            closed_at: BTreeMap::new(),
            history: history::Recorder::new(),
            violations: Vec::new(),
            steps: 0,
            trace: None,
            trace_hash: DefaultHasher::new(),
        };
        let initial = c.replica_config(0);
        c.memberships
            .push((0, Membership::new(initial.voters, initial.observers)));
        c.clients = clients::open_sessions(&mut c);
        for i in 0..n {
            c.start(i);
        }
        c
    }

    fn replica_config(&self, i: usize) -> Config {
        let n = self.nodes.len() as NodeId;
        let node = &self.nodes[i];
        let voters_n = (n - (self.cfg.observers as NodeId).min(n - 1)).max(1);
        let mut cfg = Config::new(node.id, (1..=voters_n).collect());
        cfg.observers = (voters_n + 1..=n).collect();
        cfg.heartbeat_ms = self.cfg.heartbeat_ms;
        cfg.election_ms = self.cfg.election_ms;
        cfg.read_mode = self.cfg.read_mode;
        cfg.max_batch = 256;
        // Small chunks, so that transfers take many messages and resume.
        cfg.snapshot_chunk = 1024;
        cfg.seed = self
            .seed
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(node.id << 32)
            .wrapping_add(node.incarnation);
        cfg
    }

    fn start(&mut self, i: usize) {
        let cfg = self.replica_config(i);
        let durable = self.nodes[i].disk.clone();
        let now = self.clock(i);
        let replica = if self.nodes[i].incarnation == 0 {
            Replica::new(cfg, now)
        } else {
            Replica::restore(cfg, durable, now)
        };
        match replica {
            Ok(r) => self.nodes[i].replica = Some(r),
            Err(e) => self.violation(format!("node {} failed to start: {e}", i + 1)),
        }
        self.start_node_core(i, now);
    }

    pub fn now(&self) -> u64 {
        self.now
    }

    /// The time node `i`'s shell passes to its replica.
    fn clock(&self, i: usize) -> MonoMs {
        match self.cfg.plant {
            Some(Plant::LeaseInTicks) => self.nodes[i].firings,
            _ => self.nodes[i].clock,
        }
    }

    /// Whether node `i` is paused.
    pub fn is_paused(&self, i: usize) -> bool {
        self.nodes[i].paused_until.is_some()
    }

    /// Pauses node `i` for `ticks` ticks (SIGSTOP, then SIGCONT): its clock
    /// runs on, but it handles nothing until then.
    pub fn pause(&mut self, i: usize, ticks: u64) {
        if self.nodes[i].replica.is_some() {
            self.nodes[i].paused_until = Some(self.now + ticks);
        }
    }

    /// Ends node `i`'s pause now. It handles the client reads that waited
    /// first, with its clock as it is after the pause.
    pub fn resume(&mut self, i: usize) {
        if self.nodes[i].paused_until.take().is_none() {
            return;
        }
        let reads = std::mem::take(&mut self.nodes[i].waiting_reads);
        for id in reads {
            self.ask_read(i, id);
        }
        self.drain(i);
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn is_up(&self, i: usize) -> bool {
        self.nodes[i].replica.is_some()
    }

    /// Node `i`'s replica, unless it is down.
    pub fn replica(&self, i: usize) -> Option<&Replica<u64>> {
        self.nodes[i].replica.as_ref()
    }

    pub fn role(&self, i: usize) -> Option<Role> {
        self.nodes[i].replica.as_ref().map(Replica::role)
    }

    /// Indexes of nodes that currently believe they lead.
    pub fn leaders(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.role(i) == Some(Role::Leader))
            .collect()
    }

    /// Slots applied by node `i` since it last started.
    pub fn applied(&self, i: usize) -> Slot {
        self.nodes[i].applied
    }

    /// The highest slot anyone has applied.
    pub fn max_applied(&self) -> Slot {
        self.chosen.len() as Slot
    }

    pub fn set_link(&mut self, from: usize, to: usize, up: bool) {
        self.links[from][to] = up;
    }

    /// Cuts or restores both directions between `a` and `b`.
    pub fn set_pair(&mut self, a: usize, b: usize, up: bool) {
        self.links[a][b] = up;
        self.links[b][a] = up;
    }

    pub fn heal(&mut self) {
        for row in &mut self.links {
            row.iter_mut().for_each(|l| *l = true);
        }
    }

    /// Cuts every link, then restores the listed pairs (both directions).
    pub fn only_links(&mut self, pairs: &[(usize, usize)]) {
        for row in &mut self.links {
            row.iter_mut().for_each(|l| *l = false);
        }
        for &(a, b) in pairs {
            self.set_pair(a, b, true);
        }
    }

    /// Crash: the replica, its unsynced writes and messages to it are lost.
    pub fn crash(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.replica = None;
        node.unsynced.clear();
        node.snapshot_write = None;
        self.history.node_lost(i);
        node.paused_until = None;
        node.waiting_reads.clear();
        // Its clients' reads and keep-alives are lost with it.
        self.reads.retain(|_, (at, _)| *at != i);
        self.connection_lost(i);
        self.net.retain(|m| m.to != i);
    }

    pub fn restart(&mut self, i: usize) {
        if self.nodes[i].replica.is_some() {
            return;
        }
        self.nodes[i].incarnation += 1;
        // A restarted node relearns its commit index from its snapshot.
        self.nodes[i].seen.commit = 0;
        // The state machine restarts from the durable snapshot, if any, and
        // applies the log again from there.
        let node = &mut self.nodes[i];
        match &node.disk.snapshot {
            Some(snap) => {
                node.values = decode(&snap.data);
                node.applied = snap.index;
            }
            None => {
                node.values.clear();
                node.applied = 0;
            }
        }
        node.kv = history::state_of(node_writes(&node.values));
        self.start(i);
    }

    pub fn set_disk_delay(&mut self, i: usize, delay: u64) {
        self.nodes[i].disk_delay = delay;
    }

    /// Proposes `count` fresh values at node `i`. Returns their ids.
    pub fn propose(&mut self, i: usize, count: usize) -> Vec<u64> {
        let ids: Vec<u64> = (0..count as u64).map(|k| self.next_value + k).collect();
        if self.is_paused(i) {
            return Vec::new();
        }
        let Some(r) = self.nodes[i].replica.as_mut() else {
            return Vec::new();
        };
        match r.propose(ids.clone()) {
            Ok(_) => {
                self.next_value += count as u64;
                for &id in &ids {
                    self.history.write_asked(i, id, self.now);
                }
                self.drain(i);
                ids
            }
            Err(_) => Vec::new(),
        }
    }

    /// Asks node `i` for a linearizable read. When it is answered, the
    /// node must have applied every slot applied anywhere by now; a paused
    /// node gets the request when it resumes, as from its socket.
    pub fn read(&mut self, i: usize) {
        if self.nodes[i].replica.is_none() {
            return;
        }
        let id = self.next_read;
        self.next_read += 1;
        let floor = self.max_applied();
        self.reads.insert(id, (i, floor));
        self.history
            .read_asked(id, i, history::key_of(id), self.now);
        if self.is_paused(i) {
            self.nodes[i].waiting_reads.push(id);
            return;
        }
        self.ask_read(i, id);
        self.drain(i);
    }

    /// The slot value `id` was applied at, if it was.
    pub fn slot_of(&self, id: u64) -> Option<Slot> {
        self.chosen
            .iter()
            .position(|v| *v == Value::Data(id))
            .map(|p| p as Slot + 1)
    }

    fn violation(&mut self, what: String) {
        let mut s = String::new();
        let _ = write!(s, "tick {}: {what}", self.now);
        self.violations.push(s);
    }

    /// Executes node `i`'s commands until it has none left, completing
    /// disk writes that are due now.
    fn drain(&mut self, i: usize) {
        if self.is_paused(i) {
            return;
        }
        loop {
            let Some(r) = self.nodes[i].replica.as_mut() else {
                return;
            };
            let cmds = r.take_commands();
            if cmds.is_empty() {
                if !self.complete_disk(i) {
                    self.check_turn(i);
                    return;
                }
                continue;
            }
            for cmd in cmds {
                self.execute(i, cmd);
            }
        }
    }

    /// Makes due writes of node `i` durable and reports them. Returns
    /// whether it reported anything.
    fn complete_disk(&mut self, i: usize) -> bool {
        let now = self.now;
        if self.is_paused(i) {
            return false;
        }
        let node = &mut self.nodes[i];
        let mut last = None;
        while node.unsynced.front().is_some_and(|(due, _)| *due <= now) {
            if let Some((_, w)) = node.unsynced.pop_front() {
                node.disk.apply(&w);
                last = Some(w.token);
            }
        }
        if last.is_some()
            && let Some(v) =
                invariants::monotonic::on_durable(&mut node.seen, node.id, node.disk.promised)
        {
            self.violation(v);
        }
        let node = &mut self.nodes[i];
        if node.snapshot_write.as_ref().is_some_and(|w| w.due <= now)
            && let Some(write) = node.snapshot_write.take()
        {
            let (index, data) = (write.snapshot.index, write.snapshot.data.clone());
            node.disk.set_snapshot(write.snapshot);
            if write.compact
                && let Some(r) = node.replica.as_mut()
            {
                // Committed and applied here before it was taken.
                let _ = r.compact(index, data);
            }
        }
        match (last, node.replica.as_mut()) {
            (Some(t), Some(r)) => {
                r.persisted(t);
                true
            }
            _ => false,
        }
    }

    /// The checks due when node `i` has nothing more to do for now.
    fn check_turn(&mut self, i: usize) {
        self.after_turn(i);
        let node = &mut self.nodes[i];
        let Some(r) = node.replica.as_ref() else {
            return;
        };
        let commit = r.commit_index();
        let order = invariants::state_order::check(node.id, r, node.applied);
        let went_back = invariants::monotonic::on_commit(&mut node.seen, node.id, commit);
        for v in [order, went_back].into_iter().flatten() {
            self.violation(v);
        }
    }

    fn execute(&mut self, i: usize, cmd: Command<u64>) {
        (self.now, i, &cmd).hash(&mut self.trace_hash);
        match cmd {
            Command::Persist(w) => {
                let delay = self.rng.range(0, self.nodes[i].disk_delay + 1);
                let node = &mut self.nodes[i];
                // In order: a write is never durable before an earlier one.
                let due = node
                    .unsynced
                    .back()
                    .map_or(self.now + delay, |(d, _)| (*d).max(self.now + delay));
                node.unsynced.push_back((due, w));
            }
            Command::Send { to, msg } => {
                let node = &self.nodes[i];
                let commit = node.replica.as_ref().map_or(0, Replica::commit_index);
                if let Some(v) =
                    invariants::durable_send::on_send(node.id, &node.disk, commit, &msg)
                {
                    self.violation(v);
                }
                let Some(to) = (to as usize).checked_sub(1) else {
                    return;
                };
                if to >= self.nodes.len() || !self.links[i][to] || self.rng.chance(self.cfg.loss) {
                    return;
                }
                if self.rng.chance(self.cfg.duplicate) {
                    self.enqueue(i, to, Frame::Paxos(msg.clone()));
                }
                self.enqueue(i, to, Frame::Paxos(msg));
            }
            Command::Apply { first, values } => {
                self.check_apply(i, first, values);
                self.release_reads(i);
            }
            Command::ReadReady {
                id,
                index,
                lease_until,
            } => {
                let at = crate::node::reads::ReadIndex { index, lease_until };
                self.read_confirmed(i, id, Some(at));
            }
            Command::ReadFailed { id } => self.read_confirmed(i, id, None),
            Command::InstallSnapshot(snap) => {
                let index = snap.index;
                let values = decode(&snap.data);
                let id = self.nodes[i].id;
                for v in invariants::snapshot::on_install(&self.chosen, id, index, &values) {
                    self.violation(v);
                }
                let node = &mut self.nodes[i];
                if index > node.applied {
                    node.kv = history::state_of(node_writes(&values));
                    node.values = values;
                    node.applied = index;
                    self.sessions_replaced(i);
                }
                // Installed now; durable after a disk delay, or lost in a
                // crash before that (the replica already dropped its log).
                let due = self.now + self.rng.range(0, self.nodes[i].disk_delay * 2 + 1);
                self.nodes[i].snapshot_write = Some(SnapshotWrite {
                    due,
                    snapshot: snap,
                    compact: false,
                });
            }
        }
    }

    /// Sends a node frame from `from` to node id `to`, through the same
    /// lossy network as the replica's messages.
    fn send_frame(&mut self, from: usize, to: NodeId, frame: Frame) {
        let Some(to) = (to as usize).checked_sub(1) else {
            return;
        };
        if to >= self.nodes.len() || !self.links[from][to] || self.rng.chance(self.cfg.loss) {
            return;
        }
        self.enqueue(from, to, frame);
    }

    fn enqueue(&mut self, from: usize, to: usize, msg: Frame) {
        let due = self.now + self.rng.range(1, self.cfg.max_delay.max(1) + 1);
        let order = self.rng.next_u64();
        self.net.push(InFlight {
            due,
            order,
            from,
            to,
            msg,
        });
    }

    fn check_apply(&mut self, i: usize, first: Slot, values: Vec<Value<u64>>) {
        let node = self.nodes[i].id;
        if let Some(v) = invariants::prefix::on_apply(node, self.nodes[i].applied, first) {
            self.violation(v);
        }
        let last = first + values.len() as Slot - 1;
        for (k, v) in values.into_iter().enumerate() {
            let slot = first + k as Slot;
            let closes = clients::closed_session(&v);
            match invariants::agreement::on_apply(&mut self.chosen, node, slot, v) {
                Ok(true) => {
                    self.first_applied(slot);
                    if let Some(s) = closes {
                        self.closed_at.insert(s, self.now);
                    }
                }
                Ok(false) => {}
                Err(v) => self.violation(v),
            }
            if let Some(s) = closes
                && slot > self.nodes[i].applied
            {
                self.session_closed(i, s);
            }
        }
        if first == self.nodes[i].applied + 1 {
            let vs: Vec<Value<u64>> = (first..=last)
                .map(|s| self.chosen[(s - 1) as usize].clone())
                .collect();
            for v in &vs {
                if let Some(x) = client_write(v) {
                    let version = history::apply_write(&mut self.nodes[i].kv, x);
                    self.history.write_applied(i, x, version, self.now);
                }
            }
            self.nodes[i].values.extend(vs);
        }
        self.nodes[i].applied = self.nodes[i].applied.max(last);
    }

    /// Slot `slot` was applied for the first time (its value is the last of
    /// `chosen`): check that a majority of its voters hold it durably, and
    /// note a membership change it makes.
    fn first_applied(&mut self, slot: Slot) {
        let value = &self.chosen[(slot - 1) as usize];
        let governing = self
            .memberships
            .iter()
            .rev()
            .find(|(at, _)| *at < slot)
            .map(|(_, m)| m)
            .expect("the initial membership governs from slot 1");
        let disks: Vec<(NodeId, &Durable<u64>)> =
            self.nodes.iter().map(|n| (n.id, &n.disk)).collect();
        let violation = invariants::quorum_durable::on_first_apply(slot, value, governing, &disks);
        if let Value::Config(m) = value {
            self.memberships.push((slot, (**m).clone()));
        }
        if let Some(v) = violation {
            self.violation(v);
        }
    }

    /// One tick of the whole cluster: deliver due messages, complete due
    /// writes, tick every replica.
    pub fn step(&mut self) {
        self.now += 1;
        self.steps += 1;
        let now = self.now;
        for i in 0..self.nodes.len() {
            if self.nodes[i].paused_until.is_some_and(|until| until <= now) {
                self.resume(i);
            }
        }
        let mut due: Vec<InFlight> = Vec::new();
        let mut k = 0;
        while k < self.net.len() {
            // A paused node's messages wait for it, as in a socket buffer.
            if self.net[k].due <= now && !self.is_paused(self.net[k].to) {
                due.push(self.net.swap_remove(k));
            } else {
                k += 1;
            }
        }
        due.sort_by_key(|m| (m.due, m.order));
        for m in due {
            if !self.links[m.from][m.to] {
                continue;
            }
            let from = self.nodes[m.from].id;
            if let Some(t) = self.trace.as_mut() {
                t.push(format!("{now}: {} -> {}: {:?}", from, m.to + 1, m.msg));
            }
            let clock = self.clock(m.to);
            match m.msg {
                Frame::Paxos(msg) => {
                    if let Some(r) = self.nodes[m.to].replica.as_mut() {
                        r.step(from, msg, clock);
                    }
                }
                frame => self.on_frame(m.to, from, frame),
            }
            self.drain(m.to);
        }
        for i in 0..self.nodes.len() {
            self.complete_disk(i);
            self.drain(i);
        }
        if self.cfg.compact_every > 0 {
            for i in 0..self.nodes.len() {
                self.maybe_compact(i);
            }
        }
        for i in 0..self.nodes.len() {
            let node = &mut self.nodes[i];
            node.clock += 1;
            if self.cfg.drift_period > 0 && now % self.cfg.drift_period == node.skew_phase {
                node.clock = node.clock.saturating_add_signed(i64::from(node.skew));
            }
        }
        for i in 0..self.nodes.len() {
            if self.is_paused(i) {
                continue;
            }
            self.nodes[i].firings += 1;
            let clock = self.clock(i);
            if let Some(r) = self.nodes[i].replica.as_mut() {
                r.tick(clock);
            }
            if now.is_multiple_of(self.cfg.node_tick.max(1)) {
                self.node_tick(i);
            }
            self.drain(i);
        }
        self.clients_step();
    }

    /// Snapshots node `i` at its applied index, writes it, and compacts its
    /// log once it is durable, as the shell must do; a crash in between
    /// loses the snapshot and keeps the log.
    fn maybe_compact(&mut self, i: usize) {
        let every = self.cfg.compact_every;
        let delay = self.rng.range(0, self.nodes[i].disk_delay * 2 + 1);
        let now = self.now;
        let node = &mut self.nodes[i];
        if node.paused_until.is_some() || node.snapshot_write.is_some() {
            return;
        }
        let Some(r) = node.replica.as_mut() else {
            return;
        };
        // Keep a tail of `every` slots, as a real shell would, so that a
        // peer that just installed a snapshot can continue from the log.
        let upto = node.applied.saturating_sub(every);
        if upto < r.log_start() + every || node.values.len() as Slot != node.applied {
            return;
        }
        // The log is compacted only once the snapshot is durable.
        let snapshot = Snapshot {
            index: upto,
            membership: r.membership_at(upto),
            data: encode(&node.values[..upto as usize]),
        };
        node.snapshot_write = Some(SnapshotWrite {
            due: now + delay,
            snapshot,
            compact: true,
        });
    }

    /// Steps until `done` holds or `max` ticks pass; returns the ticks used.
    pub fn run_until(
        &mut self,
        max: u64,
        mut done: impl FnMut(&mut Cluster) -> bool,
    ) -> Option<u64> {
        for t in 0..=max {
            if done(self) {
                return Some(t);
            }
            self.step();
        }
        None
    }

    /// Proposes fresh values at whatever leader exists each tick until one
    /// of them is applied by every node in `on`; returns the ticks it took.
    pub fn commit_within(&mut self, on: &[usize], max: u64) -> Option<u64> {
        let mut proposed: Vec<u64> = Vec::new();
        let start = self.now;
        for _ in 0..=max {
            for i in self.leaders() {
                proposed.extend(self.propose(i, 1));
            }
            for &id in &proposed {
                if let Some(slot) = self.slot_of(id)
                    && on.iter().all(|&i| self.nodes[i].applied >= slot)
                {
                    return Some(self.now - start);
                }
            }
            self.step();
        }
        None
    }
}

/// One simulated run: random faults and load for `cfg.ticks`, then heal,
/// restart everyone and require a new commit on every node in time.
pub fn run(seed: u64, cfg: SimConfig) -> Outcome {
    run_cluster(Cluster::new(seed, cfg)).0
}

/// [`run`] on a given cluster, returning it too for inspection.
pub fn run_cluster(mut c: Cluster) -> (Outcome, Cluster) {
    let n = c.len();
    for _ in 0..c.cfg.ticks {
        if c.rng.chance(c.cfg.fault_rate) {
            c.random_fault();
        }
        if c.rng.chance(c.cfg.propose_rate) {
            let leaders = c.leaders();
            if !leaders.is_empty() {
                let i = leaders[c.rng.range(0, leaders.len() as u64) as usize];
                let k = c.rng.range(1, 4) as usize;
                c.propose(i, k);
            }
        }
        // Reads go to every node that believes it leads, stale ones too:
        // a deposed leader that still serves reads is what the check is for;
        // and to any member, which relays them to its leader.
        for i in c.leaders() {
            if c.rng.chance(c.cfg.read_rate) {
                c.read(i);
            }
        }
        if c.rng.chance(c.cfg.read_rate) {
            let i = c.rng.range(0, n as u64) as usize;
            c.read(i);
        }
        c.step();
    }
    c.heal();
    for i in 0..n {
        c.resume(i);
        c.restart(i);
        c.set_disk_delay(i, c.cfg.max_disk_delay.min(1));
    }
    let all: Vec<usize> = (0..n).collect();
    // Every round trip of an election or a retransmission fails more
    // often on a lossy network: at 20% loss the bound is twice as long.
    let bound = c.cfg.heal_bound + (c.cfg.heal_bound as f64 * c.cfg.loss * 5.0) as u64;
    let recovery = c.commit_within(&all, bound);
    if recovery.is_none() {
        c.violation(format!(
            "no progress within {bound} ticks after healing (leaders: {:?}, applied: {:?})",
            c.leaders(),
            (0..n).map(|i| c.applied(i)).collect::<Vec<_>>()
        ));
    }
    let applied: std::collections::BTreeSet<u64> =
        c.chosen.iter().filter_map(client_write).collect();
    let history = c.history.finish(|v| applied.contains(&v));
    if let Some(v) = invariants::linearizable::at_end(&history) {
        c.violation(v);
    }
    let out = Outcome {
        seed: c.seed,
        nodes: n,
        steps: c.steps,
        commits: c.max_applied(),
        violations: c.violations.clone(),
        recovery_ticks: recovery,
        trace_hash: c.trace_hash.finish(),
    };
    (out, c)
}

/// The client write a value is: a plain value, not a no-op, a membership
/// change or a session's close.
fn client_write(value: &Value<u64>) -> Option<u64> {
    match value {
        Value::Data(x) if clients::closed_session(value).is_none() => Some(*x),
        _ => None,
    }
}

/// The client writes among `values`, in order.
fn node_writes(values: &[Value<u64>]) -> impl Iterator<Item = u64> + '_ {
    values.iter().filter_map(client_write)
}

/// Cluster size for a seed when none is given: 1, 3, 5 or 7.
pub fn nodes_for_seed(seed: u64) -> usize {
    [3, 5, 3, 7, 5, 1, 3, 5][(seed % 8) as usize]
}
mod clients;
mod config;
mod encoding;
mod faults;
mod history;
mod invariants;
#[cfg(test)]
mod tests;
