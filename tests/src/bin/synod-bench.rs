//! `synod-bench`: a closed-loop load generator for the gRPC API. C sessions,
//! each on its own connection, keep D requests outstanding; it reports
//! throughput and latency percentiles as text or JSON. Bounded by a duration
//! and a request count, it stops by itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use synod_proto::v1 as pb;
use synod_proto::v1::coordination_client::CoordinationClient;

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Op {
    Set,
    Get,
    Create,
    Mixed,
}

#[derive(Debug, Parser)]
#[command(about = "Closed-loop load generator for Synod's gRPC API")]
struct Args {
    /// Endpoints (host:port), used round-robin by sessions.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:7001")]
    endpoints: Vec<String>,
    /// Concurrent sessions, one connection each.
    #[arg(long, default_value_t = 16)]
    sessions: usize,
    /// Outstanding requests per session.
    #[arg(long, default_value_t = 8)]
    depth: usize,
    #[arg(long, value_enum, default_value_t = Op::Set)]
    op: Op,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Nodes that set/get touch (created before the run).
    #[arg(long, default_value_t = 1000)]
    keys: usize,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Stop after this many requests in total.
    #[arg(long, default_value_t = 10_000_000)]
    max_requests: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let prefix = format!("/bench-{}", std::process::id());
    let mut setup = CoordinationClient::connect(format!("http://{}", args.endpoints[0]))
        .await
        .context("cannot connect")?;
    let value = vec![b'x'; args.value_size];
    setup
        .create(create_req(&prefix, vec![]))
        .await
        .context("cannot create the bench root")?;
    if args.op != Op::Create {
        for k in 0..args.keys {
            setup
                .create(create_req(&format!("{prefix}/k{k}"), value.clone()))
                .await?;
        }
    }
    let deadline = Instant::now() + Duration::from_secs_f64(args.duration);
    let issued = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..args.sessions {
        let endpoint = format!("http://{}", args.endpoints[s % args.endpoints.len()]);
        let channel = tonic::transport::Channel::from_shared(endpoint)?
            .connect()
            .await?;
        for d in 0..args.depth {
            let mut api = CoordinationClient::new(channel.clone());
            let issued = issued.clone();
            let errors = errors.clone();
            let prefix = prefix.clone();
            let value = value.clone();
            let (op, keys, max) = (args.op, args.keys, args.max_requests);
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut i: u64 = 0;
                while Instant::now() < deadline && issued.fetch_add(1, Ordering::Relaxed) < max {
                    let key = format!("{prefix}/k{}", (i as usize * 7919 + s * 131 + d) % keys);
                    let this = match op {
                        Op::Mixed if i.is_multiple_of(10) => Op::Set,
                        Op::Mixed => Op::Get,
                        other => other,
                    };
                    let t = Instant::now();
                    let result = match this {
                        Op::Set => api
                            .set_data(pb::SetDataRequest {
                                session_id: 0,
                                path: key,
                                data: value.clone(),
                                version: -1,
                            })
                            .await
                            .map(drop),
                        Op::Get => api
                            .get_data(pb::GetDataRequest {
                                session_id: 0,
                                path: key,
                                watch: false,
                            })
                            .await
                            .map(drop),
                        Op::Create | Op::Mixed => api
                            .create(create_req(&format!("{prefix}/c{s}-{d}-{i}"), value.clone()))
                            .await
                            .map(drop),
                    };
                    latencies.push(t.elapsed().as_micros() as u64);
                    if result.is_err() {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                }
                latencies
            }));
        }
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let ops = all.len() as f64 / elapsed;
    let (p50, p99, p999) = (pct(0.50), pct(0.99), pct(0.999));
    let errors = errors.load(Ordering::Relaxed);
    let op = format!("{:?}", args.op).to_lowercase();
    if args.json {
        let line = serde_json::json!({
            "op": op, "sessions": args.sessions, "depth": args.depth, "value_size": args.value_size,
            "requests": all.len(), "errors": errors, "seconds": elapsed, "ops_per_sec": ops,
            "p50_ms": p50 as f64 / 1000.0, "p99_ms": p99 as f64 / 1000.0, "p999_ms": p999 as f64 / 1000.0,
        });
        writeln_stdout(&line.to_string());
    } else {
        writeln_stdout(&format!(
            "op={op} sessions={} depth={} value={}B requests={} errors={errors} seconds={elapsed:.2} ops/s={ops:.0} p50={:.2}ms p99={:.2}ms p999={:.2}ms",
            args.sessions,
            args.depth,
            args.value_size,
            all.len(),
            p50 as f64 / 1000.0,
            p99 as f64 / 1000.0,
            p999 as f64 / 1000.0
        ));
    }
    Ok(())
}

fn create_req(path: &str, data: Vec<u8>) -> pb::CreateRequest {
    pb::CreateRequest {
        session_id: 0,
        path: path.into(),
        data,
        acl: vec![],
        mode: 0,
        ttl_ms: 0,
    }
}

fn writeln_stdout(line: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
}
