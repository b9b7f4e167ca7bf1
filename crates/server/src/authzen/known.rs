//! What trustgate knows about the parties of a request, beyond what the request says: the
//! stored attributes of their objects and the directory entries of those that are trustgate
//! users. Read here, merged by [`trustgate_pdp::attributes`] (the one merge, with its
//! precedence).
//!
//! A party is a trustgate user when its type is the store's user type
//! ([`crate::config::AuthzenConfig::user_type`], `user` by default) and its id is a user's id
//! (the `sub` of the user's tokens).

use std::collections::HashMap;

use serde_json::{Map, Value};
use trustgate_pdp::attributes::{Known, Party};

use super::{Call, pdp_error};
use crate::AppState;
use crate::error::ApiError;

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
        let users: Vec<&str> = parties
            .iter()
            .filter(|p| p.party_type == user_type)
            .filter_map(|p| p.id)
            .collect();
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
