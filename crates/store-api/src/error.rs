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
