//! Unit tests of the replica: one protocol step at a time, asserting the
//! exact commands it emits (in the style of openraft's engine tests).

use super::*;

type Cmd = Command<&'static str>;
type Msg = Message<&'static str>;

fn b(round: u64, node: NodeId) -> Ballot {
    Ballot::new(round, node)
}

fn cfg(id: NodeId, n: u64) -> Config {
    Config::new(id, (1..=n).collect())
}

fn m3() -> Membership {
    Membership::new(vec![1, 2, 3], vec![])
}

fn replica(id: NodeId, n: u64) -> Replica<&'static str> {
    Replica::new(cfg(id, n), 0).unwrap()
}

fn send(to: NodeId, msg: Msg) -> Cmd {
    Command::Send { to, msg }
}

fn persist(token: u64, promised: Option<Ballot>, entries: Vec<(Slot, Entry<&'static str>)>) -> Cmd {
    Command::Persist(Write {
        token,
        promised,
        entries,
    })
}

fn e(ballot: Ballot, v: &'static str) -> Entry<&'static str> {
    Entry {
        ballot,
        value: Value::Data(v),
    }
}

fn noop(ballot: Ballot) -> Entry<&'static str> {
    Entry {
        ballot,
        value: Value::Noop,
    }
}

fn data(v: &'static str) -> Value<&'static str> {
    Value::Data(v)
}

/// Makes node 1 of a 3-node cluster leader at ballot (1, 1) with an empty
/// log and its no-op at slot 1 committed by node 2's vote.
fn leader3() -> Replica<&'static str> {
    let mut r = replica(1, 3);
    r.campaign();
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
    r.persisted(1);
    r.persisted(2);
    r.step(
        2,
        Message::Accepted {
            ballot: b(1, 1),
            first: 1,
            last: 1,
            commit: 0,
        },
        r.now(),
    );
    assert_eq!(r.role(), Role::Leader);
    assert_eq!(r.commit_index(), 1);
    r.take_commands();
    r
}

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

#[test]
fn lease_read_is_served_locally_read_index_needs_a_round() {
    let mut r = leader3();
    // No acknowledged heartbeat round yet: the read waits for one.
    r.read(7, r.now()).unwrap();
    let hb = Message::Heartbeat {
        ballot: b(1, 1),
        commit: 1,
        seq: 1,
    };
    assert_eq!(r.take_commands(), vec![send(2, hb.clone()), send(3, hb)]);
    r.step(
        2,
        Message::HeartbeatAck {
            ballot: b(1, 1),
            seq: 1,
            commit: 1,
        },
        r.now(),
    );
    assert_eq!(
        r.take_commands(),
        vec![Command::ReadReady {
            id: 7,
            index: 1,
            lease_until: None
        }]
    );
    // That round also started a lease: the next read is local.
    r.read(8, r.now()).unwrap();
    assert_eq!(
        r.take_commands(),
        vec![Command::ReadReady {
            id: 8,
            index: 1,
            // The round was sent at 0; the lease is election_ms - drift_ms.
            lease_until: Some(9)
        }]
    );
    // When the lease has run out, reads need a round again.
    for _ in 0..9 {
        r.tick(r.now() + 1);
    }
    r.take_commands();
    r.read(9, r.now()).unwrap();
    assert!(
        !r.take_commands()
            .iter()
            .any(|c| matches!(c, Command::ReadReady { id: 9, .. }))
    );
}

#[test]
fn read_index_mode_always_confirms_leadership() {
    let mut c = cfg(1, 1);
    c.read_mode = ReadMode::ReadIndex;
    let mut r: Replica<&'static str> = Replica::new(c, 0).unwrap();
    r.campaign();
    r.persisted(1);
    r.take_commands();
    r.read(1, r.now()).unwrap();
    // Not yet committed in its own ballot: the read waits.
    assert_eq!(r.take_commands(), vec![]);
    r.persisted(2);
    assert_eq!(
        r.take_commands(),
        vec![
            Command::Apply {
                first: 1,
                values: vec![Value::Noop]
            },
            Command::ReadReady {
                id: 1,
                index: 1,
                lease_until: None
            }
        ]
    );
}

#[test]
fn restarted_replica_recovers_its_promise_and_log() {
    let mut d = Durable::default();
    d.apply(&Write {
        token: 1,
        promised: Some(b(3, 2)),
        entries: vec![(1, e(b(3, 2), "a"))],
    });
    let mut r: Replica<&'static str> = Replica::restore(cfg(1, 3), d, 0).unwrap();
    assert_eq!(r.promised(), b(3, 2));
    r.campaign();
    // The next ballot is above anything promised before the crash.
    assert_eq!(
        r.take_commands()[0],
        send(
            2,
            Message::Prepare {
                ballot: b(4, 1),
                from: 1
            }
        )
    );
}

#[test]
fn compaction_needs_a_committed_slot_and_moves_the_log_start() {
    let mut r = leader3();
    let snap = bytes::Bytes::from(vec![1u8, 2, 3]);
    assert_eq!(
        r.compact(2, snap.clone()),
        Err(PaxosError::NotCommitted { slot: 2, commit: 1 })
    );
    r.compact(1, snap).unwrap();
    assert_eq!(r.log_start(), 2);
}

#[test]
fn acceptor_that_compacted_past_the_candidate_does_not_promise() {
    let mut r = replica(2, 3);
    r.step(
        1,
        Message::Learn {
            ballot: b(1, 1),
            first: 1,
            values: vec![data("a"), data("b")],
            commit: 2,
        },
        r.now(),
    );
    r.compact(2, vec![9u8].into()).unwrap();
    for _ in 0..10 {
        r.tick(r.now() + 1);
    }
    r.take_commands();
    // Node 3 has committed nothing: we could not report slots 1..=2. We
    // do not promise; we send it our snapshot so that it catches up.
    r.step(
        3,
        Message::Prepare {
            ballot: b(2, 3),
            from: 1,
        },
        r.now(),
    );
    assert_eq!(
        r.take_commands(),
        vec![send(
            3,
            Message::Snapshot {
                ballot: Ballot::ZERO,
                index: 2,
                membership: m3(),
                total: 1,
                offset: 0,
                data: vec![9],
            }
        )]
    );
    assert_eq!(r.promised(), Ballot::ZERO);
    r.step(
        3,
        Message::Prepare {
            ballot: b(2, 3),
            from: 3,
        },
        r.now(),
    );
    assert_eq!(r.take_commands(), vec![persist(2, Some(b(2, 3)), vec![])]);
}

#[test]
fn lagging_peer_gets_the_snapshot_in_chunks_and_installs_it() {
    let mut c = cfg(1, 3);
    c.snapshot_chunk = 2;
    let mut r: Replica<&'static str> = Replica::new(c, 0).unwrap();
    r.campaign();
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
    r.persisted(1);
    r.persisted(2);
    r.step(
        2,
        Message::Accepted {
            ballot: b(1, 1),
            first: 1,
            last: 1,
            commit: 0,
        },
        r.now(),
    );
    r.compact(1, vec![10u8, 11, 12, 13, 14].into()).unwrap();
    r.take_commands();
    r.step(
        3,
        Message::HeartbeatAck {
            ballot: b(1, 1),
            seq: 1,
            commit: 0,
        },
        r.now(),
    );
    let chunk = |offset: u64, data: Vec<u8>| {
        send(
            3,
            Message::Snapshot {
                ballot: b(1, 1),
                index: 1,
                membership: m3(),
                total: 5,
                offset,
                data,
            },
        )
    };
    // A window of chunks goes out at once.
    assert_eq!(
        r.take_commands(),
        vec![
            chunk(0, vec![10, 11]),
            chunk(2, vec![12, 13]),
            chunk(4, vec![14]),
        ]
    );
    let mut f = replica(3, 3);
    // The second chunk arrives first and is dropped; the first is kept.
    f.step(
        1,
        Message::Snapshot {
            ballot: b(1, 1),
            index: 1,
            membership: m3(),
            total: 5,
            offset: 2,
            data: vec![12, 13],
        },
        f.now(),
    );
    f.step(
        1,
        Message::Snapshot {
            ballot: b(1, 1),
            index: 1,
            membership: m3(),
            total: 5,
            offset: 0,
            data: vec![10, 11],
        },
        f.now(),
    );
    let ack = |offset| {
        send(
            1,
            Message::SnapshotAck {
                ballot: b(1, 1),
                index: 1,
                offset,
            },
        )
    };
    assert_eq!(f.take_commands(), vec![ack(0), ack(2)]);
    // The leader resumes from what the follower has.
    r.step(
        3,
        Message::SnapshotAck {
            ballot: b(1, 1),
            index: 1,
            offset: 2,
        },
        r.now(),
    );
    assert_eq!(r.take_commands(), vec![]);
    f.step(
        1,
        Message::Snapshot {
            ballot: b(1, 1),
            index: 1,
            membership: m3(),
            total: 5,
            offset: 2,
            data: vec![12, 13],
        },
        f.now(),
    );
    f.step(
        1,
        Message::Snapshot {
            ballot: b(1, 1),
            index: 1,
            membership: m3(),
            total: 5,
            offset: 4,
            data: vec![14],
        },
        f.now(),
    );
    assert_eq!(
        f.take_commands(),
        vec![
            ack(4),
            Command::InstallSnapshot(Snapshot {
                index: 1,
                membership: m3(),
                data: vec![10u8, 11, 12, 13, 14].into()
            }),
            ack(5),
        ]
    );
    assert_eq!(f.commit_index(), 1);
}

/// Node 1 leads voters [1, 2, 3] with observer 4, at commit 1.
fn leader_with_observer() -> Replica<&'static str> {
    let mut c = cfg(1, 3);
    c.observers = vec![4];
    let mut r: Replica<&'static str> = Replica::new(c, 0).unwrap();
    r.campaign();
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
    r.persisted(1);
    r.persisted(2);
    r.step(
        2,
        Message::Accepted {
            ballot: b(1, 1),
            first: 1,
            last: 1,
            commit: 0,
        },
        r.now(),
    );
    assert_eq!(r.commit_index(), 1);
    r.take_commands();
    r
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

#[test]
fn a_peer_serves_catch_up_marked_as_chosen() {
    let mut a = replica(2, 3);
    a.step(
        1,
        Message::Learn {
            ballot: b(1, 1),
            first: 1,
            values: vec![data("a"), data("b")],
            commit: 2,
        },
        a.now(),
    );
    a.take_commands();
    a.step(3, Message::CatchUp { commit: 0 }, a.now());
    let learn = Message::Learn {
        ballot: Ballot::ZERO,
        first: 1,
        values: vec![data("a"), data("b")],
        commit: 2,
    };
    assert_eq!(a.take_commands(), vec![send(3, learn.clone())]);
    let mut c = replica(3, 3);
    c.step(2, learn, c.now());
    assert_eq!(
        c.take_commands(),
        vec![
            persist(
                1,
                None,
                vec![(1, e(Ballot::CHOSEN, "a")), (2, e(Ballot::CHOSEN, "b"))]
            ),
            Command::Apply {
                first: 1,
                values: vec![data("a"), data("b")]
            },
        ]
    );
    // Not the leader: nothing about who leads changed.
    assert_eq!(c.leader(), None);
}

#[test]
fn a_peer_served_snapshot_the_receiver_already_has_ends_the_exchange() {
    // Node 3 has committed slot 2; a peer (not the leader) sends it the end
    // of a snapshot at index 2. It has that already and must not ask the
    // peer for more: the peer would serve the empty chunk after the end,
    // and the two would ping-pong forever.
    let mut c = replica(3, 3);
    c.step(
        1,
        Message::Learn {
            ballot: b(1, 1),
            first: 1,
            values: vec![data("a"), data("b")],
            commit: 2,
        },
        c.now(),
    );
    c.take_commands();
    c.step(
        2,
        Message::Snapshot {
            ballot: Ballot::ZERO,
            index: 2,
            membership: m3(),
            total: 16,
            offset: 16,
            data: vec![],
        },
        c.now(),
    );
    assert_eq!(c.take_commands(), vec![]);
    // And a peer asked for the chunk after the end of its snapshot sends
    // nothing.
    let mut a = replica(2, 3);
    a.compact(0, bytes::Bytes::from_static(b"0123456789abcdef"))
        .unwrap();
    a.take_commands();
    a.step(
        3,
        Message::SnapshotAck {
            ballot: Ballot::ZERO,
            index: 0,
            offset: 16,
        },
        a.now(),
    );
    assert_eq!(a.take_commands(), vec![]);
}

#[test]
fn a_leader_takes_no_catch_up_from_peers() {
    // Seed 17849 of the simulator: a leader elected while it was still
    // receiving a peer's snapshot finished installing it, its commit index
    // jumped past its vote counts, and it committed slots it did not hold.
    let mut r = leader3();
    let ready = r.commit_index();
    r.propose(vec!["x"]).unwrap();
    r.take_commands();
    r.step(
        3,
        Message::Snapshot {
            ballot: Ballot::ZERO,
            index: 5,
            membership: m3(),
            total: 4,
            offset: 0,
            data: vec![1, 2, 3, 4],
        },
        r.now(),
    );
    r.step(
        3,
        Message::Learn {
            ballot: Ballot::ZERO,
            first: 2,
            values: vec![data("y")],
            commit: 2,
        },
        r.now(),
    );
    assert_eq!(r.take_commands(), vec![]);
    assert_eq!(r.commit_index(), ready);
    assert_eq!(r.role(), Role::Leader);
}
