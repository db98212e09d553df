//! Multi-Paxos replication, written as a deterministic state machine with no
//! IO (sans-IO, in the style of raft-rs `RawNode` and openraft's `Engine`).
//!
//! A [`Replica`] takes four kinds of input: [`Replica::step`] (a message from
//! a peer), [`Replica::tick`] (time passed), [`Replica::propose`] (a batch of
//! values, at the leader) and [`Replica::persisted`] (the shell reports that a
//! write is durable). It answers with an ordered list of [`Command`]s that the
//! shell executes: persist a write, send a message, apply committed entries,
//! answer a read. Randomness comes only from the seed in [`Config`], and
//! time only as the `now` the shell passes with `step`, `tick` and `read`:
//! real milliseconds of a monotonic clock ([`MonoMs`]), never a count of
//! timer firings, because a paused process misses firings and a lease
//! counted in them would outlive its real length. Given the same inputs, a
//! replica emits the same commands. That is what lets `crate::sim` run
//! whole clusters under faults and pauses and replay any failure from its
//! seed.
//!
//! # Clocks
//!
//! Each member reads its own monotonic clock. Clocks may run at slightly
//! different rates (the drift over one election timeout is bounded by
//! [`ReadMode::Lease`]'s `drift_ms`) but are never compared across members,
//! and a process may stop for any length of time. See `docs/consensus.md`.
//!
//! # The durability contract
//!
//! Every [`Command::Persist`] carries a token; tokens grow by one per write.
//! The shell must make writes durable in token order (group commit is fine:
//! one fsync may cover many writes) and then call [`Replica::persisted`] with
//! the highest token that is durable. **The replica itself holds back every
//! message that relies on durable state** (a `Promise`, an `Accepted`) until
//! the write it relies on has been reported durable, so the shell may send
//! every [`Command::Send`] as soon as it sees it, in any order relative to
//! persists still in flight. Messages that rely on nothing durable (prepares,
//! accepts from the leader, heartbeats, catch-up, nacks) go out at once; the
//! leader counts its own vote for a slot only once its own write of that slot
//! is durable. A crash loses every write not yet reported durable; the shell
//! rebuilds the replica with [`Replica::restore`] from what is on disk.
//!
//! [`Command::Apply`] carries committed entries in log order. They are chosen
//! (durable on a majority), so the shell may apply them before its own copy
//! is durable. After a restart the replica starts from the durable commit
//! index ([`Durable::commit`], bounded by the entries it holds after the
//! snapshot): the shell applies the snapshot and those entries itself, and
//! the replica emits `Apply` for what commits after them.
//!
//! Other inputs: [`Replica::read`] (linearizable reads by lease or read
//! index), [`Replica::compact`] (the shell made a snapshot durable; the log
//! before it is dropped and lagging peers get the snapshot in chunks,
//! answered by [`Command::InstallSnapshot`]),
//! [`Replica::propose_membership`] (one voter at a time, observers first),
//! [`Replica::transfer_leadership`], and [`Replica::release_log`] (the shell
//! keeps committed values on its disk only; a peer that needs them is sent
//! them through [`Command::SendLogged`]).
//!
//! See `docs/consensus.md` for the protocol and the safety argument.

pub mod codec;
mod replica;
pub mod rng;
mod snapshot;
#[cfg(test)]
mod tests;

pub use replica::{Elections, Replica, Role};
pub use snapshot::{Chunk, SnapshotBytes, SnapshotSource};

/// A replica's identity, unique in the ensemble. Must not be 0: ballot
/// `(0, 0)` means "nothing promised yet".
pub type NodeId = u64;

/// A log position, starting at 1. Slot 0 means "nothing".
pub type Slot = u64;

/// Milliseconds on the node's monotonic clock (any origin; it never goes
/// back and keeps running while the process is paused).
pub type MonoMs = u64;

/// A proposal number. Ordered by round, then node id, so two proposers never
/// share a ballot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Ballot {
    pub round: u64,
    pub node: NodeId,
}

impl Ballot {
    /// Below every real ballot. Catch-up served by a peer that is not the
    /// leader carries it.
    pub const ZERO: Ballot = Ballot { round: 0, node: 0 };
    /// Above every real ballot: marks a value known to be chosen, learned
    /// from a peer. Phase 1 prefers it to anything else reported for its
    /// slot, which is right because nothing else can be chosen there.
    pub const CHOSEN: Ballot = Ballot {
        round: u64::MAX,
        node: u64::MAX,
    };

    pub fn new(round: u64, node: NodeId) -> Self {
        Ballot { round, node }
    }
}

/// Who votes and who only follows the log, and which incarnation of each
/// member counts.
///
/// An incarnation is the id a member's data directory drew when it was
/// first initialised. A member whose directory was wiped comes back empty
/// under the same node id but with another incarnation; it has forgotten
/// every promise and acceptance it made, so its votes must count toward no
/// quorum (an amnesiac acceptor and a lagging one could otherwise form a
/// majority that misses a chosen value). The binding makes that checkable:
/// messages carry the sender's [`Claim`], and a member bound to one
/// incarnation is ignored when it speaks as another. See docs/consensus.md.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Membership {
    pub voters: Vec<NodeId>,
    /// Non-voting members: they receive and apply the log but never vote or
    /// campaign. A new voter joins as an observer first.
    pub observers: Vec<NodeId>,
    /// `(member, incarnation)`, sorted by member, for the members whose
    /// incarnation is known. A member not listed is unbound: the leader
    /// binds it the first time it hears from it.
    pub incarnations: Vec<(NodeId, u64)>,
}

impl Membership {
    pub fn new(voters: Vec<NodeId>, observers: Vec<NodeId>) -> Self {
        Membership {
            voters,
            observers,
            incarnations: Vec::new(),
        }
    }

    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id)
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.observers.contains(&id)
    }

    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// The incarnation `id` is bound to; 0 when unbound.
    pub fn incarnation(&self, id: NodeId) -> u64 {
        self.incarnations
            .binary_search_by_key(&id, |(m, _)| *m)
            .map_or(0, |i| self.incarnations[i].1)
    }

    /// Binds `id` to `incarnation` (0 unbinds it).
    pub fn bind(&mut self, id: NodeId, incarnation: u64) {
        match self.incarnations.binary_search_by_key(&id, |(m, _)| *m) {
            Ok(i) if incarnation == 0 => {
                self.incarnations.remove(i);
            }
            Ok(i) => self.incarnations[i].1 = incarnation,
            Err(_) if incarnation == 0 => {}
            Err(i) => self.incarnations.insert(i, (id, incarnation)),
        }
    }

    /// Whether a message claiming `claim` from `from` may be taken in: a
    /// vote from it may count toward a quorum, and a proposer's message
    /// from it may be obeyed. A member bound to an incarnation is admitted
    /// as that incarnation only (what it says of itself may lag: a voter
    /// just re-added still calls itself abstaining until it learns of its
    /// binding). An unbound voter is admitted unless it abstains.
    /// Observers and non-members count toward nothing, so their messages
    /// are taken in (an observer being re-added must be heard to catch up).
    pub fn admits(&self, from: NodeId, claim: Claim) -> bool {
        match self.incarnation(from) {
            0 => !(claim.abstaining && self.is_voter(from)),
            bound => bound == claim.incarnation,
        }
    }

    fn validate(&self) -> Result<(), PaxosError> {
        if self.voters.is_empty() {
            return Err(PaxosError::InvalidConfig("at least one voter"));
        }
        let mut all: Vec<NodeId> = self.voters.iter().chain(&self.observers).copied().collect();
        all.sort_unstable();
        let n = all.len();
        all.dedup();
        if all.len() != n {
            return Err(PaxosError::InvalidConfig("a member is listed twice"));
        }
        if all.contains(&0) {
            return Err(PaxosError::InvalidConfig("node id 0 is reserved"));
        }
        let sorted = self.incarnations.windows(2).all(|w| w[0].0 < w[1].0);
        let members = self
            .incarnations
            .iter()
            .all(|(id, inc)| *inc != 0 && all.binary_search(id).is_ok());
        if !sorted || !members {
            return Err(PaxosError::InvalidConfig(
                "incarnations: one nonzero id per member, sorted",
            ));
        }
        Ok(())
    }
}

/// What a message says about its sender, beyond its node id (which the
/// transport knows): the incarnation of the sender's data directory, and
/// whether the sender abstains from voting (it started on an empty
/// directory in an ensemble that already existed, or the configuration
/// binds its id to another incarnation). The shell attaches
/// [`Replica::claim`] to every message it sends and passes the claim it
/// received to [`Replica::step_claimed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Claim {
    pub incarnation: u64,
    pub abstaining: bool,
}

impl Claim {
    /// A sender that reports no incarnation (tests, and shells that do not
    /// bind incarnations): it counts wherever its id is unbound.
    pub const NONE: Claim = Claim {
        incarnation: 0,
        abstaining: false,
    };
}

/// What a log slot holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value<T> {
    /// Fills a gap a new leader found; applies as nothing.
    Noop,
    /// A value proposed by the application.
    Data(T),
    /// A membership change; governs every slot after its own once
    /// committed. Applies as nothing to the application's state. Boxed so
    /// that it does not make every value (and log entry) larger.
    Config(Box<Membership>),
}

/// A snapshot of the application's state after `index`, with the
/// membership in force there.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Snapshot {
    pub index: Slot,
    pub membership: Membership,
    /// Shared, not copied, by the replica, the shell and the catch-up of
    /// every lagging peer: in memory, or (the node, once the snapshot is on
    /// disk) in the shell's file, so that the replica does not keep
    /// hundreds of megabytes only to serve peers now and then.
    pub data: SnapshotBytes,
}

/// A value as accepted by an acceptor, with the ballot it was accepted in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entry<T> {
    pub ballot: Ballot,
    pub value: Value<T>,
}

/// The peer protocol. Every message names the ballot it belongs to; the
/// sender is given to [`Replica::step`] separately (the transport knows it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Message<T> {
    /// Pre-vote: "would you promise `ballot` if I asked?" Nothing is
    /// changed or persisted. A node only runs phase 1 after a majority said
    /// yes, so a node that cannot win (cut off from the leader but not from
    /// its followers) never raises anyone's promise.
    PreVote { ballot: Ballot },
    /// Yes to a pre-vote.
    PreVoteGranted { ballot: Ballot },
    /// Phase 1a for every slot from `from` on.
    Prepare { ballot: Ballot, from: Slot },
    /// Phase 1b: the acceptor promised `ballot` and reports every value it
    /// accepted at `from` or above. `commit` is its commit index (a hint).
    Promise {
        ballot: Ballot,
        from: Slot,
        accepted: Vec<(Slot, Entry<T>)>,
        commit: Slot,
    },
    /// Phase 2a for the contiguous slots `first..first+values.len()`, plus
    /// the leader's commit index.
    Accept {
        ballot: Ballot,
        first: Slot,
        values: Vec<Value<T>>,
        commit: Slot,
    },
    /// Phase 2b: the acceptor durably accepted `first..=last` in `ballot`.
    /// `commit` is the acceptor's commit index, for catch-up.
    Accepted {
        ballot: Ballot,
        first: Slot,
        last: Slot,
        commit: Slot,
    },
    /// Leader liveness and commit index. `seq` numbers heartbeat rounds, for
    /// leases and read-index.
    Heartbeat {
        ballot: Ballot,
        commit: Slot,
        seq: u64,
    },
    /// Answer to a heartbeat (`seq` > 0) or to a `Learn` (`seq` = 0).
    HeartbeatAck {
        ballot: Ballot,
        seq: u64,
        commit: Slot,
    },
    /// Catch-up: the values chosen at `first..first+values.len()`.
    Learn {
        ballot: Ballot,
        first: Slot,
        values: Vec<Value<T>>,
        commit: Slot,
    },
    /// Catch-up by snapshot, for a peer that needs slots the leader has
    /// compacted away: bytes `offset..offset+data.len()` of the snapshot at
    /// `index`, `total` bytes long. A sender names its bytes in its
    /// snapshot's source ([`Chunk::Source`]), read when the shell encodes
    /// the message; a receiver gets them as bytes.
    Snapshot {
        ballot: Ballot,
        index: Slot,
        membership: Membership,
        total: u64,
        offset: u64,
        data: Chunk,
    },
    /// The receiver holds the first `offset` bytes of the snapshot at
    /// `index`; the transfer resumes from there.
    SnapshotAck {
        ballot: Ballot,
        index: Slot,
        offset: u64,
    },
    /// "I have committed up to `commit`": any peer further along answers
    /// with the chosen values after it (`Learn`) or its snapshot, under
    /// `Ballot::ZERO`. Lets a lagging node catch up without a leader (for
    /// example the only voter of a membership it has not learned yet).
    CatchUp { commit: Slot },
    /// Leadership transfer: the leader of `ballot` asks the receiver to
    /// campaign at once (it resigned to everyone else).
    TimeoutNow { ballot: Ballot },
    /// The leader of `ballot` stepped down (it lost its quorum): its lease
    /// is over, so the receiver may campaign soon instead of waiting out a
    /// whole election timeout.
    Resign { ballot: Ballot },
    /// `ballot` was refused because the acceptor promised `promised`.
    Nack { ballot: Ballot, promised: Ballot },
}

impl<T> Message<T> {
    /// The ballot the message belongs to.
    pub fn ballot(&self) -> Ballot {
        match self {
            Message::PreVote { ballot }
            | Message::PreVoteGranted { ballot }
            | Message::Prepare { ballot, .. }
            | Message::Promise { ballot, .. }
            | Message::Accept { ballot, .. }
            | Message::Accepted { ballot, .. }
            | Message::Heartbeat { ballot, .. }
            | Message::HeartbeatAck { ballot, .. }
            | Message::Learn { ballot, .. }
            | Message::Snapshot { ballot, .. }
            | Message::SnapshotAck { ballot, .. }
            | Message::Resign { ballot }
            | Message::TimeoutNow { ballot }
            | Message::Nack { ballot, .. } => *ballot,
            Message::CatchUp { .. } => Ballot::ZERO,
        }
    }
}

/// One durable write. Applied in token order: set the promised ballot if
/// given, then store each entry at its slot (overwriting what was there).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Write<T> {
    pub token: u64,
    pub promised: Option<Ballot>,
    pub entries: Vec<(Slot, Entry<T>)>,
}

/// What the replica asks the shell to do, in order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Command<T> {
    /// Make this write durable, then call [`Replica::persisted`] with its
    /// token (or a later one).
    Persist(Write<T>),
    /// Send a message. May be sent at once: the replica has already waited
    /// for whatever durable state the message relies on.
    Send { to: NodeId, msg: Message<T> },
    /// Send `to` the chosen values at `first..=last`, which the shell let
    /// go of ([`Replica::release_log`]): read them from the durable log
    /// and send [`Message::Learn`] with `ballot`, `first` and `commit`. A
    /// shell that cannot read them back sends nothing and takes a
    /// snapshot: the replica's log then starts after them, and the peer,
    /// asking again, is sent the snapshot.
    SendLogged {
        to: NodeId,
        ballot: Ballot,
        first: Slot,
        last: Slot,
        commit: Slot,
    },
    /// Apply the committed values at `first..first+values.len()`, in order.
    Apply { first: Slot, values: Vec<Value<T>> },
    /// The linearizable read `id` may be served once the state machine has
    /// applied `index`. `lease_until` is set when the read was confirmed by
    /// the leader's lease rather than a heartbeat round: the answer must
    /// then leave before that time (see [`Replica::lease_holds`]).
    ReadReady {
        id: u64,
        index: Slot,
        lease_until: Option<MonoMs>,
    },
    /// The read `id` cannot be served here (leadership was lost).
    ReadFailed { id: u64 },
    /// Replace the state machine by this snapshot of everything up to and
    /// including its index, make it durable, and drop the log up to there.
    /// `Apply` continues after the index.
    InstallSnapshot(Snapshot),
}

/// What survives a crash: everything reported durable, and the latest
/// durable snapshot with the slot it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Durable<T> {
    pub promised: Ballot,
    pub entries: Vec<(Slot, Entry<T>)>,
    pub snapshot: Option<Snapshot>,
    /// The highest commit index the replica knew when a durable write was
    /// made (the node writes it in every log record). A restored replica
    /// takes the entries it holds up to there as committed, so that it
    /// knows the membership in force without asking anyone; the shell
    /// applies them itself (see [`Replica::restore`]).
    pub commit: Slot,
}

impl<T> Default for Durable<T> {
    fn default() -> Self {
        Durable {
            promised: Ballot::ZERO,
            entries: Vec::new(),
            snapshot: None,
            commit: 0,
        }
    }
}

impl<T: Clone> Durable<T> {
    /// Records a durable snapshot and drops the entries it covers.
    pub fn set_snapshot(&mut self, snapshot: Snapshot) {
        if self
            .snapshot
            .as_ref()
            .is_some_and(|s| s.index >= snapshot.index)
        {
            return;
        }
        let index = snapshot.index;
        self.entries.retain(|(s, _)| *s > index);
        self.snapshot = Some(snapshot);
    }

    /// Applies a write, as a disk would. Used by the simulator and tests.
    pub fn apply(&mut self, write: &Write<T>) {
        if let Some(p) = write.promised {
            self.promised = p;
        }
        for (slot, entry) in &write.entries {
            match self.entries.binary_search_by_key(slot, |(s, _)| *s) {
                Ok(i) => self.entries[i].1 = entry.clone(),
                Err(i) => self.entries.insert(i, (*slot, entry.clone())),
            }
        }
    }
}

/// Read consistency mechanism at the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// Serve from the leader's lease: no round trip while the lease holds.
    /// `drift_ms` bounds how far two members' clocks may drift apart
    /// during one election timeout (drift rate × `election_ms`); the lease
    /// is shortened by it.
    Lease { drift_ms: u64 },
    /// Confirm leadership with a heartbeat round per read batch. Without
    /// a lease the leader cannot vouch for sessions either
    /// (`crate::node::may_vouch`), so a node runs in this mode only where
    /// no keep-alives are acknowledged (the simulator's read tests); the
    /// node always uses `Lease`.
    ReadIndex,
}

/// Replica settings. Every voter must use the same voter set and timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub id: NodeId,
    /// The initial voting members (until a snapshot or a committed
    /// membership change says otherwise).
    pub voters: Vec<NodeId>,
    /// The initial observers.
    pub observers: Vec<NodeId>,
    /// Milliseconds between heartbeats from the leader.
    pub heartbeat_ms: u64,
    /// Minimum election timeout in milliseconds; each timeout is drawn from
    /// `[election_ms, 2 * election_ms)`. Also the lease period during which
    /// an acceptor that heard from a live leader ignores other proposers'
    /// prepares, and the window of check-quorum at the leader.
    pub election_ms: u64,
    /// Most entries in one catch-up message or retransmission.
    pub max_batch: usize,
    /// Most proposed but uncommitted slots at the leader; `propose` refuses
    /// beyond it (back pressure).
    pub max_inflight: usize,
    pub read_mode: ReadMode,
    /// Bytes per snapshot chunk.
    pub snapshot_chunk: usize,
    /// Seed of the replica's RNG (election timeouts).
    pub seed: u64,
    /// This member's incarnation (its data directory's id); 0 when the
    /// shell binds none.
    pub incarnation: u64,
    /// The data directory was initialised empty in an ensemble that already
    /// existed (`--initial-cluster-state existing`): the replica votes in
    /// nothing until the membership binds its id to its incarnation, which
    /// happens only when it is re-added (observer, caught up, voter).
    pub joined_existing: bool,
}

impl Config {
    /// Defaults for a voter in `voters` at test scale (a heartbeat every
    /// 2 ms, elections after 10): the node sets its own timing.
    pub fn new(id: NodeId, voters: Vec<NodeId>) -> Self {
        Config {
            id,
            voters,
            observers: Vec::new(),
            heartbeat_ms: 2,
            election_ms: 10,
            max_batch: 1024,
            max_inflight: 1 << 16,
            read_mode: ReadMode::Lease { drift_ms: 1 },
            snapshot_chunk: 64 * 1024,
            seed: id,
            incarnation: 0,
            joined_existing: false,
        }
    }
}

/// Why an input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaxosError {
    #[error("not the leader (leader hint: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    #[error("too many uncommitted slots in flight (limit {limit})")]
    Backpressure { limit: usize },
    #[error("cannot compact to slot {slot}: only committed slots (up to {commit}) can be")]
    NotCommitted { slot: Slot, commit: Slot },
    #[error("a membership change is still being committed")]
    ConfigChangePending,
    #[error("membership changes add or remove one voter at a time")]
    OneVoterAtATime,
    #[error("node {0} must be a caught-up observer before it can become a voter")]
    NotCaughtUp(NodeId),
    #[error("node {0} is not a voter")]
    NotAVoter(NodeId),
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
}
