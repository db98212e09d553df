//! synodctl: the command line for Synod. Reads and writes znodes, holds
//! ephemeral nodes, follows watches, shows and changes the membership
//! (`member`), and prints either for people or, with `--json`, one JSON
//! value per result or event for scripts.

mod admin;
mod member;
mod tls;

use std::collections::BTreeMap;
use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine;
use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use synod_client::{
    AddWatchMode, Client, ClientConfig, CreateMode, CreateOptions, Error, SessionState, Stat,
    WatchEvent, event_type_name,
};

/// Tried in order when neither --endpoints nor SYNOD_ENDPOINTS is given:
/// the local three-node `synod dev` ensemble, then a single `synod serve`.
const DEFAULT_ENDPOINTS: &str = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003,127.0.0.1:7000";

/// The Admin ports of `synod dev`'s nodes, then a single node's default.
const DEFAULT_ADMIN_ENDPOINTS: &str = "127.0.0.1:7301,127.0.0.1:7302,127.0.0.1:7303,127.0.0.1:7300";

#[derive(Debug, Parser)]
#[command(name = "synodctl", version, about = "Command line client for Synod")]
struct Cli {
    /// Comma-separated endpoints, host:port or http://host:port
    /// [default: 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003,127.0.0.1:7000]
    #[arg(long, env = "SYNOD_ENDPOINTS", global = true, value_name = "LIST")]
    endpoints: Option<String>,

    /// Comma-separated Admin API endpoints (each node's --admin-addr), for
    /// status, transfer-leader, snapshot and member; with TLS they need a
    /// client certificate from the admin CA (--tls-cert, --tls-key)
    /// [default: 127.0.0.1:7301,127.0.0.1:7302,127.0.0.1:7303,127.0.0.1:7300]
    #[arg(
        long,
        env = "SYNOD_ADMIN_ENDPOINTS",
        global = true,
        value_name = "LIST"
    )]
    admin_endpoints: Option<String>,

    /// Print one JSON value per result or event
    #[arg(long, global = true)]
    json: bool,

    /// Timeout for connecting and for each request, like 5s or 500ms
    #[arg(long, global = true, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,

    #[command(flatten)]
    tls: tls::TlsArgs,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a node (with -e, hold the session until interrupted)
    Create {
        /// Ephemeral: the node lives as long as this command runs
        #[arg(short = 'e', long)]
        ephemeral: bool,
        /// Sequential: the server appends a 10-digit counter to the name
        #[arg(short = 's', long)]
        sequential: bool,
        /// Container: deleted by the server once its last child is gone
        #[arg(long, conflicts_with_all = ["ephemeral", "sequential", "ttl"])]
        container: bool,
        /// Delete the node once childless and unmodified for MS milliseconds
        #[arg(long, value_name = "MS", conflicts_with = "ephemeral")]
        ttl: Option<u64>,
        path: String,
        /// The node's data (empty when left out)
        data: Option<String>,
    },
    /// Print a node's data, with a final newline unless it ends in one
    /// (as zkCli prints it)
    Get {
        path: String,
        /// Print the data byte for byte, with no newline added (for
        /// redirecting binary data to a file)
        #[arg(long)]
        raw: bool,
        /// Reflect every write acknowledged anywhere in the ensemble before
        /// this read (the server catches up with the leader first)
        #[arg(short = 'l', long)]
        linearizable: bool,
    },
    /// Replace a node's data
    Set {
        path: String,
        data: String,
        /// Only if the node's data version is V
        #[arg(long, value_name = "V", allow_negative_numbers = true)]
        version: Option<i32>,
    },
    /// Delete a node (-r: with everything below it)
    Rm {
        /// Delete the subtree, children first
        #[arg(short = 'r', long)]
        recursive: bool,
        path: String,
        /// Only if the node's data version is V
        #[arg(long, value_name = "V", allow_negative_numbers = true)]
        version: Option<i32>,
    },
    /// List a node's children (-R: every path below it)
    Ls {
        /// List the whole subtree, one full path per line
        #[arg(short = 'R', long)]
        recursive: bool,
        /// Reflect every write acknowledged anywhere in the ensemble before
        /// this read (not with -R)
        #[arg(short = 'l', long, conflicts_with = "recursive")]
        linearizable: bool,
        #[arg(default_value = "/")]
        path: String,
    },
    /// Print a node's Stat
    Stat {
        path: String,
        /// Reflect every write acknowledged anywhere in the ensemble before
        /// this read
        #[arg(short = 'l', long)]
        linearizable: bool,
    },
    /// Print the events of a persistent watch until interrupted
    Watch {
        /// Watch the whole subtree (persistent-recursive)
        #[arg(short = 'r', long)]
        recursive: bool,
        path: String,
    },
    /// Print a subtree as an indented tree
    Tree {
        #[arg(default_value = "/")]
        path: String,
    },
    /// Print each endpoint's view of the ensemble: role, leader, log
    /// positions, readiness (and, from the leader, every member's lag)
    Status,
    /// Make node ID the leader (asks every endpoint; the leader acts)
    TransferLeader {
        #[arg(value_name = "ID")]
        node_id: u64,
    },
    /// Take a snapshot now on every endpoint
    Snapshot,
    /// List the members, or change them one at a time; each change waits
    /// until it is committed (sent to any endpoint: a follower forwards it
    /// to the leader)
    Member {
        #[command(subcommand)]
        action: member::Action,
    },
}

fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fail(&anyhow::Error::from(err).context("starting the runtime")),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

fn fail(err: &anyhow::Error) -> ExitCode {
    // `synodctl ls -R / | head` is not an error.
    if err
        .downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    {
        return ExitCode::SUCCESS;
    }
    // Nothing more can be done if stderr is gone too.
    let _ = writeln!(io::stderr(), "error: {err:#}");
    ExitCode::FAILURE
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .with_target(false)
        .init();
}

async fn run(cli: Cli) -> Result<()> {
    if matches!(
        cli.command,
        Command::Status | Command::TransferLeader { .. } | Command::Snapshot
    ) {
        return admin::run(&cli).await.map_err(|err| admin::hint(err, &cli));
    }
    if let Command::Member { action } = &cli.command {
        return member::run(&cli, action)
            .await
            .map_err(|err| admin::hint(err, &cli));
    }
    let client = connect(&cli).await?;
    let mut out = Out::new(cli.json);
    let result = execute(&client, cli.command, &mut out).await;
    // Ending the session now rather than letting it expire frees the
    // server's state (and an ephemeral node) at once.
    if let Err(err) = client.close().await {
        tracing::debug!("closing the session failed: {err}");
    }
    result
}

async fn connect(cli: &Cli) -> Result<Client> {
    let list = cli.endpoints.as_deref().unwrap_or(DEFAULT_ENDPOINTS);
    let endpoints = synod_client::parse_endpoints(list)?;
    if endpoints.is_empty() {
        bail!("no endpoints given");
    }
    let config = ClientConfig {
        endpoints,
        connect_timeout: cli.timeout.min(Duration::from_secs(5)),
        request_timeout: cli.timeout,
        tls: cli.tls.load()?,
        ..ClientConfig::default()
    };
    Ok(Client::connect(config).await?)
}

async fn execute(client: &Client, command: Command, out: &mut Out) -> Result<()> {
    match command {
        Command::Create {
            ephemeral,
            sequential,
            container,
            ttl,
            path,
            data,
        } => {
            let mode = create_mode(ephemeral, sequential, container, ttl.is_some());
            let options = CreateOptions {
                mode,
                acl: Vec::new(),
                ttl: ttl.map(Duration::from_millis),
            };
            let data = data.unwrap_or_default();
            let (created, stat) = client.create(&path, data.as_bytes(), &options).await?;
            if out.json {
                out.json(&json!({ "path": created, "stat": stat }))?;
            } else {
                out.line(&created)?;
            }
            if ephemeral {
                hold(client, &created, out.json).await?;
            }
        }
        Command::Get {
            path,
            linearizable,
            raw,
        } => {
            let (data, stat) = if linearizable {
                client.get_data_linearizable(&path).await?
            } else {
                client.get_data(&path).await?
            };
            if out.json {
                let (text, encoding) = match String::from_utf8(data) {
                    Ok(text) => (text, "utf8"),
                    Err(err) => (
                        base64::engine::general_purpose::STANDARD.encode(err.as_bytes()),
                        "base64",
                    ),
                };
                out.json(&json!({
                    "path": path,
                    "data": text,
                    "encoding": encoding,
                    "stat": stat,
                }))?;
            } else {
                out.data(&data, raw)?;
            }
        }
        Command::Set {
            path,
            data,
            version,
        } => {
            let stat = client.set_data(&path, data.as_bytes(), version).await?;
            if out.json {
                out.json(&json!({ "path": path, "stat": stat }))?;
            }
        }
        Command::Rm {
            recursive,
            path,
            version,
        } => {
            let deleted = if recursive {
                delete_tree(client, &path, version).await?
            } else {
                client.delete(&path, version).await?;
                1
            };
            if out.json {
                out.json(&json!({ "path": path, "deleted": deleted }))?;
            }
        }
        Command::Ls {
            recursive,
            linearizable,
            path,
        } => {
            if recursive {
                let tree = fetch_tree(client, &path).await?;
                let mut paths = Vec::new();
                walk(&tree, &path, &mut |p, _| paths.push(p.to_owned()));
                if out.json {
                    out.json(&json!(paths))?;
                } else {
                    for p in &paths {
                        out.line(p)?;
                    }
                }
            } else {
                let children = if linearizable {
                    client.get_children_linearizable(&path).await?
                } else {
                    client.get_children(&path).await?
                };
                if out.json {
                    out.json(&json!(children))?;
                } else {
                    for child in &children {
                        out.line(child)?;
                    }
                }
            }
        }
        Command::Stat { path, linearizable } => {
            let stat = if linearizable {
                client.exists_linearizable(&path).await?
            } else {
                client.exists(&path).await?
            }
            .ok_or_else(|| Error::NoNode { path: path.clone() })?;
            if out.json {
                let mut value = json!(stat);
                value["path"] = json!(path);
                out.json(&value)?;
            } else {
                for line in stat_lines(&stat) {
                    out.line(&line)?;
                }
            }
        }
        Command::Watch { recursive, path } => {
            let mode = if recursive {
                AddWatchMode::PersistentRecursive
            } else {
                AddWatchMode::Persistent
            };
            watch(client, &path, mode, out).await?;
        }
        Command::Status
        | Command::TransferLeader { .. }
        | Command::Snapshot
        | Command::Member { .. } => {
            bail!("admin commands run without a session")
        }
        Command::Tree { path } => {
            let tree = fetch_tree(client, &path).await?;
            if out.json {
                out.json(&tree_json(&tree, &path))?;
            } else {
                out.line(&path)?;
                render_tree(&tree, &path, "", out)?;
            }
        }
    }
    Ok(())
}

fn create_mode(ephemeral: bool, sequential: bool, container: bool, ttl: bool) -> CreateMode {
    match (ephemeral, sequential, container, ttl) {
        (_, _, true, _) => CreateMode::Container,
        (true, true, _, _) => CreateMode::EphemeralSequential,
        (true, false, _, _) => CreateMode::Ephemeral,
        (false, true, _, true) => CreateMode::PersistentSequentialWithTtl,
        (false, false, _, true) => CreateMode::PersistentWithTtl,
        (false, true, _, false) => CreateMode::PersistentSequential,
        (false, false, _, false) => CreateMode::Persistent,
    }
}

/// Keeps the session (and so the ephemeral node) alive until interrupted.
async fn hold(client: &Client, path: &str, json: bool) -> Result<()> {
    if !json {
        note(&format!(
            "holding session {:#x} so that {path} lives; interrupt (ctrl-c) to end",
            client.session_id()
        ));
    }
    let mut states = client.state_changes();
    tokio::select! {
        interrupted = interrupted() => interrupted,
        ended = states.wait_for(|s| s.is_terminal()) => match ended.map(|s| *s) {
            Ok(SessionState::Expired) => bail!("session expired; {path} is gone"),
            _ => bail!("session ended; {path} is gone"),
        },
    }
}

async fn watch(client: &Client, path: &str, mode: AddWatchMode, out: &mut Out) -> Result<()> {
    let mut events = client.watch(path, mode).await?;
    if !out.json {
        note(&format!("watching {path}; interrupt (ctrl-c) to stop"));
    }
    loop {
        tokio::select! {
            interrupted = interrupted() => return interrupted,
            event = events.next_event() => match event {
                Some(event) => out.event(&event)?,
                None => match client.state() {
                    SessionState::Expired => bail!("session expired"),
                    _ => bail!("session ended"),
                },
            },
        }
    }
}

/// Resolves on ctrl-c, or SIGTERM where there is one.
async fn interrupted() -> Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
        tokio::select! {
            ctrl_c = tokio::signal::ctrl_c() => ctrl_c.context("listening for ctrl-c"),
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c()
            .await
            .context("listening for ctrl-c")
    }
}

fn join(parent: &str, child: &str) -> String {
    if parent.ends_with('/') {
        format!("{parent}{child}")
    } else {
        format!("{parent}/{child}")
    }
}

/// Children by parent path, for the subtree at `root`. Nodes that vanish
/// while being listed are left out.
async fn fetch_tree(client: &Client, root: &str) -> Result<BTreeMap<String, Vec<String>>> {
    let mut tree = BTreeMap::new();
    let mut queue = vec![root.to_owned()];
    while let Some(path) = queue.pop() {
        let children = match client.get_children(&path).await {
            Ok(children) => children,
            Err(Error::NoNode { .. }) if path != root => continue,
            Err(err) => return Err(err.into()),
        };
        queue.extend(children.iter().map(|c| join(&path, c)));
        tree.insert(path, children);
    }
    Ok(tree)
}

/// Visits the subtree depth first, parents before children, in name order.
fn walk(tree: &BTreeMap<String, Vec<String>>, path: &str, visit: &mut dyn FnMut(&str, usize)) {
    fn go(
        tree: &BTreeMap<String, Vec<String>>,
        path: &str,
        depth: usize,
        visit: &mut dyn FnMut(&str, usize),
    ) {
        visit(path, depth);
        for child in tree.get(path).into_iter().flatten() {
            go(tree, &join(path, child), depth + 1, visit);
        }
    }
    go(tree, path, 0, visit);
}

fn render_tree(
    tree: &BTreeMap<String, Vec<String>>,
    path: &str,
    prefix: &str,
    out: &mut Out,
) -> Result<()> {
    let children = tree.get(path).map(Vec::as_slice).unwrap_or_default();
    for (i, child) in children.iter().enumerate() {
        let last = i + 1 == children.len();
        let (branch, indent) = if last {
            ("└── ", "    ")
        } else {
            ("├── ", "│   ")
        };
        out.line(&format!("{prefix}{branch}{child}"))?;
        render_tree(tree, &join(path, child), &format!("{prefix}{indent}"), out)?;
    }
    Ok(())
}

fn tree_json(tree: &BTreeMap<String, Vec<String>>, path: &str) -> Value {
    let children: Vec<Value> = tree
        .get(path)
        .into_iter()
        .flatten()
        .map(|child| tree_json(tree, &join(path, child)))
        .collect();
    json!({ "path": path, "children": children })
}

/// Deletes `root` and everything below it, deepest first; returns how many
/// nodes were deleted. Nodes created meanwhile make it start over, a few
/// times.
async fn delete_tree(client: &Client, root: &str, version: Option<i32>) -> Result<usize> {
    if root == "/" {
        bail!("refusing to delete /");
    }
    let mut deleted = 0;
    for attempt in 1..=3 {
        let tree = fetch_tree(client, root).await?;
        let mut nodes = Vec::new();
        walk(&tree, root, &mut |p, _| nodes.push(p.to_owned()));
        for node in nodes.iter().skip(1).rev() {
            match client.delete(node, None).await {
                Ok(()) => deleted += 1,
                Err(Error::NoNode { .. }) => {}
                Err(err) => return Err(err.into()),
            }
        }
        match client.delete(root, version).await {
            Ok(()) => return Ok(deleted + 1),
            Err(Error::NotEmpty { .. }) if attempt < 3 => continue,
            Err(err) => return Err(err.into()),
        }
    }
    bail!("{root} kept getting new children")
}

fn stat_lines(stat: &Stat) -> Vec<String> {
    vec![
        format!("cZxid = {:#x}", stat.czxid),
        format!("ctime = {}", format_time(stat.ctime)),
        format!("mZxid = {:#x}", stat.mzxid),
        format!("mtime = {}", format_time(stat.mtime)),
        format!("pZxid = {:#x}", stat.pzxid),
        format!("cversion = {}", stat.cversion),
        format!("dataVersion = {}", stat.version),
        format!("aclVersion = {}", stat.aversion),
        format!("ephemeralOwner = {:#x}", stat.ephemeral_owner),
        format!("dataLength = {}", stat.data_length),
        format!("numChildren = {}", stat.num_children),
    ]
}

/// Milliseconds since the Unix epoch as "2024-05-01 12:34:56.789 UTC".
fn format_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{millis:03} UTC",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// Howard Hinnant's days-to-civil: the proleptic Gregorian date of a day
/// count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 5s or 500ms"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown unit {other:?}; use ms, s, m or h")),
    };
    if seconds <= 0.0 {
        return Err("the timeout must be above zero".to_owned());
    }
    Duration::try_from_secs_f64(seconds).map_err(|err| err.to_string())
}

/// A note for the person at the terminal, kept out of stdout.
fn note(text: &str) {
    // A closed stderr must not stop the command.
    let _ = writeln!(io::stderr(), "{text}");
}

/// Writes results; errors (a closed pipe) end the command.
struct Out {
    json: bool,
    stdout: io::Stdout,
}

impl Out {
    fn new(json: bool) -> Out {
        Out {
            json,
            stdout: io::stdout(),
        }
    }

    fn line(&mut self, text: &str) -> Result<()> {
        let mut lock = self.stdout.lock();
        writeln!(lock, "{text}")?;
        lock.flush()?;
        Ok(())
    }

    fn json(&mut self, value: &Value) -> Result<()> {
        let text = serde_json::to_string(value)?;
        self.line(&text)
    }

    /// Node data followed by a newline unless it ends in one, as zkCli
    /// prints it, so that the next prompt or line does not run on from it;
    /// `raw` writes the bytes alone.
    fn data(&mut self, data: &[u8], raw: bool) -> Result<()> {
        let mut lock = self.stdout.lock();
        lock.write_all(data)?;
        if !raw && !data.ends_with(b"\n") {
            lock.write_all(b"\n")?;
        }
        lock.flush()?;
        Ok(())
    }

    fn event(&mut self, event: &WatchEvent) -> Result<()> {
        let kind = event_type_name(event.event_type);
        if self.json {
            self.json(&json!({
                "type": kind,
                "path": event.path,
                "zxid": event.zxid,
                "seq": event.seq,
            }))
        } else {
            self.line(&format!("{kind} {} (zxid {:#x})", event.path, event.zxid))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn times() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00.000 UTC");
        assert_eq!(format_time(951_782_400_123), "2000-02-29 00:00:00.123 UTC");
        assert_eq!(
            format_time(1_714_566_896_789),
            "2024-05-01 12:34:56.789 UTC"
        );
        assert_eq!(format_time(-1), "1969-12-31 23:59:59.999 UTC");
    }

    #[test]
    fn modes() {
        assert_eq!(
            create_mode(false, false, false, false),
            CreateMode::Persistent
        );
        assert_eq!(
            create_mode(true, true, false, false),
            CreateMode::EphemeralSequential
        );
        assert_eq!(
            create_mode(false, true, false, true),
            CreateMode::PersistentSequentialWithTtl
        );
        assert_eq!(
            create_mode(false, false, true, false),
            CreateMode::Container
        );
    }

    #[test]
    fn stat_has_all_eleven_fields_in_hex_zxids() {
        let stat = Stat {
            czxid: 26,
            mzxid: 27,
            pzxid: 28,
            ephemeral_owner: 0x1234,
            ..Stat::default()
        };
        let lines = stat_lines(&stat);
        assert_eq!(lines.len(), 11);
        assert_eq!(lines[0], "cZxid = 0x1a");
        assert_eq!(lines[8], "ephemeralOwner = 0x1234");
    }

    #[test]
    fn tree_walk_is_depth_first_in_name_order() {
        let mut tree = BTreeMap::new();
        tree.insert("/".to_owned(), vec!["a".to_owned(), "b".to_owned()]);
        tree.insert("/a".to_owned(), vec!["x".to_owned()]);
        tree.insert("/a/x".to_owned(), vec![]);
        tree.insert("/b".to_owned(), vec![]);
        let mut seen = Vec::new();
        walk(&tree, "/", &mut |p, d| seen.push((p.to_owned(), d)));
        assert_eq!(
            seen,
            vec![
                ("/".to_owned(), 0),
                ("/a".to_owned(), 1),
                ("/a/x".to_owned(), 2),
                ("/b".to_owned(), 1)
            ]
        );
    }

    #[test]
    fn cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["synodctl", "set", "/a", "x", "--version", "-1"])
            .expect("negative versions parse");
        assert!(matches!(
            cli.command,
            Command::Set {
                version: Some(-1),
                ..
            }
        ));
        assert!(Cli::try_parse_from(["synodctl", "create", "--container", "-e", "/a"]).is_err());
    }
}
