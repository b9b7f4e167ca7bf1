//! [`PdpError`]: why a PDP operation did not answer.
//!
//! One variant per OpenFGA error code the service can produce, so a transport maps them 1:1
//! (the OpenFGA HTTP API: 400 for the input errors, 404 for [`PdpError::StoreNotFound`], 503 for
//! [`PdpError::Unavailable`], 500 for [`PdpError::Internal`]). Each carries the human message
//! OpenFGA's server uses; [`PdpError::Internal`] and [`PdpError::Unavailable`] keep their cause
//! as the error source, for logs only.

use trustgate_authz::engine::{EngineError, ErrorCode};
use trustgate_store_api::{Outage, StoreError, TupleWriteError};

/// A boxed cause of an internal error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a PDP operation failed. Nothing was written, and no decision is an allow.
#[derive(Debug, thiserror::Error)]
pub enum PdpError {
    /// `validation_error`: the request is malformed or cannot be evaluated.
    #[error("{0}")]
    Validation(String),
    /// `type_not_found`: a type the request names is not in the model.
    #[error("{0}")]
    TypeNotFound(String),
    /// `relation_not_found`: a relation the request names is not in the model.
    #[error("{0}")]
    RelationNotFound(String),
    /// `invalid_tuple`: a written, deleted or contextual tuple does not fit the model or is
    /// malformed.
    #[error("{0}")]
    InvalidTuple(String),
    /// `authorization_model_resolution_too_complex`: evaluation went deeper than the engine's
    /// resolution limit.
    #[error("{0}")]
    ResolutionTooComplex(String),
    /// `authorization_model_not_found`: the named model is not a model of the store.
    #[error("Authorization Model '{0}' not found")]
    ModelNotFound(String),
    /// `latest_authorization_model_not_found`: the store has no model yet.
    #[error("No authorization models found for store '{0}'")]
    LatestModelNotFound(String),
    /// `invalid_continuation_token`: a paging token this service did not issue for this call.
    #[error("Invalid continuation token")]
    InvalidContinuationToken,
    /// `cannot_allow_duplicate_tuples_in_one_request`: one tuple twice in one write.
    #[error("{0}")]
    DuplicateTuplesInRequest(String),
    /// `write_failed_due_to_invalid_input`: a written tuple exists (or exists with another
    /// condition), or a deleted one does not.
    #[error("{0}")]
    WriteFailedDueToInvalidInput(String),
    /// `invalid_write_input`: a write with neither writes nor deletes.
    #[error("Invalid input. Make sure you provide at least one write or delete")]
    InvalidWriteInput,
    /// `exceeded_entity_limit`: more tuples, checks, types or results than allowed.
    #[error("{0}")]
    ExceededEntityLimit(String),
    /// `invalid_authorization_model`: a model that does not validate.
    #[error("{0}")]
    InvalidModel(String),
    /// `store_id_not_found`: the store does not exist or was deleted.
    #[error("Store ID not found")]
    StoreNotFound,
    /// The database cannot serve right now (down, restarting, storage full, read-only; see
    /// [`StoreError::outage`]); retrying later may succeed. Nothing was decided or written.
    #[error("{}", .0.outage().map_or("the database is unavailable; retry later", Outage::message))]
    Unavailable(#[source] StoreError),
    /// Anything else: a bug or corrupt data. The cause is for the log, not for the caller.
    #[error("internal error: {0}")]
    Internal(#[source] BoxError),
}

impl PdpError {
    /// An internal error with `cause`.
    pub fn internal(cause: impl Into<BoxError>) -> Self {
        PdpError::Internal(cause.into())
    }

    /// [`PdpError::ExceededEntityLimit`] for `entity` over `limit`.
    pub(crate) fn exceeded(entity: &str, limit: usize) -> Self {
        PdpError::ExceededEntityLimit(format!(
            "The number of {entity} exceeds the allowed limit of {limit}"
        ))
    }
}

impl From<EngineError> for PdpError {
    fn from(err: EngineError) -> Self {
        match err.code() {
            ErrorCode::ValidationError => PdpError::Validation(err.to_string()),
            ErrorCode::AuthorizationModelResolutionTooComplex => {
                PdpError::ResolutionTooComplex(err.to_string())
            }
            ErrorCode::TypeNotFound => PdpError::TypeNotFound(err.to_string()),
            ErrorCode::RelationNotFound => PdpError::RelationNotFound(err.to_string()),
            ErrorCode::InvalidTuple => PdpError::InvalidTuple(err.to_string()),
            ErrorCode::InternalError => PdpError::Internal(Box::new(err)),
        }
    }
}

impl From<StoreError> for PdpError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(_) => PdpError::StoreNotFound,
            StoreError::InvalidContinuationToken => PdpError::InvalidContinuationToken,
            StoreError::InvalidInput(m) => PdpError::Validation(m),
            e if e.outage().is_some() => PdpError::Unavailable(e),
            other => PdpError::Internal(Box::new(other)),
        }
    }
}

impl From<TupleWriteError> for PdpError {
    fn from(err: TupleWriteError) -> Self {
        match err {
            TupleWriteError::StoreNotFound(_) => PdpError::StoreNotFound,
            TupleWriteError::InvalidInput(_) => PdpError::InvalidTuple(err.to_string()),
            TupleWriteError::DuplicateInRequest { .. } => {
                PdpError::DuplicateTuplesInRequest(err.to_string())
            }
            TupleWriteError::AlreadyExists { .. }
            | TupleWriteError::ConditionConflict { .. }
            | TupleWriteError::DoesNotExist { .. } => {
                PdpError::WriteFailedDueToInvalidInput(err.to_string())
            }
            TupleWriteError::Store(e) => e.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_keep_their_code_and_message() {
        let e = PdpError::from(EngineError::TypeNotFound("doc".into()));
        assert!(matches!(&e, PdpError::TypeNotFound(m) if m == "type 'doc' not found"));
        let e = PdpError::from(EngineError::Read("disk".into()));
        assert!(matches!(e, PdpError::Internal(_)));
        let e = PdpError::from(StoreError::NotFound("s".into()));
        assert!(matches!(e, PdpError::StoreNotFound));
    }

    /// A database that cannot serve is never a decision nor an internal error.
    #[test]
    fn outages_are_unavailable_with_their_own_message() {
        let e = PdpError::from(StoreError::StorageFull("disk".into()));
        assert!(matches!(e, PdpError::Unavailable(_)), "{e:?}");
        assert!(e.to_string().contains("no storage left"), "{e}");
        let e = PdpError::from(StoreError::ReadOnly("ro".into()));
        assert!(e.to_string().contains("read-only"), "{e}");
        let e = PdpError::from(StoreError::Unavailable("down".into()));
        assert_eq!(e.to_string(), "the database is unavailable; retry later");
        let e = PdpError::from(StoreError::Database("boom".into()));
        assert!(matches!(e, PdpError::Internal(_)), "{e:?}");
    }
}
