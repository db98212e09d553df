//! Unit tests of the replica: one protocol step at a time, asserting the
//! exact commands it emits (in the style of openraft's engine tests).

use super::*;

type Cmd = Command<&'static str>;
type Msg = Message<&'static str>;

fn b(round: u64, node: NodeId) -> Ballot {
    Ballot::new(round, node)
}

fn cfg(id: NodeId, n: u64) -> Config {
    Config::new(id, (1..=n).collect())
}

fn m3() -> Membership {
    Membership::new(vec![1, 2, 3], vec![])
}

fn replica(id: NodeId, n: u64) -> Replica<&'static str> {
    Replica::new(cfg(id, n), 0).unwrap()
}

fn send(to: NodeId, msg: Msg) -> Cmd {
    Command::Send { to, msg }
}

fn persist(token: u64, promised: Option<Ballot>, entries: Vec<(Slot, Entry<&'static str>)>) -> Cmd {
    Command::Persist(Write {
        token,
        promised,
        entries,
    })
}

fn e(ballot: Ballot, v: &'static str) -> Entry<&'static str> {
    Entry {
        ballot,
        value: Value::Data(v),
    }
}

fn noop(ballot: Ballot) -> Entry<&'static str> {
    Entry {
        ballot,
        value: Value::Noop,
    }
}

fn data(v: &'static str) -> Value<&'static str> {
    Value::Data(v)
}

/// Makes node 1 of a 3-node cluster leader at ballot (1, 1) with an empty
/// log and its no-op at slot 1 committed by node 2's vote.
fn leader3() -> Replica<&'static str> {
    leader_of(cfg(1, 3))
}

/// Makes node 1 with configuration `c` (voters 1, 2, 3) leader at ballot
/// (1, 1), its no-op at slot 1 committed by node 2's vote.
fn leader_of(c: Config) -> Replica<&'static str> {
    let mut r: Replica<&'static str> = Replica::new(c, 0).unwrap();
    r.campaign();
    r.step(
        2,
        Message::Promise {
            ballot: b(1, 1),
            from: 1,
            accepted: vec![],
            commit: 0,
        },
        r.now(),
    );
    r.persisted(1);
    r.persisted(2);
    r.step(
        2,
        Message::Accepted {
            ballot: b(1, 1),
            first: 1,
            last: 1,
            commit: 0,
        },
        r.now(),
    );
    assert_eq!(r.role(), Role::Leader);
    assert_eq!(r.commit_index(), 1);
    r.take_commands();
    r
}

mod incarnations;
mod membership;
mod peer_catch_up;
mod protocol;
mod reads_and_recovery;
mod snapshots;
