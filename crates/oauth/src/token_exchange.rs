//! Token exchange (RFC 8693): the request's parameters and the rules of what an exchange may
//! issue, without I/O. The provider (`provider/grants/token_exchange.rs`) verifies the presented
//! tokens against the keys and the store and applies these rules.
//!
//! What trustgate implements of the RFC, and how strictly:
//!
//! - §2.1: `subject_token` and `subject_token_type` are required; `actor_token` and
//!   `actor_token_type` come together or not at all. Both tokens must be trustgate's own access
//!   tokens, typed `urn:ietf:params:oauth:token-type:access_token` or `...:jwt` (§3), except
//!   that the subject token may instead be one of trustgate's API keys (or personal access
//!   tokens), typed [`API_KEY_TOKEN_TYPE`] (`urn:trustgate:params:oauth:token-type:api_key`, a
//!   type of this server's own, as §3 allows); a key is never an actor token. Any other type is
//!   `invalid_request`. `requested_token_type`, when given, must be `...:access_token`
//!   (the only type issued). Exactly one target: `resource` (an absolute URI without fragment,
//!   RFC 8707 §2) and/or `audience` (a logical name), repeatable, must name one value between
//!   them; none, several or a malformed one is `invalid_target`.
//! - §2.2.1: the response is an access token (`token_type` `Bearer`) with
//!   `issued_token_type`, `expires_in` and `scope`; never a refresh token.
//! - §2.2.2: a subject or actor token that is invalid (signature, issuer, type, expired with no
//!   leeway, revoked, its grant revoked or its user disabled; an API key unknown, revoked,
//!   expired or of a disabled owner) or unacceptable by policy (not received by the exchanging
//!   client, see [`received_by`]; an API key presented by a client whose registration does not
//!   opt in with `token_exchange.api_keys`; `may_act` not naming the actor; an actor token
//!   issued to another client or itself delegated) is `invalid_request`, as the
//!   RFC requires ("MUST"), where RFC 6749 would say `invalid_grant`. A target the client may not obtain a token for
//!   is `invalid_target`; a scope beyond the subject token's or the client's is
//!   `invalid_scope`; a client not registered for the grant, or a public one, is
//!   `unauthorized_client`.
//! - §4.1: the issued token's `act` names the actor (the exchanging client, or the subject of
//!   its actor token) with the client it acts through, and nests the subject token's own `act`,
//!   so a token exchanged twice carries the whole chain (at most [`MAX_ACT_DEPTH`] actors).
//! - §4.4: a subject token carrying `may_act` may be exchanged only by the party it names.
//! - §5: only authenticated (confidential) clients exchange; the issued token only narrows:
//!   scope within the subject token's and the client's, audience one of the client's registered
//!   targets, lifetime within the subject token's remaining lifetime, the client's access-token
//!   lifetime and `oauth.token_exchange_ttl_secs` (5 minutes by default).
//! - API keys as subject tokens: the key is verified by the same key service introspection
//!   uses (valid, unexpired, unrevoked, owner enabled). The issued token's `sub` is the key
//!   owner's subject as introspection names it (`service:<id>`, or `user:<id>` for a personal
//!   access token), its `scope` lies within the key's scopes and the client's, its `act` names
//!   the exchanging client, its lifetime ends no later than the key does, and it carries the
//!   key's id as `key_id` and no `auth_time`, `amr`, `acr`, grant or user version (a key
//!   is no sign-in), so a downstream can tell it came from a key.

use time::Duration;
use trustgate_tokens::{AccessTokenClaims, Actor};
use url::Url;

use crate::clients::Client;
use crate::request::Params;
use crate::scope::Scope;
use crate::{ErrorCode, OAuthError};

/// `urn:ietf:params:oauth:token-type:access_token` (RFC 8693 §3): an OAuth 2.0 access token.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// `urn:ietf:params:oauth:token-type:jwt` (RFC 8693 §3): a JWT; accepted for trustgate's own
/// access tokens, which are JWTs.
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
/// `urn:trustgate:params:oauth:token-type:api_key`: one of this server's API keys or personal
/// access tokens. Accepted only as `subject_token_type`, and only from a client registered with
/// `token_exchange.api_keys`.
pub const API_KEY_TOKEN_TYPE: &str = "urn:trustgate:params:oauth:token-type:api_key";
/// The most actors an `act` chain may hold: an exchange that would nest deeper is refused.
pub const MAX_ACT_DEPTH: usize = 8;

/// What the subject token is, by its `subject_token_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectKind {
    /// One of this server's access tokens ([`ACCESS_TOKEN_TYPE`] or [`JWT_TOKEN_TYPE`]).
    AccessToken,
    /// One of this server's API keys ([`API_KEY_TOKEN_TYPE`]).
    ApiKey,
}

/// A token exchange request whose parameters are well-formed (RFC 8693 §2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeRequest<'a> {
    /// The token that represents the party on whose behalf the request is made.
    pub subject_token: &'a str,
    /// What the subject token is.
    pub subject_kind: SubjectKind,
    /// The token that represents the acting party, if any.
    pub actor_token: Option<&'a str>,
    /// The one target (`resource` or `audience` value) the issued token is for.
    pub target: &'a str,
    /// The requested scope, if any.
    pub scope: Option<Scope>,
}

/// Reads and checks the parameters of a token exchange request (see the module documentation
/// for the rules and their error codes).
pub fn parse_request(params: &Params) -> Result<ExchangeRequest<'_>, OAuthError> {
    if let Some(requested) = params.get("requested_token_type")
        && requested != ACCESS_TOKEN_TYPE
    {
        return Err(OAuthError::invalid_request(format!(
            "requested_token_type: only {ACCESS_TOKEN_TYPE} is issued"
        )));
    }
    let subject_token = params
        .get("subject_token")
        .ok_or_else(|| OAuthError::invalid_request("subject_token is required"))?;
    let subject_type = params
        .get("subject_token_type")
        .ok_or_else(|| OAuthError::invalid_request("subject_token_type is required"))?;
    let subject_kind = if subject_type == API_KEY_TOKEN_TYPE {
        SubjectKind::ApiKey
    } else {
        check_token_type("subject_token_type", subject_type)?;
        SubjectKind::AccessToken
    };
    let actor_token = match (params.get("actor_token"), params.get("actor_token_type")) {
        (None, None) => None,
        (Some(token), Some(kind)) => {
            // An API key proves who owns it, not who acts: never an actor token.
            check_token_type("actor_token_type", kind)?;
            Some(token)
        }
        (Some(_), None) => {
            return Err(OAuthError::invalid_request(
                "actor_token_type is required with actor_token",
            ));
        }
        (None, Some(_)) => {
            return Err(OAuthError::invalid_request(
                "actor_token_type must not be sent without actor_token",
            ));
        }
    };
    let target = single_target(params)?;
    let scope = params.get("scope").map(Scope::parse).transpose()?;
    Ok(ExchangeRequest {
        subject_token,
        subject_kind,
        actor_token,
        target,
        scope,
    })
}

/// Only trustgate's own access tokens are exchanged (and, as subject tokens only, its API
/// keys, which the caller recognises before asking this).
fn check_token_type(name: &str, value: &str) -> Result<(), OAuthError> {
    if value == ACCESS_TOKEN_TYPE || value == JWT_TOKEN_TYPE {
        return Ok(());
    }
    let keys = if name == "subject_token_type" {
        format!(", or {API_KEY_TOKEN_TYPE} for this server's API keys")
    } else {
        String::new()
    };
    Err(OAuthError::invalid_request(format!(
        "{name}: only this server's access tokens are exchanged ({ACCESS_TOKEN_TYPE} or \
         {JWT_TOKEN_TYPE}){keys}"
    )))
}

/// The one target of the request: every `resource` (absolute URIs without fragment, RFC 8707
/// §2) and `audience` value must name the same thing.
fn single_target(params: &Params) -> Result<&str, OAuthError> {
    let target_error = |message: &str| OAuthError::new(ErrorCode::InvalidTarget, message);
    for resource in params.all("resource") {
        let absolute = Url::parse(resource).is_ok_and(|url| url.fragment().is_none());
        if !absolute || resource.contains('#') {
            return Err(target_error(
                "resource: must be an absolute URI without a fragment (RFC 8707)",
            ));
        }
    }
    let mut targets = params.all("resource").chain(params.all("audience"));
    let first = targets
        .next()
        .ok_or_else(|| target_error("the token's target is required (audience or resource)"))?;
    if targets.any(|other| other != first) {
        return Err(target_error(
            "one target per token exchange: audience and resource must name the same one",
        ));
    }
    Ok(first)
}

/// Whether the exchanging `client` legitimately received the subject token: it is for an
/// audience the client serves as a resource server (its client id or one of its
/// `resource_audiences`, as for introspection), or it was issued to the client. A delegated
/// token (one with `act`) counts only by its audience: the client that obtained it by an
/// exchange holds it to send it on, not to exchange it again.
pub fn received_by(subject: &AccessTokenClaims, client: &Client) -> bool {
    subject.aud.iter().any(|a| client.serves_audience(a))
        || (subject.client_id == client.id && subject.act.is_none())
}

/// The scope of the exchanged token: the requested one, which must lie within the subject
/// token's scope and the client's allowed scopes (`invalid_scope` otherwise); without a
/// request, what the subject token and the client have in common.
pub fn narrowed_scope(
    requested: Option<Scope>,
    subject: &Scope,
    client: &Client,
) -> Result<Scope, OAuthError> {
    match requested {
        Some(asked) => {
            if let Some(token) = asked
                .iter()
                .find(|t| !subject.contains(t) || !client.allows_scope(t))
            {
                return Err(OAuthError::new(
                    ErrorCode::InvalidScope,
                    format!(
                        "scope {token} is not within the subject token's scope and the \
                         client's scopes (an exchange only narrows)"
                    ),
                ));
            }
            Ok(asked)
        }
        None => Ok(Scope::from_tokens(
            subject.iter().filter(|t| client.allows_scope(t)),
        )),
    }
}

/// The `act` claim of the exchanged token: `actor`, with the subject token's own chain nested
/// inside it (RFC 8693 §4.1). A subject token's `may_act` must admit the actor (§4.4), and the
/// chain may hold at most [`MAX_ACT_DEPTH`] actors; both refusals are `invalid_request`.
pub fn actor_chain(actor: Actor, subject: &AccessTokenClaims) -> Result<Actor, OAuthError> {
    if let Some(may_act) = &subject.may_act
        && !may_act.admits(&actor)
    {
        return Err(OAuthError::invalid_request(
            "the subject token's may_act does not name this actor",
        ));
    }
    let previous = subject.act.clone();
    if previous.as_ref().map_or(0, Actor::depth) >= MAX_ACT_DEPTH {
        return Err(OAuthError::invalid_request(format!(
            "the delegation chain would be longer than {MAX_ACT_DEPTH} actors"
        )));
    }
    Ok(Actor {
        act: previous.map(Box::new),
        ..actor
    })
}

/// The `exp` of the exchanged token issued at `now` (Unix seconds): never after the subject
/// token's (`subject_exp`; `None` for an API key that does not expire), and at most `max` (the
/// configured token exchange lifetime) and `client_ttl` (the client's access-token lifetime)
/// from now.
pub fn expiry(now: i64, subject_exp: Option<i64>, max: Duration, client_ttl: Duration) -> i64 {
    let ttl = max.min(client_ttl).whole_seconds();
    let limit = now.saturating_add(ttl);
    subject_exp.map_or(limit, |exp| exp.min(limit))
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;
    use trustgate_tokens::Audience;

    use super::*;
    use crate::clients::{GrantType, TokenExchangePolicy};

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params::from_pairs(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )
        .expect("params")
    }

    fn code(result: Result<ExchangeRequest<'_>, OAuthError>) -> ErrorCode {
        result.expect_err("refused").code
    }

    const SUBJECT: (&str, &str) = ("subject_token", "a.b.c");
    const SUBJECT_TYPE: (&str, &str) = ("subject_token_type", ACCESS_TOKEN_TYPE);

    #[test]
    fn token_types_are_checked_before_anything_else() {
        let base = [SUBJECT, SUBJECT_TYPE, ("audience", "orders")];
        for bad in [
            vec![("subject_token_type", ACCESS_TOKEN_TYPE), ("audience", "o")],
            vec![SUBJECT, ("audience", "o")],
            vec![
                SUBJECT,
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:id_token",
                ),
                ("audience", "o"),
            ],
            vec![
                SUBJECT,
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:refresh_token",
                ),
                ("audience", "o"),
            ],
            vec![
                SUBJECT,
                ("subject_token_type", "access_token"),
                ("audience", "o"),
            ],
            vec![
                SUBJECT,
                SUBJECT_TYPE,
                ("actor_token", "x.y.z"),
                ("audience", "o"),
            ],
            vec![
                SUBJECT,
                SUBJECT_TYPE,
                ("actor_token_type", ACCESS_TOKEN_TYPE),
                ("audience", "o"),
            ],
            vec![
                SUBJECT,
                SUBJECT_TYPE,
                ("actor_token", "x.y.z"),
                ("actor_token_type", "urn:ietf:params:oauth:token-type:saml2"),
                ("audience", "o"),
            ],
            vec![
                SUBJECT,
                SUBJECT_TYPE,
                (
                    "requested_token_type",
                    "urn:ietf:params:oauth:token-type:refresh_token",
                ),
                ("audience", "o"),
            ],
            vec![
                SUBJECT,
                SUBJECT_TYPE,
                ("requested_token_type", JWT_TOKEN_TYPE),
                ("audience", "o"),
            ],
        ] {
            assert_eq!(
                code(parse_request(&params(&bad))),
                ErrorCode::InvalidRequest,
                "{bad:?}"
            );
        }
        let base = params(&base);
        let ok = parse_request(&base).expect("ok");
        assert_eq!(ok.subject_token, "a.b.c");
        assert_eq!(ok.target, "orders");
        assert_eq!(ok.actor_token, None);
        assert_eq!(ok.scope, None);
        let with_actor = params(&[
            SUBJECT,
            ("subject_token_type", JWT_TOKEN_TYPE),
            ("actor_token", "x.y.z"),
            ("actor_token_type", JWT_TOKEN_TYPE),
            ("requested_token_type", ACCESS_TOKEN_TYPE),
            ("resource", "https://orders.example/api"),
            ("scope", "orders:read"),
        ]);
        let ok = parse_request(&with_actor).expect("ok");
        assert_eq!(ok.actor_token, Some("x.y.z"));
        assert_eq!(ok.target, "https://orders.example/api");
        assert_eq!(ok.scope, Some(Scope::from_tokens(["orders:read"])));
    }

    #[test]
    fn exactly_one_target() {
        let with = |targets: &[(&'static str, &'static str)]| {
            let mut all = vec![SUBJECT, SUBJECT_TYPE];
            all.extend_from_slice(targets);
            params(&all)
        };
        for (targets, why) in [
            (vec![], "none"),
            (vec![("audience", "a"), ("audience", "b")], "two audiences"),
            (
                vec![
                    ("resource", "https://a.example"),
                    ("resource", "https://b.example"),
                ],
                "two resources",
            ),
            (
                vec![("resource", "https://a.example"), ("audience", "orders")],
                "a resource and another audience",
            ),
            (vec![("resource", "orders")], "a relative resource"),
            (
                vec![("resource", "https://a.example/#frag")],
                "a resource with a fragment",
            ),
            (
                vec![("resource", "https://a.example/#")],
                "an empty fragment",
            ),
        ] {
            assert_eq!(
                code(parse_request(&with(&targets))),
                ErrorCode::InvalidTarget,
                "{why}"
            );
        }
        for targets in [
            vec![("audience", "orders"), ("audience", "orders")],
            vec![
                ("resource", "https://a.example"),
                ("audience", "https://a.example"),
            ],
        ] {
            let request = with(&targets);
            let parsed = parse_request(&request).expect("one target named twice");
            assert_eq!(parsed.target, targets[0].1);
        }
    }

    fn client(scopes: &[&str]) -> Client {
        Client {
            id: "tgc_gw".into(),
            name: "Gateway".into(),
            auth_method: crate::clients::AuthMethod::ClientSecretBasic,
            application_type: crate::clients::ApplicationType::Web,
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            grant_types: vec![GrantType::TokenExchange],
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            jwks: None,
            require_par: false,
            dpop_bound_access_tokens: false,
            tls_client_auth: Default::default(),
            skip_consent: false,
            access_token_ttl: Duration::minutes(10),
            refresh_token_ttl: Duration::days(1),
            refresh_grace: None,
            audience: Vec::new(),
            resource_audiences: vec!["https://gateway.example".into()],
            backchannel_logout_uri: None,
            backchannel_logout_session_required: false,
            token_exchange: Some(TokenExchangePolicy {
                audiences: vec!["https://orders.example".into()],
                api_keys: false,
            }),
            created_at: datetime!(2026-01-01 00:00 UTC),
            updated_at: datetime!(2026-01-01 00:00 UTC),
            has_secret: true,
        }
    }

    fn subject(client_id: &str, aud: &[&str]) -> AccessTokenClaims {
        AccessTokenClaims {
            iss: "https://id.example".into(),
            sub: "alice".into(),
            aud: Audience::Many(aud.iter().map(|a| (*a).to_owned()).collect()),
            exp: 2_000,
            iat: 1_000,
            nbf: None,
            jti: "j".into(),
            client_id: client_id.into(),
            scope: Some("openid orders:read orders:write".into()),
            auth_time: None,
            acr: None,
            amr: None,
            uv: None,
            gid: None,
            sid: None,
            act: None,
            may_act: None,
            key_id: None,
            cnf: None,
        }
    }

    #[test]
    fn a_client_exchanges_only_tokens_it_received() {
        let gw = client(&[]);
        assert!(received_by(
            &subject("tgc_gw", &["https://id.example"]),
            &gw
        ));
        assert!(received_by(&subject("tgc_spa", &["tgc_gw"]), &gw));
        assert!(received_by(
            &subject(
                "tgc_spa",
                &["https://id.example", "https://gateway.example"]
            ),
            &gw
        ));
        assert!(!received_by(
            &subject("tgc_spa", &["https://id.example"]),
            &gw
        ));
        assert!(!received_by(
            &subject("tgc_spa", &["https://orders.example"]),
            &gw
        ));
        // The gateway's own exchanged token is for the orders service, not for it.
        let mut downstream = subject("tgc_gw", &["https://orders.example"]);
        downstream.act = Some(actor("tgc_gw", "tgc_gw"));
        assert!(!received_by(&downstream, &gw));
        downstream.aud = Audience::One("https://gateway.example".into());
        assert!(
            received_by(&downstream, &gw),
            "unless it is for the gateway"
        );
    }

    #[test]
    fn scope_only_narrows() {
        let gw = client(&["orders:read", "orders:write", "billing:read"]);
        let subject = Scope::parse("openid orders:read orders:write").expect("scope");
        assert_eq!(
            narrowed_scope(None, &subject, &gw).expect("default"),
            Scope::from_tokens(["orders:read", "orders:write"]),
            "what the subject token and the client share"
        );
        assert_eq!(
            narrowed_scope(Some(Scope::from_tokens(["orders:read"])), &subject, &gw)
                .expect("narrower"),
            Scope::from_tokens(["orders:read"])
        );
        for widened in [
            "billing:read",
            "openid",
            "orders:read admin",
            "orders:read billing:read",
        ] {
            let asked = Scope::parse(widened).expect("scope");
            assert_eq!(
                narrowed_scope(Some(asked), &subject, &gw)
                    .expect_err(widened)
                    .code,
                ErrorCode::InvalidScope,
                "{widened}"
            );
        }
        assert_eq!(
            narrowed_scope(Some(Scope::default()), &subject, &gw).expect("empty"),
            Scope::default()
        );
    }

    fn actor(sub: &str, client_id: &str) -> Actor {
        Actor {
            sub: sub.into(),
            client_id: Some(client_id.into()),
            act: None,
        }
    }

    #[test]
    fn the_chain_nests_and_is_bounded() {
        let mut token = subject("tgc_spa", &["tgc_gw"]);
        let first = actor_chain(actor("tgc_gw", "tgc_gw"), &token).expect("first");
        assert_eq!(first, actor("tgc_gw", "tgc_gw"));
        token.act = Some(first.clone());
        let second = actor_chain(actor("tgc_orders", "tgc_orders"), &token).expect("second");
        assert_eq!(second.sub, "tgc_orders");
        assert_eq!(second.act.as_deref(), Some(&first));
        assert_eq!(second.depth(), 2);

        let mut deep = actor("a0", "c0");
        for i in 1..MAX_ACT_DEPTH {
            deep = Actor {
                act: Some(Box::new(deep)),
                ..actor(&format!("a{i}"), &format!("c{i}"))
            };
        }
        assert_eq!(deep.depth(), MAX_ACT_DEPTH);
        token.act = Some(deep);
        assert_eq!(
            actor_chain(actor("tgc_gw", "tgc_gw"), &token)
                .expect_err("too deep")
                .code,
            ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn may_act_names_who_may_exchange() {
        let mut token = subject("tgc_spa", &["tgc_gw"]);
        token.may_act = Some(Actor {
            sub: "tgc_gw".into(),
            client_id: None,
            act: None,
        });
        actor_chain(actor("tgc_gw", "tgc_gw"), &token).expect("named");
        assert_eq!(
            actor_chain(actor("tgc_other", "tgc_other"), &token)
                .expect_err("not named")
                .code,
            ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn lifetime_never_outlives_the_subject_or_the_limits() {
        let five = Duration::minutes(5);
        let ten = Duration::minutes(10);
        assert_eq!(
            expiry(1_000, Some(10_000), five, ten),
            1_300,
            "the configured maximum"
        );
        assert_eq!(
            expiry(1_000, Some(10_000), five, Duration::minutes(1)),
            1_060,
            "the client's shorter lifetime"
        );
        assert_eq!(
            expiry(1_000, Some(1_100), five, ten),
            1_100,
            "the subject's exp"
        );
        assert_eq!(
            expiry(1_000, None, five, ten),
            1_300,
            "an API key without expiry: the limits alone"
        );
    }

    #[test]
    fn api_keys_are_subject_tokens_only() {
        let key = ("subject_token", "tg_live_01abc");
        let key_type = ("subject_token_type", API_KEY_TOKEN_TYPE);
        let request = params(&[key, key_type, ("audience", "orders")]);
        let parsed = parse_request(&request).expect("a key as the subject token");
        assert_eq!(parsed.subject_kind, SubjectKind::ApiKey);
        assert_eq!(parsed.subject_token, "tg_live_01abc");
        let access = params(&[SUBJECT, SUBJECT_TYPE, ("audience", "orders")]);
        assert_eq!(
            parse_request(&access).expect("ok").subject_kind,
            SubjectKind::AccessToken
        );
        // Never as the actor, whatever the subject is.
        for subject_type in [API_KEY_TOKEN_TYPE, ACCESS_TOKEN_TYPE] {
            let request = params(&[
                key,
                ("subject_token_type", subject_type),
                ("actor_token", "tg_live_01def"),
                ("actor_token_type", API_KEY_TOKEN_TYPE),
                ("audience", "orders"),
            ]);
            let err = parse_request(&request).expect_err("a key as the actor");
            assert_eq!(err.code, ErrorCode::InvalidRequest);
            assert!(err.description.contains("actor_token_type"), "{err}");
        }
        // The type is compared exactly.
        for spelling in [
            "urn:trustgate:params:oauth:token-type:API_KEY",
            "api_key",
            "urn:ietf:params:oauth:token-type:api_key",
        ] {
            let request = params(&[key, ("subject_token_type", spelling), ("audience", "o")]);
            assert_eq!(
                code(parse_request(&request)),
                ErrorCode::InvalidRequest,
                "{spelling}"
            );
        }
        // Only one target still.
        let request = params(&[key, key_type]);
        assert_eq!(code(parse_request(&request)), ErrorCode::InvalidTarget);
    }
}
