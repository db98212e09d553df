//! Several `synod serve` processes run as one replicated ensemble on
//! loopback: picks every node's client, HTTP and peer ports, builds each
//! node's `--peers` list, and keeps the ports, data directory and flags of
//! every node so it can be killed and restarted as the same member.
//!
//! Nodes are named by their node id, 1 to n, in every method. A proxied
//! ensemble routes each directed peer link i→j through its own [`Proxy`]
//! (node i's `--peers` entry for j points at the proxy), so a test can cut
//! any set of links to make a partition.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::{Proxy, TestNode, flag_value, free_addrs};

/// How long a started node may take to accept client connections.
const START_LIMIT: Duration = Duration::from_secs(30);

/// The cluster name the ensemble passes unless the caller's flags set one.
const CLUSTER: &str = "synod-test";

/// A running (or partly stopped) ensemble. Dropping it kills every node
/// and then every proxy.
#[derive(Debug)]
pub struct Ensemble {
    members: Vec<Member>,
    /// Directed peer links, (from, to) → the proxy node `from` dials for
    /// `to`. Empty unless started with [`Ensemble::start_proxied`].
    links: BTreeMap<(usize, usize), Proxy>,
    cluster: String,
}

#[derive(Debug)]
struct Member {
    id: usize,
    client: SocketAddr,
    http: SocketAddr,
    peer: SocketAddr,
    /// The ZooKeeper-protocol listener.
    zookeeper: SocketAddr,
    /// The Admin API's listener.
    admin: SocketAddr,
    data_dir: Option<PathBuf>,
    /// Every flag after the client and HTTP addresses, kept for restarts.
    args: Vec<String>,
    node: Option<TestNode>,
}

impl Member {
    fn spawn(&mut self) -> anyhow::Result<()> {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let node = TestNode::spawn(self.client, self.http, &args)
            .with_context(|| format!("node {}", self.id))?;
        self.node = Some(node);
        Ok(())
    }

    fn wait_accepting(&mut self, limit: Duration) -> anyhow::Result<()> {
        let id = self.id;
        self.node
            .as_mut()
            .with_context(|| format!("node {id} is not running"))?
            .wait_accepting(limit)
            .with_context(|| format!("node {id}"))
    }
}

/// Why starting failed, and whether new ports might help.
enum StartError {
    /// A node exited while starting; most often because a port picked for
    /// it was taken in between, so a new set of ports is worth a try.
    Exited(anyhow::Error),
    Other(anyhow::Error),
}

impl Ensemble {
    /// Starts `n` nodes, ids 1 to n, all voting members, with `extra` flags
    /// on every node and, when `data_root` is given, node i's data in
    /// `<data_root>/<i>`. Returns once every node accepts clients (which
    /// does not mean the ensemble has a leader: see
    /// [`Ensemble::wait_ready`]).
    pub fn start(n: usize, extra: &[&str], data_root: Option<&Path>) -> anyhow::Result<Ensemble> {
        Ensemble::start_inner(n, 0, extra, data_root, false)
    }

    /// Like [`Ensemble::start`] with `voters` voting members (ids 1 to
    /// `voters`) and `observers` non-voting ones after them, given to every
    /// node with `--observers`.
    pub fn start_with_observers(
        voters: usize,
        observers: usize,
        extra: &[&str],
        data_root: Option<&Path>,
    ) -> anyhow::Result<Ensemble> {
        Ensemble::start_inner(voters + observers, observers, extra, data_root, false)
    }

    /// Like [`Ensemble::start`], with every directed peer link i→j routed
    /// through its own proxy; see [`Ensemble::link`] and
    /// [`Ensemble::isolate`].
    pub fn start_proxied(
        n: usize,
        extra: &[&str],
        data_root: Option<&Path>,
    ) -> anyhow::Result<Ensemble> {
        Ensemble::start_inner(n, 0, extra, data_root, true)
    }

    fn start_inner(
        n: usize,
        observers: usize,
        extra: &[&str],
        data_root: Option<&Path>,
        proxied: bool,
    ) -> anyhow::Result<Ensemble> {
        if n <= observers {
            bail!("an ensemble has at least one voter");
        }
        let dirs: Vec<Option<PathBuf>> = (1..=n)
            .map(|id| data_root.map(|root| root.join(id.to_string())))
            .collect();
        // Only a directory this call creates may be wiped for a retry; one
        // that existed holds state the caller wants kept.
        let fresh = dirs.iter().flatten().all(|dir| !dir.exists());
        let mut last_error = None;
        for _attempt in 0..3 {
            match Ensemble::try_start(n, observers, extra, &dirs, proxied) {
                Ok(ensemble) => return Ok(ensemble),
                Err(StartError::Exited(error)) if fresh => {
                    for dir in dirs.iter().flatten() {
                        let _ = std::fs::remove_dir_all(dir);
                    }
                    last_error = Some(error);
                }
                Err(StartError::Exited(error) | StartError::Other(error)) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("the ensemble did not start")))
    }

    fn try_start(
        n: usize,
        observers: usize,
        extra: &[&str],
        dirs: &[Option<PathBuf>],
        proxied: bool,
    ) -> Result<Ensemble, StartError> {
        let addrs = free_addrs(5 * n).map_err(StartError::Other)?;
        let (clients, rest) = addrs.split_at(n);
        let (https, rest) = rest.split_at(n);
        let (admins, rest) = rest.split_at(n);
        let (peers, zookeepers) = rest.split_at(n);
        let mut links = BTreeMap::new();
        if proxied {
            for from in 1..=n {
                for to in (1..=n).filter(|&to| to != from) {
                    let proxy = Proxy::start(peers[to - 1]).map_err(StartError::Other)?;
                    links.insert((from, to), proxy);
                }
            }
        }
        let cluster = flag_value(extra, "--cluster").unwrap_or_else(|| CLUSTER.to_owned());
        let mut members = Vec::with_capacity(n);
        for id in 1..=n {
            // Node `id` reaches every other member at the proxy of the link,
            // if there is one; its own entry is where it really listens.
            let list = |ids: std::ops::RangeInclusive<usize>| {
                ids.map(|to| {
                    let addr = links.get(&(id, to)).map_or(peers[to - 1], Proxy::addr);
                    format!("{to}={addr}")
                })
                .collect::<Vec<_>>()
                .join(",")
            };
            let voters = n - observers;
            let mut args = vec![
                "--node-id".to_owned(),
                id.to_string(),
                "--peers".to_owned(),
                list(1..=voters),
                "--peer-addr".to_owned(),
                peers[id - 1].to_string(),
                "--zookeeper-addr".to_owned(),
                zookeepers[id - 1].to_string(),
            ];
            if flag_value(extra, "--admin-addr").is_none() {
                args.extend(["--admin-addr".to_owned(), admins[id - 1].to_string()]);
            }
            if observers > 0 {
                args.extend(["--observers".to_owned(), list(voters + 1..=n)]);
            }
            if flag_value(extra, "--cluster").is_none() {
                args.extend(["--cluster".to_owned(), cluster.clone()]);
            }
            let data_dir = dirs[id - 1].clone();
            if let Some(dir) = &data_dir {
                args.extend(["--data-dir".to_owned(), dir.display().to_string()]);
            }
            args.extend(extra.iter().map(|&flag| flag.to_owned()));
            members.push(Member {
                id,
                client: clients[id - 1],
                http: https[id - 1],
                peer: peers[id - 1],
                zookeeper: zookeepers[id - 1],
                admin: admins[id - 1],
                data_dir,
                args,
                node: None,
            });
        }
        let mut ensemble = Ensemble {
            members,
            links,
            cluster,
        };
        for member in &mut ensemble.members {
            member.spawn().map_err(StartError::Other)?;
        }
        for member in &mut ensemble.members {
            if let Err(error) = member.wait_accepting(START_LIMIT) {
                let exited = !member.node.as_mut().is_some_and(TestNode::is_running);
                return Err(if exited {
                    StartError::Exited(error)
                } else {
                    StartError::Other(error)
                });
            }
        }
        Ok(ensemble)
    }

    fn member(&self, id: usize) -> &Member {
        match id.checked_sub(1).and_then(|i| self.members.get(i)) {
            Some(member) => member,
            None => panic!(
                "no node {id} in an ensemble of {} (ids start at 1)",
                self.members.len()
            ),
        }
    }

    fn member_mut(&mut self, id: usize) -> &mut Member {
        let n = self.members.len();
        match id.checked_sub(1).and_then(|i| self.members.get_mut(i)) {
            Some(member) => member,
            None => panic!("no node {id} in an ensemble of {n} (ids start at 1)"),
        }
    }

    /// Number of members, running or not.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Every node id, 1 to n.
    pub fn ids(&self) -> Vec<usize> {
        (1..=self.members.len()).collect()
    }

    /// The ids of the nodes whose process runs now.
    pub fn running(&mut self) -> Vec<usize> {
        self.members
            .iter_mut()
            .filter_map(|m| {
                let running = m.node.as_mut().is_some_and(TestNode::is_running);
                running.then_some(m.id)
            })
            .collect()
    }

    pub fn is_running(&mut self, id: usize) -> bool {
        self.member_mut(id)
            .node
            .as_mut()
            .is_some_and(TestNode::is_running)
    }

    /// The cluster name every node was started with.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// Every node's client address, comma-separated, as clients take it.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| m.client.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Every node's ZooKeeper-protocol address, comma-separated: a
    /// ZooKeeper connection string.
    pub fn zookeeper_hosts(&self) -> String {
        self.members
            .iter()
            .map(|m| m.zookeeper.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `id`'s ZooKeeper-protocol address.
    pub fn zookeeper_addr(&self, id: usize) -> SocketAddr {
        self.member(id).zookeeper
    }

    /// Node `id`'s client address; it stays the same across restarts.
    pub fn client_addr(&self, id: usize) -> SocketAddr {
        self.member(id).client
    }

    /// Node `id`'s client address as a client endpoint string.
    pub fn endpoint(&self, id: usize) -> String {
        self.member(id).client.to_string()
    }

    /// Node `id`'s Admin API address; it stays the same across restarts.
    pub fn admin_addr(&self, id: usize) -> SocketAddr {
        self.member(id).admin
    }

    /// Every node's Admin API address, comma separated (for
    /// `synodctl --admin-endpoints`).
    pub fn admin_endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| m.admin.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn http_addr(&self, id: usize) -> SocketAddr {
        self.member(id).http
    }

    /// Where node `id` really listens for peers (not a proxy).
    pub fn peer_addr(&self, id: usize) -> SocketAddr {
        self.member(id).peer
    }

    pub fn data_dir(&self, id: usize) -> Option<&Path> {
        self.member(id).data_dir.as_deref()
    }

    /// The node whose client address `endpoint` names ("host:port" or
    /// "http://host:port", as the Rust client reports it).
    pub fn id_of_endpoint(&self, endpoint: &str) -> Option<usize> {
        let authority = endpoint
            .trim()
            .trim_start_matches("http://")
            .trim_end_matches('/');
        let addr: SocketAddr = authority.parse().ok()?;
        self.members.iter().find(|m| m.client == addr).map(|m| m.id)
    }

    /// The process of node `id`. Panics when it has been killed and not
    /// restarted.
    pub fn node(&self, id: usize) -> &TestNode {
        match &self.member(id).node {
            Some(node) => node,
            None => panic!("node {id} is not running"),
        }
    }

    /// Kills node `id` with SIGKILL, as a crash would, and waits for it.
    /// Killing a node that is not running does nothing.
    pub fn kill(&mut self, id: usize) -> anyhow::Result<()> {
        if let Some(mut node) = self.member_mut(id).node.take() {
            node.kill().with_context(|| format!("node {id}"))?;
        }
        Ok(())
    }

    /// Kills every running node, one right after the other.
    pub fn kill_all(&mut self) -> anyhow::Result<()> {
        for id in self.ids() {
            self.kill(id)?;
        }
        Ok(())
    }

    /// Stops node `id` with SIGTERM; true when it exited by itself within
    /// `limit` (it is killed otherwise).
    pub fn terminate(&mut self, id: usize, limit: Duration) -> anyhow::Result<bool> {
        match self.member_mut(id).node.take() {
            Some(mut node) => node.terminate(limit),
            None => Ok(true),
        }
    }

    /// Starts node `id` again with the same ports, data directory and
    /// flags (killing it first if it still runs) and waits until it accepts
    /// clients.
    pub fn restart(&mut self, id: usize) -> anyhow::Result<()> {
        self.restart_many(&[id])
    }

    /// Kills node `id`, deletes its data directory (a lost volume) and
    /// starts it again with `extra` flags added to its own, kept for later
    /// restarts; waits until it accepts clients.
    pub fn wipe_and_restart(&mut self, id: usize, extra: &[&str]) -> anyhow::Result<()> {
        self.kill(id)?;
        let member = self.member_mut(id);
        let dir = member
            .data_dir
            .clone()
            .with_context(|| format!("node {id} has no data directory to wipe"))?;
        std::fs::remove_dir_all(&dir).with_context(|| format!("wipe {}", dir.display()))?;
        member.args.extend(extra.iter().map(|&a| a.to_owned()));
        member.spawn()?;
        member.wait_accepting(START_LIMIT)
    }

    /// Restarts every node: all are started before any is waited for, so
    /// nodes that need a quorum to finish starting can find one.
    pub fn restart_all(&mut self) -> anyhow::Result<()> {
        self.restart_many(&self.ids())
    }

    /// Restarts the nodes `ids` as [`Ensemble::restart`] does, all started
    /// before any is waited for.
    pub fn restart_many(&mut self, ids: &[usize]) -> anyhow::Result<()> {
        for &id in ids {
            self.kill(id)?;
        }
        for &id in ids {
            self.member_mut(id).spawn()?;
        }
        for &id in ids {
            self.member_mut(id).wait_accepting(START_LIMIT)?;
        }
        Ok(())
    }

    /// The ids of the running nodes that say they lead now (`/metrics`
    /// `synod_is_leader 1`). More than one while an old leader has not yet
    /// noticed it was replaced.
    pub fn leaders(&self) -> Vec<usize> {
        self.members
            .iter()
            .filter_map(|m| {
                let node = m.node.as_ref()?;
                let value = node.metric("synod_is_leader").ok()??;
                (value == 1.0).then_some(m.id)
            })
            .collect()
    }

    /// Waits until exactly one running node says it leads and returns its
    /// id; `None` if that does not happen within `limit`.
    pub fn leader(&self, limit: Duration) -> Option<usize> {
        self.leader_among(&self.ids(), limit)
    }

    /// Waits until exactly one of `ids` says it leads and returns it;
    /// `None` if that does not happen within `limit`. Nodes outside `ids`
    /// (say, an old leader cut off in a minority) are not asked.
    pub fn leader_among(&self, ids: &[usize], limit: Duration) -> Option<usize> {
        let deadline = Instant::now() + limit;
        loop {
            let leaders: Vec<usize> = self
                .leaders()
                .into_iter()
                .filter(|id| ids.contains(id))
                .collect();
            if let [leader] = leaders[..] {
                return Some(leader);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until every running node answers `/readyz` with 200: it is in
    /// a configuration, knows a leader and has caught up.
    pub fn wait_ready(&self, limit: Duration) -> anyhow::Result<()> {
        let running: Vec<usize> = self
            .members
            .iter()
            .filter(|m| m.node.is_some())
            .map(|m| m.id)
            .collect();
        self.wait_nodes_ready(&running, limit)
    }

    /// Waits until each of the nodes `ids` answers `/readyz` with 200.
    pub fn wait_nodes_ready(&self, ids: &[usize], limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let unready: Vec<usize> = ids
                .iter()
                .copied()
                .filter(|&id| {
                    !self
                        .member(id)
                        .node
                        .as_ref()
                        .is_some_and(TestNode::is_ready)
                })
                .collect();
            if unready.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let detail: Vec<String> = unready
                    .iter()
                    .map(|&id| match &self.member(id).node {
                        None => format!("node {id}: not running"),
                        Some(node) => match node.http_get_within("/readyz", Duration::from_secs(2))
                        {
                            Ok((status, body)) => format!("node {id}: {status} {}", body.trim()),
                            Err(error) => format!("node {id}: {error:#}"),
                        },
                    })
                    .collect();
                bail!(
                    "not ready within {limit:?}: {}; leaders: {:?}",
                    detail.join("; "),
                    self.leaders()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The proxy on the link node `from` uses to reach node `to`. Panics
    /// unless the ensemble was started with [`Ensemble::start_proxied`].
    pub fn link(&self, from: usize, to: usize) -> &Proxy {
        match self.links.get(&(from, to)) {
            Some(proxy) => proxy,
            None => panic!("no proxied link {from}→{to}; use Ensemble::start_proxied"),
        }
    }

    /// Cuts every link between a node of `a` and a node of `b`, both ways.
    pub fn cut_between(&self, a: &[usize], b: &[usize]) {
        for &x in a {
            for &y in b.iter().filter(|&&y| y != x) {
                self.link(x, y).cut();
                self.link(y, x).cut();
            }
        }
    }

    /// Cuts node `id` off from every other node, both ways; its client and
    /// HTTP ports stay reachable.
    pub fn isolate(&self, id: usize) {
        let others: Vec<usize> = self.ids().into_iter().filter(|&o| o != id).collect();
        self.cut_between(&[id], &others);
    }

    /// Heals every link.
    pub fn heal_all(&self) {
        for proxy in self.links.values() {
            proxy.heal();
        }
    }
}

impl Drop for Ensemble {
    fn drop(&mut self) {
        // Nodes first, so none of them logs the proxies going away.
        for member in &mut self.members {
            member.node = None;
        }
        self.links.clear();
    }
}
