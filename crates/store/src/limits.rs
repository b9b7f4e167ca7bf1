//! Validation of attempt-counter kinds and nonce purposes, shared by the backends.

use trustgate_store_api::StoreError;
pub(crate) use trustgate_store_api::limits::*;

/// A `kind` or `purpose`: 1 to [`MAX_LIMIT_KIND_BYTES`] bytes of `a-z`, `0-9`, `-`, `_`, `:`.
/// These are constants of the callers, so anything else is a programming error, refused before
/// it reaches the database.
pub(crate) fn check_kind(what: &str, value: &str) -> Result<(), StoreError> {
    let valid = !value.is_empty()
        && value.len() <= MAX_LIMIT_KIND_BYTES
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_:".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(StoreError::InvalidInput(format!(
            "{what} must be 1 to {MAX_LIMIT_KIND_BYTES} characters of a-z, 0-9, '-', '_' or ':'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_short_plain_names() {
        for good in [
            "account",
            "ip",
            "device-session",
            "passkey_challenge",
            "dpop:jti",
            "a1",
        ] {
            assert!(check_kind("kind", good).is_ok(), "{good}");
        }
        for bad in ["", "Account", "ip addr", "x\0", "é", &"k".repeat(65)] {
            assert!(
                matches!(check_kind("kind", bad), Err(StoreError::InvalidInput(_))),
                "{bad:?}"
            );
        }
        assert!(check_kind("kind", &"k".repeat(64)).is_ok());
    }
}
