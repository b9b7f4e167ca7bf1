//! Engine errors, each with the OpenFGA error code the HTTP layer puts on the wire.

use thiserror::Error;

/// OpenFGA's error codes for the errors the engine can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 2000: the request is malformed or cannot be evaluated (bad user string, condition
    /// missing parameters, ...).
    ValidationError,
    /// 2002: resolution went deeper than [`super::MAX_RESOLUTION_DEPTH`].
    AuthorizationModelResolutionTooComplex,
    /// 2021: a type the request names is not in the model.
    TypeNotFound,
    /// 2022: a relation the request names is not in the model.
    RelationNotFound,
    /// 2027: a (contextual or written) tuple does not fit the model.
    InvalidTuple,
    /// 4000: the tuple reader failed.
    InternalError,
}

impl ErrorCode {
    /// The numeric code (`2000`, `2002`, ...).
    pub fn number(self) -> u32 {
        match self {
            ErrorCode::ValidationError => 2000,
            ErrorCode::AuthorizationModelResolutionTooComplex => 2002,
            ErrorCode::TypeNotFound => 2021,
            ErrorCode::RelationNotFound => 2022,
            ErrorCode::InvalidTuple => 2027,
            ErrorCode::InternalError => 4000,
        }
    }

    /// The code's name as OpenFGA spells it in JSON error bodies.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::ValidationError => "validation_error",
            ErrorCode::AuthorizationModelResolutionTooComplex => {
                "authorization_model_resolution_too_complex"
            }
            ErrorCode::TypeNotFound => "type_not_found",
            ErrorCode::RelationNotFound => "relation_not_found",
            ErrorCode::InvalidTuple => "invalid_tuple",
            ErrorCode::InternalError => "internal_error",
        }
    }
}

/// An evaluation or validation error. The message follows OpenFGA's wording.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EngineError {
    /// A malformed or unevaluable request (2000).
    #[error("{0}")]
    Validation(String),
    /// Resolution depth exceeded (2002).
    #[error(
        "Authorization Model resolution required too many rewrite rules to be resolved. Try simplifying the Authorization Model."
    )]
    ResolutionTooComplex,
    /// An unknown type (2021).
    #[error("type '{0}' not found")]
    TypeNotFound(String),
    /// An unknown relation on a known type (2022).
    #[error("relation '{type_name}#{relation}' not found")]
    RelationNotFound {
        /// The type the relation was looked up on.
        type_name: String,
        /// The relation name.
        relation: String,
    },
    /// A tuple that does not fit the model (2027).
    #[error("Invalid tuple '{tuple}'. Reason: {reason}")]
    InvalidTuple {
        /// The tuple as `object#relation@user`.
        tuple: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The tuple reader failed (4000).
    #[error("internal error: {0}")]
    Read(String),
}

impl EngineError {
    /// The OpenFGA error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            EngineError::Validation(_) => ErrorCode::ValidationError,
            EngineError::ResolutionTooComplex => ErrorCode::AuthorizationModelResolutionTooComplex,
            EngineError::TypeNotFound(_) => ErrorCode::TypeNotFound,
            EngineError::RelationNotFound { .. } => ErrorCode::RelationNotFound,
            EngineError::InvalidTuple { .. } => ErrorCode::InvalidTuple,
            EngineError::Read(_) => ErrorCode::InternalError,
        }
    }

    /// Re-labels a validation failure of a request's own field as OpenFGA's Check does: every
    /// problem with the checked tuple is a `validation_error` (2000), whatever its cause.
    pub(crate) fn into_validation(self) -> EngineError {
        match self {
            EngineError::Validation(_)
            | EngineError::ResolutionTooComplex
            | EngineError::Read(_) => self,
            other => EngineError::Validation(other.to_string()),
        }
    }

    /// Re-labels a contextual tuple's validation failure: OpenFGA reports every such problem as
    /// `invalid_tuple` (2027).
    pub(crate) fn into_invalid_tuple(self, tuple: String) -> EngineError {
        match self {
            EngineError::InvalidTuple { .. } | EngineError::Read(_) => self,
            other => EngineError::InvalidTuple {
                tuple,
                reason: other.to_string(),
            },
        }
    }
}
