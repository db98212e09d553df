//! Watches: the registry of one-shot, persistent and persistent-recursive
//! watches that clients connected to this server hold, and the rules that
//! turn the triggers of applied txns into per-session events, exactly as
//! ZooKeeper 3.6+ fires them.

use std::collections::BTreeSet;

use rustc_hash::FxHashMap;

use crate::error::Error;
use crate::path;
use crate::{SessionId, Zxid};

/// ZooKeeper's `Watcher.Event.EventType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    None,
    NodeCreated,
    NodeDeleted,
    NodeDataChanged,
    NodeChildrenChanged,
    DataWatchRemoved,
    ChildWatchRemoved,
    PersistentWatchRemoved,
}

impl EventType {
    /// The integer ZooKeeper uses for this type on its wire.
    pub fn zookeeper_code(self) -> i32 {
        match self {
            EventType::None => -1,
            EventType::NodeCreated => 1,
            EventType::NodeDeleted => 2,
            EventType::NodeDataChanged => 3,
            EventType::NodeChildrenChanged => 4,
            EventType::DataWatchRemoved => 5,
            EventType::ChildWatchRemoved => 6,
            EventType::PersistentWatchRemoved => 7,
        }
    }
}

/// A change an applied txn made, before it is matched against watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    pub path: String,
    pub event: EventType,
    pub zxid: Zxid,
}

/// An event for one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub session: SessionId,
    pub event: EventType,
    pub path: String,
    pub zxid: Zxid,
}

/// Kinds of watch a session can hold on a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WatchKind {
    /// One-shot: getData, or exists (which may watch a missing node).
    Data,
    /// One-shot: getChildren.
    Child,
    /// addWatch PERSISTENT: data and child events on the path, kept.
    Persistent,
    /// addWatch PERSISTENT_RECURSIVE: data events on the path and below.
    PersistentRecursive,
}

/// ZooKeeper's `WatcherType` for removeWatches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatcherType {
    Children,
    Data,
    Any,
    Persistent,
    PersistentRecursive,
}

impl WatcherType {
    fn covers(self, kind: WatchKind) -> bool {
        match self {
            WatcherType::Any => true,
            WatcherType::Children => kind == WatchKind::Child,
            WatcherType::Data => kind == WatchKind::Data,
            WatcherType::Persistent => kind == WatchKind::Persistent,
            WatcherType::PersistentRecursive => kind == WatchKind::PersistentRecursive,
        }
    }
}

/// The watches of every session connected to one server.
#[derive(Debug, Default)]
pub struct WatchRegistry {
    by_path: FxHashMap<String, BTreeSet<(SessionId, WatchKind)>>,
    by_session: FxHashMap<SessionId, BTreeSet<(String, WatchKind)>>,
    /// Paths holding a recursive watch, to skip the ancestor walk when none.
    recursive_paths: usize,
    limit_per_session: usize,
}

impl WatchRegistry {
    pub fn new(limit_per_session: usize) -> Self {
        WatchRegistry {
            limit_per_session,
            ..WatchRegistry::default()
        }
    }

    /// Registers a watch. Adding one that exists is not an error.
    pub fn add(&mut self, session: SessionId, p: &str, kind: WatchKind) -> Result<(), Error> {
        let mine = self.by_session.entry(session).or_default();
        if mine.contains(&(p.to_owned(), kind)) {
            return Ok(());
        }
        if mine.len() >= self.limit_per_session {
            let error = Error::TooLarge {
                what: "watches of a session",
                limit: self.limit_per_session as u64,
                actual: mine.len() as u64 + 1,
            };
            // Leave no empty entry behind for a session that holds nothing.
            if mine.is_empty() {
                self.by_session.remove(&session);
            }
            return Err(error);
        }
        mine.insert((p.to_owned(), kind));
        self.by_path
            .entry(p.to_owned())
            .or_default()
            .insert((session, kind));
        if kind == WatchKind::PersistentRecursive {
            self.recursive_paths += 1;
        }
        Ok(())
    }

    fn drop_one(&mut self, session: SessionId, p: &str, kind: WatchKind) {
        if let Some(set) = self.by_path.get_mut(p) {
            if set.remove(&(session, kind)) && kind == WatchKind::PersistentRecursive {
                self.recursive_paths -= 1;
            }
            if set.is_empty() {
                self.by_path.remove(p);
            }
        }
        if let Some(set) = self.by_session.get_mut(&session) {
            set.remove(&(p.to_owned(), kind));
            if set.is_empty() {
                self.by_session.remove(&session);
            }
        }
    }

    /// Whether the session holds a watch of `watcher_type` on `p`
    /// (ZooKeeper's checkWatches).
    pub fn holds(&self, session: SessionId, p: &str, watcher_type: WatcherType) -> bool {
        self.by_path.get(p).is_some_and(|set| {
            set.iter()
                .any(|(s, k)| *s == session && watcher_type.covers(*k))
        })
    }

    /// Removes the session's watches of `watcher_type` on `p` and returns the
    /// events that tell the client so; NoWatcher when it held none.
    pub fn remove(
        &mut self,
        session: SessionId,
        p: &str,
        watcher_type: WatcherType,
        zxid: Zxid,
    ) -> Result<Vec<WatchEvent>, Error> {
        let kinds: Vec<WatchKind> = self
            .by_path
            .get(p)
            .map(|set| {
                set.iter()
                    .filter(|(s, k)| *s == session && watcher_type.covers(*k))
                    .map(|(_, k)| *k)
                    .collect()
            })
            .unwrap_or_default();
        if kinds.is_empty() {
            return Err(Error::NoWatcher(p.to_owned()));
        }
        let mut events = Vec::new();
        for kind in kinds {
            self.drop_one(session, p, kind);
            let event = match kind {
                WatchKind::Data => EventType::DataWatchRemoved,
                WatchKind::Child => EventType::ChildWatchRemoved,
                WatchKind::Persistent | WatchKind::PersistentRecursive => {
                    EventType::PersistentWatchRemoved
                }
            };
            if !events.iter().any(|e: &WatchEvent| e.event == event) {
                events.push(WatchEvent {
                    session,
                    event,
                    path: p.to_owned(),
                    zxid,
                });
            }
        }
        Ok(events)
    }

    /// Forgets every watch of a session that is gone.
    pub fn remove_session(&mut self, session: SessionId) {
        let Some(mine) = self.by_session.remove(&session) else {
            return;
        };
        for (p, kind) in mine {
            if let Some(set) = self.by_path.get_mut(p.as_str()) {
                if set.remove(&(session, kind)) && kind == WatchKind::PersistentRecursive {
                    self.recursive_paths -= 1;
                }
                if set.is_empty() {
                    self.by_path.remove(p.as_str());
                }
            }
        }
    }

    /// Total watches held.
    pub fn len(&self) -> usize {
        self.by_session.values().map(BTreeSet::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_session.is_empty()
    }

    /// Every watched path, with whether a recursive watch is on it.
    pub fn watched_paths(&self) -> Vec<(String, bool)> {
        self.by_path
            .iter()
            .map(|(p, set)| {
                let recursive = set
                    .iter()
                    .any(|(_, kind)| *kind == WatchKind::PersistentRecursive);
                (p.clone(), recursive)
            })
            .collect()
    }

    /// Turns one trigger into events, at most one per session, consuming the
    /// one-shot watches that fire. Sessions come out in id order.
    pub fn fire(&mut self, trigger: &Trigger, out: &mut Vec<WatchEvent>) {
        if self.by_path.is_empty() {
            return;
        }
        let mut fired: BTreeSet<SessionId> = BTreeSet::new();
        let mut consumed: Vec<(SessionId, WatchKind)> = Vec::new();
        if let Some(set) = self.by_path.get(trigger.path.as_str()) {
            for &(session, kind) in set {
                let fires = match trigger.event {
                    EventType::NodeCreated | EventType::NodeDataChanged => {
                        matches!(
                            kind,
                            WatchKind::Data
                                | WatchKind::Persistent
                                | WatchKind::PersistentRecursive
                        )
                    }
                    EventType::NodeDeleted => true,
                    EventType::NodeChildrenChanged => {
                        matches!(kind, WatchKind::Child | WatchKind::Persistent)
                    }
                    _ => false,
                };
                if fires {
                    fired.insert(session);
                    if matches!(kind, WatchKind::Data | WatchKind::Child) {
                        consumed.push((session, kind));
                    }
                }
            }
        }
        if self.recursive_paths > 0 && trigger.event != EventType::NodeChildrenChanged {
            for ancestor in path::self_and_ancestors(&trigger.path).skip(1) {
                if let Some(set) = self.by_path.get(ancestor) {
                    fired.extend(
                        set.iter()
                            .filter(|(_, k)| *k == WatchKind::PersistentRecursive)
                            .map(|(s, _)| *s),
                    );
                }
            }
        }
        for (session, kind) in consumed {
            self.drop_one(session, &trigger.path, kind);
        }
        out.extend(fired.into_iter().map(|session| WatchEvent {
            session,
            event: trigger.event,
            path: trigger.path.clone(),
            zxid: trigger.zxid,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trig(p: &str, event: EventType) -> Trigger {
        Trigger {
            path: p.into(),
            event,
            zxid: 7,
        }
    }

    fn fire(reg: &mut WatchRegistry, p: &str, event: EventType) -> Vec<(SessionId, EventType)> {
        let mut out = Vec::new();
        reg.fire(&trig(p, event), &mut out);
        out.into_iter().map(|e| (e.session, e.event)).collect()
    }

    #[test]
    fn one_shot_data_watch_fires_once() {
        let mut reg = WatchRegistry::new(100);
        reg.add(1, "/a", WatchKind::Data).unwrap();
        assert_eq!(
            fire(&mut reg, "/a", EventType::NodeDataChanged),
            [(1, EventType::NodeDataChanged)]
        );
        assert!(fire(&mut reg, "/a", EventType::NodeDataChanged).is_empty());
        assert!(reg.is_empty());
    }

    #[test]
    fn child_watch_ignores_data_changes_but_sees_deletion() {
        let mut reg = WatchRegistry::new(100);
        reg.add(1, "/a", WatchKind::Child).unwrap();
        assert!(fire(&mut reg, "/a", EventType::NodeDataChanged).is_empty());
        assert_eq!(
            fire(&mut reg, "/a", EventType::NodeDeleted),
            [(1, EventType::NodeDeleted)]
        );
    }

    #[test]
    fn delete_fires_one_event_per_session() {
        let mut reg = WatchRegistry::new(100);
        reg.add(1, "/a", WatchKind::Child).unwrap();
        reg.add(1, "/a", WatchKind::Data).unwrap();
        reg.add(2, "/a", WatchKind::Persistent).unwrap();
        assert_eq!(
            fire(&mut reg, "/a", EventType::NodeDeleted),
            [(1, EventType::NodeDeleted), (2, EventType::NodeDeleted)]
        );
        assert_eq!(reg.len(), 1, "the persistent watch stays");
    }

    #[test]
    fn recursive_watch_sees_descendants_but_not_child_events() {
        let mut reg = WatchRegistry::new(100);
        reg.add(3, "/a", WatchKind::PersistentRecursive).unwrap();
        assert_eq!(
            fire(&mut reg, "/a/b/c", EventType::NodeCreated),
            [(3, EventType::NodeCreated)]
        );
        assert!(fire(&mut reg, "/a", EventType::NodeChildrenChanged).is_empty());
        assert!(fire(&mut reg, "/ab", EventType::NodeCreated).is_empty());
        assert_eq!(
            fire(&mut reg, "/a", EventType::NodeDataChanged),
            [(3, EventType::NodeDataChanged)]
        );
    }

    #[test]
    fn persistent_watch_sees_child_events_of_its_path() {
        let mut reg = WatchRegistry::new(100);
        reg.add(4, "/a", WatchKind::Persistent).unwrap();
        assert_eq!(
            fire(&mut reg, "/a", EventType::NodeChildrenChanged),
            [(4, EventType::NodeChildrenChanged)]
        );
        assert!(fire(&mut reg, "/a/b", EventType::NodeCreated).is_empty());
    }

    #[test]
    fn remove_watches_reports_and_errors() {
        let mut reg = WatchRegistry::new(100);
        reg.add(1, "/a", WatchKind::Data).unwrap();
        assert_eq!(
            reg.remove(1, "/a", WatcherType::Children, 1),
            Err(Error::NoWatcher("/a".into()))
        );
        let events = reg.remove(1, "/a", WatcherType::Any, 1).unwrap();
        assert_eq!(events[0].event, EventType::DataWatchRemoved);
        assert!(reg.is_empty());
    }

    #[test]
    fn a_refused_watch_leaves_no_trace() {
        let mut reg = WatchRegistry::new(0);
        assert!(matches!(
            reg.add(1, "/a", WatchKind::Data),
            Err(Error::TooLarge { limit: 0, .. })
        ));
        assert_eq!(reg.len(), 0);
        assert!(reg.is_empty());
    }

    #[test]
    fn per_session_limit_is_enforced() {
        let mut reg = WatchRegistry::new(1);
        reg.add(1, "/a", WatchKind::Data).unwrap();
        reg.add(1, "/a", WatchKind::Data).unwrap();
        assert!(matches!(
            reg.add(1, "/b", WatchKind::Data),
            Err(Error::TooLarge { .. })
        ));
        reg.remove_session(1);
        assert!(reg.is_empty());
    }
}
