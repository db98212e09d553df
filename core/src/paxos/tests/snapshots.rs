//! Replica tests: Snapshot transfer to a lagging peer.

use super::*;

#[test]
fn lagging_peer_gets_the_snapshot_in_chunks_and_installs_it() {
    let mut c = cfg(1, 3);
    c.snapshot_chunk = 2;
    let mut r = leader_of(c);
    r.compact(1, vec![10u8, 11, 12, 13, 14].into()).unwrap();
    r.take_commands();
    r.step(
        3,
        Message::HeartbeatAck {
            ballot: b(1, 1),
            seq: 1,
            commit: 0,
        },
        r.now(),
    );
    let chunk = |offset: u64, data: Vec<u8>| {
        send(
            3,
            Message::Snapshot {
                ballot: b(1, 1),
                index: 1,
                membership: m3(),
                total: 5,
                offset,
                data: data.into(),
            },
        )
    };
    // A window of chunks goes out at once.
    assert_eq!(
        r.take_commands(),
        vec![
            chunk(0, vec![10, 11]),
            chunk(2, vec![12, 13]),
            chunk(4, vec![14]),
        ]
    );
    let mut f = replica(3, 3);
    // The second chunk arrives first and is dropped; the first is kept.
    f.step(
        1,
        Message::Snapshot {
            ballot: b(1, 1),
            index: 1,
            membership: m3(),
            total: 5,
            offset: 2,
            data: vec![12, 13].into(),
        },
        f.now(),
    );
    f.step(
        1,
        Message::Snapshot {
            ballot: b(1, 1),
            index: 1,
            membership: m3(),
            total: 5,
            offset: 0,
            data: vec![10, 11].into(),
        },
        f.now(),
    );
    let ack = |offset| {
        send(
            1,
            Message::SnapshotAck {
                ballot: b(1, 1),
                index: 1,
                offset,
            },
        )
    };
    assert_eq!(f.take_commands(), vec![ack(0), ack(2)]);
    // The leader resumes from what the follower has.
    r.step(
        3,
        Message::SnapshotAck {
            ballot: b(1, 1),
            index: 1,
            offset: 2,
        },
        r.now(),
    );
    assert_eq!(r.take_commands(), vec![]);
    f.step(
        1,
        Message::Snapshot {
            ballot: b(1, 1),
            index: 1,
            membership: m3(),
            total: 5,
            offset: 2,
            data: vec![12, 13].into(),
        },
        f.now(),
    );
    f.step(
        1,
        Message::Snapshot {
            ballot: b(1, 1),
            index: 1,
            membership: m3(),
            total: 5,
            offset: 4,
            data: vec![14].into(),
        },
        f.now(),
    );
    assert_eq!(
        f.take_commands(),
        vec![
            ack(4),
            Command::InstallSnapshot(Snapshot {
                index: 1,
                membership: m3(),
                data: vec![10u8, 11, 12, 13, 14].into()
            }),
            ack(5),
        ]
    );
    assert_eq!(f.commit_index(), 1);
}

/// A snapshot the shell holds, as a node's file: it counts the reads, which
/// only the shell may make.
#[derive(Debug)]
struct Held {
    bytes: Vec<u8>,
    reads: std::sync::atomic::AtomicUsize,
}

impl SnapshotSource for Held {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let at = offset as usize;
        buf.copy_from_slice(&self.bytes[at..at + buf.len()]);
        Ok(())
    }
}

fn held(bytes: Vec<u8>) -> std::sync::Arc<Held> {
    std::sync::Arc::new(Held {
        bytes,
        reads: Default::default(),
    })
}

#[test]
fn a_snapshot_held_by_the_shell_is_sent_as_references_never_read() {
    let mut c = cfg(1, 3);
    c.snapshot_chunk = 2;
    let mut r = leader_of(c);
    let file = held(vec![10, 11, 12, 13, 14]);
    let source: std::sync::Arc<dyn SnapshotSource> = file.clone();
    r.compact(1, SnapshotBytes::Source(source.clone())).unwrap();
    r.take_commands();
    r.step(
        3,
        Message::HeartbeatAck {
            ballot: b(1, 1),
            seq: 1,
            commit: 0,
        },
        r.now(),
    );
    let chunk = |offset: u64, len: u64| {
        send(
            3,
            Message::Snapshot {
                ballot: b(1, 1),
                index: 1,
                membership: m3(),
                total: 5,
                offset,
                data: Chunk::Source {
                    source: source.clone(),
                    offset,
                    len,
                },
            },
        )
    };
    assert_eq!(
        r.take_commands(),
        vec![chunk(0, 2), chunk(2, 2), chunk(4, 1)]
    );
    // A peer that asks without a leader is served the same way.
    r.step(2, Message::CatchUp { commit: 0 }, r.now());
    let Some(Command::Send {
        msg: Message::Snapshot { data, .. },
        ..
    }) = r.take_commands().pop()
    else {
        panic!("a chunk for the peer");
    };
    assert_eq!(data.bytes(), None, "a reference, not bytes");
    assert_eq!(
        file.reads.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "the replica never reads the shell's bytes"
    );
}

#[test]
fn an_installed_snapshot_is_swapped_for_the_stored_copy_and_a_stored_one_never() {
    let mut f = replica(3, 3);
    f.step(
        1,
        Message::Snapshot {
            ballot: b(1, 1),
            index: 4,
            membership: m3(),
            total: 3,
            offset: 0,
            data: vec![1u8, 2, 3].into(),
        },
        f.now(),
    );
    f.take_commands();
    let received = f.snapshot().expect("installed").data.clone();
    assert!(received.in_memory(), "assembled in memory as it arrives");
    // The shell stored it: the replica lets the bytes go for the file.
    let stored = SnapshotBytes::Source(held(vec![1, 2, 3]));
    f.compact(4, stored.clone()).unwrap();
    assert_eq!(f.snapshot().map(|s| &s.data), Some(&stored));
    // Another copy at the same index (a second snapshot of the same state)
    // does not replace one served from the shell, nor do bytes in memory.
    f.compact(4, SnapshotBytes::Source(held(vec![3, 2, 1])))
        .unwrap();
    f.compact(4, vec![1u8, 2, 3].into()).unwrap();
    assert_eq!(f.snapshot().map(|s| &s.data), Some(&stored));
}
