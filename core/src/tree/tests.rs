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

mod acl;
mod create_modes;
mod multi;
mod state_machine;
