//! What `/zookeeper/config` shows ZooKeeper clients: the committed
//! membership in ZooKeeper's dynamic-configuration format, one
//! `server.N=host:quorumPort:electionPort:role;clientHost:clientPort` line
//! per member and `version=<hex>`. Curator's EnsembleTracker replaces its
//! connection string with the client addresses listed here, so they must be
//! stable names clients can reach: they come from
//! `--zookeeper-address-template` (a StatefulSet's DNS names), never from
//! what a node happens to bind. Without the template the node stays empty,
//! which Curator takes as "keep the connection string".

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::peer::templated_address;

/// Where members are: their peer addresses (listed, or from the peer
/// template) and their ZooKeeper client addresses (from the template).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnsembleAddresses {
    /// Peer addresses given by `--peers` and `--observers`.
    pub peers: BTreeMap<u64, String>,
    pub peer_template: Option<String>,
    /// `--zookeeper-address-template`, with `{id}` or `{ordinal}`.
    pub zookeeper_template: String,
}

impl EnsembleAddresses {
    /// The peer address the ensemble dials member `id` at: listed, or
    /// from the template.
    pub fn peer_address(&self, id: u64) -> Option<String> {
        self.peers.get(&id).cloned().or_else(|| {
            self.peer_template
                .as_ref()
                .map(|t| templated_address(t, id))
        })
    }

    /// The text of `/zookeeper/config` for the committed membership
    /// committed at `slot`.
    pub fn render(&self, voters: &[u64], observers: &[u64], slot: u64) -> String {
        let mut members: Vec<(u64, &str)> = voters
            .iter()
            .map(|id| (*id, "participant"))
            .chain(observers.iter().map(|id| (*id, "observer")))
            .collect();
        members.sort_unstable();
        let mut out = String::new();
        for (id, role) in members {
            let client = templated_address(&self.zookeeper_template, id);
            // ZooKeeper wants two quorum ports; Synod has one peer port.
            // Clients do not use them, but parsers need host:port:port.
            let peer = self.peer_address(id).unwrap_or_else(|| client.clone());
            let _ = writeln!(out, "server.{id}={peer}:{}:{role};{client}", port_of(&peer));
        }
        let _ = write!(out, "version={slot:x}");
        out
    }
}

/// The port of `host:port` (the part after the last colon).
fn port_of(address: &str) -> &str {
    address.rsplit_once(':').map_or("0", |(_, port)| port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_in_zookeepers_format() {
        let addresses = EnsembleAddresses {
            peers: BTreeMap::from([(1, "10.0.0.1:7100".to_owned())]),
            peer_template: Some("synod-{ordinal}.synod-peers.prod.svc:7100".into()),
            zookeeper_template: "synod-{ordinal}.synod-peers.prod.svc:2181".into(),
        };
        assert_eq!(
            addresses.render(&[2, 1], &[4], 0x1f),
            "server.1=10.0.0.1:7100:7100:participant;synod-0.synod-peers.prod.svc:2181\n\
             server.2=synod-1.synod-peers.prod.svc:7100:7100:participant;synod-1.synod-peers.prod.svc:2181\n\
             server.4=synod-3.synod-peers.prod.svc:7100:7100:observer;synod-3.synod-peers.prod.svc:2181\n\
             version=1f"
        );
    }
}
