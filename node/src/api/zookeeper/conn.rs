//! One ZooKeeper client connection: the four-letter word or handshake on
//! its first bytes, then a reader that decodes and submits requests in
//! arrival order and a writer that sends the replies in that same order,
//! with the session's watch events in between. An event always goes out
//! before any later reply: the driver queues an event the moment the
//! change that fires it applies, before it answers any request that could
//! observe the change, and the writer takes every queued event before it
//! writes a reply.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use synod_core::SessionId;
use synod_proto::v1 as pb;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _, BufReader, BufWriter};
/// A connection's reading half, plaintext or TLS.
pub(super) type ReadHalf = Box<dyn tokio::io::AsyncRead + Unpin + Send>;
/// A connection's writing half, plaintext or TLS.
pub(super) type WriteHalf = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;
use tokio::sync::mpsc;

use super::jute::Reader;
use super::ops::{self, Caller, Pending, Prepared, Reply};
use super::proto::{self, ConnectRequest, PASSWORD_LEN, Request};
use super::{ConnStats, Registration, Shared, lock, words};
use crate::driver::Attach;

/// Why a connection ended; logged at debug level (clients come and go).
type Closed = String;

/// Serves one accepted connection to its end.
pub(super) async fn serve(
    stream: (ReadHalf, WriteHalf),
    x509: Option<Arc<str>>,
    shared: Arc<Shared>,
    registration: Registration,
    stats: Arc<ConnStats>,
) {
    let peer = stats.peer;
    match run(stream, x509, &shared, &registration, &stats).await {
        Ok(()) => tracing::debug!(%peer, "ZooKeeper connection closed"),
        Err(reason) => tracing::debug!(%peer, %reason, "ZooKeeper connection closed"),
    }
    drop(registration);
}

/// Reads one length-prefixed frame, refusing lengths over `max`.
async fn read_frame<R: AsyncRead + Unpin>(rd: &mut R, max: usize) -> Result<Vec<u8>, Closed> {
    let mut prefix = [0u8; 4];
    rd.read_exact(&mut prefix)
        .await
        .map_err(|e| format!("read: {e}"))?;
    frame_body(rd, i32::from_be_bytes(prefix), max).await
}

async fn frame_body<R: AsyncRead + Unpin>(
    rd: &mut R,
    len: i32,
    max: usize,
) -> Result<Vec<u8>, Closed> {
    let len = usize::try_from(len).map_err(|_| format!("negative frame length {len}"))?;
    if len > max {
        // ZooKeeper closes the connection; there is no error reply.
        return Err(format!("frame of {len} bytes is over the limit of {max}"));
    }
    let mut frame = vec![0; len];
    rd.read_exact(&mut frame)
        .await
        .map_err(|e| format!("read: {e}"))?;
    Ok(frame)
}

/// `x509`: the subject of the client's TLS certificate, if it sent one:
/// an identity of every request on this connection, as ZooKeeper's
/// X509AuthenticationProvider makes it.
async fn run(
    stream: (ReadHalf, WriteHalf),
    x509: Option<Arc<str>>,
    shared: &Arc<Shared>,
    registration: &Registration,
    stats: &Arc<ConnStats>,
) -> Result<(), Closed> {
    let (mut rd, mut wr) = stream;
    let limit = shared.config.handshake_timeout;
    let mut first = [0u8; 4];
    tokio::time::timeout(limit, rd.read_exact(&mut first))
        .await
        .map_err(|_| "no handshake in time".to_owned())?
        .map_err(|e| format!("read: {e}"))?;
    // A four-letter word can never be mistaken for a handshake: read as a
    // length, every word is far over any frame limit.
    if let Some(word) = words::known(&first) {
        let text = words::answer(shared, word).await;
        let _ = wr.write_all(text.as_bytes()).await;
        let _ = wr.shutdown().await;
        return Ok(());
    }
    let frame = tokio::time::timeout(
        limit,
        frame_body(
            &mut rd,
            i32::from_be_bytes(first),
            shared.config.max_frame_bytes,
        ),
    )
    .await
    .map_err(|_| "no handshake in time".to_owned())??;
    let connect = ConnectRequest::decode(&frame).map_err(|e| format!("bad handshake: {e}"))?;
    let Some((session, timeout_ms, password, zxid, events)) =
        handshake(shared, &connect, stats, &mut wr).await?
    else {
        return Ok(());
    };
    stats.session.store(session, Ordering::Relaxed);
    let (kick_tx, kick) = mpsc::channel(1);
    if let Some((_, previous)) = lock(&shared.owners).insert(session, (registration.id, kick_tx)) {
        let _ = previous.try_send(());
    }
    let mut out = BufWriter::new(wr);
    let response = proto::connect_response(
        i32::try_from(timeout_ms).unwrap_or(i32::MAX),
        session,
        &password,
    );
    out.write_all(&response)
        .await
        .map_err(|e| format!("write: {e}"))?;
    out.flush().await.map_err(|e| format!("write: {e}"))?;
    tracing::debug!(
        peer = %stats.peer,
        session = format_args!("{session:#x}"),
        timeout_ms,
        "ZooKeeper session attached"
    );
    let (replies_tx, replies) = mpsc::channel(shared.config.max_outstanding.max(1));
    let mut writer = tokio::spawn(write_loop(
        out,
        replies,
        events,
        zxid,
        shared.clone(),
        stats.clone(),
    ));
    let caller = Caller {
        driver: shared.driver.clone(),
        session,
        peer: crate::driver::Origin {
            ip: Some(stats.peer.ip()),
            x509: x509.clone(),
        },
        ensemble: shared.config.ensemble_addresses.clone(),
        reconfig: shared.config.reconfig,
    };
    // The server gives up on a client silent for its whole session timeout,
    // as ZooKeeper does; clients ping at a third of it.
    let idle = Duration::from_millis(u64::try_from(timeout_ms).unwrap_or(0).max(1_000));
    let mut rd = BufReader::with_capacity(64 * 1024, rd);
    let read = read_loop(&mut rd, &caller, shared, stats, replies_tx, kick, idle);
    let ended = tokio::select! {
        ended = read => ended,
        written = &mut writer => return written.unwrap_or_else(|e| Err(format!("writer: {e}"))),
    };
    // Let the writer send what was already submitted, then close.
    let written = writer.await.unwrap_or_else(|e| Err(format!("writer: {e}")));
    ended.and(written)
}

type Handshake = Option<(
    SessionId,
    i64,
    [u8; PASSWORD_LEN],
    i64,
    mpsc::Receiver<pb::WatchEvent>,
)>;

/// Attaches the connection to its session or creates one. `None`: the
/// connection ends here (refused, or told its session expired).
async fn handshake(
    shared: &Arc<Shared>,
    connect: &ConnectRequest,
    stats: &ConnStats,
    wr: &mut WriteHalf,
) -> Result<Handshake, Closed> {
    // A session id at or below zero is a new session: clients have sent
    // -1 where they meant none.
    let asked = connect.session_id.max(0);
    let password = connect.password.clone();
    let last_zxid = connect.last_zxid_seen;
    let attach = |password: Vec<u8>| {
        shared
            .driver
            .call(move |state| state.attach_session(asked, &password, last_zxid))
    };
    let mut attached = attach(password.clone())
        .await
        .map_err(|_| "the node is shutting down".to_owned())?;
    if matches!(attached, Attach::Unknown) {
        // Perhaps created on another member a moment ago: look again once
        // this member has applied what the leader has committed.
        let caught_up = shared
            .driver
            .call(|state| state.read_barrier())
            .await
            .map_err(|_| "the node is shutting down".to_owned())?
            .map_err(|error| format!("cannot look the session up: {error}"))?;
        match caught_up.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(format!("cannot look the session up: {error}")),
            Err(_) => return Err("the node is shutting down".to_owned()),
        }
        attached = attach(password)
            .await
            .map_err(|_| "the node is shutting down".to_owned())?;
    }
    match attached {
        Attach::Behind { applied } => Err(format!(
            "the client has seen zxid {last_zxid:#x}, this member only {applied:#x}: it must try another member"
        )),
        Attach::NotServing(why) => Err(format!("not serving clients: {why}")),
        Attach::Expired | Attach::Unknown => {
            tracing::debug!(peer = %stats.peer, session = format_args!("{asked:#x}"), "ZooKeeper session expired or wrong password");
            refuse_as_expired(wr).await;
            Ok(None)
        }
        Attach::Attached {
            timeout_ms,
            password,
            header,
            moved,
            events,
        } => {
            let events = events.map_err(|e| format!("cannot follow the session's events: {e}"))?;
            // Answer only once the ensemble has the session here: it may
            // have expired it meanwhile, and the member the client left
            // must let go of its connection.
            match moved.await {
                Ok(Ok(())) => {}
                Ok(Err(synod_core::Error::SessionExpired(_))) => {
                    refuse_as_expired(wr).await;
                    return Ok(None);
                }
                Ok(Err(error)) => return Err(format!("cannot move the session here: {error}")),
                Err(_) => return Err("the node is shutting down".into()),
            }
            Ok(Some((asked, timeout_ms, password, header.zxid, events)))
        }
        Attach::New => {
            let requested = i64::from(connect.timeout_ms);
            let created = shared
                .driver
                .call(move |state| state.create_session(requested))
                .await
                .map_err(|_| "the node is shutting down".to_owned())?;
            let (session, timeout_ms, password, header) = match created.await {
                Ok(Ok(created)) => created,
                Ok(Err(error)) => return Err(format!("cannot create a session: {error}")),
                Err(_) => return Err("the node is shutting down".to_owned()),
            };
            let events = shared
                .driver
                .call(move |state| state.subscribe(session, 0))
                .await
                .map_err(|_| "the node is shutting down".to_owned())?
                .map_err(|e| format!("cannot follow the session's events: {e}"))?;
            Ok(Some((session, timeout_ms, password, header.zxid, events)))
        }
    }
}

/// Tells the client its session has expired (or was never its own: a
/// wrong password), as ZooKeeper does, and closes the connection.
async fn refuse_as_expired(wr: &mut WriteHalf) {
    let _ = wr
        .write_all(&proto::connect_response(0, 0, &[0; PASSWORD_LEN]))
        .await;
    let _ = wr.shutdown().await;
}

/// Most requests submitted to the driver in one job.
const MAX_BATCH: usize = 64;

/// Whether `buffered` starts with a whole frame.
fn holds_a_frame(buffered: &[u8]) -> bool {
    buffered.len() >= 4
        && usize::try_from(i32::from_be_bytes([
            buffered[0],
            buffered[1],
            buffered[2],
            buffered[3],
        ]))
        .is_ok_and(|len| buffered.len() - 4 >= len)
}

/// One decoded request.
fn decode(frame: &[u8]) -> Result<(i32, i32, Request), Closed> {
    let mut header = Reader::new(frame);
    let xid = header.int("xid").map_err(|e| e.to_string())?;
    let opcode = header.int("type").map_err(|e| e.to_string())?;
    let request = Request::decode(opcode, &frame[8..])
        .map_err(|e| format!("malformed request (type {opcode}): {e}"))?;
    if let Request::Unknown(unknown) = request {
        tracing::debug!(opcode = unknown, "unknown ZooKeeper opcode");
    }
    Ok((xid, opcode, request))
}

/// Decodes requests and submits them in order until the client closes,
/// goes silent, sends something malformed, or its session moves to a
/// newer connection. The requests that arrived together (already in the
/// read buffer) go to the driver in one job: one wake-up of the driver
/// for a burst of pipelined requests instead of one each. The job hands
/// its replies to the writer itself, so the reader goes back to the socket
/// at once instead of waiting for the driver's turn: the driver runs one
/// connection's jobs in the order they were queued, which keeps the
/// replies in request order. The writer's queue bounds what is in flight:
/// a batch is submitted only once the queue has room for all of it.
async fn read_loop(
    rd: &mut BufReader<ReadHalf>,
    caller: &Caller,
    shared: &Arc<Shared>,
    stats: &ConnStats,
    replies: mpsc::Sender<(Pending, Instant)>,
    mut kick: mpsc::Receiver<()>,
    idle: Duration,
) -> Result<(), Closed> {
    let max = shared.config.max_frame_bytes;
    loop {
        let frame = tokio::select! {
            _ = kick.recv() => return Err("the session moved to a newer connection".into()),
            frame = tokio::time::timeout(idle, read_frame(rd, max)) => frame,
        };
        let frame = frame.map_err(|_| format!("nothing from the client for {idle:?}"))??;
        let started = Instant::now();
        let mut batch: Vec<(i32, Prepared)> = Vec::new();
        let mut outcome = Ok(false);
        let mut next = Some(frame);
        while let Some(frame) = next.take() {
            let (xid, opcode, request) = match decode(&frame) {
                Ok(decoded) => decoded,
                Err(reason) => {
                    // What came before is still answered.
                    outcome = Err(reason);
                    break;
                }
            };
            shared.counters.received.fetch_add(1, Ordering::Relaxed);
            stats.received.fetch_add(1, Ordering::Relaxed);
            let last = matches!(
                request,
                Request::CloseSession | Request::Unknown(_) | Request::Sasl
            );
            batch.push((xid, ops::prepare(caller, xid, opcode, request)));
            if last {
                outcome = Ok(true);
                break;
            }
            if batch.len() < MAX_BATCH && holds_a_frame(rd.buffer()) {
                next = Some(read_frame(rd, max).await?);
            }
        }
        let xids: Vec<i32> = batch.iter().map(|(xid, _)| *xid).collect();
        let mut places = Vec::with_capacity(batch.len());
        for _ in 0..batch.len() {
            match replies.clone().reserve_owned().await {
                Ok(place) => places.push(place),
                // The writer has stopped: nobody would read the replies.
                Err(_) => return Ok(()),
            }
        }
        let count = i64::try_from(batch.len()).unwrap_or(i64::MAX);
        shared
            .counters
            .outstanding
            .fetch_add(count, Ordering::Relaxed);
        stats.outstanding.fetch_add(count, Ordering::Relaxed);
        let submitted = caller
            .driver
            .submit(move |state| {
                for ((_, step), place) in batch.into_iter().zip(places) {
                    place.send((step.run(state), started));
                }
            })
            .await;
        if submitted.is_err() {
            // The job, and the places it held, were dropped unrun.
            for xid in xids {
                let pending: Pending = Box::pin(std::future::ready(Prepared::without_driver(xid)));
                if replies.send((pending, started)).await.is_err() {
                    return Ok(());
                }
            }
        }
        match outcome {
            Ok(false) => {}
            Ok(true) => return Ok(()),
            Err(reason) => return Err(reason),
        }
    }
}

/// Writes replies in request order and watch events as they come.
async fn write_loop(
    mut out: BufWriter<WriteHalf>,
    mut replies: mpsc::Receiver<(Pending, Instant)>,
    mut events: mpsc::Receiver<pb::WatchEvent>,
    mut zxid: i64,
    shared: Arc<Shared>,
    stats: Arc<ConnStats>,
) -> Result<(), Closed> {
    let io = |e: std::io::Error| format!("write: {e}");
    let mut events_open = true;
    loop {
        tokio::select! {
            biased;
            event = events.recv(), if events_open => match event {
                Some(event) => write_event(&mut out, &event, &shared, &stats).await.map_err(io)?,
                // The session ended (expired, closed), or its events could
                // not keep up: answer what was asked, then close.
                None => events_open = false,
            },
            next = replies.recv() => {
                let Some((mut pending, started)) = next else { break };
                let reply = match (&mut pending).now_or_never() {
                    Some(reply) => reply,
                    None => {
                        // The client may be waiting for what is buffered.
                        out.flush().await.map_err(io)?;
                        pending.await
                    }
                };
                while let Ok(event) = events.try_recv() {
                    write_event(&mut out, &event, &shared, &stats).await.map_err(io)?;
                }
                let close = reply.close;
                write_reply(&mut out, reply, &mut zxid, &shared, &stats).await.map_err(io)?;
                let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                shared.counters.latency(micros);
                shared.counters.outstanding.fetch_sub(1, Ordering::Relaxed);
                stats.outstanding.fetch_sub(1, Ordering::Relaxed);
                if close {
                    break;
                }
            }
        }
        if !events_open && replies.is_empty() {
            break;
        }
        if replies.is_empty() && events.is_empty() {
            out.flush().await.map_err(io)?;
        }
    }
    out.flush().await.map_err(io)?;
    let _ = out.shutdown().await;
    if events_open {
        Ok(())
    } else {
        Err("the session ended".into())
    }
}

async fn write_event(
    out: &mut BufWriter<WriteHalf>,
    event: &pb::WatchEvent,
    shared: &Shared,
    stats: &ConnStats,
) -> std::io::Result<()> {
    // Removal notices (types 5-7) are made by ZooKeeper clients themselves
    // after a successful removeWatches; the server never sends them.
    if !(1..=4).contains(&event.r#type) {
        return Ok(());
    }
    shared.counters.sent.fetch_add(1, Ordering::Relaxed);
    stats.sent.fetch_add(1, Ordering::Relaxed);
    out.write_all(&proto::notification(event.r#type, &event.path, event.zxid))
        .await
}

async fn write_reply(
    out: &mut BufWriter<WriteHalf>,
    reply: Reply,
    zxid: &mut i64,
    shared: &Shared,
    stats: &ConnStats,
) -> std::io::Result<()> {
    let frame = match reply.result {
        Ok((reply_zxid, body)) => {
            if let Some(z) = reply_zxid {
                *zxid = (*zxid).max(z);
            }
            let mut w = proto::reply(reply.xid, *zxid, 0);
            w.buf.extend_from_slice(&body);
            w.into_frame()
        }
        Err(code) => proto::reply(reply.xid, *zxid, code).into_frame(),
    };
    shared.counters.sent.fetch_add(1, Ordering::Relaxed);
    stats.sent.fetch_add(1, Ordering::Relaxed);
    out.write_all(&frame).await
}
