//! What an authorization code's and a grant's `detail` objects hold.

use serde_json::{Map, Value, json};

use super::EndUser;

/// Field names of an authorization code's `detail`.
pub(super) const SCOPE: &str = "scope";
pub(super) const NONCE: &str = "nonce";
pub(super) const CODE_CHALLENGE: &str = "code_challenge";
pub(super) const AUTH_TIME: &str = "auth_time";
pub(super) const AMR: &str = "amr";
pub(super) const ACR: &str = "acr";

/// The authentication facts a grant carries into its tokens.
#[derive(Debug, Clone, Default)]
pub(super) struct AuthFacts {
    pub(super) auth_time: Option<i64>,
    pub(super) amr: Option<Vec<String>>,
    pub(super) acr: Option<String>,
}

impl AuthFacts {
    pub(super) fn of_user(user: &EndUser) -> Self {
        Self {
            auth_time: Some(user.auth_time.unix_timestamp()),
            amr: Some(user.amr.clone()),
            acr: Some(user.acr.clone()),
        }
    }

    pub(super) fn from_detail(detail: &Map<String, Value>) -> Self {
        Self {
            auth_time: detail.get(AUTH_TIME).and_then(Value::as_i64),
            amr: detail.get(AMR).and_then(|v| {
                v.as_array().map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
            }),
            acr: detail.get(ACR).and_then(Value::as_str).map(str::to_owned),
        }
    }

    pub(super) fn write(&self, detail: &mut Map<String, Value>) {
        if let Some(t) = self.auth_time {
            detail.insert(AUTH_TIME.into(), json!(t));
        }
        if let Some(amr) = &self.amr {
            detail.insert(AMR.into(), json!(amr));
        }
        if let Some(acr) = &self.acr {
            detail.insert(ACR.into(), json!(acr));
        }
    }
}
