//! A wiped voter does not vote: the leader binds every member to the
//! incarnation it claims, and a member that comes back with another one
//! counts toward no quorum until it is removed and re-added. Run over a
//! small lossless network of three replicas that checks, at every `Apply`,
//! that no slot is ever applied with two different values.

use std::collections::BTreeMap;

use super::*;

/// Three replicas (ids 1, 2, 3) on a network that delivers every message
/// at once to the nodes that are up, and disks that are durable at once.
struct Net {
    replicas: Vec<Option<Replica<&'static str>>>,
    disks: Vec<Durable<&'static str>>,
    /// Whether messages carry the sender's claim. Without claims nothing
    /// is ever bound: the replica as it was before incarnations.
    claims: bool,
    now: MonoMs,
    /// Every value applied anywhere, by slot.
    chosen: BTreeMap<Slot, Value<&'static str>>,
    conflict: Option<String>,
}

fn config(id: NodeId, incarnation: u64, joined_existing: bool) -> Config {
    let mut c = cfg(id, 3);
    c.incarnation = incarnation;
    c.joined_existing = joined_existing;
    c
}

impl Net {
    fn new(claims: bool) -> Net {
        // Without claims the replicas have no incarnation either.
        let incarnation = |id| if claims { 100 + id } else { 0 };
        let replicas = (1..=3)
            .map(|id| Some(Replica::new(config(id, incarnation(id), false), 0).unwrap()))
            .collect();
        Net {
            replicas,
            disks: vec![Durable::default(); 3],
            claims,
            now: 0,
            chosen: BTreeMap::new(),
            conflict: None,
        }
    }

    fn r(&mut self, id: NodeId) -> &mut Replica<&'static str> {
        self.replicas[id as usize - 1].as_mut().expect("node is up")
    }

    fn down(&mut self, id: NodeId) {
        self.replicas[id as usize - 1] = None;
    }

    /// Restarts `id` from its disk.
    fn up(&mut self, id: NodeId, incarnation: u64) {
        let incarnation = if self.claims { incarnation } else { 0 };
        let disk = self.disks[id as usize - 1].clone();
        let r = Replica::restore(config(id, incarnation, false), disk, self.now).unwrap();
        self.replicas[id as usize - 1] = Some(r);
    }

    /// Wipes `id`'s disk and starts it empty with a new incarnation.
    fn wipe(&mut self, id: NodeId, incarnation: u64, joined_existing: bool) {
        let incarnation = if self.claims { incarnation } else { 0 };
        self.disks[id as usize - 1] = Durable::default();
        let r = Replica::new(config(id, incarnation, joined_existing), self.now).unwrap();
        self.replicas[id as usize - 1] = Some(r);
    }

    fn leader(&self) -> Option<NodeId> {
        self.replicas
            .iter()
            .flatten()
            .find(|r| r.role() == Role::Leader)
            .map(Replica::id)
    }

    /// Runs `ms` milliseconds: ticks every node each millisecond and
    /// delivers everything until the network is quiet.
    fn run(&mut self, ms: u64) {
        for _ in 0..ms {
            self.now += 1;
            let now = self.now;
            for r in self.replicas.iter_mut().flatten() {
                r.tick(now);
            }
            self.flush();
        }
    }

    fn flush(&mut self) {
        for _ in 0..1000 {
            let mut mail = Vec::new();
            for i in 0..3 {
                let Some(r) = self.replicas[i].as_mut() else {
                    continue;
                };
                let claim = if self.claims { r.claim() } else { Claim::NONE };
                let from = r.id();
                // Durable at once: report each batch of writes, then take
                // what that released, until nothing more is written.
                loop {
                    let mut last = 0;
                    for cmd in r.take_commands() {
                        match cmd {
                            Command::Persist(w) => {
                                self.disks[i].apply(&w);
                                last = w.token;
                            }
                            Command::Send { to, msg } => mail.push((from, claim, to, msg)),
                            Command::Apply { first, values } => {
                                for (k, v) in values.into_iter().enumerate() {
                                    let slot = first + k as Slot;
                                    match self.chosen.get(&slot) {
                                        Some(seen) if *seen != v => {
                                            self.conflict = Some(format!(
                                                "slot {slot}: node {from} applied {v:?}, another {seen:?}"
                                            ));
                                        }
                                        _ => {
                                            self.chosen.insert(slot, v);
                                        }
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                    if last == 0 {
                        break;
                    }
                    r.persisted(last);
                }
            }
            if mail.is_empty() {
                return;
            }
            let now = self.now;
            for (from, claim, to, msg) in mail {
                if let Some(r) = self.replicas[to as usize - 1].as_mut() {
                    r.step_claimed(from, claim, msg, now);
                }
            }
        }
        panic!("the network never went quiet");
    }

    /// The leader proposes `v` and the network runs until it is applied.
    fn write(&mut self, v: &'static str) -> Option<Slot> {
        let l = self.leader()?;
        let slot = self.r(l).propose(vec![v]).ok()?;
        self.run(20);
        (self.chosen.get(&slot) == Some(&Value::Data(v))).then_some(slot)
    }
}

/// Three nodes elect a leader, which binds all three incarnations; then
/// node 3 is cut off, "x" commits on nodes 1 and 2, node 1 goes down, and
/// node 2 comes back wiped (started as a fresh bootstrap member would be,
/// the worst case). Returns the network at that point.
fn wiped_beside_a_lagging_voter(claims: bool) -> Net {
    let mut net = Net::new(claims);
    net.run(200);
    let leader = net.leader().expect("a leader");
    net.r(leader).transfer_leadership(1).ok();
    net.run(100);
    assert_eq!(net.leader(), Some(1));
    net.down(3);
    assert!(net.write("x").is_some(), "x commits on nodes 1 and 2");
    net.down(1);
    net.wipe(2, 202, false);
    net.up(3, 103);
    net
}

#[test]
fn the_leader_binds_every_member_to_the_incarnation_it_claims() {
    let mut net = Net::new(true);
    net.run(200);
    assert!(net.leader().is_some());
    for id in 1..=3 {
        assert_eq!(
            net.r(id).membership().incarnations,
            vec![(1, 101), (2, 102), (3, 103)],
            "node {id}"
        );
    }
    // Without claims nothing is bound, as before incarnations existed.
    let mut net = Net::new(false);
    net.run(200);
    assert!(net.leader().is_some());
    assert!(net.r(1).membership().incarnations.is_empty());
}

#[test]
fn a_wiped_voter_and_a_lagging_one_together_commit_nothing() {
    let mut net = wiped_beside_a_lagging_voter(true);
    let before = net.r(3).commit_index();
    net.run(500);
    assert_eq!(net.leader(), None, "{}", net.r(3).summary());
    assert_eq!(net.r(3).commit_index(), before);
    // Node 2 speaks at least once per election timeout (it campaigns).
    let mut reported = false;
    for _ in 0..40 {
        net.run(1);
        reported |= net.r(3).foreign_members() == vec![2];
    }
    assert!(reported, "{}", net.r(3).summary());
    assert_eq!(net.conflict, None);
}

#[test]
fn without_incarnations_the_same_schedule_loses_a_chosen_value() {
    // The check is what saves "x": replayed with claims off, nodes 2 and 3
    // elect a leader whose phase 1 never sees "x" and choose something
    // else in its slot, which node 1 applied as "x".
    let mut net = wiped_beside_a_lagging_voter(false);
    net.run(500);
    assert!(net.leader().is_some());
    let l = net.leader().expect("a leader");
    net.r(l).propose(vec!["y"]).ok();
    net.run(50);
    net.up(1, 101);
    net.run(500);
    assert!(
        net.conflict.is_some(),
        "expected a disagreement; chosen: {:?}",
        net.chosen
    );
}

#[test]
fn a_wiped_voter_serves_again_after_it_is_removed_and_re_added() {
    let mut net = wiped_beside_a_lagging_voter(true);
    net.up(1, 101);
    net.run(300);
    let l = net.leader().expect("a leader among 1 and 3");
    assert_ne!(l, 2);
    assert_eq!(net.r(l).foreign_members(), vec![2]);

    // Remove, re-add as an observer, let it catch up, promote.
    let mut m = net.r(l).membership().clone();
    m.voters.retain(|&v| v != 2);
    let summary = net.r(l).summary();
    net.r(l).propose_membership(m.clone()).expect(&summary);
    net.run(50);
    m.observers.push(2);
    let summary = net.r(l).summary();
    net.r(l).propose_membership(m.clone()).expect(&summary);
    net.run(200);
    assert_eq!(net.r(l).membership().incarnation(2), 202);
    m.observers.clear();
    m.voters = vec![1, 2, 3];
    net.r(l).propose_membership(m).unwrap();
    net.run(200);
    assert_eq!(net.r(2).membership().incarnation(2), 202);
    assert!(!net.r(2).awaiting_readd());
    assert!(net.r(l).foreign_members().is_empty());

    // It counts again: with the other non-leader down, the leader and
    // node 2 commit.
    let other = if l == 1 { 3 } else { 1 };
    net.down(other);
    assert!(net.write("z").is_some(), "{}", net.r(l).summary());
    assert_eq!(net.conflict, None);
    assert_eq!(
        net.chosen
            .values()
            .filter(|v| **v == Value::Data("x"))
            .count(),
        1,
        "x is still chosen"
    );
}

#[test]
fn a_fresh_directory_that_joined_an_existing_ensemble_abstains_until_bound() {
    let mut net = Net::new(true);
    net.run(200);
    // Node 3's directory is lost and it restarts as the operator starts
    // it after bootstrap: joined an existing ensemble.
    net.wipe(3, 303, true);
    net.run(100);
    assert!(net.r(3).awaiting_readd());
    assert!(net.r(3).claim().abstaining);
    let l = net.leader().expect("a leader");
    assert_eq!(net.r(l).foreign_members(), vec![3]);
    assert_eq!(net.conflict, None);
}
