//! Replica tests: Catch-up served by a peer that is not the leader, and what a leader takes from peers (nothing).

use super::*;

#[test]
fn a_peer_serves_catch_up_marked_as_chosen() {
    let mut a = replica(2, 3);
    a.step(
        1,
        Message::Learn {
            ballot: b(1, 1),
            first: 1,
            values: vec![data("a"), data("b")],
            commit: 2,
        },
        a.now(),
    );
    a.take_commands();
    a.step(3, Message::CatchUp { commit: 0 }, a.now());
    let learn = Message::Learn {
        ballot: Ballot::ZERO,
        first: 1,
        values: vec![data("a"), data("b")],
        commit: 2,
    };
    assert_eq!(a.take_commands(), vec![send(3, learn.clone())]);
    let mut c = replica(3, 3);
    c.step(2, learn, c.now());
    assert_eq!(
        c.take_commands(),
        vec![
            persist(
                1,
                None,
                vec![(1, e(Ballot::CHOSEN, "a")), (2, e(Ballot::CHOSEN, "b"))]
            ),
            Command::Apply {
                first: 1,
                values: vec![data("a"), data("b")]
            },
        ]
    );
    // Not the leader: nothing about who leads changed.
    assert_eq!(c.leader(), None);
}

#[test]
fn a_peer_served_snapshot_the_receiver_already_has_ends_the_exchange() {
    // Node 3 has committed slot 2; a peer (not the leader) sends it the end
    // of a snapshot at index 2. It has that already and must not ask the
    // peer for more: the peer would serve the empty chunk after the end,
    // and the two would ping-pong forever.
    let mut c = replica(3, 3);
    c.step(
        1,
        Message::Learn {
            ballot: b(1, 1),
            first: 1,
            values: vec![data("a"), data("b")],
            commit: 2,
        },
        c.now(),
    );
    c.take_commands();
    c.step(
        2,
        Message::Snapshot {
            ballot: Ballot::ZERO,
            index: 2,
            membership: m3(),
            total: 16,
            offset: 16,
            data: vec![],
        },
        c.now(),
    );
    assert_eq!(c.take_commands(), vec![]);
    // And a peer asked for the chunk after the end of its snapshot sends
    // nothing.
    let mut a = replica(2, 3);
    a.compact(0, bytes::Bytes::from_static(b"0123456789abcdef"))
        .unwrap();
    a.take_commands();
    a.step(
        3,
        Message::SnapshotAck {
            ballot: Ballot::ZERO,
            index: 0,
            offset: 16,
        },
        a.now(),
    );
    assert_eq!(a.take_commands(), vec![]);
}

#[test]
fn a_leader_takes_no_catch_up_from_peers() {
    // Seed 17849 of the simulator: a leader elected while it was still
    // receiving a peer's snapshot finished installing it, its commit index
    // jumped past its vote counts, and it committed slots it did not hold.
    let mut r = leader3();
    let ready = r.commit_index();
    r.propose(vec!["x"]).unwrap();
    r.take_commands();
    r.step(
        3,
        Message::Snapshot {
            ballot: Ballot::ZERO,
            index: 5,
            membership: m3(),
            total: 4,
            offset: 0,
            data: vec![1, 2, 3, 4],
        },
        r.now(),
    );
    r.step(
        3,
        Message::Learn {
            ballot: Ballot::ZERO,
            first: 2,
            values: vec![data("y")],
            commit: 2,
        },
        r.now(),
    );
    assert_eq!(r.take_commands(), vec![]);
    assert_eq!(r.commit_index(), ready);
    assert_eq!(r.role(), Role::Leader);
}

#[test]
fn repeated_acknowledgements_do_not_multiply_a_peer_served_transfer() {
    // Simulator seed 3451 (ack-without-vouch): every acknowledgement of a
    // peer-served transfer drew a chunk, and every chunk an acknowledgement,
    // so each duplicated or periodic acknowledgement started another
    // stream, until 100,000 messages were in flight.
    let mut a = replica(2, 3);
    a.compact(0, bytes::Bytes::from(vec![7u8; 4096])).unwrap();
    a.take_commands();
    let ack = |offset| Message::SnapshotAck {
        ballot: Ballot::ZERO,
        index: 0,
        offset,
    };
    let chunks = |cmds: Vec<Cmd>| {
        cmds.iter()
            .filter(|c| {
                matches!(
                    c,
                    Command::Send {
                        msg: Message::Snapshot { .. },
                        ..
                    }
                )
            })
            .count()
    };
    let now = a.now();
    a.step(3, ack(0), now);
    assert_eq!(
        chunks(a.take_commands()),
        1,
        "the first acknowledgement is served"
    );
    a.step(3, ack(0), now);
    assert_eq!(chunks(a.take_commands()), 0, "a duplicate is not");
    let served = {
        a.step(3, ack(256), now);
        chunks(a.take_commands())
    };
    assert_eq!(served, 1, "progress is served");
    a.step(3, ack(256), now);
    assert_eq!(chunks(a.take_commands()), 0);
    // A receiver that repeats itself after a while (a chunk was lost) is
    // served again.
    let later = now + 10_000;
    a.step(3, ack(256), later);
    assert_eq!(chunks(a.take_commands()), 1);
}
