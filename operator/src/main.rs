//! `synod-operator`: `crdgen` writes the CRD. (The controller and `render`
//! follow.)

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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crdgen { out } => crdgen(&out),
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
