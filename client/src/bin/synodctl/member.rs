//! `synodctl member`: the membership as the leader sees it, and changes of
//! one member at a time that return only once committed. A change may be
//! sent to any member (a follower forwards it to the leader); a member
//! already where the change would put it is reported as already done, so
//! a command can be run again after a failure or a timeout.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde_json::{Value, json};
use synod_proto::v1 as pb;
use synod_proto::v1::admin_client::AdminClient;
use tonic::transport::Channel;

use super::admin::endpoint_list;
use super::{Cli, Out};

#[derive(Debug, Subcommand)]
pub enum Action {
    /// Print every member: role, commit index and lag (from the leader)
    List,
    /// Add node ID: as an observer, then wait until it has caught up with
    /// the leader's log and promote it to voter (--observer: stop after
    /// adding it as an observer)
    Add {
        #[arg(value_name = "ID")]
        node_id: u64,
        /// Add as a non-voting observer only
        #[arg(long)]
        observer: bool,
        /// How long the new member may take to catch up before promotion
        #[arg(long, default_value = "5m", value_parser = super::parse_duration)]
        catch_up_timeout: Duration,
    },
    /// Promote observer ID to voter (it must have caught up)
    Promote {
        #[arg(value_name = "ID")]
        node_id: u64,
    },
    /// Demote voter ID to observer
    Demote {
        #[arg(value_name = "ID")]
        node_id: u64,
    },
    /// Remove member ID (a voter or an observer)
    Remove {
        #[arg(value_name = "ID")]
        node_id: u64,
    },
}

/// A call that waits for a commit needs longer than the wait it asks for.
const CALL_MARGIN: Duration = Duration::from_secs(5);

/// How often a catching-up member's progress is looked at.
const CATCH_UP_POLL: Duration = Duration::from_millis(200);

pub async fn run(cli: &Cli, action: &Action) -> Result<()> {
    let endpoints = endpoint_list(cli)?;
    let mut out = Out::new(cli.json);
    match *action {
        Action::List => list(cli, &endpoints, &mut out).await,
        Action::Add {
            node_id,
            observer,
            catch_up_timeout,
        } => {
            let added = match change(cli, &endpoints, pb::MembershipChange::AddObserver, node_id)
                .await
            {
                Ok(added) => added,
                // Already a voter: the add as a whole is done.
                Err(err) if !observer && format!("{err:#}").contains("already a voter") => {
                    let done = already_a_voter(cli, &endpoints).await;
                    return report(&mut out, pb::MembershipChange::PromoteVoter, node_id, &done);
                }
                Err(err) => return Err(err),
            };
            report(&mut out, pb::MembershipChange::AddObserver, node_id, &added)?;
            if observer {
                return Ok(());
            }
            caught_up(cli, &endpoints, node_id, catch_up_timeout).await?;
            let promoted = promote_when_caught_up(cli, &endpoints, node_id, catch_up_timeout)
                .await
                .with_context(|| format!("node {node_id} was added as an observer"))?;
            report(
                &mut out,
                pb::MembershipChange::PromoteVoter,
                node_id,
                &promoted,
            )
        }
        Action::Promote { node_id } => {
            let reply =
                change(cli, &endpoints, pb::MembershipChange::PromoteVoter, node_id).await?;
            report(
                &mut out,
                pb::MembershipChange::PromoteVoter,
                node_id,
                &reply,
            )
        }
        Action::Demote { node_id } => {
            let reply = change(cli, &endpoints, pb::MembershipChange::DemoteVoter, node_id).await?;
            report(&mut out, pb::MembershipChange::DemoteVoter, node_id, &reply)
        }
        Action::Remove { node_id } => {
            let reply =
                change(cli, &endpoints, pb::MembershipChange::RemoveMember, node_id).await?;
            report(
                &mut out,
                pb::MembershipChange::RemoveMember,
                node_id,
                &reply,
            )
        }
    }
}

async fn connect(endpoint: &str, cli: &Cli, call: Duration) -> Result<AdminClient<Channel>> {
    let dial = tonic::transport::Endpoint::from_shared(endpoint.to_owned())?
        .connect_timeout(cli.timeout.min(Duration::from_secs(2)))
        .timeout(call);
    let channel = synod_client::connect::channel(dial, cli.tls.load()?.as_ref())
        .await
        .with_context(|| format!("{endpoint} is unreachable"))?;
    Ok(AdminClient::new(channel))
}

/// Sends one change, waiting for its commit, to the first endpoint that
/// answers. Only an unreachable endpoint is passed over: a refusal is the
/// ensemble's answer and is reported as is.
async fn change(
    cli: &Cli,
    endpoints: &[String],
    change: pb::MembershipChange,
    node_id: u64,
) -> Result<pb::ChangeMembershipResponse> {
    let request = pb::ChangeMembershipRequest {
        change: change as i32,
        node_id,
        wait_for_commit: true,
        timeout_ms: u64::try_from(cli.timeout.as_millis()).unwrap_or(u64::MAX),
    };
    let mut last_error = None;
    for endpoint in endpoints {
        let mut api = match connect(endpoint, cli, cli.timeout + CALL_MARGIN).await {
            Ok(api) => api,
            Err(err) => {
                tracing::debug!("{err:#}");
                last_error = Some(err);
                continue;
            }
        };
        match api.change_membership(request).await {
            Ok(reply) => return Ok(reply.into_inner()),
            // The node is going away, cannot reach the leader or knows
            // none: another member may.
            Err(status) if passed_over(&status) => {
                tracing::debug!(endpoint, "unavailable: {}", status.message());
                last_error = Some(anyhow::anyhow!("{endpoint}: {}", status.message()));
            }
            Err(status) => bail!("{endpoint}: {}", status.message()),
        }
    }
    Err(last_error
        .unwrap_or_else(|| anyhow::anyhow!("no endpoints"))
        .context("no endpoint took the membership change"))
}

/// The answer for `add` of a member that is already a voter, with the
/// membership as the leader (or else any endpoint) sees it.
async fn already_a_voter(cli: &Cli, endpoints: &[String]) -> pb::ChangeMembershipResponse {
    let views = statuses(cli, endpoints).await;
    let view = views
        .iter()
        .map(|(_, s)| s)
        .find(|s| s.role == pb::Role::Leader as i32)
        .or_else(|| views.first().map(|(_, s)| s));
    let (slot, voters, observers) = view.map_or((0, Vec::new(), Vec::new()), |s| {
        let of = |voter: bool| {
            s.members
                .iter()
                .filter(|m| m.voter == voter)
                .map(|m| m.id)
                .collect::<Vec<_>>()
        };
        (s.commit_index, of(true), of(false))
    });
    pb::ChangeMembershipResponse {
        slot,
        voters,
        observers,
        already_done: true,
        committed: true,
    }
}

/// Whether another endpoint may do better than this answer: the node is
/// unavailable or knows no leader to forward to (or the leader moved while
/// the call was forwarded).
fn passed_over(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unavailable
        || status.code() == tonic::Code::FailedPrecondition
            && status.message().contains("not the leader")
}

/// Every reachable endpoint's status, in the order given.
async fn statuses(cli: &Cli, endpoints: &[String]) -> Vec<(String, pb::StatusResponse)> {
    let mut views = Vec::new();
    for endpoint in endpoints {
        let Ok(mut api) = connect(endpoint, cli, cli.timeout).await else {
            continue;
        };
        match api.status(pb::StatusRequest {}).await {
            Ok(reply) => views.push((endpoint.clone(), reply.into_inner())),
            Err(status) => tracing::debug!(endpoint, "status: {}", status.message()),
        }
    }
    views
}

/// The leader's status if an endpoint is the leader: only it knows every
/// member's progress.
async fn leader_status(cli: &Cli, endpoints: &[String]) -> Option<pb::StatusResponse> {
    statuses(cli, endpoints)
        .await
        .into_iter()
        .map(|(_, status)| status)
        .find(|s| s.role == pb::Role::Leader as i32)
}

/// Waits until the leader sees `node_id` at the commit index the leader had
/// when the wait began, so it is promoted with (almost) nothing left to
/// fetch. Without the leader among the endpoints there is nothing to watch;
/// the promotion then retries until the leader finds it caught up.
async fn caught_up(cli: &Cli, endpoints: &[String], node_id: u64, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    let Some(first) = leader_status(cli, endpoints).await else {
        return Ok(());
    };
    let target = first.commit_index;
    loop {
        if let Some(view) = leader_status(cli, endpoints).await {
            let member = view.members.iter().find(|m| m.id == node_id);
            if member.is_some_and(|m| m.commit_index >= target) {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "node {node_id} did not catch up with the leader's commit index {target} within {limit:?}; \
                 is it running and reachable? (`synodctl member promote {node_id}` once it is)"
            );
        }
        tokio::time::sleep(CATCH_UP_POLL).await;
    }
}

/// Promotes `node_id`, retrying while the leader finds it not yet caught
/// up or still committing the addition.
async fn promote_when_caught_up(
    cli: &Cli,
    endpoints: &[String],
    node_id: u64,
    limit: Duration,
) -> Result<pb::ChangeMembershipResponse> {
    let deadline = Instant::now() + limit;
    loop {
        match change(cli, endpoints, pb::MembershipChange::PromoteVoter, node_id).await {
            Ok(reply) => return Ok(reply),
            Err(err) if Instant::now() < deadline && retryable(&err) => {
                tracing::debug!("promotion not yet possible: {err:#}");
                tokio::time::sleep(CATCH_UP_POLL).await;
            }
            Err(err) => return Err(err),
        }
    }
}

/// Refusals that pass by themselves: the member has not caught up, or a
/// change (the addition) is still being committed.
fn retryable(err: &anyhow::Error) -> bool {
    let text = format!("{err:#}");
    [
        "caught-up observer",
        "still being committed",
        "just elected",
    ]
    .iter()
    .any(|m| text.contains(m))
}

fn change_name(change: pb::MembershipChange) -> &'static str {
    match change {
        pb::MembershipChange::AddObserver => "add_observer",
        pb::MembershipChange::PromoteVoter => "promote_voter",
        pb::MembershipChange::DemoteVoter => "demote_voter",
        pb::MembershipChange::RemoveMember => "remove_member",
        pb::MembershipChange::Unspecified => "unspecified",
    }
}

fn report(
    out: &mut Out,
    change: pb::MembershipChange,
    node_id: u64,
    reply: &pb::ChangeMembershipResponse,
) -> Result<()> {
    if out.json {
        return out.json(&json!({
            "change": change_name(change),
            "node_id": node_id,
            "slot": reply.slot,
            "already_done": reply.already_done,
            "committed": reply.committed,
            "voters": reply.voters,
            "observers": reply.observers,
        }));
    }
    let what = match change {
        pb::MembershipChange::AddObserver => "added as an observer",
        pb::MembershipChange::PromoteVoter => "promoted to voter",
        pb::MembershipChange::DemoteVoter => "demoted to observer",
        _ => "removed",
    };
    let outcome = if reply.already_done {
        format!("node {node_id} already {what}: nothing to do")
    } else {
        format!("node {node_id} {what} (committed at slot {})", reply.slot)
    };
    out.line(&format!(
        "{outcome}; voters {}; observers {}",
        ids(&reply.voters),
        ids(&reply.observers)
    ))
}

fn ids(ids: &[u64]) -> String {
    if ids.is_empty() {
        return "none".into();
    }
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    sorted
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Prints the membership from the leader's view when an endpoint is the
/// leader (with each member's progress), else from the first that answers.
async fn list(cli: &Cli, endpoints: &[String], out: &mut Out) -> Result<()> {
    let views = statuses(cli, endpoints).await;
    let Some((endpoint, view)) = views
        .iter()
        .find(|(_, s)| s.role == pb::Role::Leader as i32)
        .or_else(|| views.first())
    else {
        bail!("no endpoint reachable");
    };
    let from_leader = view.role == pb::Role::Leader as i32;
    let mut members = view.members.clone();
    members.sort_by_key(|m| m.id);
    if out.json {
        let members: Vec<Value> = members
            .iter()
            .map(|m| {
                json!({
                    "id": m.id,
                    "role": if m.voter { "voter" } else { "observer" },
                    "leader": m.id == view.leader_id,
                    "commit_index": from_leader.then_some(m.commit_index),
                    "lag": from_leader.then_some(m.lag),
                    "last_heard_ms": from_leader.then_some(m.last_heard_ms),
                    "incarnation_id": crate::admin::hex_id(m.incarnation_id),
                    "foreign_incarnation": from_leader.then_some(m.foreign_incarnation),
                })
            })
            .collect();
        return out.json(&json!({
            "endpoint": endpoint,
            "from_leader": from_leader,
            "leader_id": view.leader_id,
            "commit_index": view.commit_index,
            "membership_change_pending": view.membership_change_pending,
            "members": members,
        }));
    }
    out.line(&format!(
        "{:<6} {:<9} {:>12} {:>8} {:>10}",
        "ID", "ROLE", "COMMIT", "LAG", "HEARD"
    ))?;
    for m in &members {
        let role = match (m.voter, m.id == view.leader_id) {
            (true, true) => "leader",
            (true, false) => "voter",
            (false, _) => "observer",
        };
        let (commit, lag, heard) = if from_leader {
            (
                m.commit_index.to_string(),
                m.lag.to_string(),
                format!("{}ms", m.last_heard_ms),
            )
        } else {
            ("-".into(), "-".into(), "-".into())
        };
        let warning = if from_leader && m.foreign_incarnation {
            "  wiped: another incarnation; remove and re-add it"
        } else {
            ""
        };
        out.line(&format!(
            "{:<6} {role:<9} {commit:>12} {lag:>8} {heard:>10}{warning}",
            m.id
        ))?;
    }
    if view.membership_change_pending {
        out.line("(a membership change is pending)")?;
    }
    if !from_leader {
        out.line(&format!(
            "(from {endpoint}, not the leader: progress is known at the leader only)"
        ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::Command;

    fn action(args: &[&str]) -> Option<Action> {
        let cli = Cli::try_parse_from(args).ok()?;
        match cli.command {
            Command::Member { action } => Some(action),
            _ => None,
        }
    }

    #[test]
    fn member_commands_parse() {
        assert!(matches!(
            action(&["synodctl", "member", "add", "4", "--observer"]),
            Some(Action::Add {
                node_id: 4,
                observer: true,
                ..
            })
        ));
        assert!(matches!(
            action(&["synodctl", "--json", "member", "add", "5"]),
            Some(Action::Add {
                node_id: 5,
                observer: false,
                ..
            })
        ));
        assert!(matches!(
            action(&["synodctl", "member", "list"]),
            Some(Action::List)
        ));
        assert!(matches!(
            action(&["synodctl", "member", "remove", "2"]),
            Some(Action::Remove { node_id: 2 })
        ));
        assert!(action(&["synodctl", "member", "promote"]).is_none());
        assert!(action(&["synodctl", "member", "demote", "x"]).is_none());
    }

    #[test]
    fn only_passing_refusals_are_retried() {
        let retry = |text: &str| retryable(&anyhow::anyhow!("{text}"));
        assert!(retry(
            "h: node 4 must be a caught-up observer before it can become a voter"
        ));
        assert!(retry(
            "h: node 1 (the leader) refused: a membership change is still being committed"
        ));
        assert!(!retry(
            "h: node 9 is not a member; add it as an observer first"
        ));
    }

    #[test]
    fn endpoints_without_a_leader_are_passed_over() {
        use tonic::{Code, Status};
        assert!(passed_over(&Status::unavailable("shutting down")));
        assert!(passed_over(&Status::failed_precondition(
            "not the leader; the leader is unknown"
        )));
        assert!(!passed_over(&Status::failed_precondition(
            "node 9 is not a member; add it as an observer first"
        )));
        assert!(!passed_over(&Status::new(Code::DeadlineExceeded, "late")));
    }

    #[test]
    fn id_lists_are_sorted() {
        assert_eq!(ids(&[3, 1, 2]), "1,2,3");
        assert_eq!(ids(&[]), "none");
    }
}
