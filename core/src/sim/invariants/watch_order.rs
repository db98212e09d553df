//! Watch events before the reads that show their change: a client that
//! left a data watch on a path at its node (with a read, which showed the
//! znode at some `mzxid`, or absent) must have received the watch event
//! from that node before that node answers the session a read showing the
//! znode changed (another `mzxid`, created or deleted), as ZooKeeper
//! orders a session's events before later replies. Exercises the watch
//! registry, the triggers of every txn, and the triggers a node computes
//! when a snapshot from the leader jumps its state.

/// What a client saw when it left its watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::sim) struct Watched {
    pub node: usize,
    pub path: String,
    /// The znode's `mzxid` when the watch was left (`None`: absent).
    pub seen: Option<i64>,
}

/// The session's read at `node` of `path` shows `now` (`mzxid`, or
/// `None`), and `watch` is the watch the client still holds there on that
/// path (no event yet).
pub(in crate::sim) fn on_read(
    session: i64,
    node: usize,
    path: &str,
    now: Option<i64>,
    watch: Option<&Watched>,
) -> Option<String> {
    let w = watch?;
    (w.seen != now).then(|| {
        format!(
            "session {session} read {path} at node {} as changed ({:?} -> {:?}) before the \
             watch event for the change",
            node + 1,
            w.seen,
            now
        )
    })
}
