//! The watch triggers owed when a tree jumps to a later state without the
//! txns in between: a server that installs a snapshot from the leader never
//! applies the changes it skipped, so its watchers would otherwise never
//! hear of them. The rule is ZooKeeper's for re-registered watches (its
//! `setWatches`), with the old tree in place of the client's last zxid.

use std::collections::BTreeSet;

use super::{DataTree, Znode};
use crate::Zxid;
use crate::path;
use crate::watch::{EventType, Trigger};

impl DataTree {
    /// The triggers that take watchers on `watched` from `old` to this tree,
    /// each stamped `zxid`. A path marked recursive also covers every path
    /// below it, in either tree. Per path, in order: a node that is gone (or
    /// was replaced, a different `czxid`) is deleted; a node that is new is
    /// created; a node with another `mzxid` changed its data, another
    /// `pzxid` its children.
    pub fn jump_triggers(
        &self,
        old: &DataTree,
        watched: &[(String, bool)],
        zxid: Zxid,
    ) -> Vec<Trigger> {
        let mut paths: BTreeSet<String> = BTreeSet::new();
        for (watched_path, recursive) in watched {
            paths.insert(watched_path.clone());
            if *recursive {
                collect_below(old, watched_path, &mut paths);
                collect_below(self, watched_path, &mut paths);
            }
        }
        let mut triggers = Vec::new();
        for p in paths {
            let events = changes(old.nodes.get(&p), self.nodes.get(&p));
            triggers.extend(events.into_iter().map(|event| Trigger {
                path: p.clone(),
                event,
                zxid,
            }));
        }
        triggers
    }
}

/// Every path strictly below `root` in `tree`.
fn collect_below(tree: &DataTree, root: &str, out: &mut BTreeSet<String>) {
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let Some(node) = tree.nodes.get(&dir) else {
            continue;
        };
        for name in tree.nodes.child_names(node) {
            let child = path::join(&dir, name);
            if !node_is_leaf(tree, &child) {
                stack.push(child.clone());
            }
            out.insert(child);
        }
    }
}

fn node_is_leaf(tree: &DataTree, p: &str) -> bool {
    tree.nodes.get(p).is_none_or(|n| !n.has_children())
}

fn changes(before: Option<&Znode>, after: Option<&Znode>) -> Vec<EventType> {
    match (before, after) {
        (None, None) => Vec::new(),
        (None, Some(_)) => vec![EventType::NodeCreated],
        (Some(_), None) => vec![EventType::NodeDeleted],
        (Some(b), Some(a)) if b.czxid != a.czxid => {
            vec![EventType::NodeDeleted, EventType::NodeCreated]
        }
        (Some(b), Some(a)) => {
            let mut events = Vec::new();
            if a.mzxid != b.mzxid {
                events.push(EventType::NodeDataChanged);
            }
            if a.pzxid() != b.pzxid() {
                events.push(EventType::NodeChildrenChanged);
            }
            events
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::{Acl, Identity};
    use crate::tree::WriteCtx;
    use crate::txn::{CreateMode, WriteOp};

    fn apply(tree: &mut DataTree, zxid: Zxid, op: WriteOp) {
        let identity = Identity::anonymous();
        let ctx = WriteCtx {
            zxid,
            time: 0,
            session: 0,
            identity: &identity,
        };
        tree.apply(&op, &ctx, &mut Vec::new()).expect("op applies");
    }

    fn create(path: &str) -> WriteOp {
        WriteOp::Create {
            path: path.into(),
            data: Some(b"v".to_vec()),
            acl: Acl::open(),
            mode: CreateMode::Persistent,
            ttl_ms: 0,
        }
    }

    fn set(path: &str) -> WriteOp {
        WriteOp::SetData {
            path: path.into(),
            data: Some(b"w".to_vec()),
            version: -1,
        }
    }

    fn delete(path: &str) -> WriteOp {
        WriteOp::Delete {
            path: path.into(),
            version: -1,
        }
    }

    fn events(triggers: &[Trigger]) -> Vec<(&str, EventType)> {
        triggers
            .iter()
            .map(|t| (t.path.as_str(), t.event))
            .collect()
    }

    #[test]
    fn each_kind_of_skipped_change_becomes_its_trigger() {
        let mut old = DataTree::default();
        for (zxid, p) in (1..).zip(["/a", "/b", "/c", "/d", "/d/x"]) {
            apply(&mut old, zxid, create(p));
        }
        let mut new = DataTree::default();
        for (zxid, p) in (1..).zip(["/a", "/b", "/c", "/d", "/d/x"]) {
            apply(&mut new, zxid, create(p));
        }
        apply(&mut new, 10, set("/a"));
        apply(&mut new, 11, delete("/b"));
        apply(&mut new, 12, delete("/c"));
        apply(&mut new, 13, create("/c"));
        apply(&mut new, 14, create("/e"));
        apply(&mut new, 15, create("/d/y"));
        apply(&mut new, 16, set("/d/x"));
        let watched: Vec<(String, bool)> = ["/a", "/b", "/c", "/d", "/e", "/never"]
            .iter()
            .map(|p| ((*p).to_owned(), false))
            .collect();
        let triggers = new.jump_triggers(&old, &watched, 16);
        assert_eq!(
            events(&triggers),
            vec![
                ("/a", EventType::NodeDataChanged),
                ("/b", EventType::NodeDeleted),
                ("/c", EventType::NodeDeleted),
                ("/c", EventType::NodeCreated),
                ("/d", EventType::NodeChildrenChanged),
                ("/e", EventType::NodeCreated),
            ]
        );
        assert!(triggers.iter().all(|t| t.zxid == 16));
    }

    #[test]
    fn a_recursive_watch_covers_both_trees_below_it() {
        let mut old = DataTree::default();
        apply(&mut old, 1, create("/r"));
        apply(&mut old, 2, create("/r/gone"));
        apply(&mut old, 3, create("/r/kept"));
        apply(&mut old, 4, create("/r/kept/deep"));
        let mut new = DataTree::default();
        apply(&mut new, 1, create("/r"));
        apply(&mut new, 3, create("/r/kept"));
        apply(&mut new, 4, create("/r/kept/deep"));
        apply(&mut new, 5, set("/r/kept/deep"));
        apply(&mut new, 6, create("/r/new"));
        apply(&mut new, 7, create("/r/new/leaf"));
        let triggers = new.jump_triggers(&old, &[("/r".to_owned(), true)], 7);
        let got = events(&triggers);
        for expected in [
            ("/r/gone", EventType::NodeDeleted),
            ("/r/kept/deep", EventType::NodeDataChanged),
            ("/r/new", EventType::NodeCreated),
            ("/r/new/leaf", EventType::NodeCreated),
        ] {
            assert!(got.contains(&expected), "{expected:?} missing from {got:?}");
        }
        assert!(
            !got.iter().any(|(p, _)| *p == "/r/kept"),
            "an unchanged node yields nothing: {got:?}"
        );
    }

    #[test]
    fn identical_trees_owe_nothing() {
        let mut tree = DataTree::default();
        apply(&mut tree, 1, create("/a"));
        apply(&mut tree, 2, create("/a/b"));
        let mut same = DataTree::default();
        apply(&mut same, 1, create("/a"));
        apply(&mut same, 2, create("/a/b"));
        let watched = [("/a".to_owned(), true), ("/a/b".to_owned(), false)];
        assert!(same.jump_triggers(&tree, &watched, 2).is_empty());
    }
}
