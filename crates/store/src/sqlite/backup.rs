//! Online backups of the SQLite database, their checks, and restoring one.
//!
//! [`backup`] copies the live database as one consistent snapshot with `VACUUM INTO` over a
//! read-only connection of its own: it takes no lock a running server holds and waits for no
//! writer (WAL readers see the last commit), and the copy is compacted. The target is created
//! empty with owner-only permissions first, so the copy is never readable by others, then
//! [`check`]ed. [`restore`] takes the database's process lock (so it refuses while a server
//! runs), checks the backup, moves the current files aside, and puts a synced copy of the
//! backup in place with a rename: a failure at any point leaves either the old database or the
//! new one, never a mix.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions as _, Connection as _};
use trustgate_store_api::StoreError;

use super::{MIGRATOR, acquire_lock, database_path};
use crate::driver::store_error;

/// What a checked database file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupCheck {
    /// Its size.
    pub bytes: u64,
    /// The newest migration applied to it.
    pub migration_version: i64,
}

/// The newest migration this build knows: a backup made by a newer build is not restored.
pub fn latest_migration() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Copies the database named by `url` into `target`, which must not exist, and checks the copy.
pub async fn backup(url: &str, target: &Path) -> Result<BackupCheck, StoreError> {
    let source = database_path(url)?;
    if !source.is_file() {
        return Err(io(&source, std::io::ErrorKind::NotFound.into()));
    }
    // VACUUM INTO writes into an empty file: created here, owner-only, and never replacing one.
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(target).map_err(|e| io(target, e))?;
    let copied = async {
        let mut connection = SqliteConnectOptions::new()
            .filename(&source)
            .read_only(true)
            .busy_timeout(std::time::Duration::from_secs(5))
            .connect()
            .await
            .map_err(store_error)?;
        let target_name = target
            .to_str()
            .ok_or_else(|| StoreError::InvalidInput("the backup path is not UTF-8".into()))?;
        sqlx::query("VACUUM INTO ?")
            .bind(target_name)
            .execute(&mut connection)
            .await
            .map_err(store_error)?;
        connection.close().await.map_err(store_error)?;
        sync(target)?;
        check(target).await
    }
    .await;
    if copied.is_err() {
        let _ = std::fs::remove_file(target);
    }
    copied
}

/// Checks a database file without changing it: SQLite's `integrity_check` finds nothing, no
/// foreign key is violated, and it was migrated by trustgate.
pub async fn check(path: &Path) -> Result<BackupCheck, StoreError> {
    let bytes = std::fs::metadata(path).map_err(|e| io(path, e))?.len();
    let mut connection = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .immutable(true)
        .connect()
        .await
        .map_err(|e| StoreError::Corrupt(format!("{}: {e}", path.display())))?;
    let corrupt = |why: String| StoreError::Corrupt(format!("{}: {why}", path.display()));
    let integrity: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut connection)
        .await
        .map_err(|e| corrupt(e.to_string()))?;
    if integrity != ["ok"] {
        return Err(corrupt(format!(
            "integrity check: {}",
            integrity.join("; ")
        )));
    }
    let violations: Vec<sqlx::sqlite::SqliteRow> = sqlx::query("PRAGMA foreign_key_check")
        .fetch_all(&mut connection)
        .await
        .map_err(|e| corrupt(e.to_string()))?;
    if !violations.is_empty() {
        return Err(corrupt(format!(
            "{} foreign key violations",
            violations.len()
        )));
    }
    let migration_version: Option<i64> =
        sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&mut connection)
            .await
            .map_err(|_| corrupt("not a trustgate database (no migrations table)".into()))?;
    let _ = connection.close().await;
    Ok(BackupCheck {
        bytes,
        migration_version: migration_version
            .ok_or_else(|| corrupt("not a trustgate database (no migration applied)".into()))?,
    })
}

/// Replaces the database named by `url` with the backup `from`, once no process holds the
/// database and the backup checks out; the files replaced (the database, its `-wal` and
/// `-shm`) are moved into `aside` (created). Each `(backup, live)` of `companions` (files that
/// belong with the database, such as the key that seals its secrets) is put in place the same
/// way, under the same lock. Returns the backup's check.
pub async fn restore(
    url: &str,
    from: &Path,
    aside: &Path,
    companions: &[(PathBuf, PathBuf)],
) -> Result<BackupCheck, StoreError> {
    let database = database_path(url)?;
    let _lock = acquire_lock(&database)?;
    let checked = check(from).await?;
    if checked.migration_version > latest_migration() {
        return Err(StoreError::InvalidInput(format!(
            "{}: made by a newer trustgate (migration {}; this build knows up to {})",
            from.display(),
            checked.migration_version,
            latest_migration()
        )));
    }
    let directory = database
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    // Every copy is complete and synced before anything is moved.
    let mut incoming = vec![(staged(from, &database)?, database.clone())];
    for (backup, live) in companions {
        incoming.push((staged(backup, live)?, live.clone()));
    }
    std::fs::create_dir_all(aside).map_err(|e| io(aside, e))?;
    let replaced = ["-wal", "-shm"]
        .iter()
        .map(|suffix| with_suffix(&database, suffix))
        .chain(incoming.iter().map(|(_, live)| live.clone()));
    for current in replaced {
        if current.exists() {
            let name = current.file_name().unwrap_or_default();
            std::fs::rename(&current, aside.join(name)).map_err(|e| io(&current, e))?;
        }
    }
    for (staged, live) in &incoming {
        std::fs::rename(staged, live).map_err(|e| io(live, e))?;
    }
    sync(&directory)?;
    Ok(checked)
}

/// A synced, owner-only copy of `from` next to `live`, to be renamed over it.
fn staged(from: &Path, live: &Path) -> Result<PathBuf, StoreError> {
    let staged = with_suffix(live, ".restoring");
    let _ = std::fs::remove_file(&staged);
    std::fs::copy(from, &staged).map_err(|e| io(&staged, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io(&staged, e))?;
    }
    sync(&staged)?;
    Ok(staged)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Flushes a file (or a directory's entries) to the disk.
fn sync(path: &Path) -> Result<(), StoreError> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| io(path, e))
}

fn io(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}
