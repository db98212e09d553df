//! The TLS flags every command shares, and the material they name.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;

#[derive(Debug, clap::Args)]
pub(crate) struct TlsArgs {
    /// CA bundle (PEM) that signed the servers' certificates: talk TLS
    #[arg(long, env = "SYNOD_TLS_CA", global = true, value_name = "FILE")]
    tls_ca: Option<PathBuf>,

    /// This client's certificate (PEM), for servers that ask for one
    #[arg(long, env = "SYNOD_TLS_CERT", global = true, value_name = "FILE")]
    tls_cert: Option<PathBuf>,

    /// The key of --tls-cert (PEM)
    #[arg(long, env = "SYNOD_TLS_KEY", global = true, value_name = "FILE")]
    tls_key: Option<PathBuf>,
}

impl TlsArgs {
    /// TLS is on, but this client has no certificate to show.
    pub(crate) fn without_client_cert(&self) -> bool {
        self.tls_ca.is_some() && self.tls_cert.is_none()
    }

    /// The TLS material the flags name, if any: a CA bundle turns TLS on.
    pub(crate) fn load(&self) -> Result<Option<Arc<synod_tls::Tls>>> {
        if self.tls_ca.is_none() {
            if self.tls_cert.is_some() || self.tls_key.is_some() {
                anyhow::bail!(
                    "--tls-cert and --tls-key need --tls-ca, the CA that signed the servers' certificates"
                );
            }
            return Ok(None);
        }
        let files = synod_tls::TlsFiles {
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
            ca: self.tls_ca.clone(),
        };
        Ok(Some(synod_tls::Tls::load(files)?))
    }
}
