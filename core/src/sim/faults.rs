//! The simulator's random fault schedule: crashes (some aimed at nodes
//! with writes in flight), restarts, symmetric, one-way and partial
//! partitions, the OmniPaxos partial-connectivity patterns, slow disks,
//! process pauses and forward clock jumps, membership changes and
//! leadership transfers. Every choice comes from the cluster's seeded RNG.

use super::Cluster;

impl Cluster {
    /// Random faults for one tick.
    pub(super) fn random_fault(&mut self) {
        let n = self.nodes.len();
        let kinds = if self.cfg.reconfigure { 12 } else { 10 };
        if self.cfg.pauses && self.rng.chance(0.25) {
            self.random_pause();
            return;
        }
        // Drawn only when wipes are on, so that other runs keep their
        // schedules.
        if self.cfg.wipes && self.rng.chance(0.1) {
            self.random_wipe();
            return;
        }
        match self.rng.range(0, kinds) {
            0 => {
                let i = self.rng.range(0, n as u64) as usize;
                self.crash(i);
            }
            1 => {
                // Crash a node while it has writes in flight: the window in
                // which sending before persisting would be caught.
                let busy: Vec<usize> = (0..n).filter(|&i| self.nodes[i].batch.is_some()).collect();
                if !busy.is_empty() {
                    let i = busy[self.rng.range(0, busy.len() as u64) as usize];
                    self.crash(i);
                }
            }
            2 | 3 => {
                for i in 0..n {
                    self.restart(i);
                }
            }
            4 => {
                // Symmetric partition into two random sides.
                let side: Vec<bool> = (0..n).map(|_| self.rng.chance(0.5)).collect();
                for a in 0..n {
                    for b in 0..n {
                        if side[a] != side[b] {
                            self.links[a][b] = false;
                        }
                    }
                }
            }
            5 => {
                // One-way: a random directed link goes down.
                let a = self.rng.range(0, n as u64) as usize;
                let b = self.rng.range(0, n as u64) as usize;
                self.links[a][b] = false;
            }
            6 => {
                // Partial connectivity: each pair fails with probability 1/3.
                for a in 0..n {
                    for b in a + 1..n {
                        if self.rng.chance(0.33) {
                            self.set_pair(a, b, false);
                        }
                    }
                }
            }
            7 => self.omnipaxos_pattern(),
            10 => self.random_membership_change(),
            11 => {
                if let Some(&l) = self.leaders().first()
                    && let Some(r) = self.nodes[l].replica.as_mut()
                {
                    let voters = r.membership().voters.clone();
                    let to = voters[self.rng.range(0, voters.len() as u64) as usize];
                    let _ = r.transfer_leadership(to);
                    self.turn(l);
                }
            }
            8 => {
                let i = self.rng.range(0, n as u64) as usize;
                let d = self.rng.range(0, self.cfg.max_disk_delay * 4 + 1);
                self.set_disk_delay(i, d);
            }
            _ => self.heal(),
        }
    }

    /// Pauses a node (the leader, half the time: the case a lease must
    /// survive), or jumps a node's clock forward within the drift bound.
    fn random_pause(&mut self) {
        let n = self.nodes.len();
        let leaders = self.leaders();
        let i = if !leaders.is_empty() && self.rng.chance(0.5) {
            leaders[self.rng.range(0, leaders.len() as u64) as usize]
        } else {
            self.rng.range(0, n as u64) as usize
        };
        if self.rng.chance(0.2) {
            // At most 1 ms, at most once per drift period: with the skew,
            // within the lease's drift bound.
            let node = &mut self.nodes[i];
            if self.now >= node.jumped_at + self.cfg.drift_period.max(1) {
                node.jumped_at = self.now;
                node.clock += 1;
            }
            return;
        }
        let ticks = self.rng.range(1, self.cfg.max_pause.max(1) + 1);
        self.pause(i, ticks);
    }

    /// At a leader: promote an observer or demote a voter to observer.
    fn random_membership_change(&mut self) {
        let Some(&l) = self.leaders().first() else {
            return;
        };
        let promote = self.rng.chance(0.5);
        let pick = self.rng.next_u64();
        // While a wiped member is being replaced its vote is missing: an
        // operator demotes no other voter then (it could leave too few).
        let replacing = self.nodes.iter().any(|n| n.replacing.is_some());
        let Some(r) = self.nodes[l].replica.as_mut() else {
            return;
        };
        let mut m = r.membership().clone();
        if promote && !m.observers.is_empty() {
            let o = m
                .observers
                .remove((pick % m.observers.len() as u64) as usize);
            m.voters.push(o);
        } else if m.voters.len() > 1 && !replacing {
            let v = m.voters.remove((pick % m.voters.len() as u64) as usize);
            m.observers.push(v);
        } else {
            return;
        }
        m.voters.sort_unstable();
        m.observers.sort_unstable();
        if r.propose_membership(m).is_ok() {
            self.turn(l);
        }
    }

    /// One of the OmniPaxos partial-connectivity patterns around the
    /// current leader (or node 0).
    fn omnipaxos_pattern(&mut self) {
        let n = self.nodes.len();
        if n < 3 {
            return;
        }
        let leader = self.leaders().first().copied().unwrap_or(0);
        let hub = (leader + 1 + self.rng.range(0, n as u64 - 1) as usize) % n;
        match self.rng.range(0, 3) {
            0 => {
                // Quorum loss: only the hub still reaches everyone.
                let pairs: Vec<(usize, usize)> =
                    (0..n).filter(|&j| j != hub).map(|j| (hub, j)).collect();
                self.only_links(&pairs);
            }
            1 => {
                // Constrained election: the leader is cut off entirely; the
                // hub reaches everyone, the others only the hub.
                let pairs: Vec<(usize, usize)> = (0..n)
                    .filter(|&j| j != hub && j != leader)
                    .map(|j| (hub, j))
                    .collect();
                self.only_links(&pairs);
            }
            _ => {
                // Chained: the leader and one node cannot talk directly.
                self.set_pair(leader, hub, false);
            }
        }
    }
}
