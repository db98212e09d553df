//! Faults a test injects into a running [`Ensemble`], and the view of the
//! ensemble it needs while they last: a node's process paused and resumed
//! (SIGSTOP/SIGCONT, as a long GC or VM pause would), and a set of peer
//! links cut. Each fault is a guard that undoes itself when dropped, so a
//! test that fails half way leaves no stopped process or cut link behind
//! for the harness's own teardown to trip over.
//!
//! Who leads is asked through the Admin API `Status`, with short timeouts:
//! a paused node accepts connections (its kernel does) but never answers,
//! and a poll must not hang on it. The mixed nemesis run with a history
//! check (`synod_core::lincheck`) is meant to build on these pieces.

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
        let mut links = Vec::new();
        for &x in a {
            for &y in b.iter().filter(|&&y| y != x) {
                links.extend([(x, y), (y, x)]);
            }
        }
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
    let mut admin = AdminClient::new(channel(ensemble.client_addr(id))?);
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
