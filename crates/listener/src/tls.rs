//! TLS for the listener: the server certificate, reloaded without a restart, and the one
//! rustls configuration.
//!
//! [`ReloadingCertificate`] is rustls' certificate resolver: every handshake takes the pair
//! loaded last, so swapping it changes what new connections get while open ones keep the
//! session they negotiated. [`ReloadingCertificate::reload`] reads both files again and swaps
//! only a pair that loads and matches (the key must be the certificate's); anything else is an
//! error for the caller to log, with the running pair kept. [`watch`] calls it on SIGHUP and
//! whenever either file's modification time or size changes — a renewed certificate written
//! in place, or a Kubernetes secret's symlink swap.
//!
//! [`server_config`] is the one rustls configuration: aws-lc-rs (named explicitly rather than
//! through the process default, so a second provider compiled in by a dependency cannot make
//! rustls panic), TLS 1.2 and 1.3 with rustls' safe defaults, no client certificates on this
//! listener, ALPN `h2` then `http/1.1`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// ALPN protocol names, in the server's order of preference.
pub const ALPN_H2: &[u8] = b"h2";
/// HTTP/1.1's ALPN name.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Why a certificate and key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The certificate file holds no PEM certificate.
    #[error("{}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it", .0.display())]
    NoCertificate(PathBuf),
    /// The key file holds no PEM private key.
    #[error("{}: no PEM private key (PKCS#8, PKCS#1 or SEC1) in it", .0.display())]
    NoKey(PathBuf),
    /// The key is not usable, or not the certificate's.
    #[error("{}: {reason}", path.display())]
    Invalid {
        /// The key file.
        path: PathBuf,
        /// rustls' reason.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// TLS on a listener (`[tls]` of `trustgate serve` and of `gateway.toml`).
///
/// With a certificate and key the listener speaks HTTPS only (HTTP/2 and HTTP/1.1 by ALPN;
/// TLS 1.2 and 1.3 with rustls' safe defaults on aws-lc-rs). Both files are read again on
/// SIGHUP and when either changes (checked every `reload_check_secs`); new connections get the
/// new certificate, open ones keep theirs, and a pair that does not load is logged and the
/// current one kept. Without TLS the listener must be loopback or stand behind a declared
/// proxy (`trusted_proxies`): start-up refuses plain HTTP on any other address.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain, the server's certificate first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<std::path::PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of that certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<std::path::PathBuf>,
    /// Seconds between checks of the two files for a change (1 to 3600).
    pub reload_check_secs: u64,
    /// `Strict-Transport-Security: max-age` on HTTPS responses (0: no header; at most two
    /// years).
    pub hsts_max_age_secs: u64,
    /// Adds `includeSubDomains` to that header.
    pub hsts_include_subdomains: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert_file: None,
            key_file: None,
            reload_check_secs: 5,
            hsts_max_age_secs: 31_536_000,
            hsts_include_subdomains: false,
        }
    }
}

impl TlsConfig {
    /// Whether the listener terminates TLS.
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some()
    }

    /// Refuses values outside the documented bounds (the message names the key).
    pub fn validate(&self) -> Result<(), String> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err("tls: cert_file and key_file go together".into());
        }
        if !(1..=3600).contains(&self.reload_check_secs) {
            return Err("tls.reload_check_secs: must be between 1 and 3600".into());
        }
        if self.hsts_max_age_secs > 63_072_000 {
            return Err("tls.hsts_max_age_secs: must be at most 63072000 (two years)".into());
        }
        Ok(())
    }

    /// The certificate and key, loaded, when TLS is on.
    pub fn load(&self) -> Result<Option<Arc<ReloadingCertificate>>, TlsError> {
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => ReloadingCertificate::load(cert, key).map(Some),
            _ => Ok(None),
        }
    }

    /// The `Strict-Transport-Security` value, if any.
    pub fn hsts(&self) -> Option<String> {
        (self.hsts_max_age_secs > 0).then(|| {
            let mut value = format!("max-age={}", self.hsts_max_age_secs);
            if self.hsts_include_subdomains {
                value.push_str("; includeSubDomains");
            }
            value
        })
    }
}

/// TLS from a client of trustgate's to a server (`[upstream.tls]` of `gateway.toml`): whom
/// the server's certificate must chain to, and the client certificate to present when the
/// server asks for one (mutual TLS between services). The server's name is always checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientTlsConfig {
    /// PEM bundles of the CAs the server's certificate must chain to. None: the Mozilla root
    /// program's CAs (webpki-roots, built in).
    pub ca_files: Vec<PathBuf>,
    /// The client certificate chain (PEM), presented when the server asks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// Its private key (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}

impl ClientTlsConfig {
    /// Refuses an incomplete configuration (the message names the key, under `prefix`).
    pub fn validate(&self, prefix: &str) -> Result<(), String> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(format!("{prefix}: cert_file and key_file go together"));
        }
        if self.ca_files.len() > 64 {
            return Err(format!("{prefix}.ca_files: at most 64"));
        }
        Ok(())
    }

    /// The rustls client configuration (aws-lc-rs, TLS 1.2 and 1.3; no ALPN, which the HTTP
    /// connector sets for the protocols it speaks); an error if a file does not load.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let roots = if self.ca_files.is_empty() {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            roots
        } else {
            load_roots(&self.ca_files)?
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(roots);
        let config = match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                let (chain, private) = read_pair(cert, key)?;
                builder
                    .with_client_auth_cert(chain, private)
                    .map_err(|e| pair_error(key, e))?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }
}

/// The CA certificates of PEM bundles; an error if a file does not load or holds none.
pub(crate) fn load_roots(ca_files: &[PathBuf]) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for path in ca_files {
        let invalid = |e: &dyn std::fmt::Display| TlsError::Invalid {
            path: path.clone(),
            reason: e.to_string(),
        };
        let certificates = CertificateDer::pem_slice_iter(&read(path)?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(&e))?;
        if certificates.is_empty() {
            return Err(TlsError::NoCertificate(path.clone()));
        }
        for certificate in certificates {
            roots.add(certificate).map_err(|e| invalid(&e))?;
        }
    }
    Ok(roots)
}

/// The provider every TLS listener uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// What a file looked like when it was last loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

pub(crate) fn stamp(path: &Path) -> Option<Stamp> {
    // `metadata` follows symlinks: a swapped link target is a change.
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
    })
}

/// The server's certificate and key, swapped whole on reload.
#[derive(Debug)]
pub struct ReloadingCertificate {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
    loaded: Mutex<(Option<Stamp>, Option<Stamp>)>,
}

impl ReloadingCertificate {
    /// Loads the pair; an error if it does not load or the key is not the certificate's.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Arc<Self>, TlsError> {
        let provider = provider();
        let stamps = (stamp(cert_file), stamp(key_file));
        let key = load_pair(cert_file, key_file, &provider)?;
        Ok(Arc::new(ReloadingCertificate {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            provider,
            current: ArcSwap::from_pointee(key),
            loaded: Mutex::new(stamps),
        }))
    }

    /// Reads both files again and swaps the pair in if it loads; the current pair stays
    /// otherwise.
    pub fn reload(&self) -> Result<(), TlsError> {
        let stamps = (stamp(&self.cert_file), stamp(&self.key_file));
        // Remembered even when the pair fails, so a broken file is reported once per change
        // rather than at every check.
        *self.loaded.lock().unwrap_or_else(PoisonError::into_inner) = stamps;
        let key = load_pair(&self.cert_file, &self.key_file, &self.provider)?;
        self.current.store(Arc::new(key));
        Ok(())
    }

    /// Whether either file changed since it was last loaded.
    pub fn changed(&self) -> bool {
        let now = (stamp(&self.cert_file), stamp(&self.key_file));
        *self.loaded.lock().unwrap_or_else(PoisonError::into_inner) != now
    }

    /// The end-entity certificate served now (DER).
    pub fn current_certificate(&self) -> Option<CertificateDer<'static>> {
        self.current.load().cert.first().cloned()
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

pub(crate) fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The certificate chain and private key in two PEM files.
fn read_pair(
    cert_file: &Path,
    key_file: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let chain = CertificateDer::pem_slice_iter(&read(cert_file)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Invalid {
            path: cert_file.to_path_buf(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert_file.to_path_buf()));
    }
    let key = PrivateKeyDer::from_pem_slice(&read(key_file)?).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey(key_file.to_path_buf()),
        e => TlsError::Invalid {
            path: key_file.to_path_buf(),
            reason: e.to_string(),
        },
    })?;
    Ok((chain, key))
}

/// rustls' refusal of a pair, said of the key file.
fn pair_error(key_file: &Path, e: rustls::Error) -> TlsError {
    TlsError::Invalid {
        path: key_file.to_path_buf(),
        reason: match e {
            rustls::Error::InconsistentKeys(_) => {
                "the private key is not the certificate's".to_owned()
            }
            e => e.to_string(),
        },
    }
}

fn load_pair(
    cert_file: &Path,
    key_file: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let (chain, key) = read_pair(cert_file, key_file)?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| pair_error(key_file, e))
}

/// The listener's rustls configuration, serving `certificate`.
pub fn server_config(
    certificate: Arc<ReloadingCertificate>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(certificate);
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
    Ok(Arc::new(config))
}

/// A TLS acceptor serving `certificate` with [`server_config`].
pub fn acceptor(
    certificate: Arc<ReloadingCertificate>,
) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    Ok(tokio_rustls::TlsAcceptor::from(server_config(certificate)?))
}

/// [`server_config`] that requires a client certificate `clients` accepts (mutual TLS).
pub fn mtls_server_config(
    certificate: Arc<ReloadingCertificate>,
    clients: Arc<crate::mtls::ReloadingClientVerifier>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(clients)
        .with_cert_resolver(certificate);
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
    Ok(Arc::new(config))
}

/// Files that can be read again without a restart: a certificate and its key, or the CA
/// bundles and CRLs of client certificates.
pub trait Reloadable: Send + Sync + 'static {
    /// Whether a file changed since it was last loaded.
    fn changed(&self) -> bool;
    /// Reads the files again; the running state stays when they do not load.
    fn reload(&self) -> Result<(), TlsError>;
    /// The files, for log lines.
    fn describe(&self) -> String;
}

impl Reloadable for ReloadingCertificate {
    fn changed(&self) -> bool {
        ReloadingCertificate::changed(self)
    }

    fn reload(&self) -> Result<(), TlsError> {
        ReloadingCertificate::reload(self)
    }

    fn describe(&self) -> String {
        self.cert_file.display().to_string()
    }
}

impl Reloadable for crate::mtls::ReloadingClientVerifier {
    fn changed(&self) -> bool {
        crate::mtls::ReloadingClientVerifier::changed(self)
    }

    fn reload(&self) -> Result<(), TlsError> {
        crate::mtls::ReloadingClientVerifier::reload(self)
    }

    fn describe(&self) -> String {
        crate::mtls::ReloadingClientVerifier::describe(self)
    }
}

/// Reloads `certificate` (or any [`Reloadable`]) on SIGHUP and when its files change (checked
/// every `every`), until the returned task is aborted. Failures are logged; what runs stays.
pub fn watch<R: Reloadable>(certificate: Arc<R>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        #[cfg(unix)]
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            #[cfg(unix)]
            let signalled = async {
                match hangup.as_mut() {
                    Some(h) => h.recv().await.is_some(),
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let signalled = std::future::pending::<bool>();
            let why = tokio::select! {
                _ = tick.tick() => {
                    if !certificate.changed() {
                        continue;
                    }
                    "file change"
                }
                true = signalled => "SIGHUP",
            };
            match certificate.reload() {
                Ok(()) => tracing::info!(
                    files = %certificate.describe(),
                    trigger = why,
                    "TLS files reloaded"
                ),
                Err(e) => tracing::error!(
                    error = %e,
                    trigger = why,
                    "TLS files not reloaded; the current ones stay in use"
                ),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(cn: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let cert = params.self_signed(&key).expect("cert");
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_pair_loads_and_a_changed_file_is_noticed_and_swapped_only_when_valid() {
        let dir = tempfile::tempdir().expect("dir");
        let (cert_file, key_file) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        let (cert, key) = pair("one");
        std::fs::write(&cert_file, &cert).expect("write");
        std::fs::write(&key_file, &key).expect("write");
        let loaded = ReloadingCertificate::load(&cert_file, &key_file).expect("loads");
        let first = loaded.current_certificate().expect("a certificate");
        assert!(!loaded.changed());
        server_config(loaded.clone()).expect("a server configuration");

        // A key that is not the certificate's: refused, the first pair stays.
        let (_, other_key) = pair("two");
        std::fs::write(&key_file, format!("{other_key}\n")).expect("write");
        assert!(loaded.changed(), "the size changed");
        let err = loaded.reload().expect_err("mismatch");
        assert!(err.to_string().contains("not the certificate's"), "{err}");
        assert!(
            !loaded.changed(),
            "a failed pair is not retried until it changes again"
        );
        assert_eq!(loaded.current_certificate(), Some(first.clone()));

        // A whole new pair: swapped in.
        let (cert, key) = pair("three");
        std::fs::write(&cert_file, &cert).expect("write");
        std::fs::write(&key_file, &key).expect("write");
        loaded.reload().expect("reloads");
        assert_ne!(loaded.current_certificate(), Some(first));
    }

    #[test]
    fn files_without_pem_items_are_named() {
        let dir = tempfile::tempdir().expect("dir");
        let (cert_file, key_file) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        let (cert, key) = pair("one");
        std::fs::write(&cert_file, "no pem here").expect("write");
        std::fs::write(&key_file, &key).expect("write");
        let err = ReloadingCertificate::load(&cert_file, &key_file).expect_err("no cert");
        assert!(matches!(err, TlsError::NoCertificate(_)), "{err}");
        std::fs::write(&cert_file, &cert).expect("write");
        std::fs::write(&key_file, &cert).expect("write");
        let err = ReloadingCertificate::load(&cert_file, &key_file).expect_err("no key");
        assert!(matches!(err, TlsError::NoKey(_)), "{err}");
        let err =
            ReloadingCertificate::load(&dir.path().join("none"), &key_file).expect_err("missing");
        assert!(matches!(err, TlsError::Read { .. }), "{err}");
    }
}
