//! Tree tests through the state machine: sessions and their ephemerals,
//! applied zxids, txn times, and null data through snapshots.

use super::*;

fn write(session: SessionId, op: WriteOp) -> Txn {
    Txn::Write {
        session,
        identity: Identity::anonymous(),
        op,
    }
}

#[test]
fn sessions_open_with_negotiated_timeouts_and_ids_from_their_zxid() {
    let mut sm = StateMachine::new(StateConfig::default());
    let a = sm.apply(
        3,
        30,
        &Txn::CreateSession {
            timeout_ms: 10_000,
            password: [9; 16],
        },
    );
    assert_eq!(
        a,
        crate::state::Applied {
            zxid: 3,
            outcome: TxnOutcome::SessionCreated(Ok((3, 10_000))),
            triggers: vec![],
        }
    );
    let b = sm.apply(
        4,
        40,
        &Txn::CreateSession {
            timeout_ms: 1,
            password: [9; 16],
        },
    );
    assert_eq!(b.outcome, TxnOutcome::SessionCreated(Ok((4, 4_000))));
    let c = sm.apply(
        5,
        50,
        &Txn::CreateSession {
            timeout_ms: 1 << 40,
            password: [9; 16],
        },
    );
    assert_eq!(c.outcome, TxnOutcome::SessionCreated(Ok((5, 40_000))));
    assert_eq!(sm.sessions().len(), 3);
    assert_eq!(sm.applied(), 5);
}

#[test]
fn session_cap_is_enforced() {
    let mut config = StateConfig::default();
    config.sessions.max_sessions = 1;
    let mut sm = StateMachine::new(config);
    sm.apply(
        1,
        0,
        &Txn::CreateSession {
            timeout_ms: 5_000,
            password: [9; 16],
        },
    );
    let refused = sm.apply(
        2,
        0,
        &Txn::CreateSession {
            timeout_ms: 5_000,
            password: [9; 16],
        },
    );
    assert!(matches!(
        refused.outcome,
        TxnOutcome::SessionCreated(Err(Error::TooLarge { limit: 1, .. }))
    ));
    assert_eq!(sm.sessions().len(), 1);
}

#[test]
fn closing_a_session_deletes_its_ephemerals_with_triggers() {
    for reason in [CloseReason::ClientClosed, CloseReason::Expired] {
        let mut sm = StateMachine::new(StateConfig::default());
        sm.apply(
            1,
            10,
            &Txn::CreateSession {
                timeout_ms: 5_000,
                password: [9; 16],
            },
        );
        sm.apply(
            2,
            20,
            &Txn::CreateSession {
                timeout_ms: 5_000,
                password: [9; 16],
            },
        );
        sm.apply(3, 30, &write(0, create("/app")));
        let mut zxid = 3;
        for (session, op) in [
            (1, create_with("/app/a", b"", CreateMode::Ephemeral)),
            (
                1,
                create_with("/app/q-", b"", CreateMode::EphemeralSequential),
            ),
            (1, create_with("/top", b"", CreateMode::Ephemeral)),
            (2, create_with("/app/b", b"", CreateMode::Ephemeral)),
        ] {
            zxid += 1;
            let applied = sm.apply(zxid, zxid * 10, &write(session, op));
            assert!(
                matches!(applied.outcome, TxnOutcome::Write(Ok(_))),
                "{applied:?}"
            );
        }
        let app_before = sm.tree().exists("/app").unwrap().unwrap();
        let closed = sm.apply(10, 100, &Txn::CloseSession { session: 1, reason });
        assert_eq!(
            closed.outcome,
            TxnOutcome::SessionClosed {
                session: 1,
                deleted: vec!["/app/a".into(), "/app/q-0000000001".into(), "/top".into()],
            }
        );
        use EventType::{NodeChildrenChanged, NodeDeleted};
        assert_eq!(
            closed.triggers,
            [
                trig("/top", NodeDeleted, 10),
                trig("/", NodeChildrenChanged, 10),
                trig("/app/q-0000000001", NodeDeleted, 10),
                trig("/app", NodeChildrenChanged, 10),
                trig("/app/a", NodeDeleted, 10),
                trig("/app", NodeChildrenChanged, 10),
            ]
        );
        let app = sm.tree().exists("/app").unwrap().unwrap();
        assert_eq!(
            app,
            Stat {
                pzxid: 10,
                num_children: 1,
                ..app_before
            }
        );
        assert_eq!(
            sm.tree()
                .get_children("/app", &Identity::anonymous())
                .unwrap()
                .0,
            ["b"]
        );
        assert!(!sm.sessions().contains(1));
        assert!(sm.sessions().contains(2));

        // The closed session can no longer write; neither can a stranger.
        for session in [1, 77] {
            let refused = sm.apply(sm.applied() + 1, 200, &write(session, create("/late")));
            assert_eq!(
                refused.outcome,
                TxnOutcome::Write(Err(Error::SessionExpired(session)))
            );
            assert!(refused.triggers.is_empty());
        }
        let refused = sm.apply(
            sm.applied() + 1,
            200,
            &write(1, WriteOp::Multi(vec![create("/late")])),
        );
        assert_eq!(
            refused.outcome,
            TxnOutcome::Write(Err(Error::SessionExpired(1)))
        );
        assert!(sm.tree().exists("/late").unwrap().is_none());

        // Closing again, or closing an unknown session, does nothing.
        let again = sm.apply(
            sm.applied() + 1,
            300,
            &Txn::CloseSession { session: 1, reason },
        );
        assert_eq!(
            again.outcome,
            TxnOutcome::SessionClosed {
                session: 1,
                deleted: vec![]
            }
        );
        assert!(again.triggers.is_empty());
    }
}

#[test]
fn state_machine_ignores_zxids_at_or_below_the_applied_one() {
    let mut sm = StateMachine::new(StateConfig::default());
    sm.apply(5, 50, &write(0, create("/a")));
    let before = sm.tree().dump();
    for zxid in [5, 4, 0, -1] {
        let applied = sm.apply(zxid, 60, &write(0, create("/b")));
        assert_eq!(
            applied,
            crate::state::Applied {
                zxid,
                outcome: TxnOutcome::Noop,
                triggers: vec![],
            }
        );
        let closed = sm.apply(
            zxid,
            60,
            &Txn::CreateSession {
                timeout_ms: 5_000,
                password: [9; 16],
            },
        );
        assert_eq!(closed.outcome, TxnOutcome::Noop);
    }
    assert_eq!(sm.applied(), 5);
    assert_eq!(sm.tree().dump(), before);
    assert!(sm.sessions().is_empty());
    // Gaps are fine; the next higher zxid applies.
    let applied = sm.apply(9, 90, &write(0, create("/b")));
    assert!(matches!(applied.outcome, TxnOutcome::Write(Ok(_))));
    assert_eq!(sm.tree().exists("/b").unwrap().unwrap().czxid, 9);
    assert_eq!(sm.apply(10, 100, &Txn::Noop).outcome, TxnOutcome::Noop);
    assert_eq!(sm.applied(), 10);
}

#[test]
fn state_machine_writes_and_reaps_with_the_txn_time() {
    let mut sm = StateMachine::new(StateConfig::default());
    let created = sm.apply(
        1,
        1_000,
        &write(0, create_ttl("/t", CreateMode::PersistentWithTtl, 100)),
    );
    assert_eq!(
        created.triggers,
        [
            trig("/t", EventType::NodeCreated, 1),
            trig("/", EventType::NodeChildrenChanged, 1)
        ]
    );
    let early = sm.apply(2, 1_100, &Txn::Reap { path: "/t".into() });
    assert_eq!(
        early.outcome,
        TxnOutcome::Reaped {
            path: "/t".into(),
            deleted: false
        }
    );
    assert!(early.triggers.is_empty());
    let reaped = sm.apply(3, 1_101, &Txn::Reap { path: "/t".into() });
    assert_eq!(
        reaped.outcome,
        TxnOutcome::Reaped {
            path: "/t".into(),
            deleted: true
        }
    );
    assert_eq!(
        reaped.triggers,
        [
            trig("/t", EventType::NodeDeleted, 3),
            trig("/", EventType::NodeChildrenChanged, 3)
        ]
    );
    // Session 0 may write, but not create ephemerals.
    let refused = sm.apply(
        4,
        1_200,
        &write(0, create_with("/e", b"", CreateMode::Ephemeral)),
    );
    assert!(matches!(
        refused.outcome,
        TxnOutcome::Write(Err(Error::BadArguments(_)))
    ));
}

#[test]
fn null_data_stays_null_through_writes_and_snapshots() {
    use crate::state::{StateConfig, StateMachine};
    use crate::txn::Txn;
    let mut sm = StateMachine::new(StateConfig::default());
    let write = |op: WriteOp| Txn::Write {
        session: 0,
        identity: Identity::anonymous(),
        op,
    };
    sm.apply(
        1,
        10,
        &write(WriteOp::Create {
            path: "/null".into(),
            data: None,
            acl: Acl::open(),
            mode: CreateMode::Persistent,
            ttl_ms: 0,
        }),
    );
    sm.apply(
        2,
        20,
        &write(create_with("/empty", b"", CreateMode::Persistent)),
    );
    let anon = Identity::anonymous();
    let read = |sm: &StateMachine, p: &str| {
        let (data, stat) = sm.tree().get_data_or_null(p, &anon).unwrap();
        (data.map(<[u8]>::to_vec), stat.data_length)
    };
    assert_eq!(read(&sm, "/null"), (None, 0));
    assert_eq!(read(&sm, "/empty"), (Some(Vec::new()), 0));
    // Plain reads (gRPC) see null as empty.
    assert_eq!(sm.tree().get_data("/null", &anon).unwrap().0, b"");
    let restored =
        StateMachine::decode_snapshot(StateConfig::default(), &sm.encode_snapshot()).unwrap();
    assert_eq!(read(&restored, "/null"), (None, 0));
    assert_eq!(read(&restored, "/empty"), (Some(Vec::new()), 0));
    // Setting data, then null again.
    sm.apply(
        3,
        30,
        &write(WriteOp::SetData {
            path: "/empty".into(),
            data: None,
            version: -1,
        }),
    );
    assert_eq!(read(&sm, "/empty"), (None, 0));
}
