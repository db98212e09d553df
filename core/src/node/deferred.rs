//! A session's reads held behind its own writes (FIFO per session).
//!
//! A client may send a write and, without waiting for its answer, a read
//! on the same session. ZooKeeper answers a session's requests in the
//! order they were sent, so the read must see the write: a read of a
//! session that has txns outstanding at this node ([`WritePath`] counts
//! them) waits until the last of them is answered, and the reads that
//! waited then run in the order they arrived. A read of a session with
//! nothing outstanding (or of no session, id 0) runs at once.
//!
//! The node answers a txn of its own once it has applied it (or with an
//! error), so a read released here runs against a state that holds the
//! session's acknowledged writes. A write that fails (a timeout, a lost
//! leader) releases its reads too: its outcome is unknown, and the reads
//! are answered rather than held for ever.
//!
//! A ZooKeeper `sync` is a read barrier (the leader's commit index, applied
//! here) that the session's later reads must not overtake: while one is in
//! flight ([`DeferredReads::begin_barrier`]) the session's reads are held
//! as behind a write, and when it ends they run.
//!
//! Generic over what is held: the driver holds the read's closure, the
//! simulator its read id.

use std::collections::BTreeMap;
use std::fmt;

use crate::SessionId;
use crate::node::writes::WritePath;

/// Reads waiting for their session's outstanding txns.
pub struct DeferredReads<T> {
    held: BTreeMap<SessionId, Vec<T>>,
    /// Barriers in flight per session.
    barriers: BTreeMap<SessionId, usize>,
}

impl<T> Default for DeferredReads<T> {
    fn default() -> Self {
        DeferredReads {
            held: BTreeMap::new(),
            barriers: BTreeMap::new(),
        }
    }
}

impl<T> fmt::Debug for DeferredReads<T> {
    /// Counts only: the held reads may be closures.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} deferred reads", self.len())
    }
}

impl<T> DeferredReads<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// A read of `session` arrived: returned if it may run now; held (and
    /// `None` returned) while the session has txns outstanding in `writes`.
    pub fn admit(&mut self, writes: &WritePath, session: SessionId, read: T) -> Option<T> {
        if self.blocked(writes, session) {
            self.held.entry(session).or_default().push(read);
            None
        } else {
            Some(read)
        }
    }

    /// Whether a read of `session` must wait now: it has txns or a barrier
    /// outstanding, or reads already waiting (which go first).
    pub fn blocked(&self, writes: &WritePath, session: SessionId) -> bool {
        session != 0
            && (writes.has_outstanding(session)
                || self.barriers.contains_key(&session)
                || self.held.contains_key(&session))
    }

    /// The last outstanding txn of `session` was answered
    /// ([`crate::node::writes::Finished::session_done`]): the reads that
    /// waited for it, in the order they arrived, unless a barrier still
    /// holds them. The caller runs them in order and, should one of them
    /// start a barrier, gives the rest back with [`DeferredReads::hold_again`].
    pub fn release(&mut self, session: SessionId) -> Vec<T> {
        if self.barriers.contains_key(&session) {
            return Vec::new();
        }
        self.held.remove(&session).unwrap_or_default()
    }

    /// Reads released by [`DeferredReads::release`] or
    /// [`DeferredReads::end_barrier`] that must wait again (a read before
    /// them started a barrier or a txn): ahead of any held since.
    pub fn hold_again(&mut self, session: SessionId, reads: Vec<T>) {
        if reads.is_empty() {
            return;
        }
        let held = self.held.entry(session).or_default();
        let later = std::mem::replace(held, reads);
        held.extend(later);
    }

    /// A barrier of `session` started: the session's reads admitted from
    /// now on wait until it ends.
    pub fn begin_barrier(&mut self, session: SessionId) {
        if session != 0 {
            *self.barriers.entry(session).or_default() += 1;
        }
    }

    /// A barrier of `session` ended (answered or failed): the reads that
    /// waited for it, in order, if nothing else holds them.
    pub fn end_barrier(&mut self, writes: &WritePath, session: SessionId) -> Vec<T> {
        if let Some(count) = self.barriers.get_mut(&session) {
            *count -= 1;
            if *count == 0 {
                self.barriers.remove(&session);
            }
        }
        if writes.has_outstanding(session) {
            return Vec::new();
        }
        self.release(session)
    }

    /// Reads held.
    pub fn len(&self) -> usize {
        self.held.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty() && self.barriers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::Identity;
    use crate::txn::{Txn, WriteOp};

    fn set(session: SessionId) -> Txn {
        Txn::Write {
            session,
            identity: Identity::anonymous(),
            op: WriteOp::SetData {
                path: "/k".into(),
                data: None,
                version: -1,
            },
        }
    }

    #[test]
    fn a_read_waits_for_its_sessions_outstanding_writes_and_runs_in_order() {
        let mut writes = WritePath::new(1, 1, 64);
        let mut deferred = DeferredReads::new();
        assert_eq!(deferred.admit(&writes, 7, "before"), Some("before"));
        let a = writes.submit(set(7), 0);
        let b = writes.submit(set(7), 0);
        assert_eq!(deferred.admit(&writes, 7, "r1"), None);
        assert_eq!(deferred.admit(&writes, 7, "r2"), None);
        // Another session's read is not held.
        assert_eq!(deferred.admit(&writes, 8, "other"), Some("other"));
        assert_eq!(deferred.len(), 2);
        // One of two writes answered: still held.
        let first = writes.finish(a).and_then(|f| f.session_done);
        assert_eq!(first, None);
        let last = writes.finish(b).and_then(|f| f.session_done);
        assert_eq!(last, Some(7));
        assert_eq!(deferred.release(7), ["r1", "r2"]);
        assert!(deferred.is_empty());
        assert_eq!(deferred.admit(&writes, 7, "after"), Some("after"));
    }

    #[test]
    fn a_barrier_holds_the_reads_after_it_until_it_ends() {
        let mut writes = WritePath::new(1, 1, 64);
        let mut deferred = DeferredReads::new();
        // write, sync, read: the sync waits for the write like a read.
        let w = writes.submit(set(7), 0);
        assert_eq!(deferred.admit(&writes, 7, "sync"), None);
        assert_eq!(deferred.admit(&writes, 7, "r1"), None);
        let done = writes.finish(w).and_then(|f| f.session_done);
        assert_eq!(done, Some(7));
        let mut released = deferred.release(7).into_iter();
        assert_eq!(released.next(), Some("sync"));
        // Running the sync starts its barrier: the rest waits again.
        deferred.begin_barrier(7);
        deferred.hold_again(7, released.collect());
        assert_eq!(deferred.admit(&writes, 7, "r2"), None, "behind the barrier");
        assert_eq!(deferred.admit(&writes, 8, "other"), Some("other"));
        // A write finishing meanwhile does not release them.
        let w2 = writes.submit(set(7), 0);
        let done = writes.finish(w2).and_then(|f| f.session_done);
        assert_eq!(done, Some(7));
        assert!(deferred.release(7).is_empty(), "the barrier still holds");
        assert_eq!(deferred.end_barrier(&writes, 7), ["r1", "r2"]);
        assert!(deferred.is_empty());
        assert_eq!(deferred.admit(&writes, 7, "after"), Some("after"));
    }

    #[test]
    fn a_barrier_ending_before_the_writes_leaves_the_reads_to_them() {
        let mut writes = WritePath::new(1, 1, 64);
        let mut deferred = DeferredReads::new();
        deferred.begin_barrier(7);
        let w = writes.submit(set(7), 0);
        assert_eq!(deferred.admit(&writes, 7, "r"), None);
        assert!(
            deferred.end_barrier(&writes, 7).is_empty(),
            "the write still holds it"
        );
        let done = writes.finish(w).and_then(|f| f.session_done);
        assert_eq!(done, Some(7));
        assert_eq!(deferred.release(7), ["r"]);
    }

    #[test]
    fn a_read_without_a_session_never_waits() {
        let mut writes = WritePath::new(1, 1, 64);
        let mut deferred = DeferredReads::new();
        writes.submit(set(0), 0);
        assert_eq!(deferred.admit(&writes, 0, 1), Some(1));
    }
}
