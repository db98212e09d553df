//! Session freshness: no member tells a client its session is alive after
//! the ensemble committed the session's close (its expiry). A member cut
//! off from the leader that kept acknowledging keep-alives would let a
//! client believe it still holds a lock another client has taken.

use crate::SessionId;

/// Node `node` acknowledged a keep-alive of `session` at tick `now`;
/// `closed_at` is the tick its close was first applied, if it was.
pub(in crate::sim) fn on_ack(
    session: SessionId,
    node: usize,
    now: u64,
    closed_at: Option<u64>,
) -> Option<String> {
    let closed = closed_at.filter(|at| *at <= now)?;
    Some(format!(
        "node {} acknowledged a keep-alive of session {session} at tick {now}, \
         after its close was committed at tick {closed}",
        node + 1
    ))
}
