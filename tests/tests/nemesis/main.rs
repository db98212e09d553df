//! The mixed nemesis run: three real `synod serve` processes (with data
//! directories, peer links through the harness's proxies) take a random mix
//! of client operations while a seeded nemesis injects overlapping faults;
//! the recorded history must then be linearizable, as
//! `synod_core::lincheck` decides, and the members must have converged.
//!
//! This file owns the run: the clients and what they record, and the run
//! itself; `faults.rs` holds the fault schedule and `checks.rs` the checks
//! at the end and the report of a failure. The fault mechanics (pauses,
//! crashes, cut links and their bookkeeping) are the harness's, in
//! `synod_tests::nemesis`.
//!
//! - Clients: six tokio tasks, each starting on its own node and moving to
//!   the next after any failure, as a ZooKeeper client does. They read
//!   linearizably (`GetData` with `linearizable`), write unconditionally
//!   (`SetData` version -1) and compare-and-set (`SetData` with the version
//!   they last saw) on three registers; create, delete, read and write a
//!   fourth key, which comes and goes; and create sequential nodes under
//!   `/jepsen/seq/`. The four keys are renewed every [`GENERATION`]
//!   (`/jepsen/g<n>-k0` to `-k3`), so that no key's history grows too long
//!   to check in a long campaign. Data is the decimal text of a number
//!   unique to each write, so a read names the write it saw.
//! - History: every operation is recorded before it is sent and completed
//!   with its result, or with a definite failure (`NO_NODE`, `BAD_VERSION`,
//!   `NODE_EXISTS`: the operation did nothing); anything else (a timeout,
//!   a lost connection, `CONNECTION_LOSS`, `UNAVAILABLE`) may or may not
//!   have taken effect and is recorded as unknown. Every call is bounded
//!   by [`CALL`]. Times are microseconds from one `Instant`.
//! - Nemesis: a new fault every one to two seconds, so faults overlap (at
//!   most two in force, at most one of them a process fault, so two nodes
//!   always run): SIGSTOP of the leader or a follower for 1.5-4 s; kill -9
//!   of a node (the leader half the time), restarted from its data
//!   directory 0.5-3 s later; one node cut off from the others for 2-4 s;
//!   one link cut both ways, or one direction of it, for 2-4 s. Then every
//!   fault is undone.
//! - Checks, after the nodes agree on a leader and an applied index:
//!   every node answers a linearizable read of every key of every
//!   generation (these reads are part of the history, so a lost
//!   acknowledged write fails the check); the history is linearizable (a
//!   verdict of `Unknown`, the checker's budget spent, fails too); every
//!   node holds the same data and `Stat` for every key and the same
//!   sequential children; sequential names are unique, each acknowledged
//!   one exists, and their counters grow with real time (a create
//!   acknowledged before another was sent has the smaller counter, so in
//!   particular each client's grow).
//!
//! A failure writes the whole history, the fault timeline and the
//! checker's explanation to a file under the system temp dir and names it
//! in the panic message with the command that replays the seed. The seed
//! fixes the nemesis's draws and every client's choices; which node leads
//! when a fault aimed at the leader starts, and the timing of everything,
//! do not repeat exactly, so a replay reproduces the scenario, not the
//! interleaving.
//!
//! The default run (CI) plays two fixed seeds of [`DEFAULT_FAULT_SECS`]
//! seconds of faults each. A longer campaign:
//!
//! ```sh
//! cargo build --workspace --bins
//! for seed in $(seq 100 120); do
//!   SYNOD_BINARIES_BUILT=1 SYNOD_NEMESIS_SEED=$seed SYNOD_NEMESIS_SECS=120 \
//!     cargo nextest run -p synod-tests --test nemesis || break
//! done
//! ```
//!
//! nextest stops a test after five minutes (`.config/nextest.toml`), so a
//! seed with more than about four minutes of faults runs under `cargo test
//! -p synod-tests --test nemesis -- --nocapture` instead; the history
//! stays decidable however long the run (see [`GENERATION`]).
//!
//! Every wait is bounded and fails with what it waited for; nothing here
//! asserts how fast the ensemble is.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use prost::Message as _;
use synod_core::lincheck::{self, Budget, History, Op, OpId, Ret, Verdict, Znode};
use synod_proto::v1 as pb;
use synod_proto::v1::coordination_client::CoordinationClient;
use synod_tests::nemesis::{
    Faults, coordination, leader_now, links_between, status, wait_converged, wait_leader,
};
use synod_tests::{Ensemble, TempDir};
use tonic::transport::Channel;

mod checks;
mod faults;

use checks::{check_sequential, check_views, fail, fail_with_states, node_states, summary};
use faults::nemesis;

type Api = CoordinationClient<Channel>;

/// The seeds of the default run, played back to back.
const DEFAULT_SEEDS: [u64; 2] = [1, 2];
/// Seconds of faults per seed in the default run: two seeds of this, with
/// start, healing and the checks, stay within a minute on two cores.
const DEFAULT_FAULT_SECS: u64 = 15;

/// Concurrent clients.
const CLIENTS: usize = 6;
/// Registers of a generation: always there, read, written and
/// compare-and-set. After them each generation has one fleeting key,
/// created and deleted as well.
const REGISTERS: usize = 3;
/// How long the clients use one generation of keys before they move to
/// the next. The checker's search grows with a key's operations of
/// unknown outcome, and creates and deletes of unknown outcome make it
/// grow fastest: keys that live a bounded time keep a long campaign as
/// decidable as a short run. Lost and stale writes still show, since the
/// final reads cover every generation's keys.
const GENERATION: Duration = Duration::from_secs(10);
const ROOT: &str = "/jepsen";
const SEQ_PARENT: &str = "/jepsen/seq";
const SEQ_PREFIX: &str = "/jepsen/seq/s-";

/// One client call, from sending to its answer.
const CALL: Duration = Duration::from_secs(2);
/// Longest pause between a client's operations (drawn from 0 to this):
/// keeps the history a few thousand operations long, which the checker
/// decides in about a second even with the unknown outcomes faults leave.
const THINK_MS: u64 = 8;
/// How long a client waits after a failed call before the next.
const BACKOFF_MS: u64 = 50;
/// Every node answers `/readyz` with 200.
const READY: Duration = Duration::from_secs(60);
/// The nodes agree on a leader once every fault is undone.
const ELECTION: Duration = Duration::from_secs(30);
/// Set-up writes and the final reads succeed, retried.
const RETRY: Duration = Duration::from_secs(30);
/// The nodes agree on a leader and an applied index.
const CONVERGE: Duration = Duration::from_secs(60);
/// Clients keep going this long after healing, so the history ends with
/// operations on a whole ensemble.
const CALM: Duration = Duration::from_secs(1);
/// Process ids of the final reads: this plus the node id.
const FINAL_PROCESS: u64 = 100;

/// The keys of generation `generation`: the registers, then the fleeting
/// key.
fn generation_keys(generation: usize) -> Vec<String> {
    (0..=REGISTERS)
        .map(|i| format!("{ROOT}/g{generation}-k{i}"))
        .collect()
}

/// The flags of every node.
const FLAGS: [&str; 10] = [
    "--election-timeout-ms",
    "1000",
    "--heartbeat-ms",
    "100",
    // A request stuck without a leader is answered (CONNECTION_LOSS)
    // instead of occupying the node for the default ten seconds.
    "--request-timeout-ms",
    "4000",
    // Snapshots every few hundred writes, so that restarts recover from a
    // snapshot and a log, and a node that was down may be sent one.
    "--snapshot-every-txns",
    "300",
    "--snapshot-txns-per-znode",
    "0",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_faults_leave_a_linearizable_history() {
    let (seeds, secs) = settings();
    for seed in seeds {
        run(seed, secs).await;
    }
}

/// The seeds and fault seconds to run: `SYNOD_NEMESIS_SEED` (decimal or
/// 0x-hex) for one seed, `SYNOD_NEMESIS_SECS` for the fault time.
fn settings() -> (Vec<u64>, u64) {
    let seeds = match std::env::var("SYNOD_NEMESIS_SEED") {
        Ok(text) => vec![parse_number(&text).unwrap_or_else(|| {
            panic!("SYNOD_NEMESIS_SEED={text:?} is not a number (decimal or 0x-hex)")
        })],
        Err(_) => DEFAULT_SEEDS.to_vec(),
    };
    let secs = match std::env::var("SYNOD_NEMESIS_SECS") {
        Ok(text) => parse_number(&text)
            .unwrap_or_else(|| panic!("SYNOD_NEMESIS_SECS={text:?} is not a number")),
        Err(_) => DEFAULT_FAULT_SECS,
    };
    (seeds, secs)
}

fn parse_number(text: &str) -> Option<u64> {
    let text = text.trim().replace('_', "");
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

fn replay_command(seed: u64, secs: u64) -> String {
    let secs = if secs == DEFAULT_FAULT_SECS {
        String::new()
    } else {
        format!("SYNOD_NEMESIS_SECS={secs} ")
    };
    format!("SYNOD_NEMESIS_SEED={seed} {secs}cargo nextest run -p synod-tests --test nemesis")
}

/// A tiny seeded generator (SplitMix64): the same seed, the same choices.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0; the bias is far below what matters).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// A duration between `lo` and `hi` milliseconds.
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }

    /// An independent generator for part `part` of the run (the nemesis,
    /// each client), so that one part's draws do not shift another's.
    fn fork(seed: u64, part: u64) -> Rng {
        let mut rng = Rng::new(seed ^ part.wrapping_mul(0xD6E8_FEB8_6659_FD93));
        Rng::new(rng.next())
    }
}

/// Runs a blocking harness call (signals, process start, HTTP polls)
/// without stalling the clients' tasks.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    tokio::task::block_in_place(f)
}

// ---------------------------------------------------------------------
// The record of a run.

/// How an operation ended, as the file of a failed run shows it.
#[derive(Debug, Clone)]
enum End {
    Pending,
    Done(Ret, u64),
    Unknown(String, u64),
}

#[derive(Debug)]
struct Entry {
    process: u64,
    node: usize,
    key: String,
    op: Op,
    call: u64,
    end: End,
}

/// A sequential create: the name it got, or why there is none.
#[derive(Debug)]
struct SeqEntry {
    process: u64,
    node: usize,
    call: u64,
    end: Option<(Result<String, String>, u64)>,
}

/// Everything recorded, behind one lock so the history's invocation order
/// is the order of the recorded times.
#[derive(Debug, Default)]
struct Book {
    history: History,
    /// The same operations as `history`, by rank, for the report.
    entries: Vec<Entry>,
    seq: Vec<SeqEntry>,
    /// The nemesis's and the run's steps: (time, what).
    events: Vec<(u64, String)>,
    /// Answers no correct server gives (undecodable data, a reply without
    /// its `Stat`); each fails the run.
    anomalies: Vec<String>,
    faults: usize,
}

#[derive(Debug)]
struct Shared {
    seed: u64,
    secs: u64,
    /// Every generation's keys (see [`GENERATION`]), enough for the run.
    keys: Vec<Vec<String>>,
    start: Instant,
    stop: AtomicBool,
    /// The next value to write: unique across the run.
    next_value: AtomicU64,
    book: Mutex<Book>,
}

impl Shared {
    fn new(seed: u64, secs: u64) -> Shared {
        // The clients run for the fault time, the healing and the calm
        // after it; the last generation takes whatever time is left over.
        let generations = usize::try_from(secs / GENERATION.as_secs() + 2).unwrap_or(2);
        Shared {
            seed,
            secs,
            keys: (0..generations).map(generation_keys).collect(),
            start: Instant::now(),
            stop: AtomicBool::new(false),
            next_value: AtomicU64::new(1),
            book: Mutex::new(Book::default()),
        }
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        // A panicking client must not hide the record of the others.
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Microseconds since the run started.
    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn value(&self) -> u64 {
        self.next_value.fetch_add(1, Ordering::SeqCst)
    }

    /// Records an invocation; call it before the request is sent.
    fn invoke(&self, process: u64, node: usize, key: &str, op: Op) -> OpId {
        let mut book = self.book();
        let call = self.now();
        let id = book.history.invoke(process, key, op, call);
        book.entries.push(Entry {
            process,
            node,
            key: key.to_owned(),
            op,
            call,
            end: End::Pending,
        });
        id
    }

    /// Records an operation's end; call it after the answer arrived.
    fn end(&self, id: OpId, outcome: &Outcome) {
        let mut book = self.book();
        let at = self.now();
        let end = match outcome {
            Outcome::Done(ret) => {
                book.history.complete(id, *ret, at);
                End::Done(*ret, at)
            }
            Outcome::Unknown(why) => {
                book.history.unknown(id);
                End::Unknown(why.clone(), at)
            }
            Outcome::Anomaly(what) => {
                book.history.unknown(id);
                book.anomalies.push(format!("op #{}: {what}", id.index()));
                End::Unknown(format!("anomaly: {what}"), at)
            }
        };
        if let Some(entry) = book.entries.get_mut(id.index()) {
            entry.end = end;
        }
    }

    /// Records a step of the run, and tells it as it happens: nextest shows
    /// a failed test's stderr, and the timeline explains the failure.
    #[allow(clippy::print_stderr, reason = "the run's timeline, shown on failure")]
    fn event(&self, what: String) {
        let at = self.now();
        eprintln!("[{:>9.3} s] {what}", at as f64 / 1e6);
        self.book().events.push((at, what));
    }
}

// ---------------------------------------------------------------------
// Calls and their outcomes.

/// What became of one call.
#[derive(Debug, Clone)]
enum Outcome {
    /// An answer, or a failure that says the operation did nothing.
    Done(Ret),
    /// It may or may not have taken effect.
    Unknown(String),
    /// An answer no correct server gives; unknown for the checker.
    Anomaly(String),
}

/// The error code in a failed call's `ErrorDetail`; `None` for a failure
/// of the transport (no detail).
fn code_of(status: &tonic::Status) -> Option<pb::ErrorCode> {
    // Empty details decode to code 0 (OK); they are no detail.
    if status.details().is_empty() {
        return None;
    }
    let detail = pb::ErrorDetail::decode(status.details()).ok()?;
    pb::ErrorCode::try_from(detail.code).ok()
}

/// A failed call: definite only for the errors that the state machine
/// gives when it applies (or refuses) the operation; anything else may
/// come after the operation took effect.
fn failed(status: &tonic::Status) -> Outcome {
    match code_of(status) {
        Some(pb::ErrorCode::NoNode) => Outcome::Done(Ret::NoNode),
        Some(pb::ErrorCode::BadVersion) => Outcome::Done(Ret::BadVersion),
        Some(pb::ErrorCode::NodeExists) => Outcome::Done(Ret::NodeExists),
        code => {
            let code = code.map_or_else(|| "no detail".to_owned(), |c| format!("{c:?}"));
            Outcome::Unknown(format!("{:?}/{code}: {}", status.code(), status.message()))
        }
    }
}

/// Awaits `call` for at most [`CALL`] and maps its reply with `answer`.
async fn bounded<T>(
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    answer: impl FnOnce(T) -> Outcome,
) -> Outcome {
    match tokio::time::timeout(CALL, call).await {
        Ok(Ok(reply)) => answer(reply.into_inner()),
        Ok(Err(status)) => failed(&status),
        Err(_) => Outcome::Unknown(format!("no answer within {CALL:?}")),
    }
}

/// The number a znode's data holds.
fn decode(data: &[u8]) -> Result<u64, String> {
    std::str::from_utf8(data)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| format!("data {:?} is no value any client wrote", data))
}

fn read_request(key: &str, linearizable: bool) -> pb::GetDataRequest {
    pb::GetDataRequest {
        session_id: 0,
        path: key.into(),
        watch: false,
        linearizable,
    }
}

/// Sends `op` on `key` through `api` and tells what came of it. The
/// request is sent only when the returned future is first polled.
async fn execute(api: &mut Api, key: &str, op: Op) -> Outcome {
    let set = |value: u64, version: i32| pb::SetDataRequest {
        session_id: 0,
        path: key.into(),
        data: value.to_string().into_bytes(),
        version,
    };
    let set_answer = |reply: pb::SetDataResponse| match reply.stat {
        Some(stat) => Outcome::Done(Ret::Set {
            version: stat.version,
        }),
        None => Outcome::Anomaly("SetData answered without a Stat".into()),
    };
    match op {
        Op::Read => {
            bounded(api.get_data(read_request(key, true)), |reply| {
                match (reply.stat, decode(&reply.data)) {
                    (Some(stat), Ok(value)) => Outcome::Done(Ret::Read(Some(Znode {
                        value,
                        version: stat.version,
                    }))),
                    (None, _) => Outcome::Anomaly("GetData answered without a Stat".into()),
                    (_, Err(error)) => Outcome::Anomaly(error),
                }
            })
            .await
        }
        Op::Write { value } => bounded(api.set_data(set(value, -1)), set_answer).await,
        Op::Cas {
            expected_version,
            value,
        } => bounded(api.set_data(set(value, expected_version)), set_answer).await,
        Op::Create { value } => {
            let request = pb::CreateRequest {
                session_id: 0,
                path: key.into(),
                data: value.to_string().into_bytes(),
                acl: vec![],
                mode: pb::CreateMode::Persistent as i32,
                ttl_ms: 0,
            };
            bounded(api.create(request), |_| Outcome::Done(Ret::Ok)).await
        }
        Op::Delete { expected_version } => {
            let request = pb::DeleteRequest {
                session_id: 0,
                path: key.into(),
                version: expected_version.unwrap_or(-1),
            };
            bounded(api.delete(request), |_| Outcome::Done(Ret::Ok)).await
        }
    }
}

// ---------------------------------------------------------------------
// Clients.

/// One client: random operations until told to stop, each recorded.
async fn client(shared: Arc<Shared>, process: usize, addrs: Vec<SocketAddr>, origin: Instant) {
    let mut rng = Rng::fork(shared.seed, 1 + process as u64);
    let mut apis = Vec::with_capacity(addrs.len());
    for &addr in &addrs {
        match coordination(addr) {
            Ok(api) => apis.push(api),
            Err(error) => {
                shared
                    .book()
                    .anomalies
                    .push(format!("client {process}: no channel to {addr}: {error:#}"));
                return;
            }
        }
    }
    let pid = process as u64;
    let mut at = process % apis.len();
    // The version this client last saw of each key: what its CAS expects.
    let mut versions: HashMap<&str, i32> = HashMap::new();
    while !shared.stop.load(Ordering::SeqCst) {
        let api = &mut apis[at];
        let node = at + 1;
        let roll = rng.below(100);
        let ok = if roll < 8 {
            sequential_create(&shared, pid, node, api).await
        } else {
            let generation = usize::try_from(origin.elapsed().as_secs() / GENERATION.as_secs())
                .unwrap_or(usize::MAX)
                .min(shared.keys.len() - 1);
            let keys = &shared.keys[generation];
            let fleeting = roll >= 80;
            let key = if fleeting {
                keys[REGISTERS].as_str()
            } else {
                keys[rng.below(REGISTERS as u64) as usize].as_str()
            };
            let known = versions.get(key).copied();
            let op = choose_op(&mut rng, &shared, fleeting, known);
            let id = shared.invoke(pid, node, key, op);
            let outcome = execute(api, key, op).await;
            shared.end(id, &outcome);
            match outcome {
                Outcome::Done(ret) => {
                    match (op, ret) {
                        (_, Ret::Read(Some(z))) => {
                            versions.insert(key, z.version);
                        }
                        (Op::Create { .. }, Ret::Ok) => {
                            versions.insert(key, 0);
                        }
                        (_, Ret::Set { version }) => {
                            versions.insert(key, version);
                        }
                        (_, Ret::Read(None) | Ret::NoNode) | (Op::Delete { .. }, Ret::Ok) => {
                            versions.remove(key);
                        }
                        _ => {}
                    }
                    true
                }
                Outcome::Unknown(_) | Outcome::Anomaly(_) => false,
            }
        };
        // After a failure the client tries the next node, as a ZooKeeper
        // client does; now and then it moves anyway, so every client sees
        // every node.
        if !ok || rng.below(100) < 3 {
            at = (at + 1) % apis.len();
        }
        // And it backs off a little, as a client does, so that a node that
        // refuses at once (killed, no leader) does not fill the history
        // with writes of unknown outcome, which only slow the checker.
        let pause = if ok { 0 } else { BACKOFF_MS } + rng.below(THINK_MS + 1);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// An operation for a key whose version this client last saw as `known`.
fn choose_op(rng: &mut Rng, shared: &Shared, fleeting: bool, known: Option<i32>) -> Op {
    let roll = rng.below(100);
    // A client that knows no version guesses a small one: usually wrong,
    // which exercises BAD_VERSION.
    let expected = known.unwrap_or_else(|| rng.below(3) as i32);
    if fleeting {
        match roll {
            0..30 => Op::Read,
            30..55 => Op::Create {
                value: shared.value(),
            },
            55..65 => Op::Delete {
                expected_version: None,
            },
            65..75 => Op::Delete {
                expected_version: Some(expected),
            },
            75..85 => Op::Write {
                value: shared.value(),
            },
            _ => Op::Cas {
                expected_version: expected,
                value: shared.value(),
            },
        }
    } else {
        match roll {
            0..45 => Op::Read,
            45..65 => Op::Write {
                value: shared.value(),
            },
            _ => Op::Cas {
                expected_version: expected,
                value: shared.value(),
            },
        }
    }
}

/// Creates a sequential node under [`SEQ_PARENT`]; whether it got an
/// answer.
async fn sequential_create(shared: &Shared, process: u64, node: usize, api: &mut Api) -> bool {
    let index = {
        let mut book = shared.book();
        let call = shared.now();
        book.seq.push(SeqEntry {
            process,
            node,
            call,
            end: None,
        });
        book.seq.len() - 1
    };
    let request = pb::CreateRequest {
        session_id: 0,
        path: SEQ_PREFIX.into(),
        data: vec![],
        acl: vec![],
        mode: pb::CreateMode::PersistentSequential as i32,
        ttl_ms: 0,
    };
    let result = match tokio::time::timeout(CALL, api.create(request)).await {
        Ok(Ok(reply)) => Ok(reply.into_inner().path),
        Ok(Err(status)) => Err(format!(
            "{:?} {:?}: {}",
            status.code(),
            code_of(&status),
            status.message()
        )),
        Err(_) => Err(format!("no answer within {CALL:?}")),
    };
    let ok = result.is_ok();
    let mut book = shared.book();
    let at = shared.now();
    book.seq[index].end = Some((result, at));
    ok
}

/// Creates `path` with `data` through any node, retried until [`RETRY`]
/// passes; an earlier attempt may have been applied, so `NODE_EXISTS`
/// after one counts as done.
async fn create_on_any(shared: &Shared, apis: &mut [Api], path: &str, data: &[u8]) {
    let deadline = Instant::now() + RETRY;
    let mut attempted = false;
    for attempt in 0.. {
        let request = pb::CreateRequest {
            session_id: 0,
            path: path.into(),
            data: data.to_vec(),
            acl: vec![],
            mode: pb::CreateMode::Persistent as i32,
            ttl_ms: 0,
        };
        let api = &mut apis[attempt % apis.len()];
        let error = match tokio::time::timeout(CALL, api.create(request)).await {
            Ok(Ok(_)) => return,
            Ok(Err(status)) if attempted && code_of(&status) == Some(pb::ErrorCode::NodeExists) => {
                return;
            }
            Ok(Err(status)) => format!("{status:?}"),
            Err(_) => format!("no answer within {CALL:?}"),
        };
        attempted = true;
        if Instant::now() >= deadline {
            fail(
                shared,
                &[format!(
                    "creating {path} did not succeed within {RETRY:?}; last error: {error}"
                )],
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A linearizable read of `key` at `api` (node `node`), retried until it
/// answers; each attempt is part of the history when `process` is given.
async fn read_until_answered(
    shared: &Shared,
    api: &mut Api,
    node: usize,
    key: &str,
    process: Option<u64>,
) -> Result<Option<Znode>, String> {
    let deadline = Instant::now() + RETRY;
    loop {
        let id = process.map(|p| shared.invoke(p, node, key, Op::Read));
        let outcome = execute(api, key, Op::Read).await;
        if let Some(id) = id {
            shared.end(id, &outcome);
        }
        let why = match outcome {
            Outcome::Done(Ret::Read(state)) => return Ok(state),
            Outcome::Done(Ret::NoNode) => return Ok(None),
            other => format!("{other:?}"),
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "node {node} did not answer a linearizable read of {key} within {RETRY:?} of \
                 healing; last: {why}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What one node holds for every key and the sequential children, read
/// without a barrier: the nodes have converged, so all must agree.
#[derive(Debug, PartialEq)]
struct NodeView {
    keys: BTreeMap<String, Result<(Vec<u8>, pb::Stat), String>>,
    seq_children: Result<Vec<String>, String>,
}

async fn local_view(shared: &Shared, api: &mut Api) -> NodeView {
    let mut keys = BTreeMap::new();
    for key in shared.keys.iter().flatten() {
        let view = match tokio::time::timeout(CALL, api.get_data(read_request(key, false))).await {
            Ok(Ok(reply)) => {
                let reply = reply.into_inner();
                match reply.stat {
                    Some(stat) => Ok((reply.data, stat)),
                    None => Err("no Stat".into()),
                }
            }
            Ok(Err(status)) => Err(format!("{:?}", code_of(&status))),
            Err(_) => Err(format!("no answer within {CALL:?}")),
        };
        keys.insert(key.clone(), view);
    }
    let request = pb::GetChildrenRequest {
        session_id: 0,
        path: SEQ_PARENT.into(),
        watch: false,
        linearizable: false,
    };
    let seq_children = match tokio::time::timeout(CALL, api.get_children(request)).await {
        Ok(Ok(reply)) => Ok(reply.into_inner().children),
        Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
        Err(_) => Err(format!("no answer within {CALL:?}")),
    };
    NodeView { keys, seq_children }
}

/// One seeded run; panics with the seed and a report file on failure.
#[allow(clippy::print_stderr, reason = "the seed and the counts of the run")]
async fn run(seed: u64, secs: u64) {
    eprintln!(
        "nemesis run: seed {seed}, {secs} s of faults; replay with `{}`",
        replay_command(seed, secs)
    );
    let shared = Arc::new(Shared::new(seed, secs));
    let dir = TempDir::new(&format!("nemesis-{seed}"))
        .unwrap_or_else(|error| fail(&shared, &[format!("temp dir: {error:#}")]));
    let mut ensemble = blocking(|| Ensemble::start_proxied(3, &FLAGS, Some(dir.path())))
        .unwrap_or_else(|error| fail(&shared, &[format!("starting the ensemble: {error:#}")]));
    blocking(|| ensemble.wait_ready(READY))
        .unwrap_or_else(|error| fail(&shared, &[format!("the ensemble is not ready: {error:#}")]));
    let ids = ensemble.ids();
    // The nodes' logs name a link by its proxy's address.
    let links: Vec<String> = ids
        .iter()
        .flat_map(|&from| ids.iter().map(move |&to| (from, to)))
        .filter(|(from, to)| from != to)
        .map(|(from, to)| {
            let proxy = ensemble.link(from, to);
            format!("{from}->{to} at {} (to {})", proxy.addr(), proxy.target())
        })
        .collect();
    shared.event(format!("peer links: {}", links.join(", ")));
    let addrs: Vec<SocketAddr> = ids.iter().map(|&id| ensemble.client_addr(id)).collect();
    let mut apis: Vec<Api> = addrs
        .iter()
        .map(|&addr| {
            coordination(addr).unwrap_or_else(|error| fail(&shared, &[format!("{error:#}")]))
        })
        .collect();

    // Set-up, while the ensemble is whole: the parents, and every
    // generation's registers, each with a first value. Their initial
    // states are read back, not assumed, since a retried create may have
    // met its own first attempt. The fleeting keys start absent.
    create_on_any(&shared, &mut apis, ROOT, b"").await;
    create_on_any(&shared, &mut apis, SEQ_PARENT, b"").await;
    for keys in &shared.keys {
        for key in &keys[..REGISTERS] {
            let value = shared.value();
            create_on_any(&shared, &mut apis, key, value.to_string().as_bytes()).await;
            let initial = read_until_answered(&shared, &mut apis[0], 1, key, None)
                .await
                .unwrap_or_else(|why| fail(&shared, &[why]));
            shared.book().history.set_initial(key, initial);
        }
        shared.book().history.set_initial(&keys[REGISTERS], None);
    }
    shared.event(format!(
        "set-up done ({} generations of keys); clients start",
        shared.keys.len()
    ));

    let origin = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|process| tokio::spawn(client(Arc::clone(&shared), process, addrs.clone(), origin)))
        .collect();
    nemesis(&mut ensemble, &shared, secs).await;

    if let Err(error) = wait_leader(&ensemble, &ids, ELECTION).await {
        fail_with_states(&shared, &ensemble, format!("after healing: {error:#}")).await;
    }
    tokio::time::sleep(CALM).await;
    shared.stop.store(true, Ordering::SeqCst);
    for client in clients {
        // Each call is bounded, so a client stops within one call and a
        // pause.
        match tokio::time::timeout(CALL * 5, client).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => fail(&shared, &[format!("a client task failed: {error}")]),
            Err(_) => fail(&shared, &["a client did not stop".into()]),
        }
    }
    shared.event("clients stopped".into());
    if let Err(error) = wait_converged(&ensemble, CONVERGE).await {
        fail_with_states(&shared, &ensemble, format!("after healing: {error:#}")).await;
    }
    shared.event(format!(
        "nodes converged: {}",
        node_states(&ensemble).await.join("; ")
    ));

    // Final reads: linearizable on every node (part of the history), then
    // every node's local state.
    for (i, &id) in ids.iter().enumerate() {
        for key in shared.keys.iter().flatten() {
            let process = Some(FINAL_PROCESS + id as u64);
            if let Err(why) = read_until_answered(&shared, &mut apis[i], id, key, process).await {
                fail_with_states(&shared, &ensemble, why).await;
            }
        }
    }
    let mut views = Vec::new();
    for (i, &id) in ids.iter().enumerate() {
        views.push((id, local_view(&shared, &mut apis[i]).await));
    }

    let mut problems = Vec::new();
    problems.extend(shared.book().anomalies.iter().cloned());
    check_views(&views, &mut problems);
    check_sequential(&shared, &views, &mut problems);
    let started = Instant::now();
    let verdict = {
        let book = shared.book();
        blocking(|| lincheck::check(&book.history, Budget::default()))
    };
    let checked_in = started.elapsed();
    let mut explanation = None;
    match verdict {
        Verdict::Linearizable => {}
        Verdict::NotLinearizable {
            key,
            explanation: why,
        } => {
            problems.push(format!("the history of {key} is not linearizable"));
            explanation = Some(why);
        }
        Verdict::Unknown { key } => problems.push(format!(
            "the checker ran out of budget ({:?}) on {key}: no verdict, which fails the run; \
             a shorter run (SYNOD_NEMESIS_SECS) or fewer unknown outcomes make it decidable",
            Budget::default()
        )),
    }
    if !problems.is_empty() {
        if let Some(why) = &explanation {
            problems.push(why.clone());
        }
        fail(&shared, &problems);
    }
    eprintln!(
        "nemesis run: seed {seed} passed: {} (checked in {checked_in:?})",
        summary(&shared.book())
    );
}
