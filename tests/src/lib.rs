//! Test harness for multi-process tests: starts real `synod` binaries on
//! free loopback ports, waits until they accept clients, and kills them when
//! the test ends (even when it fails). `ensemble` runs several nodes as one
//! replicated ensemble, `proxy` puts controllable TCP links between them.

mod ensemble;
pub mod nemesis;
mod proxy;
pub mod zkload;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

pub use ensemble::Ensemble;
pub use proxy::Proxy;

/// Path of a workspace binary built in the same profile as the tests. The
/// first call in a test process runs `cargo build` for it, so a test never
/// runs against a binary older than the sources (cargo returns at once when
/// it is up to date), unless `SYNOD_BINARIES_BUILT` says the caller (the
/// test script) has just built every binary.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let exe = std::env::current_exe().context("cannot locate the test executable")?;
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .context("test executable is not inside a cargo target directory")?;
    let path = dir.join(name);
    let mut built = BUILT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let prebuilt = std::env::var_os("SYNOD_BINARIES_BUILT").is_some() && path.exists();
    if !prebuilt && !built.iter().any(|b| b == name) {
        let profile = dir.file_name().and_then(|p| p.to_str()).unwrap_or("debug");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "--quiet", "--workspace", "--bin", name]);
        if profile == "release" {
            build.arg("--release");
        }
        let status = build
            .status()
            .context("cannot run cargo to build the binary")?;
        if !status.success() || !path.exists() {
            bail!(
                "`cargo build --bin {name}` failed; {} is not there",
                path.display()
            );
        }
        built.push(name.to_owned());
    }
    Ok(path)
}

/// The loopback address this test process listens on: 127.x.y.z derived
/// from the process id, never 127.0.0.1. Outgoing connections on loopback
/// take 127.0.0.1 as their source address with a port from the ephemeral
/// range, so a port probed free here and bound a moment later by a node can
/// no longer be taken in between by some other test's outgoing connection
/// (which failed CI once with "Address already in use").
pub fn test_loopback() -> std::net::Ipv4Addr {
    let pid = std::process::id();
    let [_, high, middle, low] = pid.to_be_bytes();
    // 127.1.0.0/16 upwards: away from 127.0.0.x, which tests use by name.
    std::net::Ipv4Addr::new(127, 1 + (high & 0x7f), middle, low.max(1))
}

/// The first three octets of this process's loopback network
/// ([`test_loopback`]): node `id` of a test listens for peers on
/// `<prefix>.id`, so that every member can use the same port (as a
/// `--peer-address-template` of `<prefix>.{id}:port` needs).
pub fn loopback_prefix() -> String {
    let [a, b, c, _] = test_loopback().octets();
    format!("{a}.{b}.{c}")
}

/// A port that is free on `<prefix>.1` to `<prefix>.count` ([`loopback_prefix`]).
pub fn port_free_on_loopbacks(count: u8) -> u16 {
    let prefix = loopback_prefix();
    for _attempt in 0..50 {
        let Ok(first) = TcpListener::bind(format!("{prefix}.1:0")) else {
            continue;
        };
        let Ok(port) = first.local_addr().map(|a| a.port()) else {
            continue;
        };
        if (2..=count).all(|i| TcpListener::bind(format!("{prefix}.{i}:{port}")).is_ok()) {
            return port;
        }
    }
    panic!("no port free on every loopback address");
}

/// A channel to the node whose client port is `addr`, connected on first
/// use: 2 s to connect, `timeout` per call.
pub fn channel(addr: SocketAddr, timeout: Duration) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint URI")
        .connect_timeout(Duration::from_secs(2))
        .timeout(timeout)
        .connect_lazy()
}

/// The Admin API of the node whose admin port is `addr` (5 s per call).
pub fn admin(
    addr: SocketAddr,
) -> synod_proto::v1::admin_client::AdminClient<tonic::transport::Channel> {
    synod_proto::v1::admin_client::AdminClient::new(channel(addr, Duration::from_secs(5)))
}

/// Polls the Status of the node whose admin port is `addr` (an
/// unanswered call counts as not yet) until `done` holds, and returns it;
/// panics with `what` and the last status after `limit`.
pub async fn status_until(
    addr: SocketAddr,
    limit: Duration,
    what: &str,
    done: impl Fn(&synod_proto::v1::StatusResponse) -> bool,
) -> synod_proto::v1::StatusResponse {
    let deadline = Instant::now() + limit;
    loop {
        let view = admin(addr)
            .status(synod_proto::v1::StatusRequest {})
            .await
            .ok()
            .map(tonic::Response::into_inner);
        if let Some(view) = &view
            && done(view)
        {
            return view.clone();
        }
        assert!(Instant::now() < deadline, "{what}: last status {view:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether the leader's Status binds every one of its `members` members
/// to an incarnation (a new leader does that with a change of its own).
pub fn every_member_bound(status: &synod_proto::v1::StatusResponse, members: usize) -> bool {
    status.members.len() == members && status.members.iter().all(|m| m.incarnation_id != 0)
}

/// `synodctl --json --admin-endpoints <endpoints> member <args>`: whether it
/// succeeded, and its JSON answer (the last line when it prints several;
/// null when there is none).
pub async fn synodctl_member(endpoints: &str, args: &[&str]) -> (bool, serde_json::Value) {
    let bin = binary("synodctl").expect("synodctl");
    let mut all = vec!["--json", "--admin-endpoints", endpoints, "member"];
    all.extend_from_slice(args);
    let all: Vec<String> = all.into_iter().map(str::to_owned).collect();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(bin).args(&all).output().expect("run synodctl")
    })
    .await
    .expect("join");
    let text = String::from_utf8_lossy(&output.stdout);
    let last = text.lines().last().unwrap_or("null");
    (
        output.status.success(),
        serde_json::from_str(last).unwrap_or(serde_json::Value::Null),
    )
}

/// A loopback address with a port that was free a moment ago.
pub fn free_addr() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind((test_loopback(), 0)).context("cannot bind a probe port")?;
    Ok(listener.local_addr()?)
}

/// `count` distinct loopback addresses with ports that were free a moment
/// ago. The probes are held until all are picked, so no two are the same.
pub fn free_addrs(count: usize) -> anyhow::Result<Vec<SocketAddr>> {
    let probes = (0..count)
        .map(|_| TcpListener::bind((test_loopback(), 0)).context("cannot bind a probe port"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    probes.iter().map(|probe| Ok(probe.local_addr()?)).collect()
}

/// A fresh directory under the system temp dir, named after the test and
/// this process, removed again when dropped (also when the test panics).
/// Declare it before the nodes that use it, so they are stopped first.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(name: &str) -> anyhow::Result<TempDir> {
        let path = std::env::temp_dir().join(format!("synod-test-{name}-{}", std::process::id()));
        // Left over by an earlier run that was killed before cleaning up.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(TempDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A running `synod serve` process.
#[derive(Debug)]
pub struct TestNode {
    pub addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// The Admin API's port (`--admin-addr`), unless a test turned it off.
    admin: Option<SocketAddr>,
    child: Child,
}

impl TestNode {
    /// The Admin API's address.
    ///
    /// # Panics
    /// When the node was started with `--admin-addr off`.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.expect("this node's admin port is off")
    }

    /// Starts `synod serve` on a free port with `extra` flags and waits
    /// until it accepts connections.
    pub fn start(extra: &[&str]) -> anyhow::Result<TestNode> {
        let mut last_error = None;
        for _attempt in 0..5 {
            match TestNode::start_on(free_addr()?, extra) {
                Ok(node) => return Ok(node),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("synod did not start")))
    }

    /// Starts `synod serve` on `addr`, for a restart on the same address.
    pub fn start_on(addr: SocketAddr, extra: &[&str]) -> anyhow::Result<TestNode> {
        TestNode::start_with(addr, free_addr()?, extra)
    }

    /// Starts `synod serve` with its client port on `addr` and its HTTP
    /// port on `http_addr`, for a restart that keeps both.
    pub fn start_with(
        addr: SocketAddr,
        http_addr: SocketAddr,
        extra: &[&str],
    ) -> anyhow::Result<TestNode> {
        let mut node = TestNode::spawn(addr, http_addr, extra)?;
        node.wait_accepting(Duration::from_secs(20))?;
        Ok(node)
    }

    /// Starts the process without waiting for it, so that the members of an
    /// ensemble, which may need each other to finish starting, all run
    /// before any is waited for.
    pub fn spawn(
        addr: SocketAddr,
        http_addr: SocketAddr,
        extra: &[&str],
    ) -> anyhow::Result<TestNode> {
        let bin = binary("synod")?;
        // Not on the default 2181 unless asked: tests run side by side.
        let zookeeper: &[&str] = if extra.iter().any(|a| a.starts_with("--zookeeper-addr")) {
            &[]
        } else {
            &["--zookeeper-addr", "off"]
        };
        // Nor on the default admin port: a free one unless the test names
        // its own (to keep it across a restart, or to turn it off).
        let (admin_addr, admin_flag) = match flag_value(extra, "--admin-addr") {
            Some(given) => (given.parse().ok(), Vec::new()),
            None => {
                let addr = free_addr()?;
                (
                    Some(addr),
                    vec!["--admin-addr".to_owned(), addr.to_string()],
                )
            }
        };
        let child = Command::new(&bin)
            .args(["serve", "--client-addr", &addr.to_string()])
            .args(["--http-addr", &http_addr.to_string()])
            .args(zookeeper)
            .args(&admin_flag)
            .args(extra)
            // SYNOD_TEST_LOG=debug (say) makes the nodes of a failing test
            // tell more.
            .env(
                "SYNOD_LOG",
                std::env::var("SYNOD_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        Ok(TestNode {
            addr,
            http_addr,
            admin: admin_addr,
            child,
        })
    }

    /// Waits until the node accepts client connections, which it does once
    /// it has recovered its state. Fails at once if the process exits.
    pub fn wait_accepting(&mut self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("synod exited early with {status}");
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "synod did not accept connections on {} within {limit:?}",
            self.addr
        )
    }

    /// Whether the process is still running (it has not exited or been
    /// killed).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The operating system's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether `/readyz` answers 200 now. An unreachable or slow node is
    /// not ready.
    pub fn is_ready(&self) -> bool {
        matches!(
            self.http_get_within("/readyz", Duration::from_secs(2)),
            Ok((200, _))
        )
    }

    /// The value of the unlabelled metric `name` from `/metrics`, or `None`
    /// when the node does not export it.
    pub fn metric(&self, name: &str) -> anyhow::Result<Option<f64>> {
        let (status, body) = self.http_get_within("/metrics", Duration::from_secs(2))?;
        if status != 200 {
            bail!("/metrics answered {status}: {body}");
        }
        Ok(parse_metric(&body, name))
    }

    /// Kills the process with SIGKILL, as a crash would, and waits for it.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill().context("cannot kill synod")?;
        self.child.wait().context("cannot reap synod")?;
        Ok(())
    }

    /// GETs `path` from the node's HTTP endpoint: (status code, body).
    pub fn http_get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        self.http_get_within(path, Duration::from_secs(10))
    }

    /// Like [`TestNode::http_get`], failing when the node does not answer
    /// within `limit`, for polls that must not hang on a wedged node.
    pub fn http_get_within(&self, path: &str, limit: Duration) -> anyhow::Result<(u16, String)> {
        use std::io::{Read as _, Write as _};
        let mut stream =
            TcpStream::connect_timeout(&self.http_addr, limit.min(Duration::from_secs(5)))?;
        stream.set_read_timeout(Some(limit))?;
        stream.set_write_timeout(Some(limit))?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .context("no HTTP status line")?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Ok((status, body))
    }

    /// The endpoint string clients use.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// Stops the node the way Kubernetes does, with SIGTERM, and returns
    /// whether it exited by itself within `limit`.
    pub fn terminate(&mut self, limit: Duration) -> anyhow::Result<bool> {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .context("cannot run kill")?;
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.success());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(false)
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the unlabelled sample `name` in a Prometheus text scrape.
pub fn parse_metric(scrape: &str, name: &str) -> Option<f64> {
    scrape
        .lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            if fields.next()? != name {
                return None;
            }
            fields.next()?.parse().ok()
        })
}

/// The value of `flag` in `args`, given as `--flag value` or `--flag=value`.
pub fn flag_value(args: &[&str], flag: &str) -> Option<String> {
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if *arg == flag {
            return args.next().map(|value| (*value).to_owned());
        }
        if let Some(value) = arg
            .strip_prefix(flag)
            .and_then(|rest| rest.strip_prefix('='))
        {
            return Some(value.to_owned());
        }
    }
    None
}
