//! `synod-bench`: a closed-loop load generator for coordination services. C
//! sessions, each on its own connection, keep D requests outstanding; it
//! reports throughput and latency percentiles as text or JSON. Bounded by a
//! duration and a request count, it stops by itself.
//!
//! `--protocol grpc` (the default) speaks Synod's gRPC API the way the Rust
//! client does: each session's D tasks share one `Pipeline` stream on its
//! connection. `--protocol grpc-unary` makes one unary call per request
//! instead (one HTTP/2 stream each), to measure what the pipeline saves.
//! `--protocol
//! zookeeper` speaks the ZooKeeper wire protocol through a lean client
//! (`synod_tests::zkload`, which says why not a general-purpose client
//! crate): one ZooKeeper session per bench session, on whose connection one
//! task keeps D requests outstanding.
//! `--protocol etcd` speaks etcd's v3 KV gRPC API (tests/proto/etcd): one
//! HTTP/2 connection per session, its D tasks' unary calls multiplexed on it
//! as etcd's own Go client does; set is `Put`, get is `Range` (serializable,
//! or linearizable with `--linearizable`), create is a `Txn` that puts the
//! key only if it was never created. Key layout, value size, ops and output
//! are the same for all, so Apache ZooKeeper, etcd, and Synod over gRPC and
//! over the ZooKeeper protocol are measured by the same loop; only
//! `--endpoints` differs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use synod_client::Pipeline;
use synod_proto::v1 as pb;
use synod_proto::v1::coordination_client::CoordinationClient;
use synod_proto::v1::pipeline_request::Call;
use synod_tests::zkload::{self, ZkLoadSession};
use tonic::transport::Channel;

use etcd::etcdserverpb as etcdpb;
use etcd::etcdserverpb::kv_client::KvClient;

/// The code generated from the test-side copy of etcd's v3 KV API
/// (tests/proto/etcd, compiled by tests/build.rs). The two packages are
/// siblings because the generated `etcdserverpb` names `super::mvccpb`.
#[allow(clippy::all, clippy::pedantic, missing_debug_implementations)]
mod etcd {
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
    }
    pub mod mvccpb {
        tonic::include_proto!("mvccpb");
    }
}

/// A faster allocator than the system's for a process that allocates per
/// request.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Op {
    Set,
    Get,
    Create,
    Mixed,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Protocol {
    /// Synod's gRPC API (`proto/synod/v1/coordination.proto`), each
    /// session's calls on one `Pipeline` stream.
    Grpc,
    /// Synod's gRPC API, one unary call per request.
    GrpcUnary,
    /// The ZooKeeper wire protocol (Apache ZooKeeper, or any server speaking it).
    Zookeeper,
    /// etcd's v3 KV gRPC API (Range, Put, Txn), one unary call per request.
    Etcd,
}

#[derive(Debug, Parser)]
#[command(
    about = "Closed-loop load generator for Synod's gRPC API, ZooKeeper-protocol servers and etcd"
)]
struct Args {
    /// Wire protocol to load.
    #[arg(long, value_enum, default_value_t = Protocol::Grpc)]
    protocol: Protocol,
    /// Endpoints (host:port), used round-robin by sessions. Default:
    /// 127.0.0.1:7001 for grpc, 127.0.0.1:2181 for zookeeper, 127.0.0.1:2379
    /// for etcd.
    #[arg(long, value_delimiter = ',')]
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
    /// What the values hold: `x` repeated (one value for every request),
    /// or random bytes, different for every request, which no compressor
    /// makes smaller (to measure a footprint without flattering it).
    #[arg(long, value_enum, default_value_t = ValueFill::Repeated)]
    value_fill: ValueFill,
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
    /// `get` reads linearizably: Synod's `linearizable = true` (the
    /// leader's lease or a read index), ZooKeeper's `sync` then `getData`,
    /// etcd's default `Range` (without it, etcd's reads are `serializable`:
    /// served by the member from its own state, as Synod's and ZooKeeper's
    /// plain reads are).
    #[arg(long)]
    linearizable: bool,
    /// CA bundle (PEM) that signed Synod's certificates: speak gRPC over
    /// TLS (`--protocol grpc` and `grpc-unary` only).
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<std::path::PathBuf>,
    /// A client certificate (PEM) to present, with --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_ca")]
    tls_cert: Option<std::path::PathBuf>,
    /// The key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
}

impl Args {
    /// The TLS material, when --tls-ca turns TLS on.
    fn tls(&self) -> anyhow::Result<Option<Arc<synod_tls::Tls>>> {
        let Some(ca) = &self.tls_ca else {
            return Ok(None);
        };
        anyhow::ensure!(
            matches!(self.protocol, Protocol::Grpc | Protocol::GrpcUnary),
            "--tls-ca works with --protocol grpc and grpc-unary only"
        );
        Ok(Some(synod_tls::Tls::load(synod_tls::TlsFiles {
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
            ca: Some(ca.clone()),
        })?))
    }
}

/// One connection to a Synod node's gRPC port, over TLS with `tls`.
async fn grpc_channel(
    endpoint: &str,
    tls: Option<&Arc<synod_tls::Tls>>,
) -> anyhow::Result<Channel> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let dial =
        Channel::from_shared(format!("{scheme}://{endpoint}"))?.connect_timeout(CONNECT_TIMEOUT);
    synod_client::connect::channel(dial, tls)
        .await
        .with_context(|| format!("cannot connect to {endpoint}"))
}

/// How long connecting a session may take before the run is abandoned.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// ZooKeeper session timeout requested by each session: generous, because
/// the load generator and the servers share a few cores.
const ZK_SESSION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long after the end of the run outstanding requests may still take
/// before the program gives up on them (so that it always stops).
const DRAIN_GRACE: Duration = Duration::from_secs(60);
/// How long to wait for ZooKeeper sessions to close at the end.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Outstanding creates while the ZooKeeper setup makes the keys.
const ZK_SETUP_DEPTH: usize = 64;

/// What one load task holds to issue requests: a gRPC stub over its
/// session's channel, or an etcd one. (A ZooKeeper session is one task's:
/// [`ZkLoadSession::closed_loop`].)
#[derive(Debug, Clone)]
enum Api {
    Grpc(Arc<Pipeline>),
    GrpcUnary(CoordinationClient<Channel>),
    Etcd(KvClient<Channel>),
}

impl Api {
    async fn create(&mut self, path: String, data: &[u8]) -> anyhow::Result<()> {
        match self {
            Api::Grpc(pipeline) => {
                pipeline
                    .call(Call::Create(create_req(&path, data.to_vec())))
                    .await?;
            }
            Api::GrpcUnary(api) => {
                api.create(create_req(&path, data.to_vec())).await?;
            }
            Api::Etcd(kv) => etcd_create(kv, path, data).await?,
        }
        Ok(())
    }

    async fn set_data(&mut self, path: String, data: &[u8]) -> anyhow::Result<()> {
        match self {
            Api::Grpc(pipeline) => {
                pipeline.call(Call::SetData(set_req(path, data))).await?;
            }
            Api::GrpcUnary(api) => {
                api.set_data(set_req(path, data)).await?;
            }
            Api::Etcd(kv) => {
                kv.put(etcd_put(path, data)).await?;
            }
        }
        Ok(())
    }

    async fn get_data(&mut self, path: String, linearizable: bool) -> anyhow::Result<()> {
        match self {
            Api::Grpc(pipeline) => {
                pipeline
                    .call(Call::GetData(get_req(path, linearizable)))
                    .await?;
            }
            Api::GrpcUnary(api) => {
                api.get_data(get_req(path, linearizable)).await?;
            }
            Api::Etcd(kv) => {
                let reply = kv
                    .range(etcdpb::RangeRequest {
                        key: path.into_bytes(),
                        serializable: !linearizable,
                    })
                    .await?
                    .into_inner();
                // A missing key is an empty answer in etcd, not an error
                // as in ZooKeeper (NoNode) and Synod: count it as one so
                // that the three protocols' error columns mean the same.
                anyhow::ensure!(!reply.kvs.is_empty(), "key not found");
            }
        }
        Ok(())
    }
}

/// etcd has no create: a transaction puts the key only if its
/// create_revision is 0 (it does not exist), and a failed compare is
/// counted as an error, like a ZooKeeper create of an existing znode.
async fn etcd_create(kv: &mut KvClient<Channel>, path: String, data: &[u8]) -> anyhow::Result<()> {
    let key = path.into_bytes();
    let txn = etcdpb::TxnRequest {
        compare: vec![etcdpb::Compare {
            result: etcdpb::compare::CompareResult::Equal as i32,
            target: etcdpb::compare::CompareTarget::Create as i32,
            key: key.clone(),
            target_union: Some(etcdpb::compare::TargetUnion::CreateRevision(0)),
        }],
        success: vec![etcdpb::RequestOp {
            request: Some(etcdpb::request_op::Request::RequestPut(
                etcdpb::PutRequest {
                    key,
                    value: data.to_vec(),
                },
            )),
        }],
    };
    let reply = kv.txn(txn).await?.into_inner();
    anyhow::ensure!(reply.succeeded, "key already exists");
    Ok(())
}

fn etcd_put(path: String, data: &[u8]) -> etcdpb::PutRequest {
    etcdpb::PutRequest {
        key: path.into_bytes(),
        value: data.to_vec(),
    }
}

/// Opens one HTTP/2 connection to an etcd member.
async fn etcd_connect(endpoint: &str) -> anyhow::Result<KvClient<Channel>> {
    let channel = Channel::from_shared(format!("http://{endpoint}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .connect()
        .await
        .with_context(|| format!("cannot connect to etcd at {endpoint}"))?;
    Ok(KvClient::new(channel))
}

/// Opens one ZooKeeper session on `endpoint` (host:port).
async fn zk_connect(endpoint: &str) -> anyhow::Result<ZkLoadSession> {
    let connect = ZkLoadSession::connect(endpoint, ZK_SESSION_TIMEOUT);
    tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .with_context(|| format!("timed out connecting to ZooKeeper at {endpoint}"))?
        .with_context(|| format!("cannot connect to ZooKeeper at {endpoint}"))
}

/// The request a load task makes: what and where.
enum Request {
    Set(String),
    Get(String),
    Create(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ValueFill {
    Repeated,
    Random,
}

/// The values requests write: one value, or windows of a pool of random
/// bytes (seeded, so runs repeat) picked per request.
#[derive(Clone)]
struct Values {
    pool: Arc<[u8]>,
    size: usize,
    random: bool,
}

/// Random bytes in the pool: windows of it picked per request rarely
/// overlap within a compressor's window.
const RANDOM_POOL: usize = 8 << 20;

impl Values {
    fn new(fill: ValueFill, size: usize) -> Self {
        let random = fill == ValueFill::Random;
        let pool: Vec<u8> = if random {
            let mut rng = synod_core::paxos::rng::Rng::new(0x2545_f491_4f6c_dd1d);
            (0..RANDOM_POOL + size)
                .map(|_| (rng.next_u64() >> 32) as u8)
                .collect()
        } else {
            vec![b'x'; size]
        };
        Values {
            pool: pool.into(),
            size,
            random,
        }
    }

    /// The value of request `n` (any number that differs per request).
    fn at(&self, n: u64) -> &[u8] {
        if !self.random {
            return &self.pool[..self.size];
        }
        let at = (n.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 24) as usize % RANDOM_POOL;
        &self.pool[at..at + self.size]
    }
}

/// A number unique to request `i` of place `d` of session `s`.
fn request_number(s: usize, d: usize, i: u64) -> u64 {
    ((s as u64) << 48) ^ ((d as u64) << 40) ^ i
}

/// The `i`th request of place `d` of session `s`: the same sequence of
/// keys for every protocol.
fn request(op: Op, prefix: &str, keys: usize, s: usize, d: usize, i: u64) -> Request {
    let key = || format!("{prefix}/k{}", (i as usize * 7919 + s * 131 + d) % keys);
    match op {
        Op::Set => Request::Set(key()),
        Op::Get => Request::Get(key()),
        Op::Mixed if i.is_multiple_of(10) => Request::Set(key()),
        Op::Mixed => Request::Get(key()),
        Op::Create => Request::Create(format!("{prefix}/c{s}-{d}-{i}")),
    }
}

/// Creates the bench root and, unless the op creates its own nodes, the
/// `keys` nodes that set/get touch. Same layout for every protocol.
async fn setup(
    args: &Args,
    tls: Option<&Arc<synod_tls::Tls>>,
    endpoint: &str,
    prefix: &str,
    values: &Values,
) -> anyhow::Result<()> {
    match args.protocol {
        Protocol::Grpc | Protocol::GrpcUnary => {
            let mut setup = CoordinationClient::new(grpc_channel(endpoint, tls).await?);
            setup
                .create(create_req(prefix, vec![]))
                .await
                .context("cannot create the bench root")?;
            if args.op != Op::Create {
                for k in 0..args.keys {
                    setup
                        .create(create_req(
                            &format!("{prefix}/k{k}"),
                            values.at(k as u64).to_vec(),
                        ))
                        .await?;
                }
            }
            Ok(())
        }
        Protocol::Zookeeper => {
            let mut session = zk_connect(endpoint).await?;
            session
                .call(&zkload::Call::create(prefix, &[]))
                .await
                .and_then(|reply| reply.ok())
                .context("cannot create the bench root")?;
            if args.op != Op::Create {
                // Pipelined on the one session.
                let keys = args.keys as u64;
                let depth = ZK_SETUP_DEPTH as u64;
                let made = session
                    .closed_loop(ZK_SETUP_DEPTH, false, |place, n| {
                        let k = n * depth + place as u64;
                        (k < keys).then(|| {
                            vec![zkload::Call::create(
                                &format!("{prefix}/k{k}"),
                                values.at(k),
                            )]
                        })
                    })
                    .await?;
                if let Some(error) = made.first_error {
                    anyhow::bail!("cannot create a bench key: {error}");
                }
            }
            session
                .close()
                .await
                .context("cannot close the setup session")?;
            Ok(())
        }
        Protocol::Etcd => {
            // etcd's keyspace is flat: there is no root to create, only the
            // keys (the same names as the znodes of the other protocols).
            let kv = etcd_connect(endpoint).await?;
            if args.op != Op::Create {
                let puts = (0..args.keys).map(|k| {
                    let mut kv = kv.clone();
                    let put = etcd_put(format!("{prefix}/k{k}"), values.at(k as u64));
                    async move { kv.put(put).await }
                });
                // Multiplexed on the one connection, as the ZooKeeper path
                // pipelines its creates.
                for result in futures::future::join_all(puts).await {
                    result.context("cannot put a bench key")?;
                }
            }
            Ok(())
        }
    }
}

/// Runs one ZooKeeper session's share of the load with `depth`
/// outstanding, then closes it (bounded), so that the server does not keep
/// it until it expires. Error replies are counted; a lost connection fails
/// the run.
async fn zk_load(
    mut session: ZkLoadSession,
    depth: usize,
    linearizable: bool,
    values: &Values,
    s: usize,
    mut request: impl FnMut(usize, u64) -> Option<Request>,
) -> anyhow::Result<(Vec<u64>, u64, Option<String>)> {
    let outcome = session
        .closed_loop(depth, false, |d, i| {
            let value = values.at(request_number(s, d, i));
            Some(match request(d, i)? {
                Request::Set(key) => vec![zkload::Call::set_data(&key, value)],
                Request::Get(key) if linearizable => {
                    vec![zkload::Call::sync(&key), zkload::Call::get_data(&key)]
                }
                Request::Get(key) => vec![zkload::Call::get_data(&key)],
                Request::Create(path) => vec![zkload::Call::create(&path, value)],
            })
        })
        .await?;
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, session.close()).await;
    Ok((outcome.latencies_us, outcome.errors, outcome.first_error))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.endpoints.is_empty() {
        args.endpoints = vec![
            match args.protocol {
                Protocol::Grpc | Protocol::GrpcUnary => "127.0.0.1:7001",
                Protocol::Zookeeper => "127.0.0.1:2181",
                Protocol::Etcd => "127.0.0.1:2379",
            }
            .to_owned(),
        ];
    }
    anyhow::ensure!(args.keys > 0, "--keys must be at least 1");
    let prefix = format!("/bench-{}", std::process::id());
    let values = Values::new(args.value_fill, args.value_size);
    let tls = args.tls()?;
    setup(&args, tls.as_ref(), &args.endpoints[0], &prefix, &values).await?;
    let deadline = Instant::now() + Duration::from_secs_f64(args.duration);
    let issued = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(OnceLock::<String>::new());
    let started = Instant::now();
    let mut tasks: Vec<tokio::task::JoinHandle<anyhow::Result<Vec<u64>>>> = Vec::new();
    for s in 0..args.sessions {
        let endpoint = &args.endpoints[s % args.endpoints.len()];
        let session = match args.protocol {
            Protocol::Grpc | Protocol::GrpcUnary => {
                let mut api = CoordinationClient::new(grpc_channel(endpoint, tls.as_ref()).await?);
                // Another server may not have applied the keys yet: a sync
                // brings it up to date before the run reads them.
                api.sync(pb::SyncRequest {
                    session_id: 0,
                    path: "/".into(),
                })
                .await
                .with_context(|| format!("cannot sync {endpoint}"))?;
                if args.protocol == Protocol::Grpc {
                    let pipeline = Pipeline::open(api)
                        .await
                        .with_context(|| format!("cannot open a pipeline to {endpoint}"))?;
                    Api::Grpc(Arc::new(pipeline))
                } else {
                    Api::GrpcUnary(api)
                }
            }
            Protocol::Zookeeper => {
                let session = zk_connect(endpoint).await?;
                let issued = issued.clone();
                let errors = errors.clone();
                let first_error = first_error.clone();
                let prefix = prefix.clone();
                let values = values.clone();
                let (op, keys, max, depth) = (args.op, args.keys, args.max_requests, args.depth);
                let linearizable = args.linearizable;
                let go = move |d, i| {
                    (Instant::now() < deadline && issued.fetch_add(1, Ordering::Relaxed) < max)
                        .then(|| request(op, &prefix, keys, s, d, i))
                };
                tasks.push(tokio::spawn(async move {
                    let (latencies, failed, first) =
                        zk_load(session, depth, linearizable, &values, s, go).await?;
                    errors.fetch_add(failed, Ordering::Relaxed);
                    if let Some(first) = first {
                        first_error.get_or_init(|| first);
                    }
                    Ok(latencies)
                }));
                continue;
            }
            Protocol::Etcd => {
                let mut kv = etcd_connect(endpoint).await?;
                // As the sync of the gRPC path: a linearizable read makes
                // this member apply the setup's puts before the run's
                // serializable reads look for them.
                kv.range(etcdpb::RangeRequest {
                    key: format!("{prefix}/k0").into_bytes(),
                    serializable: false,
                })
                .await
                .with_context(|| format!("cannot read from {endpoint}"))?;
                Api::Etcd(kv)
            }
        };
        for d in 0..args.depth {
            let mut api = session.clone();
            let issued = issued.clone();
            let errors = errors.clone();
            let first_error = first_error.clone();
            let prefix = prefix.clone();
            let values = values.clone();
            let (op, keys, max) = (args.op, args.keys, args.max_requests);
            let linearizable = args.linearizable;
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut i: u64 = 0;
                while Instant::now() < deadline && issued.fetch_add(1, Ordering::Relaxed) < max {
                    let t = Instant::now();
                    let value = values.at(request_number(s, d, i));
                    let result = match request(op, &prefix, keys, s, d, i) {
                        Request::Set(key) => api.set_data(key, value).await,
                        Request::Get(key) => api.get_data(key, linearizable).await,
                        Request::Create(path) => api.create(path, value).await,
                    };
                    latencies.push(t.elapsed().as_micros() as u64);
                    if let Err(e) = result {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error.get_or_init(|| format!("{e:#}"));
                    }
                    i += 1;
                }
                Ok(latencies)
            }));
        }
        drop(session);
    }
    let give_up = tokio::time::Instant::from_std(deadline + DRAIN_GRACE);
    let mut all = Vec::new();
    for task in tasks {
        let latencies = tokio::time::timeout_at(give_up, task)
            .await
            .with_context(|| {
                format!(
                    "requests still outstanding {} s after the end of the run",
                    DRAIN_GRACE.as_secs()
                )
            })?;
        all.extend(latencies??);
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
    let mut op = format!("{:?}", args.op).to_lowercase();
    if args.linearizable && matches!(args.op, Op::Get) {
        op.push_str("-linearizable");
    }
    let protocol = args
        .protocol
        .to_possible_value()
        .map_or_else(String::new, |v| v.get_name().to_owned());
    let fill = args
        .value_fill
        .to_possible_value()
        .map_or_else(String::new, |v| v.get_name().to_owned());
    if args.json {
        let line = serde_json::json!({
            "protocol": protocol,
            "op": op, "sessions": args.sessions, "depth": args.depth, "value_size": args.value_size,
            "value_fill": fill,
            "requests": all.len(), "errors": errors, "seconds": elapsed, "ops_per_sec": ops,
            "p50_ms": p50 as f64 / 1000.0, "p99_ms": p99 as f64 / 1000.0, "p999_ms": p999 as f64 / 1000.0,
        });
        writeln_stdout(&line.to_string());
    } else {
        writeln_stdout(&format!(
            "protocol={protocol} op={op} sessions={} depth={} value={}B ({fill}) requests={} errors={errors} seconds={elapsed:.2} ops/s={ops:.0} p50={:.2}ms p99={:.2}ms p999={:.2}ms",
            args.sessions,
            args.depth,
            args.value_size,
            all.len(),
            p50 as f64 / 1000.0,
            p99 as f64 / 1000.0,
            p999 as f64 / 1000.0
        ));
    }
    if let Some(e) = first_error.get() {
        writeln_stderr(&format!(
            "synod-bench: {errors} requests failed; the first: {e}"
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

fn set_req(path: String, data: &[u8]) -> pb::SetDataRequest {
    pb::SetDataRequest {
        session_id: 0,
        path,
        data: data.to_vec(),
        version: -1,
    }
}

fn get_req(path: String, linearizable: bool) -> pb::GetDataRequest {
    pb::GetDataRequest {
        session_id: 0,
        path,
        watch: false,
        linearizable,
    }
}

fn writeln_stdout(line: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
}

fn writeln_stderr(line: &str) {
    use std::io::Write as _;
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}
