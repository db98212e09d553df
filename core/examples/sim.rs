//! Runs the deterministic cluster simulator over many seeds.
//!
//! ```text
//! cargo run --release -p synod-core --example sim -- --seeds N [--start S] [--nodes K]
//!     [--ticks T] [--wipes-anytime] [--plant lease-in-ticks|read-before-apply|ack-without-vouch|read-around-write|ignore-incarnations]
//!     [--verbose]
//! ```
//!
//! `--plant` runs with a planted shell bug, to measure how many seeds the
//! checks need to catch it (the run then fails, as it should).
//!
//! Prints every failing seed with the command that replays it, and closes
//! with one line: `seeds=N steps=X commits=Y operations=O failed_seeds=F violations=Z`
//! (operations: the clients' operations on the registers in the history). Without
//! `--nodes`, the cluster size (1, 3, 5 or 7) is derived from the seed.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

use synod_core::paxos::ReadMode;
use synod_core::sim::{Coverage, Plant, SimConfig, nodes_for_seed, run};

struct Args {
    seeds: u64,
    start: u64,
    nodes: Option<usize>,
    ticks: Option<u64>,
    plant: Option<Plant>,
    verbose: bool,
    /// Disks wiped at any time on every seed of 3 nodes or more; only
    /// agreement is checked.
    wipes_anytime: bool,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        seeds: 200,
        start: 0,
        nodes: None,
        ticks: None,
        plant: None,
        verbose: false,
        wipes_anytime: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            it.next()
                .ok_or_else(|| format!("{name} needs a value"))?
                .parse::<u64>()
                .map_err(|e| format!("{name}: {e}"))
        };
        match a.as_str() {
            "--seeds" => args.seeds = value("--seeds")?,
            "--start" => args.start = value("--start")?,
            "--nodes" => args.nodes = Some(value("--nodes")? as usize),
            "--ticks" => args.ticks = Some(value("--ticks")?),
            "--verbose" | "-v" => args.verbose = true,
            "--wipes-anytime" => args.wipes_anytime = true,
            "--plant" => match it.next().as_deref() {
                Some("lease-in-ticks") => args.plant = Some(Plant::LeaseInTicks),
                Some("read-before-apply") => args.plant = Some(Plant::ReadBeforeApply),
                Some("ack-without-vouch") => args.plant = Some(Plant::AckWithoutVouch),
                Some("read-around-write") => args.plant = Some(Plant::ReadAroundWrite),
                Some("ignore-incarnations") => args.plant = Some(Plant::IgnoreIncarnations),
                other => return Err(format!("--plant: unknown bug {other:?}")),
            },
            "--help" | "-h" => {
                return Err("usage: sim --seeds N [--start S] [--nodes K] [--ticks T] \
                     [--plant lease-in-ticks|read-before-apply|ack-without-vouch|read-around-write|ignore-incarnations] \
                     [--verbose]"
                    .to_string());
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let (mut steps, mut commits, mut violations) = (0u64, 0u64, 0u64);
    let mut operations = 0u64;
    let mut coverage = Coverage::default();
    let mut failed_seeds = 0u64;
    let mut worst_recovery = 0u64;
    let (mut wipes, mut readded) = (0u64, 0u64);
    for seed in args.start..args.start + args.seeds {
        let nodes = args.nodes.unwrap_or_else(|| nodes_for_seed(seed));
        let mut cfg = SimConfig::for_seed(seed, nodes);
        if let Some(t) = args.ticks {
            cfg.ticks = t;
        }
        if args.wipes_anytime {
            cfg.wipes = nodes >= 3;
            cfg.wipes_anytime = true;
        }
        if let Some(plant) = args.plant {
            if plant == Plant::LeaseInTicks {
                // The planted lease bug shows only where leases serve reads.
                cfg.read_mode = ReadMode::Lease { drift_ms: 3 };
            }
            if plant == Plant::IgnoreIncarnations {
                // It shows only where disks are wiped.
                cfg.wipes = nodes >= 3;
            }
            cfg.plant = Some(plant);
        }
        let out = run(seed, cfg);
        steps += out.steps;
        commits += out.commits;
        operations += out.operations;
        coverage.add(&out.coverage);
        worst_recovery = worst_recovery.max(out.recovery_ticks.unwrap_or(0));
        wipes += out.wipes;
        readded += out.readded;
        if args.verbose {
            println!(
                "seed={seed} nodes={nodes} steps={} commits={} operations={} recovery={:?} violations={}",
                out.steps,
                out.commits,
                out.operations,
                out.recovery_ticks,
                out.violations.len()
            );
        }
        if !out.violations.is_empty() {
            violations += out.violations.len() as u64;
            failed_seeds += 1;
            println!("FAIL seed={seed} nodes={nodes}");
            for v in out.violations.iter().take(5) {
                println!("  {v}");
            }
            let ticks = args
                .ticks
                .map(|t| format!(" --ticks {t}"))
                .unwrap_or_default();
            println!(
                "  replay: cargo run --release -p synod-core --example sim -- --seeds 1 \
                 --start {seed} --nodes {nodes}{ticks} --verbose"
            );
        }
    }
    if args.verbose {
        println!("worst recovery after heal: {worst_recovery} ticks");
        println!("exercised: {coverage:?}");
        println!("disks wiped: {wipes}, wiped members re-added: {readded}");
    }
    println!(
        "seeds={} steps={steps} commits={commits} operations={operations} \
         failed_seeds={failed_seeds} violations={violations}",
        args.seeds
    );
    if violations > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
