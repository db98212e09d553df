//! A throwaway certificate authority: `synod dev --tls` makes one so that a
//! newcomer can try TLS in one command, and tests make one per run. Never
//! for production: the CA key lives only in this process's memory and on
//! the disk of whoever asked for the files.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

use crate::TlsFiles;

/// Why a certificate could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("cannot make a certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A CA that signs certificates for this run.
#[derive(Debug)]
pub struct DevCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl DevCa {
    /// A new CA named `name` (its subject's common name).
    pub fn new(name: &str) -> Result<DevCa, GenerateError> {
        let mut params = CertificateParams::default();
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CommonName, name);
        params.distinguished_name = subject;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(DevCa { issuer })
    }

    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `common_name`, valid for `names` (DNS names or IP
    /// addresses), usable by servers and clients alike (a node is both to
    /// its peers).
    pub fn issue(&self, common_name: &str, names: &[String]) -> Result<Issued, GenerateError> {
        let mut params = CertificateParams::new(names.to_vec())?;
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CommonName, common_name);
        params.distinguished_name = subject;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Issues a certificate and writes it, its key and this CA as
    /// `<stem>.crt`, `<stem>.key` and `ca.crt` in `dir`.
    pub fn write(
        &self,
        dir: &Path,
        stem: &str,
        common_name: &str,
        names: &[String],
    ) -> Result<TlsFiles, GenerateError> {
        let issued = self.issue(common_name, names)?;
        let write = |name: String, contents: &str, mode: u32| {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let path = dir.join(name);
            let failed = |source| GenerateError::Write {
                path: path.clone(),
                source,
            };
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(mode)
                .open(&path)
                .and_then(|mut file| file.write_all(contents.as_bytes()))
                .map_err(failed)?;
            Ok::<_, GenerateError>(path)
        };
        Ok(TlsFiles {
            cert: Some(write(format!("{stem}.crt"), &issued.cert_pem, 0o644)?),
            // Keys are readable by their owner only, as ssh insists.
            key: Some(write(format!("{stem}.key"), &issued.key_pem, 0o600)?),
            ca: Some(write("ca.crt".to_owned(), &self.cert_pem(), 0o644)?),
        })
    }
}
