//! ZooKeeper's four-letter words on the client port: a connection whose
//! first four bytes are a known word gets plain text in ZooKeeper's format
//! (exporters and probes parse it) and is closed. Words outside the
//! configured list are answered as ZooKeeper answers them.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use synod_core::paxos::Role;

use super::{Shared, lock};
use crate::driver::ZkSummary;
use crate::metrics::Gauges;

/// The ZooKeeper release whose client protocol this listener speaks; tools
/// parse `X.Y.Z` from the version line (kazoo's `server_version`).
pub const COMPATIBLE_VERSION: &str = "3.9.0";

const WORDS: [&str; 12] = [
    "ruok", "isro", "srvr", "stat", "mntr", "conf", "envi", "cons", "wchs", "dirs", "srst", "crst",
];

/// The word these first four bytes spell, if it is one this listener knows.
pub(super) fn known(first: &[u8; 4]) -> Option<&'static str> {
    WORDS.into_iter().find(|w| w.as_bytes() == first)
}

pub(super) fn version() -> String {
    format!("{COMPATIBLE_VERSION}-synod-{}", env!("CARGO_PKG_VERSION"))
}

fn mode(summary: &ZkSummary, voters: usize) -> &'static str {
    match summary.role {
        _ if !summary.serving => "read-only",
        Role::Leader if voters <= 1 => "standalone",
        Role::Leader => "leader",
        _ if summary.observer => "observer",
        _ => "follower",
    }
}

/// The text a word answers with.
pub(super) async fn answer(shared: &Shared, word: &'static str) -> String {
    if !shared.config.words.allows(word) {
        return format!("{word} is not executed because it is not in the whitelist.\n");
    }
    match word {
        "ruok" => return "imok".into(),
        "conf" => {
            let mut out = String::new();
            for (key, value) in &shared.config.conf {
                let _ = writeln!(out, "{key}={value}");
            }
            return out;
        }
        "envi" => return environment(),
        "cons" => return connections(shared) + "\n",
        "srst" | "crst" => {
            reset(shared);
            return if word == "srst" {
                "Server stats reset.\n".into()
            } else {
                "Connection stats reset.\n".into()
            };
        }
        _ => {}
    }
    let Some(n) = gather(shared).await else {
        return "This ZooKeeper instance is not currently serving requests\n".into();
    };
    match word {
        "isro" => if n.summary.serving { "rw" } else { "ro" }.into(),
        "srvr" | "stat" => {
            let mut out = format!("Zookeeper version: {}, built on n/a\n", version());
            if word == "stat" {
                out += "Clients:\n";
                out += &connections(shared);
                out += "\n";
            }
            let _ = write!(
                out,
                "Latency min/avg/max: {}/{:.4}/{}\nReceived: {}\nSent: {}\nConnections: {}\nOutstanding: {}\nZxid: {:#x}\nMode: {}\nNode count: {}\n",
                n.min_ms,
                n.avg_ms,
                n.max_ms,
                n.received,
                n.sent,
                n.alive,
                n.outstanding,
                n.summary.zxid,
                n.mode,
                n.summary.znodes
            );
            out
        }
        "mntr" => {
            let mut out = String::new();
            for (key, value) in monitor(&n) {
                let _ = writeln!(out, "zk_{key}\t{value}");
            }
            out
        }
        "wchs" => format!(
            "{} connections watching {} paths\nTotal watches:{}\n",
            n.alive, n.summary.watched_paths, n.summary.watches
        ),
        "dirs" => format!(
            "datadir_size: {}\nlogdir_size: {}\n",
            n.gauges.snapshot_bytes, n.gauges.log_bytes
        ),
        _ => String::new(),
    }
}

/// What `srvr`, `mntr` and their JSON forms report, gathered at once.
#[derive(Debug)]
pub(super) struct Numbers {
    pub summary: ZkSummary,
    pub gauges: Gauges,
    pub mode: &'static str,
    pub min_ms: u64,
    pub avg_ms: f64,
    pub max_ms: u64,
    pub received: u64,
    pub sent: u64,
    pub alive: usize,
    pub outstanding: i64,
}

/// A `mntr` value: numbers stay numbers in the JSON form.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value {
    Text(String),
    Int(i64),
    Float(f64),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Text(t) => f.write_str(t),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x:.4}"),
        }
    }
}

pub(super) async fn gather(shared: &Shared) -> Option<Numbers> {
    let (summary, voters, gauges) = shared
        .driver
        .call(|state| {
            (
                state.zk_summary(),
                state.status().membership.voters.len(),
                state.gauges(),
            )
        })
        .await
        .ok()?;
    let c = &shared.counters;
    let count = c.latency_count.load(Ordering::Relaxed);
    let avg_ms = if count == 0 {
        0.0
    } else {
        c.latency_total_us.load(Ordering::Relaxed) as f64 / count as f64 / 1000.0
    };
    Some(Numbers {
        mode: mode(&summary, voters),
        summary,
        gauges,
        min_ms: c.latency_min_us.load(Ordering::Relaxed) / 1000,
        avg_ms,
        max_ms: c.latency_max_us.load(Ordering::Relaxed) / 1000,
        received: c.received.load(Ordering::Relaxed),
        sent: c.sent.load(Ordering::Relaxed),
        alive: lock(&shared.connections).len(),
        outstanding: c.outstanding.load(Ordering::Relaxed).max(0),
    })
}

/// `mntr`'s keys (without the `zk_` prefix) and values.
pub(super) fn monitor(n: &Numbers) -> Vec<(&'static str, Value)> {
    let int = |v: u64| Value::Int(i64::try_from(v).unwrap_or(i64::MAX));
    let (open_fds, max_fds) = file_descriptors();
    let mut lines = vec![
        ("version", Value::Text(version())),
        ("server_state", Value::Text(n.mode.into())),
        ("avg_latency", Value::Float(n.avg_ms)),
        ("max_latency", int(n.max_ms)),
        ("min_latency", int(n.min_ms)),
        ("packets_received", int(n.received)),
        ("packets_sent", int(n.sent)),
        ("num_alive_connections", int(n.alive as u64)),
        ("outstanding_requests", Value::Int(n.outstanding)),
        ("znode_count", int(n.summary.znodes)),
        ("watch_count", int(n.summary.watches)),
        ("ephemerals_count", int(n.summary.ephemerals)),
        ("global_sessions", int(n.summary.sessions)),
        ("open_file_descriptor_count", int(open_fds)),
        ("max_file_descriptor_count", int(max_fds)),
    ];
    if n.mode == "leader" {
        lines.push(("learners", int(n.summary.followers)));
        lines.push(("followers", int(n.summary.followers)));
        lines.push(("synced_followers", int(n.summary.synced_followers)));
    }
    lines
}

pub(super) fn reset(shared: &Shared) {
    let c = &shared.counters;
    for counter in [
        &c.received,
        &c.sent,
        &c.latency_min_us,
        &c.latency_max_us,
        &c.latency_total_us,
        &c.latency_count,
    ] {
        counter.store(0, Ordering::Relaxed);
    }
    for conn in lock(&shared.connections).values() {
        conn.received.store(0, Ordering::Relaxed);
        conn.sent.store(0, Ordering::Relaxed);
    }
}

/// One line per connection, as ZooKeeper's `cons`.
pub(super) fn connections(shared: &Shared) -> String {
    let mut out = String::new();
    for conn in lock(&shared.connections).values() {
        let _ = writeln!(
            out,
            " /{}[1](queued={},recved={},sent={},sid={:#x})",
            conn.peer,
            conn.outstanding.load(Ordering::Relaxed).max(0),
            conn.received.load(Ordering::Relaxed),
            conn.sent.load(Ordering::Relaxed),
            conn.session.load(Ordering::Relaxed),
        );
    }
    out
}

pub(super) fn environment() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let dir = std::env::current_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let user = std::env::var("USER").unwrap_or_default();
    format!(
        "Environment:\nzookeeper.version={}, built on n/a\nhost.name={host}\nos.name={}\nos.arch={}\nuser.name={user}\nuser.dir={dir}\nsynod.version={}\n",
        version(),
        std::env::consts::OS,
        std::env::consts::ARCH,
        env!("CARGO_PKG_VERSION"),
    )
}

/// Open file descriptors and their limit, from /proc (0 where unknown).
fn file_descriptors() -> (u64, u64) {
    let open = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    let max = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0);
    (open, max)
}

#[cfg(test)]
mod tests {
    use super::super::WordList;
    use super::*;

    #[test]
    fn words_are_recognised_by_their_first_four_bytes() {
        assert_eq!(known(b"ruok"), Some("ruok"));
        assert_eq!(known(b"mntr"), Some("mntr"));
        assert_eq!(known(&[0, 0, 0, 45]), None);
        assert_eq!(known(b"RUOK"), None);
    }

    #[test]
    fn word_lists() {
        assert!(WordList::parse("*").allows("envi"));
        let list = WordList::parse("srvr, ruok");
        assert!(list.allows("ruok"));
        assert!(!list.allows("envi"));
    }

    #[test]
    fn the_version_starts_with_a_zookeeper_release() {
        let v = version();
        let release = v.split('-').next().unwrap_or_default();
        assert_eq!(release.split('.').count(), 3, "{v}");
        assert!(release.split('.').all(|n| n.parse::<u32>().is_ok()), "{v}");
    }
}
