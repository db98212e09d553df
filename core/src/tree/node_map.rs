//! The map from path to znode. Its entries keep their key's hash, so that
//! growing the map moves entries without reading their keys. A map that
//! rehashes its keys reads every path through a pointer when it grows, and
//! at half a million znodes that took 30-45 ms in one apply; every replica
//! grows at the same size, so all of them stalled at the same moment.

use std::hash::BuildHasher as _;

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

use super::Znode;

#[derive(Debug)]
struct Entry {
    hash: u64,
    path: Box<str>,
    node: Box<Znode>,
}

#[derive(Debug, Default)]
pub(super) struct NodeMap {
    table: HashTable<Entry>,
}

fn hash_of(path: &str) -> u64 {
    FxBuildHasher.hash_one(path)
}

impl NodeMap {
    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub(super) fn reserve(&mut self, additional: usize) {
        self.table.reserve(additional, |e| e.hash);
    }

    pub(super) fn get(&self, path: &str) -> Option<&Znode> {
        self.table
            .find(hash_of(path), |e| &*e.path == path)
            .map(|e| &*e.node)
    }

    pub(super) fn get_mut(&mut self, path: &str) -> Option<&mut Znode> {
        self.table
            .find_mut(hash_of(path), |e| &*e.path == path)
            .map(|e| &mut *e.node)
    }

    pub(super) fn contains_key(&self, path: &str) -> bool {
        self.get(path).is_some()
    }

    /// Inserts or replaces; returns the node that was there.
    pub(super) fn insert(&mut self, path: Box<str>, node: Box<Znode>) -> Option<Box<Znode>> {
        let hash = hash_of(&path);
        match self.table.find_mut(hash, |e| e.path == path) {
            Some(entry) => Some(std::mem::replace(&mut entry.node, node)),
            None => {
                self.table
                    .insert_unique(hash, Entry { hash, path, node }, |e| e.hash);
                None
            }
        }
    }

    pub(super) fn remove(&mut self, path: &str) -> Option<Box<Znode>> {
        self.table
            .find_entry(hash_of(path), |e| &*e.path == path)
            .ok()
            .map(|entry| entry.remove().0.node)
    }

    /// Every path with its node, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&str, &Znode)> {
        self.table.iter().map(|e| (&*e.path, &*e.node))
    }

    pub(super) fn keys(&self) -> impl Iterator<Item = &str> {
        self.table.iter().map(|e| &*e.path)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;
    use crate::acl::{Acl, AclCache};

    fn node(version: i32) -> Box<Znode> {
        let acl = AclCache::default().acquire(&Acl::open());
        let mut node = Znode::fresh(acl, Some(Box::default()), 0, 0, 0);
        node.version = version;
        Box::new(node)
    }

    #[derive(Debug, Clone)]
    enum Step {
        Insert(u8, i32),
        Remove(u8),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (any::<u8>(), any::<i32>()).prop_map(|(k, v)| Step::Insert(k, v)),
            any::<u8>().prop_map(Step::Remove),
        ]
    }

    proptest! {
        /// Behaves as a std HashMap through inserts, replacements, removals
        /// and the growth they cause.
        #[test]
        fn matches_a_std_map(steps in proptest::collection::vec(step(), 0..600)) {
            let mut map = NodeMap::default();
            let mut model: HashMap<String, i32> = HashMap::new();
            for step in steps {
                match step {
                    Step::Insert(k, v) => {
                        let path = format!("/n{k}");
                        let old = map.insert(path.clone().into(), node(v)).map(|n| n.version);
                        prop_assert_eq!(old, model.insert(path, v));
                    }
                    Step::Remove(k) => {
                        let path = format!("/n{k}");
                        let old = map.remove(&path).map(|n| n.version);
                        prop_assert_eq!(old, model.remove(&path));
                    }
                }
                prop_assert_eq!(map.len(), model.len());
            }
            for (path, version) in &model {
                prop_assert_eq!(map.get(path).map(|n| n.version), Some(*version));
                prop_assert!(map.contains_key(path));
            }
            let mut keys: Vec<&str> = map.keys().collect();
            keys.sort_unstable();
            let mut expected: Vec<&str> = model.keys().map(String::as_str).collect();
            expected.sort_unstable();
            prop_assert_eq!(keys, expected);
        }
    }
}
