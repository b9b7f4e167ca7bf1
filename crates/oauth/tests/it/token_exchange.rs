//! Token exchange (RFC 8693) through `Provider::token` over a real store, no HTTP. A user signs in
//! to a web app whose tokens are for the gateway; the gateway exchanges them for the orders
//! service, which exchanges again for the ledger. Negative paths first: a client not registered
//! for the grant, a public client, a target not allowed, a widened scope, a subject token that
//! is expired, revoked, tampered or was never received by the exchanging client, an actor token
//! of another client, a `may_act` naming someone else; each refusal audited. API keys as
//! subject tokens (`urn:trustgate:params:oauth:token-type:api_key`) with a key service that
//! answers as the server's does: only for a client that opted in, only live keys, the issued
//! token for the key's owner with the key's id.

use serde_json::{Value, json};
use time::Duration;
use trustgate_core::Clock;
use trustgate_oauth::clients::{AuthMethod, ClientRegistration, GrantType, TokenExchangePolicy};
use trustgate_oauth::provider::TokenPresentation;
use trustgate_oauth::provider::{ApiKeyIntrospection, EndUser, TokenResponse};
use trustgate_oauth::token_exchange::{ACCESS_TOKEN_TYPE, API_KEY_TOKEN_TYPE, JWT_TOKEN_TYPE};
use trustgate_oauth::{ErrorCode, OAuthError};
use trustgate_tokens::{AccessTokenClaims, Actor, Algorithm, Audience, Expectation};

use crate::provider::{
    App, ISSUER, Op, active, alice, audited, code_for_scope, ctx, exchange, op, params, pkce,
    refused, register,
};

const GATEWAY_AUD: &str = "https://gateway.example";
const ORDERS_AUD: &str = "https://orders.example";
const LEDGER_AUD: &str = "https://ledger.example";
const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// The deployment: a web app whose tokens are for the gateway, the gateway (may exchange for
/// the orders service), the orders service (may exchange for the ledger) and the ledger.
struct Chain {
    op: Op,
    /// Alice, signed in.
    user: EndUser,
    web: App,
    gateway: App,
    orders: App,
    ledger: App,
}

fn machine(reg: &mut ClientRegistration, name: &str, serves: &str) {
    reg.name = name.into();
    reg.redirect_uris = Vec::new();
    reg.grant_types = vec![GrantType::ClientCredentials];
    reg.resource_audiences = vec![serves.to_owned()];
}

fn exchanger(reg: &mut ClientRegistration, targets: &[&str], scopes: &[&str]) {
    reg.grant_types = vec![GrantType::TokenExchange, GrantType::ClientCredentials];
    reg.token_exchange = Some(TokenExchangePolicy {
        audiences: targets.iter().map(|t| (*t).to_owned()).collect(),
        api_keys: false,
    });
    reg.scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
}

async fn chain() -> Chain {
    let op = op().await;
    let web = register(&op, |r| {
        r.audience = vec![GATEWAY_AUD.into()];
        r.scopes = [
            "openid",
            "profile",
            "offline_access",
            "orders:read",
            "orders:write",
        ]
        .map(str::to_owned)
        .into();
    })
    .await;
    let gateway = register(&op, |r| {
        machine(r, "Gateway", GATEWAY_AUD);
        exchanger(
            r,
            &[ORDERS_AUD],
            &["orders:read", "orders:write", "billing:read"],
        );
    })
    .await;
    let orders = register(&op, |r| {
        machine(r, "Orders", ORDERS_AUD);
        exchanger(r, &[LEDGER_AUD], &["orders:read", "orders:write"]);
    })
    .await;
    let ledger = register(&op, |r| machine(r, "Ledger", LEDGER_AUD)).await;
    let user = alice(&op).await;
    Chain {
        op,
        user,
        web,
        gateway,
        orders,
        ledger,
    }
}

/// Alice's tokens at `app` for `scope` (its access token is for the app's audiences and the
/// issuer).
async fn tokens_at(c: &Chain, app: &App, scope: &str) -> TokenResponse {
    let (verifier, challenge) = pkce(&scope.replace(|c: char| !c.is_ascii_alphanumeric(), "-"));
    let code = code_for_scope(&c.op, app, &c.user, &challenge, scope).await;
    exchange(&c.op, app, &code, Some(&verifier))
        .await
        .expect("alice's tokens")
}

/// Alice signed in to the web app: her tokens (the access token is for the gateway).
async fn alice_token(c: &Chain) -> TokenResponse {
    tokens_at(c, &c.web, "openid offline_access orders:read orders:write").await
}

/// `client` exchanges `subject` with these extra parameters.
async fn swap(
    op: &Op,
    client: &App,
    subject: &str,
    extra: &[(&str, &str)],
) -> Result<TokenResponse, OAuthError> {
    let mut form = vec![
        ("grant_type", EXCHANGE),
        ("subject_token", subject),
        ("subject_token_type", ACCESS_TOKEN_TYPE),
    ];
    form.extend_from_slice(extra);
    op.provider
        .token(&params(&form), &client.credentials, &ctx())
        .await
}

/// The claims of one of our access tokens (signature, issuer, type and expiry checked).
fn claims_of(op: &Op, token: &str) -> AccessTokenClaims {
    trustgate_tokens::verify::<AccessTokenClaims>(
        token,
        &op.keys.resolver(),
        &Expectation {
            issuer: ISSUER,
            audiences: &[],
            typ: Some("at+jwt"),
            now: op.clock.now(),
            leeway: Duration::ZERO,
            require_exp: true,
            check_expiry: true,
        },
    )
    .expect("our access token")
    .claims
}

fn introspection(body: &Value) -> &Value {
    assert_eq!(body["active"], true, "{body}");
    body
}

/// The refusals of token exchange in the trail, newest first: (error, reason).
async fn refusals(op: &Op) -> Vec<(String, String)> {
    audited(op, "oauth_token_exchange_refused")
        .await
        .into_iter()
        .map(|e| {
            assert_eq!(e.outcome, "failure");
            (
                e.detail["error"].as_str().unwrap_or_default().to_owned(),
                e.detail["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn clients_that_may_not_exchange_are_refused() {
    let c = chain().await;
    let subject = alice_token(&c).await.access_token;
    // The web app received the token but is not registered for the grant.
    refused(
        swap(&c.op, &c.web, &subject, &[("audience", ORDERS_AUD)]).await,
        ErrorCode::UnauthorizedClient,
    );
    // A public client can neither register for the grant nor use it.
    let spa = ClientRegistration {
        auth_method: AuthMethod::None,
        redirect_uris: vec!["https://app.example.com/cb".into()],
        grant_types: vec![GrantType::AuthorizationCode, GrantType::TokenExchange],
        token_exchange: Some(TokenExchangePolicy {
            audiences: vec![ORDERS_AUD.into()],
            api_keys: false,
        }),
        ..ClientRegistration::named("SPA")
    };
    let err =
        c.op.provider
            .clients()
            .create(spa)
            .await
            .expect_err("public");
    assert_eq!(err.code(), "invalid_grant_types");
    let spa = register(&c.op, |r| {
        r.name = "SPA".into();
        r.auth_method = AuthMethod::None;
        r.audience = vec![GATEWAY_AUD.into()];
    })
    .await;
    refused(
        swap(&c.op, &spa, &subject, &[("audience", ORDERS_AUD)]).await,
        ErrorCode::UnauthorizedClient,
    );
    let refusals = refusals(&c.op).await;
    assert_eq!(refusals.len(), 2, "{refusals:?}");
    assert!(refusals.iter().all(|(e, _)| e == "unauthorized_client"));
    assert!(
        audited(&c.op, "oauth_token_issued")
            .await
            .iter()
            .all(|e| { e.detail["grant_type"] != EXCHANGE })
    );
}

#[tokio::test]
async fn targets_and_scopes_only_narrow() {
    let c = chain().await;
    let subject = alice_token(&c).await;
    let gw = &c.gateway;
    for (extra, code, why) in [
        (vec![], ErrorCode::InvalidTarget, "no target"),
        (
            vec![("audience", LEDGER_AUD)],
            ErrorCode::InvalidTarget,
            "a target the gateway may not request",
        ),
        (
            vec![("resource", "https://orders.example/")],
            ErrorCode::InvalidTarget,
            "audiences are compared exactly",
        ),
        (
            vec![("audience", ORDERS_AUD), ("audience", LEDGER_AUD)],
            ErrorCode::InvalidTarget,
            "two targets",
        ),
        (
            vec![("audience", ORDERS_AUD), ("scope", "billing:read")],
            ErrorCode::InvalidScope,
            "the gateway's scope, not the subject token's",
        ),
        (
            vec![("audience", ORDERS_AUD), ("scope", "openid orders:read")],
            ErrorCode::InvalidScope,
            "the subject token's scope, not the gateway's",
        ),
        (
            vec![("audience", ORDERS_AUD), ("scope", "orders:read admin")],
            ErrorCode::InvalidScope,
            "neither's",
        ),
        (
            vec![
                ("audience", ORDERS_AUD),
                (
                    "requested_token_type",
                    "urn:ietf:params:oauth:token-type:refresh_token",
                ),
            ],
            ErrorCode::InvalidRequest,
            "only access tokens are issued",
        ),
    ] {
        let err = swap(&c.op, gw, &subject.access_token, &extra)
            .await
            .expect_err(why);
        assert_eq!(err.code, code, "{why}: {err}");
    }
    // A refresh token is not a subject token, whatever its type claims to be.
    let refresh_token = subject.refresh_token.clone().expect("refresh token");
    for kind in [
        ACCESS_TOKEN_TYPE,
        "urn:ietf:params:oauth:token-type:refresh_token",
    ] {
        let form = params(&[
            ("grant_type", EXCHANGE),
            ("subject_token", &refresh_token),
            ("subject_token_type", kind),
            ("audience", ORDERS_AUD),
        ]);
        refused(
            c.op.provider.token(&form, &gw.credentials, &ctx()).await,
            ErrorCode::InvalidRequest,
        );
    }
    let refusals = refusals(&c.op).await;
    assert_eq!(refusals.len(), 10, "every refusal is on the record");
    assert_eq!(
        refusals.last().map(|r| r.0.as_str()),
        Some("invalid_target")
    );
    // Narrowed, the exchange goes through.
    let narrow = swap(
        &c.op,
        gw,
        &subject.access_token,
        &[("resource", ORDERS_AUD), ("scope", "orders:read")],
    )
    .await
    .expect("narrowed");
    assert_eq!(narrow.scope, "orders:read");
}

#[tokio::test]
async fn an_exchanged_token_acts_for_the_user_and_names_the_actor() {
    let c = chain().await;
    let alices = alice_token(&c).await;
    let subject = claims_of(&c.op, &alices.access_token);
    c.op.clock.advance(Duration::seconds(10));

    let issued = swap(
        &c.op,
        &c.gateway,
        &alices.access_token,
        &[("audience", ORDERS_AUD)],
    )
    .await
    .expect("exchanged");
    assert_eq!(issued.issued_token_type, Some(ACCESS_TOKEN_TYPE));
    assert_eq!(issued.token_type, "Bearer");
    assert_eq!(issued.refresh_token, None);
    assert_eq!(issued.id_token, None);
    assert_eq!(issued.expires_in, 300, "oauth.token_exchange_ttl_secs");
    assert_eq!(
        issued.scope, "orders:read orders:write",
        "what the subject token and the gateway share (openid left out)"
    );
    let wire = serde_json::to_value(&issued).expect("json");
    assert_eq!(wire["issued_token_type"], ACCESS_TOKEN_TYPE);
    assert!(wire.get("refresh_token").is_none());

    let claims = claims_of(&c.op, &issued.access_token);
    assert_eq!(claims.sub, subject.sub, "the user, not the gateway");
    assert_eq!(
        claims.aud,
        Audience::One(ORDERS_AUD.into()),
        "only the target"
    );
    assert_eq!(claims.client_id, c.gateway.id);
    assert_eq!(
        claims.act,
        Some(Actor {
            sub: c.gateway.id.clone(),
            client_id: Some(c.gateway.id.clone()),
            act: None,
        })
    );
    assert_eq!(claims.may_act, None);
    assert_eq!(claims.amr, subject.amr);
    assert_eq!(claims.acr, subject.acr);
    assert_eq!(claims.auth_time, subject.auth_time);
    assert_eq!(claims.gid, subject.gid, "revoked with the user's grant");
    assert_eq!(claims.uv, subject.uv);
    assert_ne!(claims.jti, subject.jti);
    assert_eq!(claims.exp - claims.iat, 300);

    // The orders service introspects it (it serves the audience) and sees the chain and the
    // narrowed scope; nobody else learns about it, and it is no userinfo token.
    let body =
        c.op.provider
            .introspect(
                &params(&[("token", &issued.access_token)]),
                &c.orders.credentials,
            )
            .await
            .expect("introspect");
    let body = introspection(&body);
    assert_eq!(body["sub"], subject.sub.as_str());
    assert_eq!(body["scope"], "orders:read orders:write");
    assert_eq!(body["client_id"], c.gateway.id.as_str());
    assert_eq!(body["aud"], ORDERS_AUD);
    assert_eq!(
        body["act"],
        json!({ "sub": c.gateway.id, "client_id": c.gateway.id })
    );
    assert!(!active(&c.op, &c.ledger, &issued.access_token).await);
    assert!(!active(&c.op, &c.web, &issued.access_token).await);
    refused(
        c.op.provider
            .userinfo(&issued.access_token, TokenPresentation::Bearer)
            .await,
        ErrorCode::InvalidToken,
    );
    // The user's own token is not described with an actor.
    let own =
        c.op.provider
            .introspect(
                &params(&[("token", &alices.access_token)]),
                &c.web.credentials,
            )
            .await
            .expect("introspect");
    assert!(introspection(&own).get("act").is_none());

    // Issuance is on the record with the grant and the chain.
    let issued_events = audited(&c.op, "oauth_token_issued").await;
    let event = &issued_events[0];
    assert_eq!(event.detail["grant_type"], EXCHANGE);
    assert_eq!(event.detail["client_id"], c.gateway.id.as_str());
    assert_eq!(event.detail["jti"], claims.jti.as_str());
    assert_eq!(event.user_id.as_deref(), Some(subject.sub.as_str()));
    assert_eq!(
        event.detail["act"],
        json!({ "sub": c.gateway.id, "client_id": c.gateway.id })
    );
    assert_eq!(event.detail["aud"], ORDERS_AUD);

    // Signing the user out everywhere ends the exchanged token too.
    c.op.provider
        .revoke_user(&subject.sub)
        .await
        .expect("revoke user");
    assert!(!active(&c.op, &c.orders, &issued.access_token).await);
}

#[tokio::test]
async fn a_token_exchanged_twice_carries_the_nested_chain() {
    let c = chain().await;
    let alices = alice_token(&c).await.access_token;
    let first = swap(&c.op, &c.gateway, &alices, &[("audience", ORDERS_AUD)])
        .await
        .expect("first exchange");
    // The gateway cannot exchange its own downstream token again: it is for the orders service.
    refused(
        swap(
            &c.op,
            &c.gateway,
            &first.access_token,
            &[("audience", ORDERS_AUD)],
        )
        .await,
        ErrorCode::InvalidRequest,
    );
    c.op.clock.advance(Duration::seconds(100));
    let form = params(&[
        ("grant_type", EXCHANGE),
        ("subject_token", &first.access_token),
        ("subject_token_type", JWT_TOKEN_TYPE),
        ("audience", LEDGER_AUD),
        ("scope", "orders:read"),
    ]);
    let second =
        c.op.provider
            .token(&form, &c.orders.credentials, &ctx())
            .await
            .expect("second exchange");
    assert_eq!(second.scope, "orders:read");
    assert_eq!(
        second.expires_in, 200,
        "never longer than the subject token's remaining lifetime"
    );
    let claims = claims_of(&c.op, &second.access_token);
    let expected = json!({
        "sub": c.orders.id,
        "client_id": c.orders.id,
        "act": { "sub": c.gateway.id, "client_id": c.gateway.id }
    });
    assert_eq!(serde_json::to_value(&claims.act).expect("json"), expected);
    assert_eq!(claims.aud, Audience::One(LEDGER_AUD.into()));
    assert_eq!(claims.client_id, c.orders.id);
    assert_eq!(claims.sub, claims_of(&c.op, &alices).sub);
    let body =
        c.op.provider
            .introspect(
                &params(&[("token", &second.access_token)]),
                &c.ledger.credentials,
            )
            .await
            .expect("introspect");
    assert_eq!(introspection(&body)["act"], expected);
    assert_eq!(body["scope"], "orders:read");
    // Widening on the second hop is refused like on the first.
    refused(
        swap(
            &c.op,
            &c.orders,
            &first.access_token,
            &[
                ("audience", LEDGER_AUD),
                ("scope", "orders:read billing:read"),
            ],
        )
        .await,
        ErrorCode::InvalidScope,
    );
}

#[tokio::test]
async fn dead_tampered_or_foreign_subject_tokens_are_refused() {
    let c = chain().await;
    let tokens = alice_token(&c).await;
    let good = tokens.access_token.clone();
    let to_orders = [("audience", ORDERS_AUD)];

    // Tampered: the payload names someone else under the same signature.
    let tampered = {
        use base64::Engine as _;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let parts: Vec<&str> = good.split('.').collect();
        let mut payload: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json");
        payload["sub"] = json!("01MALLORY");
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).expect("json"));
        format!("{}.{payload}.{}", parts[0], parts[2])
    };
    refused(
        swap(&c.op, &c.gateway, &tampered, &to_orders).await,
        ErrorCode::InvalidRequest,
    );
    refused(
        swap(&c.op, &c.gateway, "not-a-token", &to_orders).await,
        ErrorCode::InvalidRequest,
    );

    // Issued to another client, and not for an audience the gateway serves.
    let other = register(&c.op, |r| r.name = "Other".into()).await;
    let foreign = tokens_at(&c, &other, "openid").await;
    refused(
        swap(&c.op, &c.gateway, &foreign.access_token, &to_orders).await,
        ErrorCode::InvalidRequest,
    );

    // Revoked (by the client it was issued to): refused although unexpired.
    swap(&c.op, &c.gateway, &good, &to_orders)
        .await
        .expect("live");
    c.op.provider
        .revoke(&params(&[("token", &good)]), &c.web.credentials, &ctx())
        .await
        .expect("revoke");
    refused(
        swap(&c.op, &c.gateway, &good, &to_orders).await,
        ErrorCode::InvalidRequest,
    );

    // Expired: no leeway for our own token.
    let fresh = tokens_at(&c, &c.web, "orders:read").await;
    swap(&c.op, &c.gateway, &fresh.access_token, &to_orders)
        .await
        .expect("live");
    c.op.clock.advance(Duration::seconds(fresh.expires_in));
    refused(
        swap(&c.op, &c.gateway, &fresh.access_token, &to_orders).await,
        ErrorCode::InvalidRequest,
    );

    let refusals = refusals(&c.op).await;
    assert_eq!(refusals.len(), 5, "{refusals:?}");
    assert!(refusals.iter().all(|(e, _)| e == "invalid_request"));
    assert!(
        refusals[4].1.contains("subject_token"),
        "the reason says what was wrong: {refusals:?}"
    );
    assert!(
        refusals[2]
            .1
            .contains("not for an audience the client serves"),
        "{refusals:?}"
    );
}

#[tokio::test]
async fn actor_tokens_and_may_act() {
    let c = chain().await;
    let alices = alice_token(&c).await.access_token;
    let own_token = |app: &App| {
        let provider = c.op.provider.clone();
        let credentials = app.credentials.clone();
        async move {
            provider
                .token(
                    &params(&[("grant_type", "client_credentials")]),
                    &credentials,
                    &ctx(),
                )
                .await
                .expect("client credentials")
                .access_token
        }
    };
    let gateway_own = own_token(&c.gateway).await;
    let orders_own = own_token(&c.orders).await;
    fn with_actor(actor: &str) -> [(&'static str, &str); 3] {
        [
            ("audience", ORDERS_AUD),
            ("actor_token", actor),
            ("actor_token_type", ACCESS_TOKEN_TYPE),
        ]
    }
    // An actor token proves who acts only for the client it was issued to.
    refused(
        swap(&c.op, &c.gateway, &alices, &with_actor(&orders_own)).await,
        ErrorCode::InvalidRequest,
    );
    refused(
        swap(&c.op, &c.gateway, &alices, &with_actor("x.y.z")).await,
        ErrorCode::InvalidRequest,
    );
    let issued = swap(&c.op, &c.gateway, &alices, &with_actor(&gateway_own))
        .await
        .expect("with the gateway's own token as actor");
    let act = claims_of(&c.op, &issued.access_token).act.expect("act");
    assert_eq!(act.sub, c.gateway.id);
    assert_eq!(act.client_id.as_deref(), Some(c.gateway.id.as_str()));
    // A delegated token is no actor token.
    let delegated_form = params(&[
        ("grant_type", EXCHANGE),
        ("subject_token", &gateway_own),
        ("subject_token_type", ACCESS_TOKEN_TYPE),
        ("audience", ORDERS_AUD),
    ]);
    let delegated =
        c.op.provider
            .token(&delegated_form, &c.gateway.credentials, &ctx())
            .await
            .expect("the gateway's own token, exchanged");
    refused(
        swap(
            &c.op,
            &c.gateway,
            &alices,
            &with_actor(&delegated.access_token),
        )
        .await,
        ErrorCode::InvalidRequest,
    );

    // may_act (§4.4): a subject token naming who may act for it.
    let subject = claims_of(&c.op, &alices);
    let sign = |may_act: &str| {
        let claims = AccessTokenClaims {
            may_act: Some(Actor {
                sub: may_act.to_owned(),
                client_id: None,
                act: None,
            }),
            jti: format!("may-act-{may_act}"),
            ..subject.clone()
        };
        c.op.keys
            .sign(Algorithm::ES256, "at+jwt", &claims)
            .expect("sign")
    };
    refused(
        swap(
            &c.op,
            &c.gateway,
            &sign(&c.orders.id),
            &[("audience", ORDERS_AUD)],
        )
        .await,
        ErrorCode::InvalidRequest,
    );
    swap(
        &c.op,
        &c.gateway,
        &sign(&c.gateway.id),
        &[("audience", ORDERS_AUD)],
    )
    .await
    .expect("the gateway is the party may_act names");
}

#[tokio::test]
async fn the_client_s_shorter_lifetime_bounds_the_exchange() {
    let c = chain().await;
    let brief = register(&c.op, |r| {
        machine(r, "Brief", "https://brief.example");
        exchanger(r, &[ORDERS_AUD], &["orders:read"]);
        r.audience = Vec::new();
        r.access_token_ttl_secs = Some(60);
    })
    .await;
    // Alice's token must be for the brief service to be exchanged by it.
    let web = register(&c.op, |r| {
        r.name = "Web 2".into();
        r.audience = vec!["https://brief.example".into()];
        r.scopes = ["orders:read"].map(str::to_owned).into();
    })
    .await;
    let tokens = tokens_at(&c, &web, "orders:read").await;
    let issued = swap(
        &c.op,
        &brief,
        &tokens.access_token,
        &[("audience", ORDERS_AUD)],
    )
    .await
    .expect("exchanged");
    assert_eq!(issued.expires_in, 60);
}

/// The key service as the server wires it (`describe_api_key` over `authn::api_keys`): the
/// live keys it knows, and how often it was asked.
#[derive(Default)]
struct KeyService {
    live: std::collections::HashMap<String, ApiKeyIntrospection>,
    asked: std::sync::atomic::AtomicUsize,
}

impl KeyService {
    fn with(mut self, key: &str, sub: &str, scopes: &[&str], expires_in: Option<i64>) -> Self {
        let expires_at = expires_in.map(|secs| crate::provider::T0 + Duration::seconds(secs));
        self.live.insert(
            key.to_owned(),
            ApiKeyIntrospection {
                sub: sub.to_owned(),
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
                key_id: format!("id-of-{key}"),
                expires_at,
            },
        );
        self
    }

    fn asked(&self) -> usize {
        self.asked.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// `client` exchanges the key `subject` (typed as an API key) with these extra parameters,
/// `keys` answering for keys.
async fn swap_key(
    op: &Op,
    client: &App,
    keys: &KeyService,
    subject: &str,
    extra: &[(&str, &str)],
) -> Result<TokenResponse, OAuthError> {
    let mut form = vec![
        ("grant_type", EXCHANGE),
        ("subject_token", subject),
        ("subject_token_type", API_KEY_TOKEN_TYPE),
    ];
    form.extend_from_slice(extra);
    op.provider
        .token_with(
            &params(&form),
            &client.credentials,
            &ctx(),
            trustgate_oauth::provider::Possession::default(),
            |key| async move {
                keys.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(keys.live.get(&key).cloned())
            },
        )
        .await
}

const SERVICE_KEY: &str = "tg_test_01SERVICEKEY";
const PAT: &str = "tg_test_01ALICEPAT";
const BRIEF_KEY: &str = "tg_test_01BRIEFKEY";
const EXPIRED_KEY: &str = "tg_test_01EXPIREDKEY";

fn key_service() -> KeyService {
    KeyService::default()
        .with(
            SERVICE_KEY,
            "service:01CI",
            &["orders:read", "orders:write", "admin"],
            None,
        )
        .with(PAT, "user:01ALICE", &["orders:read"], Some(3600))
        .with(BRIEF_KEY, "service:01CI", &["orders:read"], Some(100))
        // Listed by a key service that forgot its own expiry: the provider checks it too.
        .with(EXPIRED_KEY, "service:01CI", &["orders:read"], Some(0))
}

/// The gateway as a resource server that opted in to API keys.
async fn key_gateway(c: &Chain) -> App {
    register(&c.op, |r| {
        machine(r, "Key gateway", GATEWAY_AUD);
        exchanger(
            r,
            &[ORDERS_AUD],
            &["orders:read", "orders:write", "billing:read"],
        );
        if let Some(policy) = &mut r.token_exchange {
            policy.api_keys = true;
        }
    })
    .await
}

#[tokio::test]
async fn only_a_client_that_opted_in_exchanges_api_keys() {
    let c = chain().await;
    let keys = key_service();
    // The gateway of the chain may exchange access tokens, not keys: invalid_request (RFC 8693
    // §2.2.2), and the key service is not even asked.
    let err = refused(
        swap_key(
            &c.op,
            &c.gateway,
            &keys,
            SERVICE_KEY,
            &[("audience", ORDERS_AUD)],
        )
        .await,
        ErrorCode::InvalidRequest,
    );
    assert!(err.description.contains("token_exchange.api_keys"), "{err}");
    assert_eq!(keys.asked(), 0);
    // Only a resource server may opt in.
    let mut not_a_resource_server = ClientRegistration::named("Not a resource server");
    not_a_resource_server.redirect_uris = Vec::new();
    exchanger(&mut not_a_resource_server, &[ORDERS_AUD], &["orders:read"]);
    if let Some(policy) = &mut not_a_resource_server.token_exchange {
        policy.api_keys = true;
    }
    let err =
        c.op.provider
            .clients()
            .create(not_a_resource_server)
            .await
            .expect_err("no resource_audiences");
    assert_eq!(err.code(), "invalid_token_exchange");
    // A client that opted in, through the endpoint without a key service: no key is live.
    let gw = key_gateway(&c).await;
    let form = params(&[
        ("grant_type", EXCHANGE),
        ("subject_token", SERVICE_KEY),
        ("subject_token_type", API_KEY_TOKEN_TYPE),
        ("audience", ORDERS_AUD),
    ]);
    refused(
        c.op.provider.token(&form, &gw.credentials, &ctx()).await,
        ErrorCode::InvalidRequest,
    );
    swap_key(&c.op, &gw, &keys, SERVICE_KEY, &[("audience", ORDERS_AUD)])
        .await
        .expect("opted in, with the key service");
    assert_eq!(keys.asked(), 1);
    let refusals = refusals(&c.op).await;
    assert_eq!(refusals.len(), 2, "{refusals:?}");
    assert!(refusals.iter().all(|(e, _)| e == "invalid_request"));
}

#[tokio::test]
async fn an_exchanged_api_key_acts_for_its_owner_and_names_the_key() {
    let c = chain().await;
    let keys = key_service();
    let gw = key_gateway(&c).await;
    c.op.clock.advance(Duration::seconds(10));
    let issued = swap_key(&c.op, &gw, &keys, SERVICE_KEY, &[("audience", ORDERS_AUD)])
        .await
        .expect("exchanged");
    assert_eq!(issued.issued_token_type, Some(ACCESS_TOKEN_TYPE));
    assert_eq!(issued.token_type, "Bearer");
    assert_eq!(issued.refresh_token, None);
    assert_eq!(issued.expires_in, 300, "oauth.token_exchange_ttl_secs");
    assert_eq!(
        issued.scope, "orders:read orders:write",
        "what the key and the gateway share (admin is not the gateway's)"
    );
    let claims = claims_of(&c.op, &issued.access_token);
    assert_eq!(
        claims.sub, "service:01CI",
        "the key's owner, as introspection names it"
    );
    assert_eq!(claims.key_id.as_deref(), Some("id-of-tg_test_01SERVICEKEY"));
    assert_eq!(claims.aud, Audience::One(ORDERS_AUD.into()));
    assert_eq!(claims.client_id, gw.id);
    assert_eq!(
        claims.act,
        Some(Actor {
            sub: gw.id.clone(),
            client_id: Some(gw.id.clone()),
            act: None,
        })
    );
    // A key is no sign-in and belongs to no grant.
    assert_eq!(claims.auth_time, None);
    assert_eq!((claims.amr, claims.acr), (None, None));
    assert_eq!((claims.uv, claims.gid, claims.sid), (None, None, None));
    assert_eq!(claims.may_act, None);

    // The orders service sees the key's id at introspection, and exchanging the token on keeps
    // it and nests the chain.
    let body =
        c.op.provider
            .introspect(
                &params(&[("token", &issued.access_token)]),
                &c.orders.credentials,
            )
            .await
            .expect("introspect");
    let body = introspection(&body);
    assert_eq!(body["sub"], "service:01CI");
    assert_eq!(body["key_id"], "id-of-tg_test_01SERVICEKEY");
    assert_eq!(body["token_type"], "Bearer");
    assert!(
        !active(&c.op, &gw, &issued.access_token).await,
        "not for the gateway"
    );
    let onward = swap(
        &c.op,
        &c.orders,
        &issued.access_token,
        &[("audience", LEDGER_AUD), ("scope", "orders:read")],
    )
    .await
    .expect("exchanged on");
    let onward = claims_of(&c.op, &onward.access_token);
    assert_eq!(onward.sub, "service:01CI");
    assert_eq!(onward.key_id, claims.key_id);
    assert_eq!(
        onward.act.and_then(|a| a.act).map(|a| a.sub),
        Some(gw.id.clone())
    );

    // The issuance is on the record: the client acted, for the key's owner, with which key.
    let issued_events = audited(&c.op, "oauth_token_issued").await;
    let event = issued_events
        .iter()
        .find(|e| e.detail["jti"] == claims.jti.as_str())
        .expect("issuance recorded");
    assert_eq!(event.detail["grant_type"], EXCHANGE);
    assert_eq!(event.detail["subject"], "service:01CI");
    assert_eq!(event.detail["key_id"], "id-of-tg_test_01SERVICEKEY");
    assert_eq!(event.user_id, None, "a service's key, not a user's sign-in");

    // A personal access token: the user, as `user:<id>`, within the token's scope.
    let issued = swap_key(&c.op, &gw, &keys, PAT, &[("audience", ORDERS_AUD)])
        .await
        .expect("a personal access token");
    assert_eq!(issued.scope, "orders:read");
    let claims = claims_of(&c.op, &issued.access_token);
    assert_eq!(claims.sub, "user:01ALICE");
    assert_eq!(claims.key_id.as_deref(), Some("id-of-tg_test_01ALICEPAT"));
    assert_eq!(claims.auth_time, None);
}

#[tokio::test]
async fn api_key_exchanges_only_narrow_and_dead_keys_are_refused() {
    let c = chain().await;
    let keys = key_service();
    let gw = key_gateway(&c).await;
    let to_orders = [("audience", ORDERS_AUD)];
    for (key, extra, code, why) in [
        (
            "tg_test_01UNKNOWN",
            &to_orders[..],
            ErrorCode::InvalidRequest,
            "a key the key service does not know (revoked, expired, owner disabled, never issued)",
        ),
        (
            EXPIRED_KEY,
            &to_orders[..],
            ErrorCode::InvalidRequest,
            "an expired key",
        ),
        (
            SERVICE_KEY,
            &[
                ("audience", ORDERS_AUD),
                ("scope", "orders:read billing:read"),
            ][..],
            ErrorCode::InvalidScope,
            "the gateway's scope, not the key's",
        ),
        (
            SERVICE_KEY,
            &[("audience", ORDERS_AUD), ("scope", "admin")][..],
            ErrorCode::InvalidScope,
            "the key's scope, not the gateway's",
        ),
        (
            PAT,
            &[("audience", ORDERS_AUD), ("scope", "orders:write")][..],
            ErrorCode::InvalidScope,
            "wider than the personal access token",
        ),
        (
            SERVICE_KEY,
            &[("audience", LEDGER_AUD)][..],
            ErrorCode::InvalidTarget,
            "a target the gateway may not request",
        ),
        (
            SERVICE_KEY,
            &[
                ("audience", ORDERS_AUD),
                ("actor_token", PAT),
                ("actor_token_type", API_KEY_TOKEN_TYPE),
            ][..],
            ErrorCode::InvalidRequest,
            "a key is never an actor token",
        ),
    ] {
        let err = swap_key(&c.op, &gw, &keys, key, extra)
            .await
            .expect_err(why);
        assert_eq!(err.code, code, "{why}: {err}");
    }
    // The types are not interchangeable: a key typed as an access token, or an access token
    // typed as a key, is no valid subject token.
    refused(
        swap(&c.op, &gw, SERVICE_KEY, &to_orders).await,
        ErrorCode::InvalidRequest,
    );
    let alices = alice_token(&c).await.access_token;
    refused(
        swap_key(&c.op, &gw, &keys, &alices, &to_orders).await,
        ErrorCode::InvalidRequest,
    );
    let refusals = refusals(&c.op).await;
    assert_eq!(
        refusals.len(),
        9,
        "every refusal is on the record: {refusals:?}"
    );
    assert!(
        refusals
            .iter()
            .any(|(e, why)| e == "invalid_request" && why.contains("API key")),
        "{refusals:?}"
    );

    // A key that expires soon bounds the token's lifetime.
    c.op.clock.advance(Duration::seconds(40));
    let brief = swap_key(&c.op, &gw, &keys, BRIEF_KEY, &to_orders)
        .await
        .expect("a live key");
    assert_eq!(brief.expires_in, 60, "never past the key's expiry");
    c.op.clock.advance(Duration::seconds(60));
    refused(
        swap_key(&c.op, &gw, &keys, BRIEF_KEY, &to_orders).await,
        ErrorCode::InvalidRequest,
    );
}
