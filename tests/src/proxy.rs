//! A controllable TCP proxy for fault injection between real processes: it
//! forwards every connection it accepts on a loopback port to one target,
//! and can cut (close every forwarded connection and refuse new ones) and
//! heal on command. Tests put one proxy on every peer link of an ensemble
//! to make network partitions without root privileges or packet filters.
//!
//! Plain threads and blocking sockets, so the proxy works the same inside
//! any tokio runtime or none. Every thread it starts ends when the proxy is
//! dropped: the acceptor polls a stop flag, and the forwarding threads end
//! because their sockets are shut down under them.

use std::collections::HashMap;
use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// How long the acceptor sleeps when no connection is waiting. Short enough
/// that a reconnecting peer is not slowed down noticeably, long enough that
/// an idle proxy costs nothing.
const ACCEPT_POLL: Duration = Duration::from_millis(5);

/// How long a forwarded connection may take to reach the target. A target
/// that does not answer in this time is treated as down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Forwards TCP connections from `addr()` to a target until cut or dropped.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    target: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Shared {
    /// Set once, by drop: every thread winds down.
    stopping: AtomicBool,
    /// Threads started for connections that have not ended yet.
    workers: AtomicUsize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    cut: bool,
    next_id: u64,
    /// Both sockets of every forwarded connection, so that `cut` can shut
    /// them down from outside the threads that block on them.
    connections: HashMap<u64, [TcpStream; 2]>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panicking forwarding thread must not disable the test's
        // controls; the state stays consistent under every panic point.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Decrements the live-thread count however the thread ends.
struct Worker(Arc<Shared>);

impl Worker {
    fn start(shared: &Arc<Shared>) -> Worker {
        shared.workers.fetch_add(1, Ordering::SeqCst);
        Worker(Arc::clone(shared))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.0.workers.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Proxy {
    /// Starts a proxy on a free loopback port that forwards to `target`.
    /// The target does not have to be up yet: a connection to a target that
    /// is down is accepted and closed at once, as a refused one would be.
    pub fn start(target: SocketAddr) -> anyhow::Result<Proxy> {
        let listener =
            TcpListener::bind("127.0.0.1:0").context("cannot bind a port for the proxy")?;
        // Non-blocking so the acceptor can notice the stop flag; a blocked
        // accept would keep the thread alive after the proxy is dropped.
        listener
            .set_nonblocking(true)
            .context("cannot make the proxy listener non-blocking")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let acceptor = std::thread::Builder::new()
            .name(format!("proxy-{addr}"))
            .spawn({
                let shared = Arc::clone(&shared);
                move || accept_loop(&listener, target, &shared)
            })
            .context("cannot start the proxy thread")?;
        Ok(Proxy {
            addr,
            target,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// Where clients connect to be forwarded.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where connections are forwarded to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Closes every forwarded connection and refuses new ones (they are
    /// accepted and closed at once) until [`Proxy::heal`]. When this
    /// returns, no byte passes the proxy any more.
    pub fn cut(&self) {
        let mut state = self.shared.state();
        state.cut = true;
        for (_, sockets) in state.connections.drain() {
            shut(&sockets);
        }
    }

    /// Forwards new connections again. Connections closed by the cut stay
    /// closed; the endpoints reconnect as they would after a network fault.
    pub fn heal(&self) {
        self.shared.state().cut = false;
    }

    pub fn is_cut(&self) -> bool {
        self.shared.state().cut
    }

    /// Connections being forwarded now.
    pub fn connections(&self) -> usize {
        self.shared.state().connections.len()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.cut();
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        // Forwarding threads end as soon as their sockets are shut down; a
        // thread still connecting to the target gives up within the connect
        // timeout and then sees the stop flag. Waiting here (bounded) means
        // a dropped proxy leaves no thread behind.
        let deadline = Instant::now() + CONNECT_TIMEOUT + Duration::from_secs(3);
        while self.shared.workers.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn shut(sockets: &[TcpStream; 2]) {
    for socket in sockets {
        let _ = socket.shutdown(Shutdown::Both);
    }
}

fn accept_loop(listener: &TcpListener, target: SocketAddr, shared: &Arc<Shared>) {
    while !shared.stopping.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(error) if error.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(ACCEPT_POLL);
                continue;
            }
            Err(_) => {
                // Out of descriptors or a connection reset before accept:
                // nothing to forward, and the next accept may work.
                std::thread::sleep(ACCEPT_POLL);
                continue;
            }
        };
        if shared.state().cut {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let worker = Worker::start(shared);
        let spawned = std::thread::Builder::new()
            .name("proxy-conn".into())
            .spawn({
                let shared = Arc::clone(shared);
                move || {
                    let _worker = worker;
                    forward(client, target, &shared);
                }
            });
        // A thread that cannot start drops its closure, which closes the
        // client socket and releases the worker count.
        drop(spawned);
    }
}

/// Connects `client` to `target` and copies bytes both ways until either
/// side closes or the proxy cuts the connection.
fn forward(client: TcpStream, target: SocketAddr, shared: &Arc<Shared>) {
    let Ok(upstream) = TcpStream::connect_timeout(&target, CONNECT_TIMEOUT) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    // The accepted socket may inherit the listener's non-blocking mode on
    // some platforms; the copy loops need blocking reads. Small frames
    // (consensus heartbeats) must not wait for Nagle's algorithm.
    let setup = client
        .set_nonblocking(false)
        .and_then(|()| client.set_nodelay(true))
        .and_then(|()| upstream.set_nodelay(true));
    let clones = client
        .try_clone()
        .and_then(|c| upstream.try_clone().map(|u| [c, u]));
    let (Ok(()), Ok(registered)) = (setup, clones) else {
        let _ = client.shutdown(Shutdown::Both);
        let _ = upstream.shutdown(Shutdown::Both);
        return;
    };
    let id = {
        let mut state = shared.state();
        // Checked under the same lock `cut` takes, so a connection that was
        // still reaching the target while the proxy was cut never carries a
        // byte.
        if state.cut || shared.stopping.load(Ordering::SeqCst) {
            drop(state);
            shut(&registered);
            return;
        }
        let id = state.next_id;
        state.next_id += 1;
        state.connections.insert(id, registered);
        id
    };
    let back = match (client.try_clone(), upstream.try_clone()) {
        (Ok(client_w), Ok(upstream_r)) => {
            let worker = Worker::start(shared);
            std::thread::Builder::new()
                .name("proxy-back".into())
                .spawn(move || {
                    let _worker = worker;
                    pump(upstream_r, client_w);
                })
                .ok()
        }
        _ => None,
    };
    if back.is_some() {
        pump(client, upstream);
        if let Some(back) = back {
            let _ = back.join();
        }
    }
    if let Some(sockets) = shared.state().connections.remove(&id) {
        shut(&sockets);
    }
}

/// Copies `from` into `to`. End of stream is passed on as a half close, so
/// the other direction can still finish; an error closes both sockets, so
/// the other direction's thread ends too.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
