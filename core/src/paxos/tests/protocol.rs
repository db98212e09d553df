//! Replica tests: Elections, phase 2, failure detection and back pressure.

use super::*;

#[test]
fn campaign_sends_prepares_and_does_not_promise_itself_yet() {
    let mut r = replica(1, 3);
    r.campaign();
    assert_eq!(r.role(), Role::Candidate);
    assert_eq!(
        r.take_commands(),
        vec![
            send(
                2,
                Message::Prepare {
                    ballot: b(1, 1),
                    from: 1
                }
            ),
            send(
                3,
                Message::Prepare {
                    ballot: b(1, 1),
                    from: 1
                }
            ),
        ]
    );
    // Nothing promised yet: a live leader's values are still accepted.
    assert_eq!(r.promised(), Ballot::ZERO);
}

#[test]
fn promise_is_sent_only_after_it_is_durable() {
    let mut r = replica(2, 3);
    r.step(
        1,
        Message::Prepare {
            ballot: b(1, 1),
            from: 1,
        },
        r.now(),
    );
    assert_eq!(r.take_commands(), vec![persist(1, Some(b(1, 1)), vec![])]);
    r.persisted(1);
    assert_eq!(
        r.take_commands(),
        vec![send(
            1,
            Message::Promise {
                ballot: b(1, 1),
                from: 1,
                accepted: vec![],
                commit: 0
            }
        )]
    );
    // A lower ballot is refused with the promised one.
    r.step(
        3,
        Message::Prepare {
            ballot: b(0, 3),
            from: 1,
        },
        r.now(),
    );
    assert_eq!(
        r.take_commands(),
        vec![send(
            3,
            Message::Nack {
                ballot: b(0, 3),
                promised: b(1, 1)
            }
        )]
    );
}

#[test]
fn candidate_promises_itself_at_majority_then_leads_with_a_noop() {
    let mut r = replica(1, 3);
    r.campaign();
    r.take_commands();
    r.step(
        2,
        Message::Promise {
            ballot: b(1, 1),
            from: 1,
            accepted: vec![],
            commit: 0,
        },
        r.now(),
    );
    assert_eq!(r.take_commands(), vec![persist(1, Some(b(1, 1)), vec![])]);
    assert_eq!(r.role(), Role::Candidate);
    r.persisted(1);
    assert_eq!(r.role(), Role::Leader);
    let accept = Message::Accept {
        ballot: b(1, 1),
        first: 1,
        values: vec![Value::Noop],
        commit: 0,
    };
    assert_eq!(
        r.take_commands(),
        vec![
            send(2, accept.clone()),
            send(3, accept),
            persist(2, None, vec![(1, noop(b(1, 1)))]),
        ]
    );
}

#[test]
fn new_leader_reproposes_highest_ballot_values_and_fills_gaps() {
    let mut r = replica(1, 5);
    r.campaign();
    r.take_commands();
    // Node 2 accepted "a" at slot 1 in ballot (1,2) and "c" at 4 in (1,2);
    // node 3 accepted "b" at slot 1 in the higher (2,3).
    r.step(
        2,
        Message::Promise {
            ballot: b(3, 1),
            from: 1,
            accepted: vec![],
            commit: 0,
        },
        r.now(),
    );
    // Wrong ballot: ignored.
    assert!(r.take_commands().is_empty());
    let ballot = b(1, 1);
    r.step(
        2,
        Message::Promise {
            ballot,
            from: 1,
            accepted: vec![(1, e(b(1, 2), "a")), (4, e(b(1, 2), "c"))],
            commit: 0,
        },
        r.now(),
    );
    assert!(r.take_commands().is_empty());
    r.step(
        3,
        Message::Promise {
            ballot,
            from: 1,
            accepted: vec![(1, e(b(2, 3), "b"))],
            commit: 0,
        },
        r.now(),
    );
    assert_eq!(r.take_commands(), vec![persist(1, Some(ballot), vec![])]);
    r.persisted(1);
    let values = vec![data("b"), Value::Noop, Value::Noop, data("c")];
    let accept = |to| {
        send(
            to,
            Message::Accept {
                ballot,
                first: 1,
                values: values.clone(),
                commit: 0,
            },
        )
    };
    assert_eq!(
        r.take_commands(),
        vec![
            accept(2),
            accept(3),
            accept(4),
            accept(5),
            persist(
                2,
                None,
                vec![
                    (1, e(ballot, "b")),
                    (2, noop(ballot)),
                    (3, noop(ballot)),
                    (4, e(ballot, "c")),
                ]
            ),
        ]
    );
}

#[test]
fn batch_commits_when_a_majority_has_it_durable() {
    let mut r = leader3();
    assert_eq!(r.propose(vec!["x", "y"]), Ok(2));
    let accept = Message::Accept {
        ballot: b(1, 1),
        first: 2,
        values: vec![data("x"), data("y")],
        commit: 1,
    };
    assert_eq!(
        r.take_commands(),
        vec![
            send(2, accept.clone()),
            send(3, accept),
            persist(3, None, vec![(2, e(b(1, 1), "x")), (3, e(b(1, 1), "y"))]),
        ]
    );
    // A follower's vote alone is not a majority of three...
    r.step(
        3,
        Message::Accepted {
            ballot: b(1, 1),
            first: 2,
            last: 3,
            commit: 1,
        },
        r.now(),
    );
    // ...together with our own durable copy it is.
    assert_eq!(r.take_commands(), vec![]);
    r.persisted(3);
    assert_eq!(
        r.take_commands(),
        vec![Command::Apply {
            first: 2,
            values: vec![data("x"), data("y")]
        }]
    );
    assert_eq!(r.commit_index(), 3);
    // Pipelining: the next batch went out before the first committed.
    assert_eq!(r.propose(vec!["z"]), Ok(4));
}

#[test]
fn follower_accepts_after_durable_write_and_commits_only_leader_ballot_entries() {
    let mut r = replica(2, 3);
    // An entry from an older ballot sits at slot 2.
    r.step(
        3,
        Message::Accept {
            ballot: b(1, 3),
            first: 2,
            values: vec![data("old")],
            commit: 0,
        },
        r.now(),
    );
    r.persisted(1);
    r.take_commands();
    r.step(
        1,
        Message::Accept {
            ballot: b(2, 1),
            first: 1,
            values: vec![data("a")],
            commit: 2,
        },
        r.now(),
    );
    // Slot 1 is the leader's, slot 2 is not: commit stops at 1.
    assert_eq!(
        r.take_commands(),
        vec![
            persist(2, Some(b(2, 1)), vec![(1, e(b(2, 1), "a"))]),
            Command::Apply {
                first: 1,
                values: vec![data("a")]
            },
        ]
    );
    assert_eq!(r.commit_index(), 1);
    r.persisted(2);
    assert_eq!(
        r.take_commands(),
        vec![send(
            1,
            Message::Accepted {
                ballot: b(2, 1),
                first: 1,
                last: 1,
                commit: 1
            }
        )]
    );
}

#[test]
fn lagging_follower_gets_chosen_values_via_learn() {
    let mut r = leader3();
    r.propose(vec!["x"]).unwrap();
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
    r.take_commands();
    assert_eq!(r.commit_index(), 2);
    // Node 3 reports commit 0 on a heartbeat ack: it gets slots 1..=2.
    r.step(
        3,
        Message::HeartbeatAck {
            ballot: b(1, 1),
            seq: 1,
            commit: 0,
        },
        r.now(),
    );
    let cmds = r.take_commands();
    assert_eq!(
        cmds[0],
        send(
            3,
            Message::Learn {
                ballot: b(1, 1),
                first: 1,
                values: vec![Value::Noop, data("x")],
                commit: 2
            }
        )
    );
    // The follower stores and applies them, and acknowledges its progress.
    let mut f = replica(3, 3);
    let Command::Send { msg, .. } = cmds[0].clone() else {
        unreachable!()
    };
    f.step(1, msg, f.now());
    assert_eq!(
        f.take_commands(),
        vec![
            persist(1, None, vec![(1, noop(b(1, 1))), (2, e(b(1, 1), "x"))]),
            Command::Apply {
                first: 1,
                values: vec![Value::Noop, data("x")]
            },
            send(
                1,
                Message::HeartbeatAck {
                    ballot: b(1, 1),
                    seq: 0,
                    commit: 2
                }
            ),
        ]
    );
}

#[test]
fn acceptor_that_hears_a_live_leader_ignores_other_prepares() {
    let mut r = replica(2, 3);
    r.step(
        1,
        Message::Heartbeat {
            ballot: b(1, 1),
            commit: 0,
            seq: 1,
        },
        r.now(),
    );
    r.take_commands();
    r.step(
        3,
        Message::Prepare {
            ballot: b(5, 3),
            from: 1,
        },
        r.now(),
    );
    assert_eq!(r.take_commands(), vec![]);
    assert_eq!(r.promised(), Ballot::ZERO);
    // The leader itself may raise its ballot.
    r.step(
        1,
        Message::Prepare {
            ballot: b(6, 1),
            from: 1,
        },
        r.now(),
    );
    assert_eq!(r.take_commands(), vec![persist(1, Some(b(6, 1)), vec![])]);
    // Once the lease has run out, others are heard again.
    for _ in 0..10 {
        r.tick(r.now() + 1);
    }
    r.take_commands();
    r.step(
        3,
        Message::Prepare {
            ballot: b(7, 3),
            from: 1,
        },
        r.now(),
    );
    assert_eq!(r.take_commands(), vec![persist(2, Some(b(7, 3)), vec![])]);
}

#[test]
fn nack_makes_the_leader_retry_with_a_higher_ballot() {
    let mut r = leader3();
    r.step(
        3,
        Message::Nack {
            ballot: b(1, 1),
            promised: b(4, 3),
        },
        r.now(),
    );
    assert_eq!(r.role(), Role::Candidate);
    assert_eq!(
        r.take_commands(),
        vec![
            send(
                2,
                Message::Prepare {
                    ballot: b(5, 1),
                    from: 2
                }
            ),
            send(
                3,
                Message::Prepare {
                    ballot: b(5, 1),
                    from: 2
                }
            ),
        ]
    );
}

#[test]
fn leader_without_a_quorum_steps_down() {
    let mut r = leader3();
    for _ in 0..9 {
        r.tick(r.now() + 1);
    }
    assert_eq!(r.role(), Role::Leader);
    // Node 3 was heard at tick 5; node 2 last at tick 0: one of two is not
    // a majority once an election timeout has passed since tick 0.
    r.tick(r.now() + 1);
    assert_eq!(r.role(), Role::Follower);
    let resign = Message::Resign { ballot: b(1, 1) };
    let cmds = r.take_commands();
    assert_eq!(
        cmds[cmds.len() - 2..],
        [send(2, resign.clone()), send(3, resign)]
    );
}

#[test]
fn election_timeout_starts_a_pre_vote_and_phase_1_needs_a_majority_of_grants() {
    let mut r = replica(1, 3);
    for _ in 0..19 {
        r.tick(r.now() + 1);
        if r.role() == Role::PreCandidate {
            break;
        }
    }
    assert_eq!(r.role(), Role::PreCandidate);
    assert_eq!(
        r.take_commands(),
        vec![
            send(2, Message::PreVote { ballot: b(1, 1) }),
            send(3, Message::PreVote { ballot: b(1, 1) }),
        ]
    );
    // Nothing is promised by a pre-vote.
    assert_eq!(r.promised(), Ballot::ZERO);
    r.step(2, Message::PreVoteGranted { ballot: b(1, 1) }, r.now());
    assert_eq!(r.role(), Role::Candidate);
    assert_eq!(
        r.take_commands(),
        vec![
            send(
                2,
                Message::Prepare {
                    ballot: b(1, 1),
                    from: 1
                }
            ),
            send(
                3,
                Message::Prepare {
                    ballot: b(1, 1),
                    from: 1
                }
            ),
        ]
    );
}

#[test]
fn pre_vote_is_refused_while_a_leader_is_live() {
    let mut r = replica(2, 3);
    r.step(3, Message::PreVote { ballot: b(1, 3) }, r.now());
    assert_eq!(
        r.take_commands(),
        vec![send(3, Message::PreVoteGranted { ballot: b(1, 3) })]
    );
    r.step(
        1,
        Message::Heartbeat {
            ballot: b(1, 1),
            commit: 0,
            seq: 1,
        },
        r.now(),
    );
    r.take_commands();
    r.step(3, Message::PreVote { ballot: b(2, 3) }, r.now());
    assert_eq!(r.take_commands(), vec![]);
}

#[test]
fn heartbeats_go_out_every_heartbeat_interval() {
    let mut r = leader3();
    let hb = |seq| Message::Heartbeat {
        ballot: b(1, 1),
        commit: 1,
        seq,
    };
    // The first tick after the commit index moved tells the followers.
    r.tick(r.now() + 1);
    assert_eq!(r.take_commands(), vec![send(2, hb(1)), send(3, hb(1))]);
    r.tick(r.now() + 1);
    assert_eq!(r.take_commands(), vec![]);
    r.tick(r.now() + 1);
    assert_eq!(r.take_commands(), vec![send(2, hb(2)), send(3, hb(2))]);
}

#[test]
fn followers_refuse_proposals_and_name_the_leader() {
    let mut r = replica(2, 3);
    r.step(
        1,
        Message::Heartbeat {
            ballot: b(1, 1),
            commit: 0,
            seq: 1,
        },
        r.now(),
    );
    assert_eq!(
        r.propose(vec!["x"]),
        Err(PaxosError::NotLeader { leader: Some(1) })
    );
}

#[test]
fn backpressure_limits_uncommitted_slots() {
    let mut c = cfg(1, 1);
    c.max_inflight = 2;
    let mut r: Replica<&'static str> = Replica::new(c, 0).unwrap();
    r.campaign();
    r.persisted(1);
    r.persisted(2);
    assert_eq!(r.role(), Role::Leader);
    assert_eq!(r.propose(vec!["a", "b"]), Ok(2));
    assert_eq!(
        r.propose(vec!["c"]),
        Err(PaxosError::Backpressure { limit: 2 })
    );
}

#[test]
fn single_node_commits_on_its_own_durable_write() {
    let mut r: Replica<&'static str> = Replica::new(cfg(1, 1), 0).unwrap();
    r.campaign();
    assert_eq!(r.take_commands(), vec![persist(1, Some(b(1, 1)), vec![])]);
    r.persisted(1);
    assert_eq!(
        r.take_commands(),
        vec![persist(2, None, vec![(1, noop(b(1, 1)))])]
    );
    r.persisted(2);
    assert_eq!(
        r.take_commands(),
        vec![Command::Apply {
            first: 1,
            values: vec![Value::Noop]
        }]
    );
}
