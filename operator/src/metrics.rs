//! The operator's own metrics, in the Prometheus text format: reconciles,
//! their durations, failures by reason, actions taken (membership changes,
//! restarts, leadership transfers) and which ensembles are blocked and why.
//! A small registry of its own, as the node has (node/src/metrics.rs): a
//! handful of series does not need a metrics crate.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the reconcile duration histogram, in seconds.
const BUCKETS: [f64; 10] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

#[derive(Debug, Default)]
struct Inner {
    reconciles: u64,
    failures: BTreeMap<String, u64>,
    actions: BTreeMap<String, u64>,
    duration_buckets: [u64; BUCKETS.len()],
    duration_count: u64,
    duration_sum: f64,
    /// (namespace/name) -> reason, for ensembles blocked now.
    blocked: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        // A panic while holding the lock leaves counters that are still
        // usable: take them anyway rather than lose the metrics endpoint.
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    pub fn reconciled(&self, took: Duration) {
        let secs = took.as_secs_f64();
        self.with(|m| {
            m.reconciles += 1;
            m.duration_count += 1;
            m.duration_sum += secs;
            for (i, bound) in BUCKETS.iter().enumerate() {
                if secs <= *bound {
                    m.duration_buckets[i] += 1;
                }
            }
        });
    }

    pub fn failed(&self, reason: &str) {
        self.with(|m| *m.failures.entry(reason.to_owned()).or_default() += 1);
    }

    pub fn acted(&self, action: &str) {
        self.with(|m| *m.actions.entry(action.to_owned()).or_default() += 1);
    }

    pub fn set_blocked(&self, ensemble: &str, reason: Option<&str>) {
        self.with(|m| match reason {
            Some(reason) => {
                m.blocked.insert(ensemble.to_owned(), reason.to_owned());
            }
            None => {
                m.blocked.remove(ensemble);
            }
        });
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        self.with(|m| {
            let mut out = String::new();
            let _ = writeln!(
                out,
                "# HELP synod_operator_reconciles_total Reconciles run.\n# TYPE synod_operator_reconciles_total counter\nsynod_operator_reconciles_total {}",
                m.reconciles
            );
            let _ = writeln!(
                out,
                "# HELP synod_operator_reconcile_failures_total Reconciles that ended in an error, by reason.\n# TYPE synod_operator_reconcile_failures_total counter"
            );
            for (reason, n) in &m.failures {
                let _ = writeln!(
                    out,
                    "synod_operator_reconcile_failures_total{{reason=\"{}\"}} {n}",
                    escape(reason)
                );
            }
            let _ = writeln!(
                out,
                "# HELP synod_operator_actions_total Actions taken on ensembles (membership changes, restarts, transfers, scaling, volume deletions).\n# TYPE synod_operator_actions_total counter"
            );
            for (action, n) in &m.actions {
                let _ = writeln!(
                    out,
                    "synod_operator_actions_total{{action=\"{}\"}} {n}",
                    escape(action)
                );
            }
            let _ = writeln!(
                out,
                "# HELP synod_operator_reconcile_duration_seconds Time one reconcile took.\n# TYPE synod_operator_reconcile_duration_seconds histogram"
            );
            for (i, bound) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "synod_operator_reconcile_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                    m.duration_buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "synod_operator_reconcile_duration_seconds_bucket{{le=\"+Inf\"}} {}\nsynod_operator_reconcile_duration_seconds_sum {}\nsynod_operator_reconcile_duration_seconds_count {}",
                m.duration_count, m.duration_sum, m.duration_count
            );
            let _ = writeln!(
                out,
                "# HELP synod_operator_blocked Ensembles whose next step is refused (1 per ensemble, labelled by reason).\n# TYPE synod_operator_blocked gauge"
            );
            for (ensemble, reason) in &m.blocked {
                let _ = writeln!(
                    out,
                    "synod_operator_blocked{{ensemble=\"{}\",reason=\"{}\"}} 1",
                    escape(ensemble),
                    escape(reason)
                );
            }
            out
        })
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histogram_and_blocked_gauge() {
        let m = Metrics::default();
        m.reconciled(Duration::from_millis(30));
        m.reconciled(Duration::from_secs(3));
        m.failed("kube");
        m.acted("PromotingMember");
        m.set_blocked("ns/a", Some("EvenSize"));
        m.set_blocked("ns/b", Some("QuorumLost"));
        m.set_blocked("ns/b", None);
        let text = m.render();
        assert!(
            text.contains("synod_operator_reconciles_total 2\n"),
            "{text}"
        );
        assert!(text.contains("synod_operator_reconcile_failures_total{reason=\"kube\"} 1"));
        assert!(text.contains("synod_operator_actions_total{action=\"PromotingMember\"} 1"));
        assert!(text.contains("synod_operator_reconcile_duration_seconds_bucket{le=\"0.05\"} 1"));
        assert!(text.contains("synod_operator_reconcile_duration_seconds_bucket{le=\"5\"} 2"));
        assert!(text.contains("synod_operator_reconcile_duration_seconds_count 2"));
        assert!(text.contains("synod_operator_blocked{ensemble=\"ns/a\",reason=\"EvenSize\"} 1"));
        assert!(!text.contains("ns/b"));
    }
}
