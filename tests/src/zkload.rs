//! A lean ZooKeeper-protocol load client (`synod-bench --protocol
//! zookeeper`): one TCP connection per session, and on it a closed loop
//! that keeps `depth` requests outstanding, written in the order they are
//! issued and answered in that order, as ZooKeeper answers a session's
//! requests. One task owns the connection: it reads the replies that have
//! come, issues the requests that follow them, and writes those in one
//! `write`. It speaks only what the bench sends (create, setData, getData,
//! sync, closeSession) and neither follows watches nor reconnects: a lost
//! connection ends the loop with an error.
//!
//! Why not the `zookeeper-client` crate the compatibility tests use: on
//! this 2-core machine the load generator shares the CPUs with the
//! servers, and the crate, with one task per outstanding request, spent
//! about twice the CPU per request of the gRPC pipeline client (4.7
//! against 2.4 microseconds per get) and added latency to pipelined
//! requests (8 outstanding on one session: 9,400 sets/s against 14,300/s
//! for a single-threaded Python loop on the same server). The bench then
//! measures its client. The same client loads every server the bench
//! compares, so the comparison stays like for like.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// ZooKeeper opcodes this client sends.
mod opcode {
    pub const CREATE: i32 = 1;
    pub const GET_DATA: i32 = 4;
    pub const SET_DATA: i32 = 5;
    pub const SYNC: i32 = 9;
    pub const CLOSE_SESSION: i32 = -11;
}

/// The xids ZooKeeper gives watch notifications and ping replies: not
/// answers to this client's requests.
const NOTIFICATION_XID: i32 = -1;
const PING_XID: i32 = -2;
/// Largest reply accepted (ZooKeeper's default `jute.maxbuffer`).
const MAX_REPLY: usize = 1 << 20;
/// Read buffer, and the most written in one `write`.
const IO_BUFFER: usize = 64 * 1024;

/// One request: its opcode and its body (after the header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub opcode: i32,
    pub body: Vec<u8>,
}

impl Call {
    /// Creates a persistent znode anyone may read and write.
    pub fn create(path: &str, data: &[u8]) -> Call {
        let mut body = Vec::with_capacity(path.len() + data.len() + 40);
        put_string(&mut body, path);
        put_buffer(&mut body, data);
        body.extend_from_slice(&1i32.to_be_bytes()); // one ACL:
        body.extend_from_slice(&31i32.to_be_bytes()); // every permission
        put_string(&mut body, "world"); // for anyone
        put_string(&mut body, "anyone");
        body.extend_from_slice(&0i32.to_be_bytes()); // persistent
        Call {
            opcode: opcode::CREATE,
            body,
        }
    }

    /// Sets the data of `path` whatever its version.
    pub fn set_data(path: &str, data: &[u8]) -> Call {
        let mut body = Vec::with_capacity(path.len() + data.len() + 12);
        put_string(&mut body, path);
        put_buffer(&mut body, data);
        body.extend_from_slice(&(-1i32).to_be_bytes());
        Call {
            opcode: opcode::SET_DATA,
            body,
        }
    }

    /// Reads `path` without a watch; the reply body is the data, then the
    /// Stat ([`get_data_payload`]).
    pub fn get_data(path: &str) -> Call {
        let mut body = Vec::with_capacity(path.len() + 5);
        put_string(&mut body, path);
        body.push(0);
        Call {
            opcode: opcode::GET_DATA,
            body,
        }
    }

    /// ZooKeeper's `sync`.
    pub fn sync(path: &str) -> Call {
        let mut body = Vec::with_capacity(path.len() + 4);
        put_string(&mut body, path);
        Call {
            opcode: opcode::SYNC,
            body,
        }
    }

    /// Writes the framed request with `xid` onto `out`.
    fn write(&self, xid: i32, out: &mut Vec<u8>) {
        let len = i32::try_from(8 + self.body.len()).expect("bench requests are small");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&xid.to_be_bytes());
        out.extend_from_slice(&self.opcode.to_be_bytes());
        out.extend_from_slice(&self.body);
    }
}

/// A reply: ZooKeeper's error code (0 = ok) and the body after the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub err: i32,
    pub body: Vec<u8>,
}

impl Reply {
    /// The body of a successful reply, or the error code as an error.
    pub fn ok(self) -> anyhow::Result<Vec<u8>> {
        if self.err != 0 {
            bail!("ZooKeeper error code {}", self.err);
        }
        Ok(self.body)
    }
}

/// What a closed loop measured.
#[derive(Debug, Default)]
pub struct LoopOutcome {
    /// Latency of every finished request (all its calls), in microseconds.
    pub latencies_us: Vec<u64>,
    /// Requests one of whose calls was answered with an error.
    pub errors: u64,
    pub first_error: Option<String>,
    /// The last reply body of each successful request, when the loop keeps
    /// them: (place, n, body) for the `n`th request made on `place`.
    pub bodies: Vec<(usize, u64, Vec<u8>)>,
}

/// One request of a closed loop in flight on one of its `depth` places:
/// the calls still to make (a linearizable read is a sync, then the get)
/// and when its first call was issued.
#[derive(Debug)]
struct Place {
    rest: VecDeque<Call>,
    started: Instant,
}

/// One ZooKeeper session on its own connection.
#[derive(Debug)]
pub struct ZkLoadSession {
    id: i64,
    rd: BufReader<OwnedReadHalf>,
    wr: OwnedWriteHalf,
    next_xid: i32,
}

impl ZkLoadSession {
    /// Connects to `endpoint` (host:port) and opens a new session asking
    /// for `timeout`. The session is not pinged: keep it busy, or close it,
    /// within the timeout.
    pub async fn connect(endpoint: &str, timeout: Duration) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(endpoint)
            .await
            .with_context(|| format!("cannot connect to {endpoint}"))?;
        stream.set_nodelay(true)?;
        let (rd, mut wr) = stream.into_split();
        let mut rd = BufReader::with_capacity(IO_BUFFER, rd);
        let asked = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        let mut connect = Vec::with_capacity(52);
        connect.extend_from_slice(&0i32.to_be_bytes()); // length, set below
        connect.extend_from_slice(&0i32.to_be_bytes()); // protocol version
        connect.extend_from_slice(&0i64.to_be_bytes()); // last zxid seen
        connect.extend_from_slice(&asked.to_be_bytes());
        connect.extend_from_slice(&0i64.to_be_bytes()); // a new session
        put_buffer(&mut connect, &[0; 16]); // password
        connect.push(0); // not read-only
        let len = i32::try_from(connect.len() - 4).expect("a handshake is small");
        connect[..4].copy_from_slice(&len.to_be_bytes());
        wr.write_all(&connect).await?;
        let answer = read_frame(&mut rd).await?;
        let mut at = Cursor(&answer);
        let _version = at.int()?;
        let _granted = at.int()?;
        let id = at.long()?;
        if id == 0 {
            bail!("{endpoint} refused the session");
        }
        Ok(ZkLoadSession {
            id,
            rd,
            wr,
            next_xid: 1,
        })
    }

    /// The session id the server gave.
    pub fn id(&self) -> i64 {
        self.id
    }

    fn xid(&mut self) -> i32 {
        let xid = self.next_xid;
        // Positive, as clients keep them: the negative ones are reserved.
        self.next_xid = self.next_xid.checked_add(1).unwrap_or(1);
        xid
    }

    /// Sends one request and waits for its reply.
    pub async fn call(&mut self, call: &Call) -> anyhow::Result<Reply> {
        let xid = self.xid();
        let mut frame = Vec::with_capacity(12 + call.body.len());
        call.write(xid, &mut frame);
        self.wr.write_all(&frame).await?;
        let (answered, reply) = self.next_reply().await?;
        if answered != xid {
            bail!("the answer to xid {answered} came for xid {xid}");
        }
        Ok(reply)
    }

    /// The next reply to a request (skipping notifications and pings).
    async fn next_reply(&mut self) -> anyhow::Result<(i32, Reply)> {
        loop {
            let frame = read_frame(&mut self.rd).await?;
            let mut at = Cursor(&frame);
            let xid = at.int()?;
            let _zxid = at.long()?;
            let err = at.int()?;
            if xid == NOTIFICATION_XID || xid == PING_XID {
                continue;
            }
            return Ok((
                xid,
                Reply {
                    err,
                    body: at.0.to_vec(),
                },
            ));
        }
    }

    /// Keeps up to `depth` requests outstanding until `next` has no more:
    /// `next(place, n)` gives the calls of the `n`th request made on place
    /// `place` (they run one after another; the request's latency covers
    /// them all), or `None` to stop issuing there. `keep_bodies` keeps each
    /// successful request's last reply body. Fails only if the connection
    /// does; error replies are counted.
    pub async fn closed_loop(
        &mut self,
        depth: usize,
        keep_bodies: bool,
        mut next: impl FnMut(usize, u64) -> Option<Vec<Call>>,
    ) -> anyhow::Result<LoopOutcome> {
        let mut outcome = LoopOutcome::default();
        let mut places: Vec<Option<Place>> = (0..depth).map(|_| None).collect();
        let mut issued = vec![0u64; depth];
        // (xid, place) of every call written and not answered, in order.
        let mut in_flight: VecDeque<(i32, usize)> = VecDeque::with_capacity(depth);
        let mut out = Vec::with_capacity(IO_BUFFER);
        for place in 0..depth {
            self.start(
                place,
                &mut places,
                &mut issued,
                &mut next,
                &mut in_flight,
                &mut out,
            );
        }
        while !in_flight.is_empty() {
            if !out.is_empty() {
                self.wr.write_all(&out).await?;
                out.clear();
            }
            // Every reply already here, then the calls they let go, in one
            // write.
            loop {
                let (xid, reply) = self.next_reply().await?;
                let Some((expected, place)) = in_flight.pop_front() else {
                    bail!("an answer (xid {xid}) to nothing asked");
                };
                if xid != expected {
                    bail!("the answer to xid {xid} came where xid {expected} was due");
                }
                let slot = places[place]
                    .as_mut()
                    .context("an answer for a place with nothing in flight")?;
                let follow_up = if reply.err == 0 {
                    slot.rest.pop_front()
                } else {
                    outcome.errors += 1;
                    outcome
                        .first_error
                        .get_or_insert_with(|| format!("ZooKeeper error code {}", reply.err));
                    None
                };
                if let Some(call) = follow_up {
                    let xid = self.xid();
                    call.write(xid, &mut out);
                    in_flight.push_back((xid, place));
                } else {
                    let micros = slot.started.elapsed().as_micros();
                    outcome
                        .latencies_us
                        .push(u64::try_from(micros).unwrap_or(u64::MAX));
                    if keep_bodies && reply.err == 0 {
                        outcome.bodies.push((place, issued[place] - 1, reply.body));
                    }
                    self.start(
                        place,
                        &mut places,
                        &mut issued,
                        &mut next,
                        &mut in_flight,
                        &mut out,
                    );
                }
                if !holds_a_frame(self.rd.buffer()) || out.len() >= IO_BUFFER {
                    break;
                }
            }
        }
        Ok(outcome)
    }

    /// Issues the next request on `place`, if `next` has one.
    fn start(
        &mut self,
        place: usize,
        places: &mut [Option<Place>],
        issued: &mut [u64],
        next: &mut impl FnMut(usize, u64) -> Option<Vec<Call>>,
        in_flight: &mut VecDeque<(i32, usize)>,
        out: &mut Vec<u8>,
    ) {
        places[place] = None;
        let Some(calls) = next(place, issued[place]) else {
            return;
        };
        issued[place] += 1;
        let mut rest = VecDeque::from(calls);
        let Some(first) = rest.pop_front() else {
            return;
        };
        let xid = self.xid();
        first.write(xid, out);
        in_flight.push_back((xid, place));
        places[place] = Some(Place {
            rest,
            started: Instant::now(),
        });
    }

    /// Closes the session and waits for the server to confirm it.
    pub async fn close(mut self) -> anyhow::Result<()> {
        let close = Call {
            opcode: opcode::CLOSE_SESSION,
            body: Vec::new(),
        };
        self.call(&close).await?.ok()?;
        Ok(())
    }
}

/// The data of a getData reply body.
pub fn get_data_payload(body: &[u8]) -> anyhow::Result<&[u8]> {
    let mut at = Cursor(body);
    let len = at.int()?;
    if len < 0 {
        return Ok(&[]);
    }
    at.take(usize::try_from(len)?)
}

fn put_buffer(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = i32::try_from(bytes.len()).expect("bench values are far below 2 GiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    put_buffer(out, s.as_bytes());
}

/// Reads big-endian fields off a reply.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> anyhow::Result<&'a [u8]> {
        if self.0.len() < n {
            bail!("reply cut short");
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn int(&mut self) -> anyhow::Result<i32> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into()?))
    }

    fn long(&mut self) -> anyhow::Result<i64> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into()?))
    }
}

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

async fn read_frame(rd: &mut BufReader<OwnedReadHalf>) -> anyhow::Result<Vec<u8>> {
    let len = rd.read_i32().await?;
    let len = usize::try_from(len).context("negative frame length")?;
    if len > MAX_REPLY {
        bail!("reply of {len} bytes is over {MAX_REPLY}");
    }
    let mut frame = vec![0; len];
    rd.read_exact(&mut frame).await?;
    Ok(frame)
}
