//! Tests of the linearizability checker: hand-written histories, a
//! brute-force reference on small random histories, model runs that must
//! pass, long histories and the search budget.
use super::*;
use proptest::prelude::*;

fn z(value: u64, version: i32) -> Option<Znode> {
    Some(Znode { value, version })
}
fn create(value: u64) -> Op {
    Op::Create { value }
}
fn set(version: i32) -> Ret {
    Ret::Set { version }
}
fn rd(value: u64, version: i32) -> Ret {
    Ret::Read(z(value, version))
}
const READ: Op = Op::Read;

/// A history whose key "k" starts in `initial`.
fn hist(initial: Option<Znode>) -> History {
    let mut h = History::new();
    h.set_initial("k", initial);
    h
}

/// Records an op of process `p` on `key` over `[call, at]` that returned `ret`.
fn done(h: &mut History, p: u64, key: &str, op: Op, call: u64, ret: Ret, at: u64) -> OpId {
    let id = h.invoke(p, key, op, call);
    h.complete(id, ret, at);
    id
}

/// Records an op on "k" whose outcome is unknown.
fn lost(h: &mut History, p: u64, op: Op, call: u64) {
    let id = h.invoke(p, "k", op, call);
    h.unknown(id);
}

fn ok(h: &History) -> bool {
    let verdict = check(h, Budget::default());
    assert!(!matches!(verdict, Verdict::Unknown { .. }), "{verdict:?}");
    verdict.is_linearizable()
}

fn has(explanation: &str, part: &str) {
    assert!(explanation.contains(part), "{explanation}");
}

fn violation(h: &History) -> (String, String) {
    match check(h, Budget::default()) {
        Verdict::NotLinearizable { key, explanation } => (key, explanation),
        v => panic!("expected a violation, got {v:?}"),
    }
}

#[test]
fn sequential_history_passes() {
    let mut h = History::new();
    done(&mut h, 1, "k", READ, 0, Ret::NoNode, 1);
    done(&mut h, 1, "k", create(1), 2, Ret::Ok, 3);
    done(&mut h, 2, "k", w(2), 4, set(1), 5);
    done(&mut h, 1, "k", cas(1, 3), 6, set(2), 7);
    done(&mut h, 2, "k", READ, 8, rd(3, 2), 9);
    done(&mut h, 1, "k", del(Some(2)), 10, Ret::Ok, 11);
    done(&mut h, 2, "k", READ, 12, Ret::Read(None), 13);
    assert_eq!(h.len(), 7);
    assert!(ok(&h));
    assert!(ok(&History::new()));
}

#[test]
fn stale_read_after_completed_write_fails() {
    let (mut h, mut concurrent) = (hist(z(0, 12)), hist(z(0, 12)));
    done(&mut concurrent, 2, "k", READ, 0, rd(13, 13), 210);
    for v in 13..=19 {
        let t = v * 10;
        done(&mut h, 1, "k", w(v), t, set(v as i32), t + 5);
        done(&mut concurrent, 1, "k", w(v), t, set(v as i32), t + 5);
    }
    // Invoked after the write to version 19 completed, yet sees 13.
    done(&mut h, 2, "k", READ, 200, rd(13, 13), 210);
    let (key, explanation) = violation(&h);
    assert_eq!(key, "k");
    has(&explanation, "prefix: 7 ops, reaching 19@v19");
    has(&explanation, "#7 p2 [200, 210] read -> 13@v13");
    has(&explanation, "would get 19@v19");
    // The same read, concurrent with the writes, is fine.
    assert!(ok(&concurrent));
}

#[test]
fn concurrent_ops_need_a_specific_interleaving() {
    let mut h = hist(z(0, 0));
    done(&mut h, 1, "k", w(5), 0, set(2), 100);
    done(&mut h, 2, "k", w(6), 10, set(1), 20);
    done(&mut h, 3, "k", READ, 30, rd(6, 1), 40);
    assert!(ok(&h)); // p2's write, the read, then p1's write
    done(&mut h, 3, "k", READ, 50, rd(5, 2), 60);
    assert!(ok(&h));
    done(&mut h, 3, "k", READ, 70, rd(6, 1), 80);
    let (_, explanation) = violation(&h);
    has(&explanation, "#4 p3 [70, 80] read -> 6@v1");
}

#[test]
fn equal_times_are_concurrent() {
    for (write_returns, linearizable) in [(10, true), (9, false)] {
        let mut h = hist(z(0, 0));
        done(&mut h, 1, "k", w(1), 0, set(1), write_returns);
        done(&mut h, 2, "k", READ, 10, rd(0, 0), 20);
        assert_eq!(ok(&h), linearizable);
    }
}

#[test]
fn cas_race() {
    for (second, linearizable) in [(Ret::BadVersion, true), (set(4), false)] {
        let mut h = hist(z(0, 3));
        done(&mut h, 1, "k", cas(3, 1), 0, set(4), 10);
        done(&mut h, 2, "k", cas(3, 2), 0, second, 10);
        assert_eq!(ok(&h), linearizable);
    }
    let mut h = hist(z(0, 3)); // one after the other, the second must fail
    done(&mut h, 1, "k", cas(3, 1), 0, set(4), 10);
    done(&mut h, 2, "k", cas(3, 2), 11, set(5), 20);
    assert!(!ok(&h));
}

#[test]
fn unknown_outcomes() {
    // A lost write explains a later read, even one taking effect late.
    let mut h = hist(z(0, 0));
    lost(&mut h, 1, w(9), 0);
    done(&mut h, 2, "k", READ, 10, rd(0, 0), 20);
    done(&mut h, 2, "k", READ, 30, rd(9, 1), 40);
    assert!(ok(&h));
    // One invoked after the read returned cannot.
    let mut h = hist(z(0, 0));
    done(&mut h, 2, "k", READ, 10, rd(9, 1), 20);
    lost(&mut h, 1, w(9), 50);
    assert!(!ok(&h));
    // Nor one that wrote something else.
    let mut h = hist(z(0, 0));
    lost(&mut h, 1, w(9), 0);
    done(&mut h, 2, "k", READ, 10, rd(8, 1), 20);
    assert!(!ok(&h));
    // Ops never completed count as unknown; unknown reads are dropped.
    let mut h = History::new();
    h.invoke(1, "k", create(4), 0);
    lost(&mut h, 3, READ, 0);
    h.invoke(3, "k", READ, 1);
    done(&mut h, 2, "k", READ, 10, rd(4, 0), 20);
    assert!(ok(&h));
}

#[test]
fn create_delete_sequences() {
    let mut h = History::new();
    done(&mut h, 1, "k", create(1), 0, Ret::Ok, 1);
    done(&mut h, 2, "k", create(2), 2, Ret::NodeExists, 3);
    done(&mut h, 2, "k", w(3), 4, set(1), 5);
    done(&mut h, 1, "k", del(Some(0)), 6, Ret::BadVersion, 7);
    done(&mut h, 1, "k", del(Some(1)), 8, Ret::Ok, 9);
    done(&mut h, 2, "k", del(None), 10, Ret::NoNode, 11);
    done(&mut h, 2, "k", w(3), 12, Ret::NoNode, 13);
    done(&mut h, 1, "k", create(7), 14, Ret::Ok, 15);
    done(&mut h, 2, "k", READ, 16, rd(7, 0), 17);
    done(&mut h, 1, "k", del(Some(-1)), 18, Ret::Ok, 19);
    assert!(ok(&h));
    let mut h = History::new();
    done(&mut h, 1, "k", create(1), 0, Ret::Ok, 1);
    done(&mut h, 2, "k", create(2), 2, Ret::Ok, 3);
    assert!(!ok(&h));
}

#[test]
fn keys_are_independent() {
    let mut h = History::new();
    done(&mut h, 1, "a", create(1), 0, Ret::Ok, 10);
    done(&mut h, 1, "b", create(1), 0, Ret::Ok, 10);
    done(&mut h, 2, "a", READ, 20, rd(1, 0), 30);
    done(&mut h, 2, "b", READ, 20, Ret::Read(None), 30);
    done(&mut h, 3, "c", READ, 20, Ret::Read(None), 30);
    assert_eq!(violation(&h).0, "b");
    // A violation outranks another key's exhausted budget.
    blowup(&mut h, "a0");
    let budget = Budget { max_steps: 1000 };
    assert!(matches!(check(&h, budget), Verdict::NotLinearizable { key, .. } if key == "b"));
}

/// 20 creates and 20 deletes, all concurrent and all Ok, then a read
/// nothing explains: refuting it means trying exponentially many orders.
fn blowup(h: &mut History, key: &str) {
    for i in 0..20 {
        done(h, i, key, create(i), 0, Ret::Ok, 100);
        done(h, i, key, del(None), 0, Ret::Ok, 100);
    }
    done(h, 99, key, READ, 200, rd(99, 0), 201);
}

#[test]
fn budget_turns_blowup_into_unknown() {
    let mut h = History::new();
    blowup(&mut h, "k");
    let verdict = check(&h, Budget { max_steps: 100_000 });
    assert_eq!(verdict, Verdict::Unknown { key: "k".into() });
}

/// The reference: tries every order of the whole history (no per-key
/// split, no memo) that respects real time, leaving out any subset of the
/// ops with an unknown outcome.
fn brute_force(h: &History) -> bool {
    fn dfs(h: &History, placed: &mut [bool], state: &mut BTreeMap<String, Option<Znode>>) -> bool {
        let recs = &h.records;
        if (0..recs.len()).all(|o| placed[o] || recs[o].ret.is_none()) {
            return true;
        }
        for o in 0..recs.len() {
            let before_o = |p: usize| matches!(recs[p].ret, Some((_, at)) if at < recs[o].call);
            if placed[o] || (0..recs.len()).any(|p| !placed[p] && before_o(p)) {
                continue;
            }
            let before = state.get(&recs[o].key).copied().flatten();
            let (after, got) = recs[o].op.apply(before);
            if recs[o].ret.is_some_and(|(want, _)| want != got) {
                continue;
            }
            placed[o] = true;
            state.insert(recs[o].key.clone(), after);
            if dfs(h, placed, state) {
                return true;
            }
            placed[o] = false;
            state.insert(recs[o].key.clone(), before);
        }
        false
    }
    dfs(h, &mut vec![false; h.len()], &mut h.initial.clone())
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(READ),
        (0..3u64).prop_map(w),
        (-1..3i32, 0..3u64).prop_map(|(e, v)| cas(e, v)),
        (0..3u64).prop_map(create),
        proptest::option::of(0..3i32).prop_map(del),
    ]
}

fn state_strategy() -> impl Strategy<Value = Option<Znode>> {
    proptest::option::of((0..3u64, 0..3i32).prop_map(|(v, e)| Znode {
        value: v,
        version: e,
    }))
}

fn ret_strategy() -> impl Strategy<Value = Ret> {
    prop_oneof![
        state_strategy().prop_map(Ret::Read),
        (0..4i32).prop_map(set),
        Just(Ret::Ok),
        Just(Ret::NoNode),
        Just(Ret::NodeExists),
        Just(Ret::BadVersion),
    ]
}

/// A generated op: process, on key "b" (else "a"), op, call (after twice
/// its index), delays to its linearization point and from there to its
/// return, outcome (0: lost after taking effect, 1: lost without effect,
/// else completed), and a false result to claim.
type GenOp = (u64, bool, Op, u64, u64, u64, u8, Option<Ret>);

fn gen_op() -> impl Strategy<Value = GenOp> {
    let key = proptest::bool::weighted(0.2);
    let fake = proptest::option::weighted(0.25, ret_strategy());
    (
        0..3u64,
        key,
        op_strategy(),
        0..12u64,
        0..4u64,
        0..4u64,
        0..8u8,
        fake,
    )
}

/// Runs the ops through the model at their linearization points; if
/// `corrupt`, claims the false results instead of the model's.
fn build(initial: [Option<Znode>; 2], ops: &[GenOp], corrupt: bool) -> History {
    let mut order: Vec<usize> = (0..ops.len()).collect();
    order.sort_by_key(|&i| 2 * i as u64 + ops[i].3 + ops[i].4);
    let (mut state, mut rets) = (initial, vec![None; ops.len()]);
    for i in order {
        let (_, b, op, _, _, _, outcome, fake) = ops[i];
        if outcome != 1 {
            let ret;
            (state[usize::from(b)], ret) = op.apply(state[usize::from(b)]);
            rets[i] = Some(if corrupt { fake.unwrap_or(ret) } else { ret });
        }
    }
    let mut h = History::new();
    h.set_initial("a", initial[0]);
    h.set_initial("b", initial[1]);
    for (i, (&(p, b, op, call, d1, d2, outcome, _), ret)) in ops.iter().zip(rets).enumerate() {
        let call = 2 * i as u64 + call;
        let id = h.invoke(p, if b { "b" } else { "a" }, op, call);
        match ret {
            Some(ret) if outcome > 1 => h.complete(id, ret, call + d1 + d2),
            _ => h.unknown(id),
        }
    }
    h
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn agrees_with_brute_force(
        initial in [state_strategy(), state_strategy()],
        ops in proptest::collection::vec(gen_op(), 0..=7),
    ) {
        let h = build(initial, &ops, true);
        let verdict = check(&h, Budget::default());
        prop_assert!(!matches!(verdict, Verdict::Unknown { .. }), "{:?}", verdict);
        prop_assert_eq!(verdict.is_linearizable(), brute_force(&h), "{:?}", verdict);
    }

    #[test]
    fn model_runs_are_linearizable(
        initial in [state_strategy(), state_strategy()],
        ops in proptest::collection::vec(gen_op(), 0..=12),
    ) {
        let h = build(initial, &ops, false);
        prop_assert_eq!(check(&h, Budget::default()), Verdict::Linearizable);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    /// Thousands of ops in the style of a real test (unique values, few
    /// creates and deletes, 5% lost, a few in flight at a time): checked
    /// fast; and a read returning a value never written is caught.
    #[test]
    fn long_histories(mut ops in proptest::collection::vec(gen_op(), 3000), k in 0..3000usize) {
        for (i, op) in ops.iter_mut().enumerate() {
            let value = i as u64 + 10;
            op.2 = match op.2 {
                Op::Write { .. } => w(value),
                Op::Cas { expected_version, .. } => cas(expected_version, value),
                Op::Create { .. } | Op::Delete { .. } if i % 10 != 0 => READ,
                Op::Create { .. } => create(value),
                op => op,
            };
            if op.6 < 2 && i % 5 != 0 {
                op.6 = 2;
            }
        }
        let initial = [z(0, 0), z(0, 0)];
        prop_assert_eq!(check(&build(initial, &ops, false), Budget::default()), Verdict::Linearizable);
        let k = (k..3000).find(|&i| ops[i].2 == READ && ops[i].6 > 1).unwrap_or(k);
        (ops[k].2, ops[k].6, ops[k].7) = (READ, 7, Some(rd(1, 0)));
        let verdict = check(&build(initial, &ops, true), Budget::default());
        prop_assert!(matches!(verdict, Verdict::NotLinearizable { .. }), "{:?}", verdict);
    }
}
