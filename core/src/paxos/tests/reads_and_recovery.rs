//! Replica tests: Linearizable reads, restart from the durable state, compaction.

use super::*;

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
        r.compact(2, snap.clone().into()),
        Err(PaxosError::NotCommitted { slot: 2, commit: 1 })
    );
    r.compact(1, snap.into()).unwrap();
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
                data: vec![9].into(),
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
