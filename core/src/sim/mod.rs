//! A seeded, single-threaded simulator of whole Synod nodes: the
//! Multi-Paxos replica ([`crate::paxos`]), the node core ([`crate::node`]:
//! write path, group commit, snapshot schedule, read barriers, session
//! liveness, serving) and the real state machine ([`crate::state`]: znode
//! tree, sessions) with a watch registry per node, driven the way `synod`'s
//! driver drives them, under faults, by clients whose operations are
//! recorded as a history.
//!
//! One [`Cluster`] holds N nodes, a network and a disk per node, all driven
//! by one [`Rng`] seeded by the caller, so a run is a pure function of its
//! seed and configuration and any failure replays exactly. The network
//! loses, duplicates, delays and (through random delays) reorders messages,
//! and obeys a directed link matrix, which expresses symmetric, one-way and
//! partial partitions. Disks take one group-commit batch at a time and
//! complete it after a random delay (or fail it, and the batch is appended
//! again); a crash discards every write not yet durable, the snapshot in
//! progress and every message in flight to the node, and a restart rebuilds
//! the node from its disk (snapshot + log). Each node has its own monotonic
//! clock (one millisecond per simulated tick), running at a slightly
//! different rate from the others and sometimes jumping forward, within the
//! drift bound the lease is configured for. A node can be *paused*, as
//! SIGSTOP, a debugger or VM steal pause a process: it takes no messages,
//! client requests or timer firings while its clock runs on, and at the end
//! of the pause it first handles the client reads that waited, then
//! everything else.
//!
//! The files beside this one: `node` (a node's parts and its start),
//! `shell` (the driver's turn: commands, frames, applying committed
//! slots), `disk` (group commit, snapshot files), `clients` (sessions and
//! keep-alives), `ops` (the clients' reads and writes), `history`, `txns`
//! (every txn the simulator builds), `faults`, and `invariants/` (one
//! property per file, each checked at the event that could break it).
//! [`run`] adds a random fault schedule and, after healing everything,
//! requires that the cluster commits again, on every node, within a bounded
//! number of ticks, then checks the history.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hash::{DefaultHasher, Hasher};

use crate::SessionId;
use crate::paxos::rng::Rng;
use crate::paxos::{
    Claim, Config, Membership, Message, MonoMs, NodeId, Replica, Role, Slot, Value,
};
use crate::txn::Txn;

pub use config::{Plant, SimConfig};
use node::{Node, Pending};

/// How often a run exercised the parts of the node that only some
/// schedules reach (a check that never runs proves nothing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Snapshots a node encoded from its state machine.
    pub snapshots_encoded: u64,
    /// Snapshots a node installed from the leader.
    pub snapshots_installed: u64,
    /// Log batches and snapshot files that failed to be written.
    pub disk_failures: u64,
    /// Txns a follower forwarded to the leader.
    pub forwarded: u64,
    /// Sessions the leader expired (their close applied).
    pub expired: u64,
    /// Ephemerals deleted by a session's close.
    pub ephemerals_deleted: u64,
    /// Sequential creates acknowledged.
    pub sequential: u64,
    /// Watch events delivered to a client.
    pub watch_events: u64,
    /// Empty containers reaped (first applied).
    pub containers_reaped: u64,
    /// Expired TTL nodes reaped (first applied).
    pub ttl_reaped: u64,
    /// Reads a node held behind their session's outstanding writes.
    pub reads_held: u64,
    /// Catch-up a node served from its disk: values its replica had let go.
    pub logged_sends: u64,
}

impl Coverage {
    /// Adds another run's counts.
    pub fn add(&mut self, other: &Coverage) {
        self.snapshots_encoded += other.snapshots_encoded;
        self.snapshots_installed += other.snapshots_installed;
        self.disk_failures += other.disk_failures;
        self.forwarded += other.forwarded;
        self.expired += other.expired;
        self.ephemerals_deleted += other.ephemerals_deleted;
        self.sequential += other.sequential;
        self.watch_events += other.watch_events;
        self.containers_reaped += other.containers_reaped;
        self.ttl_reaped += other.ttl_reaped;
        self.reads_held += other.reads_held;
        self.logged_sends += other.logged_sends;
    }
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub seed: u64,
    pub nodes: usize,
    pub steps: u64,
    /// Slots committed (the longest applied log at the end).
    pub commits: u64,
    /// Client operations recorded in the history.
    pub operations: u64,
    pub violations: Vec<String>,
    /// Ticks from healing to a new value applied on every replica.
    pub recovery_ticks: Option<u64>,
    /// Disks wiped, and wiped members re-added as voters.
    pub wipes: u64,
    pub readded: u64,
    pub coverage: Coverage,
    /// A hash of every command every node emitted, with when and where:
    /// two runs of one seed must agree on it exactly.
    pub trace_hash: u64,
}

/// What travels between simulated nodes: the replica's messages and the
/// node's own frames, as between real ones.
#[derive(Debug, Clone)]
enum Frame {
    /// A replica's message and its sender's claim.
    Paxos(Message<Vec<u8>>, Claim),
    /// Txns forwarded to the leader (request number, txn).
    Forward(Vec<(u64, Txn)>),
    /// The leader did not propose these forwarded requests.
    Refused(Vec<u64>),
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

/// A linearizable read on its way: where it was asked and by whom.
#[derive(Debug, Clone, Copy)]
struct ReadAsk {
    node: usize,
    /// The highest slot applied anywhere when it was asked.
    floor: Slot,
    /// The client that asked (`None`: a reader without a session).
    client: Option<usize>,
    key: usize,
    /// Its operation in the history.
    op: usize,
    /// Whether it leaves a data watch.
    watch: bool,
    /// Sent right after a write of its session, without waiting for the
    /// write's answer.
    pipelined: bool,
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
    chosen: Vec<Value<Vec<u8>>>,
    /// The digest of the state after each slot, by its first applier.
    digests: Vec<u64>,
    /// Every request that reached the log: (origin, request) -> slot.
    committed: BTreeMap<(NodeId, u64), Slot>,
    /// The tester's probes (see [`Cluster::propose`]): (node, request).
    probes: Vec<(NodeId, u64)>,
    /// The next value a client writes (unique in the run).
    next_value: u64,
    next_read: u64,
    reads: BTreeMap<u64, ReadAsk>,
    /// Committed membership changes by slot (each governs the slots after
    /// its own), for the quorum-durability check.
    memberships: Vec<(Slot, Membership)>,
    /// The clients, each with its session and its node.
    clients: Vec<clients::Client>,
    /// The tick each closed session's close was first applied.
    closed_at: BTreeMap<SessionId, u64>,
    /// Sequential names committed and acknowledged.
    sequences: invariants::sequential::Sequences,
    /// The clients' operations on the registers, for linearizability.
    history: history::Recorder,
    pub violations: Vec<String>,
    pub steps: u64,
    pub coverage: Coverage,
    /// Disks wiped so far, and wiped members the simulated operator has
    /// re-added.
    wipes: u64,
    readded: u64,
    /// Disks as they were when wiped, by node: a vote cast before the wipe
    /// was durable when it counted.
    lost_disks: Vec<(NodeId, crate::paxos::Durable<Vec<u8>>)>,
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
            nodes.push(Node::new(i as NodeId + 1, &cfg, skew, skew_phase));
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
            digests: Vec::new(),
            committed: BTreeMap::new(),
            probes: Vec::new(),
            next_value: 1,
            next_read: 1,
            reads: BTreeMap::new(),
            memberships: Vec::new(),
            clients: Vec::new(),
            closed_at: BTreeMap::new(),
            sequences: Default::default(),
            history: history::Recorder::new(),
            violations: Vec::new(),
            steps: 0,
            coverage: Coverage::default(),
            wipes: 0,
            readded: 0,
            lost_disks: Vec::new(),
            trace: None,
            trace_hash: DefaultHasher::new(),
        };
        let initial = c.replica_config(0);
        c.memberships
            .push((0, Membership::new(initial.voters, initial.observers)));
        c.clients = clients::new_clients(&mut c);
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
        cfg.snapshot_chunk = 256;
        cfg.seed = self
            .seed
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(node.id << 32)
            .wrapping_add(node.incarnation);
        if self.cfg.plant != Some(Plant::IgnoreIncarnations) {
            cfg.incarnation = node.directory;
            cfg.joined_existing = node.joined_existing;
        }
        cfg
    }

    pub fn now(&self) -> u64 {
        self.now
    }

    /// The time node `i`'s shell passes to its node core.
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
        self.turn(i);
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
    pub fn replica(&self, i: usize) -> Option<&Replica<Vec<u8>>> {
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

    /// The slot node `i`'s state machine has applied up to.
    pub fn applied(&self, i: usize) -> Slot {
        self.nodes[i].applied()
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

    pub fn set_disk_delay(&mut self, i: usize, delay: u64) {
        self.nodes[i].disk_delay = delay;
    }

    /// Submits `count` probes (no-op txns, as `sync` submits) at node `i`
    /// through its write path. Returns their ids for [`Cluster::slot_of`].
    pub fn propose(&mut self, i: usize, count: usize) -> Vec<u64> {
        if self.is_paused(i) || self.nodes[i].replica.is_none() {
            return Vec::new();
        }
        let mut ids = Vec::with_capacity(count);
        for _ in 0..count {
            let request = self.submit(i, txns::probe(), Pending::Probe);
            ids.push(self.probes.len() as u64);
            self.probes.push((self.nodes[i].id, request));
        }
        self.turn(i);
        ids
    }

    /// The slot probe `id` was applied at, if it was.
    pub fn slot_of(&self, id: u64) -> Option<Slot> {
        let probe = self.probes.get(id as usize)?;
        self.committed.get(probe).copied()
    }

    /// Asks node `i` for a linearizable read of a register, without a
    /// session. When it is answered, the node must have applied every slot
    /// applied anywhere by now; a paused node gets the request when it
    /// resumes, as from its socket.
    pub fn read(&mut self, i: usize) {
        if self.nodes[i].replica.is_none() {
            return;
        }
        let key = (self.next_read % history::KEYS as u64) as usize;
        self.start_read(i, None, key, false, false);
    }

    fn violation(&mut self, what: String) {
        let mut s = String::new();
        let _ = write!(s, "tick {}: {what}", self.now);
        self.violations.push(s);
    }

    /// Sends a frame from `from` to node id `to` through the lossy network
    /// (replica messages are also duplicated sometimes).
    fn send_frame(&mut self, from: usize, to: NodeId, frame: Frame) {
        let Some(to) = (to as usize).checked_sub(1) else {
            return;
        };
        if to >= self.nodes.len() || !self.links[from][to] || self.rng.chance(self.cfg.loss) {
            return;
        }
        if matches!(frame, Frame::Paxos(..)) && self.rng.chance(self.cfg.duplicate) {
            self.enqueue(from, to, frame.clone());
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

    /// One tick of the whole cluster: deliver due messages, complete due
    /// disk writes, encode a slice of running snapshots, tick every node,
    /// let the clients act.
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
            self.on_frame(m.to, from, m.msg);
            self.turn(m.to);
        }
        for i in 0..self.nodes.len() {
            self.complete_disk(i);
            self.snapshot_work(i);
            self.turn(i);
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
            self.turn(i);
        }
        if self.cfg.wipes && now.is_multiple_of(OPERATOR_EVERY) {
            self.operator_step();
        }
        self.clients_step();
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

    /// Proposes probes at whatever leader exists each tick until one of
    /// them is applied by every node in `on`; returns the ticks it took.
    pub fn commit_within(&mut self, on: &[usize], max: u64) -> Option<u64> {
        let mut proposed: Vec<u64> = Vec::new();
        let start = self.now;
        for _ in 0..=max {
            for i in self.leaders() {
                proposed.extend(self.propose(i, 1));
            }
            for &id in &proposed {
                if let Some(slot) = self.slot_of(id)
                    && on.iter().all(|&i| self.applied(i) >= slot)
                {
                    return Some(self.now - start);
                }
            }
            self.step();
        }
        None
    }

    /// The checks of a finished run: the history is linearizable, every
    /// node's state is the log's at its index, ephemerals belong to open
    /// sessions, sequential names increase.
    fn final_checks(&mut self) {
        let committed = &self.committed;
        let history = self
            .history
            .finish(|origin, request| committed.contains_key(&(origin, request)));
        let mut found: Vec<String> = invariants::linearizable::at_end(&history)
            .into_iter()
            .collect();
        found.extend(self.sequences.at_end());
        for node in &self.nodes {
            if node.replica.is_none() {
                continue;
            }
            let digest = invariants::same_state::digest(&node.machine);
            found.extend(invariants::same_state::on_applied(
                &self.digests,
                node.id,
                node.applied(),
                digest,
            ));
            found.extend(invariants::ephemerals::at_end(node.id, &node.machine));
        }
        for v in found {
            self.violation(v);
        }
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
        // Reads without a session go to every node that believes it leads,
        // stale ones too: a deposed leader that still serves reads is what
        // the check is for; and to any member, which relays them to its
        // leader. The clients' own operations start in `step`.
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
    let mut bound = c.cfg.heal_bound + (c.cfg.heal_bound as f64 * c.cfg.loss * 5.0) as u64;
    if c.nodes.iter().any(|n| n.replacing.is_some()) {
        // The operator still has to remove, re-add and promote a wiped
        // member, one committed change at a time, and it has to catch up.
        bound += 400;
    }
    let recovery = c.commit_within(&all, bound);
    if recovery.is_none() && !c.cfg.wipes_anytime {
        c.violation(format!(
            "no progress within {bound} ticks after healing (leaders: {:?}, applied: {:?})",
            c.leaders(),
            (0..n).map(|i| c.applied(i)).collect::<Vec<_>>()
        ));
    }
    c.final_checks();
    let out = Outcome {
        seed: c.seed,
        nodes: n,
        steps: c.steps,
        commits: c.max_applied(),
        operations: c.history.len() as u64,
        violations: c.violations.clone(),
        recovery_ticks: recovery,
        wipes: c.wipes,
        readded: c.readded,
        coverage: c.coverage,
        trace_hash: c.trace_hash.finish(),
    };
    (out, c)
}

/// Cluster size for a seed when none is given: 1, 3, 5 or 7.
pub fn nodes_for_seed(seed: u64) -> usize {
    [3, 5, 3, 7, 5, 1, 3, 5][(seed % 8) as usize]
}

mod clients;
mod config;
mod disk;
mod faults;
mod history;
mod invariants;
mod node;
mod ops;
mod shell;
#[cfg(test)]
mod tests;
mod txns;
mod wipes;

/// The simulated operator looks at the ensemble every this many ticks.
const OPERATOR_EVERY: u64 = 10;
