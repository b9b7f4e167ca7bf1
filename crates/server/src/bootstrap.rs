//! The first administrator.
//!
//! On a start with no `admin` service account, the server creates one, grants it the `admin`
//! role in the system store, issues it an API key with the `admin` scope, writes the key to
//! `<data-dir>/admin.token` (mode 0600) and prints it once. Only the key's digest is stored.
//! With `TRUSTGATE_BOOTSTRAP_TOKEN` (config key `bootstrap_token`) that token is registered as
//! the admin account's key instead, idempotently, which is how automation and PostgreSQL
//! replicas agree on it. The bootstrap key is an ordinary API key: it can be listed, rotated and
//! revoked like any other.
//!
//! Installations from before API keys keep working: migration 0006 turned their bootstrap token
//! into an `admin`-scoped key of the same account and granted the account `admin`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use trustgate_authn::api_keys::format;
use trustgate_core::{Secret, TokenDigest, id::new_ulid};
use trustgate_pdp::system::{Role, SystemRole};
use trustgate_store_api::{EnsuredKey, NewApiKey, NewServiceAccount, StoreError};

use crate::AppState;

/// The name of the bootstrap administrator account.
pub const ADMIN_ACCOUNT: &str = "admin";
/// Where the generated token is written, relative to the data directory.
pub const TOKEN_FILE: &str = "admin.token";

/// What bootstrapping did.
#[derive(Debug)]
pub enum Bootstrap {
    /// An admin account existed; nothing was generated.
    Existing,
    /// The configured token was registered (or was registered already).
    Configured,
    /// A key was generated and written to this file.
    Generated {
        /// The token file.
        path: PathBuf,
        /// The key, to print once.
        token: Secret,
    },
}

/// Why bootstrapping failed.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The database refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The admin role could not be granted.
    #[error("cannot grant the admin role: {0}")]
    Grant(#[from] trustgate_pdp::PdpError),
    /// The token file could not be written.
    #[error("cannot write the bootstrap token to {}: {source}", path.display())]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Makes sure an administrator can log in.
pub async fn ensure_admin(state: &AppState) -> Result<Bootstrap, BootstrapError> {
    if let Some(token) = &state.config.bootstrap_token {
        register(
            state,
            token,
            &new_ulid(state.clock.now()),
            "bootstrap (configured)",
        )
        .await?;
        return Ok(Bootstrap::Configured);
    }
    if state
        .store
        .find_service_account(ADMIN_ACCOUNT)
        .await?
        .is_some()
    {
        return Ok(Bootstrap::Existing);
    }
    let key_id = new_ulid(state.clock.now());
    let token = format::generate(&state.config.api_keys.environment, &key_id);
    let ensured = register(state, &token, &key_id, "bootstrap (generated)").await?;
    if !ensured.account_created {
        // Another replica won the race; its key is the one, and ours must not live on.
        if ensured.key_created {
            state.api_keys.revoke(&key_id).await?;
        }
        return Ok(Bootstrap::Existing);
    }
    let path = state.config.data_dir.join(TOKEN_FILE);
    write_private(&path, token.expose()).map_err(|source| BootstrapError::TokenFile {
        path: path.clone(),
        source,
    })?;
    Ok(Bootstrap::Generated { path, token })
}

/// Registers `token` as a key of the bootstrap administrator (created with the `admin` role
/// if it does not exist), idempotently: what a configured `bootstrap_token` does.
pub async fn ensure_admin_token(state: &AppState, token: &str) -> Result<(), BootstrapError> {
    let key_id = new_ulid(state.clock.now());
    register(
        state,
        &Secret::new(token),
        &key_id,
        "bootstrap (configured)",
    )
    .await?;
    Ok(())
}

async fn register(
    state: &AppState,
    token: &Secret,
    key_id: &str,
    description: &str,
) -> Result<EnsuredKey, BootstrapError> {
    let now = state.clock.now();
    let existing = state.store.find_service_account(ADMIN_ACCOUNT).await?;
    let account_id = existing
        .as_ref()
        .map_or_else(|| new_ulid(now), |a| a.id.clone());
    let admin = Role::System(SystemRole::Admin);
    // A new account's role is granted before the account exists, so no crash can leave an
    // admin account without it; a replica that loses the race takes its grant back. An
    // existing account keeps the roles it has (an operator may have changed them).
    let subject = format!("service:{account_id}");
    if existing.is_none() {
        state.access.grant(&subject, &admin).await?;
    }
    let scopes = [admin.to_string()];
    let ensured = state
        .store
        .ensure_bootstrap_key(
            &NewServiceAccount {
                id: &account_id,
                name: ADMIN_ACCOUNT,
                owner: None,
                description: "the bootstrap administrator",
            },
            &NewApiKey {
                id: key_id,
                digest: &TokenDigest::of(token.expose()),
                description,
                scopes: &scopes,
                rate_limit_per_minute: None,
                expires_at: None,
            },
            now,
        )
        .await?;
    if existing.is_none() && !ensured.account_created {
        state.access.revoke(&subject, &admin).await?;
    }
    Ok(ensured)
}

/// Writes `contents` to a file only the owner can read.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}
