//! Simulator runs: many seeds, pinned regressions, and the OmniPaxos
//! partial-connectivity scenarios.

use super::*;
use crate::paxos::ReadMode;

/// Runs `seeds` consecutive seeds from `start` and fails with every
/// violating seed and its replay command.
fn run_seeds(start: u64, seeds: u64) -> (u64, u64) {
    let mut failures = Vec::new();
    let (mut steps, mut commits) = (0, 0);
    let mut coverage = Coverage::default();
    for seed in start..start + seeds {
        let nodes = nodes_for_seed(seed);
        let out = run(seed, SimConfig::for_seed(seed, nodes));
        steps += out.steps;
        commits += out.commits;
        coverage.add(&out.coverage);
        if !out.violations.is_empty() {
            failures.push(format!(
                "seed {seed} ({nodes} nodes): {:?}\n  replay: cargo run --release -p synod-core \
                 --example sim -- --seeds 1 --start {seed} --nodes {nodes} --verbose",
                out.violations
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every part of the node the seeds are meant to reach was reached.
    let Coverage {
        snapshots_encoded,
        snapshots_installed,
        disk_failures,
        forwarded,
        expired,
        ephemerals_deleted,
        sequential,
        watch_events,
        containers_reaped,
        ttl_reaped,
        reads_held,
        logged_sends,
    } = coverage;
    for (what, n) in [
        ("snapshots encoded", snapshots_encoded),
        ("snapshots installed", snapshots_installed),
        ("disk failures", disk_failures),
        ("txns forwarded", forwarded),
        ("sessions expired", expired),
        ("ephemerals deleted", ephemerals_deleted),
        ("sequential creates", sequential),
        ("watch events", watch_events),
        ("containers reaped", containers_reaped),
        ("TTL nodes reaped", ttl_reaped),
        ("reads held behind their session's writes", reads_held),
        ("catch-ups served from the disk", logged_sends),
    ] {
        assert!(n > 0, "seeds {start}..{}: no {what}", start + seeds);
    }
    (steps, commits)
}

// 600 seeds in four parallel chunks (150 seeds take about 3-5 s in debug
// on an idle core). The long mode is the `sim` example.
#[test]
fn seeds_0_to_150() {
    let (steps, commits) = run_seeds(0, 150);
    assert!(steps >= 150 * 400);
    assert!(commits > 10_000, "only {commits} commits");
}

#[test]
fn seeds_150_to_300() {
    run_seeds(150, 150);
}

#[test]
fn seeds_300_to_450() {
    run_seeds(300, 150);
}

#[test]
fn seeds_450_to_600() {
    run_seeds(450, 150);
}

#[test]
fn every_cluster_size_commits() {
    for nodes in [1, 3, 5, 7] {
        let out = run(1, SimConfig::new(nodes));
        assert!(
            out.violations.is_empty(),
            "nodes={nodes}: {:?}",
            out.violations
        );
        assert!(out.commits > 0);
    }
}

#[test]
fn a_seed_replays_exactly() {
    let a = run(42, SimConfig::for_seed(42, 5));
    let b = run(42, SimConfig::for_seed(42, 5));
    // Every command of every node, with its tick: the same run, not just
    // the same totals.
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(
        (a.steps, a.commits, a.recovery_ticks),
        (b.steps, b.commits, b.recovery_ticks)
    );
    let other = run(43, SimConfig::for_seed(42, 5));
    assert_ne!(a.trace_hash, other.trace_hash);
}

// ----- pauses and the lease -----

/// The Jepsen scenario: the leader stops (SIGSTOP) long enough for the
/// others to elect a new leader and commit, a client asks it for a
/// linearizable read while it is stopped, and it resumes (SIGCONT).
/// Returns the violations.
fn paused_leader_serves_a_read(seed: u64, plant: Option<Plant>) -> Vec<String> {
    let mut cfg = SimConfig::new(3);
    cfg.loss = 0.0;
    cfg.duplicate = 0.0;
    cfg.max_delay = 1;
    cfg.max_disk_delay = 0;
    cfg.plant = plant;
    let mut c = Cluster::new(seed, cfg);
    let all: Vec<usize> = (0..3).collect();
    c.commit_within(&all, 200).expect("initial leader commits");
    // A lease-confirmed read first, so the old leader holds a fresh lease.
    let old = c.leaders()[0];
    for _ in 0..4 {
        c.step();
    }
    c.read(old);
    c.pause(old, 60);
    // The others elect a leader and commit while it is stopped.
    let others: Vec<usize> = all.iter().copied().filter(|&i| i != old).collect();
    c.commit_within(&others, 55)
        .expect("the others commit while the leader is paused");
    c.read(old);
    for _ in 0..70 {
        c.step();
    }
    assert!(!c.is_paused(old));
    c.violations.clone()
}

#[test]
fn a_paused_leader_does_not_serve_a_stale_lease_read() {
    for seed in 0..20 {
        let v = paused_leader_serves_a_read(seed, None);
        assert!(v.is_empty(), "seed {seed}: {v:?}");
    }
}

#[test]
fn planted_lease_counted_in_timer_firings_is_caught() {
    let caught = (0..20)
        .filter(|&seed| {
            paused_leader_serves_a_read(seed, Some(Plant::LeaseInTicks))
                .iter()
                .any(|v| v.contains("stale read"))
        })
        .count();
    // Every seed: the pause outlasts the lease, so the planted shell's
    // lease always still runs when the read arrives.
    assert_eq!(
        caught, 20,
        "only {caught} of 20 seeds caught the planted bug"
    );
}

#[test]
fn planted_lease_bug_is_caught_by_random_seeds_with_pauses() {
    let caught = (0..200)
        .filter(|&seed| {
            let mut cfg = SimConfig::for_seed(seed, nodes_for_seed(seed));
            cfg.read_mode = ReadMode::Lease { drift_ms: 3 };
            cfg.plant = Some(Plant::LeaseInTicks);
            run(seed, cfg)
                .violations
                .iter()
                .any(|v| v.contains("stale read"))
        })
        .count();
    assert!(caught > 0, "200 seeds did not catch the planted bug");
}

// ----- OmniPaxos (EuroSys 2023) partial-connectivity scenarios -----

/// A calm cluster (no loss, no faults) with a leader that has committed.
fn settled(seed: u64, nodes: usize) -> (Cluster, usize) {
    let mut cfg = SimConfig::new(nodes);
    cfg.loss = 0.0;
    cfg.duplicate = 0.0;
    cfg.max_delay = 2;
    cfg.max_disk_delay = 1;
    let mut c = Cluster::new(seed, cfg);
    let all: Vec<usize> = (0..nodes).collect();
    c.commit_within(&all, 200).expect("initial leader commits");
    // Let the leader's lease and the followers' timers settle.
    for _ in 0..20 {
        c.step();
    }
    let leader = c.leaders()[0];
    (c, leader)
}

/// Ticks from the partition until a value proposed after it is committed.
fn recovery(c: &mut Cluster) -> Option<u64> {
    c.commit_within(&[], 400)
}

struct Measured {
    name: &'static str,
    ticks: Vec<u64>,
}

impl Measured {
    fn report(&self, election_ticks: u64) -> u64 {
        let max = *self.ticks.iter().max().unwrap();
        let mean = self.ticks.iter().sum::<u64>() as f64 / self.ticks.len() as f64;
        eprintln!(
            "{}: {} seeds, ticks to commit again: mean {mean:.1}, max {max} \
             (election timeout {election_ticks}, four timeouts {})",
            self.name,
            self.ticks.len(),
            4 * election_ticks
        );
        max
    }
}

const SCENARIO_SEEDS: u64 = 30;

#[test]
fn omnipaxos_quorum_loss_recovers_within_four_election_timeouts() {
    let mut m = Measured {
        name: "quorum-loss",
        ticks: vec![],
    };
    for seed in 0..SCENARIO_SEEDS {
        let (mut c, leader) = settled(seed, 5);
        // Only the hub still reaches everyone; the leader reaches only the
        // hub, so it cannot commit and must give way to the hub.
        let hub = (leader + 1) % 5;
        let pairs: Vec<(usize, usize)> = (0..5).filter(|&j| j != hub).map(|j| (hub, j)).collect();
        c.only_links(&pairs);
        let t = recovery(&mut c).unwrap_or_else(|| panic!("seed {seed}: no recovery"));
        assert!(c.violations.is_empty(), "{:?}", c.violations);
        assert_eq!(c.leaders(), vec![hub], "seed {seed}");
        m.ticks.push(t);
    }
    let max = m.report(10);
    assert!(max <= 40, "quorum-loss took {max} ticks");
}

#[test]
fn omnipaxos_constrained_election_elects_the_lagging_hub() {
    let mut m = Measured {
        name: "constrained election",
        ticks: vec![],
    };
    for seed in 0..SCENARIO_SEEDS {
        let (mut c, leader) = settled(seed, 5);
        let hub = (leader + 1) % 5;
        // The hub falls behind first...
        for j in 0..5 {
            if j != hub {
                c.set_pair(hub, j, false);
            }
        }
        let others: Vec<usize> = (0..5).filter(|&j| j != hub).collect();
        for _ in 0..5 {
            c.commit_within(&others, 100)
                .expect("majority commits without the hub");
        }
        assert!(c.applied(hub) < c.max_applied());
        // ...then the leader is cut off entirely and only the hub, with
        // its outdated log, reaches a majority. Raft could not elect it.
        let pairs: Vec<(usize, usize)> = (0..5)
            .filter(|&j| j != hub && j != leader)
            .map(|j| (hub, j))
            .collect();
        c.only_links(&pairs);
        let t = recovery(&mut c).unwrap_or_else(|| panic!("seed {seed}: no recovery"));
        assert!(c.violations.is_empty(), "{:?}", c.violations);
        assert!(c.leaders().contains(&hub), "seed {seed}: {:?}", c.leaders());
        m.ticks.push(t);
    }
    let max = m.report(10);
    assert!(max <= 40, "constrained election took {max} ticks");
}

#[test]
fn omnipaxos_chained_partition_keeps_the_leader() {
    let mut m = Measured {
        name: "chained",
        ticks: vec![],
    };
    for seed in 0..SCENARIO_SEEDS {
        let (mut c, leader) = settled(seed, 3);
        let middle = (leader + 1) % 3;
        let end = (leader + 2) % 3;
        // leader - middle - end: the end cannot hear the leader, times out
        // again and again, but must not disrupt it.
        c.set_pair(leader, end, false);
        let t = recovery(&mut c).unwrap_or_else(|| panic!("seed {seed}: no recovery"));
        m.ticks.push(t);
        for _ in 0..300 {
            c.step();
        }
        let before = c.max_applied();
        let t2 = c.commit_within(&[leader, middle], 100);
        assert!(t2.is_some() && c.max_applied() > before, "seed {seed}");
        assert_eq!(c.leaders(), vec![leader], "seed {seed}: leader changed");
        assert!(c.violations.is_empty(), "{:?}", c.violations);
    }
    let max = m.report(10);
    assert!(max <= 40, "chained took {max} ticks");
}

#[test]
fn rejoining_node_does_not_depose_a_healthy_leader() {
    for seed in 0..SCENARIO_SEEDS {
        let (mut c, leader) = settled(seed, 5);
        let loner = (leader + 2) % 5;
        for j in 0..5 {
            c.set_pair(loner, j, false);
        }
        // Long enough for many timeouts on the isolated node.
        for _ in 0..200 {
            c.step();
        }
        c.heal();
        for _ in 0..100 {
            c.step();
        }
        assert_eq!(c.leaders(), vec![leader], "seed {seed}");
        let all: Vec<usize> = (0..5).collect();
        assert!(c.commit_within(&all, 100).is_some(), "seed {seed}");
        assert!(c.violations.is_empty(), "{:?}", c.violations);
    }
}

/// Seeds that found bugs, pinned. Before membership changes joined the
/// fault schedule (which changed what every seed does, so these first six
/// no longer replay their original failure but stay as ordinary seeds):
/// 107: catch-up `Learn` chains multiplied under duplication (hang).
/// 2994, 2998: snapshot transfer restarted by every new compaction.
/// 1914: a stale chunk reset the receiver and the leader never rewound.
/// 504, 2713: same family (transfer never completed).
/// With membership changes (these replay their failure on the old code):
/// 466, 2752: a restarted candidate retried a ballot a peer had promised
/// (pre-votes equal to the promise were dropped silently).
/// 4632: pre-votes went to the bootstrap voters, not the committed ones.
/// 4040: the only voter lagged behind every peer's compaction and nobody
/// could lead (fixed by peer-served catch-up).
/// 1791, 4875: a receiver assembling an abandoned snapshot ignored the
/// leader's. 4042: a lost acknowledgement stalled a peer-served transfer.
#[test]
fn pinned_regressions() {
    for (seed, nodes) in [
        (107, 7),
        (504, 3),
        (1914, 3),
        (2713, 5),
        (2994, 3),
        (2998, 3),
        (466, 3),
        (2752, 3),
        (4632, 3),
        (4040, 3),
        (1791, 5),
        (4875, 7),
        (4042, 3),
    ] {
        // Wiped disks joined the fault schedule after these were pinned:
        // off, so that each replays the schedule that found its bug.
        let mut cfg = SimConfig::for_seed(seed, nodes);
        cfg.wipes = false;
        let out = run(seed, cfg);
        assert!(
            out.violations.is_empty(),
            "seed {seed}: {:?}",
            out.violations
        );
    }
}

/// Seeds, wipes on, that replay their failure without the wipe gate's check
/// for membership changes pending at any node: 207464, 210056, 218810 (a
/// demotion to two voters, accepted but committed nowhere, then one of the
/// two wiped: no candidate could win, and the run ended without a leader).
#[test]
fn pinned_wipe_regressions() {
    for seed in [207_464, 210_056, 218_810] {
        let out = run(seed, SimConfig::for_seed(seed, 3));
        assert!(
            out.violations.is_empty(),
            "seed {seed}: {:?}",
            out.violations
        );
    }
}

/// Replays one seed with state dumps: `SEED=n NODES=k cargo test -p
/// synod-core --lib debug_seed -- --ignored --nocapture`.
#[test]
#[ignore]
fn debug_seed() {
    let seed: u64 = std::env::var("SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let nodes: usize = std::env::var("NODES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let (out, c) = run_cluster(Cluster::new(seed, SimConfig::for_seed(seed, nodes)));
    eprintln!("{:?}", out.violations);
    let mut c = c;
    let extra: u64 = std::env::var("EXTRA")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    c.trace = Some(Vec::new());
    for t in 0..=extra {
        if t > 0 {
            c.step();
        }
        for line in c.trace.as_mut().unwrap().drain(..) {
            eprintln!("  {line}");
        }
        for i in 0..c.len() {
            eprintln!(
                "t+{t} node {}: applied {} {:?}",
                i + 1,
                c.applied(i),
                c.replica(i).map(|r| r.summary())
            );
        }
    }
}

// ----- the node layer: read barriers and session liveness -----

/// Runs `seeds` seeds with `plant` and counts the runs with a violation
/// that contains `what`.
fn caught(plant: Plant, seeds: u64, what: &str) -> u64 {
    (0..seeds)
        .filter(|&seed| {
            let nodes = nodes_for_seed(seed);
            let mut cfg = SimConfig::for_seed(seed, nodes);
            cfg.plant = Some(plant);
            if plant == Plant::IgnoreIncarnations {
                cfg.wipes = nodes >= 3;
            }
            run(seed, cfg).violations.iter().any(|v| v.contains(what))
        })
        .count() as u64
}

#[test]
fn planted_read_served_before_its_index_is_applied_is_caught() {
    let n = caught(Plant::ReadBeforeApply, 200, "stale read");
    assert!(
        n > 0,
        "200 seeds did not catch a read served before the apply"
    );
}

#[test]
fn planted_read_around_its_sessions_write_is_caught() {
    // Without `in_order`, a pipelined read runs before its session's
    // write is applied; the history alone cannot tell (the read overlaps
    // the write), the read-your-writes check does.
    let n = caught(Plant::ReadAroundWrite, 100, "answered without it");
    assert!(
        n > 0,
        "100 seeds did not catch a read served around its write"
    );
}

#[test]
fn planted_keep_alive_acknowledged_without_the_leaders_vouch_is_caught() {
    let n = caught(Plant::AckWithoutVouch, 200, "acknowledged a keep-alive");
    assert!(
        n > 0,
        "200 seeds did not catch a keep-alive acknowledged without a vouch"
    );
}

#[test]
fn a_member_cut_off_from_the_leader_stops_acknowledging_keep_alives() {
    // Issue 10's scenario: a session kept alive only through one member,
    // whose links to the leader are cut. The ensemble expires the session;
    // the member must not acknowledge a keep-alive after that (with the
    // planted bug it does, until the heal).
    for plant in [None, Some(Plant::AckWithoutVouch)] {
        let mut cfg = SimConfig::new(3);
        cfg.loss = 0.0;
        cfg.duplicate = 0.0;
        cfg.max_delay = 1;
        cfg.max_disk_delay = 0;
        cfg.sessions = 1;
        cfg.close_rate = 0.0;
        cfg.plant = plant;
        let mut c = Cluster::new(7, cfg);
        let all: Vec<usize> = (0..3).collect();
        c.commit_within(&all, 200).expect("a leader commits");
        let leader = c.leaders()[0];
        let member = (leader + 1) % 3;
        c.clients[0].home = member;
        for _ in 0..100 {
            c.step();
        }
        assert!(c.violations.is_empty(), "{:?}", c.violations);
        let session = c.clients[0].session.expect("the client opened its session");
        c.set_pair(leader, member, false);
        for _ in 0..300 {
            c.step();
        }
        let closed = c.closed_at.contains_key(&session);
        let acked_late = c
            .violations
            .iter()
            .any(|v| v.contains("acknowledged a keep-alive"));
        match plant {
            None => {
                assert!(c.violations.is_empty(), "{:?}", c.violations);
                assert!(c.clients[0].home != member, "the client never moved");
            }
            Some(_) => assert!(closed && acked_late, "the plant went unnoticed"),
        }
    }
}

// ----- wiped disks -----

/// Runs seeds 0..150 (3 and 5 nodes) with disk wipes, `anytime` as
/// [`SimConfig::wipes_anytime`]; every run must be free of violations.
/// Returns the disks wiped and the wiped members re-added.
fn runs_with_wipes(anytime: bool) -> (u64, u64) {
    let (mut wipes, mut readded) = (0, 0);
    for seed in 0..150 {
        let nodes = [3, 5][(seed % 2) as usize];
        let mut cfg = SimConfig::for_seed(seed, nodes);
        cfg.wipes = true;
        cfg.wipes_anytime = anytime;
        let out = run(seed, cfg);
        assert!(
            out.violations.is_empty(),
            "seed {seed}: {:?}",
            out.violations
        );
        wipes += out.wipes;
        readded += out.readded;
    }
    (wipes, readded)
}

#[test]
fn wiped_disks_are_replaced_and_agreement_holds() {
    // Every seed wipes disks now and then; the simulated operator removes
    // the member the leader reports foreign, re-adds it as an observer and
    // promotes it. Nothing chosen is lost and every node serves again.
    let (wipes, readded) = runs_with_wipes(false);
    assert!(
        wipes > 20 && readded > 10,
        "wipes {wipes}, re-added {readded}"
    );
}

#[test]
fn disks_wiped_at_any_time_never_break_agreement() {
    // No health check before a wipe, any number of disks lost at once (a
    // majority too): the ensemble may stop, but what it chose stays chosen
    // and every other check holds.
    let (wipes, _) = runs_with_wipes(true);
    assert!(wipes > 100, "wipes {wipes}");
}

#[test]
fn planted_wiped_voter_that_votes_is_caught() {
    // Without incarnations a wiped voter votes at once with what it forgot,
    // and some seeds apply two values in one slot.
    let n = caught(Plant::IgnoreIncarnations, 300, "applied");
    assert!(n > 0, "300 seeds did not catch an amnesiac voter");
}

#[test]
fn the_history_check_catches_a_planted_stale_read() {
    // The read-before-apply plant serves reads from a state that lacks
    // writes already acknowledged: the linearizability check sees it on
    // its own, beside the per-read freshness check.
    let n = caught(Plant::ReadBeforeApply, 200, "not linearizable");
    assert!(n > 0, "200 seeds' histories did not show the stale reads");
}
