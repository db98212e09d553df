//! The node's identity as the driver keeps it: the first leader mints the
//! ensemble's cluster id (from the OS's randomness, which core does not
//! have) and proposes it through the log; every node that applies it
//! records it in its data directory's identity file, and a node whose
//! state comes to carry another ensemble's id stops serving. Also what the
//! node says about incarnations: whether it abstains from voting (stamped
//! on its frames), and which members the leader refuses as wiped.

use super::*;
use crate::storage::identity::{IdentityFile, format_id, random_id};

impl NodeState {
    /// On becoming the authoritative leader (caught up, so the applied
    /// state knows every committed id): mint the cluster id if the
    /// ensemble has none yet. Should two leaders mint in turn, the state
    /// machine keeps only the first applied, so every member still learns
    /// the same one. Retried on the leader's ticks while none is applied
    /// and none in flight (`new_leader` proposes regardless: a proposal of
    /// an earlier term may never be answered here).
    pub(super) fn mint_cluster_id(&mut self, new_leader: bool) {
        if self.machine.cluster_id().is_some() || (self.minting_cluster_id && !new_leader) {
            return;
        }
        let id = match random_id() {
            Ok(id) => id,
            Err(error) => {
                tracing::warn!(%error, "cannot mint the cluster id yet");
                return;
            }
        };
        tracing::info!(cluster_id = %format_id(id), "minting the ensemble's cluster id");
        self.minting_cluster_id = true;
        self.submit(
            Txn::SetClusterId { id },
            Box::new(|state, applied| {
                state.minting_cluster_id = false;
                // The next tick tries again; nothing waits for the id.
                if let Err(error) = applied {
                    tracing::warn!(%error, "cannot record the cluster id yet");
                }
            }),
        );
    }

    /// After each turn: once the applied state (from the log or an
    /// installed snapshot) carries a cluster id, record it in the identity
    /// file; if the file already holds another one, the node has been fed
    /// another ensemble's state and must not serve it.
    pub(super) fn check_cluster_id(&mut self) {
        if self.identity_failure.is_some() {
            return;
        }
        let Some(state) = self.machine.cluster_id() else {
            return;
        };
        match self.identity.identity().cluster_id {
            Some(known) if known == state => {}
            Some(known) => {
                let why = format!(
                    "this data directory belongs to cluster id {}, but the ensemble's state \
                     carries cluster id {}: this node was put in another ensemble; stopping",
                    format_id(known),
                    format_id(state)
                );
                tracing::error!(
                    recorded = %format_id(known),
                    ensemble = %format_id(state),
                    "{why}"
                );
                self.identity_failure = Some(why);
            }
            // Two fsyncs on the driver's thread, once in the directory's
            // life: not worth a trip through the storage thread.
            None => match self.identity.set_cluster_id(state) {
                Ok(()) => tracing::info!(
                    cluster_id = %format_id(state),
                    "recorded the ensemble's cluster id in the data directory"
                ),
                Err(error) => {
                    // Like a WAL that cannot be written: a node that cannot
                    // keep its identity must not go on as if it had.
                    let why = format!("cannot record the cluster id: {error}");
                    tracing::error!("{why}");
                    self.identity_failure = Some(why);
                }
            },
        }
    }

    /// Why the node must stop, if its identity says so.
    pub(super) fn identity_failure(&self) -> Option<&str> {
        self.identity_failure.as_deref()
    }

    /// The data directory's identity (not a client's: see `identity`).
    pub fn node_identity(&self) -> &IdentityFile {
        &self.identity
    }

    /// After each turn: stamp whether this node abstains on its frames,
    /// and log when it starts or stops abstaining, and when members start
    /// being refused for their incarnation (a wiped voter: the operator
    /// must remove and re-add it).
    pub(super) fn watch_claim(&mut self) {
        let abstaining = self.replica.claim().abstaining;
        if let Some(peers) = &self.peers {
            peers.set_abstaining(abstaining);
        }
        let foreign = self.replica.foreign_members();
        if (abstaining, &foreign) == (self.claim_seen.0, &self.claim_seen.1) {
            return;
        }
        if abstaining != self.claim_seen.0 {
            if abstaining {
                tracing::warn!(
                    incarnation = %format_id(self.identity.identity().incarnation),
                    "this member votes in nothing until it is removed and re-added: its data \
                     directory is new in an existing ensemble, or the configuration binds its \
                     id to another incarnation"
                );
            } else {
                tracing::info!("this member's incarnation is bound: it votes again");
            }
        }
        for id in foreign.iter().filter(|id| !self.claim_seen.1.contains(id)) {
            tracing::warn!(
                member = id,
                bound = %format_id(self.replica.membership().incarnation(*id)),
                "member speaks with another incarnation than the configuration binds (its disk \
                 was wiped or replaced): its votes count toward no quorum until it is removed \
                 and re-added"
            );
        }
        self.claim_seen = (abstaining, foreign);
    }
}
