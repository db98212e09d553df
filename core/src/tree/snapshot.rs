//! Snapshot encoding of the tree: ACL lists once, then every node with its
//! full Stat and data. Child sets and the ephemeral/container/TTL indexes
//! are derived on restore, so a snapshot cannot contradict itself about them.
//!
//! Since format 6 the node count follows the nodes (after an end marker),
//! so that a snapshot can be written out a slice at a time as it is
//! encoded, with nothing to patch once the count is known; the count before
//! the nodes is then only the tree's size when the snapshot began, a hint
//! to size the tree that is decoded. Decoding reads through an [`Input`],
//! so a snapshot can be decoded from its file a window at a time.

use std::collections::BTreeSet;

use rustc_hash::FxHashMap;

use std::sync::Arc;

use super::{DataTree, Journal, TreeConfig, Znode};
use crate::Zxid;
use crate::acl::{Acl, AclCache, AclRef};
use crate::codec::{CodecError, Decoder, Encoder, decode_acl, encode_acl};
use crate::path;
use crate::stream::Input;

/// A node as it was when a snapshot began, saved just before its first
/// change while the snapshot is being encoded.
#[derive(Debug)]
pub(super) struct Preimage {
    stat: [i64; 6],
    versions: [i32; 3],
    acl: Arc<[Acl]>,
    data: Option<Box<[u8]>>,
}

/// The preimage of a node that existed when the running snapshot began and
/// changed before the walk reached it. Only such nodes are recorded: a node
/// the walk has passed was encoded (or rightly skipped) before it changed,
/// and a node created since the snapshot began has a newer `czxid`, which
/// the walk skips; recording those would cost an allocation per write.
#[derive(Debug)]
pub(super) enum Captured {
    /// Its state when the snapshot began, not encoded yet.
    Pending(Preimage),
    /// Its preimage was encoded by the walk.
    Used,
}

/// The paths changed since the running snapshot began, and where its walk is.
#[derive(Debug, Default)]
pub(super) struct Capture {
    changed: FxHashMap<Box<str>, Captured>,
    /// The last path the walk visited.
    position: String,
    /// The zxid the snapshot is of: a node created after it is not in it.
    index: Zxid,
}

/// Orders paths as the walk visits them: depth first, children by name.
fn walk_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.split('/').cmp(b.split('/'))
}

/// Children taken from a directory's child set per search by the walk.
const WALK_BATCH: usize = 64;

/// A snapshot being encoded a slice at a time while txns keep applying.
/// It walks the tree depth first from the root; the walk resumes by child
/// name (child sets are ordered), so it survives any change in between.
/// A node changed since the snapshot began is encoded from the preimage the
/// tree saved before changing it, a node created since is skipped, and the
/// preimages of nodes deleted since are encoded at the end: the result is
/// exactly the tree at the snapshot's index.
#[derive(Debug)]
pub struct SnapshotCursor {
    /// The zxid the snapshot is of.
    index: Zxid,
    /// Directories being walked, with the last child name visited in each.
    stack: Vec<(String, Option<Box<str>>)>,
    /// Dense ids of the ACL lists in use when the snapshot began, by the
    /// reference (for unchanged nodes) and by content (for preimages).
    by_ref: FxHashMap<AclRef, u32>,
    by_content: FxHashMap<Arc<[Acl]>, u32>,
    written: u64,
    /// The path encoded last: the next one is written as what it shares
    /// with it and the rest.
    previous_path: Vec<u8>,
}

/// How the nodes of a snapshot are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeEncoding {
    /// Snapshot formats 1-4: the full path, then every Stat field at its
    /// full width (about 87 bytes per node beside the data).
    Fixed,
    /// Format 5: the path as the length it shares with the previous
    /// node's path plus the rest, and the Stat as varints, zxids and
    /// times relative to the node's creation (about 25 bytes per node).
    Compact,
    /// Format 6 on: as [`NodeEncoding::Compact`], but each node starts
    /// with the shared length plus one, a 0 ends the nodes, and the node
    /// count follows; the count before the nodes is a hint.
    Streamed,
}

impl DataTree {
    /// Starts a snapshot of the tree as of `index` (the last applied zxid)
    /// into `e`: writes the ACL table and begins capturing preimages. The
    /// nodes are encoded by [`DataTree::snapshot_step`].
    pub fn begin_snapshot(&mut self, index: Zxid, e: &mut Encoder) -> SnapshotCursor {
        let mut by_ref = FxHashMap::default();
        let mut by_content = FxHashMap::default();
        let lists: Vec<(AclRef, Arc<[Acl]>)> =
            self.acls.iter().map(|(r, l)| (r, l.clone())).collect();
        e.len(lists.len());
        for (id, (r, list)) in lists.into_iter().enumerate() {
            let id = u32::try_from(id).expect("fewer than 2^32 ACL lists");
            encode_acl(e, &list);
            by_ref.insert(r, id);
            by_content.insert(list, id);
        }
        // A hint for the decoder: the snapshot holds the tree as it is now.
        e.u64(self.len() as u64);
        self.capture = Some(Capture {
            changed: FxHashMap::default(),
            position: "/".to_owned(),
            index,
        });
        let mut cursor = SnapshotCursor {
            index,
            stack: vec![("/".to_owned(), None)],
            by_ref,
            by_content,
            written: 0,
            previous_path: Vec::new(),
        };
        self.visit("/", None, &mut cursor, e);
        cursor
    }

    /// Encodes one node of the walk, `key` (in `slot` if known), as it
    /// was at the snapshot's index.
    fn visit(
        &mut self,
        key: &str,
        slot: Option<u32>,
        cursor: &mut SnapshotCursor,
        e: &mut Encoder,
    ) {
        visit(&self.nodes, &mut self.capture, key, slot, cursor, e);
    }

    /// Encodes up to `budget` more nodes; true when the snapshot is complete
    /// (capturing then stops).
    pub fn snapshot_step(
        &mut self,
        cursor: &mut SnapshotCursor,
        e: &mut Encoder,
        budget: usize,
    ) -> bool {
        let mut done = 0;
        while done < budget {
            let Some((dir, last)) = cursor.stack.last() else {
                break;
            };
            // The next few children in one search of the child set, rather
            // than one search per child: a directory can hold millions.
            let batch = (budget - done).min(WALK_BATCH);
            let slots = self
                .nodes
                .get(dir.as_str())
                .map(|node| self.nodes.child_slots_after(node, last.as_deref(), batch))
                .unwrap_or_default();
            if slots.is_empty() {
                cursor.stack.pop();
                continue;
            }
            self.nodes.warm(&slots);
            let dir = dir.clone();
            let mut child = String::with_capacity(dir.len() + 32);
            let mut last_visited = None;
            let mut descend = false;
            for slot in slots {
                let Some(node) = self.nodes.node_at(slot) else {
                    continue;
                };
                let name = node.name_str();
                child.clear();
                child.push_str(&dir);
                if dir != "/" {
                    child.push('/');
                }
                child.push_str(name);
                visit(
                    &self.nodes,
                    &mut self.capture,
                    &child,
                    Some(slot),
                    cursor,
                    e,
                );
                done += 1;
                last_visited = Some(slot);
                // Children the node had at the index and has lost since are
                // encoded from their preimages at the end, so only a node
                // with children now needs descending into.
                if node.has_children() {
                    descend = true;
                    break;
                }
            }
            let last_name = last_visited
                .and_then(|slot| self.nodes.node_at(slot))
                .map(|node| Box::from(node.name_str()));
            if last_name.is_none() {
                // Never: the child sets hold live slots. Leaving the
                // directory keeps the walk finite all the same.
                cursor.stack.pop();
                continue;
            }
            if let Some((_, last)) = cursor.stack.last_mut() {
                *last = last_name;
            }
            if descend {
                cursor.stack.push((child, None));
            }
        }
        if !cursor.stack.is_empty() {
            return false;
        }
        // Nodes deleted since the snapshot began, before the walk reached
        // them, are not in the walk: their preimages are still pending.
        if let Some(capture) = self.capture.take() {
            let mut deleted: Vec<(&Box<str>, &Preimage)> = capture
                .changed
                .iter()
                .filter_map(|(key, c)| match c {
                    Captured::Pending(pre) => Some((key, pre)),
                    _ => None,
                })
                .collect();
            deleted.sort_by(|a, b| a.0.cmp(b.0));
            for (key, pre) in deleted {
                let acl = cursor.by_content.get(&pre.acl).copied().unwrap_or_default();
                let node = NodeRecord {
                    stat: pre.stat,
                    versions: pre.versions,
                    acl,
                    data: pre.data.as_deref(),
                };
                node.encode(e, &mut cursor.previous_path, key);
                cursor.written += 1;
            }
        }
        // The end of the nodes, and how many there were.
        e.uvar(0);
        e.u64(cursor.written);
        true
    }

    /// Saves the node at `path` as it is before its first change while a
    /// snapshot is being encoded, unless the walk has passed it already.
    pub(super) fn before_change(&mut self, path: &str) {
        let Some(capture) = &mut self.capture else {
            return;
        };
        if capture.changed.contains_key(path) {
            return;
        }
        // The walk only moves forward, so a path it has passed stays passed.
        if walk_order(path, &capture.position).is_le() {
            return;
        }
        // A missing node with no preimage did not exist at the snapshot's
        // index (its deletion since would have left one), and a node created
        // since (say, the parent of a child created after it) is newer than
        // the index: neither is in the snapshot.
        if let Some(n) = self.nodes.get(path)
            && n.czxid <= capture.index
        {
            let preimage = Preimage {
                stat: stat_of(n),
                versions: [n.version, n.cversion(), n.aversion()],
                acl: self
                    .acls
                    .get_shared(n.acl)
                    .unwrap_or_else(|| Arc::from(Vec::new())),
                data: n.data().map(Box::from),
            };
            capture
                .changed
                .insert(path.into(), Captured::Pending(preimage));
        }
    }

    /// Appends the whole tree, as of `index`, to `e` at once.
    pub fn encode_snapshot(&mut self, index: Zxid, e: &mut Encoder) {
        let mut cursor = self.begin_snapshot(index, e);
        while !self.snapshot_step(&mut cursor, e, usize::MAX) {}
    }

    /// Rebuilds a tree from [`DataTree::encode_snapshot`] output, or from
    /// an older format's.
    pub fn decode_snapshot(
        config: TreeConfig,
        input: &mut Input<'_>,
        encoding: NodeEncoding,
    ) -> Result<DataTree, CodecError> {
        let (lists, count, at) = input.decode(|d| {
            let list_count = d.len("acl lists", 4)?;
            let mut lists = Vec::with_capacity(list_count);
            for _ in 0..list_count {
                lists.push(decode_acl(d)?);
            }
            let at = d.position();
            Ok((lists, d.u64("node count")?, at))
        })?;
        let least = match encoding {
            // 4 + 5*8 + 3*4 + 8 + 4 + 4 bytes.
            NodeEncoding::Fixed => 72,
            // One byte for each of the 13 fields.
            NodeEncoding::Compact | NodeEncoding::Streamed => 13,
        };
        let reserve = if count.saturating_mul(least) > input.remaining() {
            if encoding != NodeEncoding::Streamed {
                return Err(CodecError::Truncated { what: "nodes", at });
            }
            // Only a hint, and a wrong one: no more than the bytes allow.
            input.remaining() / least
        } else {
            count
        };
        let mut acls = AclCache::default();
        let mut tree = DataTree {
            nodes: super::store::NodeStore::default(),
            acls: AclCache::default(),
            ephemerals: FxHashMap::default(),
            containers: BTreeSet::new(),
            ttls: BTreeSet::new(),
            config,
            journal: Journal::default(),
            capture: None,
        };
        tree.nodes.reserve(usize::try_from(reserve).unwrap_or(0));
        let mut orphans: Vec<(String, Znode)> = Vec::new();
        let mut previous_path = Vec::new();
        let mut decoded = 0u64;
        while encoding == NodeEncoding::Streamed || decoded < count {
            // One node: decoded again from its start, after a refill, when
            // it runs past the window.
            let next = loop {
                let mut d = input.decoder();
                let at = d.position();
                let record = match encoding {
                    NodeEncoding::Fixed => NodeRecord::decode_fixed(&mut d).map(Some),
                    NodeEncoding::Compact => {
                        NodeRecord::decode_compact(&mut d, &previous_path, false)
                    }
                    NodeEncoding::Streamed => {
                        NodeRecord::decode_compact(&mut d, &previous_path, true)
                    }
                };
                let (p, record) = match record {
                    Ok(Some(decoded)) => decoded,
                    Ok(None) => {
                        let used = d.consumed();
                        input.consume(used);
                        break None;
                    }
                    Err(e) => {
                        if matches!(e, CodecError::Truncated { .. }) && input.refill()? {
                            continue;
                        }
                        return Err(e);
                    }
                };
                if path::validate(&p).is_err() {
                    return Err(CodecError::Corrupt(format!(
                        "invalid node path {p:?} at byte {at}"
                    )));
                }
                let list = record.acl as usize;
                let Some(acl) = lists.get(list) else {
                    return Err(CodecError::Corrupt(format!(
                        "node {p} names ACL list {list} of {}",
                        lists.len()
                    )));
                };
                let node = record.into_znode(&p, acls.acquire(acl));
                let used = d.consumed();
                input.consume(used);
                break Some((p, node));
            };
            let Some((p, node)) = next else {
                break;
            };
            decoded += 1;
            previous_path.clear();
            previous_path.extend_from_slice(p.as_bytes());
            if tree.nodes.contains_key(&p) {
                return Err(CodecError::Corrupt(format!("node {p} appears twice")));
            }
            let ephemeral_owner = node.ephemeral_owner;
            match tree.nodes.insert(&p, node) {
                Ok(()) => tree.index(&p, ephemeral_owner),
                // Written parents first; any other order still decodes.
                Err(node) => orphans.push((p, node)),
            }
        }
        if encoding == NodeEncoding::Streamed {
            let at = input.position();
            let count = input.decode(|d| d.u64("node count"))?;
            if count != decoded {
                return Err(CodecError::Corrupt(format!(
                    "the snapshot says {count} nodes at byte {at}, and holds {decoded}"
                )));
            }
        }
        tree.acls = acls;
        while !orphans.is_empty() {
            let before = orphans.len();
            for (p, node) in std::mem::take(&mut orphans) {
                if tree.nodes.contains_key(&p) {
                    return Err(CodecError::Corrupt(format!("node {p} appears twice")));
                }
                match tree.nodes.insert(&p, node) {
                    Ok(()) => tree.index(&p, ephemeral_owner_of(&tree, &p)),
                    Err(node) => orphans.push((p, node)),
                }
            }
            if orphans.len() == before {
                if !tree.nodes.contains_key("/") {
                    return Err(CodecError::Corrupt("snapshot has no root node".into()));
                }
                return Err(CodecError::Corrupt(format!(
                    "node {} has no parent in the snapshot",
                    orphans[0].0
                )));
            }
        }
        if !tree.nodes.contains_key("/") {
            return Err(CodecError::Corrupt("snapshot has no root node".into()));
        }
        Ok(tree)
    }
}

fn ephemeral_owner_of(tree: &DataTree, p: &str) -> i64 {
    tree.nodes.get(p).map_or(0, |n| n.ephemeral_owner)
}

/// czxid, mzxid, pzxid, ctime, mtime, ephemeral owner.
fn stat_of(n: &Znode) -> [i64; 6] {
    [
        n.czxid,
        n.mzxid,
        n.pzxid(),
        n.ctime,
        n.mtime,
        n.ephemeral_owner,
    ]
}

/// Encodes the node at `key` (in `slot` if the caller found it) as it was
/// at the snapshot's index: from its preimage if it changed since the
/// snapshot began, not at all if it is newer.
fn visit(
    nodes: &super::store::NodeStore,
    capture: &mut Option<Capture>,
    key: &str,
    slot: Option<u32>,
    cursor: &mut SnapshotCursor,
    e: &mut Encoder,
) {
    let Some(capture) = capture.as_mut() else {
        return;
    };
    capture.position.clear();
    capture.position.push_str(key);
    // Most snapshots see few changes: no hashing of every path for those.
    let changed = if capture.changed.is_empty() {
        None
    } else {
        capture.changed.get_mut(key)
    };
    match changed {
        Some(entry @ Captured::Pending(_)) => {
            if let Captured::Pending(pre) = std::mem::replace(entry, Captured::Used) {
                let acl = cursor.by_content.get(&pre.acl).copied().unwrap_or_default();
                let node = NodeRecord {
                    stat: pre.stat,
                    versions: pre.versions,
                    acl,
                    data: pre.data.as_deref(),
                };
                node.encode(e, &mut cursor.previous_path, key);
                cursor.written += 1;
            }
        }
        Some(Captured::Used) => {}
        None => {
            let node = match slot {
                Some(slot) => nodes.node_at(slot),
                None => nodes.get(key),
            };
            if let Some(n) = node
                && n.czxid <= cursor.index
            {
                let acl = cursor.by_ref.get(&n.acl).copied().unwrap_or_default();
                let node = NodeRecord {
                    stat: stat_of(n),
                    versions: [n.version, n.cversion(), n.aversion()],
                    acl,
                    data: n.data(),
                };
                node.encode(e, &mut cursor.previous_path, key);
                cursor.written += 1;
            }
        }
    }
}

/// One node as a snapshot holds it, without its path.
struct NodeRecord<'a> {
    /// czxid, mzxid, pzxid, ctime, mtime, ephemeral owner.
    stat: [i64; 6],
    /// version, cversion, aversion.
    versions: [i32; 3],
    acl: u32,
    data: Option<&'a [u8]>,
}

impl<'a> NodeRecord<'a> {
    /// The znode at `path` this record describes, with ACL `acl`.
    fn into_znode(self, path: &str, acl: AclRef) -> Znode {
        let [czxid, mzxid, pzxid, ctime, mtime, ephemeral_owner] = self.stat;
        let [version, cversion, aversion] = self.versions;
        let name = if path == "/" { "" } else { path::name(path) };
        let mut node = Znode::fresh(name, acl, self.data, ephemeral_owner, czxid, ctime);
        node.mzxid = mzxid;
        node.mtime = mtime;
        node.version = version;
        node.set_aversion(aversion);
        if (cversion, pzxid) != (0, czxid) {
            node.set_child_stat(cversion, pzxid);
        }
        node
    }

    /// Writes the node at `path` in the compact encoding; `previous` is
    /// the path written before, and becomes `path`.
    fn encode(&self, e: &mut Encoder, previous: &mut Vec<u8>, path: &str) {
        let path = path.as_bytes();
        let shared = previous
            .iter()
            .zip(path)
            .take_while(|(a, b)| a == b)
            .count();
        // Plus one: 0 ends the nodes.
        e.uvar(shared as u64 + 1);
        e.uvar((path.len() - shared) as u64);
        e.raw(&path[shared..]);
        previous.truncate(shared);
        previous.extend_from_slice(&path[shared..]);
        let [czxid, mzxid, pzxid, ctime, mtime, owner] = self.stat;
        e.ivar(czxid);
        e.ivar(mzxid.wrapping_sub(czxid));
        e.ivar(pzxid.wrapping_sub(czxid));
        e.ivar(ctime);
        e.ivar(mtime.wrapping_sub(ctime));
        for version in self.versions {
            e.ivar(i64::from(version));
        }
        e.ivar(owner);
        e.uvar(u64::from(self.acl));
        match self.data {
            None => e.uvar(0),
            Some(data) => {
                e.uvar(data.len() as u64 + 1);
                e.raw(data);
            }
        }
    }

    /// Reads a node in the compact encoding after the node at `previous`;
    /// in the streamed one (`streamed`), `None` at the end of the nodes.
    /// `previous` is the caller's to update: a node cut short by the end of
    /// the window is decoded again.
    fn decode_compact(
        d: &mut Decoder<'a>,
        previous: &[u8],
        streamed: bool,
    ) -> Result<Option<(String, Self)>, CodecError> {
        let at = d.position();
        let mut shared = d.uvar("shared path length")?;
        if streamed {
            if shared == 0 {
                return Ok(None);
            }
            shared -= 1;
        }
        let rest = d.uvar("path length")?;
        if shared > previous.len() as u64 || rest > d.remaining() as u64 {
            if shared <= previous.len() as u64 {
                return Err(CodecError::Truncated {
                    what: "node path",
                    at: d.position(),
                });
            }
            return Err(CodecError::Corrupt(format!(
                "node path at byte {at} shares {shared} bytes of a {}-byte path and adds {rest}",
                previous.len()
            )));
        }
        let mut path = Vec::with_capacity(shared as usize + rest as usize);
        path.extend_from_slice(&previous[..shared as usize]);
        path.extend_from_slice(d.raw(rest as usize, "node path")?);
        let path = String::from_utf8(path).map_err(|_| CodecError::BadUtf8 {
            what: "node path",
            at,
        })?;
        let czxid = d.ivar("czxid")?;
        let mzxid = czxid.wrapping_add(d.ivar("mzxid")?);
        let pzxid = czxid.wrapping_add(d.ivar("pzxid")?);
        let ctime = d.ivar("ctime")?;
        let mtime = ctime.wrapping_add(d.ivar("mtime")?);
        let mut versions = [0i32; 3];
        for version in &mut versions {
            let v = d.ivar("version")?;
            *version = i32::try_from(v)
                .map_err(|_| CodecError::Corrupt(format!("version {v} of {path} is not an i32")))?;
        }
        let owner = d.ivar("ephemeral owner")?;
        let acl = d.uvar("acl ref")?;
        let acl = u32::try_from(acl)
            .map_err(|_| CodecError::Corrupt(format!("acl ref {acl} of {path} is not a u32")))?;
        let data = match d.uvar("data length")? {
            0 => None,
            n => Some(d.raw(usize::try_from(n - 1).unwrap_or(usize::MAX), "node data")?),
        };
        let record = NodeRecord {
            stat: [czxid, mzxid, pzxid, ctime, mtime, owner],
            versions,
            acl,
            data,
        };
        Ok(Some((path, record)))
    }

    fn decode_fixed(d: &mut Decoder<'a>) -> Result<(String, Self), CodecError> {
        let path = d.string("node path")?;
        let czxid = d.i64("czxid")?;
        let mzxid = d.i64("mzxid")?;
        let pzxid = d.i64("pzxid")?;
        let ctime = d.i64("ctime")?;
        let mtime = d.i64("mtime")?;
        let version = d.i32("version")?;
        let cversion = d.i32("cversion")?;
        let aversion = d.i32("aversion")?;
        let owner = d.i64("ephemeral owner")?;
        let acl = d.u32("acl ref")?;
        let data = d.opt_bytes("node data")?;
        let record = NodeRecord {
            stat: [czxid, mzxid, pzxid, ctime, mtime, owner],
            versions: [version, cversion, aversion],
            acl,
            data,
        };
        Ok((path, record))
    }
}
