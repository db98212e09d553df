//! Session liveness at a member that is not the leader: which of its
//! clients' keep-alives it may acknowledge.
//!
//! Only the leader decides when a session expires. A follower reports the
//! sessions its clients were heard from in numbered rounds; the leader
//! answers each round, naming the sessions of it that it no longer counts
//! alive. A session the leader counted alive when round `r` arrived cannot
//! expire there before `sent_at(r) + timeout`, because the report arrived
//! after it was sent. The follower therefore *vouches* for the session
//! until that time, shortened by the clock drift bound, and acknowledges a
//! keep-alive only while it does. A follower cut off from the leader gets
//! no answers, its vouches run out within one session timeout, and it stops
//! telling clients their sessions are alive, so they move to another member
//! before the ensemble can expire them. (ZooKeeper bounds the same window
//! by dropping a follower's clients after `syncLimit` ticks without its
//! leader.)
//!
//! The leader must answer a round only while its lease holds: a deposed
//! leader that still answers could vouch past the point where its successor,
//! which restarts every session's clock when it is elected, expires the
//! session. With the lease, a successor is elected only after the answer,
//! and gives the session a full timeout from then.
//!
//! Time is the node's monotonic clock, passed in as `now`; this module
//! reads no clock.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use crate::paxos::{MonoMs, NodeId};
use crate::{Millis, SessionId};

/// Unanswered rounds kept; older ones are forgotten (their answers, if
/// they ever come, vouch for nothing).
const MAX_ROUNDS_IN_FLIGHT: usize = 64;

/// One report to the leader, waiting for its answer.
#[derive(Debug)]
struct Round {
    round: u64,
    sent_at: MonoMs,
    leader: NodeId,
    sessions: Vec<SessionId>,
}

/// A follower's reports of session liveness and the leader's vouches.
#[derive(Debug)]
pub struct LivenessReports {
    next_round: u64,
    in_flight: VecDeque<Round>,
    /// Until when (exclusive) the leader's answers vouch for each session.
    vouched: FxHashMap<SessionId, MonoMs>,
    /// Clock drift bound, in parts per million of a session timeout.
    drift_ppm: u64,
}

/// What the leader's answer to a round settled.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Answered {
    /// Sessions of the round the leader no longer counts alive.
    pub expired: Vec<SessionId>,
}

impl LivenessReports {
    pub fn new(drift_ppm: u64) -> Self {
        LivenessReports {
            next_round: 1,
            in_flight: VecDeque::new(),
            vouched: FxHashMap::default(),
            drift_ppm,
        }
    }

    /// Records a report of `sessions` sent to `leader` at `now` (read
    /// before the report leaves, never after) and returns its round.
    pub fn report(&mut self, leader: NodeId, sessions: Vec<SessionId>, now: MonoMs) -> u64 {
        let round = self.next_round;
        self.next_round += 1;
        self.in_flight.push_back(Round {
            round,
            sent_at: now,
            leader,
            sessions,
        });
        while self.in_flight.len() > MAX_ROUNDS_IN_FLIGHT {
            self.in_flight.pop_front();
        }
        round
    }

    /// `from` answered `round`, naming the sessions of it that it no
    /// longer counts alive. `timeout_of` gives a session's negotiated
    /// timeout (`None` for a session this node no longer knows). Returns
    /// `None` when the answer matches no round sent to `from` (late,
    /// duplicated, or from another node).
    pub fn answered(
        &mut self,
        from: NodeId,
        round: u64,
        expired: &[SessionId],
        timeout_of: impl Fn(SessionId) -> Option<Millis>,
    ) -> Option<Answered> {
        let at = self.in_flight.iter().position(|r| r.round == round)?;
        if self.in_flight[at].leader != from {
            return None;
        }
        // Rounds are answered in order; earlier unanswered ones were lost.
        let report = self.in_flight.drain(..=at).next_back()?;
        let mut answered = Answered::default();
        for session in report.sessions {
            if expired.contains(&session) {
                self.vouched.remove(&session);
                answered.expired.push(session);
                continue;
            }
            let Some(timeout) = timeout_of(session).and_then(|t| u64::try_from(t).ok()) else {
                continue;
            };
            let margin = timeout.saturating_mul(self.drift_ppm) / 1_000_000 + 1;
            let until = report.sent_at + timeout.saturating_sub(margin);
            let entry = self.vouched.entry(session).or_insert(until);
            *entry = (*entry).max(until);
        }
        Some(answered)
    }

    /// Whether the leader's answers vouch for `session` at `now`.
    pub fn vouches(&self, session: SessionId, now: MonoMs) -> bool {
        self.vouched.get(&session).is_some_and(|until| now < *until)
    }

    /// Forgets a session that ended.
    pub fn forget(&mut self, session: SessionId) {
        self.vouched.remove(&session);
    }

    /// Drops vouches that ran out by `now`, so the map holds only live
    /// sessions.
    pub fn prune(&mut self, now: MonoMs) {
        self.vouched.retain(|_, until| now < *until);
    }

    /// Sessions with a vouch, for tests and status.
    pub fn vouched_count(&self) -> usize {
        self.vouched.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Millis = 4_000;

    fn timeout(_: SessionId) -> Option<Millis> {
        Some(T)
    }

    #[test]
    fn an_answered_round_vouches_for_a_timeout_from_when_it_was_sent() {
        let mut l = LivenessReports::new(10_000);
        assert!(!l.vouches(7, 0), "nothing vouched before any answer");
        let round = l.report(1, vec![7, 8], 1_000);
        assert!(
            !l.vouches(7, 1_001),
            "an unanswered round vouches for nothing"
        );
        let answered = l.answered(1, round, &[8], timeout).expect("round matches");
        assert_eq!(answered.expired, vec![8]);
        // 4,000 ms from the send, less 1% and 1 ms of drift margin.
        assert!(l.vouches(7, 1_000 + 3_958));
        assert!(!l.vouches(7, 1_000 + 3_959));
        assert!(!l.vouches(8, 1_001), "the leader expired it");
    }

    #[test]
    fn answers_from_another_node_or_unknown_rounds_are_ignored() {
        let mut l = LivenessReports::new(0);
        let round = l.report(1, vec![7], 0);
        assert_eq!(l.answered(2, round, &[], timeout), None);
        assert_eq!(l.answered(1, round + 1, &[], timeout), None);
        assert!(!l.vouches(7, 1));
        assert!(l.answered(1, round, &[], timeout).is_some());
        assert!(l.vouches(7, 1));
        // A duplicate of the same answer matches nothing any more.
        assert_eq!(l.answered(1, round, &[], timeout), None);
    }

    #[test]
    fn a_cut_off_follower_stops_vouching_within_one_timeout() {
        let mut l = LivenessReports::new(0);
        let round = l.report(1, vec![7], 0);
        l.answered(1, round, &[], timeout);
        // The link to the leader goes down: rounds go unanswered.
        for t in (200..10_000).step_by(200) {
            l.report(1, vec![7], t);
            assert_eq!(l.vouches(7, t), t < T as u64 - 1, "at {t}");
        }
    }

    #[test]
    fn a_later_answer_of_an_earlier_round_does_not_shorten_a_vouch() {
        let mut l = LivenessReports::new(0);
        let first = l.report(1, vec![7], 0);
        let second = l.report(1, vec![7], 1_000);
        l.answered(1, second, &[], timeout);
        // The first round's answer is older than the second's: dropped.
        assert_eq!(l.answered(1, first, &[], timeout), None);
        assert!(l.vouches(7, 4_000));
    }

    #[test]
    fn forgetting_and_pruning_drop_vouches() {
        let mut l = LivenessReports::new(0);
        let round = l.report(1, vec![7, 8], 0);
        l.answered(1, round, &[], timeout);
        l.forget(7);
        assert!(!l.vouches(7, 1));
        l.prune(T as u64);
        assert_eq!(l.vouched_count(), 0);
    }

    #[test]
    fn unanswered_rounds_are_bounded() {
        let mut l = LivenessReports::new(0);
        let first = l.report(1, vec![7], 0);
        for t in 1..=MAX_ROUNDS_IN_FLIGHT as u64 {
            l.report(1, vec![7], t);
        }
        assert_eq!(l.in_flight.len(), MAX_ROUNDS_IN_FLIGHT);
        assert_eq!(l.answered(1, first, &[], timeout), None);
    }
}
