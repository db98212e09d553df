//! Replica tests: Membership changes and leadership transfer.

use super::*;

/// Node 1 leads voters [1, 2, 3] with observer 4, at commit 1.
fn leader_with_observer() -> Replica<&'static str> {
    let mut c = cfg(1, 3);
    c.observers = vec![4];
    leader_of(c)
}

#[test]
fn membership_changes_one_caught_up_voter_at_a_time() {
    let mut r = leader_with_observer();
    assert_eq!(
        r.propose_membership(Membership::new(vec![1, 2], vec![3, 4])),
        Ok(2)
    );
    // Nothing else until it commits.
    assert_eq!(r.propose(vec!["x"]), Err(PaxosError::ConfigChangePending));
    assert_eq!(
        r.propose_membership(Membership::new(vec![1, 2, 4], vec![3])),
        Err(PaxosError::ConfigChangePending)
    );
    r.persisted(3);
    r.step(
        2,
        Message::Accepted {
            ballot: b(1, 1),
            first: 2,
            last: 2,
            commit: 1,
        },
        r.now(),
    );
    assert_eq!(r.membership(), &Membership::new(vec![1, 2], vec![3, 4]));
    assert_eq!(r.propose(vec!["x"]), Ok(3));
    // Two voters at once is refused.
    assert_eq!(
        r.propose_membership(Membership::new(vec![1, 2, 3, 4], vec![])),
        Err(PaxosError::OneVoterAtATime)
    );
}

#[test]
fn a_new_voter_must_be_a_caught_up_observer() {
    let mut r = leader_with_observer();
    r.propose(vec!["x"; 2000]).unwrap();
    r.persisted(3);
    r.step(
        2,
        Message::Accepted {
            ballot: b(1, 1),
            first: 2,
            last: 2001,
            commit: 1,
        },
        r.now(),
    );
    assert_eq!(r.commit_index(), 2001);
    r.take_commands();
    assert_eq!(
        r.propose_membership(Membership::new(vec![1, 2, 3, 4], vec![])),
        Err(PaxosError::NotCaughtUp(4))
    );
    r.step(
        4,
        Message::HeartbeatAck {
            ballot: b(1, 1),
            seq: 0,
            commit: 2001,
        },
        r.now(),
    );
    assert_eq!(
        r.propose_membership(Membership::new(vec![1, 2, 3, 4], vec![])),
        Ok(2002)
    );
}

#[test]
fn after_a_change_commits_its_majority_is_required() {
    let mut r = leader_with_observer();
    r.step(
        4,
        Message::HeartbeatAck {
            ballot: b(1, 1),
            seq: 0,
            commit: 1,
        },
        r.now(),
    );
    r.propose_membership(Membership::new(vec![1, 2, 3, 4], vec![]))
        .unwrap();
    r.persisted(3);
    r.step(
        3,
        Message::Accepted {
            ballot: b(1, 1),
            first: 2,
            last: 2,
            commit: 1,
        },
        r.now(),
    );
    // The change itself needed 2 of [1, 2, 3]: committed.
    assert_eq!(r.commit_index(), 2);
    r.propose(vec!["x"]).unwrap();
    r.persisted(4);
    r.step(
        2,
        Message::Accepted {
            ballot: b(1, 1),
            first: 3,
            last: 3,
            commit: 2,
        },
        r.now(),
    );
    // 2 of [1, 2, 3, 4] is not a majority any more.
    assert_eq!(r.commit_index(), 2);
    r.step(
        4,
        Message::Accepted {
            ballot: b(1, 1),
            first: 3,
            last: 3,
            commit: 2,
        },
        r.now(),
    );
    assert_eq!(r.commit_index(), 3);
}

#[test]
fn a_removed_leader_hands_over_to_the_most_caught_up_voter() {
    let mut r = leader3();
    r.step(
        3,
        Message::HeartbeatAck {
            ballot: b(1, 1),
            seq: 0,
            commit: 1,
        },
        r.now(),
    );
    r.propose_membership(Membership::new(vec![2, 3], vec![1]))
        .unwrap();
    r.persisted(3);
    r.step(
        3,
        Message::Accepted {
            ballot: b(1, 1),
            first: 2,
            last: 2,
            commit: 1,
        },
        r.now(),
    );
    assert_eq!(r.role(), Role::Follower);
    let cmds = r.take_commands();
    assert!(cmds.contains(&send(3, Message::TimeoutNow { ballot: b(1, 1) })));
    assert!(cmds.contains(&send(2, Message::Resign { ballot: b(1, 1) })));
}

#[test]
fn leadership_transfer_makes_the_target_campaign_at_once() {
    let mut r = leader3();
    assert_eq!(r.transfer_leadership(9), Err(PaxosError::NotAVoter(9)));
    r.transfer_leadership(2).unwrap();
    assert_eq!(r.role(), Role::Follower);
    assert_eq!(
        r.take_commands(),
        vec![
            send(2, Message::TimeoutNow { ballot: b(1, 1) }),
            send(3, Message::Resign { ballot: b(1, 1) }),
        ]
    );
    let mut t = replica(2, 3);
    t.step(
        1,
        Message::Heartbeat {
            ballot: b(1, 1),
            commit: 0,
            seq: 1,
        },
        t.now(),
    );
    t.take_commands();
    t.step(1, Message::TimeoutNow { ballot: b(1, 1) }, t.now());
    assert_eq!(t.role(), Role::Candidate);
    let prepare = Message::Prepare {
        ballot: b(2, 2),
        from: 1,
    };
    assert_eq!(
        t.take_commands(),
        vec![send(1, prepare.clone()), send(3, prepare)]
    );
}

#[test]
fn candidate_needs_a_majority_of_every_membership_phase_1_finds() {
    let mut r = replica(1, 3);
    r.campaign();
    r.take_commands();
    // Node 2 accepted a change to [1, 2, 3, 4] at slot 1.
    let change = Entry {
        ballot: b(0, 2),
        value: Value::Config(Box::new(Membership::new(vec![1, 2, 3, 4], vec![]))),
    };
    r.step(
        2,
        Message::Promise {
            ballot: b(1, 1),
            from: 1,
            accepted: vec![(1, change)],
            commit: 0,
        },
        r.now(),
    );
    // 2 of [1, 2, 3] but not 3 of [1, 2, 3, 4]: ask node 4 too, and wait.
    assert_eq!(
        r.take_commands(),
        vec![send(
            4,
            Message::Prepare {
                ballot: b(1, 1),
                from: 1
            }
        )]
    );
    r.step(
        4,
        Message::Promise {
            ballot: b(1, 1),
            from: 1,
            accepted: vec![],
            commit: 0,
        },
        r.now(),
    );
    assert_eq!(r.take_commands(), vec![persist(1, Some(b(1, 1)), vec![])]);
    r.persisted(1);
    assert_eq!(r.role(), Role::Leader);
}

/// A proposed change shows as pending, at the leader and at a follower
/// that accepted it, until it commits; a follower knows the leader's commit
/// index before it holds the values up to it.
#[test]
fn a_pending_change_and_the_leaders_commit_index_are_visible() {
    let mut r = leader_with_observer();
    assert_eq!(r.pending_membership(), None);
    let next = Membership::new(vec![1, 2, 3], vec![]);
    assert_eq!(r.propose_membership(next.clone()), Ok(2));
    assert_eq!(r.pending_membership(), Some((2, next.clone())));
    assert_eq!(r.leader_commit(), 1, "the leader's own");

    let mut f: Replica<&'static str> = Replica::new(cfg(2, 3), 0).unwrap();
    f.step(
        1,
        Message::Accept {
            ballot: b(1, 1),
            first: 1,
            values: vec![Value::Noop, Value::Config(Box::new(next.clone()))],
            commit: 0,
        },
        f.now(),
    );
    assert_eq!(f.pending_membership(), Some((2, next.clone())));
    f.step(
        1,
        Message::Heartbeat {
            ballot: b(1, 1),
            commit: 2,
            seq: 1,
        },
        f.now(),
    );
    assert_eq!(f.commit_index(), 2);
    assert_eq!(f.pending_membership(), None, "committed");
    assert_eq!(f.membership(), &next);
    // The leader has committed further than the values this node holds.
    f.step(
        1,
        Message::Heartbeat {
            ballot: b(1, 1),
            commit: 9,
            seq: 2,
        },
        f.now(),
    );
    assert_eq!(f.commit_index(), 2);
    assert_eq!(f.leader_commit(), 9);
}
