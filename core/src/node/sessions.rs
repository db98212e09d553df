//! Session liveness at a node: who decides expiry, which keep-alives are
//! acknowledged, what a follower reports to the leader.
//!
//! The leader tracks a deadline per session ([`SessionTracker`]) from its
//! own clients' requests and from followers' reports, and decides expiry,
//! but only while it is *authoritative*: it leads and has applied everything
//! committed, including what earlier leaders committed (a Paxos leader may
//! be elected with a stale log, and its session table is then stale too);
//! the shell proposes the `CloseSession` txns it names. A follower collects
//! the sessions it heard from, reports them in rounds, and acknowledges a
//! keep-alive only while the leader's answers vouch for the session
//! ([`LivenessReports`]); a keep-alive without a vouch waits for the next
//! answer. A new leader gives every session a full timeout. See
//! docs/consensus.md, "Session liveness", for why this never tells a client
//! its session is alive after the ensemble may have expired it.
//!
//! Time is the node's monotonic clock in milliseconds, passed in as `now`.

use std::collections::BTreeMap;

use rustc_hash::FxHashSet;

use super::liveness::LivenessReports;
use crate::paxos::{MonoMs, NodeId};
use crate::session::{SessionTable, SessionTracker};
use crate::{Millis, SessionId};

/// A keep-alive waiting for the leader to vouch for its session.
pub type PingId = u64;

/// How a keep-alive is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingAnswer {
    /// The session is alive: acknowledge now.
    Alive,
    /// Wait: the answer comes as a [`Settled`] later.
    Wait(PingId),
    /// The leader has decided to expire the session (its close is on its
    /// way through the log).
    Expired,
}

/// Why a waiting keep-alive was not acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingRefusal {
    /// The leader no longer counts the session alive.
    Expired,
    /// No vouch came in time, or this node lost its leader: the client
    /// should try another member.
    Unconfirmed,
}

/// A waiting keep-alive, settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    pub id: PingId,
    pub session: SessionId,
    pub result: Result<(), PingRefusal>,
}

/// One node's view of session liveness.
#[derive(Debug)]
pub struct SessionLiveness {
    /// At the leader: every session's deadline.
    tracker: SessionTracker,
    /// At the leader: sessions whose close is on its way through the log.
    closing: FxHashSet<SessionId>,
    /// At a follower: sessions heard from since the last report.
    heard: FxHashSet<SessionId>,
    reports: LivenessReports,
    /// Keep-alives waiting for a vouch, in the order they came.
    waiting: BTreeMap<PingId, (SessionId, MonoMs)>,
    next_ping: PingId,
}

fn ms(now: MonoMs) -> Millis {
    Millis::try_from(now).unwrap_or(Millis::MAX)
}

impl SessionLiveness {
    /// Starts with every session of `sessions` alive for a full timeout
    /// from `now` (a node that becomes leader restarts the clocks anyway).
    pub fn new(drift_ppm: u64, sessions: &SessionTable, now: MonoMs) -> Self {
        let mut tracker = SessionTracker::default();
        tracker.restart_all(sessions, ms(now));
        SessionLiveness {
            tracker,
            closing: FxHashSet::default(),
            heard: FxHashSet::default(),
            reports: LivenessReports::new(drift_ppm),
            waiting: BTreeMap::new(),
            next_ping: 1,
        }
    }

    /// A request of `session` (timeout `timeout_ms`) arrived at `now`;
    /// `authoritative` says whether this node leads and has applied
    /// everything committed.
    pub fn heard(
        &mut self,
        session: SessionId,
        timeout_ms: Millis,
        authoritative: bool,
        now: MonoMs,
    ) {
        if authoritative {
            self.tracker.touch(session, timeout_ms, ms(now));
        } else {
            self.heard.insert(session);
        }
    }

    /// A keep-alive of `session` arrived at `now` (it was also
    /// [`heard`](Self::heard)). `vouching` says whether this node may vouch
    /// for sessions itself ([`super::may_vouch`]: the authoritative leader,
    /// within its lease; a leader that was paused past its lease must not
    /// answer from its own table, since a successor may have expired the
    /// session meanwhile). Any other member acknowledges only while the
    /// leader's answers vouch for the session; otherwise the keep-alive
    /// waits.
    pub fn ping(&mut self, session: SessionId, vouching: bool, now: MonoMs) -> PingAnswer {
        if self.closing.contains(&session) {
            return PingAnswer::Expired;
        }
        if vouching || self.reports.vouches(session, now) {
            return PingAnswer::Alive;
        }
        let id = self.next_ping;
        self.next_ping += 1;
        self.waiting.insert(id, (session, now));
        PingAnswer::Wait(id)
    }

    /// At a follower, at `now`: the report to send to `leader`, if there
    /// is anything to report. Keep-alives still waiting are reported again,
    /// since their last report may have been lost.
    pub fn report(&mut self, leader: NodeId, now: MonoMs) -> Option<(u64, Vec<SessionId>)> {
        self.reports.prune(now);
        self.heard.extend(self.waiting.values().map(|(s, _)| *s));
        if self.heard.is_empty() {
            return None;
        }
        let mut sessions: Vec<SessionId> = self.heard.drain().collect();
        sessions.sort_unstable();
        let round = self.reports.report(leader, sessions.clone(), now);
        Some((round, sessions))
    }

    /// At the leader, at `now`: a follower's report of `sessions`; `open`
    /// is the leader's session table. Answered (with the sessions it no
    /// longer counts alive) only when `may_vouch` ([`super::may_vouch`]).
    pub fn on_report(
        &mut self,
        sessions: Vec<SessionId>,
        open: &SessionTable,
        may_vouch: bool,
        now: MonoMs,
    ) -> Option<Vec<SessionId>> {
        if !may_vouch {
            return None;
        }
        let mut expired = Vec::new();
        for session in sessions {
            match open.get(session) {
                Some(info) if !self.closing.contains(&session) => {
                    self.tracker.touch(session, info.timeout_ms, ms(now));
                }
                _ => expired.push(session),
            }
        }
        Some(expired)
    }

    /// At a follower, at `now`: `from` answered report `round`; `open` is
    /// this node's session table (for the sessions' timeouts). Returns the
    /// keep-alives it settled.
    pub fn on_answer(
        &mut self,
        from: NodeId,
        round: u64,
        expired: &[SessionId],
        open: &SessionTable,
        now: MonoMs,
    ) -> Vec<Settled> {
        let timeout_of = |s| open.get(s).map(|info| info.timeout_ms);
        if self
            .reports
            .answered(from, round, expired, timeout_of)
            .is_none()
        {
            return Vec::new();
        }
        let reports = &self.reports;
        settle(&mut self.waiting, |session| {
            if expired.contains(&session) {
                Some(Err(PingRefusal::Expired))
            } else if reports.vouches(session, now) {
                Some(Ok(()))
            } else {
                None
            }
        })
    }

    /// At the authoritative leader, at `now`: sessions whose deadline passed and whose
    /// close is not under way yet. They are marked closing; the shell
    /// proposes their close and calls [`close_failed`](Self::close_failed)
    /// if it does not commit.
    pub fn to_expire(&mut self, now: MonoMs) -> Vec<SessionId> {
        let expired: Vec<SessionId> = self
            .tracker
            .expired(ms(now))
            .into_iter()
            .filter(|s| !self.closing.contains(s))
            .collect();
        self.closing.extend(expired.iter().copied());
        self.heard.clear();
        expired
    }

    /// The close of `session` did not happen (the proposal failed): the
    /// next tick may try again.
    pub fn close_failed(&mut self, session: SessionId) {
        self.closing.remove(&session);
    }

    /// A session opened (its creation applied) at `now`.
    pub fn opened(&mut self, session: SessionId, timeout_ms: Millis, now: MonoMs) {
        self.tracker.touch(session, timeout_ms, ms(now));
    }

    /// A session ended (its close applied).
    pub fn closed(&mut self, session: SessionId) {
        self.tracker.forget(session);
        self.closing.remove(&session);
        self.reports.forget(session);
    }

    /// This node became the authoritative leader at `now` (it leads and has
    /// applied everything committed): every session gets a full timeout, as
    /// a new ZooKeeper leader gives. Its waiting keep-alives are answered by
    /// [`vouching`](Self::vouching) once its lease holds.
    pub fn became_leader(&mut self, sessions: &SessionTable, now: MonoMs) {
        self.restart(sessions, now);
    }

    /// The session table was replaced (a snapshot installed) at `now`.
    pub fn restart(&mut self, sessions: &SessionTable, now: MonoMs) {
        self.tracker.restart_all(sessions, ms(now));
        self.closing.retain(|s| sessions.contains(*s));
    }

    /// This node may vouch for sessions now (it is the authoritative leader
    /// within its lease): the waiting keep-alives of open sessions are
    /// acknowledged, the others refused.
    pub fn vouching(&mut self, sessions: &SessionTable) -> Vec<Settled> {
        if self.waiting.is_empty() {
            return Vec::new();
        }
        let closing = &self.closing;
        settle(&mut self.waiting, |session| {
            Some(
                if sessions.contains(session) && !closing.contains(&session) {
                    Ok(())
                } else {
                    Err(PingRefusal::Expired)
                },
            )
        })
    }

    /// This node lost contact with its leader: no waiting keep-alive can be
    /// vouched for here.
    pub fn lost_leader(&mut self) -> Vec<Settled> {
        settle(&mut self.waiting, |_| Some(Err(PingRefusal::Unconfirmed)))
    }

    /// Keep-alives that waited longer than `timeout_ms` at `now`.
    pub fn expire_waiting(&mut self, now: MonoMs, timeout_ms: u64) -> Vec<Settled> {
        let late: Vec<PingId> = self
            .waiting
            .iter()
            .filter(|(_, (_, asked))| now.saturating_sub(*asked) > timeout_ms)
            .map(|(id, _)| *id)
            .collect();
        let mut settled = Vec::new();
        for id in late {
            if let Some((session, _)) = self.waiting.remove(&id) {
                settled.push(Settled {
                    id,
                    session,
                    result: Err(PingRefusal::Unconfirmed),
                });
            }
        }
        settled
    }

    /// Keep-alives waiting for a vouch.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

/// Settles the waiting keep-alives `decide` has an answer for, in the order
/// they came.
fn settle(
    waiting: &mut BTreeMap<PingId, (SessionId, MonoMs)>,
    decide: impl Fn(SessionId) -> Option<Result<(), PingRefusal>>,
) -> Vec<Settled> {
    let mut settled = Vec::new();
    waiting.retain(|id, (session, _)| match decide(*session) {
        Some(result) => {
            settled.push(Settled {
                id: *id,
                session: *session,
                result,
            });
            false
        }
        None => true,
    });
    settled
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Millis = 4_000;

    fn table(sessions: &[SessionId]) -> SessionTable {
        let mut t = SessionTable::default();
        for s in sessions {
            t.open(*s, T);
        }
        t
    }

    #[test]
    fn the_leader_expires_a_session_nobody_reports() {
        let mut l = SessionLiveness::new(0, &table(&[7, 8]), 0);
        l.heard(7, T, true, 3_000);
        assert_eq!(l.to_expire(3_999), Vec::<SessionId>::new());
        assert_eq!(l.to_expire(4_000), vec![8]);
        // Decided: its keep-alives are refused from now on.
        assert_eq!(l.ping(8, true, 4_001), PingAnswer::Expired);
        // Marked closing: not named twice, and reported as expired.
        assert_eq!(l.to_expire(5_000), Vec::<SessionId>::new());
        assert_eq!(
            l.on_report(vec![8], &table(&[7, 8]), true, 5_000),
            Some(vec![8])
        );
        assert_eq!(l.to_expire(7_000), vec![7]);
    }

    #[test]
    fn a_report_keeps_a_session_alive_at_the_leader_only_while_it_may_vouch() {
        let mut l = SessionLiveness::new(0, &table(&[7]), 0);
        assert_eq!(l.on_report(vec![7], &table(&[7]), false, 3_000), None);
        assert_eq!(
            l.to_expire(4_000),
            vec![7],
            "an unanswered report counts for nothing"
        );
        let mut l = SessionLiveness::new(0, &table(&[7]), 0);
        assert_eq!(
            l.on_report(vec![7], &table(&[7]), true, 3_000),
            Some(vec![])
        );
        assert_eq!(l.to_expire(6_999), Vec::<SessionId>::new());
    }

    #[test]
    fn a_follower_acknowledges_only_what_the_leader_vouches_for() {
        let mut f = SessionLiveness::new(0, &table(&[7]), 0);
        f.heard(7, T, false, 100);
        let PingAnswer::Wait(id) = f.ping(7, false, 100) else {
            panic!("no vouch yet: the keep-alive waits");
        };
        let (round, sessions) = f.report(1, 200).expect("something to report");
        assert_eq!(sessions, vec![7]);
        assert_eq!(
            f.on_answer(1, round, &[], &table(&[7]), 210),
            vec![Settled {
                id,
                session: 7,
                result: Ok(())
            }]
        );
        // Vouched until the report's send time plus the timeout (less 1 ms).
        assert_eq!(f.ping(7, false, 4_198), PingAnswer::Alive);
        assert!(matches!(f.ping(7, false, 4_199), PingAnswer::Wait(_)));
    }

    #[test]
    fn an_expired_session_is_refused_and_a_lost_leader_settles_the_rest() {
        let mut f = SessionLiveness::new(0, &table(&[7, 8]), 0);
        let PingAnswer::Wait(a) = f.ping(7, false, 0) else {
            panic!("waits");
        };
        let PingAnswer::Wait(b) = f.ping(8, false, 0) else {
            panic!("waits");
        };
        let (round, _) = f.report(1, 10).expect("report");
        let settled = f.on_answer(1, round, &[7], &table(&[8]), 20);
        assert_eq!(
            settled,
            vec![
                Settled {
                    id: a,
                    session: 7,
                    result: Err(PingRefusal::Expired)
                },
                Settled {
                    id: b,
                    session: 8,
                    result: Ok(())
                }
            ]
        );
        let PingAnswer::Wait(c) = f.ping(7, false, 30) else {
            panic!("no vouch for an expired session");
        };
        assert_eq!(
            f.lost_leader(),
            vec![Settled {
                id: c,
                session: 7,
                result: Err(PingRefusal::Unconfirmed)
            }]
        );
    }

    #[test]
    fn a_new_leader_restarts_clocks_and_acknowledges_waiting_keep_alives() {
        let sessions = table(&[7]);
        let mut n = SessionLiveness::new(0, &sessions, 0);
        let PingAnswer::Wait(id) = n.ping(7, false, 100) else {
            panic!("waits");
        };
        n.became_leader(&sessions, 5_000);
        assert_eq!(
            n.vouching(&sessions),
            vec![Settled {
                id,
                session: 7,
                result: Ok(())
            }]
        );
        assert_eq!(n.to_expire(8_999), Vec::<SessionId>::new());
        assert_eq!(n.to_expire(9_000), vec![7]);
    }

    #[test]
    fn keep_alives_that_wait_too_long_are_refused() {
        let mut f = SessionLiveness::new(0, &table(&[7]), 0);
        let PingAnswer::Wait(id) = f.ping(7, false, 0) else {
            panic!("waits");
        };
        assert_eq!(f.expire_waiting(1_000, 1_000), vec![]);
        assert_eq!(
            f.expire_waiting(1_001, 1_000),
            vec![Settled {
                id,
                session: 7,
                result: Err(PingRefusal::Unconfirmed)
            }]
        );
        assert_eq!(f.waiting(), 0);
    }
}
