//! How a simulated run behaves: cluster size, network and disk faults,
//! load, timing, pauses and the node layer's clients, and the profile a seed
//! picks; and the shell bugs the simulator can plant to test its checks.

use crate::paxos::ReadMode;
use crate::paxos::rng::Rng;

/// A shell bug the simulator can plant, to show that its checks catch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plant {
    /// The shell gives the replica a count of its timer firings as the
    /// time (what `synod` did before its clock was real): a paused node
    /// misses firings, so its lease outlives its real length.
    LeaseInTicks,
    /// The shell serves a linearizable read as soon as its index is
    /// confirmed, without waiting until the node has applied it.
    ReadBeforeApply,
    /// A member acknowledges every keep-alive of a session it knows,
    /// without the leader's vouch and whether or not it still hears from
    /// the leader (what `synod` did before issue 10).
    AckWithoutVouch,
    /// The shell serves a read of a session at once, without holding it
    /// behind the session's own outstanding writes (no `in_order`).
    ReadAroundWrite,
    /// Nodes bind no incarnation and a wiped node starts as a fresh
    /// bootstrap member would: an amnesiac acceptor votes (what `synod` did
    /// before issue 12).
    IgnoreIncarnations,
}

/// How a simulated cluster behaves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub nodes: usize,
    /// Ticks of the fault phase.
    pub ticks: u64,
    /// After healing, the cluster must commit a new value on every replica
    /// within this many ticks (more on a lossy network, see [`run`]).
    pub heal_bound: u64,
    pub loss: f64,
    pub duplicate: f64,
    /// Message delays are uniform in `1..=max_delay` ticks.
    pub max_delay: u64,
    /// Probability per tick of a fault event (crash, restart, partition,
    /// heal, slow disk).
    pub fault_rate: f64,
    /// Probability per tick that an idle client starts an operation.
    pub propose_rate: f64,
    /// Probability per tick of a linearizable read at a leader.
    pub read_rate: f64,
    /// Slowest disk: writes complete after `0..=max_disk_delay` ticks.
    pub max_disk_delay: u64,
    /// Probability that a log batch or a snapshot file fails to be
    /// written (an I/O error: the batch is appended again after a pause).
    pub disk_failures: f64,
    /// Replica timing, in milliseconds of a node's clock (one per tick).
    pub heartbeat_ms: u64,
    pub election_ms: u64,
    pub read_mode: ReadMode,
    /// Skew nodes' clocks: one millisecond gained or lost every
    /// `drift_period` ticks (0: no drift).
    pub drift_period: u64,
    /// Whether faults include process pauses (and forward clock jumps).
    pub pauses: bool,
    /// Longest pause, in ticks.
    pub max_pause: u64,
    /// A shell bug to plant (tests of the checks).
    pub plant: Option<Plant>,
    /// Clients, each with a session kept alive through one member at a
    /// time, doing one operation at a time (or a write and a read
    /// pipelined right after it).
    pub sessions: usize,
    /// Probability per tick that an idle client closes its session.
    pub close_rate: f64,
    /// Their timeout, in milliseconds (ticks).
    pub session_timeout: u64,
    /// The node's periodic work (liveness reports, expiry) runs every this
    /// many ticks.
    pub node_tick: u64,
    /// A node takes a snapshot (and then compacts its log) after about
    /// this many txns, through the node's snapshot schedule (0: never).
    pub compact_every: u64,
    /// The last `observers` nodes start as observers (non-voting).
    pub observers: usize,
    /// Whether faults include membership changes and leadership transfers.
    pub reconfigure: bool,
    /// Whether faults include wiping a node's disk: it restarts empty with
    /// a new incarnation, as joined to an existing ensemble, and the
    /// simulated operator removes and re-adds it.
    pub wipes: bool,
    /// Wipes strike at any time, however many disks are already lost (no
    /// health check first). Agreement must still hold; progress after the
    /// heal is not demanded, since losing a majority's disks may rightly
    /// stop the ensemble.
    pub wipes_anytime: bool,
    /// A node lets its replica drop committed values from memory once
    /// they are this many slots behind what it applied (the node's
    /// `--log-cache-entries`); peers that need them are served from the
    /// disk. `None`: never.
    pub log_keep: Option<u64>,
}

impl SimConfig {
    pub fn new(nodes: usize) -> Self {
        SimConfig {
            nodes,
            ticks: 400,
            heal_bound: 200,
            loss: 0.05,
            duplicate: 0.02,
            max_delay: 3,
            fault_rate: 0.03,
            propose_rate: 0.5,
            read_rate: 0.1,
            max_disk_delay: 2,
            disk_failures: 0.0,
            heartbeat_ms: 2,
            election_ms: 10,
            // With drift_period 25 a node's clock gains or loses at most
            // 1 ms over one or two election timeouts, and jumps forward by
            // at most 1 ms as often: two clocks move apart by at most 3 ms
            // while a lease runs, the lease's drift bound.
            read_mode: ReadMode::Lease { drift_ms: 3 },
            drift_period: 25,
            pauses: true,
            max_pause: 40,
            plant: None,
            sessions: 4,
            close_rate: 0.003,
            session_timeout: 60,
            node_tick: 5,
            compact_every: 0,
            observers: 0,
            reconfigure: false,
            wipes: false,
            wipes_anytime: false,
            log_keep: None,
        }
    }
}

impl SimConfig {
    /// The configuration a seed runs with: the fault profile (loss, fault
    /// rate, disk latency) varies with the seed so that the seeds cover calm
    /// runs, lossy ones, crash storms and slow disks.
    pub fn for_seed(seed: u64, nodes: usize) -> Self {
        let mut rng = Rng::new(seed ^ 0x5eed_cafe_f00d_d00d);
        let mut cfg = SimConfig::new(nodes);
        cfg.loss = [0.0, 0.02, 0.05, 0.2][rng.range(0, 4) as usize];
        cfg.duplicate = [0.0, 0.02, 0.1][rng.range(0, 3) as usize];
        cfg.max_delay = rng.range(1, 5);
        cfg.fault_rate = [0.01, 0.03, 0.08, 0.15][rng.range(0, 4) as usize];
        cfg.max_disk_delay = [0, 1, 2, 6][rng.range(0, 4) as usize];
        cfg.propose_rate = [0.2, 0.5, 0.9][rng.range(0, 3) as usize];
        if rng.chance(0.3) {
            cfg.read_mode = ReadMode::ReadIndex;
        }
        cfg.compact_every = [0, 8, 32][rng.range(0, 3) as usize];
        if nodes >= 3 {
            cfg.observers = rng.range(0, 2) as usize;
        }
        cfg.reconfigure = rng.chance(0.7);
        cfg.disk_failures = [0.0, 0.0, 0.05][rng.range(0, 3) as usize];
        // Drawn last, so that every earlier choice of a seed is as it was.
        cfg.wipes = nodes >= 3 && rng.chance(0.3);
        // From the seed, not the generator, for the same reason.
        cfg.log_keep = [None, Some(0), Some(3), Some(40)][(seed % 4) as usize];
        cfg
    }
}
