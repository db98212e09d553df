//! Snapshot formats across versions: a snapshot written by an older format
//! (kept as a file under `tests/fixtures`, written by the build that used
//! that format) still decodes to the state its history gives; the current
//! format decodes the same from memory and through a reader, and a
//! snapshot cut short or damaged is refused by both.

use std::io::Read;

use synod_core::acl::{Acl, Id, Identity};
use synod_core::codec::{CodecError, LogEntry};
use synod_core::state::{SnapshotBuffer, StateConfig, StateMachine};
use synod_core::stream::Input;
use synod_core::txn::{CreateMode, Txn, WriteOp};

/// A fixed history with a bit of everything a snapshot holds: sessions and
/// their ephemerals, sequential, container and TTL nodes, two ACL lists,
/// null, empty and 100-byte data, nested paths that share prefixes, and
/// changed and deleted nodes (versions, cversions and pzxids that differ
/// from their defaults).
fn history() -> Vec<LogEntry> {
    let restricted = vec![
        Acl {
            perms: 31,
            id: Id::new("ip", "127.0.0.0/8"),
        },
        Acl {
            perms: 1,
            id: Id::anyone(),
        },
    ];
    let mut txns = vec![
        Txn::SetClusterId { id: 77 },
        Txn::CreateSession {
            timeout_ms: 10_000,
            password: [5; 16],
        },
        Txn::CreateSession {
            timeout_ms: 4_000,
            password: [9; 16],
        },
    ];
    let write = |session: i64, op: WriteOp| Txn::Write {
        session,
        identity: Identity::with_ip("127.0.0.1".parse().expect("an ip")),
        op,
    };
    let create =
        |path: String, data: Option<Vec<u8>>, acl: &Vec<Acl>, mode: CreateMode| WriteOp::Create {
            path,
            data,
            acl: acl.clone(),
            mode,
            ttl_ms: 1_000,
        };
    let open = Acl::open();
    for dir in ["/app", "/app/config", "/locks", "/z"] {
        txns.push(write(
            0,
            create(dir.into(), None, &open, CreateMode::Persistent),
        ));
    }
    for i in 0..40u8 {
        let acl = if i % 3 == 0 { &restricted } else { &open };
        let data = match i % 4 {
            0 => None,
            1 => Some(Vec::new()),
            _ => Some(vec![i; 100]),
        };
        txns.push(write(
            0,
            create(
                format!("/app/config/key-{i:03}"),
                data,
                acl,
                CreateMode::Persistent,
            ),
        ));
    }
    for session in [2, 3] {
        txns.push(write(
            session,
            create(
                "/locks/lock-".into(),
                Some(b"owner".to_vec()),
                &open,
                CreateMode::EphemeralSequential,
            ),
        ));
    }
    txns.push(write(
        0,
        create("/z/box".into(), None, &open, CreateMode::Container),
    ));
    txns.push(write(
        0,
        create(
            "/z/box/item".into(),
            Some(b"x".to_vec()),
            &open,
            CreateMode::Persistent,
        ),
    ));
    txns.push(write(
        0,
        create(
            "/z/ttl".into(),
            Some(b"t".to_vec()),
            &open,
            CreateMode::PersistentWithTtl,
        ),
    ));
    for i in (0..40u8).step_by(5) {
        txns.push(write(
            0,
            WriteOp::SetData {
                path: format!("/app/config/key-{i:03}"),
                data: Some(vec![0xee; 7]),
                version: -1,
            },
        ));
    }
    for i in (1..40u8).step_by(7) {
        txns.push(write(
            0,
            WriteOp::Delete {
                path: format!("/app/config/key-{i:03}"),
                version: -1,
            },
        ));
    }
    txns.push(write(
        0,
        WriteOp::SetAcl {
            path: "/app".into(),
            acl: restricted.clone(),
            version: -1,
        },
    ));
    txns.into_iter()
        .enumerate()
        .map(|(i, txn)| LogEntry {
            zxid: i as i64 + 1,
            time: 1_700_000_000_000 + 1_000 * i as i64,
            txn,
        })
        .collect()
}

fn replayed() -> StateMachine {
    let mut state = StateMachine::new(StateConfig::default());
    for entry in history() {
        state.apply(entry.zxid, entry.time, &entry.txn);
    }
    state
}

/// The same state, every stat, ACL and index included.
fn assert_same(restored: &StateMachine, expected: &StateMachine) {
    assert_eq!(restored.applied(), expected.applied());
    assert_eq!(restored.config(), expected.config());
    assert_eq!(restored.cluster_id(), expected.cluster_id());
    assert_eq!(restored.sessions(), expected.sessions());
    assert_eq!(restored.tree().dump(), expected.tree().dump());
    for session in [2, 3] {
        assert_eq!(
            restored.tree().get_ephemerals(session, "/"),
            expected.tree().get_ephemerals(session, "/")
        );
    }
    assert_eq!(
        restored.tree().reap_candidates(i64::MAX),
        expected.tree().reap_candidates(i64::MAX)
    );
}

/// Decodes `bytes` through a reader with a `window`-byte window, read
/// `step` bytes at a time.
fn decode_read(bytes: &[u8], window: usize, step: usize) -> Result<StateMachine, CodecError> {
    struct Trickle<'a>(&'a [u8], usize);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.1).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let mut reader = Trickle(bytes, step);
    StateMachine::decode_snapshot_from(
        StateConfig::default(),
        &mut Input::from_reader(&mut reader, bytes.len() as u64, window),
    )
}

const FORMAT_5: &[u8] = include_bytes!("fixtures/snapshot-format5.bin");

/// Written by the build before format 6 (`encode_snapshot` of this
/// history): it decodes, from memory and through a reader, to the state
/// the history gives today.
#[test]
fn format_5_snapshots_still_decode() {
    assert_eq!(&FORMAT_5[..4], &5u32.to_le_bytes());
    let expected = replayed();
    let restored =
        StateMachine::decode_snapshot(StateConfig::default(), FORMAT_5).expect("format 5");
    assert_same(&restored, &expected);
    for (window, step) in [(16, 3), (64, 64), (1 << 20, 1 << 20)] {
        let read = decode_read(FORMAT_5, window, step).expect("format 5 through a reader");
        assert_same(&read, &expected);
    }
}

/// The current format, encoded whole or a slice at a time, decodes from
/// memory and through readers of any window to the same state; written
/// again, a format 5 snapshot becomes exactly today's encoding of it.
#[test]
fn the_current_format_round_trips_whole_and_in_slices() {
    let mut expected = replayed();
    let whole = expected.encode_snapshot();
    assert_eq!(&whole[..4], &6u32.to_le_bytes());
    let mut slices = Vec::new();
    let mut pending = expected.begin_snapshot(SnapshotBuffer::Slices);
    while expected.snapshot_step(&mut pending, 3).is_none() {
        slices.extend(pending.take_encoded());
    }
    slices.extend(&pending.bytes);
    assert_eq!(slices, whole, "slices are the whole snapshot, in order");
    let mut restored =
        StateMachine::decode_snapshot(StateConfig::default(), &whole).expect("format 6");
    assert_same(&restored, &expected);
    for (window, step) in [(16, 1), (16, 5), (100, 7), (4096, 4096)] {
        assert_same(
            &decode_read(&whole, window, step).expect("format 6 through a reader"),
            &expected,
        );
    }
    let mut from_5 =
        StateMachine::decode_snapshot(StateConfig::default(), FORMAT_5).expect("format 5");
    assert_eq!(from_5.encode_snapshot(), restored.encode_snapshot());
}

/// Cut anywhere, the current format is refused from memory and through a
/// reader (the reader fails where its input ends early, too).
#[test]
fn a_snapshot_cut_short_is_refused() {
    let whole = replayed().encode_snapshot();
    for cut in 0..whole.len() {
        let part = &whole[..cut];
        assert!(
            StateMachine::decode_snapshot(StateConfig::default(), part).is_err(),
            "cut at {cut} of {}",
            whole.len()
        );
        assert!(decode_read(part, 64, 13).is_err(), "cut at {cut}, read");
    }
    // A reader that ends before the length it was given.
    struct Short<'a>(&'a [u8]);
    impl Read for Short<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let mut short = Short(&whole[..whole.len() / 2]);
    assert!(matches!(
        StateMachine::decode_snapshot_reader(
            StateConfig::default(),
            &mut short,
            whole.len() as u64
        ),
        Err(CodecError::Truncated { .. })
    ));
}

/// The node count after the nodes must match them, and nothing may follow.
#[test]
fn a_wrong_count_or_trailing_bytes_are_refused() {
    let whole = replayed().encode_snapshot();
    let mut wrong = whole.clone();
    let at = wrong.len() - 8;
    wrong[at] ^= 1;
    let error =
        StateMachine::decode_snapshot(StateConfig::default(), &wrong).expect_err("a wrong count");
    assert!(error.to_string().contains("nodes"), "{error}");
    assert!(decode_read(&wrong, 64, 64).is_err());
    let mut longer = whole.clone();
    longer.push(0);
    assert!(matches!(
        StateMachine::decode_snapshot(StateConfig::default(), &longer),
        Err(CodecError::Trailing { extra: 1, .. })
    ));
    assert!(matches!(
        decode_read(&longer, 64, 64),
        Err(CodecError::Trailing { extra: 1, .. })
    ));
}
