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
        #[command(flatten)]
        operator: OperatorArgs,
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
        #[command(flatten)]
        operator: OperatorArgs,
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

/// Where the operator's own pods are: the ensembles' NetworkPolicies let
/// only them reach the nodes' admin port.
#[derive(Debug, clap::Args)]
struct OperatorArgs {
    /// The operator's namespace (the chart passes the pod's). Default: the
    /// in-cluster namespace for `run`, `synod-system` for `render`.
    #[arg(long, env = "SYNOD_OPERATOR_POD_NAMESPACE")]
    operator_namespace: Option<String>,
    /// Labels of the operator's pods, `key=value,...` (the chart passes
    /// its selector labels).
    #[arg(
        long,
        env = "SYNOD_OPERATOR_POD_LABELS",
        default_value = "app.kubernetes.io/name=synod-operator",
        value_parser = parse_pod_labels
    )]
    operator_pod_labels: std::collections::BTreeMap<String, String>,
}

fn parse_pod_labels(text: &str) -> Result<std::collections::BTreeMap<String, String>, String> {
    match synod_operator::build::parse_labels(text) {
        Some(labels) if !labels.is_empty() => Ok(labels),
        _ => Err(format!(
            "{text:?}: expected key=value pairs separated by commas"
        )),
    }
}

fn context(
    image: &ImageArgs,
    operator: &OperatorArgs,
    fallback_namespace: &str,
) -> synod_operator::build::BuildContext {
    synod_operator::build::BuildContext {
        default_image_repository: image.node_image.clone(),
        default_version: image.node_version.clone(),
        operator: synod_operator::build::OperatorPods {
            namespace: operator
                .operator_namespace
                .clone()
                .unwrap_or_else(|| fallback_namespace.to_owned()),
            pod_labels: operator.operator_pod_labels.clone(),
        },
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
            operator,
        } => {
            init_tracing(log_json);
            let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
            runtime.block_on(run(metrics_addr, namespace, image, operator))
        }
        Command::Crdgen { out, stdout } => crdgen(if stdout { &[] } else { &out }),
        Command::Render {
            file,
            namespace,
            image,
            operator,
        } => {
            let input = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading stdin")?
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?
            };
            let ctx = context(&image, &operator, "synod-system");
            let yaml = synod_operator::render::render(&input, &namespace, &ctx)?;
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
    image: ImageArgs,
    operator: OperatorArgs,
) -> anyhow::Result<()> {
    use std::sync::Arc;

    use synod_operator::metrics::Metrics;
    use synod_operator::reconcile::{Context, run as run_controller};

    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    let build = context(&image, &operator, client.default_namespace());
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
    tracing::info!(%metrics_addr, ?namespace, operator_namespace = %build.operator.namespace, "synod-operator starting");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let ctx = Arc::new(Context::new(client, metrics, build));
    run_controller(ctx, namespace).await;
    server.abort();
    tracing::info!("synod-operator stopped");
    Ok(())
}
