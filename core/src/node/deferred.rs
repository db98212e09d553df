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
//! Generic over what is held: the driver holds the read's closure, the
//! simulator its read id.

use std::collections::BTreeMap;
use std::fmt;

use crate::SessionId;
use crate::node::writes::WritePath;

/// Reads waiting for their session's outstanding txns.
pub struct DeferredReads<T> {
    held: BTreeMap<SessionId, Vec<T>>,
}

impl<T> Default for DeferredReads<T> {
    fn default() -> Self {
        DeferredReads {
            held: BTreeMap::new(),
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
        if writes.has_outstanding(session) {
            self.held.entry(session).or_default().push(read);
            None
        } else {
            Some(read)
        }
    }

    /// The last outstanding txn of `session` was answered
    /// ([`crate::node::writes::Finished::session_done`]): the reads that
    /// waited for it, in the order they arrived.
    pub fn release(&mut self, session: SessionId) -> Vec<T> {
        self.held.remove(&session).unwrap_or_default()
    }

    /// Reads held.
    pub fn len(&self) -> usize {
        self.held.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
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
    fn a_read_without_a_session_never_waits() {
        let mut writes = WritePath::new(1, 1, 64);
        let mut deferred = DeferredReads::new();
        writes.submit(set(0), 0);
        assert_eq!(deferred.admit(&writes, 0, 1), Some(1));
    }
}
