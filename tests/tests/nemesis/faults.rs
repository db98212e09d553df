//! The nemesis of the mixed run: which fault starts when, at whom, and
//! how each is undone (the mechanics are the harness's `Faults`).

use super::*;

// ---------------------------------------------------------------------
// The nemesis.

/// A fault in force, and how to undo it.
#[derive(Debug)]
struct Active {
    until: Instant,
    undo: Undo,
    what: String,
}

#[derive(Debug)]
enum Undo {
    Resume(usize),
    Restart(usize),
    Heal(Vec<(usize, usize)>),
}

/// Injects faults for `secs` seconds, then undoes every one.
pub(super) async fn nemesis(ensemble: &mut Ensemble, shared: &Shared, secs: u64) {
    let mut rng = Rng::fork(shared.seed, 0);
    let mut faults = Faults::new();
    let mut active: Vec<Active> = Vec::new();
    let end = Instant::now() + Duration::from_secs(secs);
    let mut next = Instant::now() + rng.millis(500, 1000);
    while Instant::now() < end {
        let now = Instant::now();
        let (due, rest): (Vec<Active>, Vec<Active>) =
            active.into_iter().partition(|a| a.until <= now);
        active = rest;
        for fault in due {
            undo(ensemble, &mut faults, shared, fault);
        }
        if now >= next {
            if active.len() < 2 {
                let fault = start_fault(ensemble, &mut faults, shared, &mut rng).await;
                shared.book().faults += 1;
                active.push(fault);
            }
            next = Instant::now() + rng.millis(1000, 2000);
        }
        let wake = active
            .iter()
            .map(|a| a.until)
            .chain([next, end])
            .min()
            .unwrap_or(end);
        tokio::time::sleep_until(wake.min(Instant::now() + Duration::from_millis(100)).into())
            .await;
    }
    for fault in active {
        undo(ensemble, &mut faults, shared, fault);
    }
    if let Err(error) = blocking(|| faults.heal_all(ensemble)) {
        fail(shared, &[format!("healing the ensemble: {error:#}")]);
    }
    shared.event("nemesis: every fault undone".into());
}

/// Picks a fault, applies it and returns how to undo it. At most one
/// node is paused or killed at a time, so two nodes stay up.
async fn start_fault(
    ensemble: &mut Ensemble,
    faults: &mut Faults,
    shared: &Shared,
    rng: &mut Rng,
) -> Active {
    let ids = ensemble.ids();
    let up: Vec<usize> = ids
        .iter()
        .copied()
        .filter(|&id| !faults.is_down(id))
        .collect();
    let leader = leader_now(ensemble, &up).await;
    let leader_or_any = |rng: &mut Rng| leader.unwrap_or_else(|| rng.pick(&up));
    let process_fault = faults.down().is_empty();
    let roll = if process_fault {
        rng.below(100)
    } else {
        // Link faults only.
        60 + rng.below(40)
    };
    let other = |rng: &mut Rng, of: usize| {
        let others: Vec<usize> = ids.iter().copied().filter(|&id| id != of).collect();
        rng.pick(&others)
    };
    let (undo, what, lasts) = match roll {
        0..35 => {
            // Pause the leader, or (one time in three) a follower.
            let target = if rng.below(3) == 0 {
                let followers: Vec<usize> = up
                    .iter()
                    .copied()
                    .filter(|&id| Some(id) != leader)
                    .collect();
                rng.pick(&followers)
            } else {
                leader_or_any(rng)
            };
            let lasts = rng.millis(1500, 4000);
            if let Err(error) = blocking(|| faults.pause(ensemble, target)) {
                fail(shared, &[format!("pausing node {target}: {error:#}")]);
            }
            let role = role_of(target, leader);
            (Undo::Resume(target), format!("pause {role}"), lasts)
        }
        35..60 => {
            let target = if rng.below(2) == 0 {
                leader_or_any(rng)
            } else {
                rng.pick(&up)
            };
            let lasts = rng.millis(500, 3000);
            if let Err(error) = blocking(|| faults.kill(ensemble, target)) {
                fail(shared, &[format!("killing node {target}: {error:#}")]);
            }
            let role = role_of(target, leader);
            (Undo::Restart(target), format!("kill -9 {role}"), lasts)
        }
        60..80 => {
            let target = if rng.below(2) == 0 {
                leader_or_any(rng)
            } else {
                rng.pick(&ids)
            };
            let others: Vec<usize> = ids.iter().copied().filter(|&id| id != target).collect();
            let links = links_between(&[target], &others);
            faults.cut(ensemble, &links);
            let role = role_of(target, leader);
            let what = format!("isolate {role}");
            (Undo::Heal(links), what, rng.millis(2000, 4000))
        }
        80..90 => {
            let a = rng.pick(&ids);
            let b = other(rng, a);
            let links = links_between(&[a], &[b]);
            faults.cut(ensemble, &links);
            let what = format!("cut link {a}<->{b}");
            (Undo::Heal(links), what, rng.millis(2000, 4000))
        }
        _ => {
            // One direction only, from the leader half the time: it can
            // still hear its followers but they no longer hear it.
            let from = if rng.below(2) == 0 {
                leader_or_any(rng)
            } else {
                rng.pick(&ids)
            };
            let to = other(rng, from);
            faults.cut(ensemble, &[(from, to)]);
            let what = format!("cut link {from}->{to}");
            (Undo::Heal(vec![(from, to)]), what, rng.millis(2000, 4000))
        }
    };
    shared.event(format!(
        "nemesis: {what} for {:.1} s (leader was {leader:?})",
        lasts.as_secs_f64()
    ));
    Active {
        until: Instant::now() + lasts,
        undo,
        what,
    }
}

fn role_of(id: usize, leader: Option<usize>) -> String {
    if Some(id) == leader {
        format!("leader {id}")
    } else {
        format!("node {id}")
    }
}

fn undo(ensemble: &mut Ensemble, faults: &mut Faults, shared: &Shared, fault: Active) {
    let result = match &fault.undo {
        Undo::Resume(id) => blocking(|| faults.resume(*id)),
        Undo::Restart(id) => blocking(|| faults.restart(ensemble, *id)),
        Undo::Heal(links) => {
            faults.heal(ensemble, links);
            Ok(())
        }
    };
    if let Err(error) = result {
        fail(shared, &[format!("undoing {}: {error:#}", fault.what)]);
    }
    shared.event(format!("nemesis: undo {}", fault.what));
}

// ---------------------------------------------------------------------
// Set-up and the end of a run.
