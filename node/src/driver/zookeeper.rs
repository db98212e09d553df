//! What the ZooKeeper front end asks of the node beyond the calls it shares
//! with gRPC: re-attaching a session on a new connection (the lastZxidSeen
//! rule and the password check), checkWatches, setWatches with the events
//! a reconnecting client missed, whoAmI, and the numbers the four-letter
//! words report.

use super::*;
use synod_core::watch::EventType;

/// The answer to a connection's handshake.
#[derive(Debug)]
pub enum Attach {
    /// The client asked for a new session: the caller creates it.
    New,
    /// The client has seen state this member has not applied yet; it must
    /// try another member (the connection is closed without an answer).
    Behind { applied: Zxid },
    /// This member serves no clients now (no leader, catching up).
    NotServing(String),
    /// The session is gone, or the password is not its password.
    Expired,
    /// No session of that id has been applied here. It may be gone, or
    /// created on another member a moment ago and not applied here yet:
    /// the caller catches up with the leader (a read barrier,
    /// [`NodeState::read_barrier`], as ZooKeeper's followers ask the leader
    /// to revalidate a session they do not know)
    /// and asks once more before it calls the session expired.
    Unknown,
    /// An existing session, re-attached here.
    Attached {
        timeout_ms: Millis,
        password: SessionPassword,
        header: Header,
        /// Answered once the move of the session to this member is
        /// committed (the ensemble still counts it open), or with
        /// SessionExpired.
        moved: Answer<()>,
        /// The session's watch events from now on.
        events: Result<mpsc::Receiver<synod_proto::v1::WatchEvent>, Error>,
    },
}

/// The node's numbers for `srvr`, `mntr` and their AdminServer forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkSummary {
    pub node_id: NodeId,
    pub role: Role,
    pub observer: bool,
    pub serving: bool,
    pub zxid: Zxid,
    pub znodes: u64,
    pub watches: u64,
    pub watched_paths: u64,
    pub sessions: u64,
    pub ephemerals: u64,
    pub pending_txns: u64,
    pub followers: u64,
    pub synced_followers: u64,
}

impl NodeState {
    /// Checks, for a handshake, whether the client may go on here: it may
    /// not have seen a newer state than this member's (`last_zxid_seen`),
    /// and for an existing session the password must be the session's.
    pub fn attach_session(
        &mut self,
        session: SessionId,
        password: &[u8],
        last_zxid_seen: Zxid,
    ) -> Attach {
        if let Err(error) = self.check_serving() {
            return Attach::NotServing(error.to_string());
        }
        let applied = self.machine.applied();
        if last_zxid_seen > applied {
            return Attach::Behind { applied };
        }
        if session == 0 {
            return Attach::New;
        }
        match self.machine.sessions().get(session) {
            Some(info) if info.password[..] == *password => {
                if self.live(session).is_err() {
                    return Attach::Expired;
                }
                self.outboxes.entry(session).or_default();
                let (tx, rx) = oneshot::channel();
                self.submit(
                    Txn::MoveSession {
                        session,
                        owner: self.id,
                    },
                    Box::new(move |_state, applied| {
                        let moved = applied.and_then(|applied| match &applied.outcome {
                            TxnOutcome::SessionMoved(result) => result.clone().map(|_| ()),
                            other => unreachable_outcome(other),
                        });
                        let _ = tx.send(moved);
                    }),
                );
                let header = self.header(session);
                Attach::Attached {
                    timeout_ms: info.timeout_ms,
                    password: info.password,
                    header,
                    moved: rx,
                    events: self.subscribe(session, header.watch_seq),
                }
            }
            Some(_) => Attach::Expired,
            None => Attach::Unknown,
        }
    }

    /// Applied everywhere: a session moved to another member is no longer
    /// served here. Its event stream here ends, which closes the
    /// connection this member held for it (ZooKeeper answers such a
    /// connection SESSIONMOVED; the client has already left it).
    pub(super) fn session_moved(&mut self, session: SessionId, owner: NodeId) {
        if owner != self.id
            && let Some(outbox) = self.outboxes.get_mut(&session)
        {
            outbox.subscriber = None;
        }
    }

    /// ZooKeeper's checkWatches: NoWatcher unless the session holds a
    /// watch of that type on the path.
    pub fn check_watches(
        &mut self,
        session: SessionId,
        path: &str,
        watcher_type: WatcherType,
    ) -> Result<Header, Error> {
        self.live(session)?;
        synod_core::path::validate(path)?;
        if self.watches.holds(session, path, watcher_type) {
            Ok(self.header(session))
        } else {
            Err(Error::NoWatcher(path.to_owned()))
        }
    }

    /// ZooKeeper's setWatches after a reconnect: a watch whose change
    /// happened after `relative_zxid` (the client's last seen state) fires
    /// at once; the others are set again. Persistent watches are set again
    /// without catch-up events, as ZooKeeper does.
    pub fn set_watches(
        &mut self,
        session: SessionId,
        relative_zxid: Zxid,
        lists: &SetWatchLists,
    ) -> Result<Header, Error> {
        self.live(session)?;
        let zxid = self.machine.applied();
        let mut fired = Vec::new();
        let mut keep = Vec::new();
        {
            let tree = self.machine.tree();
            let stat_of = |path: &str| tree.exists(path).ok().flatten();
            for path in &lists.data {
                match stat_of(path) {
                    None => fired.push((EventType::NodeDeleted, path)),
                    Some(s) if s.mzxid > relative_zxid => {
                        fired.push((EventType::NodeDataChanged, path))
                    }
                    Some(_) => keep.push((path, WatchKind::Data)),
                }
            }
            for path in &lists.exist {
                match stat_of(path) {
                    Some(_) => fired.push((EventType::NodeCreated, path)),
                    None => keep.push((path, WatchKind::Data)),
                }
            }
            for path in &lists.child {
                match stat_of(path) {
                    None => fired.push((EventType::NodeDeleted, path)),
                    Some(s) if s.pzxid > relative_zxid => {
                        fired.push((EventType::NodeChildrenChanged, path))
                    }
                    Some(_) => keep.push((path, WatchKind::Child)),
                }
            }
            for path in &lists.persistent {
                keep.push((path, WatchKind::Persistent));
            }
            for path in &lists.persistent_recursive {
                keep.push((path, WatchKind::PersistentRecursive));
            }
        }
        let fired: Vec<WatchEvent> = fired
            .into_iter()
            .map(|(event, path)| WatchEvent {
                session,
                event,
                path: path.clone(),
                zxid,
            })
            .collect();
        for (path, kind) in keep {
            // A path the client could not have watched is skipped, as
            // ZooKeeper skips it: one bad entry must not lose the others.
            if synod_core::path::validate(path).is_ok() {
                self.watch(session, path, kind)?;
            }
        }
        for event in &fired {
            self.enqueue(event);
        }
        Ok(self.header(session))
    }

    /// whoAmI: the session's identities as (scheme, user) pairs; a digest
    /// identity shows its user name only, as ZooKeeper shows it.
    pub fn who_am_i(
        &self,
        session: SessionId,
        peer: &crate::driver::Origin,
    ) -> Vec<(String, String)> {
        self.identity(session, peer)
            .ids
            .into_iter()
            .map(|id| {
                let user = match id.scheme.as_str() {
                    "digest" => id.id.split(':').next().unwrap_or_default().to_owned(),
                    _ => id.id,
                };
                (id.scheme, user)
            })
            .collect()
    }

    /// The committed membership (voters, observers) and the slot it was
    /// committed at, for `/zookeeper/config`.
    pub fn config_members(&self) -> (Vec<NodeId>, Vec<NodeId>, Slot) {
        let m = self.replica.membership();
        (
            m.voters.clone(),
            m.observers.clone(),
            self.replica.membership_slot(),
        )
    }

    pub fn zk_summary(&self) -> ZkSummary {
        let tree = self.machine.tree();
        let status = self.status();
        let followers = status.peers.len() as u64;
        let commit = status.commit_index;
        ZkSummary {
            node_id: self.id,
            role: status.role,
            observer: status.membership.observers.contains(&self.id),
            serving: self.serving.is_serving(),
            zxid: self.machine.applied(),
            znodes: tree.len() as u64,
            watches: self.watches.len() as u64,
            watched_paths: self.watches.watched_paths().len() as u64,
            sessions: self.machine.sessions().len() as u64,
            ephemerals: tree.ephemeral_count() as u64,
            pending_txns: self.writes.pending() as u64,
            followers,
            synced_followers: status
                .peers
                .iter()
                .filter(|(_, index, _)| *index >= commit)
                .count() as u64,
        }
    }
}

/// The watch lists of a setWatches request.
#[derive(Debug, Clone, Default)]
pub struct SetWatchLists {
    pub data: Vec<String>,
    pub exist: Vec<String>,
    pub child: Vec<String>,
    pub persistent: Vec<String>,
    pub persistent_recursive: Vec<String>,
}
