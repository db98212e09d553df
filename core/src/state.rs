//! The replicated state machine: the znode tree and the session table,
//! advanced by committed txns in log order. Given the same log, every replica
//! reaches the same state and reports the same outcomes and triggers.

use crate::error::Error;
use crate::session::{SessionLimits, SessionTable};
use crate::tree::{DataTree, TreeConfig, WriteCtx};
use crate::txn::{Txn, TxnOutcome};
use crate::watch::Trigger;
use crate::{Millis, Zxid};

/// Settings every replica must share.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateConfig {
    pub tree: TreeConfig,
    pub sessions: SessionLimits,
}

/// Tree, sessions and the position in the log they reflect.
#[derive(Debug)]
pub struct StateMachine {
    tree: DataTree,
    sessions: SessionTable,
    applied: Zxid,
    session_limits: SessionLimits,
}

/// What applying one txn produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub zxid: Zxid,
    pub outcome: TxnOutcome,
    pub triggers: Vec<Trigger>,
}

impl StateMachine {
    pub fn new(config: StateConfig) -> Self {
        StateMachine {
            tree: DataTree::new(config.tree),
            sessions: SessionTable::default(),
            applied: 0,
            session_limits: config.sessions,
        }
    }

    pub fn tree(&self) -> &DataTree {
        &self.tree
    }

    pub fn sessions(&self) -> &SessionTable {
        &self.sessions
    }

    pub fn session_limits(&self) -> &SessionLimits {
        &self.session_limits
    }

    /// Zxid of the last applied txn.
    pub fn applied(&self) -> Zxid {
        self.applied
    }

    /// Applies the committed txn at `zxid`, stamped with `time` by the
    /// leader. Zxids must increase; a txn at or below the applied one was
    /// already applied and is ignored, which makes redelivery harmless.
    pub fn apply(&mut self, zxid: Zxid, time: Millis, txn: &Txn) -> Applied {
        let mut triggers = Vec::new();
        if zxid <= self.applied {
            return Applied {
                zxid,
                outcome: TxnOutcome::Noop,
                triggers,
            };
        }
        self.applied = zxid;
        let outcome = match txn {
            Txn::Noop => TxnOutcome::Noop,
            Txn::CreateSession { timeout_ms } => {
                if self.sessions.len() >= self.session_limits.max_sessions {
                    TxnOutcome::SessionCreated(Err(Error::TooLarge {
                        what: "open sessions",
                        limit: self.session_limits.max_sessions as u64,
                        actual: self.sessions.len() as u64 + 1,
                    }))
                } else {
                    let timeout_ms = self.session_limits.negotiate(*timeout_ms);
                    self.sessions.open(zxid, timeout_ms);
                    TxnOutcome::SessionCreated(Ok((zxid, timeout_ms)))
                }
            }
            Txn::CloseSession { session, .. } => {
                let deleted = if self.sessions.close(*session).is_some() {
                    self.tree.delete_ephemerals(*session, zxid, &mut triggers)
                } else {
                    Vec::new()
                };
                TxnOutcome::SessionClosed {
                    session: *session,
                    deleted,
                }
            }
            Txn::Write {
                session,
                identity,
                op,
            } => {
                if *session != 0 && !self.sessions.contains(*session) {
                    TxnOutcome::Write(Err(Error::SessionExpired(*session)))
                } else {
                    let ctx = WriteCtx {
                        zxid,
                        time,
                        session: *session,
                        identity,
                    };
                    TxnOutcome::Write(self.tree.apply(op, &ctx, &mut triggers))
                }
            }
            Txn::Reap { path } => {
                let deleted = self.tree.reap(path, zxid, time, &mut triggers);
                TxnOutcome::Reaped {
                    path: path.clone(),
                    deleted,
                }
            }
        };
        Applied {
            zxid,
            outcome,
            triggers,
        }
    }
}
