//! Simulator runs: many seeds, pinned regressions, and the OmniPaxos
//! partial-connectivity scenarios.

use super::*;

/// Runs `seeds` consecutive seeds from `start` and fails with every
/// violating seed and its replay command.
fn run_seeds(start: u64, seeds: u64) -> (u64, u64) {
    let mut failures = Vec::new();
    let (mut steps, mut commits) = (0, 0);
    for seed in start..start + seeds {
        let nodes = nodes_for_seed(seed);
        let out = run(seed, SimConfig::for_seed(seed, nodes));
        steps += out.steps;
        commits += out.commits;
        if !out.violations.is_empty() {
            failures.push(format!(
                "seed {seed} ({nodes} nodes): {:?}\n  replay: cargo run --release -p synod-core \
                 --example sim -- --seeds 1 --start {seed} --nodes {nodes} --verbose",
                out.violations
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    (steps, commits)
}

// A thousand seeds in four parallel chunks (about 3 s per 200 in debug).
#[test]
fn seeds_0_to_250() {
    let (steps, commits) = run_seeds(0, 250);
    assert!(steps >= 250 * 400);
    assert!(commits > 10_000, "only {commits} commits");
}

#[test]
fn seeds_250_to_500() {
    run_seeds(250, 250);
}

#[test]
fn seeds_500_to_750() {
    run_seeds(500, 250);
}

#[test]
fn seeds_750_to_1000() {
    run_seeds(750, 250);
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
    assert_eq!(
        (a.steps, a.commits, a.recovery_ticks),
        (b.steps, b.commits, b.recovery_ticks)
    );
}
