//! Validation and decoding of OAuth records, shared by the backends.

use serde_json::{Map, Value};
use time::OffsetDateTime;
use trustgate_core::TokenDigest;

use trustgate_store_api::StoreError;
pub(crate) use trustgate_store_api::oauth::*;

use crate::accounts::{
    MAX_JSON_BYTES, check_bytes, check_optional, json_object_text, user_not_found,
};
use crate::relationships::{check_input, json_text, normalize_time, shorten};

pub(crate) fn client_not_found(id: &str) -> StoreError {
    StoreError::NotFound(format!("client {}", shorten(id)))
}

/// A text that may be empty (a scope) but is bounded and free of NUL.
fn check_text(what: &str, value: &str, max: usize) -> Result<(), StoreError> {
    if value.len() > max {
        return Err(StoreError::InvalidInput(format!(
            "{what} is {} bytes long, at most {max} are accepted",
            value.len()
        )));
    }
    if value.contains('\0') {
        return Err(StoreError::InvalidInput(format!(
            "{what} must not contain NUL characters"
        )));
    }
    Ok(())
}

fn check_uri(what: &str, value: &str) -> Result<(), StoreError> {
    if value.is_empty() {
        return Err(StoreError::InvalidInput(format!(
            "{what} must not be empty"
        )));
    }
    check_text(what, value, MAX_TEXT_BYTES)
}

/// Checks a signing key for storage and returns its public JWK as JSON.
pub(crate) fn check_signing_key(
    key: &SigningKey,
    expected_newest: Option<&str>,
    retirement: Option<&KeyRetirement>,
) -> Result<String, StoreError> {
    check_input("key id", &key.kid)?;
    check_input("algorithm", &key.algorithm)?;
    check_optional("expected newest key id", expected_newest)?;
    check_bytes(
        "sealed private key",
        &key.sealed_private_key,
        MAX_SEALED_KEY_BYTES,
    )?;
    if let (Some(retires), Some(expires)) = (key.retires_at, key.expires_at)
        && expires < retires
    {
        return Err(StoreError::InvalidInput(
            "a key cannot leave JWKS before it stops signing".into(),
        ));
    }
    if let Some(r) = retirement
        && r.expires_at < r.retires_at
    {
        return Err(StoreError::InvalidInput(
            "a key cannot leave JWKS before it stops signing".into(),
        ));
    }
    json_object_text("public JWK", &key.public_jwk)
}

/// Checks a client for storage and returns its metadata as JSON.
pub(crate) fn check_client(client: &OAuthClient) -> Result<String, StoreError> {
    check_client_update(&client.id, &client.name, &client.metadata)
}

/// Checks a client's id, name and metadata and returns the metadata as JSON.
pub(crate) fn check_client_update(
    id: &str,
    name: &str,
    metadata: &Map<String, Value>,
) -> Result<String, StoreError> {
    check_input("client id", id)?;
    check_input("client name", name)?;
    json_object_text("client metadata", metadata)
}

/// Checks an authorization code for storage and returns its detail as JSON.
pub(crate) fn check_code(code: &AuthorizationCode) -> Result<String, StoreError> {
    check_input("client id", &code.client_id)?;
    check_input("user id", &code.user_id)?;
    check_optional("session id", code.session_id.as_deref())?;
    check_uri("redirect URI", &code.redirect_uri)?;
    check_input("grant id", &code.grant_id)?;
    json_object_text("code detail", &code.detail)
}

/// Checks a grant (and its first refresh token) for storage and returns its detail as JSON.
pub(crate) fn check_grant(
    grant: &Grant,
    refresh: Option<(&TokenDigest, &RefreshToken)>,
) -> Result<String, StoreError> {
    check_input("grant id", &grant.id)?;
    check_input("client id", &grant.client_id)?;
    check_optional("user id", grant.user_id.as_deref())?;
    check_optional("session id", grant.session_id.as_deref())?;
    check_text("scope", &grant.scope, MAX_TEXT_BYTES)?;
    if let Some((_, token)) = refresh
        && token.grant_id != grant.id
    {
        return Err(StoreError::InvalidInput(
            "the refresh token must belong to the grant being created".into(),
        ));
    }
    json_object_text("grant detail", &grant.detail)
}

/// A refresh token's expiry: never later than its grant's.
pub(crate) fn refresh_expiry(
    wanted: OffsetDateTime,
    grant_expires_at: OffsetDateTime,
) -> OffsetDateTime {
    normalize_time(wanted.min(grant_expires_at))
}

pub(crate) fn check_rotation(old: &TokenDigest, new: &TokenDigest) -> Result<(), StoreError> {
    if old == new {
        return Err(StoreError::InvalidInput(
            "the new refresh token must differ from the old one".into(),
        ));
    }
    Ok(())
}

/// Checks a consent for storage and returns its scopes as JSON.
pub(crate) fn check_consent(consent: &Consent) -> Result<String, StoreError> {
    check_input("user id", &consent.user_id)?;
    check_input("client id", &consent.client_id)?;
    let mut seen = std::collections::HashSet::new();
    for scope in &consent.scopes {
        check_input("scope", scope)?;
        if !seen.insert(scope.as_str()) {
            return Err(StoreError::InvalidInput(format!(
                "scope {} is listed twice",
                shorten(scope)
            )));
        }
    }
    json_text(
        "scopes",
        serde_json::to_string(&consent.scopes),
        MAX_JSON_BYTES,
    )
    .map_err(StoreError::InvalidInput)
}

pub(crate) fn scopes_from_text(text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("stored scopes are not a list of strings: {e}")))
}

/// The stored spelling of a device authorization's status.
pub(crate) fn device_status_str(status: DeviceStatus) -> &'static str {
    match status {
        DeviceStatus::Pending => "pending",
        DeviceStatus::Approved => "approved",
        DeviceStatus::Denied => "denied",
        DeviceStatus::Redeemed => "redeemed",
    }
}

pub(crate) fn device_status_from_db(s: &str) -> Result<DeviceStatus, StoreError> {
    match s {
        "pending" => Ok(DeviceStatus::Pending),
        "approved" => Ok(DeviceStatus::Approved),
        "denied" => Ok(DeviceStatus::Denied),
        "redeemed" => Ok(DeviceStatus::Redeemed),
        other => Err(StoreError::Corrupt(format!(
            "unknown device authorization status {other:?}"
        ))),
    }
}

/// Checks a device authorization for storage and returns its detail as JSON.
pub(crate) fn check_device_authorization(
    authorization: &DeviceAuthorization,
) -> Result<String, StoreError> {
    check_input("user code", &authorization.user_code)?;
    check_input("client id", &authorization.client_id)?;
    check_text("scope", &authorization.scope, MAX_TEXT_BYTES)?;
    if authorization.interval_secs <= 0 {
        return Err(StoreError::InvalidInput(format!(
            "poll interval must be positive, not {}",
            authorization.interval_secs
        )));
    }
    check_optional("user id", authorization.user_id.as_deref())?;
    check_optional("session id", authorization.session_id.as_deref())?;
    json_object_text("device authorization detail", &authorization.detail)
}

/// Checks a device decision and returns its detail as JSON.
pub(crate) fn check_device_decision(
    user_code: &str,
    user_id: &str,
    session_id: Option<&str>,
    detail: &Map<String, Value>,
) -> Result<String, StoreError> {
    check_input("user code", user_code)?;
    check_input("user id", user_id)?;
    check_optional("session id", session_id)?;
    json_object_text("device authorization detail", detail)
}

/// Checks a pushed request for storage and returns its parameters as JSON.
pub(crate) fn check_pushed_request(
    id: &str,
    request: &PushedRequest,
) -> Result<String, StoreError> {
    check_input("request id", id)?;
    check_input("client id", &request.client_id)?;
    json_object_text("pushed request parameters", &request.parameters)
}

/// The error when an insert referencing a client (and perhaps a user) hit a foreign key:
/// whichever does not exist.
pub(crate) fn missing_owner(
    client_id: &str,
    client_exists: bool,
    user_id: Option<&str>,
) -> StoreError {
    match user_id {
        Some(user_id) if client_exists => user_not_found(user_id),
        _ => client_not_found(client_id),
    }
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::*;

    const T0: OffsetDateTime = time::macros::datetime!(2026-11-23 10:00 UTC);

    fn grant() -> Grant {
        Grant {
            id: "g".into(),
            client_id: "c".into(),
            user_id: Some("u".into()),
            session_id: None,
            scope: "openid".into(),
            created_at: T0,
            expires_at: T0 + Duration::hours(1),
            revoked_at: None,
            detail: Map::new(),
        }
    }

    fn token(rotated_at: Option<OffsetDateTime>) -> RefreshToken {
        RefreshToken {
            grant_id: "g".into(),
            created_at: T0,
            expires_at: T0 + Duration::minutes(30),
            rotated_at,
            grace_used: false,
        }
    }

    #[test]
    fn inputs_are_checked() {
        let mut g = grant();
        g.scope = "x".repeat(MAX_TEXT_BYTES + 1);
        assert!(check_grant(&g, None).is_err());
        let t = RefreshToken {
            grant_id: "other".into(),
            ..token(None)
        };
        assert!(check_grant(&grant(), Some((&TokenDigest::of("r"), &t))).is_err());
        let consent = Consent {
            user_id: "u".into(),
            client_id: "c".into(),
            scopes: vec!["a".into(), "a".into()],
            created_at: T0,
            updated_at: T0,
        };
        assert!(check_consent(&consent).is_err());
        let d = TokenDigest::of("x");
        assert!(check_rotation(&d, &d).is_err());
        assert!(check_rotation(&d, &TokenDigest::of("y")).is_ok());
        assert_eq!(refresh_expiry(T0 + Duration::hours(2), T0), T0);
    }
}
