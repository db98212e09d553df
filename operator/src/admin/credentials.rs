//! The operator's TLS identity toward one ensemble's Admin API: the CA that
//! signed the nodes' certificate and the operator's admin client
//! certificate, both read from Secrets through the API server (never from
//! files: every ensemble has its own).
//!
//! Nodes are dialled by pod IP (the operator's view must not depend on DNS
//! having published a pod), but their certificate names the pod's stable
//! DNS name, not an IP that changes with every restart. So each target gets
//! a client configuration whose verifier checks the certificate against
//! that DNS name, whatever address was dialled; everything else (chain,
//! expiry, signatures) is rustls's WebPKI verification, unchanged.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Why the admin credentials are unusable.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("{0} holds no PEM certificate")]
    NoCertificate(&'static str),
    #[error("{0} holds no PEM private key")]
    NoKey(&'static str),
    #[error("the admin key does not match its certificate: {0}")]
    KeyMismatch(String),
    #[error("the CA bundle is not usable: {0}")]
    BadCa(String),
    #[error("{0:?} is not a DNS name a certificate can be checked against")]
    BadName(String),
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The CA of the nodes' certificate and the operator's client certificate.
#[derive(Debug)]
pub struct AdminCredentials {
    provider: Arc<CryptoProvider>,
    verifier: Arc<WebPkiServerVerifier>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn certificates(
    pem: &[u8],
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, CredentialsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(CredentialsError::NoCertificate(what));
    }
    Ok(certs)
}

impl AdminCredentials {
    /// From PEM: `server_ca` (the node Secret's `ca.crt`), and the admin
    /// Secret's `tls.crt` and `tls.key`. The key must match the
    /// certificate.
    pub fn from_pem(server_ca: &[u8], cert: &[u8], key: &[u8]) -> Result<Self, CredentialsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for ca in certificates(server_ca, "the node CA (ca.crt)")? {
            roots
                .add(ca)
                .map_err(|e| CredentialsError::BadCa(e.to_string()))?;
        }
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| CredentialsError::BadCa(e.to_string()))?;
        let chain = certificates(cert, "the admin certificate (tls.crt)")?;
        let key = PrivateKeyDer::from_pem_slice(key)
            .map_err(|_| CredentialsError::NoKey("the admin key (tls.key)"))?;
        // Refuse a key that does not belong to the certificate now, not at
        // every handshake.
        let signing = provider
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|e| CredentialsError::KeyMismatch(e.to_string()))?;
        rustls::sign::CertifiedKey::new(chain.clone(), signing)
            .keys_match()
            .map_err(|e| CredentialsError::KeyMismatch(e.to_string()))?;
        Ok(AdminCredentials {
            provider,
            verifier,
            chain,
            key,
        })
    }

    /// A client configuration that presents the admin certificate and
    /// accepts only a server certificate valid for `server_name`.
    pub fn client_config(&self, server_name: &str) -> Result<Arc<ClientConfig>, CredentialsError> {
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|_| CredentialsError::BadName(server_name.to_owned()))?;
        let mut config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ExpectName {
                inner: self.verifier.clone(),
                name,
            }))
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}

/// WebPKI verification against a fixed name instead of the dialled host.
#[derive(Debug)]
struct ExpectName {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for ExpectName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _dialled: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use synod_tls::generate::DevCa;

    use super::*;

    #[test]
    fn credentials_load_from_the_secrets_pem_and_refuse_what_does_not_fit() {
        let ca = DevCa::new("ensemble CA").expect("CA");
        let admin = ca.issue("synod-operator", &[]).expect("admin");
        let other = ca.issue("someone-else", &[]).expect("other");
        let credentials = AdminCredentials::from_pem(
            ca.cert_pem().as_bytes(),
            admin.cert_pem.as_bytes(),
            admin.key_pem.as_bytes(),
        )
        .expect("loads");
        let config = credentials
            .client_config("demo-0.demo-peers.ns.svc")
            .expect("config");
        assert_eq!(config.alpn_protocols, vec![b"h2".to_vec()]);
        assert!(config.client_auth_cert_resolver.has_certs());
        assert!(matches!(
            credentials.client_config(""),
            Err(CredentialsError::BadName(_))
        ));

        let mismatched = AdminCredentials::from_pem(
            ca.cert_pem().as_bytes(),
            admin.cert_pem.as_bytes(),
            other.key_pem.as_bytes(),
        );
        assert!(
            matches!(mismatched, Err(CredentialsError::KeyMismatch(_))),
            "{mismatched:?}"
        );
        let no_ca = AdminCredentials::from_pem(
            b"not a certificate",
            admin.cert_pem.as_bytes(),
            admin.key_pem.as_bytes(),
        );
        assert!(matches!(no_ca, Err(CredentialsError::NoCertificate(_))));
        let no_key =
            AdminCredentials::from_pem(ca.cert_pem().as_bytes(), admin.cert_pem.as_bytes(), b"");
        assert!(matches!(no_key, Err(CredentialsError::NoKey(_))));
    }
}
