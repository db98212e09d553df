//! The driver's part, simulated: a node's turn (route txns, run the
//! replica's commands, notice leader changes and authority, flush the
//! commit index, compact, start the next log batch, decide whether it
//! serves), the frames between nodes, applying committed slots to the
//! state machine and firing watches, installing a snapshot from the
//! leader, the periodic tick (with the leader's reaps), and answering
//! requests (running the reads held behind them), and letting the replica
//! drop from memory what the node's disk holds. Each step calls the
//! same node-core piece `synod`'s driver (`node/src/driver/`) calls, in
//! the same order; the checks run at the event that could break them.

use std::hash::Hash;

use super::node::Pending;
use super::{Cluster, Frame, invariants};
use crate::node::apply::{AppliedValue, apply_value};
use crate::node::reads::ReadIndex;
use crate::node::writes::WriteAction;
use crate::paxos::{Command, Durable, Message, NodeId, Role, Slot, Snapshot, Value};
use crate::state::{Applied, StateMachine};
use crate::txn::{OpOutcome, Txn, TxnOutcome};
use crate::watch::Trigger;
use crate::{Error, SessionId};

/// How long a request, read or keep-alive may wait at a node (the
/// driver's request timeout).
pub(super) const WAIT_LIMIT_MS: u64 = 100;

/// Bytes of encoded proposals per batch the leader proposes.
const BATCH_BYTES: usize = 1 << 16;

impl Cluster {
    /// Node `i`'s turn, as the end of every turn of the driver's loop.
    pub(super) fn turn(&mut self, i: usize) {
        loop {
            if self.is_paused(i) || self.nodes[i].replica.is_none() {
                return;
            }
            self.route_txns(i);
            self.run_commands(i);
            self.watch_leader(i);
            self.watch_authority(i);
            self.route_txns(i);
            self.run_commands(i);
            if let Some(r) = self.nodes[i].replica.as_mut() {
                r.flush_commit();
            }
            self.run_commands(i);
            self.try_compact(i);
            self.flush_wal(i);
            self.update_serving(i);
            // A disk with no latency completes at once: another turn.
            if !self.complete_disk(i) {
                break;
            }
        }
        self.check_turn(i);
    }

    /// The checks due when node `i` has nothing more to do for now.
    fn check_turn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let applied = node.applied();
        let Some(r) = node.replica.as_ref() else {
            return;
        };
        let commit = r.commit_index();
        let order = invariants::state_order::check(node.id, r, applied);
        let went_back = invariants::monotonic::on_commit(&mut node.seen, node.id, commit);
        for v in [order, went_back].into_iter().flatten() {
            self.violation(v);
        }
    }

    /// Lets node `i`'s replica drop from memory what the node's rule
    /// allows ([`crate::node::snapshots::Snapshots::release_bound`]).
    fn release_log(&mut self, i: usize) {
        let Some(keep) = self.cfg.log_keep else {
            return;
        };
        let node = &mut self.nodes[i];
        let applied = node.applied();
        let upto = node
            .snapshots
            .release_bound(applied, node.snapshotting.is_some(), keep);
        if let Some(r) = node.replica.as_mut() {
            r.release_log(upto);
        }
    }

    /// Executes the replica's commands, in order, until it has none.
    fn run_commands(&mut self, i: usize) {
        loop {
            let Some(r) = self.nodes[i].replica.as_mut() else {
                return;
            };
            let commands = r.take_commands();
            if commands.is_empty() {
                self.release_log(i);
                return;
            }
            for command in commands {
                self.execute(i, command);
            }
        }
    }

    fn execute(&mut self, i: usize, cmd: Command<Vec<u8>>) {
        (self.now, i, &cmd).hash(&mut self.trace_hash);
        match cmd {
            Command::Persist(w) => self.persist(i, w),
            Command::Send { to, msg } => {
                let node = &self.nodes[i];
                let commit = node.replica.as_ref().map_or(0, |r| r.commit_index());
                let claim = match (&node.replica, self.cfg.plant) {
                    (Some(r), p) if p != Some(super::Plant::IgnoreIncarnations) => r.claim(),
                    _ => crate::paxos::Claim::NONE,
                };
                if let Some(v) =
                    invariants::durable_send::on_send(node.id, &node.disk, commit, &msg)
                {
                    self.violation(v);
                }
                self.send_frame(i, to, Frame::Paxos(msg, claim));
            }
            Command::SendLogged {
                to,
                ballot,
                first,
                last,
                commit,
            } => {
                let values = logged_values(&self.nodes[i].disk, first, last);
                if !values.is_empty() {
                    self.coverage.logged_sends += 1;
                    let msg = Message::Learn {
                        ballot,
                        first,
                        values,
                        commit,
                    };
                    self.execute(i, Command::Send { to, msg });
                }
            }
            Command::Apply { first, values } => self.apply_committed(i, first, values),
            Command::ReadReady {
                id,
                index,
                lease_until,
            } => self.read_confirmed(i, id, Some(ReadIndex { index, lease_until })),
            Command::ReadFailed { id } => self.read_confirmed(i, id, None),
            Command::InstallSnapshot(snap) => self.install_snapshot(i, snap),
        }
    }

    /// A frame from `from` reaches node `to`.
    pub(super) fn on_frame(&mut self, to: usize, from: NodeId, frame: Frame) {
        let now = self.clock(to);
        let node = &mut self.nodes[to];
        let Some(r) = node.replica.as_mut() else {
            return;
        };
        match frame {
            Frame::Paxos(msg, claim) => r.step_claimed(from, claim, msg, now),
            Frame::Forward(txns) => {
                self.coverage.forwarded += txns.len() as u64;
                let actions = node.writes.forwarded(r, from, txns);
                self.write_actions(to, actions);
            }
            Frame::Refused(requests) => {
                // Not in the log: the client may safely retry.
                let actions = node.writes.refused(from, requests);
                self.write_actions(to, actions);
            }
            Frame::ReadIndex(request) => {
                let actions = node.reads.remote_asked(r, from, request, now);
                self.read_actions(to, actions);
            }
            Frame::ReadIndexReply { request, index } => {
                let at = index.map(|index| ReadIndex {
                    index,
                    lease_until: None,
                });
                self.read_confirmed(to, request, at);
            }
            Frame::Touch { round, sessions } => self.liveness_report(to, from, round, sessions),
            Frame::TouchAck { round, expired } => {
                let settled =
                    node.sessions
                        .on_answer(from, round, &expired, node.machine.sessions(), now);
                self.settle(to, settled);
            }
        }
    }

    /// Queues `txn` at node `i` for the log; `pending` says what its
    /// answer does. Returns its request number.
    pub(super) fn submit(&mut self, i: usize, txn: Txn, pending: Pending) -> u64 {
        let now = self.clock(i);
        let node = &mut self.nodes[i];
        let request = node.writes.submit(txn, now);
        node.completions.insert(request, pending);
        request
    }

    /// Hands node `i`'s queued txns on: proposed when leading, forwarded to
    /// the leader, or refused back to the follower that forwarded them.
    fn route_txns(&mut self, i: usize) {
        let stamp = self.clock(i) as crate::Millis;
        let node = &mut self.nodes[i];
        let Some(r) = node.replica.as_mut() else {
            return;
        };
        if !node.writes.has_txns_to_route() {
            return;
        }
        let actions = node.writes.route(r, stamp, BATCH_BYTES);
        self.write_actions(i, actions);
    }

    /// Carries out what node `i`'s write path decided.
    pub(super) fn write_actions(&mut self, i: usize, actions: Vec<WriteAction>) {
        for action in actions {
            match action {
                WriteAction::Forward { to, txns } => self.send_frame(i, to, Frame::Forward(txns)),
                WriteAction::Refuse { to, requests } => {
                    self.send_frame(i, to, Frame::Refused(requests));
                }
                WriteAction::Fail { request, error } => self.answer(i, request, Err(error)),
            }
        }
    }

    /// Notices a change of leader: requests that went to the old one are
    /// answered (their outcome is unknown).
    fn watch_leader(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let leader = node.replica.as_ref().and_then(|r| r.leader());
        let (_, actions) = node.writes.leader_is(leader);
        self.write_actions(i, actions);
    }

    /// On becoming the authoritative leader, every session gets a full
    /// timeout; while it may vouch, waiting keep-alives are answered.
    fn watch_authority(&mut self, i: usize) {
        let now = self.clock(i);
        let node = &mut self.nodes[i];
        let applied = node.applied();
        let Some(r) = node.replica.as_ref() else {
            return;
        };
        let authoritative = crate::node::authoritative(r, applied);
        let vouching = crate::node::may_vouch(r, applied, now);
        if authoritative && !node.authoritative {
            node.sessions.became_leader(node.machine.sessions(), now);
        }
        node.authoritative = authoritative;
        if node.sessions.waiting() > 0 && vouching {
            let settled = node.sessions.vouching(node.machine.sessions());
            self.settle(i, settled);
        }
    }

    /// Whether node `i` serves clients from now on; a node that lost its
    /// leader refuses its waiting keep-alives.
    fn update_serving(&mut self, i: usize) {
        let now = self.clock(i);
        let node = &mut self.nodes[i];
        let applied = node.applied();
        let Some(r) = node.replica.as_ref() else {
            return;
        };
        let (_, lost) = node.serving.turn(r, applied, now);
        if lost {
            let settled = node.sessions.lost_leader();
            self.settle(i, settled);
        }
    }

    /// Periodic work, as the driver's tick: requests, reads and keep-alives
    /// that waited too long are answered; a follower reports its sessions
    /// to the leader; the authoritative leader expires silent sessions; the
    /// leader reaps empty containers and expired TTL nodes.
    pub(super) fn node_tick(&mut self, i: usize) {
        let now = self.clock(i);
        let node = &mut self.nodes[i];
        let late_reads = node.reads.expire(now, WAIT_LIMIT_MS);
        let late_pings = node.sessions.expire_waiting(now, WAIT_LIMIT_MS);
        let late_writes = node.writes.expire(now, WAIT_LIMIT_MS);
        self.read_actions(i, late_reads);
        self.settle(i, late_pings);
        self.write_actions(i, late_writes);
        let node = &mut self.nodes[i];
        let Some(r) = node.replica.as_ref() else {
            return;
        };
        if r.role() != Role::Leader {
            if let Some(leader) = r.leader().filter(|l| *l != node.id)
                && let Some((round, sessions)) = node.sessions.report(leader, now)
            {
                self.send_frame(i, leader, Frame::Touch { round, sessions });
            }
            return;
        }
        // A leader still catching up decides no expiry.
        let expired = if node.authoritative {
            node.sessions.to_expire(now)
        } else {
            Vec::new()
        };
        for session in expired {
            // Tracked until its close is applied; if the close fails, the
            // next tick tries again.
            self.submit(
                i,
                super::txns::close_session(session, true),
                Pending::Expire(session),
            );
        }
        // Stamped with the time its txns get (`route_txns`), as the
        // driver's wall clock stamps both.
        let node = &mut self.nodes[i];
        let Some(r) = node.replica.as_ref() else {
            return;
        };
        let due = node
            .reaping
            .due(r.role(), node.machine.tree(), now as crate::Millis);
        for path in due {
            self.submit(i, super::txns::reap(path.clone()), Pending::Reap(path));
        }
    }

    /// At the leader: a follower's liveness report, answered only while
    /// the leader may vouch.
    fn liveness_report(&mut self, i: usize, from: NodeId, round: u64, sessions: Vec<SessionId>) {
        let now = self.clock(i);
        let node = &mut self.nodes[i];
        let applied = node.applied();
        let Some(r) = node.replica.as_ref() else {
            return;
        };
        let may_vouch = crate::node::may_vouch(r, applied, now);
        let answer = node
            .sessions
            .on_report(sessions, node.machine.sessions(), may_vouch, now);
        if let Some(expired) = answer {
            self.send_frame(i, from, Frame::TouchAck { round, expired });
        }
    }

    /// Applies committed slots to node `i`'s state machine; slots it
    /// already applied (replayed at start) are skipped.
    fn apply_committed(&mut self, i: usize, first: Slot, values: Vec<Value<Vec<u8>>>) {
        let id = self.nodes[i].id;
        if let Some(v) = invariants::prefix::on_apply(id, self.nodes[i].applied(), first) {
            self.violation(v);
        }
        let mut checked_upto = None;
        for (k, value) in values.into_iter().enumerate() {
            let slot = first + k as Slot;
            let first_time =
                match invariants::agreement::on_apply(&mut self.chosen, id, slot, value.clone()) {
                    Ok(first_time) => first_time,
                    Err(v) => {
                        self.violation(v);
                        false
                    }
                };
            if first_time {
                self.first_applied(slot);
            }
            if slot <= self.nodes[i].applied() {
                continue;
            }
            // A reap is checked against the znode as it was just before.
            let reap = invariants::reaping::target(&value).map(|(path, time)| {
                let before = self.nodes[i].machine.tree().exists(&path).ok().flatten();
                (path, time, before)
            });
            match apply_value(&mut self.nodes[i].machine, slot, &value) {
                AppliedValue::Txn {
                    origin,
                    request,
                    applied,
                } => {
                    if let (Some((path, time, before)), TxnOutcome::Reaped { deleted, .. }) =
                        (&reap, &applied.outcome)
                    {
                        let found = invariants::reaping::on_reap(
                            id,
                            path,
                            *time,
                            before.as_ref(),
                            *deleted,
                        );
                        if let Some(v) = found {
                            self.violation(v);
                        }
                    }
                    if first_time {
                        self.first_applied_txn(slot, origin, request, &applied);
                    }
                    self.after_apply(i, origin, request, applied);
                }
                AppliedValue::Noop => {}
                AppliedValue::Undecodable(e) => {
                    self.violation(format!("node {id}: slot {slot} does not decode: {e}"));
                }
            }
            if first_time {
                let digest = invariants::same_state::digest(&self.nodes[i].machine);
                self.digests.push(digest);
            } else {
                checked_upto = Some(slot);
            }
        }
        if let Some(slot) = checked_upto.filter(|s| *s == self.nodes[i].applied()) {
            let digest = invariants::same_state::digest(&self.nodes[i].machine);
            if let Some(v) = invariants::same_state::on_applied(&self.digests, id, slot, digest) {
                self.violation(v);
            }
        }
        self.release_reads(i);
        self.maybe_snapshot(i);
    }

    /// Slot `slot` was applied for the first time (its value is the last of
    /// `chosen`): check that a majority of its voters hold it durably, and
    /// note a membership change it makes.
    fn first_applied(&mut self, slot: Slot) {
        let value = &self.chosen[(slot - 1) as usize];
        let governing = self
            .memberships
            .iter()
            .rev()
            .find(|(at, _)| *at < slot)
            .map(|(_, m)| m)
            .expect("the initial membership governs from slot 1");
        // A disk wiped after it voted still counts for its vote: the value
        // was durable there when it was chosen.
        let disks: Vec<(NodeId, &Durable<Vec<u8>>)> = self
            .nodes
            .iter()
            .map(|n| (n.id, &n.disk))
            .chain(self.lost_disks.iter().map(|(id, d)| (*id, d)))
            .collect();
        let violation = invariants::quorum_durable::on_first_apply(slot, value, governing, &disks);
        if let Value::Config(m) = value {
            self.memberships.push((slot, (**m).clone()));
        }
        if let Some(v) = violation {
            self.violation(v);
        }
    }

    /// The txn at `slot` was applied for the first time: note that its
    /// request reached the log, when a session closed, and check the
    /// sequential name a create made.
    fn first_applied_txn(&mut self, slot: Slot, origin: NodeId, request: u64, applied: &Applied) {
        self.committed.insert((origin, request), slot);
        match &applied.outcome {
            TxnOutcome::SessionClosed { session, deleted } => {
                self.closed_at.entry(*session).or_insert(self.now);
                self.coverage.ephemerals_deleted += deleted.len() as u64;
            }
            TxnOutcome::Reaped {
                path,
                deleted: true,
            } => {
                if super::ops::is_container(path) {
                    self.coverage.containers_reaped += 1;
                } else {
                    self.coverage.ttl_reaped += 1;
                }
            }
            TxnOutcome::Write(Ok(OpOutcome::Created { path, .. }))
                if super::ops::is_sequential(path) =>
            {
                if let Some(v) = self.sequences.on_commit(path) {
                    self.violation(v);
                }
            }
            _ => {}
        }
    }

    /// After node `i` applied a txn, as the driver's `after_apply`: fire
    /// its watches, keep the session tracker in step, answer the request
    /// if it is this node's.
    fn after_apply(&mut self, i: usize, origin: NodeId, request: u64, applied: Applied) {
        self.fire(i, &applied.triggers);
        let now = self.clock(i);
        match &applied.outcome {
            TxnOutcome::SessionClosed { session, .. } => {
                self.forget_session(i, *session);
                let node = &self.nodes[i];
                if let Some(v) = invariants::ephemerals::on_close(node.id, *session, &node.machine)
                {
                    self.violation(v);
                }
            }
            // Every node tracks every session, so a new leader starts from
            // the full table.
            TxnOutcome::SessionCreated(Ok((session, timeout_ms))) => {
                self.nodes[i].sessions.opened(*session, *timeout_ms, now);
            }
            _ => {}
        }
        if origin == self.nodes[i].id {
            self.answer(i, request, Ok(applied));
        }
    }

    /// Matches triggers against node `i`'s watches and delivers the events
    /// to their sessions' clients.
    fn fire(&mut self, i: usize, triggers: &[Trigger]) {
        let mut events = Vec::new();
        for trigger in triggers {
            self.nodes[i].watches.fire(trigger, &mut events);
        }
        for event in events {
            self.watch_event(i, &event);
        }
    }

    /// Node `i` forgets a session that ended: its liveness, its watches.
    fn forget_session(&mut self, i: usize, session: SessionId) {
        let node = &mut self.nodes[i];
        node.sessions.closed(session);
        node.watches.remove_session(session);
        node.watchers.remove(&session);
    }

    /// The leader sent a snapshot: it replaces node `i`'s state machine.
    fn install_snapshot(&mut self, i: usize, snap: Snapshot) {
        let id = self.nodes[i].id;
        let config = super::node::state_config();
        // A snapshot received is assembled in memory: this read only shares it.
        let data = match snap.data.read_all() {
            Ok(data) => data,
            Err(e) => {
                self.violation(format!(
                    "node {id} cannot read the snapshot it installed: {e}"
                ));
                return;
            }
        };
        if let Some(v) = invariants::snapshot::on_snapshot(
            &self.digests,
            id,
            "installed",
            snap.index,
            &config,
            &data,
        ) {
            self.violation(v);
        }
        let machine = match StateMachine::decode_snapshot(config, &data) {
            Ok(machine) => machine,
            Err(_) => return,
        };
        self.coverage.snapshots_installed += 1;
        let now = self.clock(i);
        let node = &mut self.nodes[i];
        let old = std::mem::replace(&mut node.machine, machine);
        node.snapshotting = None;
        let applied = node.applied();
        node.snapshots.replaced(applied);
        self.fire_skipped_changes(i, &old);
        let node = &mut self.nodes[i];
        node.sessions.restart(node.machine.sessions(), now);
        // Compacted already inside the replica; only the file is owed.
        self.begin_snapshot_file(i, snap.index, snap.membership, data);
    }

    /// After a jump from `old` to the installed state: fires the watches
    /// the skipped txns would have fired, and forgets the sessions that
    /// ended among them.
    fn fire_skipped_changes(&mut self, i: usize, old: &StateMachine) {
        let node = &self.nodes[i];
        let watched = node.watches.watched_paths();
        if !watched.is_empty() {
            let triggers =
                node.machine
                    .tree()
                    .jump_triggers(old.tree(), &watched, node.machine.applied());
            self.fire(i, &triggers);
        }
        let node = &self.nodes[i];
        let ended: Vec<SessionId> = node
            .watchers
            .iter()
            .copied()
            .filter(|s| !node.machine.sessions().contains(*s))
            .collect();
        for session in ended {
            self.forget_session(i, session);
        }
    }

    /// Answers a request of node `i`, if it still waits.
    /// When it was its session's last txn in flight here, the reads that
    /// waited for it run, in order (the driver's `answer`).
    pub(super) fn answer(&mut self, i: usize, request: u64, result: Result<Applied, Error>) {
        let node = &mut self.nodes[i];
        let Some(finished) = node.writes.finish(request) else {
            return;
        };
        if let Some(pending) = node.completions.remove(&request) {
            self.completed(i, pending, result);
        }
        if let Some(session) = finished.session_done {
            for id in self.nodes[i].deferred.release(session) {
                self.run_read(i, id);
            }
        }
    }

    /// What an answered request of node `i` does.
    fn completed(&mut self, i: usize, pending: Pending, result: Result<Applied, Error>) {
        match pending {
            Pending::Op {
                client,
                session,
                op,
            } => self.op_answered(i, client, session, op, result),
            Pending::OpenSession { client } => self.session_opened(client, result),
            Pending::CloseSession { client } => self.session_closed(client),
            Pending::Expire(session) => {
                self.coverage.expired += u64::from(result.is_ok());
                self.nodes[i].sessions.close_failed(session);
            }
            Pending::Reap(path) => self.nodes[i].reaping.done(&path),
            Pending::Probe => {}
        }
    }
}

/// The values node's `disk` holds at `first..=last`, as far as they are
/// contiguous from `first`: what the node reads from its log for a peer.
fn logged_values(disk: &Durable<Vec<u8>>, first: Slot, last: Slot) -> Vec<Value<Vec<u8>>> {
    let from = disk.entries.partition_point(|(s, _)| *s < first);
    disk.entries[from..]
        .iter()
        .zip(first..=last)
        .take_while(|((s, _), want)| s == want)
        .map(|((_, e), _)| e.value.clone())
        .collect()
}
