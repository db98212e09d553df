//! Replica tests: Catch-up served by a peer that is not the leader (from
//! memory or from the shell's log), and what a leader takes from peers
//! (nothing).

use super::*;

#[test]
fn a_peer_serves_catch_up_marked_as_chosen() {
    let mut a = follower_with_two_committed();
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
            data: vec![].into(),
        },
        c.now(),
    );
    assert_eq!(c.take_commands(), vec![]);
    // And a peer asked for the chunk after the end of its snapshot sends
    // nothing.
    let mut a = replica(2, 3);
    a.compact(0, b"0123456789abcdef".to_vec().into()).unwrap();
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
            data: vec![1, 2, 3, 4].into(),
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
fn a_duplicated_chunk_of_a_peer_served_transfer_draws_no_acknowledgement() {
    // Simulator seed 3451 (ack-without-vouch): the receiver acknowledged
    // every chunk, duplicates too, and the serving peer (which keeps no
    // state) served a chunk for every acknowledgement, so each duplicate
    // started another stream, until 100,000 messages were in flight.
    let mut c = replica(3, 3);
    let chunk = |offset: u64| Message::Snapshot {
        ballot: Ballot::ZERO,
        index: 5,
        membership: m3(),
        total: 8,
        offset,
        data: vec![1, 2, 3, 4].into(),
    };
    let acks = |cmds: Vec<Cmd>| {
        cmds.iter()
            .filter(|c| {
                matches!(
                    c,
                    Command::Send {
                        msg: Message::SnapshotAck { .. },
                        ..
                    }
                )
            })
            .count()
    };
    c.step(2, chunk(0), c.now());
    assert_eq!(
        acks(c.take_commands()),
        1,
        "progress asks for the next chunk"
    );
    c.step(2, chunk(0), c.now());
    assert_eq!(acks(c.take_commands()), 0, "a duplicate asks for nothing");
    // A lost chunk is asked for again after a while.
    let later = c.now() + 10_000;
    c.tick(later);
    assert_eq!(acks(c.take_commands()), 1);
}

#[test]
fn chunks_of_two_sources_are_never_joined() {
    // Simulator seed 41627: two members' snapshots at one index hold the
    // same state in different byte orders; joining their chunks installed a
    // snapshot that did not decode.
    let mut c = replica(3, 3);
    let chunk = |offset: u64, byte: u8| Message::Snapshot {
        ballot: Ballot::ZERO,
        index: 5,
        membership: m3(),
        total: 8,
        offset,
        data: vec![byte; 4].into(),
    };
    c.step(2, chunk(0, 1), c.now());
    c.take_commands();
    // The second half from another member is not taken.
    c.step(1, chunk(4, 2), c.now());
    assert!(
        !c.take_commands()
            .iter()
            .any(|c| matches!(c, Command::InstallSnapshot(_))),
        "no snapshot of mixed chunks"
    );
    c.step(2, chunk(4, 1), c.now());
    let installed: Vec<Vec<u8>> = c
        .take_commands()
        .into_iter()
        .filter_map(|c| match c {
            Command::InstallSnapshot(s) => Some(s.data.read_all().unwrap().to_vec()),
            _ => None,
        })
        .collect();
    assert_eq!(installed, vec![vec![1u8; 8]]);
}

#[test]
fn an_older_snapshot_offered_mid_transfer_does_not_restart_it() {
    // Simulator seed 1744: two members answered a lagging candidate's
    // prepare with their snapshots (indexes 35 and 36); each offer
    // restarted the transfer of the other, and it never completed.
    let mut c = replica(3, 3);
    let chunk = |index: Slot, offset: u64| Message::Snapshot {
        ballot: Ballot::ZERO,
        index,
        membership: m3(),
        total: 8,
        offset,
        data: vec![index as u8; 4].into(),
    };
    c.step(1, chunk(36, 0), c.now());
    c.take_commands();
    // An older snapshot's first chunk from another member is ignored.
    c.step(2, chunk(35, 0), c.now());
    assert_eq!(c.take_commands(), vec![], "no answer, no restart");
    c.step(1, chunk(36, 4), c.now());
    assert!(
        c.take_commands()
            .iter()
            .any(|c| matches!(c, Command::InstallSnapshot(s) if s.index == 36)),
        "the newer transfer completed"
    );
}

/// Node 2 of three with slots 1 and 2 learned (committed) and written by
/// the write with token 1, made durable.
fn follower_with_two_committed() -> Replica<&'static str> {
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
    a
}

#[test]
fn released_values_wait_for_their_write_and_are_then_served_from_the_log() {
    let mut a = follower_with_two_committed();
    // The write holding them is not durable yet: nothing is let go.
    a.release_log(2);
    assert_eq!(a.log_held_from(), 1);
    a.persisted(1);
    // Not past the commit index, whatever the shell asks.
    a.release_log(10);
    assert_eq!((a.log_start(), a.log_held_from()), (1, 3));
    assert_eq!(a.log_last(), 2);
    a.step(3, Message::CatchUp { commit: 0 }, a.now());
    assert_eq!(
        a.take_commands(),
        vec![Command::SendLogged {
            to: 3,
            ballot: Ballot::ZERO,
            first: 1,
            last: 2,
            commit: 2,
        }]
    );
    // What the log holds above a snapshot excludes what was let go.
    assert_eq!(a.accepted_after(0), vec![]);
}

#[test]
fn a_replica_does_not_promise_below_what_it_holds_in_memory() {
    let mut a = follower_with_two_committed();
    a.persisted(1);
    a.release_log(1);
    // Past the lease a crashed leader may hold.
    let later = a.now() + 1_000;
    a.tick(later);
    a.take_commands();
    // A candidate that has committed nothing asks from slot 1: this
    // replica cannot report slot 1, so it catches the candidate up instead
    // of promising.
    a.step(
        3,
        Message::Prepare {
            ballot: b(5, 3),
            from: 1,
        },
        later,
    );
    let cmds = a.take_commands();
    assert_eq!(
        cmds,
        vec![Command::SendLogged {
            to: 3,
            ballot: Ballot::ZERO,
            first: 1,
            last: 1,
            commit: 2,
        }]
    );
    assert_eq!(a.promised(), Ballot::ZERO);
    // From slot 2 on it holds everything: it promises.
    a.step(
        3,
        Message::Prepare {
            ballot: b(5, 3),
            from: 2,
        },
        later,
    );
    assert_eq!(a.promised(), b(5, 3));
}
