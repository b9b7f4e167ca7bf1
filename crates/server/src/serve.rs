//! The server's life: validate the configuration, prepare (data directory, database,
//! migrations, bootstrap admin), bind, serve through [`crate::listener`] (connection caps,
//! header-read and idle timeouts) until a shutdown signal, drain in-flight requests within a
//! grace period, close.
//!
//! Every failure before serving is a [`StartError`] whose message is one line naming what was
//! wrong (the data directory, the database, the port), so the binary can print it and exit.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use trustgate_audit::Chains;
use trustgate_core::{Clock, SealingKey, SystemClock};
use trustgate_store::ConnectOptions;
use trustgate_store_api::{AuditChain, Backend, MigrationReport, Store, StoreError};

use crate::app::{AppState, router};
use crate::bootstrap::{Bootstrap, BootstrapError, ensure_admin};
use crate::config::Config;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory cannot be created or written.
    #[error("data directory {} is not usable: {source}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The database cannot be opened, reached or migrated.
    #[error("{0}")]
    Database(#[from] StoreError),
    /// The bootstrap administrator could not be created.
    #[error("bootstrap failed: {0}")]
    Bootstrap(#[from] BootstrapError),
    /// The secrets key is missing, malformed, or its file cannot be read or written.
    #[error("{0}")]
    SecretsKey(String),
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why (address in use, permission denied, ...).
        source: std::io::Error,
    },
    /// The services cannot start (signing keys, the system model).
    #[error("{0}")]
    Services(#[from] crate::app::ServicesError),
    /// The TLS certificate or key cannot be used.
    #[error("TLS: {0}")]
    Tls(#[from] trustgate_listener::tls::TlsError),
    /// The configuration is invalid (an embedder built it without [`Config::load`]).
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    /// The listening socket failed.
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

/// A prepared, bound server, ready to [`run`](Server::run).
#[derive(Debug)]
pub struct Server {
    state: AppState,
    listener: TcpListener,
    certificate: Option<Arc<trustgate_listener::tls::ReloadingCertificate>>,
    /// The mutual-TLS listener and its client-certificate verifier, when configured.
    mutual: Option<(
        TcpListener,
        Arc<trustgate_listener::mtls::ReloadingClientVerifier>,
    )>,
    bootstrap: Bootstrap,
}

/// Opens the configured database with the configured pool settings.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StoreError> {
    let options = ConnectOptions {
        max_connections: config.database.max_connections,
        acquire_timeout: Duration::from_secs(config.database.acquire_timeout_secs),
        sqlite_synchronous: config.database.sqlite_synchronous.into(),
        ..ConnectOptions::default()
    };
    trustgate_store::connect(&config.effective_database_url(), &options).await
}

/// `trustgate migrate`: applies pending migrations and reports the versions.
pub async fn migrate(config: &Config) -> Result<MigrationReport, StartError> {
    ensure_data_dir(&config.data_dir)?;
    let store = open_store(config).await?;
    let report = store.migrate().await?;
    store.close().await;
    Ok(report)
}

impl Server {
    /// Prepares the data directory and database, bootstraps the admin and binds the listener.
    pub async fn start(config: Config) -> Result<Self, StartError> {
        Self::start_with_clock(config, Arc::new(SystemClock)).await
    }

    /// As [`start`](Self::start), with an explicit clock.
    pub async fn start_with_clock(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        config.validate()?;
        ensure_data_dir(&config.data_dir)?;
        let backend = trustgate_store::backend_of(&config.effective_database_url())?;
        let secrets_key = resolve_secrets_key(&config, backend)?;
        let store = open_store(&config).await?;
        if backend == Backend::Sqlite
            && config.database.sqlite_synchronous != crate::config::SqliteSynchronous::Full
        {
            tracing::warn!(
                "database.sqlite_synchronous = normal: commits are synced at checkpoints only; \
                 an OS crash or power loss may lose the last acknowledged writes"
            );
        }
        let report = store.migrate().await?;
        if report.after != report.before {
            tracing::info!(from = report.before, to = report.after, "migrated database");
        }
        for (path, mode) in loosened_paths(&config.data_dir) {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{mode:o}"),
                "readable by others: it holds secrets or the database; chmod go-rwx it"
            );
        }
        // Before the socket is bound: a certificate (or a CA bundle, a CRL) that does not load
        // fails the start.
        let certificate = config.tls.load()?;
        let clients = match config.mtls.listen {
            Some(_) => Some(trustgate_listener::mtls::ReloadingClientVerifier::load(
                &config.mtls,
            )?),
            None => None,
        };
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Listen {
                    addr: config.listen,
                    source,
                })?;
        let mutual = match (config.mtls.listen, clients) {
            (Some(addr), Some(clients)) => Some((
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::Listen { addr, source })?,
                clients,
            )),
            _ => None,
        };
        let mut config = config;
        if config.oauth.issuer.is_none() && config.pages.public_origin.is_none() {
            // Port 0 means "any": the issuer must name the port actually bound.
            let bound = listener.local_addr().map_err(StartError::Serve)?;
            config.oauth.issuer = Some(crate::app::default_issuer(bound, config.tls.enabled()));
        }
        if let Some((mtls, _)) = &mutual
            && config.mtls.public_origin.is_none()
        {
            let bound = mtls.local_addr().map_err(StartError::Serve)?;
            let issuer = config
                .oauth
                .issuer
                .clone()
                .or_else(|| config.pages.public_origin.clone())
                .unwrap_or_default();
            config.mtls.public_origin = Some(crate::app::mtls_origin(&issuer, bound.port()));
        }
        let state = AppState::start(store, clock, config, secrets_key).await?;
        let bootstrap = ensure_admin(&state).await?;
        Ok(Self {
            state,
            listener,
            certificate,
            mutual,
            bootstrap,
        })
    }

    /// The bound address of the mutual-TLS listener, if there is one.
    pub fn mtls_local_addr(&self) -> Result<Option<SocketAddr>, StartError> {
        self.mutual
            .as_ref()
            .map(|(listener, _)| listener.local_addr().map_err(StartError::Serve))
            .transpose()
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, StartError> {
        self.listener.local_addr().map_err(StartError::Serve)
    }

    /// What bootstrapping did at start.
    pub fn bootstrap(&self) -> &Bootstrap {
        &self.bootstrap
    }

    /// The shared state (for embedding and tests).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish for at most the
    /// configured grace period and closes the database.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let grace = Duration::from_secs(self.state.config.http.shutdown_grace_secs);
        // Before any background task starts: a transport that cannot be built ends `run` with
        // nothing left running.
        let transport = crate::listener::Transport::new(
            self.certificate.clone(),
            &self.state.config.tls,
            self.state.config.http.trusted_proxies()?,
        )?;
        let mutual = match (&self.mutual, &self.certificate) {
            (Some((_, clients)), Some(certificate)) => Some(crate::listener::Transport::mutual(
                certificate.clone(),
                clients.clone(),
                &self.state.config.tls,
                self.state.config.http.trusted_proxies()?,
            )?),
            _ => None,
        };
        let store = self.state.store.clone();
        let auditor = self.state.auditor.clone();
        let api_keys = self.state.api_keys.clone();
        let purge = tokio::spawn(purge_sessions_periodically(self.state.accounts.clone()));
        let audit_retention = tokio::spawn(purge_streamed_audit_periodically(
            self.state.chains.clone(),
            time::Duration::days(i64::from(self.state.config.audit.streamed_retention_days)),
        ));
        let chains = self.state.chains.clone();
        let audit_anchors = tokio::spawn(anchor_audit_periodically(
            chains.clone(),
            Duration::from_secs(u64::from(self.state.config.audit.anchor_every_secs).min(5)),
        ));
        let maintenance = tokio::spawn(maintain_oauth_periodically(self.state.oauth.clone()));
        // Deliveries cut off by shutdown mid-attempt are retried when their lease runs out (here
        // after a restart, or on another replica): delivery is at least once.
        let webhook_worker = tokio::spawn(trustgate_webhooks::worker::run(
            self.state.webhooks.clone(),
            self.state.auditor.clone(),
        ));
        let metrics_upkeep =
            tokio::spawn(crate::telemetry::metrics_upkeep(self.state.metrics.clone()));
        let settings = self.state.config.http.listener_settings().clamped(
            crate::listener::descriptor_limit(),
            u64::from(self.state.config.database.max_connections)
                + crate::listener::RESERVED_DESCRIPTORS,
        );
        log_listener_settings(&self.state.config.http, &settings);
        let certificate_watch = self.certificate.clone().map(|certificate| {
            trustgate_listener::tls::watch(
                certificate,
                Duration::from_secs(self.state.config.tls.reload_check_secs),
            )
        });
        let reload_every = Duration::from_secs(self.state.config.tls.reload_check_secs);
        let stopping = self.state.stopping.clone();
        let mut stopped = stopping.subscribe();
        let app = router(self.state);
        // The mutual-TLS listener serves the same routes, with its own connection caps, and
        // stops with the main one.
        let mutual_listener = match (self.mutual, mutual) {
            (Some((listener, clients)), Some(transport)) => {
                let watch = trustgate_listener::tls::watch(clients, reload_every);
                let served = tokio::spawn(crate::listener::serve(
                    listener,
                    app.clone(),
                    settings,
                    transport,
                    async move {
                        let _ = stopped.wait_for(|stopping| *stopping).await;
                    },
                    grace,
                ));
                Some((served, watch))
            }
            _ => None,
        };
        let signal = async move {
            shutdown.await;
            stopping.send_replace(true);
            tracing::info!("shutdown requested; draining in-flight requests");
        };
        crate::listener::serve(self.listener, app, settings, transport, signal, grace).await;
        if let Some((served, watch)) = mutual_listener {
            let _ = served.await;
            watch.abort();
        }
        if let Some(task) = certificate_watch {
            task.abort();
        }
        purge.abort();
        audit_retention.abort();
        audit_anchors.abort();
        maintenance.abort();
        webhook_worker.abort();
        metrics_upkeep.abort();
        // Decisions and issuances still queued reach the trail before the database closes; a
        // database that does not answer cannot hold shutdown up beyond this bound.
        if !auditor.flush(AUDIT_FLUSH_TIMEOUT).await {
            tracing::warn!("audit events still queued at shutdown were dropped");
        }
        // The last events are anchored before the database closes (bounded like the flush).
        match tokio::time::timeout(AUDIT_FLUSH_TIMEOUT, chains.anchor_due()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot anchor the audit chains at shutdown"),
            Err(_) => tracing::warn!("anchoring the audit chains at shutdown timed out"),
        }
        // Last-use times noted since the last batch, bounded like the audit flush.
        match tokio::time::timeout(AUDIT_FLUSH_TIMEOUT, api_keys.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "API key last-use times were not recorded"),
            Err(_) => tracing::warn!("API key last-use times were not recorded in time"),
        }
        store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// One line with the connection limits in effect, and a warning when the descriptor limit cut
/// the configured cap.
fn log_listener_settings(
    http: &crate::config::HttpConfig,
    settings: &crate::listener::ListenerSettings,
) {
    tracing::info!(
        max_connections = settings.max_connections,
        max_connections_per_ip = settings.max_connections_per_ip,
        header_read_timeout_secs = settings.header_read_timeout.as_secs(),
        idle_timeout_secs = settings.idle_timeout.as_secs(),
        "connection limits"
    );
    if settings.max_connections < http.max_connections {
        tracing::warn!(
            configured = http.max_connections,
            effective = settings.max_connections,
            "http.max_connections lowered to fit the file-descriptor limit (RLIMIT_NOFILE, less \
             the database pool and reserved descriptors); raise the limit (ulimit -n, LimitNOFILE=) \
             to allow more"
        );
    }
}

/// How long shutdown waits for queued audit events to be written.
const AUDIT_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// Creates `path` (and its parents), enterable by its owner only.
pub(crate) fn create_private_dir(path: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(path)
}

/// Writes `bytes` to the new file `path` (never replacing one), readable by its owner only,
/// and syncs it.
pub(crate) fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Creates the data directory and proves it is writable.
fn ensure_data_dir(path: &Path) -> Result<(), StartError> {
    let fail = |source| StartError::DataDir {
        path: path.to_path_buf(),
        source,
    };
    if !path.exists() {
        // Only its owner may list or read what the server keeps here.
        create_private_dir(path).map_err(fail)?;
    }
    let probe = path.join(".write-test");
    std::fs::write(&probe, b"ok").map_err(fail)?;
    std::fs::remove_file(&probe).map_err(fail)?;
    Ok(())
}

/// The data directory and the files in it that hold secrets or the database: each should be
/// readable by its owner only.
const PRIVATE_FILES: [&str; 6] = [
    "trustgate.db",
    "trustgate.db-wal",
    "trustgate.db-shm",
    "trustgate.db.lock",
    SECRETS_KEY_FILE,
    crate::bootstrap::TOKEN_FILE,
];

/// Those of the data directory and its private files that others may read or enter (the
/// operator loosened them, or an older release created them): what start-up warns about.
pub fn loosened_paths(data_dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut paths = vec![data_dir.to_path_buf()];
    paths.extend(PRIVATE_FILES.iter().map(|f| data_dir.join(f)));
    paths
        .into_iter()
        .filter_map(|p| {
            let mode = file_mode(&p)?;
            (mode & 0o077 != 0).then_some((p, mode))
        })
        .collect()
}

#[cfg(unix)]
fn file_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o777)
}

#[cfg(not(unix))]
fn file_mode(_: &Path) -> Option<u32> {
    None
}

/// Where the generated secrets key lives on SQLite, relative to the data directory.
pub const SECRETS_KEY_FILE: &str = "secrets.key";

/// The key that seals TOTP secrets and pending-login tokens: the configured one; else, on
/// SQLite, the one in `<data-dir>/secrets.key` (created with mode 0600 on first start); on
/// PostgreSQL it must be configured, because every replica needs the same key.
pub fn resolve_secrets_key(config: &Config, backend: Backend) -> Result<SealingKey, StartError> {
    if let Some(configured) = &config.secrets_key {
        return SealingKey::from_base64(configured.expose()).ok_or_else(|| {
            StartError::SecretsKey(
                "secrets_key must be base64 of exactly 32 random bytes (e.g. `openssl rand -base64 32`)"
                    .into(),
            )
        });
    }
    match backend {
        Backend::Sqlite => secrets_key_file(&config.data_dir.join(SECRETS_KEY_FILE)),
        Backend::Postgres => Err(StartError::SecretsKey(
            "a secrets key is required with PostgreSQL (every replica must use the same one): \
             set TRUSTGATE_SECRETS_KEY to base64 of 32 random bytes, e.g. `openssl rand -base64 32`"
                .into(),
        )),
    }
}

/// Reads the key file, or creates it (owner-only) if it does not exist.
fn secrets_key_file(path: &Path) -> Result<SealingKey, StartError> {
    let unreadable = |detail: String| {
        StartError::SecretsKey(format!("secrets key file {}: {detail}", path.display()))
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            return SealingKey::from_base64(&text).ok_or_else(|| {
                unreadable("does not hold base64 of 32 bytes; restore it from backup (TOTP enrollments depend on it)".into())
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(unreadable(e.to_string())),
    }
    let key = SealingKey::generate();
    let written = write_private_file(path, format!("{}\n", key.to_base64().expose()).as_bytes());
    match written {
        Ok(()) => {
            tracing::info!(path = %path.display(), "generated a new secrets key");
            Ok(key)
        }
        // Created concurrently: use that one.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => secrets_key_file(path),
        Err(e) => Err(unreadable(e.to_string())),
    }
}

/// Every ten minutes deletes dead sessions, attempt counts past their window and spent passkey
/// challenges past their lifetime (the throttles and the challenge ledger live in the database,
/// shared by every replica).
async fn purge_sessions_periodically(accounts: trustgate_authn::accounts::Accounts) {
    let mut every = tokio::time::interval(Duration::from_secs(600));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match accounts.purge_expired().await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(rows = n, "purged dead sessions, attempt counts and nonces"),
            Err(e) => tracing::warn!(error = %e, "cannot purge dead sessions and attempt counts"),
        }
    }
}

/// Every hour: streamed audit events (decisions, issuances) older than the retention go, as a
/// prefix of their chain under a signed truncation anchor.
async fn purge_streamed_audit_periodically(chains: Chains, retention: time::Duration) {
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match chains
            .apply_retention(AuditChain::Streamed, retention)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::debug!(events = n, "purged streamed audit events past retention"),
            Err(e) => tracing::warn!(error = %e, "cannot purge streamed audit events"),
        }
    }
}

/// Every `period`: a signed anchor of each audit chain that is due one (by count or by time).
async fn anchor_audit_periodically(chains: Chains, period: Duration) {
    let mut every = tokio::time::interval(period);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if let Err(e) = chains.anchor_due().await {
            tracing::warn!(error = %e, "cannot anchor the audit chains");
        }
    }
}

/// Every minute: signing-key upkeep (rotations by other replicas, scheduled rotation, purge of
/// expired keys); every ten minutes: purge of dead codes, grants and other OAuth artifacts.
async fn maintain_oauth_periodically(oauth: trustgate_oauth::provider::Provider) {
    let mut every = tokio::time::interval(Duration::from_secs(60));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u64 = 0;
    loop {
        every.tick().await;
        if let Err(e) = oauth.keys().maintain().await {
            tracing::warn!(error = %e, "signing key maintenance failed");
        }
        if ticks.is_multiple_of(10) {
            match oauth.purge_expired().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(rows = n, "purged dead OAuth artifacts"),
                Err(e) => tracing::warn!(error = %e, "cannot purge OAuth artifacts"),
            }
        }
        ticks = ticks.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn loosened_private_files_are_reported() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        ensure_data_dir(&data).expect("data dir");
        let key = data.join(SECRETS_KEY_FILE);
        std::fs::write(&key, "k").expect("write");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(
            loosened_paths(&data).is_empty(),
            "0700 directory, 0600 file"
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let reported: Vec<PathBuf> = loosened_paths(&data).into_iter().map(|(p, _)| p).collect();
        assert_eq!(reported, [data.clone(), key]);
    }

    #[test]
    fn sqlite_key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        let first = resolve_secrets_key(&config, Backend::Sqlite).expect("created");
        let again = resolve_secrets_key(&config, Backend::Sqlite).expect("read");
        assert_eq!(first, again);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(SECRETS_KEY_FILE))
                .expect("file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(dir.path().join(SECRETS_KEY_FILE), "garbage").expect("overwrite");
        let err = resolve_secrets_key(&config, Backend::Sqlite).expect_err("corrupt");
        assert!(err.to_string().contains("secrets.key"), "{err}");
    }

    #[test]
    fn postgres_needs_a_configured_key() {
        let err = resolve_secrets_key(&Config::default(), Backend::Postgres).expect_err("missing");
        assert!(err.to_string().contains("TRUSTGATE_SECRETS_KEY"), "{err}");
        let key = SealingKey::generate();
        let config = Config {
            secrets_key: Some(key.to_base64()),
            ..Config::default()
        };
        assert_eq!(
            resolve_secrets_key(&config, Backend::Postgres).expect("configured"),
            key
        );
    }
}
