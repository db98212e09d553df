//! The znode tree: nodes with data, ACL and ZooKeeper's full Stat, and the
//! deterministic application of write operations to it, including atomic
//! multi-op transactions (all or nothing, through an undo journal) and the
//! bookkeeping of ephemeral, container and TTL nodes. Every write reports the
//! watch triggers it causes; it never delivers them itself.

use std::collections::BTreeSet;

use rustc_hash::FxHashMap;

use crate::acl::{Acl, AclCache, AclPolicy, AclRef, Identity, perms};
use crate::error::Error;
use crate::path;
use crate::txn::{CreateMode, MultiOutcome, OpOutcome, WriteOp};
use crate::watch::{EventType, Trigger};
use crate::{Millis, SessionId, Zxid};
use store::{NodeStore, Znode};

/// ZooKeeper's `Stat`, field for field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Stat {
    pub czxid: Zxid,
    pub mzxid: Zxid,
    pub ctime: Millis,
    pub mtime: Millis,
    pub version: i32,
    pub cversion: i32,
    pub aversion: i32,
    pub ephemeral_owner: i64,
    pub data_length: i32,
    pub num_children: i32,
    pub pzxid: Zxid,
}

/// `ephemeralOwner` of a container node, as ZooKeeper encodes it.
pub const CONTAINER_OWNER: i64 = i64::MIN;
const TTL_MARK: u64 = 0xff00_0000_0000_0000;
const TTL_MARK_MASK: u64 = 0xffff_0000_0000_0000;
/// Largest TTL ZooKeeper's `ephemeralOwner` encoding can hold.
pub const MAX_TTL_MS: Millis = (1 << 40) - 1;

/// `ephemeralOwner` of a TTL node: ZooKeeper's extended-type encoding.
pub fn ttl_owner(ttl_ms: Millis) -> i64 {
    (TTL_MARK | (ttl_ms as u64 & MAX_TTL_MS as u64)) as i64
}

/// The TTL of a node whose `ephemeralOwner` encodes one.
pub fn ttl_of(owner: i64) -> Option<Millis> {
    (owner as u64 & TTL_MARK_MASK == TTL_MARK).then_some((owner as u64 & MAX_TTL_MS as u64) as i64)
}

/// The session owning an ephemeral node, if `owner` names one.
fn session_of(owner: i64) -> Option<SessionId> {
    (owner > 0).then_some(owner)
}

/// Limits on what a write may put into the tree; each is enforced before
/// anything changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeLimits {
    pub max_data_bytes: usize,
    pub max_path_bytes: usize,
    pub max_children: usize,
    pub max_multi_ops: usize,
}

impl Default for TreeLimits {
    fn default() -> Self {
        TreeLimits {
            max_data_bytes: 1024 * 1024,
            max_path_bytes: 4096,
            max_children: 1_000_000,
            max_multi_ops: 1024,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeConfig {
    pub limits: TreeLimits,
    pub acl: AclPolicy,
}

/// Who applies a write, and when.
#[derive(Debug, Clone, Copy)]
pub struct WriteCtx<'a> {
    pub zxid: Zxid,
    pub time: Millis,
    pub session: SessionId,
    pub identity: &'a Identity,
}

/// What a multi must undo if a later op fails.
#[derive(Debug)]
enum Undo {
    Created {
        path: String,
        parent_cversion: i32,
        parent_pzxid: Zxid,
    },
    Deleted {
        path: String,
        node: Znode,
        parent_pzxid: Zxid,
    },
    DataSet {
        path: String,
        data: Option<Vec<u8>>,
        mzxid: Zxid,
        mtime: Millis,
        version: i32,
    },
    AclSet {
        path: String,
        acl: AclRef,
        aversion: i32,
    },
}

/// Collects undo entries while a multi runs; outside a multi it is off and
/// costs nothing.
#[derive(Debug, Default)]
struct Journal {
    recording: bool,
    entries: Vec<Undo>,
}

/// One node as a whole, for comparisons, snapshots and the CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub path: String,
    pub data: Vec<u8>,
    pub acl: Vec<Acl>,
    pub stat: Stat,
}

/// The tree of znodes.
#[derive(Debug)]
pub struct DataTree {
    nodes: NodeStore,
    acls: AclCache,
    ephemerals: FxHashMap<SessionId, BTreeSet<String>>,
    containers: BTreeSet<String>,
    ttls: BTreeSet<String>,
    config: TreeConfig,
    journal: Journal,
    /// Preimages for the snapshot being encoded, if one is.
    capture: Option<snapshot::Capture>,
}

impl Default for DataTree {
    fn default() -> Self {
        DataTree::new(TreeConfig::default())
    }
}

impl DataTree {
    /// A tree holding `/` and ZooKeeper's reserved `/zookeeper`,
    /// `/zookeeper/quota` and `/zookeeper/config`, all with zxid 0.
    pub fn new(config: TreeConfig) -> Self {
        let mut tree = DataTree {
            nodes: NodeStore::default(),
            acls: AclCache::default(),
            ephemerals: FxHashMap::default(),
            containers: BTreeSet::new(),
            ttls: BTreeSet::new(),
            config,
            journal: Journal::default(),
            capture: None,
        };
        for reserved in ["/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"] {
            let acl = tree.acls.acquire(&Acl::open());
            let name = if reserved == "/" {
                ""
            } else {
                path::name(reserved)
            };
            let node = Znode::fresh(name, acl, Some(&[]), 0, 0, 0);
            let added = tree.nodes.insert(reserved, node);
            debug_assert!(added.is_ok(), "{reserved} is new and its parent exists");
        }
        tree
    }

    pub fn config(&self) -> &TreeConfig {
        &self.config
    }

    /// Checks an operation against the size limits alone: data, path
    /// length and multi size. Cheap enough for the edge, where a request
    /// should be refused before it is logged.
    pub fn check_limits(&self, op: &WriteOp) -> Result<(), Error> {
        let limits = &self.config.limits;
        let path_len = |p: &str| {
            if p.len() > limits.max_path_bytes {
                Err(Error::TooLarge {
                    what: "path length",
                    limit: limits.max_path_bytes as u64,
                    actual: p.len() as u64,
                })
            } else {
                Ok(())
            }
        };
        match op {
            WriteOp::Create { path, data, .. } | WriteOp::SetData { path, data, .. } => {
                path_len(path)?;
                self.check_data(data.as_deref().unwrap_or_default())
            }
            WriteOp::Delete { path, .. }
            | WriteOp::SetAcl { path, .. }
            | WriteOp::Check { path, .. } => path_len(path),
            WriteOp::Multi(ops) => {
                if ops.len() > limits.max_multi_ops {
                    return Err(Error::TooLarge {
                        what: "operations in a multi",
                        limit: limits.max_multi_ops as u64,
                        actual: ops.len() as u64,
                    });
                }
                ops.iter().try_for_each(|op| self.check_limits(op))
            }
        }
    }

    /// Replaces the limits and ACL policy; existing nodes are untouched.
    pub fn set_config(&mut self, config: TreeConfig) {
        self.config = config;
    }

    /// Number of znodes, including `/` and the reserved ones.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Number of distinct ACL lists in use.
    pub fn acl_lists(&self) -> usize {
        self.acls.len()
    }

    fn node(&self, path: &str) -> Result<&Znode, Error> {
        self.nodes
            .get(path)
            .ok_or_else(|| Error::NoNode(path.to_owned()))
    }

    /// The node at `p` for a read, with the errors `path::validate` then
    /// `node` would give. A path that is in the map passed `path::validate`
    /// when its node was created, so only a miss needs validating: that
    /// keeps the validation off the hot path of every successful read.
    fn lookup(&self, p: &str) -> Result<&Znode, Error> {
        match self.nodes.get(p) {
            Some(node) => Ok(node),
            None => {
                path::validate(p)?;
                Err(Error::NoNode(p.to_owned()))
            }
        }
    }

    fn check_version(path: &str, expected: i32, actual: i32) -> Result<(), Error> {
        if expected == -1 || expected == actual {
            Ok(())
        } else {
            Err(Error::BadVersion {
                path: path.to_owned(),
                expected,
                actual,
            })
        }
    }

    fn check_data(&self, data: &[u8]) -> Result<(), Error> {
        let limit = self.config.limits.max_data_bytes;
        if data.len() > limit {
            return Err(Error::TooLarge {
                what: "data",
                limit: limit as u64,
                actual: data.len() as u64,
            });
        }
        Ok(())
    }

    fn check_writable_path(&self, p: &str) -> Result<(), Error> {
        path::validate(p)?;
        self.check_path_len(p)?;
        if path::is_write_protected(p) {
            return Err(Error::InvalidPath {
                path: p.to_owned(),
                reason: "the /zookeeper subtree is reserved",
            });
        }
        Ok(())
    }

    fn check_path_len(&self, p: &str) -> Result<(), Error> {
        let limit = self.config.limits.max_path_bytes;
        if p.len() > limit {
            return Err(Error::TooLarge {
                what: "path length",
                limit: limit as u64,
                actual: p.len() as u64,
            });
        }
        Ok(())
    }

    /// Applies one client write. Either it succeeds and every change is
    /// made, or it fails and the tree is as it was. Triggers are appended to
    /// `triggers` only on success.
    pub fn apply(
        &mut self,
        op: &WriteOp,
        ctx: &WriteCtx<'_>,
        triggers: &mut Vec<Trigger>,
    ) -> Result<OpOutcome, Error> {
        match op {
            WriteOp::Multi(ops) => Ok(OpOutcome::Multi(self.apply_multi(ops, ctx, triggers)?)),
            single => self.apply_single(single, ctx, triggers),
        }
    }

    fn apply_single(
        &mut self,
        op: &WriteOp,
        ctx: &WriteCtx<'_>,
        triggers: &mut Vec<Trigger>,
    ) -> Result<OpOutcome, Error> {
        match op {
            WriteOp::Create {
                path,
                data,
                acl,
                mode,
                ttl_ms,
            } => self.create(path, data.as_deref(), acl, *mode, *ttl_ms, ctx, triggers),
            WriteOp::Delete { path, version } => self.delete(path, *version, ctx, triggers),
            WriteOp::SetData {
                path,
                data,
                version,
            } => self.set_data(path, data.as_deref(), *version, ctx, triggers),
            WriteOp::SetAcl { path, acl, version } => self.set_acl(path, acl, *version, ctx),
            WriteOp::Check { path, version } => self.check(path, *version, ctx.identity),
            WriteOp::Multi(_) => Err(Error::BadArguments("a multi cannot contain a multi".into())),
        }
    }

    fn apply_multi(
        &mut self,
        ops: &[WriteOp],
        ctx: &WriteCtx<'_>,
        triggers: &mut Vec<Trigger>,
    ) -> Result<MultiOutcome, Error> {
        let limit = self.config.limits.max_multi_ops;
        if ops.len() > limit {
            return Err(Error::TooLarge {
                what: "operations in a multi",
                limit: limit as u64,
                actual: ops.len() as u64,
            });
        }
        debug_assert!(!self.journal.recording, "multis do not nest");
        self.journal.recording = true;
        let mut pending = Vec::new();
        let mut outcomes = Vec::with_capacity(ops.len());
        let mut failure = None;
        for (index, op) in ops.iter().enumerate() {
            match self.apply_single(op, ctx, &mut pending) {
                Ok(outcome) => outcomes.push(outcome),
                Err(error) => {
                    failure = Some((index, error));
                    break;
                }
            }
        }
        self.journal.recording = false;
        let entries = std::mem::take(&mut self.journal.entries);
        match failure {
            None => {
                for entry in entries {
                    self.forget(entry);
                }
                triggers.append(&mut pending);
                Ok(MultiOutcome::Committed(outcomes))
            }
            Some((failed_index, error)) => {
                for entry in entries.into_iter().rev() {
                    self.undo(entry);
                }
                Ok(MultiOutcome::Aborted {
                    failed_index,
                    error,
                    len: ops.len(),
                })
            }
        }
    }

    /// Commits a journal entry: releases what the undo would have needed.
    fn forget(&mut self, entry: Undo) {
        match entry {
            Undo::Deleted { node, .. } => self.acls.release(node.acl),
            Undo::AclSet { acl, .. } => self.acls.release(acl),
            Undo::Created { .. } | Undo::DataSet { .. } => {}
        }
    }

    fn undo(&mut self, entry: Undo) {
        match entry {
            Undo::Created {
                path,
                parent_cversion,
                parent_pzxid,
            } => {
                if let Some(node) = self.nodes.remove(path.as_str()) {
                    self.unindex(&path, node.ephemeral_owner);
                    self.acls.release(node.acl);
                }
                if let Some(parent) = self.nodes.get_mut(path::parent(&path)) {
                    parent.set_child_stat(parent_cversion, parent_pzxid);
                }
            }
            Undo::Deleted {
                path,
                node,
                parent_pzxid,
            } => {
                self.index(&path, node.ephemeral_owner);
                let restored = self.nodes.insert(&path, node);
                debug_assert!(restored.is_ok(), "undone in reverse: the parent is back");
                if let Some(parent) = self.nodes.get_mut(path::parent(&path)) {
                    parent.set_child_stat(parent.cversion(), parent_pzxid);
                }
            }
            Undo::DataSet {
                path,
                data,
                mzxid,
                mtime,
                version,
            } => {
                if let Some(node) = self.nodes.get_mut(path.as_str()) {
                    node.set_data(data.as_deref());
                    node.mzxid = mzxid;
                    node.mtime = mtime;
                    node.version = version;
                }
            }
            Undo::AclSet {
                path,
                acl,
                aversion,
            } => {
                if let Some(node) = self.nodes.get_mut(path.as_str()) {
                    let applied = std::mem::replace(&mut node.acl, acl);
                    node.set_aversion(aversion);
                    self.acls.release(applied);
                }
            }
        }
    }

    fn index(&mut self, path: &str, owner: i64) {
        if owner == CONTAINER_OWNER {
            self.containers.insert(path.to_owned());
        } else if ttl_of(owner).is_some() {
            self.ttls.insert(path.to_owned());
        } else if let Some(session) = session_of(owner) {
            self.ephemerals
                .entry(session)
                .or_default()
                .insert(path.to_owned());
        }
    }

    fn unindex(&mut self, path: &str, owner: i64) {
        if owner == CONTAINER_OWNER {
            self.containers.remove(path);
        } else if ttl_of(owner).is_some() {
            self.ttls.remove(path);
        } else if let Some(session) = session_of(owner)
            && let Some(set) = self.ephemerals.get_mut(&session)
        {
            set.remove(path);
            if set.is_empty() {
                self.ephemerals.remove(&session);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        requested: &str,
        data: Option<&[u8]>,
        acl: &[Acl],
        mode: CreateMode,
        ttl_ms: Millis,
        ctx: &WriteCtx<'_>,
        triggers: &mut Vec<Trigger>,
    ) -> Result<OpOutcome, Error> {
        if mode.is_sequential() {
            path::validate_sequential_prefix(requested)?;
        } else {
            path::validate(requested)?;
        }
        // A sequential create of "/" names a new child of the root, as in
        // ZooKeeper; any other create of "/" names the root itself.
        if requested == "/" && !mode.is_sequential() {
            return Err(Error::NodeExists("/".into()));
        }
        if path::is_write_protected(requested) {
            return Err(Error::InvalidPath {
                path: requested.to_owned(),
                reason: "the /zookeeper subtree is reserved",
            });
        }
        // Sequence suffixes add ten digits.
        let final_len = requested.len() + if mode.is_sequential() { 10 } else { 0 };
        let limit = self.config.limits.max_path_bytes;
        if final_len > limit {
            return Err(Error::TooLarge {
                what: "path length",
                limit: limit as u64,
                actual: final_len as u64,
            });
        }
        self.check_data(data.unwrap_or_default())?;
        let owner = if mode.is_ttl() {
            if !(1..=MAX_TTL_MS).contains(&ttl_ms) {
                return Err(Error::BadArguments(format!(
                    "TTL must be within 1..={MAX_TTL_MS} ms, got {ttl_ms}"
                )));
            }
            ttl_owner(ttl_ms)
        } else if mode == CreateMode::Container {
            CONTAINER_OWNER
        } else if mode.is_ephemeral() {
            if ctx.session <= 0 {
                return Err(Error::BadArguments("ephemeral nodes need a session".into()));
            }
            ctx.session
        } else {
            0
        };
        let parent_path = path::parent(requested);
        let parent = self.node(parent_path)?;
        self.config.acl.check(
            self.acls.get(parent.acl),
            perms::CREATE,
            ctx.identity,
            parent_path,
        )?;
        if session_of(parent.ephemeral_owner).is_some() {
            return Err(Error::NoChildrenForEphemerals(parent_path.to_owned()));
        }
        let max_children = self.config.limits.max_children;
        if parent.num_children() >= max_children {
            return Err(Error::TooLarge {
                what: "children of a node",
                limit: max_children as u64,
                actual: parent.num_children() as u64 + 1,
            });
        }
        let acl = self.config.acl.fixup(acl, ctx.identity)?;
        let created = if mode.is_sequential() {
            format!("{requested}{:010}", parent.cversion())
        } else {
            requested.to_owned()
        };
        if self.nodes.contains_key(created.as_str()) {
            return Err(Error::NodeExists(created));
        }

        let acl_ref = self.acls.acquire(&acl);
        let node = Znode::fresh(
            path::name(&created),
            acl_ref,
            data,
            owner,
            ctx.zxid,
            ctx.time,
        );
        let stat = node.stat();
        self.before_change(parent_path);
        let parent = self
            .nodes
            .get_mut(parent_path)
            .expect("parent was found above");
        if self.journal.recording {
            self.journal.entries.push(Undo::Created {
                path: created.clone(),
                parent_cversion: parent.cversion(),
                parent_pzxid: parent.pzxid(),
            });
        }
        parent.set_child_stat(parent.cversion().wrapping_add(1), ctx.zxid);
        self.nodes
            .insert(&created, node)
            .expect("the parent exists and the path is free, both checked above");
        self.index(&created, owner);
        triggers.push(Trigger {
            path: created.clone(),
            event: EventType::NodeCreated,
            zxid: ctx.zxid,
        });
        triggers.push(Trigger {
            path: parent_path.to_owned(),
            event: EventType::NodeChildrenChanged,
            zxid: ctx.zxid,
        });
        Ok(OpOutcome::Created {
            path: created,
            stat,
        })
    }

    fn delete(
        &mut self,
        p: &str,
        version: i32,
        ctx: &WriteCtx<'_>,
        triggers: &mut Vec<Trigger>,
    ) -> Result<OpOutcome, Error> {
        if p == "/" {
            return Err(Error::BadArguments("the root cannot be deleted".into()));
        }
        self.check_writable_path(p)?;
        let parent_path = path::parent(p);
        let parent = self.node(parent_path)?;
        self.config.acl.check(
            self.acls.get(parent.acl),
            perms::DELETE,
            ctx.identity,
            parent_path,
        )?;
        let node = self.node(p)?;
        Self::check_version(p, version, node.version)?;
        if node.has_children() {
            return Err(Error::NotEmpty(p.to_owned()));
        }
        self.remove_node(p, ctx.zxid, triggers);
        Ok(OpOutcome::Deleted)
    }

    /// Removes a childless node that exists; the caller checked everything.
    fn remove_node(&mut self, p: &str, zxid: Zxid, triggers: &mut Vec<Trigger>) {
        let parent_path = path::parent(p);
        self.before_change(p);
        self.before_change(parent_path);
        let Some(node) = self.nodes.remove(p) else {
            return;
        };
        let parent = self
            .nodes
            .get_mut(parent_path)
            .expect("a node's parent exists");
        let parent_pzxid = parent.pzxid();
        parent.set_child_stat(parent.cversion(), zxid);
        self.unindex(p, node.ephemeral_owner);
        if self.journal.recording {
            self.journal.entries.push(Undo::Deleted {
                path: p.to_owned(),
                node,
                parent_pzxid,
            });
        } else {
            self.acls.release(node.acl);
        }
        triggers.push(Trigger {
            path: p.to_owned(),
            event: EventType::NodeDeleted,
            zxid,
        });
        triggers.push(Trigger {
            path: parent_path.to_owned(),
            event: EventType::NodeChildrenChanged,
            zxid,
        });
    }

    fn set_data(
        &mut self,
        p: &str,
        data: Option<&[u8]>,
        version: i32,
        ctx: &WriteCtx<'_>,
        triggers: &mut Vec<Trigger>,
    ) -> Result<OpOutcome, Error> {
        self.check_writable_path(p)?;
        self.check_data(data.unwrap_or_default())?;
        // Harmless if the write then fails: the preimage equals the node.
        self.before_change(p);
        let node = self
            .nodes
            .get_mut(p)
            .ok_or_else(|| Error::NoNode(p.to_owned()))?;
        self.config
            .acl
            .check(self.acls.get(node.acl), perms::WRITE, ctx.identity, p)?;
        Self::check_version(p, version, node.version)?;
        if self.journal.recording {
            self.journal.entries.push(Undo::DataSet {
                path: p.to_owned(),
                data: node.data().map(<[u8]>::to_vec),
                mzxid: node.mzxid,
                mtime: node.mtime,
                version: node.version,
            });
        }
        node.set_data(data);
        node.mzxid = ctx.zxid;
        node.mtime = ctx.time;
        node.version = node.version.wrapping_add(1);
        let stat = node.stat();
        triggers.push(Trigger {
            path: p.to_owned(),
            event: EventType::NodeDataChanged,
            zxid: ctx.zxid,
        });
        Ok(OpOutcome::DataSet { stat })
    }

    fn set_acl(
        &mut self,
        p: &str,
        acl: &[Acl],
        version: i32,
        ctx: &WriteCtx<'_>,
    ) -> Result<OpOutcome, Error> {
        self.check_writable_path(p)?;
        self.before_change(p);
        let node = self.node(p)?;
        self.config
            .acl
            .check(self.acls.get(node.acl), perms::ADMIN, ctx.identity, p)?;
        Self::check_version(p, version, node.aversion())?;
        let acl = self.config.acl.fixup(acl, ctx.identity)?;
        let new_ref = self.acls.acquire(&acl);
        let node = self.nodes.get_mut(p).expect("node was found above");
        let old_ref = std::mem::replace(&mut node.acl, new_ref);
        let old_aversion = node.aversion();
        node.set_aversion(old_aversion.wrapping_add(1));
        let stat = node.stat();
        if self.journal.recording {
            self.journal.entries.push(Undo::AclSet {
                path: p.to_owned(),
                acl: old_ref,
                aversion: old_aversion,
            });
        } else {
            self.acls.release(old_ref);
        }
        Ok(OpOutcome::AclSet { stat })
    }

    fn check(&self, p: &str, version: i32, identity: &Identity) -> Result<OpOutcome, Error> {
        let node = self.lookup(p)?;
        self.config
            .acl
            .check(self.acls.get(node.acl), perms::READ, identity, p)?;
        Self::check_version(p, version, node.version)?;
        Ok(OpOutcome::Checked)
    }

    /// Deletes every ephemeral node of `session`, in path order, so that
    /// every replica produces the same triggers. Returns the deleted paths.
    pub fn delete_ephemerals(
        &mut self,
        session: SessionId,
        zxid: Zxid,
        triggers: &mut Vec<Trigger>,
    ) -> Vec<String> {
        let Some(paths) = self.ephemerals.remove(&session) else {
            return Vec::new();
        };
        // Deepest first cannot be needed (ephemerals have no children), but
        // reverse order keeps parents' child sets shrinking from the end.
        for p in paths.iter().rev() {
            self.remove_node(p, zxid, triggers);
        }
        paths.into_iter().collect()
    }

    /// Containers that have had children and have none now, and TTL nodes
    /// that are childless and unmodified for longer than their TTL, at `now`.
    /// The leader proposes a `Reap` for each.
    pub fn reap_candidates(&self, now: Millis) -> Vec<String> {
        let mut out: Vec<String> = self
            .containers
            .iter()
            .filter(|p| {
                self.nodes
                    .get(p.as_str())
                    .is_some_and(|n| !n.has_children() && n.cversion() > 0)
            })
            .cloned()
            .collect();
        out.extend(
            self.ttls
                .iter()
                .filter(|p| self.ttl_expired(p, now))
                .cloned(),
        );
        out
    }

    fn ttl_expired(&self, p: &str, now: Millis) -> bool {
        self.nodes.get(p).is_some_and(|n| {
            !n.has_children()
                && ttl_of(n.ephemeral_owner).is_some_and(|ttl| now.saturating_sub(n.mtime) > ttl)
        })
    }

    /// Deletes a container or TTL node if it still qualifies at `now`.
    pub fn reap(&mut self, p: &str, zxid: Zxid, now: Millis, triggers: &mut Vec<Trigger>) -> bool {
        let qualifies = match self.nodes.get(p) {
            Some(n) if n.ephemeral_owner == CONTAINER_OWNER => {
                !n.has_children() && n.cversion() > 0
            }
            Some(_) => self.ttl_expired(p, now),
            None => false,
        };
        if qualifies {
            self.remove_node(p, zxid, triggers);
        }
        qualifies
    }

    /// Every node, sorted by path: for comparisons and snapshots.
    pub fn dump(&self) -> Vec<NodeView> {
        let mut out: Vec<NodeView> = self
            .nodes
            .iter()
            .map(|(path, n)| NodeView {
                path,
                data: n.bytes().to_vec(),
                acl: self.acls.get(n.acl).to_vec(),
                stat: n.stat(),
            })
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }
}

mod children;
mod jump;
mod reads;
mod snapshot;
mod store;
pub use snapshot::{NodeEncoding, SnapshotCursor};

#[cfg(test)]
mod tests;
