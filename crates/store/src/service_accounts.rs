//! Validation and decoding of service accounts and API keys, shared by the backends.

use trustgate_store_api::StoreError;
pub(crate) use trustgate_store_api::service_accounts::*;

use crate::accounts::check_optional;
use crate::relationships::{check_input, json_text};

/// The longest description of an account or key, in characters.
pub(crate) const MAX_DESCRIPTION_CHARS: usize = 1024;
/// The most scopes a key may carry.
pub(crate) const MAX_SCOPES: usize = 64;
/// The longest scope, in characters.
pub(crate) const MAX_SCOPE_CHARS: usize = 256;
/// The most uses one `record_api_key_uses` call takes.
pub(crate) const MAX_KEY_USES: usize = 10_000;

/// Text that may be empty but not longer than `max` characters nor contain NUL.
fn check_text(what: &str, value: &str, max: usize) -> Result<(), StoreError> {
    if value.chars().count() > max {
        return Err(StoreError::InvalidInput(format!(
            "{what} is longer than {max} characters"
        )));
    }
    if value.contains('\0') {
        return Err(StoreError::InvalidInput(format!(
            "{what} must not contain NUL characters"
        )));
    }
    Ok(())
}

pub(crate) fn check_new_account(account: &NewServiceAccount<'_>) -> Result<(), StoreError> {
    check_input("service account id", account.id)?;
    check_input("service account name", account.name)?;
    check_optional("service account owner", account.owner)?;
    check_text(
        "service account description",
        account.description,
        MAX_DESCRIPTION_CHARS,
    )
}

/// Checks a key for storage and returns its scopes as JSON.
pub(crate) fn check_new_key(key: &NewApiKey<'_>) -> Result<String, StoreError> {
    check_input("API key id", key.id)?;
    check_text(
        "API key description",
        key.description,
        MAX_DESCRIPTION_CHARS,
    )?;
    if key.rate_limit_per_minute == Some(0) {
        return Err(StoreError::InvalidInput(
            "a rate limit must allow at least one request per minute".into(),
        ));
    }
    scopes_text(key.scopes)
}

/// The scopes as a JSON array, after checking their number and sizes.
pub(crate) fn scopes_text(scopes: &[String]) -> Result<String, StoreError> {
    if scopes.len() > MAX_SCOPES {
        return Err(StoreError::InvalidInput(format!(
            "at most {MAX_SCOPES} scopes are accepted"
        )));
    }
    for scope in scopes {
        check_input("scope", scope)?;
        check_text("scope", scope, MAX_SCOPE_CHARS)?;
    }
    json_text("scopes", serde_json::to_string(scopes), usize::MAX).map_err(StoreError::InvalidInput)
}

pub(crate) fn scopes_from_text(text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|e| {
        StoreError::Corrupt(format!(
            "stored API key scopes are not a list of strings: {e}"
        ))
    })
}

pub(crate) fn check_owner(owner: &KeyOwner) -> Result<(), StoreError> {
    match owner {
        KeyOwner::Service(id) => check_input("service account id", id),
        KeyOwner::User(id) => check_input("user id", id),
    }
}

/// The owner of a stored key from its two owner columns (exactly one is set).
pub(crate) fn owner_from_db(
    service_account_id: Option<String>,
    user_id: Option<String>,
) -> Result<KeyOwner, StoreError> {
    match (service_account_id, user_id) {
        (Some(id), None) => Ok(KeyOwner::Service(id)),
        (None, Some(id)) => Ok(KeyOwner::User(id)),
        _ => Err(StoreError::Corrupt(
            "an API key has not exactly one owner".into(),
        )),
    }
}

/// A stored rate limit (the schema keeps it positive).
pub(crate) fn rate_limit_from_db(value: Option<i64>) -> Result<Option<u32>, StoreError> {
    value
        .map(|v| {
            u32::try_from(v)
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| StoreError::Corrupt(format!("stored rate limit {v} is invalid")))
        })
        .transpose()
}

pub(crate) fn check_key_uses(uses: &[KeyUse]) -> Result<(), StoreError> {
    if uses.len() > MAX_KEY_USES {
        return Err(StoreError::InvalidInput(format!(
            "at most {MAX_KEY_USES} key uses are recorded at once"
        )));
    }
    for used in uses {
        check_input("API key id", &used.key_id)?;
        check_optional("ip", used.ip.as_deref())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use trustgate_core::TokenDigest;

    #[test]
    fn keys_are_checked() {
        let digest = TokenDigest::of("k");
        let scopes = vec!["admin".to_owned()];
        let key = NewApiKey {
            id: "K1",
            digest: &digest,
            description: "d",
            scopes: &scopes,
            rate_limit_per_minute: Some(10),
            expires_at: None,
        };
        assert_eq!(check_new_key(&key).ok().as_deref(), Some(r#"["admin"]"#));
        let long = "x".repeat(MAX_DESCRIPTION_CHARS + 1);
        let too_many: Vec<String> = (0..=MAX_SCOPES).map(|i| format!("s{i}")).collect();
        let long_scope = vec!["s".repeat(MAX_SCOPE_CHARS + 1)];
        let empty_scope = vec![String::new()];
        for bad in [
            NewApiKey { id: "", ..key },
            NewApiKey {
                description: &long,
                ..key
            },
            NewApiKey {
                rate_limit_per_minute: Some(0),
                ..key
            },
            NewApiKey {
                scopes: &too_many,
                ..key
            },
            NewApiKey {
                scopes: &long_scope,
                ..key
            },
            NewApiKey {
                scopes: &empty_scope,
                ..key
            },
        ] {
            assert!(
                matches!(check_new_key(&bad), Err(StoreError::InvalidInput(_))),
                "{bad:?}"
            );
        }
        // The limits are in characters, not bytes.
        let accented = "é".repeat(MAX_DESCRIPTION_CHARS);
        assert!(
            check_new_key(&NewApiKey {
                description: &accented,
                ..key
            })
            .is_ok()
        );
    }

    #[test]
    fn owners_decode() {
        assert_eq!(
            owner_from_db(Some("a".into()), None).ok(),
            Some(KeyOwner::Service("a".into()))
        );
        assert_eq!(
            owner_from_db(None, Some("u".into())).ok(),
            Some(KeyOwner::User("u".into()))
        );
        assert!(owner_from_db(None, None).is_err());
        assert!(rate_limit_from_db(Some(0)).is_err());
        assert_eq!(rate_limit_from_db(Some(60)).ok(), Some(Some(60)));
    }
}
