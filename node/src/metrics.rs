//! Prometheus metrics of a node: per-method request counts, errors and
//! latency (recorded by a tower layer around the gRPC server, so no handler
//! can forget it), fsync and batch histograms from the driver, and gauges
//! read from the driver's state at scrape time. Rendered in the Prometheus
//! text exposition format by hand: a few atomics need no metrics framework.

use std::fmt::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use rustc_hash::FxHashMap;
use tonic::codegen::http;

/// Latency bucket bounds in seconds, 100 µs to 10 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 10.0,
];
/// Txns per durable batch.
const BATCH_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 256.0, 1024.0, 4096.0];

/// A cumulative histogram with fixed buckets.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    /// Sum in millionths of the unit, to stay in integers.
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|b| value <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros
            .fetch_add((value * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let total = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {total}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {total}");
    }
}

#[derive(Debug)]
struct MethodMetrics {
    errors: AtomicU64,
    latency: Histogram,
}

/// Every method of the client API, so their metrics exist from the start.
const METHODS: [&str; 23] = [
    "CreateSession",
    "KeepAlive",
    "CloseSession",
    "AddAuth",
    "Create",
    "Delete",
    "SetData",
    "Check",
    "SetAcl",
    "Multi",
    "GetData",
    "Exists",
    "GetChildren",
    "GetAllChildrenNumber",
    "GetEphemerals",
    "GetAcl",
    "MultiRead",
    "Sync",
    "AddWatch",
    "RemoveWatches",
    "WatchEvents",
    "Pipeline",
    "Unknown",
];

/// State read from the driver when scraped.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    pub znodes: u64,
    pub sessions: u64,
    pub watches: u64,
    pub applied_zxid: i64,
    pub pending_txns: u64,
    pub log_bytes: u64,
    pub log_segments: u64,
    pub snapshot_bytes: u64,
    pub snapshots: u64,
    pub snapshot_index: u64,
    pub node_id: u64,
    pub is_leader: bool,
    /// 0 while no leader is known.
    pub leader_id: u64,
    pub commit_index: u64,
    pub voters: u64,
    pub observers: u64,
    /// Elections this node started because no leader was heard for an
    /// election timeout.
    pub elections_on_timeout: u64,
    /// Elections this node started because a stopping leader handed over.
    pub elections_on_transfer: u64,
    /// The `--cluster` name, the ensemble's cluster id (0 until applied)
    /// and this member's incarnation, for the `synod_identity` info metric.
    pub cluster: String,
    pub cluster_id: u64,
    pub incarnation: u64,
    /// Members whose recent messages are refused for their incarnation
    /// (at the leader: wiped voters awaiting removal and re-adding).
    pub foreign_members: u64,
    /// This node keeps out of every quorum until it is re-added.
    pub awaiting_readd: bool,
    /// Peer messages dropped for their sender's incarnation.
    pub refused_claims: u64,
    /// What each outbound peer link has done.
    pub peer_links: Vec<crate::peer::LinkStats>,
}

/// A per-link counter: its name, its help and how to read it.
type LinkSeries = (
    &'static str,
    &'static str,
    fn(&crate::peer::LinkStats) -> u64,
);

/// The outbound peer links' counters, one series per peer.
fn render_peer_links(out: &mut String, links: &[crate::peer::LinkStats]) {
    let series: [LinkSeries; 4] = [
        (
            "synod_peer_frames_sent_total",
            "Frames handed to the stream to a peer.",
            |link| link.sent,
        ),
        (
            "synod_peer_frames_dropped_total",
            "Frames to a peer dropped because its queue was full (the peer is unreachable or \
             slower than this node).",
            |link| link.dropped,
        ),
        (
            "synod_peer_streams_total",
            "Streams opened to a peer, one per connection.",
            |link| link.streams,
        ),
        (
            "synod_peer_frames_received_total",
            "Frames received from a peer.",
            |link| link.received,
        ),
    ];
    for (name, help, value) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for link in links {
            let _ = writeln!(out, "{name}{{peer=\"{}\"}} {}", link.peer, value(link));
        }
    }
    let name = "synod_peer_link_state";
    let _ = writeln!(
        out,
        "# HELP {name} What the link to a peer is doing: 0 idle, 1 connecting, 2 backing off, \
         3 streaming, 4 stalled (the peer does not read).\n# TYPE {name} gauge"
    );
    for link in links {
        let _ = writeln!(out, "{name}{{peer=\"{}\"}} {}", link.peer, link.state);
    }
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The node's metrics.
#[derive(Debug)]
pub struct Metrics {
    methods: FxHashMap<&'static str, MethodMetrics>,
    pub fsync_seconds: Histogram,
    pub batch_txns: Histogram,
    pub commit_seconds: Histogram,
    pub sessions_expired: AtomicU64,
    pub leader_changes: AtomicU64,
    /// Catch-ups sent to a peer from values read back from the log.
    pub log_reads: AtomicU64,
    started: Instant,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            methods: METHODS
                .iter()
                .map(|m| {
                    (
                        *m,
                        MethodMetrics {
                            errors: AtomicU64::new(0),
                            latency: Histogram::new(&LATENCY_BUCKETS),
                        },
                    )
                })
                .collect(),
            fsync_seconds: Histogram::new(&LATENCY_BUCKETS),
            batch_txns: Histogram::new(&BATCH_BUCKETS),
            commit_seconds: Histogram::new(&LATENCY_BUCKETS),
            sessions_expired: AtomicU64::new(0),
            leader_changes: AtomicU64::new(0),
            log_reads: AtomicU64::new(0),
            started: Instant::now(),
        }
    }
}

impl Metrics {
    /// Records one finished call of `method` (its last path segment, or
    /// for a call made on a `Pipeline` stream, the name of its unary call).
    pub fn observe_call(&self, method: &str, seconds: f64, failed: bool) {
        let entry = self
            .methods
            .get(method)
            .or_else(|| self.methods.get("Unknown"));
        if let Some(m) = entry {
            m.latency.observe(seconds);
            if failed {
                m.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The exposition text.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(16 * 1024);
        out.push_str("# HELP synod_requests_seconds Latency of client API calls until the response (stream calls: until opened).\n");
        out.push_str("# TYPE synod_requests_seconds histogram\n");
        for method in METHODS {
            if let Some(m) = self.methods.get(method) {
                m.latency.render(
                    &mut out,
                    "synod_requests_seconds",
                    &format!("method=\"{method}\""),
                );
            }
        }
        out.push_str(
            "# HELP synod_request_errors_total Client API calls answered with an error.\n",
        );
        out.push_str("# TYPE synod_request_errors_total counter\n");
        for method in METHODS {
            if let Some(m) = self.methods.get(method) {
                let _ = writeln!(
                    out,
                    "synod_request_errors_total{{method=\"{method}\"}} {}",
                    m.errors.load(Ordering::Relaxed)
                );
            }
        }
        out.push_str(
            "# HELP synod_fsync_seconds Time to write and fdatasync one batch of the log.\n",
        );
        out.push_str("# TYPE synod_fsync_seconds histogram\n");
        self.fsync_seconds
            .render(&mut out, "synod_fsync_seconds", "");
        out.push_str("# HELP synod_batch_txns Txns made durable by one fdatasync.\n");
        out.push_str("# TYPE synod_batch_txns histogram\n");
        self.batch_txns.render(&mut out, "synod_batch_txns", "");
        out.push_str("# HELP synod_commit_seconds Time from submitting a txn to applying it.\n");
        out.push_str("# TYPE synod_commit_seconds histogram\n");
        self.commit_seconds
            .render(&mut out, "synod_commit_seconds", "");
        let counters = [
            (
                "synod_sessions_expired_total",
                "Sessions expired by this node.",
                self.sessions_expired.load(Ordering::Relaxed),
            ),
            (
                "synod_leader_changes_total",
                "Times this node saw a new leader.",
                self.leader_changes.load(Ordering::Relaxed),
            ),
            (
                "synod_log_reads_total",
                "Catch-ups sent to a peer with committed values read back from the write-ahead log (the replica keeps only --log-cache-entries in memory).",
                self.log_reads.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        let values = [
            ("synod_znodes", "Znodes in the tree.", gauges.znodes as f64),
            ("synod_sessions", "Open sessions.", gauges.sessions as f64),
            (
                "synod_watches",
                "Watches held on this node.",
                gauges.watches as f64,
            ),
            (
                "synod_applied_zxid",
                "Last applied txn.",
                gauges.applied_zxid as f64,
            ),
            (
                "synod_pending_txns",
                "Txns waiting for the log.",
                gauges.pending_txns as f64,
            ),
            (
                "synod_log_bytes",
                "Bytes of write-ahead log segments.",
                gauges.log_bytes as f64,
            ),
            (
                "synod_log_segments",
                "Write-ahead log segments.",
                gauges.log_segments as f64,
            ),
            (
                "synod_snapshot_bytes",
                "Bytes of snapshots kept.",
                gauges.snapshot_bytes as f64,
            ),
            (
                "synod_snapshots",
                "Snapshots kept.",
                gauges.snapshots as f64,
            ),
            (
                "synod_snapshot_index",
                "Index of the newest snapshot.",
                gauges.snapshot_index as f64,
            ),
            ("synod_node_id", "This node's id.", gauges.node_id as f64),
            (
                "synod_is_leader",
                "1 on the leader, 0 elsewhere.",
                f64::from(u8::from(gauges.is_leader)),
            ),
            (
                "synod_leader_id",
                "The leader this node follows (0: none known).",
                gauges.leader_id as f64,
            ),
            (
                "synod_commit_index",
                "Highest log slot this node knows to be committed.",
                gauges.commit_index as f64,
            ),
            (
                "synod_voters",
                "Voting members in the committed configuration.",
                gauges.voters as f64,
            ),
            (
                "synod_observers",
                "Observers in the committed configuration.",
                gauges.observers as f64,
            ),
            (
                "synod_elections_on_timeout",
                "Elections this node started after an election timeout without a leader (a counter).",
                gauges.elections_on_timeout as f64,
            ),
            (
                "synod_elections_on_transfer",
                "Elections this node started because the leader handed over (a counter).",
                gauges.elections_on_transfer as f64,
            ),
            (
                "synod_foreign_members",
                "Members whose messages are refused because they speak with another incarnation \
                 than the configuration binds (a wiped disk): remove and re-add them.",
                gauges.foreign_members as f64,
            ),
            (
                "synod_awaiting_readd",
                "1 when this node votes in nothing until it is removed and re-added (its data \
                 directory is new in an existing ensemble).",
                f64::from(u8::from(gauges.awaiting_readd)),
            ),
            (
                "synod_refused_claims",
                "Peer messages dropped because of the sender's incarnation (a counter).",
                gauges.refused_claims as f64,
            ),
            (
                "synod_uptime_seconds",
                "Seconds since the node started.",
                self.started.elapsed().as_secs_f64(),
            ),
        ];
        for (name, help, value) in values {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        render_peer_links(&mut out, &gauges.peer_links);
        // Ids are 64-bit and a float cannot hold them: an info metric
        // carries them as labels (hex, as Status and the logs show them).
        let _ = writeln!(
            out,
            "# HELP synod_identity The ensemble's name and cluster id (0 until known) and this \
             member's incarnation id.\n# TYPE synod_identity gauge\n\
             synod_identity{{cluster=\"{}\",cluster_id=\"{}\",incarnation=\"{}\"}} 1",
            label_value(&gauges.cluster),
            crate::storage::identity::format_id(gauges.cluster_id),
            crate::storage::identity::format_id(gauges.incarnation),
        );
        out
    }
}

/// Tower layer that times every gRPC call.
#[derive(Debug, Clone)]
pub struct MetricsLayer {
    metrics: Arc<Metrics>,
}

impl MetricsLayer {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        MetricsLayer { metrics }
    }
}

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct MetricsService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

fn method_of(path: &str) -> &'static str {
    let last = path.rsplit('/').next().unwrap_or("");
    METHODS
        .iter()
        .find(|m| **m == last)
        .copied()
        .unwrap_or("Unknown")
}

impl<S, B, R> tower::Service<http::Request<B>> for MetricsService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = method_of(request.uri().path());
        let metrics = self.metrics.clone();
        let started = Instant::now();
        let future = self.inner.call(request);
        Box::pin(async move {
            let result = future.await;
            // gRPC errors of unary calls travel as trailers-only responses:
            // the status is in the headers. A success has none there.
            let failed = match &result {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .is_some_and(|status| status.as_bytes() != b"0"),
                Err(_) => true,
            };
            metrics.observe_call(method, started.elapsed().as_secs_f64(), failed);
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_renders_prometheus_text() {
        let metrics = Metrics::default();
        metrics.observe_call("GetData", 0.0002, false);
        metrics.observe_call("GetData", 0.02, true);
        metrics.observe_call("/weird", 1.0, false);
        let text = metrics.render(&Gauges {
            znodes: 4,
            cluster: "a\"b".into(),
            cluster_id: 0xab,
            incarnation: 7,
            foreign_members: 1,
            awaiting_readd: true,
            peer_links: vec![crate::peer::LinkStats {
                peer: 3,
                sent: 10,
                dropped: 2,
                streams: 1,
                received: 12,
                state: 3,
            }],
            ..Gauges::default()
        });
        assert!(
            text.contains("\nsynod_peer_frames_sent_total{peer=\"3\"} 10\n"),
            "{text}"
        );
        assert!(
            text.contains("\nsynod_peer_frames_dropped_total{peer=\"3\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("\nsynod_peer_streams_total{peer=\"3\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("\nsynod_peer_frames_received_total{peer=\"3\"} 12\n"),
            "{text}"
        );
        assert!(text.contains("\nsynod_foreign_members 1\n"), "{text}");
        assert!(text.contains("\nsynod_awaiting_readd 1\n"), "{text}");
        assert!(
            text.contains(
                "synod_identity{cluster=\"a\\\"b\",cluster_id=\"00000000000000ab\",\
                 incarnation=\"0000000000000007\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("synod_requests_seconds_bucket{method=\"GetData\",le=\"0.00025\"} 1"),
            "{text}"
        );
        assert!(text.contains("synod_requests_seconds_bucket{method=\"GetData\",le=\"0.025\"} 2"));
        assert!(text.contains("synod_requests_seconds_count{method=\"GetData\"} 2"));
        assert!(text.contains("synod_request_errors_total{method=\"GetData\"} 1"));
        assert!(text.contains("synod_requests_seconds_count{method=\"Unknown\"} 1"));
        assert!(text.contains("synod_znodes 4"));
        assert_eq!(method_of("/synod.v1.Coordination/SetData"), "SetData");
    }
}
