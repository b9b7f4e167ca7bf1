//! The first administrator.
//!
//! On a start with no admin account, the server creates one with a fresh 256-bit token, writes
//! the token to `<data-dir>/admin.token` (mode 0600) and prints it once. Only the token's digest
//! is stored. With `TRUSTGATE_BOOTSTRAP_TOKEN` (config key `bootstrap_token`) that token is
//! registered instead, idempotently, which is how automation and PostgreSQL replicas agree on it.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use trustgate_core::secret::generate_token;
use trustgate_core::{Clock, Secret, TokenDigest, id::new_ulid};
use trustgate_store_api::{AccountRole, ServiceAccountStore, StoreError};

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
    /// A token was generated and written to this file.
    Generated {
        /// The token file.
        path: PathBuf,
        /// The token, to print once.
        token: Secret,
    },
}

/// Why bootstrapping failed.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The database refused.
    #[error(transparent)]
    Store(#[from] StoreError),
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
pub async fn ensure_admin(
    store: &dyn ServiceAccountStore,
    clock: &dyn Clock,
    data_dir: &Path,
    configured: Option<&Secret>,
) -> Result<Bootstrap, BootstrapError> {
    let now = clock.now();
    if let Some(token) = configured {
        store
            .ensure_account_token(
                &new_ulid(now),
                ADMIN_ACCOUNT,
                AccountRole::Admin,
                &TokenDigest::of(token.expose()),
                "bootstrap (configured)",
                now,
            )
            .await?;
        return Ok(Bootstrap::Configured);
    }
    if store.find_service_account(ADMIN_ACCOUNT).await?.is_some() {
        return Ok(Bootstrap::Existing);
    }
    let token = generate_token("tg_admin_");
    let created = store
        .create_service_account(
            &new_ulid(now),
            ADMIN_ACCOUNT,
            AccountRole::Admin,
            &TokenDigest::of(token.expose()),
            "bootstrap (generated)",
            now,
        )
        .await?;
    if created.is_none() {
        // Another replica won the race; its token is the one.
        return Ok(Bootstrap::Existing);
    }
    let path = data_dir.join(TOKEN_FILE);
    write_private(&path, token.expose()).map_err(|source| BootstrapError::TokenFile {
        path: path.clone(),
        source,
    })?;
    Ok(Bootstrap::Generated { path, token })
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
