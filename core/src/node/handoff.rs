//! Whom a leader that is about to stop hands leadership to: the voter that
//! is most caught up and was heard from recently, so that the new leader
//! needs the least catching up and is known to be alive. A leader that
//! stops without handing over costs the ensemble an election timeout.

use crate::paxos::{Membership, NodeId, Slot};

/// The successor among `peers` (id, commit index known, milliseconds since
/// heard), or `None` when no other voter was heard within `alive_ms`.
pub fn successor(
    membership: &Membership,
    me: NodeId,
    peers: &[(NodeId, Slot, u64)],
    alive_ms: u64,
) -> Option<NodeId> {
    peers
        .iter()
        .filter(|(id, _, silent)| *id != me && membership.is_voter(*id) && *silent <= alive_ms)
        // Most caught up first; among equals the lowest id, so that the
        // choice does not depend on the order peers are listed in.
        .max_by_key(|(id, commit, _)| (*commit, std::cmp::Reverse(*id)))
        .map(|(id, ..)| *id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Membership {
        Membership::new(vec![1, 2, 3], vec![4])
    }

    #[test]
    fn the_most_caught_up_live_voter() {
        let peers = [(2, 10, 50), (3, 12, 50), (4, 20, 10)];
        assert_eq!(
            successor(&three(), 1, &peers, 1_000),
            Some(3),
            "4 is an observer"
        );
        let peers = [(2, 12, 50), (3, 12, 50)];
        assert_eq!(
            successor(&three(), 1, &peers, 1_000),
            Some(2),
            "ties: the lowest id"
        );
        let peers = [(2, 10, 50), (3, 12, 5_000)];
        assert_eq!(
            successor(&three(), 1, &peers, 1_000),
            Some(2),
            "3 is silent"
        );
        assert_eq!(successor(&three(), 1, &[(3, 12, 5_000)], 1_000), None);
    }
}
