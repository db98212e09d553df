//! Faults a test injects into a running [`Ensemble`], and the view of the
//! ensemble it needs while they last: a node's process paused and resumed
//! (SIGSTOP/SIGCONT, as a long GC or VM pause would), and a set of peer
//! links cut. Each fault is a guard that undoes itself when dropped, so a
//! test that fails half way leaves no stopped process or cut link behind
//! for the harness's own teardown to trip over.
//!
//! Who leads is asked through the Admin API `Status`, with short timeouts:
//! a paused node accepts connections (its kernel does) but never answers,
//! and a poll must not hang on it.
//!
//! [`Faults`] keeps the books of a nemesis that lets faults overlap
//! (pauses, crashes with restarts, links cut, some of them twice): it
//! knows which nodes are down and how many faults hold each link cut, so
//! undoing one fault never undoes another, and [`Faults::heal_all`]
//! brings the whole ensemble back. The mixed nemesis run with a history
//! check (`tests/tests/nemesis.rs`) is built on these pieces.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use synod_proto::v1 as pb;
use synod_proto::v1::admin_client::AdminClient;
use synod_proto::v1::coordination_client::CoordinationClient;
use tonic::transport::{Channel, Endpoint};

use crate::Ensemble;

/// How long one Admin `Status` call may take. A running node answers in
/// milliseconds; a paused one never does.
const STATUS_LIMIT: Duration = Duration::from_secs(2);

/// How long a signalled process may take to show the state the signal
/// puts it in.
const SIGNAL_LIMIT: Duration = Duration::from_secs(5);

/// Sends signal `name` ("STOP", "CONT", ...) to process `pid` with the
/// `kill` command, as the harness already does for SIGTERM: no new
/// dependency, and no unsafe code for `kill(2)`.
pub fn signal(pid: u32, name: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .context("cannot run kill")?;
    if !status.success() {
        bail!("kill -{name} {pid} failed with {status}");
    }
    Ok(())
}

/// Whether process `pid` is stopped by a signal now, from the state field
/// of `/proc/<pid>/stat`; `None` where there is no `/proc` to ask.
fn is_stopped(pid: u32) -> Option<bool> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ...": the name may hold spaces and parentheses, the
    // state is the first field after the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    let state = rest.trim_start().chars().next()?;
    Some(state == 'T')
}

/// Waits until `pid` is (or is no longer) stopped. Without `/proc` the
/// signal is trusted: it takes effect before `kill` returns in practice.
fn wait_stopped(pid: u32, stopped: bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + SIGNAL_LIMIT;
    loop {
        match is_stopped(pid) {
            None => return Ok(()),
            Some(now) if now == stopped => return Ok(()),
            Some(_) => {}
        }
        if Instant::now() >= deadline {
            let want = if stopped { "stopped" } else { "running" };
            bail!("process {pid} was not {want} within {SIGNAL_LIMIT:?} of the signal");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A node whose process is stopped with SIGSTOP: it keeps its sockets, so
/// peers and clients can still connect and write into its kernel buffers,
/// but it runs no code, and its timers see the pause only once it resumes.
/// Resumed with SIGCONT by [`Paused::resume`] or when dropped.
#[derive(Debug)]
pub struct Paused {
    id: usize,
    pid: u32,
    resumed: bool,
}

impl Paused {
    /// Stops node `id` of `ensemble` and returns once the process is
    /// stopped. Blocking: call it from `block_in_place` in async tests.
    pub fn pause(ensemble: &Ensemble, id: usize) -> anyhow::Result<Paused> {
        let pid = ensemble.node(id).pid();
        signal(pid, "STOP").with_context(|| format!("pausing node {id}"))?;
        // From here on the guard resumes the process, whatever fails.
        let paused = Paused {
            id,
            pid,
            resumed: false,
        };
        wait_stopped(pid, true).with_context(|| format!("pausing node {id}"))?;
        Ok(paused)
    }

    /// The paused node's id.
    pub fn id(&self) -> usize {
        self.id
    }

    /// Resumes the process and returns once it runs again.
    pub fn resume(mut self) -> anyhow::Result<()> {
        self.resumed = true;
        signal(self.pid, "CONT").with_context(|| format!("resuming node {}", self.id))?;
        wait_stopped(self.pid, false).with_context(|| format!("resuming node {}", self.id))
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        if !self.resumed {
            // A test failing while the node is paused: let it run again, so
            // that it dies like the others when the ensemble is dropped.
            let _ = signal(self.pid, "CONT");
        }
    }
}

/// A set of directed peer links of a proxied ensemble, cut; healed by
/// [`Cut::heal`] or when dropped. Only the links this guard cut are healed,
/// so several cuts can overlap and be undone one by one.
#[derive(Debug)]
pub struct Cut<'a> {
    ensemble: &'a Ensemble,
    links: Vec<(usize, usize)>,
}

impl<'a> Cut<'a> {
    /// Cuts every link between a node of `a` and a node of `b`, both ways.
    /// When this returns no byte passes them any more. Panics unless the
    /// ensemble was started with [`Ensemble::start_proxied`].
    pub fn between(ensemble: &'a Ensemble, a: &[usize], b: &[usize]) -> Cut<'a> {
        let links = links_between(a, b);
        for &(from, to) in &links {
            ensemble.link(from, to).cut();
        }
        Cut { ensemble, links }
    }

    /// Cuts node `id` off from every other node, both ways; its client and
    /// HTTP ports stay reachable.
    pub fn isolate(ensemble: &'a Ensemble, id: usize) -> Cut<'a> {
        let others: Vec<usize> = ensemble.ids().into_iter().filter(|&o| o != id).collect();
        Cut::between(ensemble, &[id], &others)
    }

    /// The directed links this cut holds, (from, to).
    pub fn links(&self) -> &[(usize, usize)] {
        &self.links
    }

    /// Heals the links of this cut (the nodes reconnect by themselves).
    pub fn heal(self) {
        drop(self);
    }
}

impl Drop for Cut<'_> {
    fn drop(&mut self) {
        for &(from, to) in &self.links {
            self.ensemble.link(from, to).heal();
        }
    }
}

/// A lazy gRPC channel to `addr`: made without a round trip, so it can be
/// made for a node that is down or paused. It sets no per-call timeout;
/// callers bound each call themselves (`tokio::time::timeout`), since some
/// calls are meant to wait for a paused node.
pub fn channel(addr: SocketAddr) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))
        .context("endpoint URI")?
        .connect_timeout(Duration::from_secs(2))
        .connect_lazy())
}

/// A client of the Coordination API of the node at `addr`; see [`channel`].
pub fn coordination(addr: SocketAddr) -> anyhow::Result<CoordinationClient<Channel>> {
    Ok(CoordinationClient::new(channel(addr)?))
}

/// Node `id`'s view of the ensemble from Admin `Status`, or why there is
/// none within a short limit (a paused or dead node has none).
pub async fn status(ensemble: &Ensemble, id: usize) -> anyhow::Result<pb::StatusResponse> {
    let mut admin = AdminClient::new(channel(ensemble.admin_addr(id))?);
    match tokio::time::timeout(STATUS_LIMIT, admin.status(pb::StatusRequest {})).await {
        Ok(Ok(reply)) => Ok(reply.into_inner()),
        Ok(Err(status)) => bail!("node {id}: Status failed: {status}"),
        Err(_) => bail!("node {id}: Status did not answer within {STATUS_LIMIT:?}"),
    }
}

/// Waits until the nodes `among` agree on a leader that is one of them:
/// it says it leads, and every other node of `among` names it. Nodes
/// outside `among` (a paused old leader, say) are not asked. Fails with
/// the last views when that does not happen within `limit`.
pub async fn wait_leader(
    ensemble: &Ensemble,
    among: &[usize],
    limit: Duration,
) -> anyhow::Result<usize> {
    let deadline = Instant::now() + limit;
    loop {
        let mut views = Vec::with_capacity(among.len());
        for &id in among {
            views.push((id, status(ensemble, id).await));
        }
        let leading: Vec<usize> = views
            .iter()
            .filter(|(_, view)| {
                view.as_ref()
                    .is_ok_and(|s| s.role == pb::Role::Leader as i32)
            })
            .map(|(id, _)| *id)
            .collect();
        if let [leader] = leading[..] {
            let agreed = views.iter().all(|(_, view)| {
                view.as_ref()
                    .is_ok_and(|s| usize::try_from(s.leader_id).ok() == Some(leader))
            });
            if agreed {
                return Ok(leader);
            }
        }
        if Instant::now() >= deadline {
            let detail: Vec<String> = views
                .iter()
                .map(|(id, view)| match view {
                    Ok(s) => format!(
                        "node {id}: role {:?}, leader {}, commit {}",
                        pb::Role::try_from(s.role).unwrap_or(pb::Role::Unspecified),
                        s.leader_id,
                        s.commit_index
                    ),
                    Err(error) => format!("{error:#}"),
                })
                .collect();
            bail!(
                "nodes {among:?} did not agree on a leader among them within {limit:?}: {}",
                detail.join("; ")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every directed link between a node of `a` and a node of `b`, both ways,
/// as [`Cut::between`] cuts them.
pub fn links_between(a: &[usize], b: &[usize]) -> Vec<(usize, usize)> {
    let mut links = Vec::new();
    for &x in a {
        for &y in b.iter().filter(|&&y| y != x) {
            links.extend([(x, y), (y, x)]);
        }
    }
    links
}

/// The faults a nemesis holds on an ensemble now, when several may
/// overlap. Paused processes are held by their [`Paused`] guards (resumed
/// when this is dropped); killed nodes are remembered for restart; every
/// directed link carries a count of the faults that cut it, and is healed
/// only when the last of them is undone.
///
/// It holds no borrow of the ensemble, so a test can kill and restart
/// nodes (which needs `&mut Ensemble`) while links are cut. Links still
/// cut when it is dropped stay cut until the ensemble (and with it every
/// proxy) is dropped; [`Faults::heal_all`] undoes everything.
///
/// The blocking methods (signals, process start) must run inside
/// `block_in_place` in async tests.
#[derive(Debug, Default)]
pub struct Faults {
    paused: BTreeMap<usize, Paused>,
    killed: BTreeSet<usize>,
    cut: BTreeMap<(usize, usize), usize>,
}

impl Faults {
    pub fn new() -> Faults {
        Faults::default()
    }

    /// Whether node `id` is paused or killed now.
    pub fn is_down(&self, id: usize) -> bool {
        self.paused.contains_key(&id) || self.killed.contains(&id)
    }

    /// The nodes paused or killed now.
    pub fn down(&self) -> Vec<usize> {
        let mut down: Vec<usize> = self.paused.keys().chain(&self.killed).copied().collect();
        down.sort_unstable();
        down
    }

    /// Stops node `id` with SIGSTOP; see [`Paused::pause`]. Fails if it
    /// is already paused or killed: one process fault per node at a time.
    pub fn pause(&mut self, ensemble: &Ensemble, id: usize) -> anyhow::Result<()> {
        if self.is_down(id) {
            bail!("node {id} is already down");
        }
        let paused = Paused::pause(ensemble, id)?;
        self.paused.insert(id, paused);
        Ok(())
    }

    /// Resumes node `id` if this paused it.
    pub fn resume(&mut self, id: usize) -> anyhow::Result<()> {
        match self.paused.remove(&id) {
            Some(paused) => paused.resume(),
            None => Ok(()),
        }
    }

    /// Kills node `id` with SIGKILL, as a crash would. Fails if it is
    /// already paused or killed.
    pub fn kill(&mut self, ensemble: &mut Ensemble, id: usize) -> anyhow::Result<()> {
        if self.is_down(id) {
            bail!("node {id} is already down");
        }
        ensemble.kill(id)?;
        self.killed.insert(id);
        Ok(())
    }

    /// Restarts node `id` (same ports, data directory and flags) if this
    /// killed it, and waits until it accepts clients.
    pub fn restart(&mut self, ensemble: &mut Ensemble, id: usize) -> anyhow::Result<()> {
        if self.killed.remove(&id) {
            ensemble
                .restart(id)
                .with_context(|| format!("restarting node {id}"))?;
        }
        Ok(())
    }

    /// Cuts the directed `links` (from, to), counting this fault on each.
    pub fn cut(&mut self, ensemble: &Ensemble, links: &[(usize, usize)]) {
        for &link in links {
            let count = self.cut.entry(link).or_insert(0);
            if *count == 0 {
                ensemble.link(link.0, link.1).cut();
            }
            *count += 1;
        }
    }

    /// Undoes one [`Faults::cut`] of `links`: each link is healed once no
    /// other fault holds it cut.
    pub fn heal(&mut self, ensemble: &Ensemble, links: &[(usize, usize)]) {
        for link in links {
            if let Some(count) = self.cut.get_mut(link) {
                *count -= 1;
                if *count == 0 {
                    self.cut.remove(link);
                    ensemble.link(link.0, link.1).heal();
                }
            }
        }
    }

    /// The directed links cut now.
    pub fn cut_links(&self) -> Vec<(usize, usize)> {
        self.cut.keys().copied().collect()
    }

    /// Undoes every fault: resumes the paused nodes, heals every link and
    /// restarts the killed nodes (all at once, so they can find a quorum).
    /// Tries everything before reporting the first failure.
    pub fn heal_all(&mut self, ensemble: &mut Ensemble) -> anyhow::Result<()> {
        let mut first_error = None;
        for (_, paused) in std::mem::take(&mut self.paused) {
            if let Err(error) = paused.resume() {
                first_error.get_or_insert(error);
            }
        }
        for ((from, to), _) in std::mem::take(&mut self.cut) {
            ensemble.link(from, to).heal();
        }
        let killed: Vec<usize> = std::mem::take(&mut self.killed).into_iter().collect();
        if !killed.is_empty()
            && let Err(error) = ensemble.restart_many(&killed)
        {
            first_error.get_or_insert(error);
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// The node that leads now in the view of the nodes `among`, from one
/// round of `Status` calls: the one that says it leads (the one with the
/// highest ballot, should an old leader not have noticed yet). `None`
/// while no node of `among` leads or none answers.
pub async fn leader_now(ensemble: &Ensemble, among: &[usize]) -> Option<usize> {
    let mut best: Option<((u64, u64), usize)> = None;
    for &id in among {
        if let Ok(s) = status(ensemble, id).await
            && s.role == pb::Role::Leader as i32
        {
            let ballot = (s.ballot_round, s.ballot_node);
            if best.is_none_or(|(b, _)| ballot > b) {
                best = Some((ballot, id));
            }
        }
    }
    best.map(|(_, id)| id)
}

/// Waits until every node of the ensemble answers `Status` and all agree:
/// exactly one says it leads, every node names it, and all have applied
/// the same log index, which no write has moved for one more round of
/// polls. Then every node's state is the same, and a non-linearizable read
/// on any node sees every write. Returns the views; fails with the last
/// ones when that does not happen within `limit`.
pub async fn wait_converged(
    ensemble: &Ensemble,
    limit: Duration,
) -> anyhow::Result<Vec<pb::StatusResponse>> {
    let deadline = Instant::now() + limit;
    let mut last_agreed: Option<u64> = None;
    loop {
        let mut views = Vec::with_capacity(ensemble.len());
        for id in ensemble.ids() {
            views.push((id, status(ensemble, id).await));
        }
        let agreed = agreed_index(&views);
        if agreed.is_some() && agreed == last_agreed {
            return Ok(views.into_iter().filter_map(|(_, v)| v.ok()).collect());
        }
        last_agreed = agreed;
        if Instant::now() >= deadline {
            let detail: Vec<String> = views
                .iter()
                .map(|(id, view)| match view {
                    Ok(s) => format!(
                        "node {id}: role {:?}, leader {}, commit {}, applied {}",
                        pb::Role::try_from(s.role).unwrap_or(pb::Role::Unspecified),
                        s.leader_id,
                        s.commit_index,
                        s.applied_index
                    ),
                    Err(error) => format!("{error:#}"),
                })
                .collect();
            bail!(
                "the nodes did not converge within {limit:?}: {}",
                detail.join("; ")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The applied index every node reports, if all answered, one leads and
/// all name it, and all have applied the same index.
fn agreed_index(views: &[(usize, anyhow::Result<pb::StatusResponse>)]) -> Option<u64> {
    let views: Vec<&pb::StatusResponse> = views
        .iter()
        .map(|(_, view)| view.as_ref().ok())
        .collect::<Option<_>>()?;
    let leaders: Vec<&&pb::StatusResponse> = views
        .iter()
        .filter(|s| s.role == pb::Role::Leader as i32)
        .collect();
    let [leader] = leaders[..] else {
        return None;
    };
    let applied = views.first()?.applied_index;
    views
        .iter()
        .all(|s| s.leader_id == leader.node_id && s.applied_index == applied)
        .then_some(applied)
}
