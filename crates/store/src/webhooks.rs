//! Validation and decoding of webhook subscriptions and deliveries, shared by the backends.

use trustgate_store_api::StoreError;
pub(crate) use trustgate_store_api::webhooks::*;

use crate::relationships::{check_input, json_text};

/// The longest URL, in bytes.
pub(crate) const MAX_URL_BYTES: usize = 2048;
/// The longest description, in characters.
pub(crate) const MAX_DESCRIPTION_CHARS: usize = 1024;
/// The most event kinds a subscription may list.
pub(crate) const MAX_KINDS: usize = 128;
/// The largest payload, in bytes (an audit event is at most a few KiB; a logout token less).
pub(crate) const MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// The longest error kept for an attempt, in bytes (longer ones are cut).
pub(crate) const MAX_ERROR_BYTES: usize = 1024;
/// The most deliveries one `enqueue_deliveries` call takes.
pub(crate) const MAX_ENQUEUE: usize = 10_000;
/// The longest sealed secret, in bytes (a 64-byte key, nonce and tag).
pub(crate) const MAX_SEALED_BYTES: usize = 256;

fn check_url(url: &str) -> Result<(), StoreError> {
    check_input("webhook url", url)?;
    if url.len() > MAX_URL_BYTES {
        return Err(StoreError::InvalidInput(format!(
            "a webhook url is at most {MAX_URL_BYTES} bytes"
        )));
    }
    Ok(())
}

pub(crate) fn check_sealed(sealed: &[u8]) -> Result<(), StoreError> {
    if sealed.is_empty() || sealed.len() > MAX_SEALED_BYTES {
        return Err(StoreError::InvalidInput(format!(
            "a sealed webhook secret is 1 to {MAX_SEALED_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Checks a subscription for storage and returns its kinds as JSON.
pub(crate) fn check_new_subscription(new: &NewSubscription<'_>) -> Result<String, StoreError> {
    check_input("webhook id", new.id)?;
    check_url(new.url)?;
    if new.description.chars().count() > MAX_DESCRIPTION_CHARS || new.description.contains('\0') {
        return Err(StoreError::InvalidInput(format!(
            "a webhook description is at most {MAX_DESCRIPTION_CHARS} characters, without NUL"
        )));
    }
    if new.kinds.len() > MAX_KINDS {
        return Err(StoreError::InvalidInput(format!(
            "a webhook lists at most {MAX_KINDS} event kinds"
        )));
    }
    for kind in new.kinds {
        check_input("event kind", kind)?;
    }
    check_sealed(new.sealed_secret)?;
    json_text("event kinds", serde_json::to_string(new.kinds), 64 * 1024)
        .map_err(StoreError::InvalidInput)
}

pub(crate) fn kinds_from_text(text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|e| {
        StoreError::Corrupt(format!(
            "stored webhook kinds are not a list of strings: {e}"
        ))
    })
}

pub(crate) fn check_new_delivery(new: &NewDelivery<'_>) -> Result<(), StoreError> {
    check_input("delivery id", new.id)?;
    check_input("delivery target", new.target)?;
    check_url(new.url)?;
    if new.payload.len() > MAX_PAYLOAD_BYTES || new.payload.contains('\0') {
        return Err(StoreError::InvalidInput(format!(
            "a delivery payload is at most {MAX_PAYLOAD_BYTES} bytes, without NUL"
        )));
    }
    match (new.kind, new.subscription_id) {
        (DeliveryKind::Webhook, Some(id)) => check_input("webhook id", id),
        (DeliveryKind::BackchannelLogout, None) => Ok(()),
        _ => Err(StoreError::InvalidInput(
            "a webhook delivery names its subscription, a back-channel logout does not".into(),
        )),
    }
}

/// The error of an attempt as stored: NULs removed, cut to [`MAX_ERROR_BYTES`] on a character
/// boundary.
pub(crate) fn stored_error(error: &str) -> String {
    let mut out = String::with_capacity(error.len().min(MAX_ERROR_BYTES));
    for c in error.chars().filter(|c| *c != '\0') {
        if out.len() + c.len_utf8() > MAX_ERROR_BYTES {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_ERROR_BYTES);
        let cut = stored_error(&long);
        assert!(cut.len() <= MAX_ERROR_BYTES);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(stored_error("a\0b"), "ab");
    }

    #[test]
    fn deliveries_name_a_subscription_only_when_they_are_webhooks() {
        let new = NewDelivery {
            id: "msg_1",
            kind: DeliveryKind::Webhook,
            subscription_id: None,
            target: "t",
            url: "https://example.com/hook",
            payload: "{}",
        };
        assert!(check_new_delivery(&new).is_err());
        assert!(
            check_new_delivery(&NewDelivery {
                subscription_id: Some("S1"),
                ..new
            })
            .is_ok()
        );
        assert!(
            check_new_delivery(&NewDelivery {
                kind: DeliveryKind::BackchannelLogout,
                subscription_id: Some("S1"),
                ..new
            })
            .is_err()
        );
    }
}
