//! Sessions: the replicated table of open sessions with their negotiated
//! timeouts, and the liveness tracker that decides from heartbeat times
//! (passed in, never read from a clock) which sessions have expired.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use crate::{Millis, SessionId};

/// Bounds on sessions, as ZooKeeper's min/max session timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionLimits {
    pub min_timeout_ms: Millis,
    pub max_timeout_ms: Millis,
    pub max_sessions: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            min_timeout_ms: 4_000,
            max_timeout_ms: 40_000,
            max_sessions: 100_000,
        }
    }
}

impl SessionLimits {
    /// The timeout a session gets for the one it asked for.
    pub fn negotiate(&self, requested_ms: Millis) -> Millis {
        requested_ms.clamp(self.min_timeout_ms, self.max_timeout_ms)
    }
}

/// The secret a client shows to re-attach its session, on any member.
/// Minted from OS randomness by the member that proposes the session and
/// replicated in its create txn, so every member can check it (ZooKeeper
/// derives it from the session id instead, which anyone can recompute).
pub type SessionPassword = [u8; 16];

/// An open session, as every replica knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionInfo {
    pub timeout_ms: Millis,
    pub password: SessionPassword,
}

/// Open sessions, replicated through the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionTable {
    sessions: BTreeMap<SessionId, SessionInfo>,
}

impl SessionTable {
    /// Opens a session with an all-zero password (tests, simulations).
    pub fn open(&mut self, id: SessionId, timeout_ms: Millis) {
        self.open_with_password(id, timeout_ms, SessionPassword::default());
    }

    pub fn open_with_password(
        &mut self,
        id: SessionId,
        timeout_ms: Millis,
        password: SessionPassword,
    ) {
        self.sessions.insert(
            id,
            SessionInfo {
                timeout_ms,
                password,
            },
        );
    }

    pub fn close(&mut self, id: SessionId) -> Option<SessionInfo> {
        self.sessions.remove(&id)
    }

    pub fn get(&self, id: SessionId) -> Option<SessionInfo> {
        self.sessions.get(&id).copied()
    }

    pub fn contains(&self, id: SessionId) -> bool {
        self.sessions.contains_key(&id)
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (SessionId, SessionInfo)> + '_ {
        self.sessions.iter().map(|(id, info)| (*id, *info))
    }
}

/// Tracks when each session was last heard from and decides expiry. It lives
/// on the node that decides (the leader); a new leader starts every clock
/// afresh with [`SessionTracker::restart_all`].
#[derive(Debug, Default)]
pub struct SessionTracker {
    deadlines: FxHashMap<SessionId, Millis>,
}

impl SessionTracker {
    /// Records a sign of life: the session lives until `now + timeout`.
    pub fn touch(&mut self, id: SessionId, timeout_ms: Millis, now: Millis) {
        self.deadlines.insert(id, now.saturating_add(timeout_ms));
    }

    pub fn forget(&mut self, id: SessionId) {
        self.deadlines.remove(&id);
    }

    /// Gives every open session a full timeout from `now`.
    pub fn restart_all(&mut self, table: &SessionTable, now: Millis) {
        self.deadlines = table
            .iter()
            .map(|(id, info)| (id, now.saturating_add(info.timeout_ms)))
            .collect();
    }

    /// Sessions whose deadline has passed at `now`, in id order. They stay
    /// tracked until closed, so the caller may ask again.
    pub fn expired(&self, now: Millis) -> Vec<SessionId> {
        let mut out: Vec<SessionId> = self
            .deadlines
            .iter()
            .filter(|(_, deadline)| **deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        out.sort_unstable();
        out
    }

    pub fn len(&self) -> usize {
        self.deadlines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.deadlines.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_clamps_into_bounds() {
        let limits = SessionLimits::default();
        assert_eq!(limits.negotiate(100), 4_000);
        assert_eq!(limits.negotiate(10_000), 10_000);
        assert_eq!(limits.negotiate(1_000_000), 40_000);
    }

    #[test]
    fn expiry_follows_heartbeats() {
        let mut tracker = SessionTracker::default();
        tracker.touch(1, 1_000, 0);
        tracker.touch(2, 5_000, 0);
        assert!(tracker.expired(999).is_empty());
        assert_eq!(tracker.expired(1_000), [1]);
        tracker.touch(1, 1_000, 900);
        assert!(tracker.expired(1_500).is_empty());
        assert_eq!(tracker.expired(5_000), [1, 2]);
        tracker.forget(1);
        assert_eq!(tracker.expired(5_000), [2]);
    }

    #[test]
    fn restart_gives_every_session_a_full_timeout() {
        let mut table = SessionTable::default();
        table.open(1, 1_000);
        table.open(2, 2_000);
        let mut tracker = SessionTracker::default();
        tracker.restart_all(&table, 10_000);
        assert!(tracker.expired(10_999).is_empty());
        assert_eq!(tracker.expired(11_000), [1]);
    }
}
