//! The replica: acceptor, proposer and learner in one state machine.
//!
//! Roles: a *follower* accepts what the leader sends and times out when the
//! leader goes quiet; a *candidate* runs phase 1 for every slot above its
//! commit index; a *leader* re-proposes what phase 1 found, fills gaps with
//! no-ops and then runs phase 2 for new batches, pipelined. See the module
//! docs of [`crate::paxos`] for the IO contract.
//!
//! This file holds the state (the log, the roles, the replica itself), its
//! construction, the queries, the input dispatch (`step`, `tick`) and the
//! plumbing every role uses (persist, defer, send). The roles and
//! sub-protocols are in the files beside it: `acceptor`, `election`,
//! `leader`, `reads`, `catch_up`, `membership` and `incarnations`; the log
//! is in `log`.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use super::rng::Rng;
use super::{
    Ballot, Chunk, Claim, Command, Config, Durable, Entry, Membership, Message, MonoMs, NodeId,
    PaxosError, ReadMode, Slot, Snapshot, SnapshotBytes, Value, Write,
};

mod acceptor;
mod catch_up;
mod election;
mod incarnations;
mod leader;
mod log;
mod membership;
mod reads;

use log::Log;

/// Snapshot chunks in flight per peer.
const SNAPSHOT_WINDOW: u64 = 4;

/// What a replica currently is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Follower,
    /// Asking whether a majority would follow it (pre-vote).
    PreCandidate,
    Candidate,
    Leader,
}

/// Something that must wait until a write is durable.
#[derive(Debug)]
enum Deferred<T> {
    Send {
        to: NodeId,
        msg: Message<T>,
    },
    /// The leader's own vote for `first..=last` in `ballot`.
    SelfAccepted {
        ballot: Ballot,
        first: Slot,
        last: Slot,
    },
    /// The candidate's own promise for `ballot`.
    SelfPromise {
        ballot: Ballot,
    },
}

#[derive(Debug)]
enum SelfVote {
    No,
    Pending,
    Done,
}

#[derive(Debug)]
struct Candidate<T> {
    ballot: Ballot,
    from: Slot,
    granted: Vec<NodeId>,
    /// Highest-ballot entry per slot among the promises so far.
    merged: BTreeMap<Slot, Entry<T>>,
    self_vote: SelfVote,
    /// Nodes sent the prepare: the voters of the committed membership and
    /// of every membership change phase 1 found.
    asked: Vec<NodeId>,
}

#[derive(Debug)]
struct Peer {
    id: NodeId,
    /// Bit of this peer in the vote masks (its index in the universe).
    bit: u32,
    /// The peer's commit index as last reported.
    commit: Slot,
    /// When we last heard from it in this ballot.
    last_heard: MonoMs,
    /// Highest heartbeat round it acknowledged.
    acked_seq: u64,
    /// Catch-up sent up to this slot, at this time: one window at a time,
    /// so duplicated acknowledgements cannot multiply catch-up traffic.
    learn_sent_to: Slot,
    learn_sent_at: MonoMs,
    /// Snapshot transfer: the snapshot being sent (pinned, so that a newer
    /// compaction does not restart a transfer in progress), its index, and
    /// how far the peer has it.
    snap: Option<Snapshot>,
    snap_index: Slot,
    snap_offset: u64,
    /// Bytes sent so far (up to a window ahead of `snap_offset`).
    snap_sent: u64,
}

#[derive(Debug)]
struct Leader {
    ballot: Ballot,
    next_slot: Slot,
    /// The last slot of the first batch of this ballot (re-proposals or a
    /// no-op): once it commits, everything chosen before is committed here.
    ready_slot: Slot,
    /// Vote masks for slots `commit+1 .. next_slot`.
    acks: VecDeque<u64>,
    peers: Vec<Peer>,
    /// When the last heartbeat round went out.
    heartbeat_at: MonoMs,
    hb_seq: u64,
    /// `(seq, time sent)` of recent heartbeat rounds.
    hb_sent: VecDeque<(u64, MonoMs)>,
    /// Highest round acknowledged by a quorum.
    quorum_seq: u64,
    /// The leader may serve lease reads while `now < lease_until`.
    lease_until: MonoMs,
    /// Read-index reads: `(id, index, seq needed)`.
    reads: Vec<(u64, Slot, u64)>,
    commit_sent: Slot,
    /// Slot of the last membership change proposed (0: none). Nothing is
    /// proposed after it until it commits.
    pending_config: Slot,
}

impl Peer {
    fn new(id: NodeId, bit: u32, now: MonoMs) -> Self {
        Peer {
            id,
            bit,
            commit: 0,
            last_heard: now,
            acked_seq: 0,
            learn_sent_to: 0,
            learn_sent_at: 0,
            snap: None,
            snap_index: 0,
            snap_offset: 0,
            snap_sent: 0,
        }
    }
}

#[derive(Debug)]
enum State<T> {
    Follower,
    PreCandidate {
        ballot: Ballot,
        granted: Vec<NodeId>,
    },
    Candidate(Candidate<T>),
    Leader(Leader),
}

/// A Multi-Paxos replica. `T` is the application's value type; the replica
/// only clones and stores it.
#[derive(Debug)]
pub struct Replica<T> {
    cfg: Config,
    /// The committed membership: who votes, who follows.
    membership: Membership,
    /// Committed memberships by the slot of their entry (the initial one
    /// or a snapshot's at its index), oldest first, to know the membership
    /// at a compaction point.
    history: Vec<(Slot, Membership)>,
    /// Every node seen in a membership; a node's index is its bit in the
    /// vote masks. This replica is always bit 0.
    universe: Vec<NodeId>,
    voter_mask: u64,
    quorum: usize,
    rng: Rng,
    promised: Ballot,
    log: Log<T>,
    commit: Slot,
    state: State<T>,
    /// The latest time the shell gave us (it never goes back).
    now: MonoMs,
    /// A follower campaigns when `now` reaches it without a leader heard.
    election_deadline: MonoMs,
    /// When a leader (at a ballot we had not refused) was last heard from;
    /// `None` when no leader's lease can be running. Until `election_ms`
    /// after it, other proposers are not promised anything: this is the
    /// acceptor's side of the leader's lease, kept on this node's clock.
    leader_heard_at: Option<MonoMs>,
    leader_hint: Option<NodeId>,
    /// The highest commit index a leader has told this replica of (it may
    /// be ahead of `commit` while the values are still on their way), so
    /// that a follower can say how far behind it is without asking.
    leader_commit: Slot,
    max_round: u64,
    last_token: u64,
    durable_token: u64,
    pending: VecDeque<(u64, Deferred<T>)>,
    out: Vec<Command<T>>,
    /// The latest snapshot, kept to serve lagging peers.
    snapshot: Option<Snapshot>,
    /// A snapshot being received: index, total length, bytes so far.
    /// Also the node it comes from: two members' snapshots at one index
    /// hold the same state in different byte orders, so chunks of two
    /// sources must never be joined.
    snap_recv: Option<(Slot, u64, NodeId, Vec<u8>)>,
    /// When a chunk last moved the transfer in `snap_recv` on.
    snap_recv_progress: MonoMs,
    /// For a transfer served by a peer that is not the leader: the peer
    /// and when we last asked it (it keeps no state, so we retry).
    snap_src: Option<(NodeId, MonoMs)>,
    /// Elections this node started because its election timer ran out
    /// (no leader heard), and because a leader handed over to it.
    elections: Elections,
    /// The claim each peer last sent, and when: what the leader binds an
    /// unbound member to, and how it knows that a member came back wiped.
    claims: BTreeMap<NodeId, (Claim, MonoMs)>,
    /// Messages dropped because their sender's claim is not admitted.
    refused_claims: u64,
    /// Snapshots served chunk by chunk to peers that asked (`CatchUp`, then
    /// `SnapshotAck` under `Ballot::ZERO`), by peer, with when it last
    /// asked: pinned so that a newer compaction here does not strand a
    /// transfer in progress (it would restart from nothing, and with
    /// frequent compactions never end).
    served: BTreeMap<NodeId, (Snapshot, MonoMs)>,
}

/// Elections a node started, by cause (for metrics: a hand-off that works
/// starts no election on a timeout).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Elections {
    pub on_timeout: u64,
    pub on_transfer: u64,
}

impl<T: Clone> Replica<T> {
    /// A fresh replica with an empty log, started at `now`.
    pub fn new(cfg: Config, now: MonoMs) -> Result<Self, PaxosError> {
        let mut r = Self::restore(cfg, Durable::default(), now)?;
        // A fresh cluster has no leader whose lease could be live.
        r.leader_heard_at = None;
        Ok(r)
    }

    /// A replica rebuilt at `now` from what its disk holds after a crash.
    /// It presumes that a leader's lease may still be running (it cannot
    /// know whom it acknowledged before the crash), so it ignores other
    /// proposers' prepares for one election timeout. Its commit index is
    /// the snapshot's, or [`Durable::commit`] where the entries after the
    /// snapshot reach that far: the shell has applied those itself, and
    /// `Apply` follows from there.
    pub fn restore(cfg: Config, durable: Durable<T>, now: MonoMs) -> Result<Self, PaxosError> {
        if cfg.id == 0 {
            return Err(PaxosError::InvalidConfig("node id 0 is reserved"));
        }
        if cfg.heartbeat_ms == 0 || cfg.election_ms <= cfg.heartbeat_ms {
            return Err(PaxosError::InvalidConfig(
                "heartbeat_ms must be positive and below election_ms",
            ));
        }
        if let ReadMode::Lease { drift_ms } = cfg.read_mode
            && drift_ms >= cfg.election_ms
        {
            return Err(PaxosError::InvalidConfig(
                "the lease drift bound must be below election_ms",
            ));
        }
        if cfg.max_batch == 0 {
            return Err(PaxosError::InvalidConfig("max_batch must be positive"));
        }
        let initial = Membership::new(cfg.voters.clone(), cfg.observers.clone());
        initial.validate()?;
        if initial.voters.len() + initial.observers.len() > 64 {
            return Err(PaxosError::InvalidConfig("at most 64 members"));
        }
        let mut log = Log::new();
        let mut commit = 0;
        let mut membership = (0, initial);
        if let Some(snap) = &durable.snapshot {
            log.compact(snap.index);
            commit = snap.index;
            membership = (snap.index, snap.membership.clone());
        }
        for (slot, entry) in durable.entries {
            log.set(slot, entry, 0);
        }
        // The entries held up to the durable commit index are committed:
        // knowing so now tells the replica the membership in force after a
        // restart, before it hears from anyone (a wiped member is refused
        // by the binding it committed, not the bootstrap's).
        let restored_from = commit;
        while commit < durable.commit && log.get(commit + 1).is_some() {
            commit += 1;
        }
        let mut rng = Rng::new(cfg.seed);
        let election_deadline = now + draw_timeout(&mut rng, cfg.election_ms);
        let mut r = Replica {
            membership: Membership::default(),
            history: Vec::new(),
            universe: vec![cfg.id],
            voter_mask: 0,
            quorum: 1,
            rng,
            promised: durable.promised,
            max_round: durable.promised.round,
            log,
            commit,
            state: State::Follower,
            now,
            election_deadline,
            leader_heard_at: Some(now),
            leader_hint: None,
            leader_commit: 0,
            last_token: 0,
            durable_token: 0,
            pending: VecDeque::new(),
            out: Vec::new(),
            snapshot: durable.snapshot,
            snap_recv: None,
            snap_recv_progress: now,
            snap_src: None,
            elections: Elections::default(),
            claims: BTreeMap::new(),
            refused_claims: 0,
            served: BTreeMap::new(),
            cfg,
        };
        r.install_membership(membership.0, membership.1);
        r.committed(restored_from, commit);
        r.leader_commit = commit;
        Ok(r)
    }

    pub fn id(&self) -> NodeId {
        self.cfg.id
    }

    pub fn role(&self) -> Role {
        match self.state {
            State::Follower => Role::Follower,
            State::PreCandidate { .. } => Role::PreCandidate,
            State::Candidate(_) => Role::Candidate,
            State::Leader(_) => Role::Leader,
        }
    }

    /// The leader this replica follows (itself when leading), if known.
    pub fn leader(&self) -> Option<NodeId> {
        match self.state {
            State::Leader(_) => Some(self.cfg.id),
            _ => self.leader_hint,
        }
    }

    pub fn commit_index(&self) -> Slot {
        self.commit
    }

    pub fn promised(&self) -> Ballot {
        self.promised
    }

    /// The leader's ballot, when leading.
    pub fn ballot(&self) -> Option<Ballot> {
        match &self.state {
            State::Leader(l) => Some(l.ballot),
            _ => None,
        }
    }

    /// The commands produced since the last call, in the order they must
    /// be executed.
    pub fn take_commands(&mut self) -> Vec<Command<T>> {
        std::mem::take(&mut self.out)
    }

    /// The shell has made a snapshot of the state machine at `upto`
    /// durable: drop the log up to there. The replica keeps `data` to send
    /// to peers that lag behind the log's new start; a shell with a disk
    /// passes a source it reads on demand, so that the bytes are not held
    /// in memory.
    ///
    /// At the index of the snapshot the replica holds in memory (one it
    /// installed from a peer), `data` is the shell's durable copy of the
    /// same bytes: the replica serves them from there and lets the bytes
    /// it received go. A snapshot it already serves from a source is never
    /// swapped: another encoding of the same state may order its bytes
    /// differently, and a peer's transfer must not join two of them.
    pub fn compact(&mut self, upto: Slot, data: SnapshotBytes) -> Result<(), PaxosError> {
        if upto > self.commit {
            return Err(PaxosError::NotCommitted {
                slot: upto,
                commit: self.commit,
            });
        }
        if let Some(held) = &mut self.snapshot
            && held.index >= upto
        {
            if held.index == upto && held.data.in_memory() && !data.in_memory() {
                held.data = data;
            }
            return Ok(());
        }
        let membership = self.membership_at(upto);
        self.log.compact(upto);
        self.snapshot = Some(Snapshot {
            index: upto,
            membership,
            data,
        });
        self.prune_history();
        Ok(())
    }

    /// The committed membership.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// A leader takes no catch-up from peers: phase 1 told it every value
    /// that can have been chosen, and it commits them through its own
    /// ballot. Its vote counts are kept relative to its commit index, so a
    /// commit index moved from outside would misalign them (the simulator
    /// found a paused leader that installed a peer's snapshot and then
    /// committed slots it did not hold).
    fn is_leader(&self) -> bool {
        matches!(self.state, State::Leader(_))
    }

    /// Whether this replica votes: a voter of the committed membership
    /// that does not abstain.
    fn is_voter(&self) -> bool {
        self.membership.is_voter(self.cfg.id) && !self.abstains()
    }

    /// A one-line description of the replica's state, for logs and tests.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "id={} role={:?} promised=({},{}) commit={} log={}..={} leader={:?} heard={:?}",
            self.cfg.id,
            self.role(),
            self.promised.round,
            self.promised.node,
            self.commit,
            self.log.base,
            self.log.last(),
            self.leader_hint,
            self.leader_heard_at.map(|at| self.now - at),
        );
        s.push_str(&format!(
            " voters={:?} observers={:?} incarnations={:?}",
            self.membership.voters, self.membership.observers, self.membership.incarnations
        ));
        if let State::Candidate(c) = &self.state {
            s.push_str(&format!(
                " cand=({},{}) granted={:?} asked={:?} self_vote={:?}",
                c.ballot.round, c.ballot.node, c.granted, c.asked, c.self_vote
            ));
        }
        if let State::Leader(l) = &self.state {
            s.push_str(&format!(" next={} acks={}", l.next_slot, l.acks.len()));
            for p in &l.peers {
                s.push_str(&format!(
                    " [peer {} commit={} heard={} learn_to={} snap={}@{}/{}]",
                    p.id,
                    p.commit,
                    self.now.saturating_sub(p.last_heard),
                    p.learn_sent_to,
                    p.snap_index,
                    p.snap_offset,
                    p.snap_sent
                ));
            }
        }
        if let Some((i, t, _, b)) = &self.snap_recv {
            s.push_str(&format!(" recv={i}:{}/{t}", b.len()));
        }
        s
    }

    /// The latest snapshot (taken here or installed from the leader).
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }

    /// First slot still in the log (everything before is in the snapshot).
    pub fn log_start(&self) -> Slot {
        self.log.base
    }

    /// First slot whose value is in memory: from [`Replica::log_start`] up
    /// to here the values are only in the shell's durable log.
    pub fn log_held_from(&self) -> Slot {
        self.log.held_from()
    }

    /// The shell lets the replica drop the values at slots up to `upto`
    /// from memory, keeping them only in its durable log: those committed
    /// here whose writes are durable (the rest stay until a later call).
    /// A peer that needs them is served through [`Command::SendLogged`].
    /// The shell must still be able to read them: it may not pass a slot
    /// above a snapshot it has begun but not yet followed with the
    /// checkpoint of [`Replica::accepted_after`], which lists only values
    /// held in memory.
    pub fn release_log(&mut self, upto: Slot) {
        self.log.release(upto.min(self.commit), self.durable_token);
    }

    /// Highest slot holding an accepted value (or the log start - 1).
    pub fn log_last(&self) -> Slot {
        self.log.last()
    }

    /// Every accepted entry above `slot`, as written so far (durable or
    /// not). A shell that starts its write-ahead log afresh after a
    /// snapshot at `slot` writes these first, so the new log holds all
    /// that the old one held above the snapshot. Only values held in
    /// memory are listed: see [`Replica::release_log`].
    pub fn accepted_after(&self, slot: Slot) -> Vec<(Slot, Entry<T>)> {
        let first = (slot + 1).max(self.log.base);
        (first..=self.log.last())
            .filter_map(|s| self.log.get(s).map(|e| (s, e.clone())))
            .collect()
    }

    /// At the leader: each peer's last reported commit index and the
    /// milliseconds since it was last heard from. Empty elsewhere.
    /// Elections this node started, by cause.
    pub fn elections(&self) -> Elections {
        self.elections
    }

    pub fn peer_progress(&self) -> Vec<(NodeId, Slot, u64)> {
        match &self.state {
            State::Leader(l) => l
                .peers
                .iter()
                .map(|p| (p.id, p.commit, self.now.saturating_sub(p.last_heard)))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The leader's commit index as last heard: at the leader its own, at
    /// a follower the highest a leader announced (never below its own).
    pub fn leader_commit(&self) -> Slot {
        self.leader_commit.max(self.commit)
    }

    /// A membership change accepted but not yet committed: the slot and
    /// membership of the last one in the log above the commit index. At the
    /// leader this is the change it proposed; at a follower one it accepted.
    pub fn pending_membership(&self) -> Option<(Slot, Membership)> {
        self.log
            .configs_after(self.commit)
            .last()
            .map(|(s, m)| (s, m.clone()))
    }

    /// At a follower: when it last heard from the leader it follows
    /// (`None` when it follows none, or leads).
    pub fn leader_heard_at(&self) -> Option<MonoMs> {
        match self.state {
            State::Leader(_) => None,
            _ => self.leader_hint.and(self.leader_heard_at),
        }
    }

    /// At the leader: whether the first batch of its ballot (the values
    /// phase 1 found, or a no-op) has committed, which commits everything
    /// chosen before it. Until then the leader's commit index may be
    /// behind what is chosen, and its state may lack acknowledged writes.
    pub fn leader_caught_up(&self) -> bool {
        matches!(&self.state, State::Leader(l) if self.commit >= l.ready_slot)
    }

    /// The time of the latest input (milliseconds on the shell's monotonic
    /// clock).
    pub fn now(&self) -> MonoMs {
        self.now
    }

    /// Moves the replica's clock to `now`. Time never goes back: an older
    /// `now` (two inputs read the clock in the other order) is ignored.
    fn advance(&mut self, now: MonoMs) {
        self.now = self.now.max(now);
    }

    /// Runs the timers at `now`: heartbeats and check-quorum at a leader,
    /// the election timeout and snapshot retries elsewhere. The shell calls
    /// it often (a few times per heartbeat interval); how often does not
    /// matter for safety, since every decision compares real times, and a
    /// process that was paused sees the whole pause at its next input.
    pub fn tick(&mut self, now: MonoMs) {
        self.advance(now);
        if let State::Leader(l) = &mut self.state {
            // Check quorum: a leader that has not heard from a majority for
            // an election timeout steps down, so that a node that can reach
            // a majority gets elected (the OmniPaxos quorum-loss scenario)
            // instead of everyone deferring to a leader that cannot commit.
            let window = self.cfg.election_ms;
            let now = self.now;
            let mask = self.voter_mask;
            let heard = 1 + l
                .peers
                .iter()
                .filter(|p| mask & (1 << p.bit) != 0 && now.saturating_sub(p.last_heard) < window)
                .count();
            if heard < self.quorum {
                let ballot = l.ballot;
                self.resign(ballot, None);
                return;
            }
            let commit_moved = self.commit > l.commit_sent;
            if now >= l.heartbeat_at + self.cfg.heartbeat_ms || commit_moved {
                self.broadcast_heartbeat();
            }
            self.bind_incarnations();
            return;
        }
        if let (Some((src, at)), Some((index, _, _, buf))) = (self.snap_src, &self.snap_recv)
            && self.now >= at + 2 * self.cfg.heartbeat_ms
        {
            let msg = Message::SnapshotAck {
                ballot: Ballot::ZERO,
                index: *index,
                offset: buf.len() as u64,
            };
            self.snap_src = Some((src, self.now));
            self.send(src, msg);
        }
        if self.now >= self.election_deadline {
            if self.is_voter() {
                self.elections.on_timeout += 1;
                self.pre_campaign();
            } else if !self.receiving_snapshot() {
                // A non-voter that hears no leader may be the one that has
                // not learned it became a voter: ask around (not while a
                // snapshot comes in: every answer would offer another).
                self.reset_election_timer();
                let commit = self.commit;
                let members: Vec<NodeId> = self
                    .membership
                    .voters
                    .iter()
                    .chain(&self.membership.observers)
                    .copied()
                    .filter(|&m| m != self.cfg.id)
                    .collect();
                for to in members {
                    self.send(to, Message::CatchUp { commit });
                }
            }
        }
    }

    /// The shell reports that every write up to `token` is durable.
    pub fn persisted(&mut self, token: u64) {
        let token = token.min(self.last_token);
        if token <= self.durable_token {
            return;
        }
        self.durable_token = token;
        while self.pending.front().is_some_and(|(t, _)| *t <= token) {
            if let Some((_, d)) = self.pending.pop_front() {
                self.run_deferred(d);
            }
        }
    }

    fn run_deferred(&mut self, d: Deferred<T>) {
        match d {
            Deferred::Send { to, msg } => self.send(to, msg),
            Deferred::SelfAccepted {
                ballot,
                first,
                last,
            } => self.record_votes(ballot, 0, first, last),
            Deferred::SelfPromise { ballot } => {
                if let State::Candidate(c) = &mut self.state
                    && c.ballot == ballot
                {
                    c.self_vote = SelfVote::Done;
                    self.maybe_become_leader();
                }
            }
        }
    }

    /// Handles a message from `from` that reports no claim
    /// ([`Claim::NONE`]); see [`Replica::step_claimed`].
    pub fn step(&mut self, from: NodeId, msg: Message<T>, now: MonoMs) {
        self.step_claimed(from, Claim::NONE, msg, now);
    }

    /// Handles a message from `from`, sent with `claim`, that arrived
    /// before `now` (the shell reads its clock after taking the message
    /// in, never before). A message whose claim is not admitted (a wiped
    /// member's, an abstaining voter's) counts for nothing: see
    /// `incarnations.rs`.
    pub fn step_claimed(&mut self, from: NodeId, claim: Claim, msg: Message<T>, now: MonoMs) {
        self.advance(now);
        let Some(msg) = self.admit(from, claim, msg) else {
            return;
        };
        let mut round = msg.ballot().round;
        if msg.ballot() == Ballot::CHOSEN {
            round = 0;
        }
        if let Message::Nack { promised, .. } = &msg {
            round = round.max(promised.round);
        }
        self.max_round = self.max_round.max(round);
        match msg {
            Message::PreVote { ballot } => self.on_pre_vote(from, ballot),
            Message::PreVoteGranted { ballot } => self.on_pre_vote_granted(from, ballot),
            Message::Prepare { ballot, from: slot } => self.on_prepare(from, ballot, slot),
            Message::Promise {
                ballot, accepted, ..
            } => self.on_promise(from, ballot, accepted),
            Message::Accept {
                ballot,
                first,
                values,
                commit,
            } => self.on_accept(from, ballot, first, values, commit),
            Message::Accepted {
                ballot,
                first,
                last,
                commit,
            } => self.on_accepted(from, ballot, first, last, commit),
            Message::Heartbeat {
                ballot,
                commit,
                seq,
            } => self.on_heartbeat(from, ballot, commit, seq),
            Message::HeartbeatAck {
                ballot,
                seq,
                commit,
            } => self.on_heartbeat_ack(from, ballot, seq, commit),
            Message::Learn {
                ballot,
                first,
                values,
                commit,
            } => self.on_learn(from, ballot, first, values, commit),
            Message::Snapshot {
                ballot,
                index,
                membership,
                total,
                offset,
                data,
            } => self.on_snapshot(from, ballot, (index, membership), total, offset, data),
            Message::TimeoutNow { ballot } => self.on_timeout_now(from, ballot),
            Message::CatchUp { commit } => self.on_catch_up(from, commit),
            Message::SnapshotAck {
                ballot,
                index,
                offset,
            } => self.on_snapshot_ack(from, ballot, index, offset),
            Message::Resign { ballot } => self.on_resign(from, ballot),
            Message::Nack { ballot, promised } => self.on_nack(ballot, promised),
        }
    }

    /// The other voters of the committed membership.
    fn others(&self) -> Vec<NodeId> {
        self.membership
            .voters
            .iter()
            .copied()
            .filter(|v| *v != self.cfg.id)
            .collect()
    }

    fn reset_election_timer(&mut self) {
        self.election_deadline = self.now + draw_timeout(&mut self.rng, self.cfg.election_ms);
    }

    /// The token the next [`Replica::persist`] will carry: what an entry
    /// stored in the log now, and written by that persist, is durable at.
    fn next_token(&self) -> u64 {
        self.last_token + 1
    }

    fn persist(&mut self, promised: Option<Ballot>, entries: Vec<(Slot, Entry<T>)>) {
        self.last_token += 1;
        self.out.push(Command::Persist(Write {
            token: self.last_token,
            promised,
            entries,
        }));
    }

    /// Runs `d` once everything written so far is durable.
    fn defer(&mut self, d: Deferred<T>) {
        if self.last_token <= self.durable_token {
            self.run_deferred(d);
        } else {
            self.pending.push_back((self.last_token, d));
        }
    }

    fn send(&mut self, to: NodeId, msg: Message<T>) {
        self.out.push(Command::Send { to, msg });
    }

    /// Sends `msg` once everything written so far is durable.
    fn send_durable(&mut self, to: NodeId, msg: Message<T>) {
        self.defer(Deferred::Send { to, msg });
    }
}

fn merge<T>(merged: &mut BTreeMap<Slot, Entry<T>>, accepted: Vec<(Slot, Entry<T>)>) {
    for (slot, entry) in accepted {
        match merged.get(&slot) {
            Some(e) if e.ballot >= entry.ballot => {}
            _ => {
                merged.insert(slot, entry);
            }
        }
    }
}

/// The vote mask of `ids`, by their index in `universe`.
fn mask_of(universe: &[NodeId], ids: &[NodeId]) -> u64 {
    ids.iter()
        .filter_map(|id| universe.iter().position(|u| u == id))
        .fold(0, |m, i| m | (1 << i))
}

/// An election timeout in `[election_ms, 2 * election_ms)`.
fn draw_timeout(rng: &mut Rng, election_ms: u64) -> MonoMs {
    rng.range(election_ms, 2 * election_ms)
}
