//! `synodctl status | transfer-leader | snapshot` and what every admin
//! command shares: the Admin API's endpoints (each node's own admin port,
//! not its client port), and what to say when over TLS a caller without an
//! admin certificate is turned away.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::{Cli, Command, DEFAULT_ADMIN_ENDPOINTS, Out};

/// The Admin endpoints: --admin-endpoints, SYNOD_ADMIN_ENDPOINTS or the
/// defaults.
pub(crate) fn endpoint_list(cli: &Cli) -> Result<Vec<String>> {
    let list = cli
        .admin_endpoints
        .as_deref()
        .unwrap_or(DEFAULT_ADMIN_ENDPOINTS);
    let endpoints = synod_client::parse_endpoints(list)?;
    if endpoints.is_empty() {
        bail!("no admin endpoints given");
    }
    Ok(endpoints)
}

/// A failed admin command, with what most often causes it: over TLS the
/// Admin API refuses a caller without a certificate from the admin CA,
/// which a TLS 1.3 client only learns from a broken connection.
pub(crate) fn hint(err: anyhow::Error, cli: &Cli) -> anyhow::Error {
    if cli.tls.without_client_cert() {
        err.context(
            "the Admin API takes only callers with a client certificate from the admin CA (--tls-cert, --tls-key)",
        )
    } else {
        err
    }
}

/// The admin commands talk to each endpoint's `Admin` service directly,
/// without a session.
pub(crate) async fn run(cli: &Cli) -> Result<()> {
    use synod_proto::v1::admin_client::AdminClient;
    let endpoints = endpoint_list(cli)?;
    let mut out = Out::new(cli.json);
    let tls = cli.tls.load()?;
    let mut reached = 0;
    let mut last_error = None;
    for endpoint in endpoints {
        // As the user would write it: the CA turns TLS on, not the scheme.
        let shown = if tls.is_some() {
            endpoint.replacen("http://", "https://", 1)
        } else {
            endpoint.clone()
        };
        let dial = tonic::transport::Endpoint::from_shared(endpoint.clone())?
            .connect_timeout(cli.timeout.min(Duration::from_secs(2)))
            .timeout(cli.timeout);
        let channel = match synod_client::connect::channel(dial, tls.as_ref()).await {
            Ok(channel) => channel,
            Err(err) => {
                tracing::debug!(endpoint, "unreachable: {err}");
                last_error = Some(anyhow::anyhow!("{shown}: {err}"));
                continue;
            }
        };
        reached += 1;
        let mut api = AdminClient::new(channel);
        match &cli.command {
            Command::Status => {
                let status = api
                    .status(synod_proto::v1::StatusRequest {})
                    .await
                    .with_context(|| format!("status of {shown}"))?
                    .into_inner();
                print_status(&mut out, &shown, &status)?;
            }
            Command::TransferLeader { node_id } => {
                match api
                    .transfer_leadership(synod_proto::v1::TransferLeadershipRequest {
                        node_id: *node_id,
                    })
                    .await
                {
                    Ok(_) => {
                        out.line(&format!("{shown}: leadership handed to node {node_id}"))?;
                        return Ok(());
                    }
                    Err(status) => {
                        last_error = Some(anyhow::anyhow!("{shown}: {}", status.message()))
                    }
                }
            }
            Command::Snapshot => {
                let taken = api
                    .take_snapshot(synod_proto::v1::TakeSnapshotRequest {})
                    .await
                    .with_context(|| format!("snapshot on {shown}"))?
                    .into_inner();
                if out.json {
                    out.json(&json!({ "endpoint": shown, "index": taken.index }))?;
                } else {
                    out.line(&format!("{shown}: snapshot at index {}", taken.index))?;
                }
            }
            _ => unreachable!("only admin commands reach here"),
        }
    }
    match (&cli.command, last_error) {
        (Command::TransferLeader { .. }, Some(err)) => {
            Err(err.context("no endpoint took the transfer"))
        }
        (_, Some(err)) if reached == 0 => Err(err.context("no endpoint reachable")),
        _ => Ok(()),
    }
}

fn print_status(
    out: &mut Out,
    endpoint: &str,
    status: &synod_proto::v1::StatusResponse,
) -> Result<()> {
    let role = synod_proto::v1::Role::try_from(status.role)
        .map(|r| r.as_str_name().trim_start_matches("ROLE_").to_lowercase())
        .unwrap_or_else(|_| "unknown".into());
    if out.json {
        let members: Vec<Value> = status
            .members
            .iter()
            .map(|m| {
                json!({
                    "id": m.id,
                    "voter": m.voter,
                    "commit_index": m.commit_index,
                    "lag": m.lag,
                    "last_heard_ms": m.last_heard_ms,
                    "incarnation_id": hex_id(m.incarnation_id),
                    "foreign_incarnation": m.foreign_incarnation,
                })
            })
            .collect();
        return out.json(&json!({
            "endpoint": endpoint,
            "node_id": status.node_id,
            "role": role,
            "leader_id": status.leader_id,
            "ballot": [status.ballot_round, status.ballot_node],
            "commit_index": status.commit_index,
            "applied_index": status.applied_index,
            "log": [status.log_start, status.log_last],
            "snapshot_index": status.snapshot_index,
            "ready": status.not_ready.is_empty(),
            "not_ready": status.not_ready,
            "members": members,
            "version": status.version,
            "cluster": status.cluster,
            "membership_change_pending": status.membership_change_pending,
            "leader_commit_index": status.leader_commit_index,
            // Hex strings, as the text output, the logs and the metrics
            // show them (JSON numbers lose precision above 2^53).
            "cluster_id": hex_id(status.cluster_id),
            "incarnation_id": hex_id(status.incarnation_id),
            "awaiting_readd": status.awaiting_readd,
        }));
    }
    let ready = if status.not_ready.is_empty() {
        "ready".to_owned()
    } else {
        format!("not ready: {}", status.not_ready)
    };
    // A follower's own estimate of its lag, from the leader's commit index
    // as it last heard it.
    let behind = status
        .leader_commit_index
        .saturating_sub(status.commit_index);
    let behind = if role != "leader" && behind > 0 {
        format!(" (leader at {})", status.leader_commit_index)
    } else {
        String::new()
    };
    let pending = if status.membership_change_pending {
        "  membership change pending"
    } else {
        ""
    };
    let cluster_id = if status.cluster_id == 0 {
        "none yet".to_owned()
    } else {
        format!("{:016x}", status.cluster_id)
    };
    out.line(&format!(
        "{endpoint}  node {}  {role}  leader {}  commit {}{behind}  applied {}  log {}..{}  snapshot {}  {ready}{pending}  [{} id {cluster_id}  incarnation {:016x}  v{}]",
        status.node_id,
        status.leader_id,
        status.commit_index,
        status.applied_index,
        status.log_start,
        status.log_last,
        status.snapshot_index,
        status.cluster,
        status.incarnation_id,
        status.version,
    ))?;
    if role == "leader" {
        for m in &status.members {
            out.line(&format!(
                "    member {} {}  commit {}  lag {}  heard {} ms ago{}",
                m.id,
                if m.voter { "voter" } else { "observer" },
                m.commit_index,
                m.lag,
                m.last_heard_ms,
                if m.foreign_incarnation {
                    "  (wiped: another incarnation; remove and re-add it)"
                } else {
                    ""
                }
            ))?;
        }
    }
    Ok(())
}

/// A cluster or incarnation id for `--json`: 16 hex digits, or null for
/// "not known yet" (0).
pub(crate) fn hex_id(id: u64) -> serde_json::Value {
    if id == 0 {
        serde_json::Value::Null
    } else {
        serde_json::Value::String(format!("{id:016x}"))
    }
}
