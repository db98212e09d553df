//! The replica: acceptor, proposer and learner in one state machine.
//!
//! Roles: a *follower* accepts what the leader sends and times out when the
//! leader goes quiet; a *candidate* runs phase 1 for every slot above its
//! commit index; a *leader* re-proposes what phase 1 found, fills gaps with
//! no-ops and then runs phase 2 for new batches, pipelined. See the module
//! docs of [`crate::paxos`] for the IO contract.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use super::rng::Rng;
use super::{
    Ballot, Command, Config, Durable, Entry, Membership, Message, MonoMs, NodeId, PaxosError,
    ReadMode, Slot, Snapshot, Value, Write,
};

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

/// The accepted values, indexed by slot from `base`. Slots above the commit
/// index may have holes (accepts can arrive out of order).
#[derive(Debug)]
struct Log<T> {
    base: Slot,
    slots: VecDeque<Option<Entry<T>>>,
}

impl<T> Log<T> {
    fn new() -> Self {
        Log {
            base: 1,
            slots: VecDeque::new(),
        }
    }

    fn get(&self, slot: Slot) -> Option<&Entry<T>> {
        if slot < self.base {
            return None;
        }
        self.slots
            .get((slot - self.base) as usize)
            .and_then(Option::as_ref)
    }

    fn set(&mut self, slot: Slot, entry: Entry<T>) {
        if slot < self.base {
            return;
        }
        let i = (slot - self.base) as usize;
        while self.slots.len() <= i {
            self.slots.push_back(None);
        }
        self.slots[i] = Some(entry);
    }

    /// Drops every slot up to `upto`.
    fn compact(&mut self, upto: Slot) {
        while self.base <= upto {
            if self.slots.pop_front().is_none() {
                self.base = upto + 1;
                break;
            }
            self.base += 1;
        }
    }

    /// Highest slot that holds anything (or `base - 1`).
    fn last(&self) -> Slot {
        self.base + self.slots.len() as Slot - 1
    }
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
    max_round: u64,
    last_token: u64,
    durable_token: u64,
    pending: VecDeque<(u64, Deferred<T>)>,
    out: Vec<Command<T>>,
    /// The latest snapshot, kept to serve lagging peers.
    snapshot: Option<Snapshot>,
    /// A snapshot being received: index, total length, bytes so far.
    snap_recv: Option<(Slot, u64, Vec<u8>)>,
    /// For a transfer served by a peer that is not the leader: the peer
    /// and when we last asked it (it keeps no state, so we retry).
    snap_src: Option<(NodeId, MonoMs)>,
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
    /// proposers' prepares for one election timeout.
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
            log.set(slot, entry);
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
            last_token: 0,
            durable_token: 0,
            pending: VecDeque::new(),
            out: Vec::new(),
            snapshot: durable.snapshot,
            snap_recv: None,
            snap_src: None,
            cfg,
        };
        r.install_membership(membership.0, membership.1);
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
    /// to peers that lag behind the log's new start.
    pub fn compact(&mut self, upto: Slot, data: Bytes) -> Result<(), PaxosError> {
        if upto > self.commit {
            return Err(PaxosError::NotCommitted {
                slot: upto,
                commit: self.commit,
            });
        }
        if self.snapshot.as_ref().is_some_and(|s| s.index >= upto) {
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

    /// Proposes a membership change (at the leader). One voter is added
    /// or removed at a time; an added voter must be an observer that has
    /// caught up. Nothing else is proposed until the change commits; it
    /// governs every slot after its own.
    pub fn propose_membership(&mut self, m: Membership) -> Result<Slot, PaxosError> {
        m.validate()?;
        let commit = self.commit;
        let max_batch = self.cfg.max_batch as Slot;
        let State::Leader(l) = &self.state else {
            return Err(PaxosError::NotLeader {
                leader: self.leader_hint,
            });
        };
        if l.pending_config > commit {
            return Err(PaxosError::ConfigChangePending);
        }
        let old = &self.membership;
        let added: Vec<NodeId> = m
            .voters
            .iter()
            .copied()
            .filter(|v| !old.voters.contains(v))
            .collect();
        let removed = old.voters.iter().filter(|v| !m.voters.contains(v)).count();
        if added.len() + removed > 1 {
            return Err(PaxosError::OneVoterAtATime);
        }
        for a in &added {
            let caught_up = l
                .peers
                .iter()
                .any(|p| p.id == *a && p.commit + max_batch >= commit);
            if !old.observers.contains(a) || !caught_up {
                return Err(PaxosError::NotCaughtUp(*a));
            }
        }
        let fresh = m
            .voters
            .iter()
            .chain(&m.observers)
            .filter(|id| !self.universe.contains(id))
            .count();
        if self.universe.len() + fresh > 64 {
            return Err(PaxosError::InvalidConfig("at most 64 members"));
        }
        let first = l.next_slot;
        self.start_phase2(first, vec![Value::Config(Box::new(m))]);
        if let State::Leader(l) = &mut self.state {
            l.pending_config = first;
        }
        self.sync_peers(&[]);
        Ok(first)
    }

    /// Serves a lagging peer without being its leader: chosen values from
    /// the log, or the snapshot when the log no longer has them.
    fn on_catch_up(&mut self, from: NodeId, commit: Slot) {
        if commit >= self.commit {
            return;
        }
        if commit + 1 >= self.log.base {
            let first = commit + 1;
            let last = self.commit.min(commit + self.cfg.max_batch as Slot);
            let values: Vec<Value<T>> = (first..=last)
                .map_while(|s| self.log.get(s).map(|e| e.value.clone()))
                .collect();
            if !values.is_empty() {
                let msg = Message::Learn {
                    ballot: Ballot::ZERO,
                    first,
                    values,
                    commit: self.commit,
                };
                self.send(from, msg);
            }
        } else if let Some(snap) = self.snapshot.clone() {
            self.serve_snapshot_chunk(from, &snap, 0);
        }
    }

    fn serve_snapshot_chunk(&mut self, to: NodeId, snap: &Snapshot, offset: u64) {
        let total = snap.data.len() as u64;
        if offset >= total && total > 0 {
            // The peer has it all: nothing to send.
            return;
        }
        let start = offset.min(total) as usize;
        let end = (start + self.cfg.snapshot_chunk.max(1)).min(snap.data.len());
        self.send(
            to,
            Message::Snapshot {
                ballot: Ballot::ZERO,
                index: snap.index,
                membership: snap.membership.clone(),
                total,
                offset: start as u64,
                data: snap.data[start..end].to_vec(),
            },
        );
    }

    /// A peer caught us up past `old`: a campaign started from the old
    /// commit index is stale, start again from the new one.
    fn caught_up_from_peer(&mut self, old: Slot) {
        if self.commit > old && matches!(self.state, State::Candidate(_)) {
            self.state = State::Follower;
            self.campaign();
        }
    }

    /// Hands leadership to voter `to`: resigns, and asks `to` to campaign
    /// at once. Followers drop the lease on the resignation, so they
    /// promise `to` without waiting for their election timeout.
    pub fn transfer_leadership(&mut self, to: NodeId) -> Result<(), PaxosError> {
        let State::Leader(l) = &self.state else {
            return Err(PaxosError::NotLeader {
                leader: self.leader_hint,
            });
        };
        if to == self.cfg.id {
            return Ok(());
        }
        if !self.membership.is_voter(to) {
            return Err(PaxosError::NotAVoter(to));
        }
        let ballot = l.ballot;
        self.resign(ballot, Some(to));
        Ok(())
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

    fn is_voter(&self) -> bool {
        self.membership.is_voter(self.cfg.id)
    }

    fn bit_for(&mut self, id: NodeId) -> u32 {
        if let Some(i) = self.universe.iter().position(|&u| u == id) {
            return i as u32;
        }
        if self.universe.len() >= 64 {
            // Validated on proposal; a membership from elsewhere that
            // overflows simply does not count the extra nodes.
            return 63;
        }
        self.universe.push(id);
        (self.universe.len() - 1) as u32
    }

    /// Makes `m`, committed at `slot`, the membership in force.
    fn install_membership(&mut self, slot: Slot, m: Membership) {
        for id in m.voters.iter().chain(&m.observers) {
            self.bit_for(*id);
        }
        self.voter_mask = mask_of(&self.universe, &m.voters);
        self.quorum = m.quorum();
        self.history.push((slot, m.clone()));
        self.membership = m;
        self.prune_history();
        if let State::Leader(l) = &self.state {
            let ballot = l.ballot;
            self.sync_peers(&[]);
            if !self.is_voter() {
                // Removed: hand over to the most caught-up voter.
                let target = match &self.state {
                    State::Leader(l) => l
                        .peers
                        .iter()
                        .filter(|p| self.membership.is_voter(p.id))
                        .max_by_key(|p| (p.commit, std::cmp::Reverse(p.id)))
                        .map(|p| p.id),
                    _ => None,
                };
                self.resign(ballot, target);
            }
        }
    }

    /// The committed membership in force at `slot` (at or after the last
    /// compaction).
    pub fn membership_at(&self, slot: Slot) -> Membership {
        self.history
            .iter()
            .rev()
            .find(|(s, _)| *s <= slot)
            .map(|(_, m)| m.clone())
            .unwrap_or_else(|| self.membership.clone())
    }

    /// Keeps the memberships still needed: the one in force at the
    /// snapshot index and every later one.
    fn prune_history(&mut self) {
        let base = self.snapshot.as_ref().map_or(0, |s| s.index);
        let keep_from = self
            .history
            .iter()
            .rposition(|(s, _)| *s <= base)
            .unwrap_or(0);
        self.history.drain(..keep_from);
    }

    /// Installs the last membership change among the newly committed slots.
    fn committed(&mut self, old: Slot, new: Slot) {
        let mut found = None;
        for s in old + 1..=new {
            if let Some(Entry {
                value: Value::Config(m),
                ..
            }) = self.log.get(s)
            {
                found = Some((s, m.as_ref().clone()));
            }
        }
        if let Some((s, m)) = found {
            self.install_membership(s, m);
        }
    }

    /// The leader sends to every member of the committed membership and of
    /// any membership change in flight, plus `extra`.
    fn sync_peers(&mut self, extra: &[NodeId]) {
        let mut ids: Vec<NodeId> = self
            .membership
            .voters
            .iter()
            .chain(&self.membership.observers)
            .chain(extra)
            .copied()
            .collect();
        for s in self.commit + 1..=self.log.last() {
            if let Some(Entry {
                value: Value::Config(m),
                ..
            }) = self.log.get(s)
            {
                ids.extend(m.voters.iter().chain(&m.observers));
            }
        }
        ids.sort_unstable();
        ids.dedup();
        ids.retain(|&id| id != self.cfg.id);
        let bits: Vec<u32> = ids.iter().map(|&id| self.bit_for(id)).collect();
        let now = self.now;
        if let State::Leader(l) = &mut self.state {
            l.peers.retain(|p| ids.contains(&p.id));
            for (id, bit) in ids.into_iter().zip(bits) {
                if !l.peers.iter().any(|p| p.id == id) {
                    l.peers.push(Peer::new(id, bit, now));
                }
            }
        }
    }

    /// Steps down and tells everyone; `successor` is asked to campaign.
    fn resign(&mut self, ballot: Ballot, successor: Option<NodeId>) {
        let members: Vec<NodeId> = match &self.state {
            State::Leader(l) => l.peers.iter().map(|p| p.id).collect(),
            _ => self.others(),
        };
        self.step_down();
        for to in members {
            if Some(to) == successor {
                self.send(to, Message::TimeoutNow { ballot });
            } else {
                self.send(to, Message::Resign { ballot });
            }
        }
    }

    fn on_timeout_now(&mut self, from: NodeId, ballot: Ballot) {
        if ballot < self.promised || !self.is_voter() || self.leader_hint != Some(from) {
            return;
        }
        self.leader_hint = None;
        self.leader_heard_at = None;
        self.campaign();
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
            " voters={:?} observers={:?}",
            self.membership.voters, self.membership.observers
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
        if let Some((i, t, b)) = &self.snap_recv {
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

    /// Highest slot holding an accepted value (or the log start - 1).
    pub fn log_last(&self) -> Slot {
        self.log.last()
    }

    /// Every accepted entry above `slot`, as written so far (durable or
    /// not). A shell that starts its write-ahead log afresh after a
    /// snapshot at `slot` writes these first, so the new log holds all
    /// that the old one held above the snapshot.
    pub fn accepted_after(&self, slot: Slot) -> Vec<(Slot, Entry<T>)> {
        let first = (slot + 1).max(self.log.base);
        (first..=self.log.last())
            .filter_map(|s| self.log.get(s).map(|e| (s, e.clone())))
            .collect()
    }

    /// At the leader: each peer's last reported commit index and the
    /// milliseconds since it was last heard from. Empty elsewhere.
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

    /// At the leader: tells the followers a commit index that moved since
    /// it was last sent, now rather than at the next tick. A shell calls it
    /// once per batch of inputs, so a follower answers its clients one
    /// round trip after the commit instead of up to a tick later; under
    /// load the accepts carry the commit index and this sends nothing.
    pub fn flush_commit(&mut self) {
        if let State::Leader(l) = &self.state
            && self.commit > l.commit_sent
        {
            self.broadcast_heartbeat();
        }
    }

    /// Starts an election now instead of waiting for the timeout.
    pub fn campaign(&mut self) {
        if !self.is_voter() {
            return;
        }
        let round = self.max_round.max(self.promised.round) + 1;
        self.campaign_at(Ballot::new(round, self.cfg.id));
    }

    /// Runs phase 1 for `ballot`, which must be above every round seen.
    fn campaign_at(&mut self, ballot: Ballot) {
        self.max_round = self.max_round.max(ballot.round);
        let from = self.commit + 1;
        self.fail_reads();
        self.state = State::Candidate(Candidate {
            ballot,
            from,
            granted: Vec::new(),
            merged: BTreeMap::new(),
            self_vote: SelfVote::No,
            asked: self.others(),
        });
        self.reset_election_timer();
        for to in self.others() {
            self.send(to, Message::Prepare { ballot, from });
        }
        self.maybe_self_promise();
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
            return;
        }
        if let (Some((src, at)), Some((index, _, buf))) = (self.snap_src, &self.snap_recv)
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
                self.pre_campaign();
            } else {
                // A non-voter that hears no leader may be the one that has
                // not learned it became a voter: ask around.
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

    /// Election timeout: ask the voters whether they would promise a new
    /// ballot before raising anyone's promise.
    fn pre_campaign(&mut self) {
        let round = self.max_round.max(self.promised.round) + 1;
        let ballot = Ballot::new(round, self.cfg.id);
        self.state = State::PreCandidate {
            ballot,
            granted: Vec::new(),
        };
        self.reset_election_timer();
        if self.quorum <= 1 {
            self.campaign();
            return;
        }
        for to in self.others() {
            self.send(to, Message::PreVote { ballot });
        }
    }

    fn on_pre_vote(&mut self, from: NodeId, ballot: Ballot) {
        // At or below our promise: say so, so that the asker picks a higher
        // round. (Equal happens when it crashed mid-campaign and restarted
        // with an older promise: it would otherwise retry the same ballot
        // forever.)
        if ballot <= self.promised {
            self.send(
                from,
                Message::Nack {
                    ballot,
                    promised: self.promised,
                },
            );
            return;
        }
        if !self.would_promise(from) {
            return;
        }
        self.send(from, Message::PreVoteGranted { ballot });
    }

    fn on_pre_vote_granted(&mut self, from: NodeId, ballot: Ballot) {
        let quorum = self.quorum;
        let State::PreCandidate { ballot: b, granted } = &mut self.state else {
            return;
        };
        if *b != ballot || granted.contains(&from) || !self.membership.is_voter(from) {
            return;
        }
        granted.push(from);
        if granted.len() + 1 >= quorum {
            // Keep the pre-voted ballot unless a higher round showed up since.
            if ballot.round >= self.max_round && ballot > self.promised {
                self.campaign_at(ballot);
            } else {
                self.campaign();
            }
        }
    }

    /// Lease stickiness: while a live leader is in charge, other proposers
    /// are not heard, so a node rejoining after a partition cannot depose
    /// it. The leader itself may always raise its ballot.
    fn would_promise(&self, from: NodeId) -> bool {
        if matches!(self.state, State::Leader(_)) {
            return false;
        }
        let lease_over = self
            .leader_heard_at
            .is_none_or(|at| self.now >= at + self.cfg.election_ms);
        lease_over || self.leader_hint == Some(from)
    }

    /// Proposes `values` for the next slots. Returns the first slot used.
    pub fn propose(&mut self, values: Vec<T>) -> Result<Slot, PaxosError> {
        let limit = self.cfg.max_inflight;
        let commit = self.commit;
        let State::Leader(l) = &mut self.state else {
            return Err(PaxosError::NotLeader {
                leader: self.leader_hint,
            });
        };
        let first = l.next_slot;
        if values.is_empty() {
            return Ok(first);
        }
        if l.pending_config > commit {
            return Err(PaxosError::ConfigChangePending);
        }
        if (first - commit - 1) as usize + values.len() > limit {
            return Err(PaxosError::Backpressure { limit });
        }
        let values: Vec<Value<T>> = values.into_iter().map(Value::Data).collect();
        self.start_phase2(first, values);
        Ok(first)
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

    /// Asks at `now` for a linearizable read. Answered by
    /// [`Command::ReadReady`] (or [`Command::ReadFailed`]) now or later.
    /// `now` must be read after the request arrived: a lease is checked
    /// against it, so a read that waited in a paused process is checked
    /// after the pause.
    pub fn read(&mut self, id: u64, now: MonoMs) -> Result<(), PaxosError> {
        self.advance(now);
        let commit = self.commit;
        let now = self.now;
        let lease_mode = matches!(self.cfg.read_mode, ReadMode::Lease { .. });
        let State::Leader(l) = &mut self.state else {
            return Err(PaxosError::NotLeader {
                leader: self.leader_hint,
            });
        };
        let index = commit.max(l.ready_slot);
        if lease_mode && commit >= l.ready_slot && now < l.lease_until {
            let lease_until = Some(l.lease_until);
            self.out.push(Command::ReadReady {
                id,
                index,
                lease_until,
            });
            return Ok(());
        }
        // Read index: confirm with a fresh heartbeat round that no other
        // leader has been elected, then serve at the commit index as of now.
        l.reads.push((id, index, l.hb_seq + 1));
        self.broadcast_heartbeat();
        self.serve_reads();
        Ok(())
    }

    /// Whether a lease read may be answered at `now`: this replica leads
    /// and its lease runs past `now`. A shell that waited (to apply up to
    /// the read's index, say) checks again with the time it answers at.
    pub fn lease_holds(&self, now: MonoMs) -> bool {
        matches!(&self.state, State::Leader(l) if now.max(self.now) < l.lease_until)
    }

    /// Handles a message from `from` that arrived before `now` (the shell
    /// reads its clock after taking the message in, never before).
    pub fn step(&mut self, from: NodeId, msg: Message<T>, now: MonoMs) {
        self.advance(now);
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

    // ----- acceptor -----

    fn on_prepare(&mut self, from: NodeId, ballot: Ballot, slot: Slot) {
        if ballot < self.promised {
            self.send(
                from,
                Message::Nack {
                    ballot,
                    promised: self.promised,
                },
            );
            return;
        }
        if ballot > self.promised {
            if !self.would_promise(from) {
                return;
            }
            // We compacted slots the candidate has not committed: we could
            // not report what we accepted there, so we must not promise. A
            // replica that is further along will be elected instead.
            if slot < self.log.base {
                self.on_catch_up(from, slot - 1);
                return;
            }
            match &self.state {
                State::Candidate(c) if c.ballot < ballot => self.state = State::Follower,
                State::PreCandidate { .. } => self.state = State::Follower,
                _ => {}
            }
            self.promised = ballot;
            // Granting a promise restarts the timer, so that we do not
            // compete with a candidate a majority is willing to elect.
            self.reset_election_timer();
            self.persist(Some(ballot), Vec::new());
        }
        // A duplicate prepare of the promised ballot gets the promise again.
        let accepted = self.accepted_from(slot);
        self.send_durable(
            from,
            Message::Promise {
                ballot,
                from: slot,
                accepted,
                commit: self.commit,
            },
        );
    }

    fn accepted_from(&self, from: Slot) -> Vec<(Slot, Entry<T>)> {
        (from.max(self.log.base)..=self.log.last())
            .filter_map(|s| self.log.get(s).map(|e| (s, e.clone())))
            .collect()
    }

    fn on_accept(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        first: Slot,
        values: Vec<Value<T>>,
        commit: Slot,
    ) {
        if ballot < self.promised {
            self.send(
                from,
                Message::Nack {
                    ballot,
                    promised: self.promised,
                },
            );
            return;
        }
        if first == 0 || values.is_empty() {
            return;
        }
        let raise = ballot > self.promised;
        if raise {
            self.promised = ballot;
        }
        self.follow(from, ballot);
        let last = first + values.len() as Slot - 1;
        let mut entries = Vec::with_capacity(values.len());
        for (i, value) in values.into_iter().enumerate() {
            let slot = first + i as Slot;
            // At or below the commit index the value is chosen and ours is
            // the same; nothing to write.
            if slot <= self.commit {
                continue;
            }
            let entry = Entry { ballot, value };
            entries.push((slot, entry.clone()));
            self.log.set(slot, entry);
        }
        if raise || !entries.is_empty() {
            self.persist(raise.then_some(ballot), entries);
        }
        self.learn_commit(ballot, commit);
        self.send_durable(
            from,
            Message::Accepted {
                ballot,
                first,
                last,
                commit: self.commit,
            },
        );
    }

    fn on_heartbeat(&mut self, from: NodeId, ballot: Ballot, commit: Slot, seq: u64) {
        if ballot < self.promised {
            self.send(
                from,
                Message::Nack {
                    ballot,
                    promised: self.promised,
                },
            );
            return;
        }
        self.follow(from, ballot);
        self.learn_commit(ballot, commit);
        self.send(
            from,
            Message::HeartbeatAck {
                ballot,
                seq,
                commit: self.commit,
            },
        );
    }

    fn on_learn(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        first: Slot,
        values: Vec<Value<T>>,
        commit: Slot,
    ) {
        let peer_served = ballot == Ballot::ZERO;
        if ballot < self.promised && !peer_served || peer_served && self.is_leader() {
            return;
        }
        if !peer_served {
            self.follow(from, ballot);
        }
        // Chosen values from a peer that is not the leader are marked
        // chosen rather than stored under some leader's ballot.
        let ballot = if peer_served { Ballot::CHOSEN } else { ballot };
        let old = self.commit;
        let mut entries = Vec::new();
        for (i, value) in values.into_iter().enumerate() {
            let slot = first + i as Slot;
            if slot <= self.commit {
                continue;
            }
            if slot != self.commit + 1 {
                break;
            }
            // The value is chosen, so storing it under the leader's ballot
            // is safe: any later phase 1 that sees it must propose it anyway.
            let entry = Entry { ballot, value };
            entries.push((slot, entry.clone()));
            self.log.set(slot, entry);
            self.commit = slot;
        }
        if !entries.is_empty() {
            self.persist(None, entries);
        }
        if self.commit > old {
            self.emit_apply(old + 1, self.commit);
            self.committed(old, self.commit);
        }
        if peer_served {
            if self.commit < commit && self.commit > old {
                self.send(
                    from,
                    Message::CatchUp {
                        commit: self.commit,
                    },
                );
            } else {
                self.caught_up_from_peer(old);
            }
            return;
        }
        self.learn_commit(ballot, commit);
        self.send(
            from,
            Message::HeartbeatAck {
                ballot,
                seq: 0,
                commit: self.commit,
            },
        );
    }

    fn on_snapshot(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        (index, membership): (Slot, Membership),
        total: u64,
        offset: u64,
        data: Vec<u8>,
    ) {
        let peer_served = ballot == Ballot::ZERO;
        if ballot < self.promised && !peer_served || peer_served && self.is_leader() {
            return;
        }
        if !peer_served {
            self.follow(from, ballot);
        }
        if index <= self.commit {
            // Already have it (or more): tell the leader we are done. A
            // peer serving without being the leader keeps no transfer
            // state and needs no word: answering it would ask for the
            // chunk after the end, which it would serve, empty, and so on
            // forever (a storm once the network duplicates messages).
            self.snap_recv = None;
            if peer_served {
                return;
            }
            self.send(
                from,
                Message::SnapshotAck {
                    ballot,
                    index,
                    offset: total,
                },
            );
            return;
        }
        match &self.snap_recv {
            Some((i, t, _)) if *i == index && *t == total => {}
            // The start of another transfer: switch to it (the one we were
            // assembling may have no sender any more).
            _ if offset == 0 => self.snap_recv = Some((index, total, Vec::new())),
            // The middle of another transfer: tell the sender we have none
            // of it, so that it starts over from the beginning.
            _ => {
                self.send(
                    from,
                    Message::SnapshotAck {
                        ballot,
                        index,
                        offset: 0,
                    },
                );
                return;
            }
        }
        let have = match &mut self.snap_recv {
            Some((_, _, buf)) => {
                if offset == buf.len() as u64 {
                    buf.extend_from_slice(&data);
                }
                buf.len() as u64
            }
            None => 0,
        };
        let old = self.commit;
        if have >= total
            && let Some((_, _, buf)) = self.snap_recv.take()
        {
            let data = Bytes::from(buf);
            self.log.compact(index);
            self.commit = index;
            let snap = Snapshot {
                index,
                membership: membership.clone(),
                data,
            };
            self.snapshot = Some(snap.clone());
            self.out.push(Command::InstallSnapshot(snap));
            self.install_membership(index, membership);
        }
        self.snap_src = (peer_served && self.snap_recv.is_some()).then_some((from, self.now));
        if peer_served {
            if self.commit == old {
                // Ask the peer for the next chunk (it keeps no state).
                self.send(
                    from,
                    Message::SnapshotAck {
                        ballot,
                        index,
                        offset: have,
                    },
                );
            } else {
                self.caught_up_from_peer(old);
            }
            return;
        }
        self.send(
            from,
            Message::SnapshotAck {
                ballot,
                index,
                offset: have,
            },
        );
    }

    /// Accepts `leader` at `ballot` as the live leader.
    fn follow(&mut self, leader: NodeId, ballot: Ballot) {
        match &self.state {
            State::Leader(l) if l.ballot < ballot => self.step_down(),
            State::Candidate(_) | State::PreCandidate { .. } => self.state = State::Follower,
            _ => {}
        }
        self.leader_hint = Some(leader);
        self.leader_heard_at = Some(self.now);
        self.reset_election_timer();
    }

    /// Advances the commit index to `commit` as far as this replica holds
    /// the leader's values: an entry accepted in the leader's own ballot is
    /// the value the leader got chosen; an older one may not be.
    fn learn_commit(&mut self, ballot: Ballot, commit: Slot) {
        let old = self.commit;
        while self.commit < commit {
            match self.log.get(self.commit + 1) {
                Some(e) if e.ballot == ballot => self.commit += 1,
                _ => break,
            }
        }
        if self.commit > old {
            self.emit_apply(old + 1, self.commit);
            self.committed(old, self.commit);
        }
    }

    fn emit_apply(&mut self, first: Slot, last: Slot) {
        let values = (first..=last)
            .map(|s| match self.log.get(s) {
                Some(e) => e.value.clone(),
                // Unreachable: the commit index only covers held slots.
                None => Value::Noop,
            })
            .collect();
        self.out.push(Command::Apply { first, values });
    }

    // ----- candidate -----

    fn on_promise(&mut self, from: NodeId, ballot: Ballot, accepted: Vec<(Slot, Entry<T>)>) {
        let State::Candidate(c) = &mut self.state else {
            return;
        };
        if c.ballot != ballot || c.granted.contains(&from) {
            return;
        }
        c.granted.push(from);
        merge(&mut c.merged, accepted);
        self.ask_discovered();
        self.maybe_self_promise();
        self.maybe_become_leader();
    }

    /// Phase 1 needs a majority of the committed membership and of every
    /// membership change found in the open range (it may have been chosen,
    /// and slots after it may have been chosen by its voters).
    fn phase1_quorums(&self, with_self: bool) -> bool {
        let State::Candidate(c) = &self.state else {
            return false;
        };
        let counts = |m: &Membership| {
            let n = m
                .voters
                .iter()
                .filter(|v| c.granted.contains(v) || (with_self && **v == self.cfg.id))
                .count();
            n >= m.quorum()
        };
        counts(&self.membership)
            && c.merged.values().all(|e| match &e.value {
                Value::Config(m) => counts(m),
                _ => true,
            })
    }

    /// Sends the prepare to voters of membership changes phase 1 found.
    fn ask_discovered(&mut self) {
        let id = self.cfg.id;
        let State::Candidate(c) = &mut self.state else {
            return;
        };
        let mut new = Vec::new();
        for e in c.merged.values() {
            if let Value::Config(m) = &e.value {
                for v in &m.voters {
                    if *v != id && !c.asked.contains(v) && !new.contains(v) {
                        new.push(*v);
                    }
                }
            }
        }
        c.asked.extend(&new);
        let (ballot, from) = (c.ballot, c.from);
        for to in new {
            self.send(to, Message::Prepare { ballot, from });
        }
    }

    /// The candidate promises its own ballot only once the others' promises
    /// make a majority with it. Until then it keeps accepting the current
    /// leader's values, so a candidate that cannot win (a node rejoining
    /// after a partition) never refuses the live leader.
    fn maybe_self_promise(&mut self) {
        let promised = self.promised;
        if !self.phase1_quorums(true) {
            return;
        }
        let State::Candidate(c) = &mut self.state else {
            return;
        };
        if !matches!(c.self_vote, SelfVote::No) {
            return;
        }
        if promised > c.ballot {
            self.state = State::Follower;
            return;
        }
        let ballot = c.ballot;
        let from = c.from;
        c.self_vote = SelfVote::Pending;
        let own = self.accepted_from(from);
        if let State::Candidate(c) = &mut self.state {
            merge(&mut c.merged, own);
        }
        self.ask_discovered();
        self.promised = ballot;
        self.persist(Some(ballot), Vec::new());
        self.defer(Deferred::SelfPromise { ballot });
    }

    fn maybe_become_leader(&mut self) {
        let State::Candidate(c) = &self.state else {
            return;
        };
        if !matches!(c.self_vote, SelfVote::Done) || !self.phase1_quorums(true) {
            return;
        }
        let State::Candidate(c) = std::mem::replace(&mut self.state, State::Follower) else {
            return;
        };
        let from = c.from.max(self.commit + 1);
        let top = c.merged.keys().next_back().copied().unwrap_or(0).max(from);
        // Re-propose the highest-ballot value of every slot; no-ops fill
        // the gaps. At least one entry, so that the leader commits in its
        // own ballot and then knows everything chosen before it.
        let values: Vec<Value<T>> = (from..=top)
            .map(|s| match c.merged.get(&s) {
                Some(e) => e.value.clone(),
                None => Value::Noop,
            })
            .collect();
        // Members of re-proposed membership changes get the accepts too,
        // and nothing new is proposed until the last of them commits.
        let mut extra = Vec::new();
        let mut pending_config = 0;
        for (i, v) in values.iter().enumerate() {
            if let Value::Config(m) = v {
                extra.extend(m.voters.iter().chain(&m.observers));
                pending_config = from + i as Slot;
            }
        }
        self.leader_hint = Some(self.cfg.id);
        self.state = State::Leader(Leader {
            ballot: c.ballot,
            next_slot: from,
            ready_slot: top,
            acks: VecDeque::new(),
            peers: Vec::new(),
            heartbeat_at: self.now,
            hb_seq: 0,
            hb_sent: VecDeque::new(),
            quorum_seq: 0,
            lease_until: 0,
            reads: Vec::new(),
            commit_sent: self.commit,
            pending_config,
        });
        self.sync_peers(&extra);
        self.start_phase2(from, values);
    }

    fn on_resign(&mut self, from: NodeId, ballot: Ballot) {
        if ballot < self.promised || self.leader_hint != Some(from) {
            return;
        }
        // The leader no longer serves lease reads, so its lease may end
        // here. Campaign after a short random delay (not at once: several
        // followers may have heard the resignation).
        self.leader_hint = None;
        self.leader_heard_at = None;
        let hb = self.cfg.heartbeat_ms;
        let half = self.cfg.election_ms / 2;
        self.election_deadline = self.now + self.rng.range(hb, hb + half.max(1));
    }

    fn on_nack(&mut self, ballot: Ballot, promised: Ballot) {
        if promised <= ballot {
            return;
        }
        match &self.state {
            State::Leader(l) if l.ballot == ballot => {
                // Some acceptor promised a higher ballot (a candidate that
                // could not win, or a new leader). Step down and at once try
                // a higher ballot: acceptors that still follow us let their
                // own leader raise its ballot, and if another leader is live
                // its followers ignore us and we follow it on its heartbeat.
                self.step_down();
                self.campaign();
            }
            State::Candidate(c) if c.ballot == ballot => self.state = State::Follower,
            _ => {}
        }
    }

    // ----- leader -----

    fn start_phase2(&mut self, first: Slot, values: Vec<Value<T>>) {
        let commit = self.commit;
        let State::Leader(l) = &mut self.state else {
            return;
        };
        let ballot = l.ballot;
        let last = first + values.len() as Slot - 1;
        let mut entries = Vec::with_capacity(values.len());
        for (i, v) in values.iter().enumerate() {
            let slot = first + i as Slot;
            let entry = Entry {
                ballot,
                value: v.clone(),
            };
            entries.push((slot, entry.clone()));
            self.log.set(slot, entry);
            if slot > commit {
                l.acks.push_back(0);
            }
        }
        l.next_slot = last + 1;
        let peers: Vec<NodeId> = l.peers.iter().map(|p| p.id).collect();
        let n = peers.len();
        let mut values = Some(values);
        for (i, to) in peers.into_iter().enumerate() {
            let vs = if i + 1 == n {
                values.take().unwrap_or_default()
            } else {
                values.clone().unwrap_or_default()
            };
            self.send(
                to,
                Message::Accept {
                    ballot,
                    first,
                    values: vs,
                    commit,
                },
            );
        }
        if let State::Leader(l) = &mut self.state {
            l.commit_sent = commit;
        }
        self.persist(None, entries);
        self.defer(Deferred::SelfAccepted {
            ballot,
            first,
            last,
        });
    }

    fn on_accepted(&mut self, from: NodeId, ballot: Ballot, first: Slot, last: Slot, commit: Slot) {
        let State::Leader(l) = &mut self.state else {
            return;
        };
        if l.ballot != ballot {
            return;
        }
        let Some(p) = l.peers.iter_mut().find(|p| p.id == from) else {
            return;
        };
        p.last_heard = self.now;
        p.commit = p.commit.max(commit);
        let bit = p.bit;
        self.record_votes(ballot, bit, first, last);
    }

    fn record_votes(&mut self, ballot: Ballot, bit: u32, first: Slot, last: Slot) {
        let commit = self.commit;
        let State::Leader(l) = &mut self.state else {
            return;
        };
        if l.ballot != ballot {
            return;
        }
        let lo = first.max(commit + 1);
        let hi = last.min(l.next_slot - 1);
        for s in lo..=hi {
            if let Some(m) = l.acks.get_mut((s - commit - 1) as usize) {
                *m |= 1 << bit;
            }
        }
        // Each slot needs a majority of the membership in force for it: a
        // membership change governs the slots after its own.
        let (mut mask, mut quorum) = (self.voter_mask, self.quorum);
        let mut new_commit = commit;
        while let Some(m) = l.acks.front() {
            if ((m & mask).count_ones() as usize) < quorum {
                break;
            }
            l.acks.pop_front();
            new_commit += 1;
            if let Some(Entry {
                value: Value::Config(c),
                ..
            }) = self.log.get(new_commit)
            {
                mask = mask_of(&self.universe, &c.voters);
                quorum = c.quorum();
            }
        }
        if new_commit > commit {
            self.commit = new_commit;
            self.emit_apply(commit + 1, new_commit);
            self.committed(commit, new_commit);
            self.serve_reads();
        }
    }

    fn broadcast_heartbeat(&mut self) {
        let commit = self.commit;
        let now = self.now;
        let State::Leader(l) = &mut self.state else {
            return;
        };
        l.heartbeat_at = now;
        l.hb_seq += 1;
        l.hb_sent.push_back((l.hb_seq, now));
        while l.hb_sent.len() > 64 {
            l.hb_sent.pop_front();
        }
        l.commit_sent = commit;
        let ballot = l.ballot;
        let seq = l.hb_seq;
        let peers: Vec<NodeId> = l.peers.iter().map(|p| p.id).collect();
        for to in peers {
            self.send(
                to,
                Message::Heartbeat {
                    ballot,
                    commit,
                    seq,
                },
            );
        }
        self.update_quorum_seq();
    }

    fn on_heartbeat_ack(&mut self, from: NodeId, ballot: Ballot, seq: u64, commit: Slot) {
        let my_commit = self.commit;
        let max_batch = self.cfg.max_batch;
        let State::Leader(l) = &mut self.state else {
            return;
        };
        if l.ballot != ballot {
            return;
        }
        let Some(p) = l.peers.iter_mut().find(|p| p.id == from) else {
            return;
        };
        p.last_heard = self.now;
        p.commit = p.commit.max(commit);
        p.acked_seq = p.acked_seq.max(seq);
        let bit = p.bit;
        // Catch-up from the log: the peer lacks chosen values. The next
        // window goes out when the peer has the previous one, or when the
        // previous one looks lost.
        let resend = self.cfg.heartbeat_ms * 2;
        let base = self.log.base;
        if commit + 1 < base
            && (p.snap.is_none() || self.now >= p.learn_sent_at + resend)
            && let Some(snap) = &self.snapshot
        {
            // The peer needs slots we compacted: send the snapshot, resuming
            // where the peer's last acknowledgement left it.
            if p.snap.is_none() || p.snap_index <= commit {
                p.snap = Some(snap.clone());
                p.snap_index = snap.index;
                p.snap_offset = 0;
            }
            p.learn_sent_at = self.now;
            p.snap_sent = p.snap_offset;
            self.send_snapshot_window(from, ballot);
        } else if commit < my_commit
            && commit + 1 >= base
            && (commit >= p.learn_sent_to || self.now >= p.learn_sent_at + resend)
        {
            let first = commit + 1;
            let last = my_commit.min(commit + max_batch as Slot);
            let values: Vec<Value<T>> = (first..=last)
                .map_while(|s| self.log.get(s).map(|e| e.value.clone()))
                .collect();
            if !values.is_empty() {
                p.learn_sent_to = first + values.len() as Slot - 1;
                p.learn_sent_at = self.now;
                self.send(
                    from,
                    Message::Learn {
                        ballot,
                        first,
                        values,
                        commit: my_commit,
                    },
                );
            }
        }
        // Retransmit uncommitted slots the peer has not acknowledged, from
        // the first missing one (accepts may have been lost).
        if seq > 0
            && let State::Leader(l) = &self.state
        {
            let missing = l.acks.iter().position(|m| m & (1 << bit) == 0);
            if let Some(i) = missing {
                let first = my_commit + 1 + i as Slot;
                let last = (l.next_slot - 1).min(first + max_batch as Slot - 1);
                let values: Vec<Value<T>> = (first..=last)
                    .map_while(|s| self.log.get(s).map(|e| e.value.clone()))
                    .collect();
                if !values.is_empty() {
                    self.send(
                        from,
                        Message::Accept {
                            ballot,
                            first,
                            values,
                            commit: my_commit,
                        },
                    );
                }
            }
        }
        if seq > 0 {
            self.update_quorum_seq();
        }
    }

    /// Sends the chunks from what peer `to` was last sent up to a window
    /// of [`SNAPSHOT_WINDOW`] chunks past what it acknowledged.
    fn send_snapshot_window(&mut self, to: NodeId, ballot: Ballot) {
        let chunk = self.cfg.snapshot_chunk.max(1) as u64;
        let State::Leader(l) = &mut self.state else {
            return;
        };
        let Some(p) = l.peers.iter_mut().find(|p| p.id == to) else {
            return;
        };
        let Some(Snapshot {
            index,
            membership,
            data,
        }) = p.snap.clone()
        else {
            return;
        };
        let total = data.len() as u64;
        let limit = total.min(p.snap_offset + SNAPSHOT_WINDOW * chunk);
        let mut msgs = Vec::new();
        // An empty snapshot still needs one (empty) chunk.
        while p.snap_sent < limit || (total == 0 && msgs.is_empty()) {
            let start = p.snap_sent.min(total) as usize;
            let end = (start + chunk as usize).min(data.len());
            msgs.push(Message::Snapshot {
                ballot,
                index,
                membership: membership.clone(),
                total,
                offset: start as u64,
                data: data[start..end].to_vec(),
            });
            p.snap_sent = end as u64;
            if total == 0 {
                break;
            }
        }
        for msg in msgs {
            self.send(to, msg);
        }
    }

    fn on_snapshot_ack(&mut self, from: NodeId, ballot: Ballot, index: Slot, offset: u64) {
        if ballot == Ballot::ZERO {
            if let Some(snap) = &self.snapshot
                && snap.index == index
            {
                let snap = snap.clone();
                self.serve_snapshot_chunk(from, &snap, offset);
            }
            return;
        }
        let now = self.now;
        let State::Leader(l) = &mut self.state else {
            return;
        };
        if l.ballot != ballot {
            return;
        }
        let Some(p) = l.peers.iter_mut().find(|p| p.id == from) else {
            return;
        };
        p.last_heard = now;
        let Some(data) = &p.snap else {
            return;
        };
        // Only acknowledgements of the transfer in progress move it on;
        // a duplicate of an old one must not fork a second stream.
        if p.snap_index != index || offset == p.snap_offset {
            return;
        }
        if offset < p.snap_offset {
            // The peer has less than we thought (it restarted, or this
            // acknowledgement is late): resume from what it reports.
            p.snap_sent = offset;
        }
        p.snap_offset = offset;
        p.snap_sent = p.snap_sent.max(offset);
        p.learn_sent_at = now;
        if offset < data.data.len() as u64 {
            self.send_snapshot_window(from, ballot);
        } else {
            p.commit = p.commit.max(index);
            p.snap = None;
        }
    }

    /// Recomputes the highest heartbeat round a quorum acknowledged, the
    /// lease that follows from it, and serves reads that waited on it.
    fn update_quorum_seq(&mut self) {
        let quorum = self.quorum;
        let mask = self.voter_mask;
        let lease = match self.cfg.read_mode {
            ReadMode::Lease { drift_ms } => Some(self.cfg.election_ms.saturating_sub(drift_ms)),
            ReadMode::ReadIndex => None,
        };
        let State::Leader(l) = &mut self.state else {
            return;
        };
        let mut seqs: Vec<u64> = l
            .peers
            .iter()
            .filter(|p| mask & (1 << p.bit) != 0)
            .map(|p| p.acked_seq)
            .collect();
        seqs.sort_unstable_by(|a, b| b.cmp(a));
        // We acknowledge our own rounds; quorum-1 peers must too.
        let q = if quorum <= 1 {
            l.hb_seq
        } else {
            seqs.get(quorum - 2).copied().unwrap_or(0)
        };
        if q > l.quorum_seq {
            l.quorum_seq = q;
            if let Some(lease) = lease
                && let Some(&(_, sent)) = l.hb_sent.iter().find(|(s, _)| *s == q)
            {
                // Every acceptor in that quorum heard us after `sent`, and
                // ignores other proposers for `election_ms` of its own
                // clock from then on; shorten by the drift bound. `sent`
                // is the time the round was recorded, never later than it
                // left, so a pause between the two only shortens the lease.
                l.lease_until = l.lease_until.max(sent + lease);
            }
        }
        self.serve_reads();
    }

    fn serve_reads(&mut self) {
        let commit = self.commit;
        let State::Leader(l) = &mut self.state else {
            return;
        };
        if l.reads.is_empty() || commit < l.ready_slot {
            return;
        }
        let q = l.quorum_seq;
        let mut i = 0;
        while i < l.reads.len() {
            let (id, index, seq) = l.reads[i];
            if seq <= q && index <= commit {
                l.reads.swap_remove(i);
                let lease_until = None;
                self.out.push(Command::ReadReady {
                    id,
                    index,
                    lease_until,
                });
            } else {
                i += 1;
            }
        }
    }

    fn fail_reads(&mut self) {
        if let State::Leader(l) = &mut self.state {
            let reads = std::mem::take(&mut l.reads);
            for (id, _, _) in reads {
                self.out.push(Command::ReadFailed { id });
            }
        }
    }

    fn step_down(&mut self) {
        self.fail_reads();
        self.state = State::Follower;
        self.leader_hint = None;
        // Our own lease over the others says nothing about us as an
        // acceptor: be ready to promise a successor at once.
        self.leader_heard_at = None;
        self.reset_election_timer();
    }

    // ----- plumbing -----

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
