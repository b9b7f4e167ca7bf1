//! DPoP (RFC 9449) at the provider, over a real store, with proofs made by
//! `trustgate_testkit::dpop` (independent of the verifier): the nonce dance, bound access
//! tokens for every grant, public clients' refresh tokens bound to the key, `dpop_jkt` and PAR
//! binding the code, and every refusal — replayed proof (also on a second replica), wrong
//! `htm`/`htu`, stale `iat`, missing or foreign nonce, another key, `alg: none`, HMAC, a bound
//! token used as a bearer token or with another key.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use time::Duration;
use trustgate_core::Clock;
use trustgate_oauth::ErrorCode;
use trustgate_oauth::clients::{AuthMethod, ClientRegistry, GrantType};
use trustgate_oauth::provider::{
    AuthorizeOutcome, ConsentDecision, DpopProof, Provider, Settings, TokenPresentation,
    TokenResponse,
};
use trustgate_oauth::{Endpoints, OAuthError};
use trustgate_testkit::dpop::{DpopKey, ath, claims, hmac_proof, unsigned_proof};

use crate::provider::{App, ISSUER, Op, alice, code_for, ctx, op, params, pkce, refused, register};

const TOKEN_URL: &str = "https://id.example.com/oauth2/token";
const USERINFO_URL: &str = "https://id.example.com/oidc/userinfo";
const REDIRECT_URI: &str = "https://app.example.com/cb";

fn now(op: &Op) -> i64 {
    op.clock.now().unix_timestamp()
}

/// A token-endpoint proof by `key` carrying the provider's current nonce.
fn token_proof(op: &Op, key: &DpopKey) -> String {
    let nonce = op
        .provider
        .dpop_nonce()
        .expect("nonces are required by default");
    key.proof("POST", TOKEN_URL, now(op), json!({ "nonce": nonce }))
}

async fn token(
    op: &Op,
    app: &App,
    form: &[(&str, &str)],
    proof: Option<&str>,
) -> Result<TokenResponse, OAuthError> {
    token_at(&op.provider, app, form, proof).await
}

/// A token request to `provider` (one replica of several).
async fn token_at(
    provider: &Provider,
    app: &App,
    form: &[(&str, &str)],
    proof: Option<&str>,
) -> Result<TokenResponse, OAuthError> {
    provider
        .token_with(
            &params(form),
            &app.credentials,
            &ctx(),
            proof.map(DpopProof),
            |_| async { Ok(None) },
        )
        .await
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWS");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("json")
}

async fn public_app(op: &Op) -> App {
    register(op, |r| {
        r.name = "SPA".into();
        r.auth_method = AuthMethod::None;
    })
    .await
}

async fn code_exchange(
    op: &Op,
    app: &App,
    code: &str,
    verifier: &str,
    proof: Option<&str>,
) -> Result<TokenResponse, OAuthError> {
    token(
        op,
        app,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", verifier),
        ],
        proof,
    )
    .await
}

#[tokio::test]
async fn a_code_exchanged_with_a_proof_gives_a_token_bound_to_its_key() {
    let op = op().await;
    let app = public_app(&op).await;
    let user = alice(&op).await;
    let key = DpopKey::generate();

    // Without the server's nonce: use_dpop_nonce (and the code is not spent).
    let (verifier, challenge) = pkce("d");
    let code = code_for(&op, &app, &user, &challenge).await;
    let bare = key.proof("POST", TOKEN_URL, now(&op), json!({}));
    refused(
        code_exchange(&op, &app, &code, &verifier, Some(&bare)).await,
        ErrorCode::UseDpopNonce,
    );
    let foreign_nonce = key.proof("POST", TOKEN_URL, now(&op), json!({ "nonce": "made-up" }));
    refused(
        code_exchange(&op, &app, &code, &verifier, Some(&foreign_nonce)).await,
        ErrorCode::UseDpopNonce,
    );

    let proof = token_proof(&op, &key);
    let tokens = code_exchange(&op, &app, &code, &verifier, Some(&proof))
        .await
        .expect("tokens");
    assert_eq!(tokens.token_type, "DPoP");
    let access = claims_of(&tokens.access_token);
    assert_eq!(access["cnf"]["jkt"], key.thumbprint().as_str());

    // The same proof again (a new code, so only the proof is old): replayed.
    let (verifier, challenge) = pkce("e");
    let code = code_for(&op, &app, &user, &challenge).await;
    let err = refused(
        code_exchange(&op, &app, &code, &verifier, Some(&proof)).await,
        ErrorCode::InvalidDpopProof,
    );
    assert!(err.description.contains("used before"), "{err}");

    // Userinfo: only with a proof by the key, for this token and request.
    let bearer = op
        .provider
        .userinfo(&tokens.access_token, TokenPresentation::Bearer)
        .await;
    let err = refused(bearer, ErrorCode::InvalidToken);
    assert!(err.description.contains("DPoP"), "{err}");
    let userinfo = |proof: String| {
        let provider = op.provider.clone();
        let token = tokens.access_token.clone();
        async move {
            provider
                .userinfo(
                    &token,
                    TokenPresentation::Dpop {
                        proof: DpopProof(&proof),
                        method: "GET",
                    },
                )
                .await
        }
    };
    let ath_ok = json!({ "ath": ath(&tokens.access_token) });
    let good = key.proof("GET", USERINFO_URL, now(&op), ath_ok.clone());
    assert_eq!(
        userinfo(good.clone()).await.expect("userinfo")["sub"],
        user.user_id.as_str()
    );
    refused(userinfo(good).await, ErrorCode::InvalidDpopProof);
    let other = DpopKey::generate();
    let by_other = other.proof("GET", USERINFO_URL, now(&op), ath_ok.clone());
    let err = refused(userinfo(by_other).await, ErrorCode::InvalidToken);
    assert!(err.description.contains("another key"), "{err}");
    for wrong in [
        key.proof("GET", USERINFO_URL, now(&op), json!({})),
        key.proof(
            "GET",
            USERINFO_URL,
            now(&op),
            json!({ "ath": ath("another token") }),
        ),
        key.proof("POST", USERINFO_URL, now(&op), ath_ok.clone()),
        key.proof("GET", TOKEN_URL, now(&op), ath_ok.clone()),
    ] {
        refused(userinfo(wrong).await, ErrorCode::InvalidDpopProof);
    }
}

#[tokio::test]
async fn a_bad_proof_is_refused_and_issues_nothing() {
    let op = op().await;
    let app = register(&op, |r| {
        r.name = "Service".into();
        r.redirect_uris = Vec::new();
        r.grant_types = vec![GrantType::ClientCredentials];
        r.scopes = vec!["reports:read".into()];
    })
    .await;
    let key = DpopKey::generate();
    let other = DpopKey::generate();
    let nonce = op.provider.dpop_nonce().expect("nonce");
    let at = now(&op);
    let with_nonce = |htm: &str, htu: &str, iat: i64| {
        let mut c = claims(htm, htu, iat);
        c["nonce"] = json!(nonce);
        c
    };
    let good = with_nonce("POST", TOKEN_URL, at);
    let mut foreign_header = key.header();
    foreign_header["jwk"] = other.public_jwk();
    let mut typ_jwt = key.header();
    typ_jwt["typ"] = json!("JWT");
    let cases = [
        (
            "wrong htm",
            key.sign(&key.header(), &with_nonce("GET", TOKEN_URL, at)),
        ),
        (
            "wrong htu",
            key.sign(
                &key.header(),
                &with_nonce("POST", "https://id.example.com/oauth2/par", at),
            ),
        ),
        (
            "another host",
            key.sign(
                &key.header(),
                &with_nonce("POST", "https://evil.example/oauth2/token", at),
            ),
        ),
        (
            "stale iat",
            key.sign(&key.header(), &with_nonce("POST", TOKEN_URL, at - 61)),
        ),
        (
            "future iat",
            key.sign(&key.header(), &with_nonce("POST", TOKEN_URL, at + 60)),
        ),
        ("signed by another key", key.sign(&foreign_header, &good)),
        ("typ JWT", key.sign(&typ_jwt, &good)),
        ("alg none", unsigned_proof(&key, &good)),
        ("HMAC", hmac_proof(&good)),
        ("not a JWT", "not-a-proof".to_owned()),
    ];
    for (what, proof) in cases {
        let result = token(
            &op,
            &app,
            &[("grant_type", "client_credentials")],
            Some(&proof),
        )
        .await;
        let err = result.expect_err(what);
        assert_eq!(err.code, ErrorCode::InvalidDpopProof, "{what}: {err}");
    }
    let audited = crate::provider::audited(&op, "oauth_token_issued").await;
    assert!(audited.is_empty(), "a refused proof issued a token");

    // The same request with a good proof: a bound client-credentials token.
    let issued = token(
        &op,
        &app,
        &[("grant_type", "client_credentials")],
        Some(&key.sign(&key.header(), &good)),
    )
    .await
    .expect("issued");
    assert_eq!(issued.token_type, "DPoP");
    assert_eq!(
        claims_of(&issued.access_token)["cnf"]["jkt"],
        key.thumbprint().as_str()
    );
    // Introspection tells the resource server the binding (RFC 9449 §6.2).
    let body = op
        .provider
        .introspect(
            &params(&[("token", &issued.access_token)]),
            &app.credentials,
        )
        .await
        .expect("introspect");
    assert_eq!(body["active"], true);
    assert_eq!(body["token_type"], "DPoP");
    assert_eq!(body["cnf"]["jkt"], key.thumbprint().as_str());
    // Without a proof the same client gets a plain bearer token.
    let bearer = token(&op, &app, &[("grant_type", "client_credentials")], None)
        .await
        .expect("bearer");
    assert_eq!(bearer.token_type, "Bearer");
    assert_eq!(claims_of(&bearer.access_token).get("cnf"), None);
}

#[tokio::test]
async fn a_public_client_s_refresh_token_is_bound_to_its_key() {
    let op = op().await;
    let app = public_app(&op).await;
    let user = alice(&op).await;
    let key = DpopKey::generate();
    let (verifier, challenge) = pkce("r");
    let code = code_for(&op, &app, &user, &challenge).await;
    let tokens = code_exchange(&op, &app, &code, &verifier, Some(&token_proof(&op, &key)))
        .await
        .expect("tokens");
    let refresh_token = tokens.refresh_token.expect("refresh token");
    let refresh = |proof: Option<String>| {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.as_str()),
        ];
        let op = &op;
        let app = &app;
        async move { token(op, app, &form, proof.as_deref()).await }
    };
    // A thief with the token but not the key: refused, and the token is not rotated.
    let err = refused(refresh(None).await, ErrorCode::InvalidDpopProof);
    assert!(err.description.contains("bound"), "{err}");
    let thief = DpopKey::generate();
    refused(
        refresh(Some(token_proof(&op, &thief))).await,
        ErrorCode::InvalidDpopProof,
    );
    let renewed = refresh(Some(token_proof(&op, &key)))
        .await
        .expect("the owner refreshes");
    assert_eq!(renewed.token_type, "DPoP");
    assert_eq!(
        claims_of(&renewed.access_token)["cnf"]["jkt"],
        key.thumbprint().as_str()
    );
    // The rotated token stays bound.
    let next = renewed.refresh_token.expect("rotated");
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", next.as_str()),
    ];
    refused(
        token(&op, &app, &form, None).await,
        ErrorCode::InvalidDpopProof,
    );
}

#[tokio::test]
async fn a_confidential_client_s_refresh_token_is_not_bound_but_its_access_tokens_are() {
    let op = op().await;
    let app = register(&op, |_| {}).await;
    let user = alice(&op).await;
    let key = DpopKey::generate();
    let (verifier, challenge) = pkce("c");
    let code = code_for(&op, &app, &user, &challenge).await;
    let tokens = code_exchange(&op, &app, &code, &verifier, Some(&token_proof(&op, &key)))
        .await
        .expect("tokens");
    assert_eq!(tokens.token_type, "DPoP");
    let refresh_token = tokens.refresh_token.expect("refresh");
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token.as_str()),
    ];
    let renewed = token(&op, &app, &form, None)
        .await
        .expect("bound to the client's authentication instead");
    assert_eq!(renewed.token_type, "Bearer");
}

#[tokio::test]
async fn dpop_jkt_and_par_bind_the_code_to_a_key() {
    let op = op().await;
    let app = public_app(&op).await;
    let user = alice(&op).await;
    let key = DpopKey::generate();
    let (verifier, challenge) = pkce("j");
    let authorize = |extra: Vec<(&'static str, String)>| {
        let mut form: Vec<(&str, String)> = vec![
            ("response_type", "code"),
            ("client_id", app.id.as_str()),
            ("redirect_uri", REDIRECT_URI),
            ("scope", "openid"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_owned()))
        .collect();
        form.extend(extra);
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let request = params(&pairs);
        let provider = op.provider.clone();
        let user = user.clone();
        async move {
            match provider
                .authorize(&request, Some(&user), ConsentDecision::Approve, &ctx())
                .await
            {
                AuthorizeOutcome::Redirect(url) => url::Url::parse(&url)
                    .expect("url")
                    .query_pairs()
                    .find(|(k, _)| k == "code")
                    .map(|(_, v)| v.into_owned())
                    .ok_or(url),
                other => Err(format!("{other:?}")),
            }
        }
    };
    let malformed = authorize(vec![("dpop_jkt", "short".into())]).await;
    assert!(
        malformed
            .as_ref()
            .is_err_and(|url| url.contains("error=invalid_request")),
        "{malformed:?}"
    );
    let code = authorize(vec![("dpop_jkt", key.thumbprint())])
        .await
        .expect("code");
    refused(
        code_exchange(&op, &app, &code, &verifier, None).await,
        ErrorCode::InvalidDpopProof,
    );
    let code = authorize(vec![("dpop_jkt", key.thumbprint())])
        .await
        .expect("code");
    let other = DpopKey::generate();
    refused(
        code_exchange(&op, &app, &code, &verifier, Some(&token_proof(&op, &other))).await,
        ErrorCode::InvalidDpopProof,
    );
    let code = authorize(vec![("dpop_jkt", key.thumbprint())])
        .await
        .expect("code");
    let tokens = code_exchange(&op, &app, &code, &verifier, Some(&token_proof(&op, &key)))
        .await
        .expect("the key's holder redeems it");
    assert_eq!(tokens.token_type, "DPoP");

    // PAR: the proof sent with the push binds the code (RFC 9449 §10.1).
    let par_url = "https://id.example.com/oauth2/par";
    let nonce = op.provider.dpop_nonce().expect("nonce");
    let pushed = op
        .provider
        .push(
            &params(&[
                ("response_type", "code"),
                ("client_id", &app.id),
                ("redirect_uri", REDIRECT_URI),
                ("scope", "openid"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ]),
            &app.credentials,
            Some(DpopProof(&key.proof(
                "POST",
                par_url,
                now(&op),
                json!({ "nonce": nonce }),
            ))),
        )
        .await
        .expect("pushed");
    let code = authorize(vec![("request_uri", pushed.request_uri)])
        .await
        .expect("code");
    refused(
        code_exchange(&op, &app, &code, &verifier, Some(&token_proof(&op, &other))).await,
        ErrorCode::InvalidDpopProof,
    );
    // A push whose dpop_jkt names another key than its proof is refused.
    let mismatch = op
        .provider
        .push(
            &params(&[
                ("response_type", "code"),
                ("client_id", &app.id),
                ("redirect_uri", REDIRECT_URI),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("dpop_jkt", &other.thumbprint()),
            ]),
            &app.credentials,
            Some(DpopProof(&key.proof(
                "POST",
                par_url,
                now(&op),
                json!({ "nonce": op.provider.dpop_nonce() }),
            ))),
        )
        .await;
    refused(mismatch, ErrorCode::InvalidDpopProof);
}

#[tokio::test]
async fn a_client_registered_for_dpop_must_send_a_proof() {
    let op = op().await;
    let app = register(&op, |r| {
        r.name = "Bound".into();
        r.redirect_uris = Vec::new();
        r.grant_types = vec![GrantType::ClientCredentials];
        r.scopes = vec!["reports:read".into()];
        r.dpop_bound_access_tokens = true;
    })
    .await;
    let form = [("grant_type", "client_credentials")];
    refused(
        token(&op, &app, &form, None).await,
        ErrorCode::InvalidDpopProof,
    );
    let key = DpopKey::generate();
    let issued = token(&op, &app, &form, Some(&token_proof(&op, &key)))
        .await
        .expect("with a proof");
    assert_eq!(issued.token_type, "DPoP");
}

#[tokio::test]
async fn a_second_replica_refuses_a_spent_proof_and_accepts_the_first_s_nonce() {
    let op = op().await;
    let app = register(&op, |r| {
        r.name = "Service".into();
        r.redirect_uris = Vec::new();
        r.grant_types = vec![GrantType::ClientCredentials];
        r.scopes = vec!["reports:read".into()];
    })
    .await;
    let clock = Arc::new(op.clock.clone());
    // Both replicas seal nonces with the deployment's key.
    let key_of_deployment = trustgate_core::SealingKey::generate();
    let replica = |settings: Settings| {
        Provider::new(
            op.store.clone(),
            op.auditor.clone(),
            op.keys.clone(),
            ClientRegistry::new(op.store.clone(), clock.clone()),
            clock.clone(),
            Endpoints::new(ISSUER),
            settings,
        )
    };
    let settings = || {
        let mut settings = Settings::default();
        settings.dpop.nonce_key = key_of_deployment.clone();
        settings
    };
    let (first, second) = (replica(settings()), replica(settings()));
    let key = DpopKey::generate();
    let nonce = first.dpop_nonce().expect("nonce");
    let proof = key.proof("POST", TOKEN_URL, now(&op), json!({ "nonce": nonce }));
    let form = [("grant_type", "client_credentials")];
    token_at(&second, &app, &form, Some(&proof))
        .await
        .expect("the second replica takes the first's nonce");
    refused(
        token_at(&first, &app, &form, Some(&proof)).await,
        ErrorCode::InvalidDpopProof,
    );
    refused(
        token_at(&second, &app, &form, Some(&proof)).await,
        ErrorCode::InvalidDpopProof,
    );

    // A deployment with another key does not take the nonce.
    let stranger = replica(Settings::default());
    let fresh = key.proof("POST", TOKEN_URL, now(&op), json!({ "nonce": nonce }));
    refused(
        token_at(&stranger, &app, &form, Some(&fresh)).await,
        ErrorCode::UseDpopNonce,
    );

    // Nonces rotate: one from two windows ago is refused everywhere.
    op.clock.advance(Duration::minutes(11));
    let late = key.proof("POST", TOKEN_URL, now(&op), json!({ "nonce": nonce }));
    refused(
        token_at(&first, &app, &form, Some(&late)).await,
        ErrorCode::UseDpopNonce,
    );
}

#[tokio::test]
async fn a_token_requested_over_mutual_tls_is_bound_to_the_client_certificate() {
    use trustgate_oauth::provider::Possession;
    let op = op().await;
    let app = register(&op, |_| {}).await;
    let user = alice(&op).await;
    let (verifier, challenge) = pkce("m");
    let code = code_for(&op, &app, &user, &challenge).await;
    let certificate = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";
    let tokens = op
        .provider
        .token_with(
            &params(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT_URI),
                ("code_verifier", &verifier),
            ]),
            &app.credentials,
            &ctx(),
            Possession {
                dpop: None,
                certificate: Some(certificate),
            },
            |_| async { Ok(None) },
        )
        .await
        .expect("tokens");
    // RFC 8705 §3: still a bearer token by type, bound by its cnf.
    assert_eq!(tokens.token_type, "Bearer");
    assert_eq!(
        claims_of(&tokens.access_token)["cnf"]["x5t#S256"],
        certificate
    );
    let body = op
        .provider
        .introspect(
            &params(&[("token", &tokens.access_token)]),
            &app.credentials,
        )
        .await
        .expect("introspect");
    assert_eq!(body["cnf"]["x5t#S256"], certificate);
    let userinfo = |over: Option<&'static str>| {
        let provider = op.provider.clone();
        let token = tokens.access_token.clone();
        async move {
            provider
                .userinfo_over(&token, TokenPresentation::Bearer, over)
                .await
        }
    };
    assert_eq!(
        userinfo(Some(certificate)).await.expect("same certificate")["sub"],
        user.user_id.as_str()
    );
    for other in [None, Some("another-certificate-thumbprint")] {
        let err = refused(userinfo(other).await, ErrorCode::InvalidToken);
        assert!(err.description.contains("certificate"), "{err}");
    }
}

#[tokio::test]
async fn over_mutual_tls_the_aliases_are_published_and_proofs_name_them() {
    use trustgate_oauth::provider::Possession;
    let op = op().await;
    let clock = Arc::new(op.clock.clone());
    let mtls = Provider::new(
        op.store.clone(),
        op.auditor.clone(),
        op.keys.clone(),
        ClientRegistry::new(op.store.clone(), clock.clone()),
        clock,
        Endpoints::new(ISSUER),
        Settings {
            mtls_endpoints: Some(Endpoints::new("https://mtls.id.example.com")),
            ..Settings::default()
        },
    );
    let discovery = mtls.discovery();
    assert_eq!(
        discovery["tls_client_certificate_bound_access_tokens"],
        true
    );
    assert_eq!(
        discovery["mtls_endpoint_aliases"]["token_endpoint"],
        "https://mtls.id.example.com/oauth2/token"
    );
    assert_eq!(
        discovery["token_endpoint"], TOKEN_URL,
        "the main endpoints stay"
    );
    assert!(
        op.provider
            .discovery()
            .get("mtls_endpoint_aliases")
            .is_none()
    );
    let methods = |doc: &Value| doc["token_endpoint_auth_methods_supported"].to_string();
    assert!(methods(&discovery).contains("tls_client_auth"));
    assert!(!methods(&op.provider.discovery()).contains("tls_client_auth"));

    let app = register(&op, |r| {
        r.name = "Service".into();
        r.redirect_uris = Vec::new();
        r.grant_types = vec![GrantType::ClientCredentials];
        r.scopes = vec!["reports:read".into()];
    })
    .await;
    let key = DpopKey::generate();
    let nonce = mtls.dpop_nonce().expect("nonce");
    let request = |htu: &'static str, certificate: Option<&'static str>| {
        let proof = key.proof("POST", htu, now(&op), json!({ "nonce": nonce }));
        let provider = mtls.clone();
        let credentials = app.credentials.clone();
        async move {
            provider
                .token_with(
                    &params(&[("grant_type", "client_credentials")]),
                    &credentials,
                    &ctx(),
                    Possession {
                        dpop: Some(DpopProof(&proof)),
                        certificate,
                    },
                    |_| async { Ok(None) },
                )
                .await
        }
    };
    let alias = "https://mtls.id.example.com/oauth2/token";
    let issued = request(alias, Some("thumb"))
        .await
        .expect("a proof for the alias, over mutual TLS");
    let cnf = &claims_of(&issued.access_token)["cnf"];
    assert_eq!(
        (cnf["jkt"].as_str(), cnf["x5t#S256"].as_str()),
        (Some(key.thumbprint().as_str()), Some("thumb"))
    );
    refused(
        request(TOKEN_URL, Some("thumb")).await,
        ErrorCode::InvalidDpopProof,
    );
    refused(request(alias, None).await, ErrorCode::InvalidDpopProof);

    // PAR over mutual TLS: the proof names the alias it reached, not the issuer's PAR URL.
    let spa = public_app(&op).await;
    let (_, challenge) = pkce("p");
    let push = |htu: &'static str, certificate: Option<&'static str>| {
        let proof = key.proof("POST", htu, now(&op), json!({ "nonce": mtls.dpop_nonce() }));
        let provider = mtls.clone();
        let credentials = spa.credentials.clone();
        let form = params(&[
            ("response_type", "code"),
            ("client_id", &spa.id),
            ("redirect_uri", REDIRECT_URI),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ]);
        async move {
            provider
                .push(
                    &form,
                    &credentials,
                    Possession {
                        dpop: Some(DpopProof(&proof)),
                        certificate,
                    },
                )
                .await
        }
    };
    let par_alias = "https://mtls.id.example.com/oauth2/par";
    push(par_alias, Some("thumb"))
        .await
        .expect("a proof for the PAR alias, over mutual TLS");
    refused(
        push("https://id.example.com/oauth2/par", Some("thumb")).await,
        ErrorCode::InvalidDpopProof,
    );
    refused(push(par_alias, None).await, ErrorCode::InvalidDpopProof);
}

#[tokio::test]
async fn a_public_client_s_refresh_token_is_bound_to_its_certificate() {
    use trustgate_oauth::provider::Possession;
    let op = op().await;
    let user = alice(&op).await;
    // RFC 8705 §4: a public client's refresh tokens are bound to the certificate it used; a
    // confidential client's are bound to its authentication.
    for (app, bound) in [
        (public_app(&op).await, true),
        (register(&op, |_| {}).await, false),
    ] {
        let (verifier, challenge) = pkce("c");
        let code = code_for(&op, &app, &user, &challenge).await;
        let request = |form: Vec<(&'static str, String)>, certificate: Option<&'static str>| {
            let provider = op.provider.clone();
            let credentials = app.credentials.clone();
            async move {
                let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
                provider
                    .token_with(
                        &params(&form),
                        &credentials,
                        &ctx(),
                        Possession {
                            dpop: None,
                            certificate,
                        },
                        |_| async { Ok(None) },
                    )
                    .await
            }
        };
        let tokens = request(
            vec![
                ("grant_type", "authorization_code".to_owned()),
                ("code", code),
                ("redirect_uri", REDIRECT_URI.to_owned()),
                ("code_verifier", verifier),
            ],
            Some("cert-a"),
        )
        .await
        .expect("tokens over mutual TLS");
        let refresh = |token: &str| {
            vec![
                ("grant_type", "refresh_token".to_owned()),
                ("refresh_token", token.to_owned()),
            ]
        };
        let first = tokens.refresh_token.expect("refresh token");
        if !bound {
            request(refresh(&first), None)
                .await
                .expect("a confidential client refreshes without the certificate");
            continue;
        }
        // Without the certificate or with another: refused, and the token is not rotated.
        for other in [None, Some("cert-b")] {
            let err = refused(
                request(refresh(&first), other).await,
                ErrorCode::InvalidGrant,
            );
            assert!(err.description.contains("certificate"), "{err}");
        }
        let renewed = request(refresh(&first), Some("cert-a"))
            .await
            .expect("the certificate's holder refreshes");
        assert_eq!(
            claims_of(&renewed.access_token)["cnf"]["x5t#S256"],
            "cert-a"
        );
        let next = renewed.refresh_token.expect("rotated");
        refused(request(refresh(&next), None).await, ErrorCode::InvalidGrant);
    }
}
