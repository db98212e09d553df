//! Tree tests: create modes: sequential names, ephemerals, containers and
//! TTL nodes and how they are reaped.

use super::*;

#[test]
fn persistent_sequential_suffix_is_the_parents_cversion() {
    let mut h = Harness::new();
    h.ok(create("/q"));
    let (outcome, triggers) = h.ok(create_with("/q/n", b"d", CreateMode::PersistentSequential));
    let z = h.zxid;
    let OpOutcome::Created { path, stat } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(path, "/q/n0000000000");
    assert_eq!((stat.ephemeral_owner, stat.data_length), (0, 1));
    assert_eq!(
        triggers,
        [
            trig("/q/n0000000000", EventType::NodeCreated, z),
            trig("/q", EventType::NodeChildrenChanged, z)
        ]
    );
    h.ok(create("/q/x")); // cversion 1 -> 2
    assert_eq!(
        h.created(create_with("/q/n", b"", CreateMode::PersistentSequential)),
        "/q/n0000000002"
    );
    h.ok(delete("/q/x", -1)); // cversion stays 3
    assert_eq!(
        h.created(create_with("/q/", b"", CreateMode::PersistentSequential)),
        "/q/0000000003"
    );
    for _ in 4..11 {
        h.ok(create_with("/q/n", b"", CreateMode::PersistentSequential));
    }
    assert_eq!(
        h.created(create_with("/q/n", b"", CreateMode::PersistentSequential)),
        "/q/n0000000011"
    );
    assert_eq!(h.stat("/q").cversion, 12);
    assert_eq!(h.stat("/q/n0000000011").ephemeral_owner, 0);
}

#[test]
fn sequential_create_under_root() {
    // ZooKeeper accepts "/" as a sequential prefix and creates "/NNNNNNNNNN".
    let mut h = Harness::new();
    assert_eq!(
        h.created(create_with("/", b"", CreateMode::PersistentSequential)),
        "/0000000000"
    );
    assert_eq!(
        h.created(create_with("/", b"", CreateMode::EphemeralSequential)),
        "/0000000001"
    );
    assert_eq!(h.stat("/0000000001").ephemeral_owner, h.session);
    assert_eq!(h.fail(create("/")), Error::NodeExists("/".into()));
}

#[test]
fn ephemeral_and_ephemeral_sequential_belong_to_the_session() {
    let mut h = Harness::new();
    h.session = 0x1234;
    h.ok(create_with("/e", b"", CreateMode::Ephemeral));
    assert_eq!(h.stat("/e").ephemeral_owner, 0x1234);
    h.session = 0;
    h.ok(create("/lock"));
    h.session = 0x1234;
    let (outcome, _) = h.ok(create_with(
        "/lock/l-",
        b"",
        CreateMode::EphemeralSequential,
    ));
    let OpOutcome::Created { path, stat } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(path, "/lock/l-0000000000");
    assert_eq!(stat.ephemeral_owner, 0x1234);
    assert_eq!(
        h.created(create_with(
            "/lock/l-",
            b"",
            CreateMode::EphemeralSequential
        )),
        "/lock/l-0000000001"
    );
    h.session = 0x99;
    h.ok(create_with("/other", b"", CreateMode::Ephemeral));

    assert_eq!(
        h.tree.get_ephemerals(0x1234, "/"),
        ["/e", "/lock/l-0000000000", "/lock/l-0000000001"]
    );
    assert_eq!(
        h.tree.get_ephemerals(0x1234, "/lock"),
        ["/lock/l-0000000000", "/lock/l-0000000001"]
    );
    assert_eq!(h.tree.get_ephemerals(0x99, "/"), ["/other"]);
    assert!(h.tree.get_ephemerals(0x7, "/").is_empty());

    // Deleting one by hand takes it out of the session's set.
    h.ok(delete("/lock/l-0000000000", -1));
    assert_eq!(
        h.tree.get_ephemerals(0x1234, "/"),
        ["/e", "/lock/l-0000000001"]
    );

    let lock_before = h.stat("/lock");
    let mut triggers = Vec::new();
    let deleted = h.tree.delete_ephemerals(0x1234, 500, &mut triggers);
    assert_eq!(deleted, ["/e", "/lock/l-0000000001"]);
    assert_eq!(
        triggers,
        [
            trig("/lock/l-0000000001", EventType::NodeDeleted, 500),
            trig("/lock", EventType::NodeChildrenChanged, 500),
            trig("/e", EventType::NodeDeleted, 500),
            trig("/", EventType::NodeChildrenChanged, 500),
        ]
    );
    assert!(h.gone("/e") && h.gone("/lock/l-0000000001"));
    assert_eq!(
        h.stat("/lock"),
        Stat {
            pzxid: 500,
            num_children: 0,
            ..lock_before
        }
    );
    assert!(h.tree.get_ephemerals(0x1234, "/").is_empty());
    assert_eq!(h.tree.get_ephemerals(0x99, "/"), ["/other"]);
    let mut none = Vec::new();
    assert!(h.tree.delete_ephemerals(0x1234, 501, &mut none).is_empty());
    assert!(none.is_empty());
}

#[test]
fn container_is_reaped_only_after_it_had_children_and_they_are_gone() {
    let mut h = Harness::new();
    let (outcome, _) = h.ok(create_with("/c", b"", CreateMode::Container));
    let OpOutcome::Created { stat, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(stat.ephemeral_owner, CONTAINER_OWNER);
    assert_eq!(CONTAINER_OWNER, i64::MIN);
    let far = h.time + 1_000_000_000;

    let mut triggers = Vec::new();
    assert!(h.tree.reap_candidates(far).is_empty(), "never had a child");
    assert!(!h.tree.reap("/c", 900, far, &mut triggers));
    assert!(triggers.is_empty() && !h.gone("/c"));

    h.ok(create("/c/x"));
    h.ok(create_with("/c/e", b"", CreateMode::Ephemeral));
    assert!(h.tree.reap_candidates(far).is_empty(), "has children");
    assert!(!h.tree.reap("/c", 901, far, &mut triggers));
    h.ok(delete("/c/x", -1));
    assert!(h.tree.reap_candidates(far).is_empty(), "still one child");
    h.ok(delete("/c/e", -1));
    assert_eq!(h.tree.reap_candidates(h.time), ["/c"]);

    let root_before = h.stat("/");
    assert!(h.tree.reap("/c", 902, h.time, &mut triggers));
    assert_eq!(
        triggers,
        [
            trig("/c", EventType::NodeDeleted, 902),
            trig("/", EventType::NodeChildrenChanged, 902)
        ]
    );
    assert!(h.gone("/c"));
    assert_eq!(
        h.stat("/"),
        Stat {
            pzxid: 902,
            num_children: root_before.num_children - 1,
            ..root_before
        }
    );
    assert!(h.tree.reap_candidates(far).is_empty());
    assert!(!h.tree.reap("/c", 903, far, &mut Vec::new()));
}

#[test]
fn ttl_node_is_reaped_when_childless_and_unmodified_longer_than_the_ttl() {
    let mut h = Harness::new();
    let (outcome, _) = h.ok(create_ttl("/t", CreateMode::PersistentWithTtl, 1_000));
    let OpOutcome::Created { stat, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        stat.ephemeral_owner,
        (0xff00_0000_0000_0000_u64 | 1_000) as i64
    );
    assert_eq!(ttl_of(stat.ephemeral_owner), Some(1_000));
    assert_eq!(ttl_of(0), None);
    assert_eq!(ttl_of(CONTAINER_OWNER), None);
    assert_eq!(ttl_of(0x1234), None);
    let created = stat.mtime;

    let mut triggers = Vec::new();
    assert!(
        h.tree.reap_candidates(created + 1_000).is_empty(),
        "not before"
    );
    assert!(!h.tree.reap("/t", 900, created + 1_000, &mut triggers));
    assert_eq!(h.tree.reap_candidates(created + 1_001), ["/t"]);

    // A write refreshes mtime, and so the deadline.
    h.ok(set_data("/t", b"x", -1));
    let modified = h.stat("/t").mtime;
    assert!(modified > created);
    assert!(h.tree.reap_candidates(created + 1_001).is_empty());
    assert!(h.tree.reap_candidates(modified + 1_000).is_empty());
    assert_eq!(h.tree.reap_candidates(modified + 1_001), ["/t"]);

    // Children keep it alive however old it is; removing them does not
    // refresh mtime.
    h.ok(create("/t/c"));
    assert!(h.tree.reap_candidates(modified + 1_000_000).is_empty());
    assert!(!h.tree.reap("/t", 901, modified + 1_000_000, &mut triggers));
    h.ok(delete("/t/c", -1));
    assert_eq!(h.stat("/t").mtime, modified);
    assert_eq!(h.tree.reap_candidates(modified + 1_001), ["/t"]);
    assert!(triggers.is_empty());

    assert!(h.tree.reap("/t", 902, modified + 1_001, &mut triggers));
    assert_eq!(
        triggers,
        [
            trig("/t", EventType::NodeDeleted, 902),
            trig("/", EventType::NodeChildrenChanged, 902)
        ]
    );
    assert!(h.gone("/t"));
}

#[test]
fn sequential_ttl_node_is_named_and_reaped_like_a_ttl_node() {
    let mut h = Harness::new();
    h.ok(create("/q"));
    h.ok(create("/q/x"));
    let (outcome, _) = h.ok(create_ttl(
        "/q/t-",
        CreateMode::PersistentSequentialWithTtl,
        50,
    ));
    let OpOutcome::Created { path, stat } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(path, "/q/t-0000000001");
    assert_eq!(stat.ephemeral_owner, ttl_owner(50));
    assert!(h.tree.reap_candidates(stat.mtime + 50).is_empty());
    assert_eq!(h.tree.reap_candidates(stat.mtime + 51), [path.as_str()]);
    assert!(h.tree.reap(&path, 999, stat.mtime + 51, &mut Vec::new()));
    assert!(h.gone(&path));
}

#[test]
fn reap_refuses_other_nodes() {
    let mut h = Harness::new();
    h.ok(create("/p"));
    h.ok(create_with("/e", b"", CreateMode::Ephemeral));
    let far = i64::MAX / 2;
    let mut triggers = Vec::new();
    for p in ["/p", "/e", "/missing", "/", "/zookeeper"] {
        assert!(!h.tree.reap(p, 900, far, &mut triggers), "{p}");
    }
    assert!(triggers.is_empty());
    assert!(h.tree.reap_candidates(far).is_empty());
}
