//! Random histories: the steps and the strategies that draw them, with
//! paths, versions and sessions chosen before the run and resolved against
//! the model when their step comes.

use super::*;

// ----------------------------------------------------------- histories

/// A path, chosen before the history runs and resolved against the model
/// when its step comes, so that steps can aim at nodes that exist then.
#[derive(Debug, Clone)]
pub(crate) enum PathSel {
    Literal(String),
    /// The i-th node outside the reserved subtree and other than the root,
    /// modulo their number (the root when there is none).
    Existing(usize),
    /// A child named so of such a node, or of the root.
    Under(usize, &'static str),
    /// Usually the i-th reap candidate of the model, else its i-th
    /// container, else the i-th node.
    Container(usize),
    /// A child named so of the i-th container, or else of the i-th node.
    UnderContainer(usize, &'static str),
    /// The i-th child of any container, or else the i-th node.
    ContainerChild(usize),
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum VersionSel {
    Any,
    Current,
    Literal(i32),
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum SessionSel {
    NoSession,
    Open(usize),
    /// A closed session when there is one, else one never opened.
    Stale,
}

#[derive(Debug, Clone)]
pub(crate) enum OpSpec {
    Create {
        path: PathSel,
        trailing_slash: bool,
        data: Vec<u8>,
        mode: CreateMode,
        perms: u32,
    },
    Delete {
        path: PathSel,
        version: VersionSel,
    },
    SetData {
        path: PathSel,
        data: Vec<u8>,
        version: VersionSel,
    },
    SetAcl {
        path: PathSel,
        perms: u32,
        version: VersionSel,
    },
    Check {
        path: PathSel,
        version: VersionSel,
    },
    Nested,
}

#[derive(Debug, Clone)]
pub(crate) enum Step {
    Write {
        session: SessionSel,
        op: OpSpec,
    },
    Multi {
        session: SessionSel,
        ops: Vec<OpSpec>,
    },
    OpenSession {
        timeout_ms: Millis,
    },
    CloseSession {
        session: SessionSel,
        expired: bool,
    },
    Reap {
        path: PathSel,
    },
    Watch {
        watcher: SessionId,
        path: PathSel,
        kind: WatchKind,
    },
    /// Removes watches from the path of the i-th watch held, or from `path`
    /// when `held` is None or no watch is held.
    Unwatch {
        watcher: SessionId,
        held: Option<usize>,
        path: PathSel,
        which: WatcherType,
    },
    DropWatcher {
        watcher: SessionId,
    },
    Replay {
        back: i64,
        op: OpSpec,
    },
    Gap {
        by: i64,
    },
}

pub(crate) fn name() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["a", "b", "c"])
}

pub(crate) fn literal_path() -> impl Strategy<Value = String> {
    prop_oneof![
        20 => prop::collection::vec(name(), 1..=3).prop_map(|v| format!("/{}", v.join("/"))),
        1 => prop::sample::select(vec![
            "/", "", "a", "/a/", "//a", "/a//b", "/a/./b",
            "/zookeeper", "/zookeeper/quota", "/zookeeper/x",
        ])
        .prop_map(String::from),
    ]
}

pub(crate) fn path_sel() -> impl Strategy<Value = PathSel> {
    prop_oneof![
        3 => literal_path().prop_map(PathSel::Literal),
        4 => any::<usize>().prop_map(PathSel::Existing),
        2 => (any::<usize>(), name()).prop_map(|(i, n)| PathSel::Under(i, n)),
        2 => (any::<usize>(), name()).prop_map(|(i, n)| PathSel::UnderContainer(i, n)),
        2 => any::<usize>().prop_map(PathSel::ContainerChild),
    ]
}

pub(crate) fn version_sel() -> impl Strategy<Value = VersionSel> {
    prop_oneof![
        2 => Just(VersionSel::Any),
        3 => Just(VersionSel::Current),
        1 => (0..3i32).prop_map(VersionSel::Literal),
    ]
}

pub(crate) fn session_sel() -> impl Strategy<Value = SessionSel> {
    prop_oneof![
        3 => Just(SessionSel::NoSession),
        8 => any::<usize>().prop_map(SessionSel::Open),
        1 => Just(SessionSel::Stale),
    ]
}

pub(crate) fn data() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(0u8..4, 0..4)
}

pub(crate) fn acl_perms() -> impl Strategy<Value = u32> {
    prop_oneof![
        12 => Just(perms::ALL),
        1 => Just(perms::ALL & !perms::DELETE),
        1 => Just(perms::ALL & !perms::CREATE),
        1 => Just(perms::READ | perms::ADMIN),
        1 => Just(perms::ALL & !perms::READ),
    ]
}

pub(crate) fn mode() -> impl Strategy<Value = CreateMode> {
    prop_oneof![
        4 => Just(CreateMode::Persistent),
        3 => Just(CreateMode::Ephemeral),
        2 => Just(CreateMode::PersistentSequential),
        2 => Just(CreateMode::EphemeralSequential),
        3 => Just(CreateMode::Container),
    ]
}

pub(crate) fn op_spec() -> impl Strategy<Value = OpSpec> {
    prop_oneof![
        5 => (path_sel(), prop::bool::weighted(0.15), data(), mode(), acl_perms()).prop_map(
            |(path, trailing_slash, data, mode, perms)| OpSpec::Create {
                path,
                trailing_slash,
                data,
                mode,
                perms,
            }
        ),
        3 => (path_sel(), version_sel())
            .prop_map(|(path, version)| OpSpec::Delete { path, version }),
        3 => (path_sel(), data(), version_sel())
            .prop_map(|(path, data, version)| OpSpec::SetData { path, data, version }),
        1 => (path_sel(), acl_perms(), version_sel())
            .prop_map(|(path, perms, version)| OpSpec::SetAcl { path, perms, version }),
        1 => (path_sel(), version_sel())
            .prop_map(|(path, version)| OpSpec::Check { path, version }),
    ]
}

pub(crate) fn multi_op_spec() -> impl Strategy<Value = OpSpec> {
    prop_oneof![30 => op_spec(), 1 => Just(OpSpec::Nested)]
}

pub(crate) fn watch_kind() -> impl Strategy<Value = WatchKind> {
    prop::sample::select(vec![
        WatchKind::Data,
        WatchKind::Child,
        WatchKind::Persistent,
        WatchKind::PersistentRecursive,
    ])
}

pub(crate) fn watcher_type() -> impl Strategy<Value = WatcherType> {
    prop::sample::select(vec![
        WatcherType::Any,
        WatcherType::Data,
        WatcherType::Children,
        WatcherType::Persistent,
        WatcherType::PersistentRecursive,
    ])
}

pub(crate) const WATCHERS: std::ops::RangeInclusive<SessionId> = 1..=3;

pub(crate) fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        30 => (session_sel(), op_spec()).prop_map(|(session, op)| Step::Write { session, op }),
        9 => (session_sel(), prop::collection::vec(multi_op_spec(), 0..5))
            .prop_map(|(session, ops)| Step::Multi { session, ops }),
        5 => (0..60_000i64).prop_map(|timeout_ms| Step::OpenSession { timeout_ms }),
        3 => (session_sel(), any::<bool>())
            .prop_map(|(session, expired)| Step::CloseSession { session, expired }),
        3 => prop_oneof![
            3 => any::<usize>().prop_map(PathSel::Container),
            1 => path_sel(),
        ]
        .prop_map(|path| Step::Reap { path }),
        12 => (WATCHERS, path_sel(), watch_kind())
            .prop_map(|(watcher, path, kind)| Step::Watch { watcher, path, kind }),
        3 => (WATCHERS, prop::option::weighted(0.8, any::<usize>()), path_sel(), watcher_type())
            .prop_map(|(watcher, held, path, which)| Step::Unwatch {
                watcher,
                held,
                path,
                which,
            }),
        1 => WATCHERS.prop_map(|watcher| Step::DropWatcher { watcher }),
        1 => (0..3i64, op_spec()).prop_map(|(back, op)| Step::Replay { back, op }),
        1 => (1..4i64).prop_map(|by| Step::Gap { by }),
    ]
}
