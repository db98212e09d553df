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
                data,
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
            data: vec![12, 13],
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
            data: vec![10, 11],
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
            data: vec![12, 13],
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
            data: vec![14],
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
