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
//! With `accept_self_signed` the listener also accepts a certificate no configured CA issued
//! (RFC 8705 §2.2: OAuth clients that register their own certificate). The handshake still
//! proves the client holds the certificate's key, and the certificate must still be within its
//! validity period, fit for client authentication and not revoked by a configured CRL; only
//! its issuer is not checked. Such a connection's [`PeerCertificates`] say `trusted: false`,
//! and nothing above the listener takes the names in an untrusted certificate for an identity.
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
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::tls::{Stamp, TlsError, load_roots, provider, read, stamp};

/// The certificate chain a client presented on this connection, end-entity first (request
/// extension on every request of an mTLS connection). The client proved it holds the
/// end-entity certificate's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificates {
    /// The chain, end-entity first.
    pub chain: Arc<[CertificateDer<'static>]>,
    /// It chains to a configured CA and is not revoked by a configured CRL. `false` only on a
    /// listener that accepts self-signed certificates, for one that does not.
    pub trusted: bool,
}

impl PeerCertificates {
    /// The end-entity certificate (DER).
    pub fn end_entity(&self) -> Option<&CertificateDer<'static>> {
        self.chain.first()
    }

    /// The end-entity certificate, if a configured CA issued it: the only kind whose names
    /// are an identity.
    pub fn trusted_end_entity(&self) -> Option<&CertificateDer<'static>> {
        self.end_entity().filter(|_| self.trusted)
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
    /// PEM bundles of the CAs client certificates must chain to (at least one with `listen`,
    /// unless `accept_self_signed`).
    pub ca_files: Vec<PathBuf>,
    /// PEM or DER certificate revocation lists, read again when they change. Revocation is
    /// checked for the client's own certificate; a CA that has a CRL here must have a current
    /// one for each of its certificates to be accepted.
    pub crl_files: Vec<PathBuf>,
    /// Also accept client certificates no configured CA issued, such as self-signed ones, for
    /// OAuth clients that register their certificate (`self_signed_tls_client_auth`, RFC 8705
    /// §2.2) and tokens bound to it. Such a certificate names no service account. Off by
    /// default.
    pub accept_self_signed: bool,
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
            if !self.ca_files.is_empty() || !self.crl_files.is_empty() || self.accept_self_signed {
                return Err(
                    "mtls: ca_files, crl_files and accept_self_signed need mtls.listen".into(),
                );
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
        if self.ca_files.is_empty() && !self.accept_self_signed {
            return Err(
                "mtls.ca_files: name at least one PEM bundle of the CAs client certificates \
                 chain to (or set mtls.accept_self_signed)"
                    .into(),
            );
        }
        if self.ca_files.is_empty() && !self.crl_files.is_empty() {
            return Err(
                "mtls.crl_files: revocation lists need the CAs that sign them in \
                        mtls.ca_files"
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
    accept_self_signed: bool,
    /// The CA verifier; none when no CA is configured (only self-signed certificates).
    current: ArcSwap<Option<Arc<dyn ClientCertVerifier>>>,
    loaded: Mutex<Vec<Option<Stamp>>>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl std::fmt::Debug for ReloadingClientVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingClientVerifier")
            .field("ca_files", &self.ca_files)
            .field("crl_files", &self.crl_files)
            .field("accept_self_signed", &self.accept_self_signed)
            .finish_non_exhaustive()
    }
}

impl ReloadingClientVerifier {
    /// Loads the CA bundles and CRLs of `config`; an error if one does not load.
    pub fn load(config: &MtlsConfig) -> Result<Arc<Self>, TlsError> {
        let this = ReloadingClientVerifier {
            ca_files: config.ca_files.clone(),
            crl_files: config.crl_files.clone(),
            accept_self_signed: config.accept_self_signed,
            current: ArcSwap::from_pointee(build(&config.ca_files, &config.crl_files)?),
            loaded: Mutex::new(Vec::new()),
            algorithms: provider().signature_verification_algorithms,
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
) -> Result<Option<Arc<dyn ClientCertVerifier>>, TlsError> {
    if ca_files.is_empty() {
        return Ok(None);
    }
    let roots = load_roots(ca_files)?;
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
        .map(Some)
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
        let verified = match self.chain_to_ca(end_entity, intermediates, now) {
            Err(e) if self.accept_self_signed && issuer_unknown(&e) => {
                self.check_self_signed(end_entity, now)
            }
            verdict => verdict,
        };
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl ReloadingClientVerifier {
    /// Whether the chain a connection presented is one a configured CA issued (and no CRL
    /// revokes): always, unless self-signed certificates are accepted too.
    pub fn trusts(&self, chain: &[CertificateDer<'_>]) -> bool {
        match chain.split_first() {
            Some(_) if !self.accept_self_signed => true,
            Some((end_entity, intermediates)) => self
                .chain_to_ca(end_entity, intermediates, UnixTime::now())
                .is_ok(),
            None => false,
        }
    }

    fn chain_to_ca(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match &**self.current.load() {
            Some(ca) => ca.verify_client_cert(end_entity, intermediates, now),
            None => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            )),
        }
    }

    /// A certificate no configured CA issued: everything webpki checks of a certificate
    /// whatever its issuer (validity period, client-authentication usage, basic constraints),
    /// with no trust anchor, so the only failure allowed is the unknown issuer.
    fn check_self_signed(
        &self,
        end_entity: &CertificateDer<'_>,
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let bad = |e: webpki::Error| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
                Arc::new(e),
            )))
        };
        let certificate = webpki::EndEntityCert::try_from(end_entity).map_err(bad)?;
        let checked = certificate.verify_for_usage(
            self.algorithms.all,
            &[],
            &[],
            now,
            webpki::KeyUsage::client_auth(),
            None,
            None,
        );
        match checked {
            Err(webpki::Error::UnknownIssuer) => {
                metrics::counter!("http_mtls_untrusted_client_certificates_total").increment(1);
                Ok(ClientCertVerified::assertion())
            }
            Err(e) => Err(bad(e)),
            // No anchor can verify a path; should one, the certificate is fine all the same.
            Ok(_) => Ok(ClientCertVerified::assertion()),
        }
    }
}

/// Whether the CA verifier refused a certificate only because no configured CA issued it (not
/// because it expired, was revoked or is unfit).
fn issuer_unknown(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
    )
}

#[cfg(test)]
mod tests {
    use trustgate_testkit::tls::{
        ClientCertificate, TestCa, expired_self_signed_client, self_signed_client,
    };

    use super::*;

    fn verifier(
        dir: &Path,
        ca: Option<&TestCa>,
        crl: Option<String>,
    ) -> Arc<ReloadingClientVerifier> {
        let mut config = MtlsConfig {
            accept_self_signed: true,
            ..MtlsConfig::default()
        };
        if let Some(ca) = ca {
            let ca_file = dir.join("ca.pem");
            std::fs::write(&ca_file, &ca.pem).expect("write");
            config.ca_files = vec![ca_file];
        }
        if let Some(crl) = crl {
            let crl_file = dir.join("crl.pem");
            std::fs::write(&crl_file, crl).expect("write");
            config.crl_files = vec![crl_file];
        }
        ReloadingClientVerifier::load(&config).expect("loads")
    }

    fn handshake(
        verifier: &ReloadingClientVerifier,
        client: &ClientCertificate,
    ) -> Result<bool, rustls::Error> {
        let der = CertificateDer::from(client.der.clone());
        verifier.verify_client_cert(&der, &[], UnixTime::now())?;
        Ok(verifier.trusts(&[der]))
    }

    #[test]
    fn self_signed_certificates_are_accepted_untrusted_and_still_checked() {
        let dir = tempfile::tempdir().expect("dir");
        let ca = TestCa::new("clients");
        let revoked = ca.client("revoked", None);
        let verifier = verifier(dir.path(), Some(&ca), Some(ca.crl(&[revoked.serial])));
        // The CA's certificate: accepted and trusted; a self-signed one: accepted, untrusted.
        assert_eq!(handshake(&verifier, &ca.client("issued", None)), Ok(true));
        assert_eq!(handshake(&verifier, &self_signed_client("own")), Ok(false));
        // Expired (self-signed or issued) and revoked stay refused: only the issuer is waived.
        for refused in [
            expired_self_signed_client("old"),
            ca.expired_client("old"),
            revoked,
        ] {
            assert!(
                handshake(&verifier, &refused).is_err(),
                "{}",
                refused.cert_pem
            );
        }
        // Not a certificate at all.
        let garbage = CertificateDer::from(b"not a certificate".to_vec());
        assert!(
            verifier
                .verify_client_cert(&garbage, &[], UnixTime::now())
                .is_err()
        );
    }

    #[test]
    fn without_a_ca_every_certificate_is_untrusted_and_without_the_switch_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let only_self_signed = verifier(dir.path(), None, None);
        assert_eq!(
            handshake(&only_self_signed, &self_signed_client("own")),
            Ok(false)
        );
        let ca = TestCa::new("unconfigured");
        assert_eq!(
            handshake(&only_self_signed, &ca.client("issued", None)),
            Ok(false)
        );
        assert!(handshake(&only_self_signed, &expired_self_signed_client("old")).is_err());

        let ca_file = dir.path().join("strict-ca.pem");
        std::fs::write(&ca_file, &ca.pem).expect("write");
        let strict = ReloadingClientVerifier::load(&MtlsConfig {
            ca_files: vec![ca_file],
            ..MtlsConfig::default()
        })
        .expect("loads");
        assert!(handshake(&strict, &self_signed_client("own")).is_err());
        assert_eq!(handshake(&strict, &ca.client("issued", None)), Ok(true));
    }

    #[test]
    fn the_switch_needs_a_listener_and_crls_need_a_ca() {
        let listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 8443)));
        let valid = MtlsConfig {
            listen,
            accept_self_signed: true,
            ..MtlsConfig::default()
        };
        assert_eq!(valid.validate(true), Ok(()));
        let without_listener = MtlsConfig {
            listen: None,
            ..valid.clone()
        };
        assert!(without_listener.validate(true).is_err());
        let crl_without_ca = MtlsConfig {
            crl_files: vec![PathBuf::from("crl.pem")],
            ..valid
        };
        let err = crl_without_ca
            .validate(true)
            .expect_err("no CA for the CRL");
        assert!(err.contains("mtls.crl_files"), "{err}");
    }
}
