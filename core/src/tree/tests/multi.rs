//! Tree tests: multi: all or nothing, per-op results, triggers, and the
//! undo journal.

use super::*;

#[test]
fn failed_multi_changes_nothing_and_names_the_failed_op() {
    let mut h = Harness::new();
    h.ok(create_with("/a", b"a", CreateMode::Persistent));
    h.ok(create("/b"));
    h.ok(create("/b/c"));
    h.ok(create_with("/e", b"", CreateMode::Ephemeral));
    let before = h.tree.dump();
    let lists = h.tree.acl_lists();
    let ops = vec![
        create("/n"),
        create_with("/a/s", b"", CreateMode::PersistentSequential),
        create_with("/eph", b"", CreateMode::Ephemeral),
        create_with("/box", b"", CreateMode::Container),
        set_data("/a", b"new", 0),
        delete("/b/c", 0),
        set_acl("/b", world(perms::READ | perms::ADMIN), 0),
        delete("/b", 0),
        delete("/e", -1),
        create_acl("/b", world(perms::READ)),
        check("/a", 99),
        create("/never-run"),
    ];
    let (result, triggers) = h.run(&WriteOp::Multi(ops));
    assert_eq!(
        result,
        Ok(OpOutcome::Multi(MultiOutcome::Aborted {
            failed_index: 10,
            // The check sees the multi's own setData.
            error: Error::BadVersion {
                path: "/a".into(),
                expected: 99,
                actual: 1
            },
            len: 12,
        }))
    );
    assert!(triggers.is_empty());
    assert_eq!(h.tree.dump(), before);
    assert_eq!(h.tree.acl_lists(), lists);
    assert_eq!(h.tree.get_ephemerals(h.session, "/"), ["/e"]);
    assert!(h.tree.reap_candidates(i64::MAX / 2).is_empty());
    // The rolled back sequence number is handed out again.
    assert_eq!(
        h.created(create_with("/a/s", b"", CreateMode::PersistentSequential)),
        "/a/s0000000000"
    );
}

#[test]
fn multi_failing_at_the_first_op() {
    let mut h = Harness::new();
    let before = h.tree.dump();
    let (result, triggers) = h.run(&WriteOp::Multi(vec![delete("/x", -1), create("/y")]));
    assert_eq!(
        result,
        Ok(OpOutcome::Multi(MultiOutcome::Aborted {
            failed_index: 0,
            error: Error::NoNode("/x".into()),
            len: 2
        }))
    );
    assert!(triggers.is_empty());
    assert_eq!(h.tree.dump(), before);
}

#[test]
fn committed_multi_reports_each_op_and_all_triggers() {
    let mut h = Harness::new();
    let (outcome, triggers) = h.ok(WriteOp::Multi(vec![
        create_with("/m", b"", CreateMode::Persistent),
        create("/m/x"),
        set_data("/m", b"d", 0),
        check("/m", 1),
        delete("/m/x", 0),
        set_acl("/m", world(perms::ALL), 0),
        create_with("/m/s", b"", CreateMode::PersistentSequential),
    ]));
    let (z, t) = (h.zxid, h.time);
    let fresh = Stat {
        czxid: z,
        mzxid: z,
        ctime: t,
        mtime: t,
        pzxid: z,
        ..Stat::default()
    };
    let m_final = h.stat("/m");
    assert_eq!(
        m_final,
        Stat {
            version: 1,
            aversion: 1,
            cversion: 2,
            data_length: 1,
            num_children: 1,
            ..fresh
        }
    );
    assert_eq!(
        outcome,
        OpOutcome::Multi(MultiOutcome::Committed(vec![
            OpOutcome::Created {
                path: "/m".into(),
                stat: fresh
            },
            OpOutcome::Created {
                path: "/m/x".into(),
                stat: fresh
            },
            OpOutcome::DataSet {
                stat: Stat {
                    version: 1,
                    data_length: 1,
                    cversion: 1,
                    num_children: 1,
                    ..fresh
                }
            },
            OpOutcome::Checked,
            OpOutcome::Deleted,
            OpOutcome::AclSet {
                stat: Stat {
                    version: 1,
                    aversion: 1,
                    data_length: 1,
                    cversion: 1,
                    ..fresh
                }
            },
            OpOutcome::Created {
                path: "/m/s0000000001".into(),
                stat: fresh
            },
        ]))
    );
    use EventType::{NodeChildrenChanged, NodeCreated, NodeDataChanged, NodeDeleted};
    assert_eq!(
        triggers,
        [
            trig("/m", NodeCreated, z),
            trig("/", NodeChildrenChanged, z),
            trig("/m/x", NodeCreated, z),
            trig("/m", NodeChildrenChanged, z),
            trig("/m", NodeDataChanged, z),
            trig("/m/x", NodeDeleted, z),
            trig("/m", NodeChildrenChanged, z),
            trig("/m/s0000000001", NodeCreated, z),
            trig("/m", NodeChildrenChanged, z),
        ]
    );
}

#[test]
fn multi_can_create_then_delete_the_same_node() {
    let mut h = Harness::new();
    let root_before = h.stat("/");
    let (outcome, triggers) = h.ok(WriteOp::Multi(vec![
        create_acl("/tmp", world(perms::READ)),
        delete("/tmp", 0),
    ]));
    let z = h.zxid;
    assert!(matches!(
        outcome,
        OpOutcome::Multi(MultiOutcome::Committed(ref r))
            if matches!(r.as_slice(), [OpOutcome::Created { .. }, OpOutcome::Deleted])
    ));
    assert!(h.gone("/tmp"));
    assert_eq!(
        h.stat("/"),
        Stat {
            cversion: root_before.cversion + 1,
            pzxid: z,
            ..root_before
        }
    );
    assert_eq!(
        triggers,
        [
            trig("/tmp", EventType::NodeCreated, z),
            trig("/", EventType::NodeChildrenChanged, z),
            trig("/tmp", EventType::NodeDeleted, z),
            trig("/", EventType::NodeChildrenChanged, z),
        ]
    );
    assert_eq!(
        h.tree.acl_lists(),
        1,
        "the node's own ACL list was released"
    );
}

#[test]
fn aborted_delete_and_recreate_restores_the_original_node() {
    let mut h = Harness::new();
    h.ok(create_acl("/a", world(perms::ALL & !perms::ADMIN)));
    h.ok(set_data("/a", b"old", -1));
    h.ok(create_with("/e", b"", CreateMode::Ephemeral));
    h.ok(create_with("/c", b"", CreateMode::Container));
    h.ok(create("/c/x"));
    let before = h.tree.dump();
    let lists = h.tree.acl_lists();
    let (result, _) = h.run(&WriteOp::Multi(vec![
        delete("/a", -1),
        create_with("/a", b"new", CreateMode::Persistent),
        delete("/e", -1),
        create_with("/e", b"", CreateMode::Persistent),
        delete("/c/x", -1),
        delete("/c", -1),
        create("/missing/x"),
    ]));
    assert!(matches!(
        result,
        Ok(OpOutcome::Multi(MultiOutcome::Aborted {
            failed_index: 6,
            ..
        }))
    ));
    assert_eq!(h.tree.dump(), before);
    assert_eq!(h.tree.acl_lists(), lists);
    assert_eq!(h.tree.get_ephemerals(h.session, "/"), ["/e"]);
    // The container is indexed again: it becomes reapable once emptied.
    h.ok(delete("/c/x", -1));
    assert_eq!(h.tree.reap_candidates(h.time), ["/c"]);
}

#[test]
fn empty_multi_commits_nothing() {
    let mut h = Harness::new();
    let before = h.tree.dump();
    let (outcome, triggers) = h.ok(WriteOp::Multi(vec![]));
    assert_eq!(outcome, OpOutcome::Multi(MultiOutcome::Committed(vec![])));
    assert!(triggers.is_empty());
    assert_eq!(h.tree.dump(), before);
}
