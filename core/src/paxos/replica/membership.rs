//! Membership: proposing a change (one voter at a time), installing a
//! committed change, the membership at a slot, and the leader's peer table.

use super::*;

impl<T: Clone> Replica<T> {
    /// Proposes a membership change (at the leader). One voter is added
    /// or removed at a time; an added voter must be an observer that has
    /// caught up. Nothing else is proposed until the change commits; it
    /// governs every slot after its own.
    pub fn propose_membership(&mut self, mut m: Membership) -> Result<Slot, PaxosError> {
        // The caller may start from the current membership: bindings of
        // members it leaves out go with them.
        let members: Vec<NodeId> = m.voters.iter().chain(&m.observers).copied().collect();
        m.incarnations.retain(|(id, _)| members.contains(id));
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
        let m = self.with_bindings(m);
        Ok(self.propose_config(m))
    }

    /// Proposes membership `m` (already checked) in the next slot.
    pub(super) fn propose_config(&mut self, m: Membership) -> Slot {
        let first = match &self.state {
            State::Leader(l) => l.next_slot,
            _ => return 0,
        };
        self.start_phase2(first, vec![Value::Config(Box::new(m))]);
        if let State::Leader(l) = &mut self.state {
            l.pending_config = first;
        }
        self.sync_peers(&[]);
        first
    }

    pub(super) fn bit_for(&mut self, id: NodeId) -> u32 {
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
    pub(super) fn install_membership(&mut self, slot: Slot, m: Membership) {
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

    /// The slot at which the membership in force was committed (0 for the
    /// initial one).
    pub fn membership_slot(&self) -> Slot {
        self.history.last().map_or(0, |(slot, _)| *slot)
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
    pub(super) fn prune_history(&mut self) {
        let base = self.snapshot.as_ref().map_or(0, |s| s.index);
        let keep_from = self
            .history
            .iter()
            .rposition(|(s, _)| *s <= base)
            .unwrap_or(0);
        self.history.drain(..keep_from);
    }

    /// Installs the last membership change among the newly committed slots.
    pub(super) fn committed(&mut self, old: Slot, new: Slot) {
        let found = self
            .log
            .configs_after(old)
            .take_while(|(s, _)| *s <= new)
            .last()
            .map(|(s, m)| (s, m.clone()));
        if let Some((s, m)) = found {
            self.install_membership(s, m);
        }
    }

    /// The leader sends to every member of the committed membership and of
    /// any membership change in flight, plus `extra`.
    pub(super) fn sync_peers(&mut self, extra: &[NodeId]) {
        let mut ids: Vec<NodeId> = self
            .membership
            .voters
            .iter()
            .chain(&self.membership.observers)
            .chain(extra)
            .copied()
            .collect();
        for (_, m) in self.log.configs_after(self.commit) {
            ids.extend(m.voters.iter().chain(&m.observers));
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
}
