//! Incarnations: what this replica says about itself in every message (its
//! data directory's incarnation, and whether it abstains), which messages
//! it takes in judged by the claim they carry, and the leader's binding of
//! members to the incarnations they claim. A wiped voter comes back with
//! another incarnation and counts toward no quorum until it is removed and
//! re-added (docs/consensus.md, "Incarnations").

use super::*;

impl<T: Clone> Replica<T> {
    /// Whether this replica must keep out of every quorum: the membership
    /// binds its id to another incarnation (its directory was wiped after
    /// the binding), or it joined an existing ensemble on an empty
    /// directory and has not been bound yet (re-added).
    pub(super) fn abstains(&self) -> bool {
        match self.membership.incarnation(self.cfg.id) {
            0 => self.cfg.joined_existing,
            bound => bound != self.cfg.incarnation,
        }
    }

    /// A voter of the committed membership that keeps out of every quorum
    /// until it is removed and re-added (see [`Config::joined_existing`]).
    pub fn awaiting_readd(&self) -> bool {
        self.membership.is_voter(self.cfg.id) && self.abstains()
    }

    /// What this replica's messages say about it: the shell attaches it to
    /// every message it sends.
    pub fn claim(&self) -> Claim {
        Claim {
            incarnation: self.cfg.incarnation,
            abstaining: self.abstains(),
        }
    }

    /// Members whose messages of the last two election timeouts are
    /// refused for their claim (the leader's view is the one that
    /// matters): voters whose directory was wiped, which must be removed
    /// and re-added. An older claim may be from before a wipe that has
    /// since been repaired; a wiped voter speaks at least once per
    /// election timeout (it campaigns, or answers the leader).
    pub fn foreign_members(&self) -> Vec<NodeId> {
        self.claims
            .iter()
            .filter(|(id, (claim, at))| {
                self.now.saturating_sub(*at) < 2 * self.cfg.election_ms
                    && self.membership.contains(**id)
                    && !self.admits(**id, *claim)
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// The claim `id` last sent, if any.
    pub(super) fn last_claim(&self, id: NodeId) -> Option<Claim> {
        self.claims.get(&id).map(|(claim, _)| *claim)
    }

    /// Messages dropped so far because the sender's claim was not admitted.
    pub fn refused_claims(&self) -> u64 {
        self.refused_claims
    }

    /// Whether a message from `from` with `claim` is taken in (see
    /// [`Membership::admits`]), judged by the newest binding of `from`
    /// this replica holds: that of the last membership change above its
    /// commit index that binds it, else the committed one. Changes in
    /// flight count because a member may not have learned that the change
    /// binding a wiped voter committed (a restart forgets the commit
    /// index). The newest wins because a member is bound anew only after
    /// a committed change removed it (a voter keeps its binding), so an
    /// older binding is one that was superseded.
    fn admits(&self, from: NodeId, claim: Claim) -> bool {
        let newest = self
            .log
            .configs_after(self.commit)
            .filter_map(|(_, m)| match m.incarnation(from) {
                0 => None,
                bound => Some(bound),
            })
            .last();
        match newest {
            Some(bound) => bound == claim.incarnation,
            None => self.membership.admits(from, claim),
        }
    }

    /// Records `claim` as `from`'s latest and returns what `msg` may do
    /// here: all of it when the claim is admitted, else what
    /// [`Replica::refused`] leaves of it.
    pub(super) fn admit(
        &mut self,
        from: NodeId,
        claim: Claim,
        msg: Message<T>,
    ) -> Option<Message<T>> {
        self.claims.insert(from, (claim, self.now));
        if self.admits(from, claim) {
            Some(msg)
        } else {
            self.refused(from, msg)
        }
    }

    /// What is left of a message whose sender's claim is not admitted.
    /// Chosen values are taken from anyone, as a peer serves them
    /// (`Ballot::ZERO`: nothing is promised or followed): a commit index
    /// only ever covers chosen values, whoever holds it. That is also how a
    /// member whose log binds a re-added member to its old incarnation
    /// learns the change that binds the new one. Everything else (votes,
    /// a proposer's orders) is dropped; a would-be leader's accept or
    /// heartbeat is answered with a request to catch up, so that a member
    /// refusing only because it lags is sent the chosen log.
    fn refused(&mut self, from: NodeId, msg: Message<T>) -> Option<Message<T>> {
        match msg {
            Message::CatchUp { .. } => Some(msg),
            Message::Learn {
                first,
                values,
                commit,
                ..
            } => Some(Message::Learn {
                ballot: Ballot::ZERO,
                first,
                values,
                commit,
            }),
            Message::Snapshot {
                index,
                membership,
                total,
                offset,
                data,
                ..
            } => Some(Message::Snapshot {
                ballot: Ballot::ZERO,
                index,
                membership,
                total,
                offset,
                data,
            }),
            Message::Accept { .. } | Message::Heartbeat { .. } => {
                self.refused_claims += 1;
                if !self.receiving_snapshot() {
                    let commit = self.commit;
                    self.send(from, Message::CatchUp { commit });
                }
                None
            }
            _ => {
                self.refused_claims += 1;
                None
            }
        }
    }

    /// At the leader, with no membership change in flight: binds every
    /// member it can (see [`Replica::with_bindings`]) by proposing the
    /// same membership with the bindings added. The voters do not change,
    /// so the quorums of the old and new membership are the same.
    pub(super) fn bind_incarnations(&mut self) {
        if !self.leader_caught_up() {
            return;
        }
        let bound = self.with_bindings(self.membership.clone());
        // The scan for a change in flight is the costly part: only when
        // there is something to bind.
        if bound != self.membership && self.pending_membership().is_none() {
            self.propose_config(bound);
        }
    }

    /// `m` with its bindings made safe and complete:
    /// - a member that stays a voter keeps the binding it has (rebinding a
    ///   voter would let a wiped directory vote in its place);
    /// - this leader, and any voter still unbound, is bound to the
    ///   incarnation it claims unless it abstains;
    /// - an observer (which votes in nothing) and a voter that joins from
    ///   the observers are bound to the incarnation they last claimed;
    /// - bindings of non-members are dropped.
    ///
    /// Members that reported no incarnation stay as they are.
    pub(super) fn with_bindings(&self, mut m: Membership) -> Membership {
        let old = &self.membership;
        let members: Vec<NodeId> = m.voters.iter().chain(&m.observers).copied().collect();
        m.incarnations.retain(|(id, _)| members.contains(id));
        for id in members {
            let claim = if id == self.cfg.id {
                Some(self.claim())
            } else {
                self.last_claim(id)
            };
            let staying_voter = old.is_voter(id) && m.is_voter(id);
            let bound = if staying_voter {
                old.incarnation(id)
            } else {
                m.incarnation(id)
            };
            let rebindable = !m.is_voter(id) || !old.is_voter(id);
            let target = match claim {
                Some(c) if c.incarnation != 0 && (rebindable || bound == 0 && !c.abstaining) => {
                    c.incarnation
                }
                _ => bound,
            };
            m.bind(id, target);
        }
        m
    }
}
