//! `synod-operator`: `crdgen` writes the CRD, `render` prints the objects
//! for a resource. (The controller follows.)

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
    /// Write the CoordinationEnsemble CRD as YAML (to stdout, or to each
    /// `--out` file).
    Crdgen {
        #[arg(long)]
        out: Vec<PathBuf>,
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
        Command::Crdgen { out } => crdgen(&out),
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
