use std::path::PathBuf;

/// The underlying cause of a database failure, kept for logs and `source()` chains.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no supported backend.
    #[error("invalid database url: {0}")]
    InvalidUrl(String),
    /// Another process holds the SQLite database.
    #[error(
        "database {} is in use by another trustgate process (lock file {} is held); \
         stop it first, or run several replicas on PostgreSQL",
        database.display(), lock_file.display()
    )]
    Locked {
        /// The database file.
        database: PathBuf,
        /// The lock file next to it.
        lock_file: PathBuf,
    },
    /// The database directory or file cannot be created or opened.
    #[error("cannot open database at {}: {source}", path.display())]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The database cannot be reached right now; retrying later may succeed.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// The input is empty, malformed or absurdly large; nothing was read or written.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A continuation token that this store did not issue for this operation.
    #[error("invalid continuation token")]
    InvalidContinuationToken,
    /// The named record (e.g. a relationship store) does not exist or was deleted.
    #[error("not found: {0}")]
    NotFound(String),
    /// A uniqueness or reference rule was violated; nothing was written.
    #[error("conflict: {0}")]
    Conflict(Conflict),
    /// Migrations failed to apply.
    #[error("migration failed: {0}")]
    Migration(#[source] BoxError),
    /// A stored value does not decode (a row written by something other than this store).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Any other database error.
    #[error("database error: {0}")]
    Database(#[source] BoxError),
    /// The database has no room for the write (disk full, quota, SQLite's page limit); the
    /// transaction was rolled back, so nothing of it was written. Reads keep working, and writes
    /// work again once space is freed.
    #[error("database storage is full: {0}")]
    StorageFull(#[source] BoxError),
    /// The database refuses writes (a read-only file, directory or mount, or a PostgreSQL hot
    /// standby); nothing was written. Reads keep working.
    #[error("database is read-only: {0}")]
    ReadOnly(#[source] BoxError),
}

/// Why a database could not serve a request for a reason outside the request itself: the
/// answer is "retry later" (503, or 507 for a full disk) with a stable code, never a 500 with a
/// driver message and never an answer computed without the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// The database cannot be reached or is overloaded ([`StoreError::Unavailable`]).
    Unavailable,
    /// The database has no room for writes ([`StoreError::StorageFull`]).
    StorageFull,
    /// The database refuses writes ([`StoreError::ReadOnly`]).
    ReadOnly,
}

impl Outage {
    /// The stable machine code of the error answered for it.
    pub fn code(self) -> &'static str {
        match self {
            Outage::Unavailable => "unavailable",
            Outage::StorageFull => "storage_full",
            Outage::ReadOnly => "read_only",
        }
    }

    /// The HTTP status answered for it (a number, so this crate stays transport-free):
    /// 507 Insufficient Storage for a full disk, 503 otherwise.
    pub fn http_status(self) -> u16 {
        match self {
            Outage::StorageFull => 507,
            Outage::Unavailable | Outage::ReadOnly => 503,
        }
    }

    /// A message for clients: what happened, without the driver's detail.
    pub fn message(self) -> &'static str {
        match self {
            Outage::Unavailable => "the database is unavailable; retry later",
            Outage::StorageFull => {
                "the database has no storage left for writes; nothing was written; reads still work"
            }
            Outage::ReadOnly => "the database is read-only; nothing was written; reads still work",
        }
    }
}

impl StoreError {
    /// The outage this error reports, if it is one (see [`Outage`]); `None` for errors of the
    /// request (invalid input, conflicts, not found) and for defects (corrupt data, other
    /// database errors).
    pub fn outage(&self) -> Option<Outage> {
        match self {
            StoreError::Unavailable(_) => Some(Outage::Unavailable),
            StoreError::StorageFull(_) => Some(Outage::StorageFull),
            StoreError::ReadOnly(_) => Some(Outage::ReadOnly),
            _ => None,
        }
    }
}

/// Which uniqueness or reference rule a write broke. Callers match on the kind; the text is for
/// people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    /// The username is taken (as a username or as another user's email).
    #[error("username is already taken")]
    UsernameTaken,
    /// The email is taken (as an email or as another user's username).
    #[error("email is already taken")]
    EmailTaken,
    /// A passkey with this credential id is registered already.
    #[error("passkey credential id is already registered")]
    PasskeyTaken,
    /// A pending TOTP secret would replace a confirmed one.
    #[error("a confirmed TOTP credential exists; delete it first")]
    TotpConfirmed,
    /// A session or grant was to be created for a disabled user.
    #[error("user is disabled")]
    UserDisabled,
    /// The OAuth client id is registered already.
    #[error("client id is already registered")]
    ClientExists,
    /// The signing key id is in use.
    #[error("signing key id is already in use")]
    KidTaken,
    /// The device user code is held by an unexpired device authorization.
    #[error("user code is in use by an unexpired device authorization")]
    UserCodeTaken,
    /// The device code is stored already.
    #[error("device code is already stored")]
    DeviceCodeTaken,
    /// The service token is registered to another service account.
    #[error("token is registered to another account")]
    TokenOwnedElsewhere,
    /// The certificate name is bound to another service account.
    #[error("certificate name is bound to another account")]
    CertificateNameTaken,
    /// The service account name is taken.
    #[error("service account name is already taken")]
    ServiceNameTaken,
    /// An API key was to be created for a disabled service account or user.
    #[error("the key's owner is disabled")]
    OwnerDisabled,
    /// A record with this key exists (e.g. a relationship store or model id reused).
    #[error("duplicate key: {0}")]
    Duplicate(String),
    /// The record refers to one that does not exist.
    #[error("dangling reference: {0}")]
    Reference(String),
}
