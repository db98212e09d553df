//! Model-based property test of the state machine. Random histories of
//! creates (every non-TTL mode, sequential or not), deletes, setData, setACL,
//! checks, multis, container reaps, replays, session opens, closes and
//! expiries run through `StateMachine::apply` and, in lock step, through a
//! small reference model written here from ZooKeeper's rules. Watches are
//! registered at random in a `WatchRegistry` and in a model of one-shot,
//! persistent and recursive watches. After every step the outcome, the
//! triggers, the watch events, the whole tree, the sessions and their
//! ephemerals must agree.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use synod_core::acl::{Acl, Id, Identity, perms};
use synod_core::state::{StateConfig, StateMachine};
use synod_core::tree::{NodeView, Stat};
use synod_core::txn::{CloseReason, CreateMode, MultiOutcome, OpOutcome, Txn, TxnOutcome, WriteOp};
use synod_core::watch::{EventType, Trigger, WatchEvent, WatchKind, WatchRegistry, WatcherType};
use synod_core::{Error, ErrorCode, Millis, SessionId, Zxid};

// ------------------------------------------------------------ the model

/// One znode of the model. Every ACL in these histories is a single
/// `world:anyone` entry, so the model keeps only its permission bits.
#[derive(Debug, Clone)]
struct ModelNode {
    data: Vec<u8>,
    perms: u32,
    czxid: Zxid,
    mzxid: Zxid,
    pzxid: Zxid,
    ctime: Millis,
    mtime: Millis,
    version: i32,
    cversion: i32,
    aversion: i32,
    owner: i64,
}

impl ModelNode {
    fn new(data: Vec<u8>, perms: u32, owner: i64, zxid: Zxid, time: Millis) -> Self {
        ModelNode {
            data,
            perms,
            czxid: zxid,
            mzxid: zxid,
            pzxid: zxid,
            ctime: time,
            mtime: time,
            version: 0,
            cversion: 0,
            aversion: 0,
            owner,
        }
    }
}

/// What an operation returned, in a form both sides can produce: errors
/// are compared by code and the path they name.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Res {
    Created(String, Stat),
    Deleted,
    DataSet(Stat),
    AclSet(Stat),
    Checked,
    Committed(Vec<Res>),
    Aborted {
        index: usize,
        code: ErrorCode,
        path: Option<String>,
        len: usize,
    },
    Err(ErrorCode, Option<String>),
}

type MErr = (ErrorCode, Option<String>);

fn merr(code: ErrorCode, path: &str) -> MErr {
    (code, Some(path.to_owned()))
}

const CONTAINER: i64 = i64::MIN;
const RESERVED: &str = "/zookeeper";

fn parent_of(p: &str) -> &str {
    match p.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &p[..i],
    }
}

fn valid(p: &str) -> bool {
    if p == "/" {
        return true;
    }
    p.starts_with('/')
        && !p.ends_with('/')
        && p[1..]
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..")
}

fn valid_sequential_prefix(p: &str) -> bool {
    if p.len() > 1 && p.ends_with('/') {
        valid(&format!("{p}1"))
    } else {
        valid(p)
    }
}

/// Not writable by clients: the reserved subtree, except below
/// `/zookeeper/quota`, where ZooKeeper clients keep quotas.
fn reserved(p: &str) -> bool {
    (p == RESERVED || p.starts_with("/zookeeper/")) && !p.starts_with("/zookeeper/quota/")
}

fn strictly_below(p: &str, ancestor: &str) -> bool {
    if ancestor == "/" {
        return p != "/";
    }
    p.len() > ancestor.len() && p.starts_with(ancestor) && p.as_bytes()[ancestor.len()] == b'/'
}

fn permits(node: &ModelNode, perm: u32) -> bool {
    node.perms & perm != 0
}

fn version_ok(expected: i32, actual: i32) -> bool {
    expected == -1 || expected == actual
}

#[derive(Debug, Clone)]
struct Model {
    nodes: BTreeMap<String, ModelNode>,
    /// Open sessions and their negotiated timeouts.
    sessions: BTreeMap<SessionId, Millis>,
}

impl Model {
    fn new() -> Self {
        let mut nodes = BTreeMap::new();
        for p in ["/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"] {
            nodes.insert(p.to_owned(), ModelNode::new(vec![], perms::ALL, 0, 0, 0));
        }
        Model {
            nodes,
            sessions: BTreeMap::new(),
        }
    }

    fn children(&self, p: &str) -> Vec<&str> {
        self.nodes
            .keys()
            .filter(|k| k.as_str() != "/" && parent_of(k) == p)
            .map(String::as_str)
            .collect()
    }

    fn stat(&self, p: &str) -> Stat {
        let n = &self.nodes[p];
        Stat {
            czxid: n.czxid,
            mzxid: n.mzxid,
            ctime: n.ctime,
            mtime: n.mtime,
            version: n.version,
            cversion: n.cversion,
            aversion: n.aversion,
            ephemeral_owner: n.owner,
            data_length: n.data.len() as i32,
            num_children: self.children(p).len() as i32,
            pzxid: n.pzxid,
        }
    }

    fn dump(&self) -> Vec<NodeView> {
        self.nodes
            .iter()
            .map(|(p, n)| NodeView {
                path: p.clone(),
                data: n.data.clone(),
                acl: vec![Acl {
                    perms: n.perms,
                    id: Id::anyone(),
                }],
                stat: self.stat(p),
            })
            .collect()
    }

    fn ephemerals(&self, session: SessionId) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.owner == session)
            .map(|(p, _)| p.clone())
            .collect()
    }

    fn remove(&mut self, p: &str, zxid: Zxid, triggers: &mut Vec<Trigger>) {
        self.nodes.remove(p);
        let parent = parent_of(p).to_owned();
        if let Some(n) = self.nodes.get_mut(&parent) {
            n.pzxid = zxid;
        }
        triggers.push(trigger(p, EventType::NodeDeleted, zxid));
        triggers.push(trigger(&parent, EventType::NodeChildrenChanged, zxid));
    }

    fn write(
        &mut self,
        op: &WriteOp,
        session: SessionId,
        zxid: Zxid,
        time: Millis,
        triggers: &mut Vec<Trigger>,
    ) -> Result<Res, MErr> {
        match op {
            WriteOp::Multi(ops) => {
                let mut scratch = self.clone();
                let mut pending = Vec::new();
                let mut results = Vec::new();
                for (index, op) in ops.iter().enumerate() {
                    let result = match op {
                        WriteOp::Multi(_) => Err((ErrorCode::BadArguments, None)),
                        single => scratch.write(single, session, zxid, time, &mut pending),
                    };
                    match result {
                        Ok(r) => results.push(r),
                        Err((code, path)) => {
                            return Ok(Res::Aborted {
                                index,
                                code,
                                path,
                                len: ops.len(),
                            });
                        }
                    }
                }
                *self = scratch;
                triggers.append(&mut pending);
                Ok(Res::Committed(results))
            }
            WriteOp::Create {
                path,
                data,
                acl,
                mode,
                ..
            } => self.create(
                path,
                data.as_deref().unwrap_or_default(),
                acl,
                *mode,
                session,
                zxid,
                time,
                triggers,
            ),
            WriteOp::Delete { path, version } => {
                if !valid(path) {
                    return Err(merr(ErrorCode::InvalidPath, path));
                }
                if path == "/" {
                    return Err((ErrorCode::BadArguments, None));
                }
                if reserved(path) {
                    return Err(merr(ErrorCode::InvalidPath, path));
                }
                let parent = parent_of(path);
                let Some(pn) = self.nodes.get(parent) else {
                    return Err(merr(ErrorCode::NoNode, parent));
                };
                if !permits(pn, perms::DELETE) {
                    return Err(merr(ErrorCode::NoAuth, parent));
                }
                let Some(node) = self.nodes.get(path) else {
                    return Err(merr(ErrorCode::NoNode, path));
                };
                if !version_ok(*version, node.version) {
                    return Err(merr(ErrorCode::BadVersion, path));
                }
                if !self.children(path).is_empty() {
                    return Err(merr(ErrorCode::NotEmpty, path));
                }
                self.remove(path, zxid, triggers);
                Ok(Res::Deleted)
            }
            WriteOp::SetData {
                path,
                data,
                version,
            } => {
                if !valid(path) || reserved(path) {
                    return Err(merr(ErrorCode::InvalidPath, path));
                }
                let Some(node) = self.nodes.get_mut(path) else {
                    return Err(merr(ErrorCode::NoNode, path));
                };
                if !permits(node, perms::WRITE) {
                    return Err(merr(ErrorCode::NoAuth, path));
                }
                if !version_ok(*version, node.version) {
                    return Err(merr(ErrorCode::BadVersion, path));
                }
                node.data = data.clone().unwrap_or_default();
                node.version += 1;
                node.mzxid = zxid;
                node.mtime = time;
                triggers.push(trigger(path, EventType::NodeDataChanged, zxid));
                Ok(Res::DataSet(self.stat(path)))
            }
            WriteOp::SetAcl { path, acl, version } => {
                if !valid(path) || reserved(path) {
                    return Err(merr(ErrorCode::InvalidPath, path));
                }
                let Some(node) = self.nodes.get_mut(path) else {
                    return Err(merr(ErrorCode::NoNode, path));
                };
                if !permits(node, perms::ADMIN) {
                    return Err(merr(ErrorCode::NoAuth, path));
                }
                if !version_ok(*version, node.aversion) {
                    return Err(merr(ErrorCode::BadVersion, path));
                }
                node.perms = world_perms(acl);
                node.aversion += 1;
                Ok(Res::AclSet(self.stat(path)))
            }
            WriteOp::Check { path, version } => {
                if !valid(path) {
                    return Err(merr(ErrorCode::InvalidPath, path));
                }
                let Some(node) = self.nodes.get(path) else {
                    return Err(merr(ErrorCode::NoNode, path));
                };
                if !permits(node, perms::READ) {
                    return Err(merr(ErrorCode::NoAuth, path));
                }
                if !version_ok(*version, node.version) {
                    return Err(merr(ErrorCode::BadVersion, path));
                }
                Ok(Res::Checked)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        requested: &str,
        data: &[u8],
        acl: &[Acl],
        mode: CreateMode,
        session: SessionId,
        zxid: Zxid,
        time: Millis,
        triggers: &mut Vec<Trigger>,
    ) -> Result<Res, MErr> {
        let sequential = matches!(
            mode,
            CreateMode::PersistentSequential | CreateMode::EphemeralSequential
        );
        let ephemeral = matches!(
            mode,
            CreateMode::Ephemeral | CreateMode::EphemeralSequential
        );
        let well_formed = if sequential {
            valid_sequential_prefix(requested)
        } else {
            valid(requested)
        };
        if !well_formed {
            return Err(merr(ErrorCode::InvalidPath, requested));
        }
        if requested == "/" && !sequential {
            return Err(merr(ErrorCode::NodeExists, "/"));
        }
        if reserved(requested) {
            return Err(merr(ErrorCode::InvalidPath, requested));
        }
        if ephemeral && session == 0 {
            return Err((ErrorCode::BadArguments, None));
        }
        let owner = match mode {
            CreateMode::Container => CONTAINER,
            _ if ephemeral => session,
            _ => 0,
        };
        let parent = parent_of(requested).to_owned();
        let Some(pn) = self.nodes.get(&parent) else {
            return Err(merr(ErrorCode::NoNode, &parent));
        };
        if !permits(pn, perms::CREATE) {
            return Err(merr(ErrorCode::NoAuth, &parent));
        }
        if pn.owner > 0 {
            return Err(merr(ErrorCode::NoChildrenForEphemerals, &parent));
        }
        let path = if sequential {
            format!("{requested}{:010}", pn.cversion)
        } else {
            requested.to_owned()
        };
        if self.nodes.contains_key(&path) {
            return Err(merr(ErrorCode::NodeExists, &path));
        }
        let pn = self.nodes.get_mut(&parent).expect("checked above");
        pn.cversion += 1;
        pn.pzxid = zxid;
        self.nodes.insert(
            path.clone(),
            ModelNode::new(data.to_vec(), world_perms(acl), owner, zxid, time),
        );
        triggers.push(trigger(&path, EventType::NodeCreated, zxid));
        triggers.push(trigger(&parent, EventType::NodeChildrenChanged, zxid));
        let stat = self.stat(&path);
        Ok(Res::Created(path, stat))
    }

    /// Containers that had children and have none: what a leader would reap.
    fn reap_candidates(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(p, n)| n.owner == CONTAINER && n.cversion > 0 && self.children(p).is_empty())
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// `Txn::Reap` of a container: only once it had children and has none.
    fn reap(&mut self, p: &str, zxid: Zxid, triggers: &mut Vec<Trigger>) -> bool {
        let qualifies = self
            .nodes
            .get(p)
            .is_some_and(|n| n.owner == CONTAINER && n.cversion > 0)
            && self.children(p).is_empty();
        if qualifies {
            self.remove(p, zxid, triggers);
        }
        qualifies
    }

    /// Ends a session and deletes its ephemerals. The deleted paths are
    /// reported in path order but removed (and triggered) in reverse path
    /// order, which is what the core does; ZooKeeper leaves the order open.
    fn close(
        &mut self,
        session: SessionId,
        zxid: Zxid,
        triggers: &mut Vec<Trigger>,
    ) -> Vec<String> {
        if self.sessions.remove(&session).is_none() {
            return Vec::new();
        }
        let doomed = self.ephemerals(session);
        for p in doomed.iter().rev() {
            self.remove(p, zxid, triggers);
        }
        doomed
    }
}

fn world_perms(acl: &[Acl]) -> u32 {
    assert!(
        acl.len() == 1 && acl[0].id == Id::anyone(),
        "histories only use one world entry"
    );
    acl[0].perms
}

fn trigger(p: &str, event: EventType, zxid: Zxid) -> Trigger {
    Trigger {
        path: p.to_owned(),
        event,
        zxid,
    }
}

// ----------------------------------------------------- the watch model

#[derive(Debug, Default)]
struct WatchModel {
    watches: BTreeSet<(SessionId, String, WatchKind)>,
}

impl WatchModel {
    fn fire(&mut self, t: &Trigger) -> Vec<WatchEvent> {
        use EventType as E;
        use WatchKind as K;
        let mut fired = BTreeSet::new();
        let mut spent = Vec::new();
        for (watcher, p, kind) in &self.watches {
            let fires = if *p == t.path {
                match t.event {
                    E::NodeDeleted => true,
                    E::NodeCreated | E::NodeDataChanged => {
                        matches!(kind, K::Data | K::Persistent | K::PersistentRecursive)
                    }
                    E::NodeChildrenChanged => matches!(kind, K::Child | K::Persistent),
                    _ => false,
                }
            } else {
                *kind == K::PersistentRecursive
                    && t.event != E::NodeChildrenChanged
                    && strictly_below(&t.path, p)
            };
            if fires {
                fired.insert(*watcher);
                if *p == t.path && matches!(kind, K::Data | K::Child) {
                    spent.push((*watcher, p.clone(), *kind));
                }
            }
        }
        for w in spent {
            self.watches.remove(&w);
        }
        fired
            .into_iter()
            .map(|session| WatchEvent {
                session,
                event: t.event,
                path: t.path.clone(),
                zxid: t.zxid,
            })
            .collect()
    }

    fn remove(
        &mut self,
        watcher: SessionId,
        p: &str,
        which: WatcherType,
        zxid: Zxid,
    ) -> Result<Vec<WatchEvent>, MErr> {
        let covers = |k: WatchKind| match which {
            WatcherType::Any => true,
            WatcherType::Children => k == WatchKind::Child,
            WatcherType::Data => k == WatchKind::Data,
            WatcherType::Persistent => k == WatchKind::Persistent,
            WatcherType::PersistentRecursive => k == WatchKind::PersistentRecursive,
        };
        let mine: Vec<WatchKind> = self
            .watches
            .iter()
            .filter(|(w, q, k)| *w == watcher && q == p && covers(*k))
            .map(|(_, _, k)| *k)
            .collect();
        if mine.is_empty() {
            return Err(merr(ErrorCode::NoWatcher, p));
        }
        let mut events: Vec<WatchEvent> = Vec::new();
        for kind in mine {
            self.watches.remove(&(watcher, p.to_owned(), kind));
            let event = match kind {
                WatchKind::Data => EventType::DataWatchRemoved,
                WatchKind::Child => EventType::ChildWatchRemoved,
                _ => EventType::PersistentWatchRemoved,
            };
            if events.iter().all(|e| e.event != event) {
                events.push(WatchEvent {
                    session: watcher,
                    event,
                    path: p.to_owned(),
                    zxid,
                });
            }
        }
        Ok(events)
    }
}

// ----------------------------------------------------------- histories

/// A path, chosen before the history runs and resolved against the model
/// when its step comes, so that steps can aim at nodes that exist then.
#[derive(Debug, Clone)]
enum PathSel {
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
enum VersionSel {
    Any,
    Current,
    Literal(i32),
}

#[derive(Debug, Clone, Copy)]
enum SessionSel {
    NoSession,
    Open(usize),
    /// A closed session when there is one, else one never opened.
    Stale,
}

#[derive(Debug, Clone)]
enum OpSpec {
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
enum Step {
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

fn name() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["a", "b", "c"])
}

fn literal_path() -> impl Strategy<Value = String> {
    prop_oneof![
        20 => prop::collection::vec(name(), 1..=3).prop_map(|v| format!("/{}", v.join("/"))),
        1 => prop::sample::select(vec![
            "/", "", "a", "/a/", "//a", "/a//b", "/a/./b",
            "/zookeeper", "/zookeeper/quota", "/zookeeper/x",
        ])
        .prop_map(String::from),
    ]
}

fn path_sel() -> impl Strategy<Value = PathSel> {
    prop_oneof![
        3 => literal_path().prop_map(PathSel::Literal),
        4 => any::<usize>().prop_map(PathSel::Existing),
        2 => (any::<usize>(), name()).prop_map(|(i, n)| PathSel::Under(i, n)),
        2 => (any::<usize>(), name()).prop_map(|(i, n)| PathSel::UnderContainer(i, n)),
        2 => any::<usize>().prop_map(PathSel::ContainerChild),
    ]
}

fn version_sel() -> impl Strategy<Value = VersionSel> {
    prop_oneof![
        2 => Just(VersionSel::Any),
        3 => Just(VersionSel::Current),
        1 => (0..3i32).prop_map(VersionSel::Literal),
    ]
}

fn session_sel() -> impl Strategy<Value = SessionSel> {
    prop_oneof![
        3 => Just(SessionSel::NoSession),
        8 => any::<usize>().prop_map(SessionSel::Open),
        1 => Just(SessionSel::Stale),
    ]
}

fn data() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(0u8..4, 0..4)
}

fn acl_perms() -> impl Strategy<Value = u32> {
    prop_oneof![
        12 => Just(perms::ALL),
        1 => Just(perms::ALL & !perms::DELETE),
        1 => Just(perms::ALL & !perms::CREATE),
        1 => Just(perms::READ | perms::ADMIN),
        1 => Just(perms::ALL & !perms::READ),
    ]
}

fn mode() -> impl Strategy<Value = CreateMode> {
    prop_oneof![
        4 => Just(CreateMode::Persistent),
        3 => Just(CreateMode::Ephemeral),
        2 => Just(CreateMode::PersistentSequential),
        2 => Just(CreateMode::EphemeralSequential),
        3 => Just(CreateMode::Container),
    ]
}

fn op_spec() -> impl Strategy<Value = OpSpec> {
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

fn multi_op_spec() -> impl Strategy<Value = OpSpec> {
    prop_oneof![30 => op_spec(), 1 => Just(OpSpec::Nested)]
}

fn watch_kind() -> impl Strategy<Value = WatchKind> {
    prop::sample::select(vec![
        WatchKind::Data,
        WatchKind::Child,
        WatchKind::Persistent,
        WatchKind::PersistentRecursive,
    ])
}

fn watcher_type() -> impl Strategy<Value = WatcherType> {
    prop::sample::select(vec![
        WatcherType::Any,
        WatcherType::Data,
        WatcherType::Children,
        WatcherType::Persistent,
        WatcherType::PersistentRecursive,
    ])
}

const WATCHERS: std::ops::RangeInclusive<SessionId> = 1..=3;

fn step() -> impl Strategy<Value = Step> {
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

// -------------------------------------------------------------- driver

struct World {
    sm: StateMachine,
    model: Model,
    registry: WatchRegistry,
    watch_model: WatchModel,
    closed: Vec<SessionId>,
    /// Every watch event fired so far, for the fixed history below.
    events: Vec<WatchEvent>,
}

impl World {
    fn resolve(&self, sel: &PathSel) -> String {
        let existing = |i: usize| {
            let open: Vec<&String> = self
                .model
                .nodes
                .keys()
                .filter(|p| !reserved(p) && p.as_str() != "/")
                .collect();
            if open.is_empty() {
                "/".to_owned()
            } else {
                open[i % open.len()].clone()
            }
        };
        let container = |i: usize| {
            let candidates = self.model.reap_candidates();
            if !candidates.is_empty() && !i.is_multiple_of(3) {
                return candidates[i % candidates.len()].clone();
            }
            let containers: Vec<&String> = self
                .model
                .nodes
                .iter()
                .filter(|(_, n)| n.owner == CONTAINER)
                .map(|(p, _)| p)
                .collect();
            if containers.is_empty() {
                existing(i)
            } else {
                containers[i % containers.len()].clone()
            }
        };
        let under = |base: String, child: &str| {
            if base == "/" {
                format!("/{child}")
            } else {
                format!("{base}/{child}")
            }
        };
        match sel {
            PathSel::Literal(p) => p.clone(),
            PathSel::Existing(i) => existing(*i),
            PathSel::Container(i) => container(*i),
            PathSel::Under(i, child) if i.is_multiple_of(5) => under("/".into(), child),
            PathSel::Under(i, child) => under(existing(*i), child),
            PathSel::UnderContainer(i, child) => under(container(*i), child),
            PathSel::ContainerChild(i) => {
                let children: Vec<&String> = self
                    .model
                    .nodes
                    .keys()
                    .filter(|p| {
                        p.as_str() != "/" && self.model.nodes[parent_of(p)].owner == CONTAINER
                    })
                    .collect();
                if children.is_empty() {
                    existing(*i)
                } else {
                    children[i % children.len()].clone()
                }
            }
        }
    }

    fn version(&self, path: &str, sel: VersionSel, acl_version: bool) -> i32 {
        match sel {
            VersionSel::Any => -1,
            VersionSel::Literal(v) => v,
            VersionSel::Current => self
                .model
                .nodes
                .get(path)
                .map_or(0, |n| if acl_version { n.aversion } else { n.version }),
        }
    }

    fn session(&self, sel: SessionSel) -> SessionId {
        match sel {
            SessionSel::NoSession => 0,
            SessionSel::Open(i) => {
                let open: Vec<SessionId> = self.model.sessions.keys().copied().collect();
                if open.is_empty() {
                    0
                } else {
                    open[i % open.len()]
                }
            }
            SessionSel::Stale => self.closed.last().copied().unwrap_or(1 << 40),
        }
    }

    fn build(&self, spec: &OpSpec) -> WriteOp {
        let world = |perms| {
            vec![Acl {
                perms,
                id: Id::anyone(),
            }]
        };
        match spec {
            OpSpec::Create {
                path,
                trailing_slash,
                data,
                mode,
                perms,
            } => {
                let mut path = self.resolve(path);
                if *trailing_slash {
                    path.push('/');
                }
                WriteOp::Create {
                    path,
                    data: Some(data.clone()),
                    acl: world(*perms),
                    mode: *mode,
                    ttl_ms: 0,
                }
            }
            OpSpec::Delete { path, version } => {
                let path = self.resolve(path);
                let version = self.version(&path, *version, false);
                WriteOp::Delete { path, version }
            }
            OpSpec::SetData {
                path,
                data,
                version,
            } => {
                let path = self.resolve(path);
                let version = self.version(&path, *version, false);
                WriteOp::SetData {
                    path,
                    data: Some(data.clone()),
                    version,
                }
            }
            OpSpec::SetAcl {
                path,
                perms,
                version,
            } => {
                let path = self.resolve(path);
                let version = self.version(&path, *version, true);
                WriteOp::SetAcl {
                    path,
                    acl: world(*perms),
                    version,
                }
            }
            OpSpec::Check { path, version } => {
                let path = self.resolve(path);
                let version = self.version(&path, *version, false);
                WriteOp::Check { path, version }
            }
            OpSpec::Nested => WriteOp::Multi(vec![]),
        }
    }

    /// Fires `triggers` through the registry and the watch model.
    fn fire(&mut self, triggers: &[Trigger]) -> Result<(), TestCaseError> {
        for t in triggers {
            let mut events = Vec::new();
            self.registry.fire(t, &mut events);
            let expected = self.watch_model.fire(t);
            prop_assert_eq!(&events, &expected, "events of {:?}", t);
            self.events.extend(events);
        }
        Ok(())
    }

    fn step(&mut self, step: &Step) -> Result<(), TestCaseError> {
        let zxid = self.sm.applied() + 1;
        let time = zxid * 10;
        match step {
            Step::Write { session, op } => {
                let op = self.build(op);
                self.write(self.session(*session), op, zxid, time)?;
            }
            Step::Multi { session, ops } => {
                let ops: Vec<WriteOp> = ops.iter().map(|spec| self.build(spec)).collect();
                self.write(self.session(*session), WriteOp::Multi(ops), zxid, time)?;
            }
            Step::OpenSession { timeout_ms } => {
                let applied = self.sm.apply(
                    zxid,
                    time,
                    &Txn::CreateSession {
                        timeout_ms: *timeout_ms,
                        password: [3; 16],
                    },
                );
                let negotiated = (*timeout_ms).clamp(4_000, 40_000);
                self.model.sessions.insert(zxid, negotiated);
                prop_assert_eq!(
                    applied.outcome,
                    TxnOutcome::SessionCreated(Ok((zxid, negotiated)))
                );
                prop_assert!(applied.triggers.is_empty());
            }
            Step::CloseSession { session, expired } => {
                let session = self.session(*session);
                let reason = if *expired {
                    CloseReason::Expired
                } else {
                    CloseReason::ClientClosed
                };
                let applied = self
                    .sm
                    .apply(zxid, time, &Txn::CloseSession { session, reason });
                let mut expected = Vec::new();
                if self.model.sessions.contains_key(&session) {
                    self.closed.push(session);
                }
                let deleted = self.model.close(session, zxid, &mut expected);
                prop_assert_eq!(
                    applied.outcome,
                    TxnOutcome::SessionClosed { session, deleted }
                );
                prop_assert_eq!(&applied.triggers, &expected);
                self.fire(&applied.triggers)?;
            }
            Step::Reap { path } => {
                let path = self.resolve(path);
                let applied = self.sm.apply(zxid, time, &Txn::Reap { path: path.clone() });
                let mut expected = Vec::new();
                let deleted = self.model.reap(&path, zxid, &mut expected);
                prop_assert_eq!(applied.outcome, TxnOutcome::Reaped { path, deleted });
                prop_assert_eq!(&applied.triggers, &expected);
                self.fire(&applied.triggers)?;
            }
            Step::Watch {
                watcher,
                path,
                kind,
            } => {
                let path = self.resolve(path);
                if !valid(&path) {
                    // The node refuses to watch a malformed path before it
                    // reaches the registry.
                    return self.compare();
                }
                prop_assert!(self.registry.add(*watcher, &path, *kind).is_ok());
                self.watch_model.watches.insert((*watcher, path, *kind));
            }
            Step::Unwatch {
                watcher,
                held,
                path,
                which,
            } => {
                let watches = &self.watch_model.watches;
                let path = match held {
                    Some(i) if !watches.is_empty() => {
                        let (_, p, _) = watches.iter().nth(i % watches.len()).expect("non-empty");
                        p.clone()
                    }
                    _ => self.resolve(path),
                };
                let got = self
                    .registry
                    .remove(*watcher, &path, *which, self.sm.applied())
                    .map_err(|e| (e.code(), e.path().map(str::to_owned)));
                let expected = self
                    .watch_model
                    .remove(*watcher, &path, *which, self.sm.applied());
                prop_assert_eq!(got, expected);
            }
            Step::DropWatcher { watcher } => {
                self.registry.remove_session(*watcher);
                self.watch_model.watches.retain(|(w, _, _)| w != watcher);
            }
            Step::Replay { back, op } => {
                let stale = self.sm.applied() - back;
                let txn = Txn::Write {
                    session: 0,
                    identity: Identity::anonymous(),
                    op: self.build(op),
                };
                let applied = self.sm.apply(stale, time, &txn);
                prop_assert_eq!(applied.outcome, TxnOutcome::Noop);
                prop_assert!(applied.triggers.is_empty());
                prop_assert_eq!(self.sm.applied(), stale + back);
            }
            Step::Gap { by } => {
                let applied = self.sm.apply(zxid + by, time, &Txn::Noop);
                prop_assert_eq!(applied.outcome, TxnOutcome::Noop);
                prop_assert_eq!(self.sm.applied(), zxid + by);
            }
        }
        self.compare()
    }

    fn write(
        &mut self,
        session: SessionId,
        op: WriteOp,
        zxid: Zxid,
        time: Millis,
    ) -> Result<(), TestCaseError> {
        let txn = Txn::Write {
            session,
            identity: Identity::anonymous(),
            op: op.clone(),
        };
        let applied = self.sm.apply(zxid, time, &txn);
        let mut expected_triggers = Vec::new();
        let expected = if session != 0 && !self.model.sessions.contains_key(&session) {
            Res::Err(ErrorCode::SessionExpired, None)
        } else {
            match self
                .model
                .write(&op, session, zxid, time, &mut expected_triggers)
            {
                Ok(r) => r,
                Err((code, path)) => Res::Err(code, path),
            }
        };
        let TxnOutcome::Write(result) = &applied.outcome else {
            return Err(TestCaseError::fail(format!(
                "a write gave {:?}",
                applied.outcome
            )));
        };
        prop_assert_eq!(normalize_result(result), expected, "{:?}", op);
        prop_assert_eq!(&applied.triggers, &expected_triggers, "{:?}", op);
        self.fire(&applied.triggers)
    }

    fn compare(&self) -> Result<(), TestCaseError> {
        prop_assert_eq!(self.sm.tree().dump(), self.model.dump());
        prop_assert_eq!(
            self.sm.tree().reap_candidates(self.sm.applied() * 10),
            self.model.reap_candidates()
        );
        let sessions: Vec<(SessionId, Millis)> = self
            .sm
            .sessions()
            .iter()
            .map(|(id, info)| (id, info.timeout_ms))
            .collect();
        let expected: Vec<(SessionId, Millis)> =
            self.model.sessions.iter().map(|(k, v)| (*k, *v)).collect();
        prop_assert_eq!(sessions, expected);
        for &session in self.model.sessions.keys().chain(&self.closed) {
            prop_assert_eq!(
                self.sm.tree().get_ephemerals(session, "/"),
                self.model.ephemerals(session),
                "ephemerals of {}",
                session
            );
        }
        prop_assert_eq!(self.registry.len(), self.watch_model.watches.len());
        prop_assert_eq!(
            self.registry.is_empty(),
            self.watch_model.watches.is_empty()
        );
        Ok(())
    }
}

fn normalize(outcome: &OpOutcome) -> Res {
    match outcome {
        OpOutcome::Created { path, stat } => Res::Created(path.clone(), *stat),
        OpOutcome::Deleted => Res::Deleted,
        OpOutcome::DataSet { stat } => Res::DataSet(*stat),
        OpOutcome::AclSet { stat } => Res::AclSet(*stat),
        OpOutcome::Checked => Res::Checked,
        OpOutcome::Multi(MultiOutcome::Committed(results)) => {
            Res::Committed(results.iter().map(normalize).collect())
        }
        OpOutcome::Multi(MultiOutcome::Aborted {
            failed_index,
            error,
            len,
        }) => Res::Aborted {
            index: *failed_index,
            code: error.code(),
            path: error.path().map(str::to_owned),
            len: *len,
        },
    }
}

fn normalize_result(result: &Result<OpOutcome, Error>) -> Res {
    match result {
        Ok(outcome) => normalize(outcome),
        Err(e) => Res::Err(e.code(), e.path().map(str::to_owned)),
    }
}

fn run(steps: &[Step]) -> Result<World, TestCaseError> {
    let mut world = World {
        sm: StateMachine::new(StateConfig::default()),
        model: Model::new(),
        registry: WatchRegistry::new(usize::MAX),
        watch_model: WatchModel::default(),
        closed: Vec::new(),
        events: Vec::new(),
    };
    world.compare()?;
    for step in steps {
        world.step(step)?;
    }
    Ok(world)
}

proptest! {
    // 384 histories take about 8 s in a debug build; PROPTEST_CASES
    // overrides that for longer runs.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(384),
        ..ProptestConfig::default()
    })]

    #[test]
    fn state_machine_matches_the_model(steps in prop::collection::vec(step(), 1..150)) {
        run(&steps)?;
    }
}

/// A fixed history whose events were worked out by hand, so that the model
/// and the core are both held to ZooKeeper's rules and not only to each
/// other: sequential naming, an aborted multi, session expiry, a container
/// reap, a stale session, one-shot and recursive watches.
#[test]
fn a_fixed_history_agrees() {
    use PathSel::Literal as L;
    let create = |p: &str, mode| OpSpec::Create {
        path: L(p.into()),
        trailing_slash: false,
        data: vec![1],
        mode,
        perms: perms::ALL,
    };
    let steps = [
        Step::OpenSession { timeout_ms: 5_000 },
        Step::Watch {
            watcher: 1,
            path: L("/a".into()),
            kind: WatchKind::PersistentRecursive,
        },
        Step::Watch {
            watcher: 2,
            path: L("/a".into()),
            kind: WatchKind::Child,
        },
        Step::Write {
            session: SessionSel::NoSession,
            op: create("/a", CreateMode::Container),
        },
        Step::Write {
            session: SessionSel::Open(0),
            op: create("/a/b", CreateMode::EphemeralSequential),
        },
        Step::Multi {
            session: SessionSel::Open(0),
            ops: vec![
                create("/a/c", CreateMode::Ephemeral),
                OpSpec::Check {
                    path: L("/a".into()),
                    version: VersionSel::Literal(3),
                },
            ],
        },
        Step::CloseSession {
            session: SessionSel::Open(0),
            expired: true,
        },
        Step::Reap {
            path: L("/a".into()),
        },
        Step::Write {
            session: SessionSel::Stale,
            op: create("/late", CreateMode::Persistent),
        },
    ];
    let world = run(&steps).unwrap();
    let event = |session, event, path: &str, zxid| WatchEvent {
        session,
        event,
        path: path.into(),
        zxid,
    };
    // zxid 1 opens session 1; 2 creates /a; 3 creates /a/b0000000000; 4 is
    // the aborted multi; 5 expires session 1; 6 reaps /a; 7 is refused.
    assert_eq!(
        world.events,
        [
            event(1, EventType::NodeCreated, "/a", 2),
            event(1, EventType::NodeCreated, "/a/b0000000000", 3),
            event(2, EventType::NodeChildrenChanged, "/a", 3),
            event(1, EventType::NodeDeleted, "/a/b0000000000", 5),
            event(1, EventType::NodeDeleted, "/a", 6),
        ]
    );
    assert_eq!(world.sm.applied(), 7);
    assert_eq!(world.sm.tree().len(), 4, "back to the initial nodes");
    assert_eq!(world.registry.len(), 1, "only the recursive watch is left");
}
