//! Unit tests of the znode tree against ZooKeeper's rules: one test or more
//! for every error the tree can return, every create mode, the Stat
//! bookkeeping of each write, multi atomicity, ACL schemes, the exact watch
//! triggers of each write, and the session and replay rules that
//! `StateMachine` layers on top of the tree.

use super::*;
use crate::ErrorCode;
use crate::acl::{Id, digest_id};
use crate::state::{StateConfig, StateMachine};
use crate::txn::{CloseReason, Txn, TxnOutcome};

// ---------------------------------------------------------------- helpers

fn world(perms: u32) -> Vec<Acl> {
    vec![Acl {
        perms,
        id: Id::anyone(),
    }]
}

fn acl(perms: u32, scheme: &str, id: &str) -> Acl {
    Acl {
        perms,
        id: Id::new(scheme, id),
    }
}

fn create(path: &str) -> WriteOp {
    create_with(path, b"", CreateMode::Persistent)
}

fn create_with(path: &str, data: &[u8], mode: CreateMode) -> WriteOp {
    WriteOp::Create {
        path: path.into(),
        data: Some(data.to_vec()),
        acl: Acl::open(),
        mode,
        ttl_ms: 0,
    }
}

fn create_ttl(path: &str, mode: CreateMode, ttl_ms: Millis) -> WriteOp {
    WriteOp::Create {
        path: path.into(),
        data: Some(Vec::new()),
        acl: Acl::open(),
        mode,
        ttl_ms,
    }
}

fn create_acl(path: &str, acl: Vec<Acl>) -> WriteOp {
    WriteOp::Create {
        path: path.into(),
        data: Some(Vec::new()),
        acl,
        mode: CreateMode::Persistent,
        ttl_ms: 0,
    }
}

fn delete(path: &str, version: i32) -> WriteOp {
    WriteOp::Delete {
        path: path.into(),
        version,
    }
}

fn set_data(path: &str, data: &[u8], version: i32) -> WriteOp {
    WriteOp::SetData {
        path: path.into(),
        data: Some(data.to_vec()),
        version,
    }
}

fn set_acl(path: &str, acl: Vec<Acl>, version: i32) -> WriteOp {
    WriteOp::SetAcl {
        path: path.into(),
        acl,
        version,
    }
}

fn check(path: &str, version: i32) -> WriteOp {
    WriteOp::Check {
        path: path.into(),
        version,
    }
}

fn trig(path: &str, event: EventType, zxid: Zxid) -> Trigger {
    Trigger {
        path: path.into(),
        event,
        zxid,
    }
}

fn digest_identity(credential: &str) -> Identity {
    Identity {
        ids: vec![Id::new("digest", digest_id(credential).unwrap())],
    }
}

/// A tree plus the context of the next write: each write runs at the next
/// zxid and 10 ms later than the previous one.
struct Harness {
    tree: DataTree,
    zxid: Zxid,
    time: Millis,
    session: SessionId,
    identity: Identity,
}

impl Harness {
    fn new() -> Self {
        Harness::with_config(TreeConfig::default())
    }

    fn with_config(config: TreeConfig) -> Self {
        Harness {
            tree: DataTree::new(config),
            zxid: 100,
            time: 1_000_000,
            session: 0x5e55,
            identity: Identity::anonymous(),
        }
    }

    fn with_limits(limits: TreeLimits) -> Self {
        Harness::with_config(TreeConfig {
            limits,
            ..TreeConfig::default()
        })
    }

    fn run(&mut self, op: &WriteOp) -> (Result<OpOutcome, Error>, Vec<Trigger>) {
        self.zxid += 1;
        self.time += 10;
        let ctx = WriteCtx {
            zxid: self.zxid,
            time: self.time,
            session: self.session,
            identity: &self.identity,
        };
        let mut triggers = Vec::new();
        let result = self.tree.apply(op, &ctx, &mut triggers);
        (result, triggers)
    }

    /// Applies a write that must succeed.
    fn ok(&mut self, op: WriteOp) -> (OpOutcome, Vec<Trigger>) {
        match self.run(&op) {
            (Ok(outcome), triggers) => (outcome, triggers),
            (Err(e), _) => panic!("{op:?} failed: {e}"),
        }
    }

    /// Applies a write that must fail, and checks that the failure changed
    /// nothing and triggered nothing.
    fn fail(&mut self, op: WriteOp) -> Error {
        let before = self.tree.dump();
        let lists = self.tree.acl_lists();
        let (result, triggers) = self.run(&op);
        let Err(error) = result else {
            panic!("{op:?} succeeded: {result:?}");
        };
        assert!(
            triggers.is_empty(),
            "{op:?} failed but triggered {triggers:?}"
        );
        assert_eq!(
            self.tree.dump(),
            before,
            "{op:?} failed but changed the tree"
        );
        assert_eq!(self.tree.acl_lists(), lists, "{op:?} leaked an ACL list");
        error
    }

    /// The path a create produced.
    fn created(&mut self, op: WriteOp) -> String {
        match self.ok(op).0 {
            OpOutcome::Created { path, .. } => path,
            other => panic!("not a create: {other:?}"),
        }
    }

    fn stat(&self, p: &str) -> Stat {
        self.tree
            .exists(p)
            .unwrap()
            .unwrap_or_else(|| panic!("{p} does not exist"))
    }

    fn gone(&self, p: &str) -> bool {
        self.tree.exists(p).unwrap().is_none()
    }

    fn as_identity(&mut self, identity: Identity) -> &mut Self {
        self.identity = identity;
        self
    }
}

fn assert_code(error: &Error, code: ErrorCode) {
    assert_eq!(error.code(), code, "{error}");
}

// ------------------------------------------------------------ fresh tree

#[test]
fn a_new_tree_holds_root_and_the_reserved_nodes_at_zxid_zero() {
    let tree = DataTree::default();
    let paths: Vec<String> = tree.dump().into_iter().map(|n| n.path).collect();
    assert_eq!(
        paths,
        ["/", "/zookeeper", "/zookeeper/config", "/zookeeper/quota"]
    );
    assert_eq!(tree.len(), 4);
    for node in tree.dump() {
        assert_eq!(node.acl, Acl::open());
        assert_eq!(node.stat.czxid, 0);
        assert_eq!(node.stat.cversion, 0);
        assert_eq!(node.stat.ephemeral_owner, 0);
    }
    let (children, stat) = tree.get_children("/", &Identity::anonymous()).unwrap();
    assert_eq!(children, ["zookeeper"]);
    assert_eq!(stat.num_children, 1);
    assert_eq!(tree.acl_lists(), 1, "all four nodes share one ACL list");
}

// ----------------------------------------------------------------- stats

#[test]
fn create_sets_the_new_stat_and_updates_the_parent() {
    let mut h = Harness::new();
    let root_before = h.stat("/");
    let (outcome, triggers) = h.ok(create_with("/a", b"hello", CreateMode::Persistent));
    let (z, t) = (h.zxid, h.time);
    let expected = Stat {
        czxid: z,
        mzxid: z,
        ctime: t,
        mtime: t,
        version: 0,
        cversion: 0,
        aversion: 0,
        ephemeral_owner: 0,
        data_length: 5,
        num_children: 0,
        pzxid: z,
    };
    assert_eq!(
        outcome,
        OpOutcome::Created {
            path: "/a".into(),
            stat: expected
        }
    );
    assert_eq!(h.stat("/a"), expected);
    assert_eq!(
        h.stat("/"),
        Stat {
            cversion: root_before.cversion + 1,
            pzxid: z,
            num_children: root_before.num_children + 1,
            ..root_before
        },
        "only cversion, pzxid and numChildren of the parent change"
    );
    assert_eq!(
        triggers,
        [
            trig("/a", EventType::NodeCreated, z),
            trig("/", EventType::NodeChildrenChanged, z)
        ]
    );
    let (data, _) = h.tree.get_data("/a", &Identity::anonymous()).unwrap();
    assert_eq!(data, b"hello");
    assert_eq!(
        h.tree.get_acl("/a", &Identity::anonymous()).unwrap().0,
        Acl::open()
    );

    h.ok(create("/a/b"));
    let a = h.stat("/a");
    assert_eq!(
        (a.cversion, a.pzxid, a.num_children, a.mzxid, a.version),
        (1, h.zxid, 1, z, 0)
    );
}

#[test]
fn delete_sets_parent_pzxid_but_not_cversion() {
    let mut h = Harness::new();
    h.ok(create("/p"));
    let created_at = h.zxid;
    h.ok(create("/p/c1"));
    h.ok(create("/p/c2"));
    let before = h.stat("/p");
    assert_eq!((before.cversion, before.num_children), (2, 2));

    let (outcome, triggers) = h.ok(delete("/p/c1", 0));
    let z = h.zxid;
    assert_eq!(outcome, OpOutcome::Deleted);
    assert_eq!(
        triggers,
        [
            trig("/p/c1", EventType::NodeDeleted, z),
            trig("/p", EventType::NodeChildrenChanged, z)
        ]
    );
    assert!(h.gone("/p/c1"));
    assert_eq!(
        h.stat("/p"),
        Stat {
            pzxid: z,
            num_children: 1,
            ..before
        },
        "delete changes pzxid and numChildren of the parent, never cversion"
    );
    assert_eq!(h.stat("/p").mzxid, created_at);
}

#[test]
fn set_data_bumps_version_mzxid_mtime() {
    let mut h = Harness::new();
    h.ok(create_with("/a", b"x", CreateMode::Persistent));
    let created = h.stat("/a");
    let (outcome, triggers) = h.ok(set_data("/a", b"hello", -1));
    let (z, t) = (h.zxid, h.time);
    let expected = Stat {
        mzxid: z,
        mtime: t,
        version: 1,
        data_length: 5,
        ..created
    };
    assert_eq!(outcome, OpOutcome::DataSet { stat: expected });
    assert_eq!(h.stat("/a"), expected);
    assert_eq!(triggers, [trig("/a", EventType::NodeDataChanged, z)]);

    let (outcome, _) = h.ok(set_data("/a", b"", 1));
    let OpOutcome::DataSet { stat } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!((stat.version, stat.data_length), (2, 0));
    assert_eq!((stat.czxid, stat.ctime), (created.czxid, created.ctime));
    assert_eq!(
        h.tree.get_data("/a", &Identity::anonymous()).unwrap().0,
        b""
    );
}

#[test]
fn set_acl_bumps_aversion_only() {
    let mut h = Harness::new();
    h.ok(create("/a"));
    let created = h.stat("/a");
    let (outcome, triggers) = h.ok(set_acl("/a", world(perms::READ | perms::ADMIN), 0));
    let expected = Stat {
        aversion: 1,
        ..created
    };
    assert_eq!(outcome, OpOutcome::AclSet { stat: expected });
    assert_eq!(h.stat("/a"), expected, "mzxid, version untouched");
    assert!(triggers.is_empty(), "setACL triggers no watch");
    assert_eq!(
        h.tree.get_acl("/a", &Identity::anonymous()).unwrap(),
        (world(perms::READ | perms::ADMIN), expected)
    );
    let error = h.fail(set_acl("/a", Acl::open(), 0));
    assert_eq!(
        error,
        Error::BadVersion {
            path: "/a".into(),
            expected: 0,
            actual: 1
        }
    );
    h.ok(set_acl("/a", Acl::open(), 1));
    assert_eq!(h.stat("/a").aversion, 2);
}

#[test]
fn check_changes_nothing() {
    let mut h = Harness::new();
    h.ok(create("/a"));
    let before = h.tree.dump();
    let (outcome, triggers) = h.ok(check("/a", 0));
    assert_eq!(outcome, OpOutcome::Checked);
    assert!(triggers.is_empty());
    assert_eq!(h.tree.dump(), before);
    h.ok(check("/a", -1));
    h.ok(check("/zookeeper", 0));
}

#[test]
fn children_are_sorted_and_counted() {
    let mut h = Harness::new();
    for p in ["/p", "/p/b", "/p/a", "/p/c", "/p/a/x"] {
        h.ok(create(p));
    }
    let anon = Identity::anonymous();
    let (children, stat) = h.tree.get_children("/p", &anon).unwrap();
    assert_eq!(children, ["a", "b", "c"]);
    assert_eq!((stat.num_children, stat.cversion), (3, 3));
    assert_eq!(h.tree.get_all_children_number("/p", &anon).unwrap(), 4);
    // 3 reserved-or-below (/zookeeper, config, quota) + /p and its 4.
    assert_eq!(h.tree.get_all_children_number("/", &anon).unwrap(), 8);
    assert_eq!(h.tree.len(), 9);
}

// ---------------------------------------------------------------- errors

#[test]
fn invalid_path_on_every_operation() {
    let mut h = Harness::new();
    h.ok(create("/a"));
    let ops = [
        create(""),
        create("a"),
        create("/a/"),
        create("/a//b"),
        create("/a/./b"),
        create("/a/.."),
        create("/a\u{1}"),
        create_with("/a//", b"", CreateMode::PersistentSequential),
        delete("/a/", -1),
        delete("a", -1),
        set_data("/a/", b"", -1),
        set_acl("//", Acl::open(), -1),
        check("/a/..", -1),
    ];
    for op in ops {
        let requested = op.path().to_owned();
        let error = h.fail(op);
        assert_code(&error, ErrorCode::InvalidPath);
        assert_eq!(error.path(), Some(requested.as_str()));
        assert_eq!(
            error.code().zookeeper_code(),
            -8,
            "BadArguments on the wire"
        );
    }
    let anon = Identity::anonymous();
    assert_code(
        &h.tree.get_data("x", &anon).unwrap_err(),
        ErrorCode::InvalidPath,
    );
    assert_code(
        &h.tree.get_children("/a/", &anon).unwrap_err(),
        ErrorCode::InvalidPath,
    );
    assert_code(
        &h.tree.get_acl("", &anon).unwrap_err(),
        ErrorCode::InvalidPath,
    );
    assert_code(&h.tree.exists("a//").unwrap_err(), ErrorCode::InvalidPath);
}

#[test]
fn reserved_subtree_is_readable_but_not_writable() {
    let mut h = Harness::new();
    for op in [
        create("/zookeeper"),
        create("/zookeeper/x"),
        create_with("/zookeeper/", b"", CreateMode::PersistentSequential),
        create_with("/zookeeper/e", b"", CreateMode::Ephemeral),
        delete("/zookeeper/quota", -1),
        delete("/zookeeper", -1),
        set_data("/zookeeper/config", b"x", -1),
        set_acl("/zookeeper", Acl::open(), -1),
    ] {
        match h.fail(op) {
            Error::InvalidPath { reason, .. } => assert!(reason.contains("reserved"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }
    let anon = Identity::anonymous();
    assert!(h.tree.get_data("/zookeeper/config", &anon).is_ok());
    assert_eq!(
        h.tree.get_children("/zookeeper", &anon).unwrap().0,
        ["config", "quota"]
    );
    assert!(h.tree.exists("/zookeeper/quota").unwrap().is_some());
    assert!(h.tree.get_acl("/zookeeper", &anon).is_ok());
    h.ok(check("/zookeeper/quota", 0));
    // Below /zookeeper/quota clients keep quotas, as in ZooKeeper.
    h.ok(create("/zookeeper/quota/app"));
    h.ok(create("/zookeeper/quota/app/zookeeper_limits"));
    h.ok(set_data(
        "/zookeeper/quota/app/zookeeper_limits",
        b"count=10",
        0,
    ));
    h.ok(delete("/zookeeper/quota/app/zookeeper_limits", 1));
    // A sibling whose name merely starts with "zookeeper" is ordinary.
    h.ok(create("/zookeeperx"));
    h.ok(set_data("/zookeeperx", b"1", 0));
    h.ok(delete("/zookeeperx", 1));
}

#[test]
fn no_node_names_the_missing_node() {
    let mut h = Harness::new();
    let cases = [
        (create("/a/b"), "/a"),
        (
            create_with("/a/b/", b"", CreateMode::PersistentSequential),
            "/a/b",
        ),
        (delete("/x", -1), "/x"),
        (delete("/x/y", -1), "/x"),
        (set_data("/x", b"", -1), "/x"),
        (set_acl("/x", Acl::open(), -1), "/x"),
        (check("/x", -1), "/x"),
    ];
    for (op, missing) in cases {
        assert_eq!(h.fail(op), Error::NoNode(missing.into()));
    }
    let anon = Identity::anonymous();
    assert_eq!(
        h.tree.get_data("/x", &anon).unwrap_err(),
        Error::NoNode("/x".into())
    );
    assert_code(
        &h.tree.get_children("/x", &anon).unwrap_err(),
        ErrorCode::NoNode,
    );
    assert_code(&h.tree.get_acl("/x", &anon).unwrap_err(), ErrorCode::NoNode);
    assert_code(
        &h.tree.get_all_children_number("/x", &anon).unwrap_err(),
        ErrorCode::NoNode,
    );
    assert_eq!(h.tree.exists("/x").unwrap(), None, "exists is not an error");
}

#[test]
fn node_exists_for_duplicates_root_and_sequence_collisions() {
    let mut h = Harness::new();
    h.ok(create("/a"));
    assert_eq!(h.fail(create("/a")), Error::NodeExists("/a".into()));
    assert_eq!(
        h.fail(create_with("/a", b"", CreateMode::Ephemeral)),
        Error::NodeExists("/a".into())
    );
    assert_eq!(h.fail(create("/")), Error::NodeExists("/".into()));

    // ZooKeeper appends the parent's cversion blindly: a plain node that
    // already holds that name makes the sequential create fail.
    h.ok(create("/q"));
    h.ok(create("/q/other"));
    h.ok(create("/q/n0000000002"));
    h.ok(delete("/q/other", -1));
    assert_eq!(h.stat("/q").cversion, 2);
    let error = h.fail(create_with("/q/n", b"", CreateMode::PersistentSequential));
    assert_eq!(
        error,
        Error::NodeExists("/q/n0000000002".into()),
        "cversion is still 2: the delete did not lower it"
    );
    h.ok(create("/q/x"));
    assert_eq!(
        h.created(create_with("/q/n", b"", CreateMode::PersistentSequential)),
        "/q/n0000000003"
    );
}

#[test]
fn bad_version_on_delete_set_data_set_acl_and_check() {
    let mut h = Harness::new();
    h.ok(create("/a"));
    h.ok(set_data("/a", b"1", 0));
    h.ok(set_data("/a", b"2", 1));
    let bad = |expected, actual| Error::BadVersion {
        path: "/a".into(),
        expected,
        actual,
    };
    assert_eq!(h.fail(delete("/a", 1)), bad(1, 2));
    assert_eq!(h.fail(delete("/a", 3)), bad(3, 2));
    assert_eq!(h.fail(set_data("/a", b"3", 0)), bad(0, 2));
    assert_eq!(h.fail(check("/a", 5)), bad(5, 2));
    // setACL compares the ACL version, not the data version.
    assert_eq!(h.fail(set_acl("/a", Acl::open(), 2)), bad(2, 0));
    h.ok(set_acl("/a", Acl::open(), 0));
    h.ok(check("/a", 2));
    h.ok(delete("/a", 2));
    assert!(h.gone("/a"));
}

#[test]
fn not_empty_until_the_last_child_is_gone() {
    let mut h = Harness::new();
    h.ok(create("/p"));
    h.ok(create("/p/c"));
    assert_eq!(h.fail(delete("/p", -1)), Error::NotEmpty("/p".into()));
    assert_eq!(
        h.fail(delete("/p", 7)),
        Error::BadVersion {
            path: "/p".into(),
            expected: 7,
            actual: 0
        },
        "the version is checked before the children"
    );
    h.ok(delete("/p/c", -1));
    h.ok(delete("/p", 0));
    assert!(h.gone("/p"));
}

#[test]
fn ephemerals_cannot_have_children() {
    let mut h = Harness::new();
    h.ok(create_with("/e", b"", CreateMode::Ephemeral));
    for mode in [
        CreateMode::Persistent,
        CreateMode::Ephemeral,
        CreateMode::PersistentSequential,
        CreateMode::EphemeralSequential,
        CreateMode::Container,
    ] {
        assert_eq!(
            h.fail(create_with("/e/c", b"", mode)),
            Error::NoChildrenForEphemerals("/e".into()),
            "{mode:?}"
        );
    }
    assert_eq!(
        h.fail(create_ttl("/e/t", CreateMode::PersistentWithTtl, 10)),
        Error::NoChildrenForEphemerals("/e".into())
    );
    let seq = h.created(create_with("/s-", b"", CreateMode::EphemeralSequential));
    assert_eq!(
        h.fail(create(&format!("{seq}/c"))),
        Error::NoChildrenForEphemerals(seq)
    );
}

#[test]
fn no_auth_for_each_permission() {
    let mut h = Harness::new();
    h.ok(create_acl("/r", world(perms::READ)));
    h.ok(create_acl("/nodelete", world(perms::ALL & !perms::DELETE)));
    h.ok(create("/nodelete/c"));
    h.ok(create_acl("/w", world(perms::WRITE)));

    let no_auth = |p: &str| Error::NoAuth(p.into());
    // create needs CREATE on the parent.
    assert_eq!(h.fail(create("/r/c")), no_auth("/r"));
    assert_eq!(
        h.fail(create_with("/r/s", b"", CreateMode::PersistentSequential)),
        no_auth("/r")
    );
    // delete needs DELETE on the parent, not on the node.
    assert_eq!(h.fail(delete("/nodelete/c", -1)), no_auth("/nodelete"));
    h.ok(delete("/r", -1));
    h.ok(create_acl("/r", world(perms::READ)));
    // setData needs WRITE, setACL needs ADMIN, check and reads need READ.
    assert_eq!(h.fail(set_data("/r", b"x", -1)), no_auth("/r"));
    assert_eq!(h.fail(set_acl("/r", Acl::open(), -1)), no_auth("/r"));
    assert_eq!(h.fail(check("/w", -1)), no_auth("/w"));
    let anon = Identity::anonymous();
    assert_eq!(h.tree.get_data("/w", &anon).unwrap_err(), no_auth("/w"));
    assert_eq!(h.tree.get_children("/w", &anon).unwrap_err(), no_auth("/w"));
    assert_eq!(
        h.tree.get_all_children_number("/w", &anon).unwrap_err(),
        no_auth("/w")
    );
    h.ok(set_data("/w", b"ok", -1));
    // A NoAuth is reported before a bad version.
    assert_eq!(h.fail(set_data("/r", b"x", 9)), no_auth("/r"));
}

#[test]
fn invalid_acl_on_create_and_set_acl() {
    let mut h = Harness::new();
    h.ok(create("/a"));
    let bad_acls = [
        vec![],
        vec![acl(perms::ALL, "auth", "")],
        vec![acl(perms::ALL, "kerberos", "x")],
        vec![acl(perms::ALL, "world", "someone")],
        vec![acl(perms::ALL, "ip", "999.1.1.1")],
        vec![acl(perms::ALL, "ip", "10.0.0.0/33")],
        vec![acl(perms::ALL, "digest", "no-hash")],
        vec![acl(perms::ALL, "digest", "user:")],
        vec![acl(0x40, "world", "anyone")],
        vec![
            acl(perms::READ, "world", "anyone"),
            acl(perms::ALL, "x", "y"),
        ],
    ];
    for bad in bad_acls {
        assert_code(
            &h.fail(create_acl("/b", bad.clone())),
            ErrorCode::InvalidAcl,
        );
        assert_code(
            &h.fail(set_acl("/a", bad.clone(), -1)),
            ErrorCode::InvalidAcl,
        );
    }
    // `auth` with only an address is still unauthenticated.
    h.as_identity(Identity::with_ip("10.0.0.1".parse().unwrap()));
    assert_code(
        &h.fail(create_acl("/b", vec![acl(perms::ALL, "auth", "")])),
        ErrorCode::InvalidAcl,
    );
}

#[test]
fn too_large_data() {
    let mut h = Harness::with_limits(TreeLimits {
        max_data_bytes: 4,
        ..TreeLimits::default()
    });
    assert_eq!(
        h.fail(create_with("/a", b"12345", CreateMode::Persistent)),
        Error::TooLarge {
            what: "data",
            limit: 4,
            actual: 5
        }
    );
    h.ok(create_with("/a", b"1234", CreateMode::Persistent));
    assert_eq!(
        h.fail(set_data("/a", b"abcdef", -1)),
        Error::TooLarge {
            what: "data",
            limit: 4,
            actual: 6
        }
    );
    h.ok(set_data("/a", b"abcd", -1));
}

#[test]
fn too_large_path_counts_the_sequence_suffix() {
    let mut h = Harness::with_limits(TreeLimits {
        max_path_bytes: 16,
        ..TreeLimits::default()
    });
    let too_long = |actual| Error::TooLarge {
        what: "path length",
        limit: 16,
        actual,
    };
    assert_eq!(h.fail(create("/abcdefghijklmnop")), too_long(17));
    h.ok(create("/abcdefghijklmno"));
    assert_eq!(
        h.fail(create_with(
            "/abcdefg",
            b"",
            CreateMode::PersistentSequential
        )),
        too_long(18)
    );
    assert_eq!(
        h.fail(create_with("/abcdef", b"", CreateMode::EphemeralSequential)),
        too_long(17)
    );
    let created = h.created(create_with("/abcde", b"", CreateMode::PersistentSequential));
    assert_eq!(created.len(), 16);
    // Writes to an over-long path are refused before the lookup.
    assert_eq!(
        h.fail(set_data("/abcdefghijklmnopq", b"", -1)),
        too_long(18)
    );
    assert_eq!(h.fail(delete("/abcdefghijklmnopq", -1)), too_long(18));
}

#[test]
fn too_large_children() {
    let mut h = Harness::with_limits(TreeLimits {
        max_children: 2,
        ..TreeLimits::default()
    });
    h.ok(create("/p")); // the root now holds zookeeper and p
    assert_eq!(
        h.fail(create("/q")),
        Error::TooLarge {
            what: "children of a node",
            limit: 2,
            actual: 3
        }
    );
    h.ok(create("/p/1"));
    h.ok(create_with("/p/s", b"", CreateMode::PersistentSequential));
    assert_code(&h.fail(create("/p/3")), ErrorCode::TooLarge);
    h.ok(delete("/p/1", -1));
    h.ok(create("/p/3"));
}

#[test]
fn too_large_multi() {
    let mut h = Harness::with_limits(TreeLimits {
        max_multi_ops: 2,
        ..TreeLimits::default()
    });
    let error = h.fail(WriteOp::Multi(vec![
        create("/a"),
        check("/", -1),
        check("/", -1),
    ]));
    assert_eq!(
        error,
        Error::TooLarge {
            what: "operations in a multi",
            limit: 2,
            actual: 3
        }
    );
    h.ok(WriteOp::Multi(vec![create("/a"), check("/a", 0)]));
}

#[test]
fn bad_arguments() {
    let mut h = Harness::new();
    h.session = 0;
    for mode in [CreateMode::Ephemeral, CreateMode::EphemeralSequential] {
        assert_code(
            &h.fail(create_with("/e", b"", mode)),
            ErrorCode::BadArguments,
        );
    }
    for (mode, ttl) in [
        (CreateMode::PersistentWithTtl, 0),
        (CreateMode::PersistentWithTtl, -5),
        (CreateMode::PersistentWithTtl, MAX_TTL_MS + 1),
        (CreateMode::PersistentSequentialWithTtl, 0),
        (CreateMode::PersistentSequentialWithTtl, i64::MAX),
    ] {
        assert_code(
            &h.fail(create_ttl("/t", mode, ttl)),
            ErrorCode::BadArguments,
        );
    }
    h.ok(create_ttl("/t", CreateMode::PersistentWithTtl, MAX_TTL_MS));
    assert_eq!(h.stat("/t").ephemeral_owner, ttl_owner(MAX_TTL_MS));
    assert_eq!(ttl_of(h.stat("/t").ephemeral_owner), Some(MAX_TTL_MS));

    assert_code(&h.fail(delete("/", -1)), ErrorCode::BadArguments);
    assert_code(&h.fail(delete("/", 0)), ErrorCode::BadArguments);

    // A nested multi aborts its parent at the nested op.
    let before = h.tree.dump();
    let (result, triggers) = h.run(&WriteOp::Multi(vec![create("/m"), WriteOp::Multi(vec![])]));
    match result {
        Ok(OpOutcome::Multi(MultiOutcome::Aborted {
            failed_index: 1,
            error: Error::BadArguments(_),
            len: 2,
        })) => {}
        other => panic!("{other:?}"),
    }
    assert!(triggers.is_empty());
    assert_eq!(h.tree.dump(), before);
}

// ---------------------------------------------------------- create modes

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

// ----------------------------------------------------------------- multi

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

// ------------------------------------------------------------------- ACL

#[test]
fn digest_acl_admits_only_the_matching_credential() {
    let mut h = Harness::new();
    let alice_id = digest_id("alice:pw").unwrap();
    h.ok(create_acl("/d", vec![acl(perms::ALL, "digest", &alice_id)]));
    let anon = Identity::anonymous();
    assert_code(
        &h.tree.get_data("/d", &anon).unwrap_err(),
        ErrorCode::NoAuth,
    );
    assert!(h.tree.get_data("/d", &digest_identity("alice:pw")).is_ok());
    for other in ["alice:wrong", "bob:pw"] {
        assert_code(
            &h.tree.get_data("/d", &digest_identity(other)).unwrap_err(),
            ErrorCode::NoAuth,
        );
    }
    assert_code(&h.fail(set_data("/d", b"x", -1)), ErrorCode::NoAuth);
    h.as_identity(digest_identity("alice:pw"));
    h.ok(set_data("/d", b"x", -1));
    h.ok(create("/d/child"));
}

#[test]
fn get_acl_masks_digest_hashes_from_readers_without_admin() {
    let mut h = Harness::new();
    let alice_id = digest_id("alice:pw").unwrap();
    let entries = vec![
        acl(perms::ALL, "digest", &alice_id),
        acl(perms::READ, "world", "anyone"),
    ];
    h.ok(create_acl("/shared", entries.clone()));
    let (seen, _) = h.tree.get_acl("/shared", &Identity::anonymous()).unwrap();
    let ids: Vec<&str> = seen.iter().map(|a| a.id.id.as_str()).collect();
    assert!(ids.contains(&"alice:x"), "the hash is not shown: {ids:?}");
    assert!(ids.contains(&"anyone"), "{ids:?}");
    let (admin_sees, _) = h
        .tree
        .get_acl("/shared", &digest_identity("alice:pw"))
        .unwrap();
    let ids: Vec<&str> = admin_sees.iter().map(|a| a.id.id.as_str()).collect();
    assert!(
        ids.contains(&alice_id.as_str()),
        "ADMIN sees the ACL as it is"
    );
}

#[test]
fn ip_acl_matches_addresses_and_cidr_ranges() {
    let mut h = Harness::new();
    h.ok(create_acl(
        "/net",
        vec![
            acl(perms::WRITE, "ip", "10.0.0.0/8"),
            acl(perms::READ, "ip", "192.168.1.7"),
            acl(perms::ADMIN, "ip", "fd00::/8"),
        ],
    ));
    let at = |ip: &str| Identity::with_ip(ip.parse().unwrap());
    h.as_identity(at("10.1.2.3"));
    h.ok(set_data("/net", b"1", -1));
    h.as_identity(at("11.0.0.1"));
    assert_code(&h.fail(set_data("/net", b"2", -1)), ErrorCode::NoAuth);
    assert!(h.tree.get_data("/net", &at("192.168.1.7")).is_ok());
    assert_code(
        &h.tree.get_data("/net", &at("192.168.1.8")).unwrap_err(),
        ErrorCode::NoAuth,
    );
    assert_code(
        &h.tree.get_data("/net", &at("10.1.2.3")).unwrap_err(),
        ErrorCode::NoAuth,
    );
    h.as_identity(at("fd12::1"));
    h.ok(set_acl("/net", Acl::open(), -1));
}

#[test]
fn world_acl_grants_its_bits_to_everyone() {
    let mut h = Harness::new();
    h.ok(create_acl("/r", world(perms::READ | perms::CREATE)));
    h.as_identity(digest_identity("alice:pw"));
    assert!(h.tree.get_data("/r", &h.identity).is_ok());
    h.ok(create("/r/c"));
    assert_code(&h.fail(set_data("/r", b"", -1)), ErrorCode::NoAuth);
    assert_code(&h.fail(delete("/r/c", -1)), ErrorCode::NoAuth);
}

#[test]
fn auth_scheme_expands_to_the_authenticated_ids() {
    let mut h = Harness::new();
    let alice = Id::new("digest", digest_id("alice:pw").unwrap());
    let carol = Id::new("digest", digest_id("carol:pw").unwrap());
    h.as_identity(Identity {
        ids: vec![Id::new("ip", "10.0.0.1"), carol.clone(), alice.clone()],
    });
    h.ok(create_acl(
        "/mine",
        vec![
            acl(perms::ALL, "auth", ""),
            acl(perms::READ, "world", "anyone"),
        ],
    ));
    let mut expected = vec![
        Acl {
            perms: perms::ALL,
            id: alice.clone(),
        },
        Acl {
            perms: perms::ALL,
            id: carol,
        },
        Acl {
            perms: perms::READ,
            id: Id::anyone(),
        },
    ];
    expected.sort();
    // Read as its ADMIN, which sees the digests unmasked.
    let (got, _) = h.tree.get_acl("/mine", &h.identity).unwrap();
    assert_eq!(got, expected, "the address is not an authenticated id");

    h.as_identity(digest_identity("alice:pw"));
    h.ok(set_acl(
        "/mine",
        vec![acl(perms::READ | perms::ADMIN, "auth", "")],
        -1,
    ));
    assert_eq!(
        h.tree.get_acl("/mine", &h.identity).unwrap().0,
        [Acl {
            perms: perms::READ | perms::ADMIN,
            id: alice
        }]
    );
    assert_code(
        &h.tree
            .get_data("/mine", &Identity::anonymous())
            .unwrap_err(),
        ErrorCode::NoAuth,
    );
}

#[test]
fn super_user_bypasses_every_acl() {
    let mut h = Harness::with_config(TreeConfig {
        acl: AclPolicy {
            super_digest: Some(digest_id("super:secret").unwrap()),
        },
        ..TreeConfig::default()
    });
    h.ok(create_acl(
        "/locked",
        vec![acl(perms::READ, "ip", "1.2.3.4")],
    ));
    let anon = Identity::anonymous();
    assert_code(
        &h.tree.get_data("/locked", &anon).unwrap_err(),
        ErrorCode::NoAuth,
    );
    assert_code(&h.fail(create("/locked/c")), ErrorCode::NoAuth);

    for root in [
        digest_identity("super:secret"),
        Identity {
            ids: vec![Id::new("super", "")],
        },
    ] {
        assert!(h.tree.get_data("/locked", &root).is_ok());
        assert!(h.tree.get_acl("/locked", &root).is_ok());
        h.as_identity(root);
        h.ok(set_data("/locked", b"x", -1));
        h.ok(create("/locked/c"));
        h.ok(delete("/locked/c", -1));
        h.ok(set_acl(
            "/locked",
            vec![acl(perms::READ, "ip", "1.2.3.4")],
            -1,
        ));
    }
    h.as_identity(digest_identity("super:wrong"));
    assert_code(&h.fail(set_data("/locked", b"y", -1)), ErrorCode::NoAuth);
}

#[test]
fn get_acl_needs_read_or_admin_and_exists_needs_nothing() {
    let mut h = Harness::new();
    h.ok(create_acl("/admin", world(perms::ADMIN)));
    h.ok(create_acl("/read", world(perms::READ)));
    h.ok(create_acl("/write", world(perms::WRITE)));
    h.ok(create_acl("/none", vec![acl(perms::ALL, "ip", "1.2.3.4")]));
    let anon = Identity::anonymous();
    assert_eq!(
        h.tree.get_acl("/admin", &anon).unwrap().0,
        world(perms::ADMIN)
    );
    assert!(h.tree.get_acl("/read", &anon).is_ok());
    assert_eq!(
        h.tree.get_acl("/write", &anon).unwrap_err(),
        Error::NoAuth("/write".into())
    );
    assert_code(
        &h.tree.get_acl("/none", &anon).unwrap_err(),
        ErrorCode::NoAuth,
    );
    assert_code(
        &h.tree.get_data("/admin", &anon).unwrap_err(),
        ErrorCode::NoAuth,
    );
    let stat = h.tree.exists("/none").unwrap();
    assert_eq!(stat, Some(h.stat("/none")));
}

#[test]
fn acl_lists_are_shared_and_released() {
    let mut h = Harness::new();
    assert_eq!(h.tree.acl_lists(), 1);
    h.ok(create("/a"));
    h.ok(create_acl("/r1", world(perms::READ | perms::ADMIN)));
    h.ok(create_acl("/r2", world(perms::READ | perms::ADMIN)));
    assert_eq!(h.tree.acl_lists(), 2);
    h.ok(set_acl("/r1", Acl::open(), -1));
    assert_eq!(h.tree.acl_lists(), 2);
    h.ok(delete("/r2", -1));
    assert_eq!(h.tree.acl_lists(), 1);
}

// ---------------------------------------------------- the state machine

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
