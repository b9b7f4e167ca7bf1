//! Validation and decoding of account records, shared by the backends.

use serde_json::{Map, Value};
use time::OffsetDateTime;
use trustgate_core::TokenDigest;

pub(crate) use trustgate_store_api::accounts::*;
use trustgate_store_api::{Conflict, StoreError};

use crate::relationships::{MAX_FIELD_BYTES, check_input, json_text};

/// The form under which usernames and emails are compared and indexed. Computed here, not by
/// the database, so that both backends agree whatever their collation (SQLite's `lower()` only
/// folds ASCII).
pub(crate) fn login_key(s: &str) -> String {
    s.to_lowercase()
}

pub(crate) fn user_not_found(id: &str) -> StoreError {
    StoreError::NotFound(format!("user {}", crate::relationships::shorten(id)))
}

pub(crate) fn check_optional(what: &str, value: Option<&str>) -> Result<(), StoreError> {
    value.map_or(Ok(()), |v| check_input(what, v))
}

pub(crate) fn check_bytes(what: &str, value: &[u8], max: usize) -> Result<(), StoreError> {
    if value.is_empty() {
        return Err(StoreError::InvalidInput(format!(
            "{what} must not be empty"
        )));
    }
    if value.len() > max {
        return Err(StoreError::InvalidInput(format!(
            "{what} is {} bytes long, at most {max} are accepted",
            value.len()
        )));
    }
    Ok(())
}

pub(crate) fn json_object_text(
    what: &str,
    value: &Map<String, Value>,
) -> Result<String, StoreError> {
    json_text(what, serde_json::to_string(value), MAX_JSON_BYTES).map_err(StoreError::InvalidInput)
}

/// A [`NewUser`] checked for storage, with its derived columns.
#[derive(Debug)]
pub(crate) struct CheckedUser {
    pub username_key: String,
    pub email_key: String,
    pub attributes: String,
}

pub(crate) fn check_new_user(user: &NewUser) -> Result<CheckedUser, StoreError> {
    check_input("user id", &user.id)?;
    check_input("username", &user.username)?;
    check_input("email", &user.email)?;
    check_optional("name", user.name.as_deref())?;
    check_optional("locale", user.locale.as_deref())?;
    check_optional("password hash", user.password_hash.as_deref())?;
    Ok(CheckedUser {
        username_key: login_key(&user.username),
        email_key: login_key(&user.email),
        attributes: json_object_text("attributes", &user.attributes)?,
    })
}

/// The user as [`UserStore::create_user`] stored it.
pub(crate) fn created_user(user: &NewUser, now: OffsetDateTime) -> User {
    User {
        id: user.id.clone(),
        username: user.username.clone(),
        email: user.email.clone(),
        email_verified: false,
        name: user.name.clone(),
        locale: user.locale.clone(),
        attributes: user.attributes.clone(),
        status: UserStatus::Active,
        created_at: now,
        updated_at: now,
    }
}

pub(crate) fn check_update(update: &UserUpdate) -> Result<(), StoreError> {
    check_optional("email", update.email.as_deref())?;
    check_optional("name", update.name.as_ref().and_then(Option::as_deref))?;
    check_optional("locale", update.locale.as_ref().and_then(Option::as_deref))?;
    if let Some(attributes) = &update.attributes {
        json_object_text("attributes", attributes)?;
    }
    Ok(())
}

/// Applies `update` to `user`. Returns the new email key if the email changed (other than in
/// case), which must then be checked for conflicts.
pub(crate) fn apply_update(
    user: &mut User,
    update: &UserUpdate,
    now: OffsetDateTime,
) -> Option<String> {
    let mut new_key = None;
    if let Some(email) = &update.email {
        let key = login_key(email);
        if key != login_key(&user.email) {
            user.email_verified = false;
            new_key = Some(key);
        }
        user.email.clone_from(email);
    }
    if let Some(verified) = update.email_verified {
        user.email_verified = verified;
    }
    if let Some(name) = &update.name {
        user.name.clone_from(name);
    }
    if let Some(locale) = &update.locale {
        user.locale.clone_from(locale);
    }
    if let Some(attributes) = &update.attributes {
        user.attributes.clone_from(attributes);
    }
    user.updated_at = now;
    new_key
}

pub(crate) fn attributes_text(user: &User) -> Result<String, StoreError> {
    json_object_text("attributes", &user.attributes)
}

pub(crate) fn object_from_text(what: &str, text: &str) -> Result<Map<String, Value>, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("stored {what} is not a JSON object: {e}")))
}

pub(crate) fn status_from_db(s: &str) -> Result<UserStatus, StoreError> {
    UserStatus::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown user status {s:?}")))
}

/// Whether a user with this stored status (`None`: no such user) may get a new session.
pub(crate) fn require_active(user_id: &str, status: Option<&str>) -> Result<(), StoreError> {
    match status.map(status_from_db).transpose()? {
        None => Err(user_not_found(user_id)),
        Some(UserStatus::Disabled) => Err(StoreError::Conflict(Conflict::UserDisabled)),
        Some(UserStatus::Active) => Ok(()),
    }
}

/// Checks a session for storage and returns its `amr` as JSON.
pub(crate) fn check_session(session: &Session) -> Result<String, StoreError> {
    check_input("session id", &session.id)?;
    check_input("user id", &session.user_id)?;
    if session.acr.len() > MAX_FIELD_BYTES || session.acr.contains('\0') {
        return Err(StoreError::InvalidInput(
            "acr is too long or contains NUL characters".into(),
        ));
    }
    if session.amr.len() > MAX_AMR {
        return Err(StoreError::InvalidInput(format!(
            "at most {MAX_AMR} authentication methods are accepted"
        )));
    }
    for method in &session.amr {
        check_input("authentication method", method)?;
    }
    check_optional("ip", session.ip.as_deref())?;
    check_optional("user agent", session.user_agent.as_deref())?;
    json_text("amr", serde_json::to_string(&session.amr), MAX_JSON_BYTES)
        .map_err(StoreError::InvalidInput)
}

pub(crate) fn amr_from_text(text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("stored amr is not a list of strings: {e}")))
}

pub(crate) fn check_sealed_secret(secret: &[u8]) -> Result<(), StoreError> {
    check_bytes("sealed TOTP secret", secret, MAX_KEY_BYTES)
}

/// Refuses too many or repeated recovery codes.
pub(crate) fn check_recovery_codes(digests: &[TokenDigest]) -> Result<(), StoreError> {
    if digests.len() > MAX_RECOVERY_CODES {
        return Err(StoreError::InvalidInput(format!(
            "at most {MAX_RECOVERY_CODES} recovery codes are accepted"
        )));
    }
    let distinct: std::collections::HashSet<&[u8; 32]> =
        digests.iter().map(TokenDigest::as_bytes).collect();
    if distinct.len() != digests.len() {
        return Err(StoreError::InvalidInput(
            "recovery codes must be distinct".into(),
        ));
    }
    Ok(())
}

pub(crate) fn check_credential_id(id: &[u8]) -> Result<(), StoreError> {
    check_bytes("passkey credential id", id, MAX_CREDENTIAL_ID_BYTES)
}

pub(crate) fn check_sign_count(count: i64) -> Result<(), StoreError> {
    if (0..=i64::from(u32::MAX)).contains(&count) {
        Ok(())
    } else {
        Err(StoreError::InvalidInput(format!(
            "signature counter {count} is outside 0..=2^32-1"
        )))
    }
}

/// Checks a passkey for storage and returns its metadata as JSON.
pub(crate) fn check_passkey(passkey: &Passkey) -> Result<String, StoreError> {
    check_credential_id(&passkey.credential_id)?;
    check_input("user id", &passkey.user_id)?;
    check_input("passkey name", &passkey.name)?;
    check_bytes("passkey public key", &passkey.public_key, MAX_KEY_BYTES)?;
    check_sign_count(passkey.sign_count)?;
    json_object_text("passkey metadata", &passkey.metadata)
}

/// Checks an audit event for storage and returns its detail as JSON.
pub(crate) fn check_audit_event(event: &AuditEvent) -> Result<String, StoreError> {
    check_input("audit event id", &event.id)?;
    check_input("audit event kind", &event.kind)?;
    if !AUDIT_OUTCOMES.contains(&event.outcome.as_str()) {
        return Err(StoreError::InvalidInput(format!(
            "audit outcome must be one of {AUDIT_OUTCOMES:?}"
        )));
    }
    check_optional("actor", event.actor.as_deref())?;
    check_optional("user id", event.user_id.as_deref())?;
    check_optional("ip", event.ip.as_deref())?;
    check_optional("user agent", event.user_agent.as_deref())?;
    check_optional("request id", event.request_id.as_deref())?;
    check_optional("resource", event.resource.as_deref())?;
    json_object_text("audit detail", &event.detail)
}

pub(crate) fn check_audit_filter(filter: &AuditFilter) -> Result<(), StoreError> {
    check_optional("user id", filter.user_id.as_deref())?;
    check_optional("kind", filter.kind.as_deref())?;
    check_optional("actor", filter.actor.as_deref())?;
    check_optional("resource", filter.resource.as_deref())?;
    check_optional("before", filter.before.as_deref())?;
    if let Some(outcome) = &filter.outcome
        && !AUDIT_OUTCOMES.contains(&outcome.as_str())
    {
        return Err(StoreError::InvalidInput(format!(
            "audit outcome must be one of {AUDIT_OUTCOMES:?}"
        )));
    }
    match (filter.after_seq, filter.chain) {
        (Some(_), None) => Err(StoreError::InvalidInput(
            "listing after a chain position needs the chain".into(),
        )),
        (Some(seq), Some(_)) if seq < 0 => Err(StoreError::InvalidInput(
            "chain positions are not negative".into(),
        )),
        (Some(_), Some(_)) if filter.before.is_some() => Err(StoreError::InvalidInput(
            "list either before an id or after a chain position, not both".into(),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_keys_fold_unicode_case() {
        assert_eq!(login_key("Ärger@Example.COM"), "ärger@example.com");
    }

    #[test]
    fn email_change_resets_verification_unless_only_case_changes() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let mut user = created_user(
            &NewUser {
                id: "u".into(),
                username: "ann".into(),
                email: "ann@example.com".into(),
                name: None,
                locale: None,
                attributes: Map::new(),
                password_hash: None,
            },
            now,
        );
        user.email_verified = true;
        let case_only = UserUpdate {
            email: Some("Ann@Example.com".into()),
            ..UserUpdate::default()
        };
        assert_eq!(apply_update(&mut user, &case_only, now), None);
        assert!(user.email_verified);
        let other = UserUpdate {
            email: Some("ann@example.org".into()),
            ..UserUpdate::default()
        };
        assert_eq!(
            apply_update(&mut user, &other, now).as_deref(),
            Some("ann@example.org")
        );
        assert!(!user.email_verified);
        let verified_too = UserUpdate {
            email: Some("ann@example.net".into()),
            email_verified: Some(true),
            ..UserUpdate::default()
        };
        assert!(apply_update(&mut user, &verified_too, now).is_some());
        assert!(user.email_verified);
    }

    #[test]
    fn inputs_are_checked() {
        assert!(check_recovery_codes(&[TokenDigest::of("a"), TokenDigest::of("a")]).is_err());
        assert!(check_recovery_codes(&[TokenDigest::of("a"), TokenDigest::of("b")]).is_ok());
        assert!(check_sign_count(-1).is_err());
        assert!(check_sign_count(i64::from(u32::MAX) + 1).is_err());
        assert!(check_credential_id(&[]).is_err());
        assert!(check_credential_id(&[0; MAX_CREDENTIAL_ID_BYTES + 1]).is_err());
    }
}
