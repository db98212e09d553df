//! Snapshot and log replay: for random histories, restoring a snapshot taken
//! at any point and replaying the rest of the log gives exactly the state of
//! applying the whole log, and corrupt snapshots are refused, not obeyed.

use proptest::prelude::*;
use synod_core::acl::{Acl, Id, Identity};
use synod_core::codec::LogEntry;
use synod_core::state::{SnapshotBuffer, StateConfig, StateMachine};
use synod_core::stream::Input;
use synod_core::tree::{TreeConfig, TreeLimits};
use synod_core::txn::{CloseReason, CreateMode, Txn, WriteOp};

const NAMES: [&str; 3] = ["a", "b", "c"];

fn path_strategy() -> impl Strategy<Value = String> {
    proptest::collection::vec(0..NAMES.len(), 1..=3)
        .prop_map(|parts| parts.iter().map(|i| format!("/{}", NAMES[*i])).collect())
}

fn mode_strategy() -> impl Strategy<Value = CreateMode> {
    prop_oneof![
        Just(CreateMode::Persistent),
        Just(CreateMode::Ephemeral),
        Just(CreateMode::PersistentSequential),
        Just(CreateMode::EphemeralSequential),
        Just(CreateMode::Container),
        Just(CreateMode::PersistentWithTtl),
    ]
}

fn op_strategy() -> impl Strategy<Value = WriteOp> {
    let acl = prop_oneof![
        Just(Acl::open()),
        Just(vec![
            Acl {
                perms: 31,
                id: Id::new("ip", "127.0.0.0/8")
            },
            Acl {
                perms: 1,
                id: Id::anyone()
            }
        ]),
    ];
    prop_oneof![
        (path_strategy(), any::<u8>(), acl, mode_strategy()).prop_map(|(path, b, acl, mode)| {
            WriteOp::Create {
                path,
                data: Some(vec![b; (b % 7) as usize]),
                acl,
                mode,
                ttl_ms: 1000,
            }
        }),
        (path_strategy(), -1i32..2).prop_map(|(path, version)| WriteOp::Delete { path, version }),
        (path_strategy(), any::<u8>(), -1i32..2).prop_map(|(path, b, version)| WriteOp::SetData {
            path,
            data: Some(vec![b]),
            version
        }),
    ]
}

fn txn_strategy() -> impl Strategy<Value = Txn> {
    let identity = Identity::with_ip("127.0.0.1".parse().expect("ip"));
    prop_oneof![
        3 => (0i64..4, op_strategy()).prop_map(move |(s, op)| Txn::Write { session: s, identity: identity.clone(), op }),
        1 => proptest::collection::vec(op_strategy(), 1..4).prop_map(|ops| Txn::Write {
            session: 0,
            identity: Identity::anonymous(),
            op: WriteOp::Multi(ops),
        }),
        1 => Just(Txn::CreateSession {
            timeout_ms: 10_000,
            password: [5; 16],
        }),
        1 => (1i64..4).prop_map(|session| Txn::CloseSession { session, reason: CloseReason::Expired }),
        1 => path_strategy().prop_map(|path| Txn::Reap { path }),
        // Only the first counts; a snapshot must carry the one that did.
        1 => (0u64..3).prop_map(|id| Txn::SetClusterId { id }),
        // Limits change through the log; replay must check each txn with the
        // limits in force when it was first applied.
        1 => (0usize..6).prop_map(|max_data_bytes| Txn::SetConfig(StateConfig {
            tree: TreeConfig { limits: TreeLimits { max_data_bytes, ..TreeLimits::default() }, ..TreeConfig::default() },
            ..StateConfig::default()
        })),
    ]
}

fn entries(txns: Vec<Txn>) -> Vec<LogEntry> {
    txns.into_iter()
        .enumerate()
        .map(|(i, txn)| LogEntry {
            zxid: i as i64 + 1,
            time: 1_000 * i as i64,
            txn,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn snapshot_plus_replay_equals_full_replay(txns in proptest::collection::vec(txn_strategy(), 1..60), cut in any::<prop::sample::Index>()) {
        let log = entries(txns);
        let cut = cut.index(log.len() + 1);
        let mut full = StateMachine::new(StateConfig::default());
        let mut snapshot = None;
        for (i, entry) in log.iter().enumerate() {
            if i == cut {
                snapshot = Some(full.encode_snapshot());
            }
            // Entries go through their encoding, as they do through the WAL.
            let decoded = LogEntry::decode(&entry.encode()).expect("round trip");
            full.apply(decoded.zxid, decoded.time, &decoded.txn);
        }
        let snapshot = snapshot.unwrap_or_else(|| full.encode_snapshot());
        let mut restored = StateMachine::decode_snapshot(StateConfig::default(), &snapshot).expect("decode");
        for entry in &log {
            restored.apply(entry.zxid, entry.time, &entry.txn);
        }
        prop_assert_eq!(restored.applied(), full.applied());
        prop_assert_eq!(restored.config(), full.config());
        prop_assert_eq!(restored.cluster_id(), full.cluster_id());
        prop_assert_eq!(restored.sessions(), full.sessions());
        prop_assert_eq!(restored.tree().dump(), full.tree().dump());
        prop_assert_eq!(restored.tree().get_ephemerals(1, "/"), full.tree().get_ephemerals(1, "/"));
        prop_assert_eq!(restored.tree().reap_candidates(i64::MAX), full.tree().reap_candidates(i64::MAX));
    }

    /// A snapshot encoded a few nodes at a time while later txns keep
    /// applying is still exactly the state at its index: restoring it and
    /// replaying the txns after it gives the state of the full history.
    #[test]
    fn incremental_snapshot_is_the_state_at_its_index(
        before in proptest::collection::vec(txn_strategy(), 1..60),
        during in proptest::collection::vec(txn_strategy(), 0..40),
        budget in 1usize..3,
        txns_per_step in 1usize..4,
    ) {
        let log = entries(before.into_iter().chain(during).collect());
        let split = log.len() / 2;
        let mut live = StateMachine::new(StateConfig::default());
        for entry in &log[..split] {
            live.apply(entry.zxid, entry.time, &entry.txn);
        }
        let expected_at_index = live.tree().dump();
        // Taken out a slice at a time, as the node writes them to a file.
        let mut snapshot = live.begin_snapshot(SnapshotBuffer::Slices);
        let mut slices = Vec::new();
        let mut rest = log[split..].iter();
        let index = loop {
            if let Some(index) = live.snapshot_step(&mut snapshot, budget) {
                break index;
            }
            slices.extend(snapshot.take_encoded());
            for entry in rest.by_ref().take(txns_per_step) {
                live.apply(entry.zxid, entry.time, &entry.txn);
            }
        };
        for entry in rest {
            live.apply(entry.zxid, entry.time, &entry.txn);
        }
        prop_assert_eq!(index, split as i64);
        slices.extend(&snapshot.bytes);
        prop_assert_eq!(snapshot.encoded_bytes(), slices.len());
        // Decoded from a reader with a window smaller than most nodes.
        let mut restored = StateMachine::decode_snapshot_from(
            StateConfig::default(),
            &mut Input::from_reader(&mut &slices[..], slices.len() as u64, 16),
        ).expect("decode");
        prop_assert_eq!(restored.tree().dump(), expected_at_index);
        for entry in &log[split..] {
            restored.apply(entry.zxid, entry.time, &entry.txn);
        }
        prop_assert_eq!(restored.tree().dump(), live.tree().dump());
        prop_assert_eq!(restored.sessions(), live.sessions());
    }

    /// Fuzz: a snapshot with any byte changed or cut short is decoded to
    /// something or refused, never a panic.
    #[test]
    fn damaged_snapshots_never_panic(txns in proptest::collection::vec(txn_strategy(), 1..20), at in any::<prop::sample::Index>(), value in any::<u8>(), cut in any::<bool>()) {
        let mut state = StateMachine::new(StateConfig::default());
        for entry in entries(txns) {
            state.apply(entry.zxid, entry.time, &entry.txn);
        }
        let mut bytes = state.encode_snapshot();
        let i = at.index(bytes.len());
        // Through a reader with a small window, the same verdict.
        let through_reader = |bytes: &[u8]| StateMachine::decode_snapshot_from(
            StateConfig::default(),
            &mut Input::from_reader(&mut &bytes[..], bytes.len() as u64, 32),
        );
        if cut {
            bytes.truncate(i);
            prop_assert!(StateMachine::decode_snapshot(StateConfig::default(), &bytes).is_err());
            prop_assert!(through_reader(&bytes).is_err());
        } else {
            bytes[i] = value;
            let in_memory = StateMachine::decode_snapshot(StateConfig::default(), &bytes);
            let read = through_reader(&bytes);
            match (in_memory, read) {
                (Ok(a), Ok(b)) => prop_assert_eq!(a.tree().dump(), b.tree().dump()),
                (Err(_), Err(_)) => {}
                (a, b) => prop_assert!(false, "in memory {:?}, read {:?}", a.is_ok(), b.is_ok()),
            }
        }
    }
}

/// The cases the property test finds only sometimes, pinned: a node changed
/// ahead of the walk, a node deleted before the walk reaches it, a node
/// created behind the walk, a node changed after the walk passed it, and a
/// node created (and changed) ahead of the walk.
#[test]
fn incremental_snapshot_pins_changes_around_the_walk() {
    let identity = Identity::anonymous();
    let mut state = StateMachine::new(StateConfig::default());
    let mut zxid = 0;
    let mut apply = |state: &mut StateMachine, op: WriteOp| {
        zxid += 1;
        let applied = state.apply(
            zxid,
            zxid,
            &Txn::Write {
                session: 0,
                identity: identity.clone(),
                op,
            },
        );
        assert!(
            matches!(applied.outcome, synod_core::txn::TxnOutcome::Write(Ok(_))),
            "{applied:?}"
        );
    };
    let create = |path: &str, data: &[u8]| WriteOp::Create {
        path: path.into(),
        data: Some(data.to_vec()),
        acl: Acl::open(),
        mode: CreateMode::Persistent,
        ttl_ms: 0,
    };
    for p in ["/a", "/b", "/c", "/d"] {
        apply(&mut state, create(p, b"old"));
    }
    let expected = state.tree().dump();
    let mut snapshot = state.begin_snapshot(SnapshotBuffer::Whole);
    // Visits /a only.
    assert!(state.snapshot_step(&mut snapshot, 1).is_none());
    apply(
        &mut state,
        WriteOp::SetData {
            path: "/a".into(),
            data: Some(b"new".to_vec()),
            version: -1,
        },
    );
    apply(
        &mut state,
        WriteOp::SetData {
            path: "/c".into(),
            data: Some(b"new".to_vec()),
            version: -1,
        },
    );
    apply(
        &mut state,
        WriteOp::Delete {
            path: "/d".into(),
            version: -1,
        },
    );
    apply(&mut state, create("/b/child", b""));
    apply(&mut state, create("/aa", b""));
    // A node created ahead of the walk, then changed (by a child of its
    // own) before the walk reaches it: still not in the snapshot.
    apply(&mut state, create("/z", b""));
    apply(&mut state, create("/z/child", b""));
    while state.snapshot_step(&mut snapshot, 1).is_none() {}
    let restored =
        StateMachine::decode_snapshot(StateConfig::default(), &snapshot.bytes).expect("decode");
    assert_eq!(restored.tree().dump(), expected);
}
