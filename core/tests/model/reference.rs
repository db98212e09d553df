//! The reference model the state machine is checked against: the tree,
//! sessions and ephemerals by ZooKeeper's rules, and one-shot, persistent
//! and recursive watches.

use super::*;

// ------------------------------------------------------------ the model

/// One znode of the model. Every ACL in these histories is a single
/// `world:anyone` entry, so the model keeps only its permission bits.
#[derive(Debug, Clone)]
pub(crate) struct ModelNode {
    pub(crate) data: Vec<u8>,
    pub(crate) perms: u32,
    pub(crate) czxid: Zxid,
    pub(crate) mzxid: Zxid,
    pub(crate) pzxid: Zxid,
    pub(crate) ctime: Millis,
    pub(crate) mtime: Millis,
    pub(crate) version: i32,
    pub(crate) cversion: i32,
    pub(crate) aversion: i32,
    pub(crate) owner: i64,
}

impl ModelNode {
    pub(crate) fn new(data: Vec<u8>, perms: u32, owner: i64, zxid: Zxid, time: Millis) -> Self {
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
pub(crate) enum Res {
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

pub(crate) type MErr = (ErrorCode, Option<String>);

pub(crate) fn merr(code: ErrorCode, path: &str) -> MErr {
    (code, Some(path.to_owned()))
}

pub(crate) const CONTAINER: i64 = i64::MIN;
pub(crate) const RESERVED: &str = "/zookeeper";

pub(crate) fn parent_of(p: &str) -> &str {
    match p.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &p[..i],
    }
}

pub(crate) fn valid(p: &str) -> bool {
    if p == "/" {
        return true;
    }
    p.starts_with('/')
        && !p.ends_with('/')
        && p[1..]
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..")
}

pub(crate) fn valid_sequential_prefix(p: &str) -> bool {
    if p.len() > 1 && p.ends_with('/') {
        valid(&format!("{p}1"))
    } else {
        valid(p)
    }
}

/// Not writable by clients: the reserved subtree, except below
/// `/zookeeper/quota`, where ZooKeeper clients keep quotas.
pub(crate) fn reserved(p: &str) -> bool {
    (p == RESERVED || p.starts_with("/zookeeper/")) && !p.starts_with("/zookeeper/quota/")
}

pub(crate) fn strictly_below(p: &str, ancestor: &str) -> bool {
    if ancestor == "/" {
        return p != "/";
    }
    p.len() > ancestor.len() && p.starts_with(ancestor) && p.as_bytes()[ancestor.len()] == b'/'
}

pub(crate) fn permits(node: &ModelNode, perm: u32) -> bool {
    node.perms & perm != 0
}

pub(crate) fn version_ok(expected: i32, actual: i32) -> bool {
    expected == -1 || expected == actual
}

#[derive(Debug, Clone)]
pub(crate) struct Model {
    pub(crate) nodes: BTreeMap<String, ModelNode>,
    /// Open sessions and their negotiated timeouts.
    pub(crate) sessions: BTreeMap<SessionId, Millis>,
}

impl Model {
    pub(crate) fn new() -> Self {
        let mut nodes = BTreeMap::new();
        for p in ["/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"] {
            nodes.insert(p.to_owned(), ModelNode::new(vec![], perms::ALL, 0, 0, 0));
        }
        Model {
            nodes,
            sessions: BTreeMap::new(),
        }
    }

    pub(crate) fn children(&self, p: &str) -> Vec<&str> {
        self.nodes
            .keys()
            .filter(|k| k.as_str() != "/" && parent_of(k) == p)
            .map(String::as_str)
            .collect()
    }

    pub(crate) fn stat(&self, p: &str) -> Stat {
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

    pub(crate) fn dump(&self) -> Vec<NodeView> {
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

    pub(crate) fn ephemerals(&self, session: SessionId) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.owner == session)
            .map(|(p, _)| p.clone())
            .collect()
    }

    pub(crate) fn remove(&mut self, p: &str, zxid: Zxid, triggers: &mut Vec<Trigger>) {
        self.nodes.remove(p);
        let parent = parent_of(p).to_owned();
        if let Some(n) = self.nodes.get_mut(&parent) {
            n.pzxid = zxid;
        }
        triggers.push(trigger(p, EventType::NodeDeleted, zxid));
        triggers.push(trigger(&parent, EventType::NodeChildrenChanged, zxid));
    }

    pub(crate) fn write(
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
    pub(crate) fn create(
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
    pub(crate) fn reap_candidates(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(p, n)| n.owner == CONTAINER && n.cversion > 0 && self.children(p).is_empty())
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// `Txn::Reap` of a container: only once it had children and has none.
    pub(crate) fn reap(&mut self, p: &str, zxid: Zxid, triggers: &mut Vec<Trigger>) -> bool {
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
    pub(crate) fn close(
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

pub(crate) fn world_perms(acl: &[Acl]) -> u32 {
    assert!(
        acl.len() == 1 && acl[0].id == Id::anyone(),
        "histories only use one world entry"
    );
    acl[0].perms
}

pub(crate) fn trigger(p: &str, event: EventType, zxid: Zxid) -> Trigger {
    Trigger {
        path: p.to_owned(),
        event,
        zxid,
    }
}

// ----------------------------------------------------- the watch model

#[derive(Debug, Default)]
pub(crate) struct WatchModel {
    pub(crate) watches: BTreeSet<(SessionId, String, WatchKind)>,
}

impl WatchModel {
    pub(crate) fn fire(&mut self, t: &Trigger) -> Vec<WatchEvent> {
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

    pub(crate) fn remove(
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
