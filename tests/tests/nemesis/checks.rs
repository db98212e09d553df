//! The end of the mixed run: a summary of what it did, the checks of the
//! members' views and of the sequential names, each node's account of
//! itself (role, ballot, indexes, peer links), and the report written when
//! something failed.

use super::*;

/// The counts of a run, for the log and the report.
pub(super) fn summary(book: &Book) -> String {
    let mut kinds: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for entry in &book.entries {
        let kind = match entry.op {
            Op::Read => "read",
            Op::Write { .. } => "write",
            Op::Cas { .. } => "cas",
            Op::Create { .. } => "create",
            Op::Delete { .. } => "delete",
        };
        let count = kinds.entry(kind).or_default();
        count.0 += 1;
        if !matches!(entry.end, End::Done(..)) {
            count.1 += 1;
        }
    }
    let unknown: usize = kinds.values().map(|(_, u)| u).sum();
    let kinds: Vec<String> = kinds
        .iter()
        .map(|(kind, (all, unknown))| format!("{kind} {all} ({unknown} unknown)"))
        .collect();
    // Why outcomes were unknown, by the reason's kind (the text before
    // its first colon: a gRPC code and error code, or a timeout).
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    for entry in &book.entries {
        if let End::Unknown(why, _) = &entry.end {
            let kind = why.split(':').next().unwrap_or(why);
            *reasons.entry(kind).or_default() += 1;
        }
    }
    let reasons: Vec<String> = reasons
        .iter()
        .map(|(kind, count)| format!("{count} {kind}"))
        .collect();
    let seq_acked = book
        .seq
        .iter()
        .filter(|s| matches!(s.end, Some((Ok(_), _))))
        .count();
    format!(
        "{} ops, {unknown} with unknown outcome [{}] (why: {}); {} sequential creates, \
         {seq_acked} acknowledged; {} faults",
        book.entries.len(),
        kinds.join(", "),
        reasons.join(", "),
        book.seq.len(),
        book.faults
    )
}

/// What each node says of itself, for a report: its role, leader, ballot
/// and indexes, and what its links to the other nodes have done.
pub(super) async fn node_states(ensemble: &Ensemble) -> Vec<String> {
    let mut states = Vec::new();
    for id in ensemble.ids() {
        let status = match status(ensemble, id).await {
            Ok(s) => format!(
                "role {:?}, leader {}, ballot ({}, {}), commit {}, applied {}, log {}..={}",
                pb::Role::try_from(s.role).unwrap_or(pb::Role::Unspecified),
                s.leader_id,
                s.ballot_round,
                s.ballot_node,
                s.commit_index,
                s.applied_index,
                s.log_start,
                s.log_last
            ),
            Err(error) => format!("{error:#}"),
        };
        let links = match blocking(|| ensemble.node(id).http_get_within("/metrics", CALL)) {
            Ok((_, body)) => body
                .lines()
                .filter(|line| line.starts_with("synod_peer_"))
                .map(|line| line.trim_start_matches("synod_peer_"))
                .collect::<Vec<_>>()
                .join(", "),
            Err(error) => format!("no metrics: {error:#}"),
        };
        states.push(format!("node {id}: {status}; links: {links}"));
    }
    states
}

/// Fails the run with `problem` and each node's account of itself.
pub(super) async fn fail_with_states(shared: &Shared, ensemble: &Ensemble, problem: String) -> ! {
    let mut problems = vec![problem];
    problems.extend(node_states(ensemble).await);
    fail(shared, &problems)
}

/// Every node must hold the same data, `Stat` and sequential children.
pub(super) fn check_views(views: &[(usize, NodeView)], problems: &mut Vec<String>) {
    let Some((first_id, first)) = views.first() else {
        return;
    };
    for (id, view) in &views[1..] {
        for (key, mine) in &view.keys {
            let theirs = first.keys.get(key);
            if theirs != Some(mine) {
                problems.push(format!(
                    "members diverge on {key}: node {first_id} has {theirs:?}, node {id} has \
                     {mine:?}"
                ));
            }
        }
        if view.seq_children != first.seq_children {
            problems.push(format!(
                "members diverge on the children of {SEQ_PARENT}: node {first_id} has {:?}, \
                 node {id} has {:?}",
                first.seq_children, view.seq_children
            ));
        }
    }
}

/// The counter of a sequential node's name.
fn counter(name: &str) -> Option<u64> {
    let digits = name.get(name.len().checked_sub(10)?..)?;
    digits.parse().ok()
}

/// Sequential names: unique, every acknowledged one present on every
/// node, and counters ordered as real time orders the creates.
pub(super) fn check_sequential(
    shared: &Shared,
    views: &[(usize, NodeView)],
    problems: &mut Vec<String>,
) {
    let book = shared.book();
    // (counter, call, return, process, name) of every acknowledged create.
    let mut acked = Vec::new();
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, entry) in book.seq.iter().enumerate() {
        let Some((Ok(name), at)) = &entry.end else {
            continue;
        };
        if let Some(earlier) = names.insert(name.as_str(), i) {
            problems.push(format!(
                "sequential name {name} acknowledged twice: to create {earlier} and {i}"
            ));
        }
        let Some(count) = name.strip_prefix(SEQ_PREFIX).and_then(counter) else {
            problems.push(format!(
                "sequential create {i} answered {name:?}, not {SEQ_PREFIX} and ten digits"
            ));
            continue;
        };
        acked.push((count, entry.call, *at, entry.process, name.as_str()));
    }
    // A create acknowledged before another was invoked was applied first,
    // and the parent's counter only grows: it must have the smaller one.
    // This covers each client's creates, which follow one another.
    let mut by_return = acked.clone();
    by_return.sort_by_key(|a| a.2);
    let mut by_call = acked.clone();
    by_call.sort_by_key(|a| a.1);
    let mut highest: Option<(u64, u64, u64, u64, &str)> = None;
    let mut done = by_return.iter().peekable();
    for op in &by_call {
        while let Some(earlier) = done.next_if(|e| e.2 < op.1) {
            if highest.is_none_or(|h| earlier.0 > h.0) {
                highest = Some(*earlier);
            }
        }
        if let Some(h) = highest
            && h.0 >= op.0
        {
            problems.push(format!(
                "sequential counters against real time: {} (p{}, acknowledged at {} us) came \
                 before {} (p{}, sent at {} us) but has a counter at least as high",
                h.4, h.3, h.2, op.4, op.3, op.1
            ));
        }
    }
    for (id, view) in views {
        let Ok(children) = &view.seq_children else {
            continue;
        };
        let present: HashSet<String> = children
            .iter()
            .map(|child| format!("{SEQ_PARENT}/{child}"))
            .collect();
        let lost: Vec<&str> = acked
            .iter()
            .map(|a| a.4)
            .filter(|name| !present.contains(*name))
            .collect();
        if !lost.is_empty() {
            problems.push(format!(
                "node {id} lacks {} acknowledged sequential node(s): {:?}",
                lost.len(),
                &lost[..lost.len().min(10)]
            ));
        }
    }
}

// ---------------------------------------------------------------------
// The report of a failed run.

/// Writes the run's record to a file and panics with `problems`, the
/// file's path and the replay command.
pub(super) fn fail(shared: &Shared, problems: &[String]) -> ! {
    let (path, written) = match write_report(shared, problems) {
        Ok(path) => (path.display().to_string(), true),
        Err(error) => (format!("(not written: {error:#})"), false),
    };
    let what = if written {
        "history written to"
    } else {
        "history"
    };
    panic!(
        "nemesis run with seed {} failed:\n{}\n{what} {path}\nreplay: {}",
        shared.seed,
        problems.join("\n"),
        replay_command(shared.seed, shared.secs)
    );
}

fn write_report(shared: &Shared, problems: &[String]) -> anyhow::Result<PathBuf> {
    let book = shared.book();
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# Synod nemesis run: seed {}, {} s of faults",
        shared.seed, shared.secs
    );
    let _ = writeln!(
        text,
        "# replay: {}",
        replay_command(shared.seed, shared.secs)
    );
    let _ = writeln!(text, "# {}", summary(&book));
    let _ = writeln!(text, "\n== problems");
    for problem in problems {
        let _ = writeln!(text, "{problem}");
    }
    let _ = writeln!(text, "\n== events (us since the start)");
    for (at, what) in &book.events {
        let _ = writeln!(text, "{at:>11} {what}");
    }
    let _ = writeln!(
        text,
        "\n== ops: #rank process node key op [invoked, returned] -> result \
         (process {FINAL_PROCESS}+n: final reads on node n)"
    );
    for (rank, e) in book.entries.iter().enumerate() {
        let (at, result) = match &e.end {
            End::Pending => ("?".to_owned(), "never completed".to_owned()),
            End::Done(ret, at) => (at.to_string(), ret.to_string()),
            End::Unknown(why, at) => (format!("?{at}"), format!("unknown ({why})")),
        };
        let _ = writeln!(
            text,
            "#{rank} p{} n{} {} {} [{}, {at}] -> {result}",
            e.process, e.node, e.key, e.op, e.call
        );
    }
    let _ = writeln!(
        text,
        "\n== sequential creates: process node [invoked, returned] -> name"
    );
    for s in &book.seq {
        let line = match &s.end {
            None => format!("[{}, ?] -> never completed", s.call),
            Some((Ok(name), at)) => format!("[{}, {at}] -> {name}", s.call),
            Some((Err(why), at)) => format!("[{}, ?{at}] -> unknown ({why})", s.call),
        };
        let _ = writeln!(text, "p{} n{} {line}", s.process, s.node);
    }
    let path = std::env::temp_dir().join(format!(
        "synod-nemesis-seed{}-{}.txt",
        shared.seed,
        std::process::id()
    ));
    std::fs::write(&path, text)?;
    Ok(path)
}
