//! ZooKeeper's AdminServer commands as JSON (`GET /commands/<name>` on the
//! node's HTTP port): the same numbers as the four-letter words, under
//! ZooKeeper's command names and aliases, each answer carrying `command`
//! and `error` as ZooKeeper's do.

use std::sync::atomic::Ordering;

use serde_json::{Map, Value as Json, json};

use super::words::{self, Value};
use super::{Shared, lock};

/// Command names with their aliases; the first is the name answers carry.
const COMMANDS: [&[&str]; 11] = [
    &["ruok"],
    &["server_stats", "srvr"],
    &["monitor", "mntr"],
    &["configuration", "conf", "config"],
    &["environment", "env", "envi"],
    &["connections", "cons"],
    &["watch_summary", "wchs"],
    &["dirs"],
    &["is_read_only", "isro"],
    &["stat_reset", "srst"],
    &["connection_stat_reset", "crst"],
];

/// The names `/commands` lists.
pub fn names() -> Vec<&'static str> {
    COMMANDS.iter().map(|aliases| aliases[0]).collect()
}

fn value(v: Value) -> Json {
    match v {
        Value::Text(t) => Json::String(t),
        Value::Int(i) => json!(i),
        Value::Float(x) => json!(x),
    }
}

/// Runs a command by name or alias; `None` for an unknown name.
pub(super) async fn run(shared: &Shared, asked: &str) -> Option<Json> {
    let name = COMMANDS
        .iter()
        .find(|aliases| aliases.contains(&asked))
        .map(|aliases| aliases[0])?;
    let mut out = Map::new();
    match name {
        "ruok" => {}
        "configuration" => {
            for (key, v) in &shared.config.conf {
                out.insert(key.clone(), Json::String(v.clone()));
            }
        }
        "environment" => {
            for line in words::environment().lines().skip(1) {
                if let Some((key, v)) = line.split_once('=') {
                    out.insert(key.to_owned(), Json::String(v.to_owned()));
                }
            }
        }
        "connections" => {
            let connections: Vec<Json> = lock(&shared.connections)
                .values()
                .map(|c| {
                    json!({
                        "remote_socket_address": c.peer.to_string(),
                        "session_id": format!("{:#x}", c.session.load(Ordering::Relaxed)),
                        "packets_received": c.received.load(Ordering::Relaxed),
                        "packets_sent": c.sent.load(Ordering::Relaxed),
                        "outstanding_requests": c.outstanding.load(Ordering::Relaxed).max(0),
                    })
                })
                .collect();
            out.insert("connections".into(), Json::Array(connections));
        }
        "stat_reset" | "connection_stat_reset" => words::reset(shared),
        _ => {
            let Some(n) = words::gather(shared).await else {
                out.insert("command".into(), json!(name));
                out.insert(
                    "error".into(),
                    json!("This ZooKeeper instance is not currently serving requests"),
                );
                return Some(Json::Object(out));
            };
            match name {
                "monitor" => {
                    for (key, v) in words::monitor(&n) {
                        out.insert(key.to_owned(), value(v));
                    }
                }
                "server_stats" => {
                    out.insert("version".into(), json!(words::version()));
                    out.insert("read_only".into(), json!(!n.summary.serving));
                    out.insert(
                        "server_stats".into(),
                        json!({
                            "packets_sent": n.sent,
                            "packets_received": n.received,
                            "max_latency": n.max_ms,
                            "min_latency": n.min_ms,
                            "avg_latency": n.avg_ms,
                            "num_alive_client_connections": n.alive,
                            "outstanding_requests": n.outstanding,
                            "server_state": n.mode,
                            "data_dir_size": n.gauges.snapshot_bytes,
                            "log_dir_size": n.gauges.log_bytes,
                            "last_processed_zxid": n.summary.zxid,
                        }),
                    );
                    out.insert("node_count".into(), json!(n.summary.znodes));
                }
                "watch_summary" => {
                    out.insert("num_connections".into(), json!(n.alive));
                    out.insert("num_paths".into(), json!(n.summary.watched_paths));
                    out.insert("num_total_watches".into(), json!(n.summary.watches));
                }
                "dirs" => {
                    out.insert("datadir_size".into(), json!(n.gauges.snapshot_bytes));
                    out.insert("logdir_size".into(), json!(n.gauges.log_bytes));
                }
                "is_read_only" => {
                    out.insert("read_only".into(), json!(!n.summary.serving));
                }
                _ => {}
            }
        }
    }
    out.insert("command".into(), json!(name));
    out.insert("error".into(), Json::Null);
    Some(Json::Object(out))
}
