//! Wiped disks, and the operator that replaces them. A wipe crashes a node,
//! empties its disk and starts it with a new incarnation, as a pod that
//! lost its volume starts (joined to an existing ensemble). The simulated
//! operator then does what `synod-operator` and docs/operations.md do:
//! remove the member the leader reports as foreign, add it back as an
//! observer, and promote it once it has caught up, one change at a time.
//! With [`Plant::IgnoreIncarnations`] no incarnation is bound, the wiped
//! node votes at once, and agreement can break.

use super::{Cluster, Plant};

impl Cluster {
    /// Wipes a random node's disk, unless an earlier wipe is still being
    /// repaired: losing a second disk before the first is replaced can
    /// lose a majority's disks, and then refusing to go on is right.
    pub(super) fn random_wipe(&mut self) {
        // Ungated: the plant (to show what goes wrong without incarnations)
        // and `wipes_anytime` (agreement must hold whatever disks are lost,
        // however many, whenever; only progress may stop).
        let ungated = self.cfg.plant == Some(Plant::IgnoreIncarnations) || self.cfg.wipes_anytime;
        if !ungated && self.nodes.iter().any(|n| n.replacing.is_some()) {
            return;
        }
        let membership = self
            .leaders()
            .first()
            .and_then(|&l| self.nodes[l].replica.as_ref())
            .map(|r| (r.membership().clone(), r.membership_slot()));
        if !ungated {
            // Only once the ensemble has bound every member (before that a
            // wiped member cannot be told from a new one:
            // docs/consensus.md), and only where one lost disk leaves a
            // majority of voters.
            let Some((m, _)) = &membership else {
                return;
            };
            let bound = m
                .voters
                .iter()
                .chain(&m.observers)
                .all(|&id| m.incarnation(id) != 0);
            if !bound || m.voters.len() < 3 {
                return;
            }
            // Nor while any node (the leader included) holds a membership
            // change above its commit index: it may have been chosen, so phase 1 needs a majority
            // of its voters too, and the disk lost may be one of too few
            // of them (simulator seed 207464: a demotion to voters [2, 3],
            // accepted by 1 and 3 but pending at no leader, then 3 wiped;
            // no candidate could ever win). An operator checks the same
            // before it takes a member down.
            if self.nodes.iter().any(|n| {
                n.replica
                    .as_ref()
                    .is_some_and(|r| r.pending_membership().is_some())
            }) {
                return;
            }
        }
        let i = self.rng.range(0, self.nodes.len() as u64) as usize;
        if let (false, Some((m, settled))) = (ungated, &membership) {
            // And only when every other node runs and knows the membership
            // in force committed: the health an operator checks before it
            // takes a member down. A disk may of course die at any time,
            // but then whether the ensemble can go on depends on what the
            // survivors know, and the run's final liveness check could not
            // be demanded (`wipes_anytime` checks agreement alone).
            let healthy = self.nodes.iter().enumerate().all(|(j, n)| {
                j == i
                    || n.replica
                        .as_ref()
                        .is_some_and(|r| r.commit_index() >= *settled && r.membership() == m)
            });
            if !healthy {
                return;
            }
        }
        let m = membership.map(|(m, _)| m).unwrap_or_default();
        let id = self.nodes[i].id;
        let was_voter = m.is_voter(id) || !m.contains(id);
        self.crash(i);
        // The machine dies with its send buffers.
        self.net.retain(|msg| msg.from != i);
        self.wipes += 1;
        let node = &mut self.nodes[i];
        let lost = std::mem::take(&mut node.disk);
        self.lost_disks.push((id, lost));
        node.directory = (self.wipes << 40) | (id << 32) | 1;
        node.joined_existing = true;
        node.replacing = Some(was_voter);
        // A new acceptor: its promise and commit index start from nothing.
        node.seen = Default::default();
        self.restart(i);
    }

    /// One step of the simulated operator, at the leader, when no
    /// membership change is in flight: remove a member whose messages are
    /// refused for their incarnation; add any node that is no member as an
    /// observer; promote a wiped one once bound and caught up (if it was a
    /// voter).
    pub(super) fn operator_step(&mut self) {
        let Some(&l) = self.leaders().first() else {
            return;
        };
        let replacing: Vec<(u64, u64, bool)> = self
            .nodes
            .iter()
            .filter_map(|n| n.replacing.map(|voter| (n.id, n.directory, voter)))
            .collect();
        let ids: Vec<u64> = self.nodes.iter().map(|n| n.id).collect();
        let Some(r) = self.nodes[l].replica.as_mut() else {
            return;
        };
        if r.pending_membership().is_some() {
            return;
        }
        let mut m = r.membership().clone();
        // A replacement is done once the committed membership has the node
        // back in its old role, bound to its new directory.
        let done: Vec<u64> = replacing
            .iter()
            .filter(|(id, directory, voter)| {
                m.incarnation(*id) == *directory
                    && (if *voter {
                        m.voters.contains(id)
                    } else {
                        m.observers.contains(id)
                    })
            })
            .map(|(id, _, _)| *id)
            .collect();
        if let Some(&foreign) = r.foreign_members().first() {
            m.voters.retain(|&v| v != foreign);
            m.observers.retain(|&o| o != foreign);
        } else if let Some(id) = ids.iter().copied().find(|id| !m.contains(*id)) {
            // Any node that is no member (wiped and removed, or removed
            // on an older report) comes back as an observer, as the
            // operator adds every pod of its StatefulSet.
            m.observers.push(id);
        } else if let Some(&(id, _, _)) = replacing.iter().find(|(id, directory, voter)| {
            *voter && m.observers.contains(id) && m.incarnation(*id) == *directory
        }) {
            m.observers.retain(|&o| o != id);
            m.voters.push(id);
        }
        for node in self.nodes.iter_mut().filter(|n| done.contains(&n.id)) {
            node.replacing = None;
            self.readded += 1;
        }
        let Some(r) = self.nodes[l].replica.as_mut() else {
            return;
        };
        if m == *r.membership() {
            return;
        }
        m.voters.sort_unstable();
        m.observers.sort_unstable();
        if m.voters.is_empty() {
            return;
        }
        if r.propose_membership(m).is_ok() {
            self.turn(l);
        }
    }
}
