//! The `synod` binary: `synod serve` runs one node, `synod dev` runs a
//! local development node.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use synod_node::NodeConfig;
use tracing_subscriber::EnvFilter;

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
    /// Run a local development node on 127.0.0.1:7001, the first of the
    /// ports `synodctl` tries, with its data under ./synod-data. (A
    /// three-node ensemble arrives with replication; until then this is one
    /// node.)
    Dev {
        #[arg(long, default_value = "127.0.0.1:7001")]
        client_addr: std::net::SocketAddr,
        /// Metrics and health endpoint.
        #[arg(long, default_value = "127.0.0.1:7201")]
        http_addr: std::net::SocketAddr,
        /// Where the node keeps its log and snapshots; it restarts with
        /// its data.
        #[arg(long, default_value = "./synod-data")]
        data_dir: std::path::PathBuf,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
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
    match run(Cli::parse_from(args)).await {
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

async fn run(cli: Cli) -> anyhow::Result<()> {
    let filter =
        EnvFilter::try_new(&cli.log).with_context(|| format!("bad --log filter {:?}", cli.log))?;
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_json {
        subscriber.json().init();
    } else {
        subscriber.init();
    }
    let config = match cli.command {
        Command::Serve(config) => *config,
        Command::Dev {
            client_addr,
            http_addr,
            data_dir,
        } => {
            let mut config = NodeConfig::parse_defaults();
            config.client_addr = client_addr;
            config.http_addr = http_addr;
            config.data_dir = Some(data_dir.join("1"));
            tracing::info!(
                client_api = %client_addr,
                http = %http_addr,
                data_dir = %data_dir.join("1").display(),
                "synod dev: one durable node; connect with `synodctl` (no flags needed)"
            );
            config
        }
    };
    synod_node::run(config, synod_node::server::shutdown_signal()).await?;
    Ok(())
}
