//! The refusals: status, `WWW-Authenticate` challenge (RFC 6750 §3, RFC 9470 §3) and a JSON
//! body with a stable `code`, the shape of trustgate's own errors
//! (`{"code", "message", "request_id"}`).
//!
//! | reason | status | challenge |
//! |---|---|---|
//! | missing credential | 401 | `Bearer realm="…"` (no error code, RFC 6750 §3.1) |
//! | invalid credential | 401 | `Bearer realm="…", error="invalid_token", error_description="…"` |
//! | invalid DPoP proof | 401 | `DPoP realm="…", algs="EdDSA ES256 RS256", error="invalid_dpop_proof", error_description="…"` (RFC 9449 §7.1) |
//! | step-up | 401 | `Bearer realm="…", error="insufficient_user_authentication", error_description="…", max_age="…", acr_values="…"` (RFC 9470 §3 answers it with 401, as its examples do) |
//! | missing scope | 403 | `Bearer realm="…", error="insufficient_scope", scope="…"` |
//! | no rule, PDP deny | 403 | — |
//! | rate limited | 429 with `Retry-After` (RFC 9110 §10.2.3) | — |
//! | PDP / JWKS / introspection / sessions unavailable | 503 | — |

use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};
use serde_json::json;

use crate::sink::Reason;

/// The DPoP proof algorithms accepted (RFC 9449 §7.1 `algs`).
const DPOP_ALGS: &str = "EdDSA ES256 RS256";

/// The HTTP status of a refusal.
pub fn status(reason: &Reason) -> StatusCode {
    match reason {
        Reason::Allowed | Reason::PublicRoute => StatusCode::OK,
        Reason::MissingCredential
        | Reason::InvalidToken { .. }
        | Reason::InvalidDpopProof { .. }
        | Reason::StepUp { .. } => StatusCode::UNAUTHORIZED,
        Reason::NoRule | Reason::MissingScope { .. } | Reason::PdpDeny => StatusCode::FORBIDDEN,
        Reason::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        Reason::PdpUnavailable { .. } | Reason::AuthenticationUnavailable { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

/// The `WWW-Authenticate` value of a refusal, if it has one.
pub fn challenge(realm: &str, reason: &Reason) -> Option<String> {
    if let Reason::InvalidDpopProof { why } = reason {
        return Some(format!(
            "DPoP realm=\"{}\", algs=\"{DPOP_ALGS}\", error=\"invalid_dpop_proof\", error_description=\"{}\"",
            quoted(realm),
            quoted(&format!("the DPoP proof is not valid ({why})"))
        ));
    }
    let mut out = format!("Bearer realm=\"{}\"", quoted(realm));
    match reason {
        Reason::MissingCredential => {}
        Reason::InvalidToken { why } => {
            out.push_str(&format!(
                ", error=\"invalid_token\", error_description=\"{}\"",
                quoted(&format!("the access token is not valid ({why})"))
            ));
        }
        Reason::MissingScope { required } => {
            out.push_str(&format!(
                ", error=\"insufficient_scope\", error_description=\"{}\", scope=\"{}\"",
                "the access token lacks a required scope",
                quoted(&required.join(" "))
            ));
        }
        Reason::StepUp {
            max_age,
            acr_values,
        } => {
            out.push_str(&format!(
                ", error=\"insufficient_user_authentication\", error_description=\"{}\"",
                if max_age.is_some() {
                    "a more recent authentication is required"
                } else {
                    "a different authentication level is required"
                }
            ));
            if let Some(max_age) = max_age {
                out.push_str(&format!(", max_age=\"{max_age}\""));
            }
            if !acr_values.is_empty() {
                out.push_str(&format!(
                    ", acr_values=\"{}\"",
                    quoted(&acr_values.join(" "))
                ));
            }
        }
        _ => return None,
    }
    Some(out)
}

/// The body's stable code.
pub fn code(reason: &Reason) -> &'static str {
    match reason {
        Reason::MissingCredential => "unauthenticated",
        Reason::InvalidToken { .. } => "invalid_token",
        Reason::InvalidDpopProof { .. } => "invalid_dpop_proof",
        Reason::StepUp { .. } => "insufficient_user_authentication",
        Reason::MissingScope { .. } => "insufficient_scope",
        Reason::NoRule | Reason::PdpDeny => "permission_denied",
        Reason::RateLimited { .. } => "rate_limited",
        Reason::PdpUnavailable { .. } => "pdp_unavailable",
        Reason::AuthenticationUnavailable { .. } => "authentication_unavailable",
        Reason::Allowed | Reason::PublicRoute => "ok",
    }
}

fn message(reason: &Reason) -> &'static str {
    match reason {
        Reason::MissingCredential => "authentication is required",
        Reason::InvalidToken { .. } => "the credential is not valid",
        Reason::InvalidDpopProof { .. } => "the DPoP proof is not valid",
        Reason::StepUp { .. } => "a stronger or more recent authentication is required",
        Reason::MissingScope { .. } => "the credential lacks a required scope",
        Reason::NoRule => "no rule allows this request",
        Reason::PdpDeny => "the caller may not do this",
        Reason::RateLimited { .. } => "too many requests; retry after the Retry-After seconds",
        Reason::PdpUnavailable { .. } => "the authorization service is unavailable",
        Reason::AuthenticationUnavailable { .. } => "the authentication service is unavailable",
        Reason::Allowed | Reason::PublicRoute => "ok",
    }
}

/// The refusal's response.
pub fn render<B: From<String>>(
    realm: &str,
    reason: &Reason,
    request_id: Option<&str>,
) -> Response<B> {
    let mut body = json!({ "code": code(reason), "message": message(reason) });
    if let (Some(id), Some(obj)) = (request_id, body.as_object_mut()) {
        obj.insert("request_id".into(), json!(id));
    }
    if let (Reason::MissingScope { required }, Some(obj)) = (reason, body.as_object_mut()) {
        obj.insert("scope".into(), json!(required.join(" ")));
    }
    let mut response = Response::new(B::from(body.to_string()));
    *response.status_mut() = status(reason);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(value) = challenge(realm, reason).and_then(|c| HeaderValue::try_from(c).ok()) {
        headers.insert(WWW_AUTHENTICATE, value);
    }
    if let Reason::RateLimited { retry_after_secs } = reason {
        headers.insert(RETRY_AFTER, HeaderValue::from(*retry_after_secs));
    }
    response
}

/// A quoted-string's content restricted to RFC 6750 §3's characters (`%x20-21 / %x23-5B /
/// %x5D-7E`): `"` and `\` and anything outside printable ASCII become `?`.
fn quoted(value: &str) -> String {
    value
        .chars()
        .map(|c| match c {
            ' ' | '!' | '#'..='[' | ']'..='~' => c,
            _ => '?',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_credential_is_challenged_without_an_error_code() {
        let c = challenge("learning", &Reason::MissingCredential).expect("challenge");
        assert_eq!(c, "Bearer realm=\"learning\"");
        assert_eq!(status(&Reason::MissingCredential), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn challenges_carry_rfc_6750_and_9470_parameters() {
        let c = challenge(
            "r",
            &Reason::InvalidToken {
                why: "token_expired\"\\x".into(),
            },
        )
        .expect("challenge");
        assert_eq!(
            c,
            "Bearer realm=\"r\", error=\"invalid_token\", error_description=\"the access token is not valid (token_expired??x)\""
        );
        let c = challenge(
            "r",
            &Reason::MissingScope {
                required: vec!["a".into(), "b".into()],
            },
        )
        .expect("challenge");
        assert!(c.ends_with(", scope=\"a b\""), "{c}");
        assert!(c.contains("error=\"insufficient_scope\""), "{c}");
        let c = challenge(
            "r",
            &Reason::StepUp {
                max_age: Some(600),
                acr_values: vec!["2".into()],
            },
        )
        .expect("challenge");
        assert!(c.contains("error=\"insufficient_user_authentication\""));
        assert!(c.ends_with(", max_age=\"600\", acr_values=\"2\""), "{c}");
        assert_eq!(challenge("r", &Reason::PdpDeny), None);
        assert_eq!(challenge("r", &Reason::NoRule), None);
        assert_eq!(
            status(&Reason::PdpUnavailable { why: "x".into() }),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn rate_limited_is_429_with_retry_after_and_no_challenge() {
        let reason = Reason::RateLimited {
            retry_after_secs: 3,
        };
        assert_eq!(challenge("r", &reason), None);
        let response: Response<String> = render("r", &reason, Some("req-9"));
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[RETRY_AFTER], "3");
        assert!(response.body().contains("\"code\":\"rate_limited\""));
        assert!(response.body().contains("\"request_id\":\"req-9\""));
    }
}
