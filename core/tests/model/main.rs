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

mod histories;
mod reference;

use histories::*;
use reference::*;

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
