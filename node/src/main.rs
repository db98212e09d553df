//! The `synod` binary: `synod serve` runs one node, `synod dev` runs a
//! local three-node ensemble in one process.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use synod_node::NodeConfig;
use tracing::Instrument as _;
use tracing_subscriber::EnvFilter;

/// A faster allocator than the system's for a process that allocates per
/// request.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "synod",
    version,
    // Settings from a config file come first as flags; later flags win.
    args_override_self = true,
    about = "Synod: a coordination service with ZooKeeper's data model"
)]
struct Cli {
    /// Log filter, as RUST_LOG (e.g. `info`, `synod_node=debug`).
    #[arg(long, env = "SYNOD_LOG", default_value = "info", global = true)]
    log: String,

    /// Log as JSON lines instead of text.
    #[arg(long, env = "SYNOD_LOG_JSON", global = true)]
    log_json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one node.
    #[command(args_override_self = true)]
    Serve(Box<NodeConfig>),
    /// Run a local three-node ensemble on loopback: node i (1..3) serves
    /// clients on 127.0.0.1:700i (the ports `synodctl` tries), peers on
    /// 710i and HTTP on 720i, with its data under <data-dir>/i. Stops on
    /// ctrl-c and restarts with its data.
    Dev {
        /// Where the nodes keep their logs and snapshots.
        #[arg(long, default_value = "./synod-data")]
        data_dir: std::path::PathBuf,
        /// Number of nodes (1 to 9).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=9))]
        nodes: u64,
        /// TLS everywhere, with a throwaway CA made under <data-dir>/tls
        /// (kept for the next run): mutual TLS between the nodes, TLS for
        /// clients (a client certificate is made too), and the ZooKeeper
        /// secure port 127.0.0.1:228i.
        #[arg(long)]
        tls: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    // Before the heap grows; logged once the log is set up.
    let huge_pages_off = synod_node::memory::avoid_transparent_huge_pages();
    let purges_promptly = synod_node::memory::purge_freed_pages_promptly();
    let args = match synod_node::config::expand_config_file(
        std::env::args().collect(),
        std::env::var("SYNOD_CONFIG").ok(),
    ) {
        Ok(args) => args,
        Err(error) => {
            #[allow(
                clippy::print_stderr,
                reason = "the binary's last word on a fatal error"
            )]
            {
                eprintln!("error: {error}");
            }
            return ExitCode::FAILURE;
        }
    };
    match run(Cli::parse_from(args), huge_pages_off, purges_promptly).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One readable line for the operator; the log has the context.
            #[allow(
                clippy::print_stderr,
                reason = "the binary's last word on a fatal error"
            )]
            {
                eprintln!("error: {error:#}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(
    cli: Cli,
    huge_pages_off: std::io::Result<bool>,
    purges_promptly: bool,
) -> anyhow::Result<()> {
    let filter =
        EnvFilter::try_new(&cli.log).with_context(|| format!("bad --log filter {:?}", cli.log))?;
    // Colour codes only for a person at a terminal: in a file or a
    // container's log they are noise that hides the text.
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if cli.log_json {
        subscriber.json().init();
    } else {
        subscriber.init();
    }
    match huge_pages_off {
        Ok(true) => tracing::debug!("transparent huge pages off for this process"),
        Ok(false) => tracing::info!(
            variable = synod_node::memory::ALLOW_THP_VARIABLE,
            "transparent huge pages left to the allocator, as the variable asks"
        ),
        Err(error) => tracing::warn!(%error, "cannot turn transparent huge pages off"),
    }
    let purge_delay_ms = synod_node::memory::purge_delay_ms();
    if purges_promptly {
        tracing::debug!(purge_delay_ms, "freed pages go back to the system at once");
    } else {
        tracing::info!(
            purge_delay_ms,
            variable = synod_node::memory::PURGE_DELAY_VARIABLE,
            "the allocator's purge delay left as the environment sets it"
        );
    }
    match cli.command {
        Command::Serve(config) => {
            synod_node::run(*config, synod_node::server::shutdown_signal()).await?;
        }
        Command::Dev {
            data_dir,
            nodes,
            tls,
        } => dev(&data_dir, nodes, tls).await?,
    }
    Ok(())
}

/// Runs `nodes` nodes in this process, each a full `synod serve` with its
/// own ports and data directory, until ctrl-c stops them all.
async fn dev(data_dir: &std::path::Path, nodes: u64, tls: bool) -> anyhow::Result<()> {
    let tls_dir = data_dir.join("tls");
    if tls {
        dev_certificates(&tls_dir, nodes)?;
    }
    let peers = (1..=nodes)
        .map(|i| format!("{i}=127.0.0.1:{}", 7100 + i))
        .collect::<Vec<_>>()
        .join(",");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut running = tokio::task::JoinSet::new();
    let mut endpoints = Vec::new();
    for i in 1..=nodes {
        let mut config = NodeConfig::parse_defaults();
        config.node_id = Some(i);
        config.peers = Some(peers.clone());
        config.peer_addr = None;
        config.client_addr = ([127, 0, 0, 1], 7000 + i as u16).into();
        config.http_addr = ([127, 0, 0, 1], 7200 + i as u16).into();
        config.admin_addr =
            synod_node::config::OptionalAddr(Some(([127, 0, 0, 1], 7300 + i as u16).into()));
        config.zookeeper_addr =
            synod_node::config::OptionalAddr(Some(([127, 0, 0, 1], 2180 + i as u16).into()));
        config.data_dir = Some(data_dir.join(i.to_string()));
        if tls {
            config.tls_cert = Some(tls_dir.join(format!("node-{i}.crt")));
            config.tls_key = Some(tls_dir.join(format!("node-{i}.key")));
            config.tls_ca = Some(tls_dir.join("ca.crt"));
            config.zookeeper_secure_addr =
                synod_node::config::OptionalAddr(Some(([127, 0, 0, 1], 2280 + i as u16).into()));
        }
        endpoints.push(config.client_addr.to_string());
        #[allow(
            clippy::print_stdout,
            reason = "synod dev tells the user where to connect"
        )]
        {
            println!(
                "node {i}: clients {}  zookeeper {}  admin {}  peers 127.0.0.1:{}  http http://{}/metrics  data {}",
                config.client_addr,
                config.zookeeper_addr,
                config.admin_addr,
                7100 + i,
                config.http_addr,
                data_dir.join(i.to_string()).display()
            );
        }
        let mut stop = stop_rx.clone();
        // Each node's log lines carry its id: three nodes share stderr.
        let span = tracing::info_span!("node", id = i);
        running.spawn(
            async move {
                let stopped = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                (i, synod_node::run(config, stopped).await)
            }
            .instrument(span),
        );
    }
    #[allow(
        clippy::print_stdout,
        reason = "synod dev tells the user where to connect"
    )]
    {
        println!(
            "synod dev: {nodes} nodes; connect with `synodctl` (no flags needed) or --endpoints {}; ZooKeeper clients to {}; ctrl-c stops",
            endpoints.join(","),
            (1..=nodes)
                .map(|i| format!("127.0.0.1:{}", 2180 + i))
                .collect::<Vec<_>>()
                .join(",")
        );
        if tls {
            let file = |name: &str| tls_dir.join(name).display().to_string();
            println!(
                "synod dev: TLS on; synodctl --tls-ca {} --tls-cert {} --tls-key {} status; ZooKeeper secure ports 127.0.0.1:2281..",
                file("ca.crt"),
                file("client.crt"),
                file("client.key"),
            );
        }
    }
    let mut failure = None;
    tokio::select! {
        () = synod_node::server::shutdown_signal() => {}
        Some(ended) = running.join_next() => {
            // A node that stops by itself takes the others down: a dev
            // ensemble with a dead member would hide the reason.
            failure = Some(ended);
        }
    }
    let _ = stop_tx.send(true);
    while let Some(ended) = running.join_next().await {
        if let Ok((i, Err(error))) = ended {
            tracing::error!(node = i, %error, "node stopped with an error");
        }
    }
    match failure {
        Some(Ok((i, Err(error)))) => Err(anyhow::anyhow!("node {i}: {error}")),
        Some(Ok((i, Ok(())))) => Err(anyhow::anyhow!("node {i} stopped unexpectedly")),
        Some(Err(error)) => Err(anyhow::anyhow!("a node panicked: {error}")),
        None => Ok(()),
    }
}

/// A throwaway CA and a certificate for each node and for a client, in
/// `dir`, unless an earlier run left them there.
fn dev_certificates(dir: &std::path::Path, nodes: u64) -> anyhow::Result<()> {
    let names = ["127.0.0.1".to_owned(), "localhost".to_owned()];
    let missing = |stem: &str| !dir.join(format!("{stem}.crt")).exists();
    if !missing("ca") && !missing("client") && (1..=nodes).all(|i| !missing(&format!("node-{i}"))) {
        return Ok(());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let ca = synod_tls::generate::DevCa::new("synod dev CA")?;
    for i in 1..=nodes {
        ca.write(dir, &format!("node-{i}"), &format!("node-{i}"), &names)?;
    }
    ca.write(dir, "client", "synod dev client", &names)?;
    tracing::info!(dir = %dir.display(), "made a throwaway CA and certificates for synod dev --tls");
    Ok(())
}
