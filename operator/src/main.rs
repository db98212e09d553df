//! `synod-operator`: `run` reconciles CoordinationEnsembles (and serves
//! its metrics), `crdgen` writes the CRD, `render` prints the objects for a
//! resource without a cluster.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "synod-operator",
    version,
    about = "The Synod Kubernetes operator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the controller against the cluster (in-cluster config or
    /// KUBECONFIG).
    Run {
        /// Where to serve /metrics, /healthz and /readyz.
        #[arg(
            long,
            env = "SYNOD_OPERATOR_METRICS_ADDR",
            default_value = "0.0.0.0:8080"
        )]
        metrics_addr: std::net::SocketAddr,
        /// Watch only this namespace (default: all).
        #[arg(long, env = "SYNOD_OPERATOR_NAMESPACE")]
        namespace: Option<String>,
        /// Log lines as JSON.
        #[arg(long, env = "SYNOD_OPERATOR_LOG_JSON")]
        log_json: bool,
        #[command(flatten)]
        image: ImageArgs,
    },
    /// Write the CoordinationEnsemble CRD as YAML: by default to
    /// `crds/coordinationensemble.yaml` and the chart's copy (run from the
    /// repository root), or to each `--out` file, or to stdout (`--stdout`).
    Crdgen {
        #[arg(
            long,
            default_values = ["crds/coordinationensemble.yaml", "charts/synod-operator/crds/coordinationensemble.yaml"]
        )]
        out: Vec<PathBuf>,
        #[arg(long, conflicts_with = "out")]
        stdout: bool,
    },
    /// Print the objects the operator would apply for the resources in a
    /// file, as a YAML stream (like `helm template`); no cluster needed.
    Render {
        /// A YAML file with one or more CoordinationEnsembles (`-` for stdin).
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// Namespace for resources that name none.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        #[command(flatten)]
        image: ImageArgs,
    },
}

/// Defaults for resources that name no image.
#[derive(Debug, clap::Args)]
struct ImageArgs {
    /// Node image repository for ensembles that name none.
    #[arg(long, env = "SYNOD_OPERATOR_NODE_IMAGE", default_value = "synod")]
    node_image: String,
    /// Node image tag for ensembles that name no version.
    #[arg(long, env = "SYNOD_OPERATOR_NODE_VERSION", default_value = env!("CARGO_PKG_VERSION"))]
    node_version: String,
}

impl ImageArgs {
    fn context(&self) -> synod_operator::build::BuildContext {
        synod_operator::build::BuildContext {
            default_image_repository: self.node_image.clone(),
            default_version: self.node_version.clone(),
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            metrics_addr,
            namespace,
            log_json,
            image,
        } => {
            init_tracing(log_json);
            let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
            runtime.block_on(run(metrics_addr, namespace, image.context()))
        }
        Command::Crdgen { out, stdout } => crdgen(if stdout { &[] } else { &out }),
        Command::Render {
            file,
            namespace,
            image,
        } => {
            let input = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading stdin")?
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?
            };
            let yaml = synod_operator::render::render(&input, &namespace, &image.context())?;
            use std::io::Write as _;
            std::io::stdout().write_all(yaml.as_bytes())?;
            Ok(())
        }
    }
}

fn crdgen(out: &[PathBuf]) -> anyhow::Result<()> {
    let yaml = synod_operator::crd::crd_yaml().context("serializing the CRD")?;
    if out.is_empty() {
        use std::io::Write as _;
        std::io::stdout().write_all(yaml.as_bytes())?;
    }
    for path in out {
        std::fs::write(path, &yaml).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SYNOD_OPERATOR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(
    metrics_addr: std::net::SocketAddr,
    namespace: Option<String>,
    build: synod_operator::build::BuildContext,
) -> anyhow::Result<()> {
    use std::sync::Arc;

    use synod_operator::metrics::Metrics;
    use synod_operator::reconcile::{Context, run as run_controller};

    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    let metrics = Arc::new(Metrics::default());
    let served = metrics.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let metrics = served.clone();
                async move {
                    (
                        [("content-type", "text/plain; version=0.0.4")],
                        metrics.render(),
                    )
                }
            }),
        )
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route("/readyz", axum::routing::get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(metrics_addr)
        .await
        .with_context(|| format!("binding {metrics_addr}"))?;
    tracing::info!(%metrics_addr, ?namespace, "synod-operator starting");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let ctx = Arc::new(Context::new(client, metrics, build));
    run_controller(ctx, namespace).await;
    server.abort();
    tracing::info!("synod-operator stopped");
    Ok(())
}
