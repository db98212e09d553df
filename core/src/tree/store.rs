//! Where the znodes live, and how little each one costs: every znode is one
//! fixed-size slot in a slab of chunks plus one heap allocation holding its
//! name and data. Nobody stores a full path: a slot knows its name and its
//! parent's slot, an index from path hash to slot finds a node and checks
//! the path by walking up the parents, and a directory lists its children
//! as slots ordered by name ([`Children`]).
//!
//! Measured before this layout (docs/benchmarks.md): four allocations per
//! znode (node, data, path key, child name) and ~280 bytes of overhead per
//! znode in RSS; a node could not fit a million znodes in 250 MB.
//!
//! Growth never moves more than one small piece at a time: the slab grows
//! by whole chunks (slots never move), and the index stores each entry's
//! hash next to its slot, so rehashing reads no node.

use std::hash::BuildHasher as _;

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

use super::children::Children;
use crate::acl::AclRef;
use crate::path;
use crate::tree::Stat;
use crate::{Millis, Zxid};

/// Slots per chunk of the slab: 4,096 slots of 80 bytes, 320 KiB.
const CHUNK: usize = 4096;
/// The parent of the root.
const NO_PARENT: u32 = u32::MAX;
/// In `name_len`: the data is null (ZooKeeper tells null from empty).
const NULL_DATA: u32 = 1 << 31;

/// What most znodes never need: the child bookkeeping of a node that has
/// or had children, and the ACL version of one whose ACL was set. A node
/// without it (most nodes) reads as ZooKeeper's fresh node: `cversion`
/// and `aversion` 0, `pzxid` equal to its `czxid`. Keeping `aversion`
/// here rather than in every slot is what brings a slot from 88 bytes to
/// 80 (8 MB at a million znodes).
#[derive(Debug, Clone)]
pub(super) struct Dir {
    pzxid: Zxid,
    cversion: i32,
    aversion: i32,
    children: Children,
}

/// One znode: Stat fields, ACL reference, and its name and data in one
/// allocation (80 bytes and the allocation; see [`Dir`]).
#[derive(Debug, Clone)]
pub(super) struct Znode {
    pub(super) czxid: Zxid,
    pub(super) mzxid: Zxid,
    pub(super) ctime: Millis,
    pub(super) mtime: Millis,
    pub(super) ephemeral_owner: i64,
    pub(super) version: i32,
    pub(super) acl: AclRef,
    parent: u32,
    /// Length of the name at the front of `blob`, and [`NULL_DATA`].
    name_len: u32,
    /// The name, then the data.
    blob: Box<[u8]>,
    dir: Option<Box<Dir>>,
}

impl Znode {
    /// A new node named `name` (`""` for the root), as created by `zxid`.
    pub(super) fn fresh(
        name: &str,
        acl: AclRef,
        data: Option<&[u8]>,
        owner: i64,
        zxid: Zxid,
        time: Millis,
    ) -> Self {
        let mut node = Znode {
            czxid: zxid,
            mzxid: zxid,
            ctime: time,
            mtime: time,
            ephemeral_owner: owner,
            version: 0,
            acl,
            parent: NO_PARENT,
            name_len: 0,
            blob: Box::default(),
            dir: None,
        };
        node.store(name.as_bytes(), data);
        node
    }

    fn store(&mut self, name: &[u8], data: Option<&[u8]>) {
        let len = u32::try_from(name.len()).expect("names are far below 2 GiB");
        let mut blob = Vec::with_capacity(name.len() + data.map_or(0, <[u8]>::len));
        blob.extend_from_slice(name);
        blob.extend_from_slice(data.unwrap_or_default());
        self.blob = blob.into_boxed_slice();
        self.name_len = if data.is_none() { len | NULL_DATA } else { len };
    }

    fn name_end(&self) -> usize {
        (self.name_len & !NULL_DATA) as usize
    }

    pub(super) fn name(&self) -> &[u8] {
        &self.blob[..self.name_end()]
    }

    /// The data; `None` is ZooKeeper's null.
    pub(super) fn data(&self) -> Option<&[u8]> {
        (self.name_len & NULL_DATA == 0).then(|| &self.blob[self.name_end()..])
    }

    /// The data; null reads as empty.
    pub(super) fn bytes(&self) -> &[u8] {
        &self.blob[self.name_end()..]
    }

    pub(super) fn set_data(&mut self, data: Option<&[u8]>) {
        let name = self.name().to_vec();
        self.store(&name, data);
    }

    pub(super) fn pzxid(&self) -> Zxid {
        self.dir.as_ref().map_or(self.czxid, |d| d.pzxid)
    }

    pub(super) fn cversion(&self) -> i32 {
        self.dir.as_ref().map_or(0, |d| d.cversion)
    }

    pub(super) fn aversion(&self) -> i32 {
        self.dir.as_ref().map_or(0, |d| d.aversion)
    }

    /// Sets the ACL version; a node whose version stays 0 needs no [`Dir`].
    pub(super) fn set_aversion(&mut self, aversion: i32) {
        if aversion != 0 || self.dir.is_some() {
            self.dir_mut().aversion = aversion;
        }
    }

    /// Records a change of the child list (or its undo).
    pub(super) fn set_child_stat(&mut self, cversion: i32, pzxid: Zxid) {
        let dir = self.dir_mut();
        dir.cversion = cversion;
        dir.pzxid = pzxid;
    }

    fn dir_mut(&mut self) -> &mut Dir {
        let czxid = self.czxid;
        self.dir.get_or_insert_with(|| {
            Box::new(Dir {
                pzxid: czxid,
                cversion: 0,
                aversion: 0,
                children: Children::default(),
            })
        })
    }

    pub(super) fn num_children(&self) -> usize {
        self.dir.as_ref().map_or(0, |d| d.children.len())
    }

    /// The name as text: it was a valid path component when created.
    pub(super) fn name_str(&self) -> &str {
        name_str(self)
    }

    pub(super) fn has_children(&self) -> bool {
        self.num_children() > 0
    }

    pub(super) fn stat(&self) -> Stat {
        Stat {
            czxid: self.czxid,
            mzxid: self.mzxid,
            ctime: self.ctime,
            mtime: self.mtime,
            version: self.version,
            cversion: self.cversion(),
            aversion: self.aversion(),
            ephemeral_owner: self.ephemeral_owner,
            data_length: i32::try_from(self.bytes().len()).unwrap_or(i32::MAX),
            num_children: i32::try_from(self.num_children()).unwrap_or(i32::MAX),
            pzxid: self.pzxid(),
        }
    }
}

// Every slot of the slab is this size (docs/architecture.md).
const _: () = assert!(size_of::<Option<Znode>>() == 80);

/// Every znode, by slot and by path.
#[derive(Debug, Default)]
pub(super) struct NodeStore {
    /// Chunks of [`CHUNK`] slots; only the last may be partly used.
    chunks: Vec<Vec<Option<Znode>>>,
    /// Slots freed by deletes, reused first.
    free: Vec<u32>,
    /// (slot, 32-bit path hash) by path.
    index: HashTable<(u32, u32)>,
}

fn path_hash(path: &str) -> u32 {
    let h = FxBuildHasher.hash_one(path);
    (h >> 32) as u32 ^ h as u32
}

/// The table's 64-bit hash of a stored 32-bit one. Spread over all bits:
/// the table takes its bucket from the low bits and a tag from the top 7.
fn spread(hash: u32) -> u64 {
    u64::from(hash).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn slot_in(chunks: &[Vec<Option<Znode>>], slot: u32) -> Option<&Znode> {
    let slot = slot as usize;
    chunks.get(slot / CHUNK)?.get(slot % CHUNK)?.as_ref()
}

/// Whether the node in `slot` has the path `path`: its name ends the path,
/// its parent's name comes before that, up to the root, which takes what
/// is left exactly.
fn has_path(chunks: &[Vec<Option<Znode>>], mut slot: u32, path: &str) -> bool {
    if path == "/" {
        return slot_in(chunks, slot).is_some_and(|n| n.parent == NO_PARENT);
    }
    let mut rest = path.as_bytes();
    loop {
        let Some(node) = slot_in(chunks, slot) else {
            return false;
        };
        if node.parent == NO_PARENT {
            return rest.is_empty();
        }
        let Some(prefix) = rest
            .strip_suffix(node.name())
            .and_then(|p| p.strip_suffix(b"/"))
        else {
            return false;
        };
        rest = prefix;
        slot = node.parent;
    }
}

impl NodeStore {
    pub(super) fn len(&self) -> usize {
        self.index.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub(super) fn reserve(&mut self, additional: usize) {
        self.index.reserve(additional, |&(_, h)| spread(h));
    }

    fn slot(&self, slot: u32) -> Option<&Znode> {
        slot_in(&self.chunks, slot)
    }

    fn slot_mut(&mut self, slot: u32) -> Option<&mut Znode> {
        let slot = slot as usize;
        self.chunks
            .get_mut(slot / CHUNK)?
            .get_mut(slot % CHUNK)?
            .as_mut()
    }

    fn find(&self, path: &str) -> Option<u32> {
        let hash = path_hash(path);
        self.index
            .find(spread(hash), |&(slot, h)| {
                h == hash && has_path(&self.chunks, slot, path)
            })
            .map(|&(slot, _)| slot)
    }

    pub(super) fn get(&self, path: &str) -> Option<&Znode> {
        self.find(path).and_then(|slot| self.slot(slot))
    }

    pub(super) fn get_mut(&mut self, path: &str) -> Option<&mut Znode> {
        let slot = self.find(path)?;
        self.slot_mut(slot)
    }

    pub(super) fn contains_key(&self, path: &str) -> bool {
        self.find(path).is_some()
    }

    /// Adds `node` at `path`, in its parent's children. Refused (the node
    /// given back) if the path is taken, or its parent is missing.
    pub(super) fn insert(&mut self, path: &str, mut node: Znode) -> Result<(), Znode> {
        debug_assert!(
            path == "/" || node.name() == path::name(path).as_bytes(),
            "named as its path"
        );
        if self.contains_key(path) {
            return Err(node);
        }
        let parent = if path == "/" {
            None
        } else {
            match self.find(path::parent(path)) {
                Some(parent) => Some(parent),
                None => return Err(node),
            }
        };
        node.parent = parent.unwrap_or(NO_PARENT);
        let slot = self.alloc(node);
        let hash = path_hash(path);
        self.index
            .insert_unique(spread(hash), (slot, hash), |&(_, h)| spread(h));
        if let Some(parent) = parent
            && let Some(mut dir) = self.take_dir(parent)
        {
            let chunks = &self.chunks;
            dir.children
                .insert(slot, |s| slot_in(chunks, s).map_or(&[][..], Znode::name));
            self.put_dir(parent, dir);
        }
        Ok(())
    }

    /// Takes the child list of `parent` out of its slot (making one if it
    /// has none), so that it can be changed while names are read from the
    /// rest of the slab; [`NodeStore::put_dir`] puts it back.
    fn take_dir(&mut self, parent: u32) -> Option<Box<Dir>> {
        let node = self.slot_mut(parent)?;
        node.dir_mut();
        node.dir.take()
    }

    fn put_dir(&mut self, parent: u32, dir: Box<Dir>) {
        if let Some(node) = self.slot_mut(parent) {
            node.dir = Some(dir);
        }
    }

    fn alloc(&mut self, node: Znode) -> u32 {
        if let Some(slot) = self.free.pop() {
            let s = slot as usize;
            self.chunks[s / CHUNK][s % CHUNK] = Some(node);
            return slot;
        }
        if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        let last = self.chunks.len() - 1;
        let chunk = &mut self.chunks[last];
        chunk.push(Some(node));
        u32::try_from(last * CHUNK + chunk.len() - 1).expect("fewer than 2^32 znodes")
    }

    /// Takes the node at `path` out of the store and its parent's children.
    /// The caller removes only childless nodes.
    pub(super) fn remove(&mut self, path: &str) -> Option<Znode> {
        let hash = path_hash(path);
        let chunks = &self.chunks;
        let (slot, _) = self
            .index
            .find_entry(spread(hash), |&(slot, h)| {
                h == hash && has_path(chunks, slot, path)
            })
            .ok()?
            .remove()
            .0;
        // Out of the parent's children first: finding it there reads its name.
        let parent = self.slot(slot)?.parent;
        debug_assert!(
            self.slot(slot).is_some_and(|n| !n.has_children()),
            "only leaves are removed"
        );
        if let Some(mut dir) = self.take_dir(parent) {
            let chunks = &self.chunks;
            let name_of = |s: u32| slot_in(chunks, s).map_or(&[][..], Znode::name);
            dir.children.remove(name_of(slot), name_of);
            self.put_dir(parent, dir);
        }
        let s = slot as usize;
        let node = self.chunks[s / CHUNK][s % CHUNK].take()?;
        self.free.push(slot);
        Some(node)
    }

    /// The names of the children of `node`, in order.
    pub(super) fn child_names<'a>(&'a self, node: &'a Znode) -> impl Iterator<Item = &'a str> {
        node.dir
            .iter()
            .flat_map(|d| d.children.iter())
            .filter_map(|s| self.slot(s))
            .map(name_str)
    }

    /// The slots of up to `limit` children of `node` named after `after`,
    /// in order.
    pub(super) fn child_slots_after(
        &self,
        node: &Znode,
        after: Option<&str>,
        limit: usize,
    ) -> Vec<u32> {
        let Some(dir) = &node.dir else {
            return Vec::new();
        };
        let name_of = |s: u32| self.slot(s).map_or(&[][..], Znode::name);
        dir.children
            .iter_after(after.map(str::as_bytes), name_of)
            .take(limit)
            .collect()
    }

    /// The node in `slot`, if one is.
    pub(super) fn node_at(&self, slot: u32) -> Option<&Znode> {
        self.slot(slot)
    }

    /// Reads every cache line of the nodes in `slots`, so that a walk that
    /// then encodes them finds them in cache. A walk by name visits nodes
    /// in no order of their memory: each is a slot and a blob, dependent
    /// cache misses apart, and encoding one at a time waits for each in
    /// turn. Here no node's reads depend on another's, so the processor has
    /// the misses of several nodes in flight at once (measured: the
    /// `tree/snapshot` bench 1.6x faster).
    pub(super) fn warm(&self, slots: &[u32]) {
        let mut sum = 0u8;
        for node in slots.iter().filter_map(|&s| self.slot(s)) {
            for line in node.blob.iter().step_by(64) {
                sum ^= line;
            }
            sum ^= node.blob.last().copied().unwrap_or_default();
        }
        std::hint::black_box(sum);
    }

    /// Every node with its full path, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (String, &Znode)> {
        self.chunks
            .iter()
            .flatten()
            .flatten()
            .map(|node| (self.path_of(node), node))
    }

    fn path_of(&self, node: &Znode) -> String {
        let mut names = Vec::new();
        let mut at = node;
        while at.parent != NO_PARENT {
            names.push(name_str(at));
            match self.slot(at.parent) {
                Some(parent) => at = parent,
                None => break,
            }
        }
        if names.is_empty() {
            return "/".to_owned();
        }
        let mut path = String::new();
        for name in names.iter().rev() {
            path.push('/');
            path.push_str(name);
        }
        path
    }
}

/// A node's name as text: it was a valid path component when created.
fn name_str(node: &Znode) -> &str {
    std::str::from_utf8(node.name()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn node(path: &str, version: i32) -> Znode {
        let mut node = Znode::fresh(path::name(path), 0, Some(b"d"), 0, 0, 0);
        node.version = version;
        node
    }

    #[derive(Debug, Clone)]
    enum Step {
        Insert(u8, u8, i32),
        Remove(u8, u8),
        SetData(u8, u8, Option<Vec<u8>>),
    }

    fn step() -> impl Strategy<Value = Step> {
        let key = || (0..6u8, 0..40u8);
        prop_oneof![
            4 => (key(), any::<i32>()).prop_map(|((a, b), v)| Step::Insert(a, b, v)),
            2 => key().prop_map(|(a, b)| Step::Remove(a, b)),
            1 => (key(), proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)))
                .prop_map(|((a, b), d)| Step::SetData(a, b, d)),
        ]
    }

    /// `/dA` for b = 0, else `/dA/cB`: two levels, so parents matter.
    fn path_of(a: u8, b: u8) -> String {
        if b == 0 {
            format!("/d{a}")
        } else {
            format!("/d{a}/c{b}")
        }
    }

    proptest! {
        /// Behaves as a map from path to node, with every node listed in
        /// its parent's children by name, through inserts (refused without
        /// a parent or when taken), removals of leaves, data changes, slot
        /// reuse and growth.
        #[test]
        fn matches_a_map_of_paths(steps in proptest::collection::vec(step(), 0..400)) {
            let mut store = NodeStore::default();
            prop_assert!(store.insert("/", Znode::fresh("", 0, None, 0, 0, 0)).is_ok());
            let mut model: BTreeMap<String, (i32, Option<Vec<u8>>)> = BTreeMap::new();
            model.insert("/".into(), (0, None));
            for step in steps {
                match step {
                    Step::Insert(a, b, v) => {
                        let p = path_of(a, b);
                        let parent_there = model.contains_key(path::parent(&p));
                        let ok = store.insert(&p, node(&p, v)).is_ok();
                        prop_assert_eq!(ok, parent_there && !model.contains_key(&p));
                        if ok {
                            model.insert(p, (v, Some(b"d".to_vec())));
                        }
                    }
                    Step::Remove(a, b) => {
                        let p = path_of(a, b);
                        let leaf = !model.keys().any(|k| path::parent(k) == p && k != "/");
                        if leaf {
                            let got = store.remove(&p).map(|n| n.version);
                            prop_assert_eq!(got, model.remove(&p).map(|m| m.0));
                        }
                    }
                    Step::SetData(a, b, d) => {
                        let p = path_of(a, b);
                        if let (Some(n), Some(m)) = (store.get_mut(&p), model.get_mut(&p)) {
                            n.set_data(d.as_deref());
                            m.1 = d;
                        }
                    }
                }
                prop_assert_eq!(store.len(), model.len());
            }
            for (p, (version, data)) in &model {
                let n = store.get(p);
                prop_assert_eq!(n.map(|n| n.version), Some(*version));
                prop_assert_eq!(n.and_then(Znode::data), data.as_deref());
                let n = n.expect("present");
                let children: Vec<&str> = store.child_names(n).collect();
                prop_assert_eq!(n.num_children(), children.len());
                let expected: Vec<&str> = model
                    .keys()
                    .filter(|k| *k != "/" && path::parent(k) == p)
                    .map(|k| path::name(k))
                    .collect();
                prop_assert_eq!(children, expected);
            }
            let mut listed: Vec<String> = store.iter().map(|(p, _)| p).collect();
            listed.sort();
            let expected: Vec<String> = model.keys().cloned().collect();
            prop_assert_eq!(listed, expected);
            for missing in ["/x", "/d1/c1/deeper", "/d9", "//d1"] {
                prop_assert_eq!(store.contains_key(missing), model.contains_key(missing));
            }
        }
    }

    #[test]
    fn a_leaf_costs_one_slot_and_one_allocation() {
        // The slot is the whole per-node cost beside the name and data.
        assert!(
            std::mem::size_of::<Option<Znode>>() <= 88,
            "slot grew to {} bytes",
            std::mem::size_of::<Option<Znode>>()
        );
    }
}
