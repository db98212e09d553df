//! The fault suite: real `synod serve` processes on loopback, with faults
//! injected from outside (process pauses, peer links cut through the
//! harness's proxies; see `synod_tests::nemesis`), each test checking one
//! guarantee that must hold through the fault:
//!
//! - a leader paused past its lease, and replaced while it was stopped,
//!   does not answer a linearizable read from its old state when it
//!   resumes;
//! - a follower cut off from the leader stops acknowledging keep-alives of
//!   its clients' sessions before the leader expires them, so no client
//!   is told its session lives after its ephemeral nodes are gone.
//!
//! Every wait is bounded and fails with what it waited for; nothing here
//! asserts how fast the ensemble is, only the order of events. The mixed
//! nemesis run with a linearizability check of its history is
//! `tests/tests/nemesis/`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prost::Message as _;
use synod_proto::v1 as pb;
use synod_proto::v1::coordination_client::CoordinationClient;
use synod_tests::Ensemble;
use synod_tests::nemesis::{Cut, Paused, coordination, status, wait_leader};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

type Api = CoordinationClient<Channel>;

/// Every node answers `/readyz` with 200.
const READY: Duration = Duration::from_secs(30);
/// The nodes asked agree on a leader, also after the old one is gone.
const ELECTION: Duration = Duration::from_secs(15);
/// One write succeeds, retried while the ensemble cannot take it.
const WRITE: Duration = Duration::from_secs(15);
/// One call to a running node.
const CALL: Duration = Duration::from_secs(2);

/// The election timeout every node runs with (passed explicitly, so that
/// the pauses below are long enough whatever the default becomes).
const ELECTION_TIMEOUT: Duration = Duration::from_millis(1000);

/// Runs a blocking harness call (process start, signals, HTTP polls)
/// without stalling the runtime's other tasks.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    tokio::task::block_in_place(f)
}

/// Awaits one gRPC call for at most `limit`: its reply, or what went wrong
/// (the status, or that no answer came in time).
async fn within<T>(
    limit: Duration,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(reply)) => Ok(reply.into_inner()),
        Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
        Err(_) => Err(format!("no answer within {limit:?}")),
    }
}

/// The error code in a failed call's `ErrorDetail`; `None` for a failure
/// of the transport (no detail).
fn code_of(status: &tonic::Status) -> Option<pb::ErrorCode> {
    let detail = pb::ErrorDetail::decode(status.details()).ok()?;
    pb::ErrorCode::try_from(detail.code).ok()
}

fn api(ensemble: &Ensemble, id: usize) -> Api {
    coordination(ensemble.client_addr(id)).expect("client channel")
}

fn get_request(path: &str, linearizable: bool) -> pb::GetDataRequest {
    pb::GetDataRequest {
        session_id: 0,
        path: path.into(),
        watch: false,
        linearizable,
    }
}

/// Creates `path` through the first of `apis` that takes it, retried until
/// `WRITE` passes. A failed attempt may still have been applied, so
/// `NODE_EXISTS` after one counts as success.
async fn create_on_any(apis: &mut [(usize, Api)], path: &str) {
    let deadline = Instant::now() + WRITE;
    let mut attempted = false;
    let mut target = 0;
    loop {
        let (id, api) = &mut apis[target];
        let request = pb::CreateRequest {
            session_id: 0,
            path: path.into(),
            data: vec![],
            acl: vec![],
            mode: pb::CreateMode::Persistent as i32,
            ttl_ms: 0,
        };
        let error = match tokio::time::timeout(CALL, api.create(request)).await {
            Ok(Ok(_)) => return,
            Ok(Err(status)) if attempted && code_of(&status) == Some(pb::ErrorCode::NodeExists) => {
                return;
            }
            Ok(Err(status)) => format!("node {id}: {status:?}"),
            Err(_) => format!("node {id}: no answer within {CALL:?}"),
        };
        attempted = true;
        assert!(
            Instant::now() < deadline,
            "creating {path} did not succeed within {WRITE:?}; last error: {error}"
        );
        target = (target + 1) % apis.len();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sets `path` to `data` (any version) through the first of `apis` that
/// takes it, retried until `WRITE` passes; returns the version the
/// acknowledging node reported.
async fn set_on_any(apis: &mut [(usize, Api)], path: &str, data: &[u8]) -> i32 {
    let deadline = Instant::now() + WRITE;
    let mut target = 0;
    loop {
        let (id, api) = &mut apis[target];
        let request = pb::SetDataRequest {
            session_id: 0,
            path: path.into(),
            data: data.to_vec(),
            version: -1,
        };
        let error = match within(CALL, api.set_data(request)).await {
            Ok(reply) => return reply.stat.expect("SetData answers with a Stat").version,
            Err(error) => format!("node {id}: {error}"),
        };
        assert!(
            Instant::now() < deadline,
            "setting {path} did not succeed within {WRITE:?}; last error: {error}"
        );
        target = (target + 1) % apis.len();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Rounds of the paused-leader scenario in one test; the leader of each
/// round is whoever leads when it starts.
const PAUSE_ROUNDS: usize = 3;
/// Writes acknowledged by the new leader while the old one is stopped.
const WRITES_WHILE_PAUSED: usize = 5;
/// How long the read is given to reach the paused process's socket before
/// it resumes: the read must come after every acknowledged write.
const READ_SENT: Duration = Duration::from_millis(300);
/// How long the paused leader's links stay cut after it resumes, in the
/// rounds that hold them back.
const HELD_BACK_AFTER_RESUME: Duration = Duration::from_secs(1);
/// From the read's start (which includes the pause) to its answer.
const READ_LIMIT: Duration = Duration::from_secs(20);

/// A leader stopped with SIGSTOP for three election timeouts is replaced,
/// and the new leader acknowledges writes to `/k`. A linearizable read of
/// `/k` is then sent to the stopped old leader (it waits in the kernel's
/// socket buffer) and the old leader resumed: the read must fail or see
/// every acknowledged write, never answer from the old leader's state
/// under a lease that ran out while it was stopped.
///
/// Even rounds (the first and the last) also cut the old leader's peer
/// links as it stops and heal them a second after it resumes, as a
/// network that delays the new leader's messages would: then the read is
/// the first thing the resumed node handles, and only its own clock can
/// tell it that its lease is gone. In the odd round the read races the new
/// leader's messages queued in the same buffers, which the old leader may
/// or may not handle first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_leader_serves_no_stale_linearizable_read() {
    let election_ms = ELECTION_TIMEOUT.as_millis().to_string();
    let flags = [
        "--election-timeout-ms",
        election_ms.as_str(),
        "--heartbeat-ms",
        "100",
        // A read or write the ensemble cannot serve fails in this time, so
        // a read stuck at the resumed old leader ends within the test.
        "--request-timeout-ms",
        "4000",
    ];
    let ensemble =
        blocking(|| Ensemble::start_proxied(3, &flags, None)).expect("the ensemble starts");
    blocking(|| ensemble.wait_ready(READY)).expect("the ensemble is ready");
    let ids = ensemble.ids();
    let mut all: Vec<(usize, Api)> = ids.iter().map(|&id| (id, api(&ensemble, id))).collect();
    create_on_any(&mut all, "/k").await;

    for round in 0..PAUSE_ROUNDS {
        let hold_back = round % 2 == 0;
        let old = wait_leader(&ensemble, &ids, ELECTION)
            .await
            .unwrap_or_else(|error| panic!("round {round}: {error:#}"));
        let others: Vec<usize> = ids.iter().copied().filter(|&id| id != old).collect();

        // The connection to the old leader is opened now, while it runs, so
        // that the read later only has to be written into an open socket.
        // This read also brings the old leader up to date.
        let mut stale = api(&ensemble, old);
        let before = within(CALL, stale.get_data(get_request("/k", true)))
            .await
            .unwrap_or_else(|error| {
                panic!("round {round}: linearizable read on leader {old} before the pause: {error}")
            })
            .stat
            .expect("GetData answers with a Stat")
            .version;

        let paused = blocking(|| Paused::pause(&ensemble, old))
            .unwrap_or_else(|error| panic!("round {round}: {error:#}"));
        let paused_at = Instant::now();
        let cut = hold_back.then(|| Cut::isolate(&ensemble, old));

        let new = wait_leader(&ensemble, &others, ELECTION)
            .await
            .unwrap_or_else(|error| panic!("round {round}: with leader {old} paused: {error:#}"));
        let mut writers: Vec<(usize, Api)> = std::iter::once(new)
            .chain(others.iter().copied().filter(|&id| id != new))
            .map(|id| (id, api(&ensemble, id)))
            .collect();
        let mut acked = before;
        for i in 0..WRITES_WHILE_PAUSED {
            let data = format!("round {round} write {i}");
            acked = acked.max(set_on_any(&mut writers, "/k", data.as_bytes()).await);
        }
        assert!(
            acked > before,
            "round {round}: the writes while {old} was paused were acknowledged \
             (versions {before} -> {acked})"
        );

        let read = tokio::spawn(async move {
            tokio::time::timeout(READ_LIMIT, stale.get_data(get_request("/k", true))).await
        });
        tokio::time::sleep(READ_SENT).await;
        // At least three election timeouts, so that any lease the old
        // leader held has surely run out in real time.
        tokio::time::sleep_until((paused_at + 3 * ELECTION_TIMEOUT).into()).await;
        let paused_for = paused_at.elapsed();
        blocking(|| paused.resume()).unwrap_or_else(|error| panic!("round {round}: {error:#}"));
        if let Some(cut) = cut {
            tokio::time::sleep(HELD_BACK_AFTER_RESUME).await;
            cut.heal();
        }

        let variant = if hold_back {
            "links held back"
        } else {
            "links open"
        };
        let outcome = match read.await.expect("the read task") {
            Err(_) => panic!(
                "round {round} ({variant}): the linearizable read on old leader {old} \
                 neither failed nor answered within {READ_LIMIT:?}"
            ),
            Ok(Err(status)) => format!("failed ({:?}: {})", status.code(), status.message()),
            Ok(Ok(reply)) => {
                let reply = reply.into_inner();
                let version = reply.stat.expect("GetData answers with a Stat").version;
                assert!(
                    version >= acked,
                    "round {round} ({variant}): old leader {old}, paused for {paused_for:?} \
                     while node {new} took over and acknowledged /k up to version {acked}, \
                     answered a linearizable read sent after those acknowledgements with \
                     version {version} ({:?}): a stale read",
                    String::from_utf8_lossy(&reply.data)
                );
                format!("version {version}")
            }
        };
        // Told as it happens, so a later round's failure shows the earlier.
        eprintln!(
            "round {round} ({variant}): leader {old} paused {paused_for:?}, node {new} took \
             over, acked version {acked}, read {outcome}"
        );

        blocking(|| ensemble.wait_ready(READY))
            .unwrap_or_else(|error| panic!("round {round}: after the resume: {error:#}"));
    }
}

/// The session timeout of the keep-alive scenario, also every node's
/// minimum, so the session gets exactly this.
const SESSION_TIMEOUT_MS: i64 = 3000;
/// How often the keep-alive client pings: often, so the last acknowledged
/// ping is known closely.
const PING_EVERY: Duration = Duration::from_millis(200);
/// How long a ping may wait for its answer before it counts as unanswered.
const PING_WAIT: Duration = Duration::from_secs(1);
/// How often the leader is asked whether the ephemeral node still exists:
/// the time the session ended is known to within this (plus a round trip).
const POLL_EVERY: Duration = Duration::from_millis(50);

/// The fate of one keep-alive ping.
#[derive(Debug, Clone)]
enum PingOutcome {
    Acked,
    /// The stream failed or ended, or could not be opened: the client
    /// would move to another member.
    Refused {
        /// What kind of refusal (a gRPC code, or what happened to the
        /// stream), for grouping in messages.
        kind: String,
        detail: String,
    },
    NoAnswer,
}

impl PingOutcome {
    /// The outcome without its details: pings that differ only in the
    /// text of their refusal are one run in a timeline.
    fn kind(&self) -> String {
        match self {
            PingOutcome::Acked => "acked".into(),
            PingOutcome::Refused { kind, .. } => format!("refused ({kind})"),
            PingOutcome::NoAnswer => "no answer".into(),
        }
    }
}

impl std::fmt::Display for PingOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PingOutcome::Acked => f.write_str("acked"),
            PingOutcome::Refused { kind, detail } => write!(f, "refused ({kind}: {detail})"),
            PingOutcome::NoAnswer => f.write_str("no answer"),
        }
    }
}

#[derive(Debug, Clone)]
struct Ping {
    sent: Instant,
    answered: Instant,
    outcome: PingOutcome,
}

/// Pings `session` at the node at `addr` over the raw KeepAlive stream
/// until `stop` is set, one ping in flight at a time, recording each into
/// `log`. After anything but an acknowledgement the stream is dropped and
/// the next ping opens a new one, so every answer belongs to its ping.
async fn keep_pinging(
    addr: SocketAddr,
    session: i64,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Ping>>>,
) {
    let mut api = coordination(addr).expect("client channel");
    let mut stream: Option<(
        tokio::sync::mpsc::Sender<pb::KeepAliveRequest>,
        tonic::Streaming<pb::KeepAliveResponse>,
    )> = None;
    let record = |ping: Ping| {
        log.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(ping);
    };
    while !stop.load(Ordering::SeqCst) {
        let next = Instant::now() + PING_EVERY;
        let sent = Instant::now();
        if stream.is_none() {
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            match within(CALL, api.keep_alive(ReceiverStream::new(rx))).await {
                Ok(responses) => stream = Some((tx, responses)),
                Err(error) => record(Ping {
                    sent,
                    answered: Instant::now(),
                    outcome: PingOutcome::Refused {
                        kind: "cannot open the stream".into(),
                        detail: error,
                    },
                }),
            }
        }
        if let Some((tx, responses)) = &mut stream {
            let sent = Instant::now();
            let outcome = if tx
                .send(pb::KeepAliveRequest {
                    session_id: session,
                })
                .await
                .is_err()
            {
                PingOutcome::Refused {
                    kind: "stream closed".into(),
                    detail: "the request stream is closed".into(),
                }
            } else {
                match tokio::time::timeout(PING_WAIT, responses.message()).await {
                    Ok(Ok(Some(answer))) if answer.session_id == session => PingOutcome::Acked,
                    Ok(Ok(Some(answer))) => {
                        panic!("a keep-alive of {session:#x} answered for {answer:?}")
                    }
                    Ok(Ok(None)) => PingOutcome::Refused {
                        kind: "stream ended".into(),
                        detail: "the server ended the stream".into(),
                    },
                    Ok(Err(status)) => PingOutcome::Refused {
                        kind: format!("{:?}", status.code()),
                        detail: status.message().to_owned(),
                    },
                    Err(_) => PingOutcome::NoAnswer,
                }
            };
            if !matches!(outcome, PingOutcome::Acked) {
                stream = None;
            }
            record(Ping {
                sent,
                answered: Instant::now(),
                outcome,
            });
        }
        tokio::time::sleep_until(next.into()).await;
    }
}

/// One look at the leader: whether the ephemeral node was there.
#[derive(Debug)]
struct Poll {
    sent: Instant,
    answered: Instant,
    present: Result<bool, String>,
}

/// Milliseconds from `origin` to `at`, signed, for timelines in messages.
fn ms(origin: Instant, at: Instant) -> i128 {
    if at >= origin {
        at.duration_since(origin).as_millis() as i128
    } else {
        -(origin.duration_since(at).as_millis() as i128)
    }
}

/// `pings` for a message, times relative to `origin`: each run of pings
/// with the same kind of outcome as one entry, from the first one's
/// sending to the last one's answer, with the first one's details
/// ("acked x14 +200..+2816ms").
fn timeline(origin: Instant, pings: &[&Ping]) -> String {
    let mut runs: Vec<(&Ping, usize, Instant)> = Vec::new();
    for &ping in pings {
        match runs.last_mut() {
            Some((first, count, until)) if first.outcome.kind() == ping.outcome.kind() => {
                *count += 1;
                *until = ping.answered;
            }
            _ => runs.push((ping, 1, ping.answered)),
        }
    }
    if runs.is_empty() {
        return "none".into();
    }
    runs.iter()
        .map(|(first, count, until)| {
            format!(
                "{} x{count} {:+}..{:+}ms",
                first.outcome,
                ms(origin, first.sent),
                ms(origin, *until)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A client session is held only through follower F (its only endpoint),
/// with an ephemeral node. Then F's links to the leader are cut, both
/// ways; F keeps its link to the other follower, which keeps its link to
/// the leader, so the leader stays in charge and, hearing nothing of the
/// session, expires it. The client keeps pinging F throughout.
///
/// F must not acknowledge a ping after the session ended: every
/// acknowledged ping was sent before the last look at the leader that
/// still found the ephemeral node (the earliest the session can have
/// ended). And F must stop acknowledging within the session timeout of
/// the cut, so that a client is moved to a member that can still reach the
/// leader before its session is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_off_follower_acknowledges_no_keep_alive_of_an_expired_session() {
    let election_ms = ELECTION_TIMEOUT.as_millis().to_string();
    let min_session = SESSION_TIMEOUT_MS.to_string();
    let flags = [
        "--election-timeout-ms",
        election_ms.as_str(),
        "--heartbeat-ms",
        "100",
        "--min-session-timeout-ms",
        min_session.as_str(),
    ];
    let ensemble =
        blocking(|| Ensemble::start_proxied(3, &flags, None)).expect("the ensemble starts");
    blocking(|| ensemble.wait_ready(READY)).expect("the ensemble is ready");
    let ids = ensemble.ids();
    let leader = wait_leader(&ensemble, &ids, ELECTION)
        .await
        .unwrap_or_else(|error| panic!("{error:#}"));
    let others: Vec<usize> = ids.iter().copied().filter(|&id| id != leader).collect();
    let (follower, bystander) = (others[0], others[1]);

    let mut at_follower = api(&ensemble, follower);
    let opened = within(
        CALL,
        at_follower.create_session(pb::CreateSessionRequest {
            timeout_ms: SESSION_TIMEOUT_MS,
        }),
    )
    .await
    .unwrap_or_else(|error| panic!("creating a session at follower {follower}: {error}"));
    let (session, granted_ms) = (opened.session_id, opened.timeout_ms);
    let granted = Duration::from_millis(u64::try_from(granted_ms).expect("a positive timeout"));
    within(
        CALL,
        at_follower.create(pb::CreateRequest {
            session_id: session,
            path: "/owner".into(),
            data: vec![],
            acl: vec![],
            mode: pb::CreateMode::Ephemeral as i32,
            ttl_ms: 0,
        }),
    )
    .await
    .unwrap_or_else(|error| panic!("creating the ephemeral node at follower {follower}: {error}"));

    let mut at_leader = api(&ensemble, leader);
    let exists = |api: &mut Api| {
        let mut api = api.clone();
        async move {
            let request = pb::ExistsRequest {
                session_id: 0,
                path: "/owner".into(),
                watch: false,
                linearizable: false,
            };
            within(CALL, api.exists(request))
                .await
                .map(|reply| reply.stat.is_some())
        }
    };
    let deadline = Instant::now() + WRITE;
    loop {
        let present = exists(&mut at_leader).await;
        if present == Ok(true) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leader {leader} did not show the ephemeral node within {WRITE:?}: {present:?}"
        );
        tokio::time::sleep(POLL_EVERY).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(Vec::new()));
    let pinger = tokio::spawn(keep_pinging(
        ensemble.client_addr(follower),
        session,
        Arc::clone(&stop),
        Arc::clone(&log),
    ));
    let acked_so_far = || {
        log.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|p| matches!(p.outcome, PingOutcome::Acked))
            .count()
    };
    let deadline = Instant::now() + 10 * PING_EVERY + CALL;
    while acked_so_far() < 3 {
        assert!(
            Instant::now() < deadline,
            "follower {follower} did not acknowledge keep-alives before the cut: {:?}",
            log.lock().unwrap_or_else(PoisonError::into_inner)
        );
        tokio::time::sleep(PING_EVERY).await;
    }

    let cut = Cut::between(&ensemble, &[follower], &[leader]);
    let cut_at = Instant::now();
    let window = 3 * granted;
    let mut polls = Vec::new();
    while cut_at.elapsed() < window {
        let sent = Instant::now();
        let present = exists(&mut at_leader).await;
        let gone = present == Ok(false);
        polls.push(Poll {
            sent,
            answered: Instant::now(),
            present,
        });
        if gone {
            break;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
    // Pings go on to the end of the window: an acknowledgement after the
    // session ended is what this test looks for.
    tokio::time::sleep_until((cut_at + window).into()).await;
    stop.store(true, Ordering::SeqCst);
    tokio::time::timeout(PING_EVERY + CALL + PING_WAIT, pinger)
        .await
        .expect("the pinger stops")
        .expect("the pinger task");
    let pings = log.lock().unwrap_or_else(PoisonError::into_inner).clone();

    // The premise: the leader stayed in charge through the cut, so it was
    // the one to expire the session, and F never led.
    let leader_view = status(&ensemble, leader).await;
    let bystander_view = status(&ensemble, bystander).await;
    let still_leads = leader_view
        .as_ref()
        .is_ok_and(|s| s.role == pb::Role::Leader as i32)
        && bystander_view
            .as_ref()
            .is_ok_and(|s| usize::try_from(s.leader_id).ok() == Some(leader));
    cut.heal();
    assert!(
        still_leads,
        "the scenario needs leader {leader} to stay in charge while follower {follower} is cut \
         off from it; at the end: leader {leader_view:?}, node {bystander}: {bystander_view:?}"
    );

    let timeline = |pings: &[&Ping]| timeline(cut_at, pings);
    let acked: Vec<&Ping> = pings
        .iter()
        .filter(|p| matches!(p.outcome, PingOutcome::Acked))
        .collect();
    let after_cut: Vec<&Ping> = pings.iter().filter(|p| p.sent >= cut_at).collect();
    let Some(gone) = polls.iter().find(|p| p.present == Ok(false)) else {
        panic!(
            "the ensemble did not expire session {session:#x} within {window:?} of cutting \
             follower {follower} off from leader {leader} (session timeout {granted:?}); the \
             leader still shows its ephemeral node ({:?}); pings at follower {follower} after \
             the cut: {}",
            polls.last(),
            timeline(&after_cut)
        );
    };
    // The session ended after the leader last found its ephemeral node:
    // after that poll was sent, at the earliest.
    let earliest_end = polls
        .iter()
        .filter(|p| p.present == Ok(true))
        .map(|p| p.sent)
        .next_back()
        .unwrap_or(cut_at);
    let late: Vec<&Ping> = acked
        .iter()
        .copied()
        .filter(|p| p.sent >= earliest_end)
        .collect();
    assert!(
        late.is_empty(),
        "follower {follower}, cut off from leader {leader} at +0ms, acknowledged {} keep-alive(s) \
         of session {session:#x} sent after the session may have ended: the leader last saw its \
         ephemeral node at {:+}ms and saw it gone at {:+}ms (session timeout {granted:?}). Late \
         acknowledgements: {}. All pings after the cut: {}",
        late.len(),
        ms(cut_at, earliest_end),
        ms(cut_at, gone.answered),
        timeline(&late),
        timeline(&after_cut)
    );
    let stuck: Vec<&Ping> = acked
        .iter()
        .copied()
        .filter(|p| p.sent >= cut_at + granted)
        .collect();
    assert!(
        stuck.is_empty(),
        "follower {follower} still acknowledged keep-alives of session {session:#x} more than \
         the session timeout ({granted:?}) after it was cut off from leader {leader}: {}",
        timeline(&stuck)
    );
    if let Some(last) = acked.last() {
        eprintln!(
            "follower {follower} cut off from leader {leader}: last acknowledged ping sent at \
             {:+}ms; ephemeral node last seen at {:+}ms, gone at {:+}ms; pings after the cut: {}",
            ms(cut_at, last.sent),
            ms(cut_at, earliest_end),
            ms(cut_at, gone.answered),
            timeline(&after_cut)
        );
    }
}
