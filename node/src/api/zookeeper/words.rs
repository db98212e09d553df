//! ZooKeeper's four-letter words on the client port: a connection whose
//! first four bytes are a known word gets plain text in ZooKeeper's format
//! (exporters and probes parse it) and is closed. Words outside the
//! configured list are answered as ZooKeeper answers them.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use synod_core::paxos::Role;

use super::{Shared, lock};
use crate::driver::ZkSummary;

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

fn version() -> String {
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
    let Ok((summary, voters, gauges)) = shared
        .driver
        .call(|state| {
            (
                state.zk_summary(),
                state.status().membership.voters.len(),
                state.gauges(),
            )
        })
        .await
    else {
        return "This ZooKeeper instance is not currently serving requests\n".into();
    };
    let c = &shared.counters;
    let count = c.latency_count.load(Ordering::Relaxed);
    let avg_ms = if count == 0 {
        0.0
    } else {
        c.latency_total_us.load(Ordering::Relaxed) as f64 / count as f64 / 1000.0
    };
    let min_ms = c.latency_min_us.load(Ordering::Relaxed) / 1000;
    let max_ms = c.latency_max_us.load(Ordering::Relaxed) / 1000;
    let received = c.received.load(Ordering::Relaxed);
    let sent = c.sent.load(Ordering::Relaxed);
    let alive = lock(&shared.connections).len();
    let outstanding = c.outstanding.load(Ordering::Relaxed).max(0);
    let mode = mode(&summary, voters);
    match word {
        "isro" => if summary.serving { "rw" } else { "ro" }.into(),
        "srvr" | "stat" => {
            let mut out = format!("Zookeeper version: {}, built on n/a\n", version());
            if word == "stat" {
                out += "Clients:\n";
                out += &connections(shared);
                out += "\n";
            }
            let _ = write!(
                out,
                "Latency min/avg/max: {min_ms}/{avg_ms:.4}/{max_ms}\nReceived: {received}\nSent: {sent}\nConnections: {alive}\nOutstanding: {outstanding}\nZxid: {:#x}\nMode: {mode}\nNode count: {}\n",
                summary.zxid, summary.znodes
            );
            out
        }
        "mntr" => {
            let (open_fds, max_fds) = file_descriptors();
            let mut lines = vec![
                ("zk_version".to_owned(), version()),
                ("zk_server_state".into(), mode.into()),
                ("zk_avg_latency".into(), format!("{avg_ms:.4}")),
                ("zk_max_latency".into(), max_ms.to_string()),
                ("zk_min_latency".into(), min_ms.to_string()),
                ("zk_packets_received".into(), received.to_string()),
                ("zk_packets_sent".into(), sent.to_string()),
                ("zk_num_alive_connections".into(), alive.to_string()),
                ("zk_outstanding_requests".into(), outstanding.to_string()),
                ("zk_znode_count".into(), summary.znodes.to_string()),
                ("zk_watch_count".into(), summary.watches.to_string()),
                ("zk_ephemerals_count".into(), summary.ephemerals.to_string()),
                ("zk_global_sessions".into(), summary.sessions.to_string()),
                ("zk_last_proposal_size".into(), "-1".into()),
                ("zk_open_file_descriptor_count".into(), open_fds.to_string()),
                ("zk_max_file_descriptor_count".into(), max_fds.to_string()),
            ];
            if mode == "leader" {
                lines.push(("zk_learners".into(), summary.followers.to_string()));
                lines.push(("zk_followers".into(), summary.followers.to_string()));
                lines.push((
                    "zk_synced_followers".into(),
                    summary.synced_followers.to_string(),
                ));
                lines.push(("zk_pending_syncs".into(), "0".into()));
            }
            let mut out = String::new();
            for (key, value) in lines {
                let _ = writeln!(out, "{key}\t{value}");
            }
            out
        }
        "wchs" => format!(
            "{alive} connections watching {} paths\nTotal watches:{}\n",
            summary.watched_paths, summary.watches
        ),
        "dirs" => format!(
            "datadir_size: {}\nlogdir_size: {}\n",
            gauges.snapshot_bytes, gauges.log_bytes
        ),
        _ => String::new(),
    }
}

fn reset(shared: &Shared) {
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
fn connections(shared: &Shared) -> String {
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

fn environment() -> String {
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
