//! Snapshot encoding of the tree: ACL lists once, then every node with its
//! full Stat and data. Child sets and the ephemeral/container/TTL indexes
//! are derived on restore, so a snapshot cannot contradict itself about them.

use std::collections::BTreeSet;

use rustc_hash::FxHashMap;

use super::{DataTree, Journal, TreeConfig, Znode};
use crate::acl::AclCache;
use crate::codec::{CodecError, Decoder, Encoder, decode_acl, encode_acl};
use crate::path;

impl DataTree {
    /// Appends the whole tree to `e`.
    pub fn encode_snapshot(&self, e: &mut Encoder) {
        // Renumber the ACL lists densely: references in the cache may have gaps.
        let mut renumber: FxHashMap<u32, u32> = FxHashMap::default();
        let mut lists = Vec::new();
        for node in self.nodes.values() {
            renumber.entry(node.acl).or_insert_with(|| {
                lists.push(node.acl);
                u32::try_from(lists.len() - 1).expect("fewer than 2^32 ACL lists")
            });
        }
        e.len(lists.len());
        for r in &lists {
            encode_acl(e, self.acls.get(*r));
        }
        e.u64(self.nodes.len() as u64);
        for (p, node) in &self.nodes {
            e.str(p);
            e.i64(node.czxid);
            e.i64(node.mzxid);
            e.i64(node.pzxid);
            e.i64(node.ctime);
            e.i64(node.mtime);
            e.i32(node.version);
            e.i32(node.cversion);
            e.i32(node.aversion);
            e.i64(node.ephemeral_owner);
            e.u32(renumber[&node.acl]);
            e.bytes(&node.data);
        }
    }

    /// Rebuilds a tree from [`DataTree::encode_snapshot`] output.
    pub fn decode_snapshot(
        config: TreeConfig,
        d: &mut Decoder<'_>,
    ) -> Result<DataTree, CodecError> {
        let list_count = d.len("acl lists", 4)?;
        let mut acls = AclCache::default();
        let mut lists = Vec::with_capacity(list_count);
        for _ in 0..list_count {
            lists.push(decode_acl(d)?);
        }
        let at = d.position();
        let count = d.u64("node count")?;
        // A node takes at least 4 + 5*8 + 3*4 + 8 + 4 + 4 bytes.
        if count.saturating_mul(72) > d.remaining() as u64 {
            return Err(CodecError::Truncated { what: "nodes", at });
        }
        let mut tree = DataTree {
            nodes: FxHashMap::default(),
            acls: AclCache::default(),
            ephemerals: FxHashMap::default(),
            containers: BTreeSet::new(),
            ttls: BTreeSet::new(),
            config,
            journal: Journal::default(),
        };
        tree.nodes.reserve(count as usize);
        for _ in 0..count {
            let at = d.position();
            let p = d.string("node path")?;
            if path::validate(&p).is_err() {
                return Err(CodecError::Corrupt(format!(
                    "invalid node path {p:?} at byte {at}"
                )));
            }
            let czxid = d.i64("czxid")?;
            let mzxid = d.i64("mzxid")?;
            let pzxid = d.i64("pzxid")?;
            let ctime = d.i64("ctime")?;
            let mtime = d.i64("mtime")?;
            let version = d.i32("version")?;
            let cversion = d.i32("cversion")?;
            let aversion = d.i32("aversion")?;
            let ephemeral_owner = d.i64("ephemeral owner")?;
            let list = d.u32("acl ref")? as usize;
            let Some(acl) = lists.get(list) else {
                return Err(CodecError::Corrupt(format!(
                    "node {p} names ACL list {list} of {list_count}"
                )));
            };
            let acl = acls.acquire(acl);
            let data: Box<[u8]> = d.bytes("node data")?.into();
            let node = Znode {
                czxid,
                mzxid,
                pzxid,
                ctime,
                mtime,
                version,
                cversion,
                aversion,
                ephemeral_owner,
                acl,
                data,
                children: BTreeSet::new(),
            };
            tree.index(&p, ephemeral_owner);
            if tree
                .nodes
                .insert(p.as_str().into(), Box::new(node))
                .is_some()
            {
                return Err(CodecError::Corrupt(format!("node {p} appears twice")));
            }
        }
        tree.acls = acls;
        if !tree.nodes.contains_key("/") {
            return Err(CodecError::Corrupt("snapshot has no root node".into()));
        }
        let paths: Vec<String> = tree
            .nodes
            .keys()
            .filter(|p| &***p != "/")
            .map(|p| p.to_string())
            .collect();
        for p in paths {
            let parent = path::parent(&p);
            match tree.nodes.get_mut(parent) {
                Some(node) => {
                    node.children.insert(path::name(&p).into());
                }
                None => {
                    return Err(CodecError::Corrupt(format!(
                        "node {p} has no parent in the snapshot"
                    )));
                }
            }
        }
        Ok(tree)
    }
}
