//! What trustgate knows about the parties of a request, beyond what the request says: the
//! stored attributes of their objects, the directory entries of those that are trustgate
//! users, and the subject's authentication context from `X-Subject-Token`. Read here, merged
//! by [`trustgate_pdp::attributes`] (the one merge, with its precedence).
//!
//! A party is a trustgate user when its type is the store's user type
//! ([`crate::config::AuthzenConfig::user_type`], `user` by default) and its id is a user's id
//! (the `sub` of the user's tokens). Its directory entry is read only for a store the
//! configuration opens the directory to ([`crate::config::AuthzenConfig::directory`], off by
//! default): the directory is trustgate's, and a store's model is its tenant's.
//!
//! `X-Subject-Token` carries an access token this trustgate issued to the subject (the token
//! the PEP received with the request it is deciding on). It is verified as introspection
//! verifies our tokens
//! ([`trustgate_oauth::provider::Provider::verify_subject_token`]) and never reaches
//! conditions, logs or answers: conditions see only its `amr`, `acr`, `auth_time`,
//! `client_id` and `scope`. A token that is not live, or that was issued to someone other
//! than the evaluated subject, makes that evaluation an error (`decision: false`), never an
//! allow.

use std::collections::HashMap;

use serde_json::{Map, Value};
use trustgate_core::Secret;
use trustgate_oauth::ErrorCode;
use trustgate_pdp::attributes::{Authentication, Known, Party};

use super::{Call, pdp_error};
use crate::AppState;
use crate::error::ApiError;

/// The header carrying the subject's access token.
pub const SUBJECT_TOKEN_HEADER: &str = "x-subject-token";

/// Why a subject token cannot be used for an evaluation: the status, code and message of its
/// error.
pub type Refusal = (u16, &'static str, String);

/// The subject token of a call, verified.
#[derive(Debug)]
pub enum SubjectToken {
    /// The call has none.
    Absent,
    /// A live access token of `sub`, with its authentication context.
    Live {
        /// The user it was issued to.
        sub: String,
        /// Its context as properties ([`Authentication::properties`]).
        context: Map<String, Value>,
    },
    /// Invalid, expired, revoked, or not a user's access token of this trustgate.
    Invalid,
}

impl SubjectToken {
    /// Verifies the call's token, if it has one. `Err` only when the database cannot answer.
    pub async fn verify(state: &AppState, token: Option<&Secret>) -> Result<Self, ApiError> {
        let Some(token) = token else {
            return Ok(SubjectToken::Absent);
        };
        match state.oauth.verify_subject_token(token.expose()).await {
            Ok(Some(claims)) => {
                let context = Authentication {
                    amr: claims.amr.as_deref(),
                    acr: claims.acr.as_deref(),
                    auth_time: claims.auth_time,
                    client_id: &claims.client_id,
                    scope: claims.scope.as_deref(),
                }
                .properties();
                Ok(SubjectToken::Live {
                    sub: claims.sub,
                    context,
                })
            }
            Ok(None) => Ok(SubjectToken::Invalid),
            Err(e) if e.code == ErrorCode::TemporarilyUnavailable => {
                Err(ApiError::unavailable(e.description))
            }
            Err(e) => Err(ApiError::internal(e)),
        }
    }

    /// The authentication context for an evaluation of `subject` (`None` without a token),
    /// or why the token cannot be used for it.
    pub fn context_for(
        &self,
        user_type: &str,
        subject: &Party<'_>,
    ) -> Result<Option<&Map<String, Value>>, Refusal> {
        match self {
            SubjectToken::Absent => Ok(None),
            SubjectToken::Invalid => Err((
                400,
                "invalid_subject_token",
                "X-Subject-Token is not a live access token that this trustgate issued to a \
                 user (invalid, expired or revoked)"
                    .to_owned(),
            )),
            SubjectToken::Live { sub, context } => {
                if subject.party_type == user_type && subject.id == Some(sub.as_str()) {
                    Ok(Some(context))
                } else {
                    Err((
                        400,
                        "subject_token_mismatch",
                        format!(
                            "X-Subject-Token was not issued to the subject {}:{}",
                            crate::fga::shorten(subject.party_type),
                            crate::fga::shorten(subject.id.unwrap_or_default())
                        ),
                    ))
                }
            }
        }
    }
}

/// The stored attributes and directory entries of a request's parties.
#[derive(Debug)]
pub struct Knowledge<'a> {
    user_type: &'a str,
    stored: HashMap<String, Map<String, Value>>,
    directory: HashMap<String, Map<String, Value>>,
}

impl<'a> Knowledge<'a> {
    /// Reads what is known about those of `parties` that have an id, in one read per source,
    /// as fresh as the call asks.
    pub async fn read(
        state: &'a AppState,
        call: &Call,
        parties: &[Party<'_>],
    ) -> Result<Self, ApiError> {
        let user_type = state.config.authzen.user_type(&call.store_id);
        let objects: Vec<String> = parties
            .iter()
            .filter_map(|p| Some(format!("{}:{}", p.party_type, p.id?)))
            .collect();
        let objects: Vec<&str> = objects.iter().map(String::as_str).collect();
        // The directory only where the configuration lets this store read it.
        let users: Vec<&str> = if state.config.authzen.directory(&call.store_id) {
            parties
                .iter()
                .filter(|p| p.party_type == user_type)
                .filter_map(|p| p.id)
                .collect()
        } else {
            Vec::new()
        };
        let freshness = call.scope().freshness;
        let stored = if objects.is_empty() {
            HashMap::new()
        } else {
            state
                .pdp
                .stored_attributes(&call.store_id, &objects, freshness)
                .await
                .map_err(pdp_error)?
        };
        let directory = if users.is_empty() {
            HashMap::new()
        } else {
            state
                .pdp
                .directory_attributes(&users, freshness)
                .await
                .map_err(pdp_error)?
        };
        Ok(Knowledge {
            user_type,
            stored,
            directory,
        })
    }

    /// What is known about `party`.
    pub fn of(&self, party: &Party<'_>) -> Known<'_> {
        let Some(id) = party.id else {
            return Known::default();
        };
        Known {
            stored: self.stored.get(&format!("{}:{id}", party.party_type)),
            directory: (party.party_type == self.user_type)
                .then(|| self.directory.get(id))
                .flatten(),
        }
    }
}
