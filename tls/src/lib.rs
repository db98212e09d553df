//! TLS for Synod's listeners and connections, with certificates that rotate.
//!
//! Certificates, keys and CA bundles are PEM files, as cert-manager and
//! Kubernetes Secrets write them. [`Tls`] holds what was last read from
//! them and [`Tls::reload`] reads them again: the rustls configurations
//! built here never copy the material, they ask the [`Tls`] at every
//! handshake, so new connections use new files at once while established
//! ones keep the session they negotiated. A file that cannot be read or
//! parsed during a reload leaves the last good material in place.
//!
//! [`accept`] turns a listener into a stream of TLS connections (a
//! handshake that fails or stalls is logged and dropped, never seen by the
//! server), [`connect`] is a tonic connector for clients and peers, and
//! [`generate`] makes a throwaway CA and certificates (`synod dev --tls`,
//! tests).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};

pub use rustls::pki_types::CertificateDer;

pub mod accept;
pub mod connect;
pub mod generate;

/// Why TLS material could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { path: PathBuf },
    #[error("the key in {key} is not usable with the certificate in {cert}: {reason}")]
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("the CA bundle {path} is not usable: {reason}")]
    BadCa { path: PathBuf, reason: String },
    #[error("{0}")]
    Missing(&'static str),
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// Where the PEM files are. A server needs a certificate and its key; the
/// CA bundle verifies the other side (clients or peers for a server, the
/// server for a client).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub ca: Option<PathBuf>,
}

impl TlsFiles {
    pub fn is_empty(&self) -> bool {
        self.cert.is_none() && self.key.is_none() && self.ca.is_none()
    }
}

/// Whether a server asks its clients for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCerts {
    /// A client without a certificate from the CA is refused (mutual TLS:
    /// peers, the Admin API).
    Required,
    /// A client may present one (then it must verify); without one it is
    /// still served.
    Optional,
    /// Not asked for.
    None,
}

/// What the files held when last read.
#[derive(Debug)]
struct Material {
    /// The bytes read, to tell a rotated file from an unchanged one.
    read: [Option<Vec<u8>>; 3],
    key: Option<Arc<CertifiedKey>>,
    roots: Option<Arc<RootCertStore>>,
    required: Option<Arc<dyn ClientCertVerifier>>,
    optional: Option<Arc<dyn ClientCertVerifier>>,
    server: Option<Arc<WebPkiServerVerifier>>,
}

/// TLS material that can be read again while it is in use.
#[derive(Debug)]
pub struct Tls {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<Material>>,
}

fn read(path: &Option<PathBuf>) -> Result<Option<Vec<u8>>, TlsError> {
    path.as_ref()
        .map(|path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                path: path.clone(),
                source,
            })
        })
        .transpose()
}

fn certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

impl Tls {
    /// Reads the files once; fails if any named file is unusable.
    pub fn load(files: TlsFiles) -> Result<Arc<Tls>, TlsError> {
        if files.cert.is_some() != files.key.is_some() {
            return Err(TlsError::Missing(
                "a TLS certificate needs its key and a key its certificate",
            ));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let read = [read(&files.cert)?, read(&files.key)?, read(&files.ca)?];
        let material = Self::parse(&files, &provider, read)?;
        Ok(Arc::new(Tls {
            files,
            provider,
            current: RwLock::new(Arc::new(material)),
        }))
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    fn parse(
        files: &TlsFiles,
        provider: &Arc<CryptoProvider>,
        read: [Option<Vec<u8>>; 3],
    ) -> Result<Material, TlsError> {
        let [cert_pem, key_pem, ca_pem] = &read;
        let key = match (&files.cert, cert_pem, &files.key, key_pem) {
            (Some(cert_path), Some(cert_pem), Some(key_path), Some(key_pem)) => {
                let chain = certificates(cert_path, cert_pem)?;
                let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| TlsError::NoKey {
                    path: key_path.clone(),
                })?;
                let mismatch = |reason: String| TlsError::KeyMismatch {
                    cert: cert_path.clone(),
                    key: key_path.clone(),
                    reason,
                };
                let signing = provider
                    .key_provider
                    .load_private_key(key)
                    .map_err(|e| mismatch(e.to_string()))?;
                let certified = CertifiedKey::new(chain, signing);
                certified
                    .keys_match()
                    .map_err(|e| mismatch(e.to_string()))?;
                Some(Arc::new(certified))
            }
            _ => None,
        };
        let (roots, required, optional, server) = match (&files.ca, ca_pem) {
            (Some(ca_path), Some(ca_pem)) => {
                let bad = |reason: String| TlsError::BadCa {
                    path: ca_path.clone(),
                    reason,
                };
                let mut roots = RootCertStore::empty();
                for cert in certificates(ca_path, ca_pem)? {
                    roots.add(cert).map_err(|e| bad(e.to_string()))?;
                }
                let roots = Arc::new(roots);
                let required =
                    WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                        .build()
                        .map_err(|e| bad(e.to_string()))?;
                let optional =
                    WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                        .allow_unauthenticated()
                        .build()
                        .map_err(|e| bad(e.to_string()))?;
                let server =
                    WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                        .build()
                        .map_err(|e| bad(e.to_string()))?;
                (Some(roots), Some(required), Some(optional), Some(server))
            }
            _ => (None, None, None, None),
        };
        Ok(Material {
            read,
            key,
            roots,
            required,
            optional,
            server,
        })
    }

    fn material(&self) -> Arc<Material> {
        match self.current.read() {
            Ok(current) => current.clone(),
            // A writer panicked mid-swap; the Arc it held is still whole.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads the files again. `Ok(true)`: they changed and new handshakes
    /// use them; `Ok(false)`: unchanged; an error leaves the material as
    /// it was.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let read = [
            read(&self.files.cert)?,
            read(&self.files.key)?,
            read(&self.files.ca)?,
        ];
        if self.material().read == read {
            return Ok(false);
        }
        let material = Self::parse(&self.files, &self.provider, read)?;
        match self.current.write() {
            Ok(mut current) => *current = Arc::new(material),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(material),
        }
        Ok(true)
    }

    /// Reloads every `every` until the returned task is aborted, logging
    /// what changed and what could not be read.
    pub fn watch(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let tls = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                match tls.reload() {
                    Ok(true) => {
                        tracing::info!(files = ?tls.files, "TLS files changed: new connections use them")
                    }
                    Ok(false) => {}
                    Err(error) => {
                        tracing::warn!(%error, "cannot reload the TLS files; keeping the last good ones")
                    }
                }
            }
        })
    }

    /// The configuration of a server on this material.
    pub fn server_config(
        self: &Arc<Self>,
        clients: ClientCerts,
        alpn: &[&[u8]],
    ) -> Result<Arc<ServerConfig>, TlsError> {
        let material = self.material();
        if material.key.is_none() {
            return Err(TlsError::Missing(
                "a TLS server needs a certificate and a key (--tls-cert, --tls-key)",
            ));
        }
        if clients != ClientCerts::None && material.roots.is_none() {
            return Err(TlsError::Missing(
                "verifying client certificates needs a CA bundle (--tls-ca)",
            ));
        }
        let builder = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?;
        let resolver = Arc::new(Current(self.clone()));
        let mut config = match clients {
            ClientCerts::None => builder.with_no_client_auth().with_cert_resolver(resolver),
            ClientCerts::Required | ClientCerts::Optional => builder
                .with_client_cert_verifier(Arc::new(ClientVerifier {
                    tls: self.clone(),
                    required: clients == ClientCerts::Required,
                }))
                .with_cert_resolver(resolver),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// The configuration of a client (or a peer dialling out) on this
    /// material: it verifies the server against the CA bundle and presents
    /// its own certificate if it has one.
    pub fn client_config(self: &Arc<Self>, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, TlsError> {
        if self.material().server.is_none() {
            return Err(TlsError::Missing(
                "a TLS client needs the CA bundle that signed the server's certificate (--tls-ca)",
            ));
        }
        let mut config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ServerVerifier(self.clone())))
            .with_client_cert_resolver(Arc::new(Current(self.clone())));
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

/// Whether `cert` is valid for `name` (a DNS name, possibly matched by a
/// wildcard, or an IP address): how a node checks that a peer's
/// certificate belongs to the member whose address it claims.
pub fn valid_for(cert: &CertificateDer<'_>, name: &str) -> bool {
    let Ok(cert) = webpki::EndEntityCert::try_from(cert) else {
        return false;
    };
    let Ok(name) = ServerName::try_from(name) else {
        return false;
    };
    cert.verify_is_valid_for_subject_name(&name).is_ok()
}

/// The subject of a certificate as ZooKeeper's `x509` scheme names it
/// (Java's `X500Principal.getName()`, RFC 2253): most specific attribute
/// first, `CN=client,OU=apps,O=Example`. `None` if the certificate cannot
/// be parsed or its subject holds a value that is not text.
pub fn subject(cert: &CertificateDer<'_>) -> Option<String> {
    use x509_parser::objects::{oid_registry, oid2abbrev};
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let registry = oid_registry();
    let mut rdns = Vec::new();
    for rdn in parsed.subject().iter_rdn() {
        let mut parts = Vec::new();
        for attr in rdn.iter() {
            let name = oid2abbrev(attr.attr_type(), registry)
                .map(str::to_owned)
                .unwrap_or_else(|_| attr.attr_type().to_id_string());
            parts.push(format!("{name}={}", escape_dn_value(attr.as_str().ok()?)));
        }
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(","))
}

/// What names a client for the `x509` ACL scheme (ZooKeeper's
/// `X509AuthenticationProvider.clientCertIdType` and
/// `clientCertIdSanMatchType`): the certificate's subject, or its first
/// subject alternative name of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientIdentity {
    #[default]
    Subject,
    SanDns,
    SanEmail,
    SanUri,
    SanIp,
}

impl ClientIdentity {
    /// The identity `cert` carries, if it carries one of this kind.
    pub fn of(self, cert: &CertificateDer<'_>) -> Option<String> {
        match self {
            ClientIdentity::Subject => subject(cert),
            kind => first_san(cert, kind),
        }
    }
}

/// The first subject alternative name of `kind` in `cert`: a DNS name, an
/// email address, a URI as written, or an IP address in its usual text
/// form (`10.0.0.1`, `2001:db8::1`).
fn first_san(cert: &CertificateDer<'_>, kind: ClientIdentity) -> Option<String> {
    use x509_parser::extensions::GeneralName;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let names = parsed.subject_alternative_name().ok()??;
    names
        .value
        .general_names
        .iter()
        .find_map(|name| match (kind, name) {
            (ClientIdentity::SanDns, GeneralName::DNSName(dns)) => Some((*dns).to_owned()),
            (ClientIdentity::SanEmail, GeneralName::RFC822Name(email)) => Some((*email).to_owned()),
            (ClientIdentity::SanUri, GeneralName::URI(uri)) => Some((*uri).to_owned()),
            (ClientIdentity::SanIp, GeneralName::IPAddress(bytes)) => match bytes.len() {
                4 => <[u8; 4]>::try_from(*bytes)
                    .ok()
                    .map(|b| std::net::Ipv4Addr::from(b).to_string()),
                16 => <[u8; 16]>::try_from(*bytes)
                    .ok()
                    .map(|b| std::net::Ipv6Addr::from(b).to_string()),
                _ => None,
            },
            _ => None,
        })
}

/// RFC 2253's escaping of an attribute value.
fn escape_dn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Resolves to the current certificate, as a server and as a client.
#[derive(Debug)]
struct Current(Arc<Tls>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.material().key.clone()
    }
}

impl rustls::client::ResolvesClientCert for Current {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _schemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.0.material().key.clone()
    }

    fn has_certs(&self) -> bool {
        self.0.material().key.is_some()
    }
}

/// Verifies client certificates against the current CA bundle.
#[derive(Debug)]
struct ClientVerifier {
    tls: Arc<Tls>,
    required: bool,
}

impl ClientVerifier {
    fn inner(&self) -> Result<Arc<dyn ClientCertVerifier>, rustls::Error> {
        let material = self.tls.material();
        let inner = if self.required {
            &material.required
        } else {
            &material.optional
        };
        inner
            .clone()
            .ok_or_else(|| rustls::Error::General("no CA bundle to verify clients with".into()))
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.required
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The bundle may change under a handshake; clients then offer the
        // one certificate they have, which is what they do anyway.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner()?
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner()?.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner()?.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.tls
            .provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Verifies the server's certificate against the current CA bundle.
#[derive(Debug)]
struct ServerVerifier(Arc<Tls>);

impl ServerVerifier {
    fn inner(&self) -> Result<Arc<WebPkiServerVerifier>, rustls::Error> {
        self.0
            .material()
            .server
            .clone()
            .ok_or_else(|| rustls::Error::General("no CA bundle to verify the server with".into()))
    }
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner()?
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner()?.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner()?.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0
            .provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests;
