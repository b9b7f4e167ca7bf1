//! `trustgate backup` and `trustgate restore` for the embedded deployment (SQLite).
//!
//! A backup is a directory: `trustgate.db`, a consistent snapshot of the live database taken
//! while the server runs (`trustgate_store::sqlite::backup`), checked before the command says
//! it succeeded, and `secrets.key` when the data directory holds the key that seals TOTP
//! secrets (without it a restored database could not unseal them; a configured
//! `secrets_key` is the operator's to keep). Both are readable by their owner only.
//!
//! A restore refuses while a server holds the database, checks the backup first (integrity,
//! foreign keys, a migration this build knows), and moves what it replaces into
//! `<data-dir>/before-restore-<unix time>/`, so nothing is lost. PostgreSQL is backed up with
//! `pg_dump` (see the README); these commands say so rather than do half of it.

use std::path::{Path, PathBuf};

use serde::Serialize;
use trustgate_store::sqlite::backup as sqlite_backup;
use trustgate_store_api::{Backend, StoreError};

use crate::Config;
use crate::serve::{SECRETS_KEY_FILE, create_private_dir, write_private_file};

/// The database file's name inside a backup directory.
pub const DATABASE_FILE: &str = "trustgate.db";

/// Why a backup or restore did not happen.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The database is PostgreSQL.
    #[error(
        "backup and restore cover the embedded SQLite database; back up PostgreSQL with \
         pg_dump (e.g. `pg_dump --format=custom --file=trustgate.dump \"$DATABASE_URL\"`) and \
         restore with pg_restore"
    )]
    Postgres,
    /// The target or source directory is not usable.
    #[error("{0}")]
    Directory(String),
    /// The store refused (a running server holds the database, the backup is corrupt, ...).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a backup or restore did.
#[derive(Debug, Clone, Serialize)]
pub struct BackupSummary {
    /// The backup directory.
    pub backup: PathBuf,
    /// The database's size in the backup.
    pub database_bytes: u64,
    /// Its newest migration.
    pub migration_version: i64,
    /// SQLite's integrity check of the backup: always `ok` (anything else is an error).
    pub integrity: &'static str,
    /// Whether the backup carries the secrets key file.
    pub secrets_key: bool,
    /// On restore: where the replaced files went.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced_into: Option<PathBuf>,
}

/// Backs up the database of `config` (and its secrets key file) into `to`, a directory that
/// must not exist or be empty.
pub async fn backup(config: &Config, to: &Path) -> Result<BackupSummary, BackupError> {
    let url = sqlite_url(config)?;
    prepare_directory(to)?;
    let checked = sqlite_backup::backup(&url, &to.join(DATABASE_FILE)).await?;
    let key = key_file(config);
    let secrets_key = match &key {
        Some(key) => {
            copy_private(key, &to.join(SECRETS_KEY_FILE))?;
            true
        }
        None => false,
    };
    Ok(BackupSummary {
        backup: to.to_path_buf(),
        database_bytes: checked.bytes,
        migration_version: checked.migration_version,
        integrity: "ok",
        secrets_key,
        replaced_into: None,
    })
}

/// Restores the backup in `from` over the database of `config`, which no server may hold.
pub async fn restore(config: &Config, from: &Path) -> Result<BackupSummary, BackupError> {
    let url = sqlite_url(config)?;
    let database = from.join(DATABASE_FILE);
    if !database.is_file() {
        return Err(BackupError::Directory(format!(
            "{}: not a trustgate backup (no {DATABASE_FILE} in it)",
            from.display()
        )));
    }
    let backed_up_key = from.join(SECRETS_KEY_FILE);
    let mut companions = Vec::new();
    let secrets_key = backed_up_key.is_file();
    if secrets_key {
        if config.secrets_key.is_some() {
            return Err(BackupError::Directory(format!(
                "{}: the backup carries a secrets key file, but secrets_key is configured; \
                 configure the key the backup was made with instead, or remove the file",
                from.display()
            )));
        }
        companions.push((backed_up_key, config.data_dir.join(SECRETS_KEY_FILE)));
    }
    let aside = aside_directory(&config.data_dir);
    let checked = sqlite_backup::restore(&url, &database, &aside, &companions).await?;
    Ok(BackupSummary {
        backup: from.to_path_buf(),
        database_bytes: checked.bytes,
        migration_version: checked.migration_version,
        integrity: "ok",
        secrets_key,
        replaced_into: Some(aside),
    })
}

/// A directory name for the replaced files that no earlier restore used:
/// `before-restore-<unix time>`, with `-2`, `-3`, ... for restores within the same second.
fn aside_directory(data_dir: &Path) -> PathBuf {
    let seconds = time::OffsetDateTime::now_utc().unix_timestamp();
    let base = format!("before-restore-{seconds}");
    let mut candidate = data_dir.join(&base);
    let mut n = 1;
    while candidate.exists() {
        n += 1;
        candidate = data_dir.join(format!("{base}-{n}"));
    }
    candidate
}

fn sqlite_url(config: &Config) -> Result<String, BackupError> {
    let url = config.effective_database_url();
    match trustgate_store::backend_of(&url)? {
        Backend::Sqlite => Ok(url),
        Backend::Postgres => Err(BackupError::Postgres),
    }
}

/// The secrets key file the server uses, when it uses one (no configured key, file present).
fn key_file(config: &Config) -> Option<PathBuf> {
    let file = config.data_dir.join(SECRETS_KEY_FILE);
    (config.secrets_key.is_none() && file.is_file()).then_some(file)
}

/// Creates `dir` owner-only, or accepts it if it exists and is empty.
fn prepare_directory(dir: &Path) -> Result<(), BackupError> {
    let refuse = |why: String| BackupError::Directory(format!("{}: {why}", dir.display()));
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(refuse("not empty; back up into a new directory".into()));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            create_private_dir(dir).map_err(|e| refuse(e.to_string()))
        }
        Err(e) => Err(refuse(e.to_string())),
    }
}

/// Copies `from` to the new file `to`, readable by its owner only.
fn copy_private(from: &Path, to: &Path) -> Result<(), BackupError> {
    let fail = |e: std::io::Error| BackupError::Directory(format!("{}: {e}", to.display()));
    let bytes = std::fs::read(from).map_err(fail)?;
    write_private_file(to, &bytes).map_err(fail)
}
