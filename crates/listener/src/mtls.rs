//! Mutual TLS: client certificates that must chain to configured CA bundles and must not be
//! revoked by a configured CRL, checked during the handshake (rustls-webpki through rustls'
//! `WebPkiClientVerifier`).
//!
//! [`ReloadingClientVerifier`] holds the verifier built from the files last loaded and is
//! swapped whole when a file changes (a CRL published again, a CA bundle extended), like the
//! server certificate ([`crate::tls::ReloadingCertificate`]): the running verifier stays when
//! the new files do not load. A refused certificate ends the handshake and is logged once per
//! connection at `warn` with the reason (`expired`, `unknown issuer`, `revoked`, ...); a
//! connection without a certificate is refused the same way.
//!
//! What the accepted certificate *is* (a SPIFFE ID, a subject DN, a thumbprint) is decided
//! above the listener: each request of the connection carries the chain as a
//! [`PeerCertificates`] extension.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

use crate::tls::{Stamp, TlsError, provider, read, stamp};

/// The certificate chain a client presented on this connection, end-entity first (request
/// extension on every request of an mTLS connection). Verified: it chains to a configured CA
/// and is not revoked by a configured CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificates(pub Arc<[CertificateDer<'static>]>);

impl PeerCertificates {
    /// The end-entity certificate (DER).
    pub fn end_entity(&self) -> Option<&CertificateDer<'static>> {
        self.0.first()
    }
}

/// Client certificates on a listener (`[mtls]` of `trustgate serve`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MtlsConfig {
    /// Where the mutual-TLS listener listens (`--mtls-listen`); none: no such listener. It
    /// serves the same routes with the `[tls]` certificate and requires a client certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<std::net::SocketAddr>,
    /// PEM bundles of the CAs client certificates must chain to (at least one with `listen`).
    pub ca_files: Vec<PathBuf>,
    /// PEM or DER certificate revocation lists, read again when they change. Revocation is
    /// checked for the client's own certificate; a CA that has a CRL here must have a current
    /// one for each of its certificates to be accepted.
    pub crl_files: Vec<PathBuf>,
    /// The origin clients reach this listener at (`https://mtls.id.example.com`), for the
    /// endpoint aliases an authorization server publishes (RFC 8705 §5). Unset: the issuer's
    /// host with this listener's port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_origin: Option<String>,
}

impl MtlsConfig {
    /// Refuses an incomplete configuration (the message names the key).
    pub fn validate(&self, tls_enabled: bool) -> Result<(), String> {
        if self.listen.is_none() {
            if !self.ca_files.is_empty() || !self.crl_files.is_empty() {
                return Err("mtls: ca_files and crl_files need mtls.listen".into());
            }
            return Ok(());
        }
        if !tls_enabled {
            return Err(
                "mtls.listen: the mutual-TLS listener serves the [tls] certificate; set \
                 tls.cert_file and tls.key_file (or --tls-cert and --tls-key)"
                    .into(),
            );
        }
        if self.ca_files.is_empty() {
            return Err(
                "mtls.ca_files: name at least one PEM bundle of the CAs client certificates \
                 chain to"
                    .into(),
            );
        }
        if self.ca_files.len() > 64 || self.crl_files.len() > 64 {
            return Err("mtls: at most 64 ca_files and 64 crl_files".into());
        }
        if let Some(origin) = &self.public_origin {
            let is_origin = origin
                .strip_prefix("https://")
                .is_some_and(|rest| !rest.is_empty() && !rest.contains(['/', '?', '#', '@', ' ']));
            if !is_origin {
                return Err(format!(
                    "mtls.public_origin: `{origin}` is not an https origin (https://host[:port])"
                ));
            }
        }
        Ok(())
    }
}

/// The client-certificate verifier of a listener, rebuilt when its files change.
pub struct ReloadingClientVerifier {
    ca_files: Vec<PathBuf>,
    crl_files: Vec<PathBuf>,
    current: ArcSwap<Arc<dyn ClientCertVerifier>>,
    loaded: Mutex<Vec<Option<Stamp>>>,
}

impl std::fmt::Debug for ReloadingClientVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingClientVerifier")
            .field("ca_files", &self.ca_files)
            .field("crl_files", &self.crl_files)
            .finish_non_exhaustive()
    }
}

impl ReloadingClientVerifier {
    /// Loads the CA bundles and CRLs; an error if one does not load.
    pub fn load(ca_files: &[PathBuf], crl_files: &[PathBuf]) -> Result<Arc<Self>, TlsError> {
        let this = ReloadingClientVerifier {
            ca_files: ca_files.to_vec(),
            crl_files: crl_files.to_vec(),
            current: ArcSwap::from_pointee(build(ca_files, crl_files)?),
            loaded: Mutex::new(Vec::new()),
        };
        *this.loaded.lock().unwrap_or_else(PoisonError::into_inner) = this.stamps();
        Ok(Arc::new(this))
    }

    fn stamps(&self) -> Vec<Option<Stamp>> {
        self.ca_files
            .iter()
            .chain(&self.crl_files)
            .map(|p| stamp(p))
            .collect()
    }

    /// Reads every file again and swaps the verifier in if they load; the current one stays
    /// otherwise.
    pub fn reload(&self) -> Result<(), TlsError> {
        *self.loaded.lock().unwrap_or_else(PoisonError::into_inner) = self.stamps();
        let verifier = build(&self.ca_files, &self.crl_files)?;
        self.current.store(Arc::new(verifier));
        Ok(())
    }

    /// Whether a file changed since it was last loaded.
    pub fn changed(&self) -> bool {
        *self.loaded.lock().unwrap_or_else(PoisonError::into_inner) != self.stamps()
    }

    /// The files, for log lines.
    pub fn describe(&self) -> String {
        self.ca_files
            .iter()
            .chain(&self.crl_files)
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn build(
    ca_files: &[PathBuf],
    crl_files: &[PathBuf],
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for path in ca_files {
        let certificates = CertificateDer::pem_slice_iter(&read(path)?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(path, e))?;
        if certificates.is_empty() {
            return Err(TlsError::NoCertificate(path.clone()));
        }
        for certificate in certificates {
            roots.add(certificate).map_err(|e| invalid(path, e))?;
        }
    }
    let mut crls = Vec::new();
    for path in crl_files {
        let bytes = read(path)?;
        if bytes.starts_with(b"-----BEGIN") {
            let pem = CertificateRevocationListDer::pem_slice_iter(&bytes)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid(path, e))?;
            if pem.is_empty() {
                return Err(invalid(path, "no PEM X509 CRL in it"));
            }
            crls.extend(pem);
        } else {
            crls.push(CertificateRevocationListDer::from(bytes));
        }
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .with_crls(crls)
        .only_check_end_entity_revocation()
        .build()
        .map_err(|e| TlsError::Config(format!("client certificate verifier: {e}")))
}

fn invalid(path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::Invalid {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

impl ClientCertVerifier for ReloadingClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The hints of the verifier loaded at start: rustls borrows them for the handshake and
        // a swapped verifier may be dropped meanwhile. They are only hints to the client.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .current
            .load()
            .verify_client_cert(end_entity, intermediates, now);
        if let Err(e) = &verified {
            metrics::counter!("http_mtls_client_certificates_refused_total").increment(1);
            tracing::warn!(reason = %e, "client certificate refused; the handshake ends");
        }
        verified
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current
            .load()
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current
            .load()
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current.load().supported_verify_schemes()
    }
}
