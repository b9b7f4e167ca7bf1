//! `Provider` over a real store (migrated in-memory SQLite), no HTTP: the code flow with PKCE, a
//! replayed code revoking its grant, wrong verifiers, refresh rotation and reuse, client
//! credentials, device polling (pending, slow_down growing the interval, approval redeemed
//! once, denial, expiry), introspection of revoked tokens, and revocation. Negative paths first:
//! each refusal is checked for its error code and for what it leaves behind.

use std::sync::Arc;
use trustgate_oauth::provider::TokenPresentation;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use trustgate_audit::{Auditor, AuditorConfig};
use trustgate_core::{Clock, ManualClock, Secret};
use trustgate_oauth::claims::IdTokenClaims;
use trustgate_oauth::clients::{
    AuthMethod, ClientRegistration, ClientRegistry, GrantType, PresentedCredentials,
};
use trustgate_oauth::provider::{
    AuthorizeOutcome, ConsentDecision, EndUser, Provider, RequestContext, Settings, TokenResponse,
};
use trustgate_oauth::request::Params;
use trustgate_oauth::{Endpoints, ErrorCode, OAuthError};
use trustgate_store::testing::TestDatabase;
use trustgate_store_api::{AuditEvent, AuditFilter, NewUser, Store, UserStatus};
use trustgate_tokens::{Expectation, KeyManager};

pub(crate) const ISSUER: &str = "https://id.example.com";
const REDIRECT_URI: &str = "https://app.example.com/cb";
pub(crate) const T0: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

pub(crate) struct Op {
    _db: TestDatabase,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) auditor: Auditor,
    pub(crate) clock: ManualClock,
    pub(crate) keys: KeyManager,
    pub(crate) provider: Provider,
}

pub(crate) async fn op() -> Op {
    let db = TestDatabase::sqlite_in_memory().await;
    let store = db.store.clone();
    let clock = ManualClock::new(T0);
    let keys = crate::support::signing_keys(store.clone(), &clock).await;
    let clients = ClientRegistry::new(store.clone(), Arc::new(clock.clone()));
    let auditor = Auditor::new(
        store.clone(),
        Arc::new(clock.clone()),
        AuditorConfig::default(),
    );
    let provider = Provider::new(
        store.clone(),
        auditor.clone(),
        keys.clone(),
        clients,
        Arc::new(clock.clone()),
        Endpoints::new(ISSUER),
        Settings::default(),
    );
    Op {
        _db: db,
        store,
        auditor,
        clock,
        keys,
        provider,
    }
}

/// A confidential web app (client_secret_basic) with the code and refresh grants.
pub(crate) struct App {
    pub(crate) id: String,
    pub(crate) credentials: PresentedCredentials,
}

pub(crate) async fn register(op: &Op, edit: impl FnOnce(&mut ClientRegistration)) -> App {
    let mut reg = ClientRegistration {
        redirect_uris: vec![REDIRECT_URI.into()],
        ..ClientRegistration::named("Web App")
    };
    edit(&mut reg);
    let public = reg.auth_method == AuthMethod::None;
    let (client, secret) = op.provider.clients().create(reg).await.expect("register");
    let credentials = match secret {
        Some(secret) => PresentedCredentials::Basic {
            client_id: client.id.clone(),
            secret,
        },
        None if public => PresentedCredentials::None {
            client_id: client.id.clone(),
        },
        None => panic!("a confidential client without a secret"),
    };
    App {
        id: client.id,
        credentials,
    }
}

/// `alice`, signed in with a password at the current time.
pub(crate) async fn alice(op: &Op) -> EndUser {
    let user = op
        .store
        .create_user(
            &NewUser {
                id: "01ALICE".into(),
                username: "alice".into(),
                email: "alice@example.com".into(),
                name: Some("Alice".into()),
                locale: None,
                attributes: Default::default(),
                password_hash: None,
            },
            op.clock.now(),
        )
        .await
        .expect("user");
    EndUser {
        user_id: user.id,
        session_id: "session-1".into(),
        auth_time: op.clock.now(),
        amr: vec!["pwd".into()],
        acr: "1".into(),
        can_step_up: false,
    }
}

pub(crate) fn params(pairs: &[(&str, &str)]) -> Params {
    Params::from_pairs(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    )
    .expect("params")
}

pub(crate) fn ctx() -> RequestContext {
    RequestContext::default()
}

/// A PKCE verifier and its S256 challenge, computed here independently of the crate.
pub(crate) fn pkce(seed: &str) -> (String, String) {
    let verifier = format!("verifier-{seed}-{}", "x".repeat(43));
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

fn query(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .expect("url")
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Runs `/oauth2/authorize` for `user`, approving consent, and returns the code.
pub(crate) async fn code_for(op: &Op, app: &App, user: &EndUser, challenge: &str) -> String {
    code_for_scope(op, app, user, challenge, "openid profile offline_access").await
}

/// [`code_for`] with this scope.
pub(crate) async fn code_for_scope(
    op: &Op,
    app: &App,
    user: &EndUser,
    challenge: &str,
    scope: &str,
) -> String {
    let request = params(&[
        ("response_type", "code"),
        ("client_id", &app.id),
        ("redirect_uri", REDIRECT_URI),
        ("scope", scope),
        ("state", "st-1"),
        ("nonce", "n-1"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ]);
    let outcome = op
        .provider
        .authorize(&request, Some(user), ConsentDecision::Approve, &ctx())
        .await;
    let AuthorizeOutcome::Redirect(url) = outcome else {
        panic!("expected a redirect with a code, got {outcome:?}");
    };
    assert!(url.starts_with(REDIRECT_URI), "{url}");
    assert_eq!(query(&url, "state").as_deref(), Some("st-1"));
    assert_eq!(query(&url, "iss").as_deref(), Some(ISSUER));
    assert_eq!(query(&url, "error"), None, "{url}");
    query(&url, "code").expect("code")
}

pub(crate) async fn exchange(
    op: &Op,
    app: &App,
    code: &str,
    verifier: Option<&str>,
) -> Result<TokenResponse, OAuthError> {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT_URI),
    ];
    if let Some(verifier) = verifier {
        form.push(("code_verifier", verifier));
    }
    op.provider
        .token(&params(&form), &app.credentials, &ctx())
        .await
}

async fn refresh(op: &Op, app: &App, token: &str) -> Result<TokenResponse, OAuthError> {
    let form = params(&[("grant_type", "refresh_token"), ("refresh_token", token)]);
    op.provider.token(&form, &app.credentials, &ctx()).await
}

/// Whether introspection by `caller` says the token is active.
pub(crate) async fn active(op: &Op, caller: &App, token: &str) -> bool {
    let body = op
        .provider
        .introspect(&params(&[("token", token)]), &caller.credentials)
        .await
        .expect("introspection answers");
    body["active"] == Value::Bool(true)
}

/// The audit events of this kind, newest first (streamed kinds once written).
pub(crate) async fn audited(op: &Op, kind: &str) -> Vec<AuditEvent> {
    assert!(op.auditor.flush(std::time::Duration::from_secs(10)).await);
    let filter = AuditFilter {
        kind: Some(kind.to_owned()),
        ..AuditFilter::default()
    };
    op.store
        .list_audit(&filter, 10)
        .await
        .expect("audit")
        .into_iter()
        .map(|r| r.event)
        .collect()
}

pub(crate) fn refused<T: std::fmt::Debug>(
    result: Result<T, OAuthError>,
    code: ErrorCode,
) -> OAuthError {
    let err = result.expect_err("must be refused");
    assert_eq!(err.code, code, "{err}");
    err
}

/// A code flow ready to exchange: the app, alice, a code and its verifier.
async fn code_flow(op: &Op) -> (App, EndUser, String, String) {
    let app = register(op, |_| {}).await;
    let user = alice(op).await;
    let (verifier, challenge) = pkce("a");
    let code = code_for(op, &app, &user, &challenge).await;
    (app, user, code, verifier)
}

/// A code flow's tokens: the app, alice, and what the code was exchanged for.
async fn tokens_for_alice(op: &Op) -> (App, EndUser, TokenResponse) {
    let (app, user, code, verifier) = code_flow(op).await;
    let tokens = exchange(op, &app, &code, Some(&verifier))
        .await
        .expect("tokens");
    (app, user, tokens)
}

/// A second web app.
async fn other_app(op: &Op) -> App {
    register(op, |r| r.name = "Other".into()).await
}

#[tokio::test]
async fn code_with_pkce_issues_tokens_that_say_who_and_how() {
    let op = op().await;
    let (app, user, code, verifier) = code_flow(&op).await;
    op.clock.advance(Duration::seconds(5));
    let tokens = exchange(&op, &app, &code, Some(&verifier))
        .await
        .expect("tokens");
    assert_eq!(tokens.token_type, "Bearer");
    assert_eq!(tokens.expires_in, 600);
    assert_eq!(tokens.scope, "offline_access openid profile");
    let refresh_token = tokens.refresh_token.as_deref().expect("refresh token");
    assert!(refresh_token.starts_with("tgr_"));

    let id_token = tokens.id_token.as_deref().expect("ID token");
    let claims = trustgate_tokens::verify::<IdTokenClaims>(
        id_token,
        &op.keys.resolver(),
        &Expectation {
            issuer: ISSUER,
            audiences: &[&app.id],
            typ: None,
            now: op.clock.now(),
            leeway: Duration::ZERO,
            require_exp: true,
            check_expiry: true,
        },
    )
    .expect("our ID token verifies")
    .claims;
    assert_eq!(claims.sub, user.user_id);
    assert_eq!(claims.nonce.as_deref(), Some("n-1"));
    assert_eq!(claims.auth_time, Some(T0.unix_timestamp()));
    assert_eq!(claims.amr, Some(vec!["pwd".to_owned()]));
    assert_eq!(claims.acr.as_deref(), Some("1"));
    assert_eq!(claims.sid.as_deref(), Some("session-1"));
    assert_eq!(claims.azp, app.id);
    assert!(claims.at_hash.is_some());

    assert!(active(&op, &app, &tokens.access_token).await);
    assert!(active(&op, &app, refresh_token).await);
    let info = op
        .provider
        .userinfo(&tokens.access_token, TokenPresentation::Bearer)
        .await
        .expect("userinfo");
    assert_eq!(info["sub"], user.user_id.as_str());
    assert_eq!(info["preferred_username"], "alice");
    assert_eq!(info.get("email"), None, "no email scope, no email");

    // The consent was remembered and audited.
    let consents = op.provider.consents(&user.user_id).await.expect("consents");
    assert_eq!(consents.len(), 1);
    assert_eq!(
        consents[0].scopes,
        ["offline_access", "openid", "profile"].map(str::to_owned)
    );
    assert_eq!(audited(&op, "oauth_consent_granted").await.len(), 1);
}

#[tokio::test]
async fn a_replayed_code_is_refused_and_revokes_the_grant() {
    let op = op().await;
    let (app, _user, code, verifier) = code_flow(&op).await;
    let tokens = exchange(&op, &app, &code, Some(&verifier))
        .await
        .expect("first redemption");
    let refresh_token = tokens.refresh_token.expect("refresh token");

    refused(
        exchange(&op, &app, &code, Some(&verifier)).await,
        ErrorCode::InvalidGrant,
    );
    refused(
        refresh(&op, &app, &refresh_token).await,
        ErrorCode::InvalidGrant,
    );
    assert!(!active(&op, &app, &tokens.access_token).await);
    assert!(!active(&op, &app, &refresh_token).await);
    let replays = audited(&op, "oauth_code_replayed").await;
    assert_eq!(replays.len(), 1);
    assert_eq!(replays[0].outcome, "denied");
    assert_eq!(replays[0].detail["grant_revoked"], true);
}

#[tokio::test]
async fn a_wrong_or_missing_verifier_burns_the_code() {
    let op = op().await;
    let (app, user, code, verifier) = code_flow(&op).await;
    let (other_verifier, _) = pkce("b");
    let err = refused(
        exchange(&op, &app, &code, Some(&other_verifier)).await,
        ErrorCode::InvalidGrant,
    );
    assert!(err.description.contains("code_verifier"), "{err}");
    // Redeemed by the failed attempt: the right verifier comes too late.
    refused(
        exchange(&op, &app, &code, Some(&verifier)).await,
        ErrorCode::InvalidGrant,
    );

    let (_, challenge) = pkce("c");
    let code = code_for(&op, &app, &user, &challenge).await;
    let err = refused(
        exchange(&op, &app, &code, None).await,
        ErrorCode::InvalidGrant,
    );
    assert!(err.description.contains("required"), "{err}");
}

#[tokio::test]
async fn codes_are_bound_to_client_redirect_uri_and_lifetime() {
    let op = op().await;
    let (app, user, code, verifier) = code_flow(&op).await;
    let other = other_app(&op).await;
    refused(
        exchange(&op, &other, &code, Some(&verifier)).await,
        ErrorCode::InvalidGrant,
    );

    let (verifier, challenge) = pkce("d");
    let code = code_for(&op, &app, &user, &challenge).await;
    let form = params(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", "https://app.example.com/other"),
        ("code_verifier", &verifier),
    ]);
    refused(
        op.provider.token(&form, &app.credentials, &ctx()).await,
        ErrorCode::InvalidGrant,
    );

    let code = code_for(&op, &app, &user, &challenge).await;
    op.clock.advance(Duration::seconds(60));
    let err = refused(
        exchange(&op, &app, &code, Some(&verifier)).await,
        ErrorCode::InvalidGrant,
    );
    assert!(err.description.contains("expired"), "{err}");
    refused(
        exchange(&op, &app, "no-such-code", Some(&verifier)).await,
        ErrorCode::InvalidGrant,
    );
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reuse_revokes_the_family() {
    let op = op().await;
    // This client opted into a 10 s grace for concurrent refreshes (the default is none).
    let app = register(&op, |r| r.refresh_grace_secs = Some(10)).await;
    let user = alice(&op).await;
    let (verifier, challenge) = pkce("g");
    let code = code_for(&op, &app, &user, &challenge).await;
    let first = exchange(&op, &app, &code, Some(&verifier))
        .await
        .expect("tokens");
    let r1 = first.refresh_token.expect("r1");

    // Another client cannot use it, and a wider scope is refused without rotating it.
    let other = other_app(&op).await;
    refused(refresh(&op, &other, &r1).await, ErrorCode::InvalidGrant);
    let widen = params(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", &r1),
        ("scope", "openid profile email"),
    ]);
    refused(
        op.provider.token(&widen, &app.credentials, &ctx()).await,
        ErrorCode::InvalidScope,
    );

    let second = refresh(&op, &app, &r1).await.expect("rotation");
    let r2 = second.refresh_token.clone().expect("r2");
    assert_ne!(r1, r2);
    assert!(second.id_token.is_some(), "openid: a fresh ID token");
    assert!(
        !active(&op, &app, &r1).await,
        "a rotated token is not active"
    );
    assert!(active(&op, &app, &r2).await);

    // Within the grace period the old token still works once (two tabs refreshing at once),
    // and that is on the record.
    op.clock.advance(Duration::seconds(9));
    let concurrent = refresh(&op, &app, &r1).await.expect("within grace");
    let r3 = concurrent.refresh_token.expect("r3");
    assert_eq!(audited(&op, "oauth_refresh_grace_used").await.len(), 1);

    // A second use, even within the grace, is a replay: the whole family dies.
    let err = refused(refresh(&op, &app, &r1).await, ErrorCode::InvalidGrant);
    assert!(err.description.contains("used already"), "{err}");
    for live_until_now in [&r2, &r3] {
        refused(
            refresh(&op, &app, live_until_now).await,
            ErrorCode::InvalidGrant,
        );
    }
    assert!(!active(&op, &app, &second.access_token).await);
    assert!(!active(&op, &app, &first.access_token).await);
}

/// Without an opted-in grace (the default), the first replay of a rotated refresh token revokes
/// the family at once: no second valid token chain can be minted from a stolen token.
#[tokio::test]
async fn without_a_grace_the_first_replay_revokes_the_family() {
    let op = op().await;
    let (app, _user, first) = tokens_for_alice(&op).await;
    let r1 = first.refresh_token.expect("r1");
    let second = refresh(&op, &app, &r1).await.expect("rotation");
    let r2 = second.refresh_token.expect("r2");
    refused(refresh(&op, &app, &r1).await, ErrorCode::InvalidGrant);
    refused(refresh(&op, &app, &r2).await, ErrorCode::InvalidGrant);
    assert!(!active(&op, &app, &second.access_token).await);
}

#[tokio::test]
async fn a_disabled_user_cannot_refresh() {
    let op = op().await;
    let (app, user, tokens) = tokens_for_alice(&op).await;
    op.store
        .set_user_status(&user.user_id, UserStatus::Disabled, op.clock.now())
        .await
        .expect("disable");
    let r1 = tokens.refresh_token.expect("refresh token");
    refused(refresh(&op, &app, &r1).await, ErrorCode::InvalidGrant);
    assert!(!active(&op, &app, &tokens.access_token).await);
}

#[tokio::test]
async fn client_credentials_tokens_name_the_client_and_no_user() {
    let op = op().await;
    let service = register(&op, |r| {
        r.name = "Service".into();
        r.redirect_uris = Vec::new();
        r.grant_types = vec![GrantType::ClientCredentials];
        r.scopes = ["openid", "reports:read", "reports:write"]
            .map(str::to_owned)
            .into();
    })
    .await;
    let token = |scope: Option<&str>| {
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        let form = params(&form);
        let provider = op.provider.clone();
        let credentials = service.credentials.clone();
        async move { provider.token(&form, &credentials, &ctx()).await }
    };
    let all = token(None).await.expect("default scope");
    assert_eq!(
        all.scope, "reports:read reports:write",
        "user scopes left out"
    );
    assert_eq!(all.refresh_token, None);
    assert_eq!(all.id_token, None);
    let introspection = op
        .provider
        .introspect(
            &params(&[("token", &all.access_token)]),
            &service.credentials,
        )
        .await
        .expect("introspect");
    assert_eq!(introspection["active"], true);
    assert_eq!(introspection["sub"], service.id.as_str());
    assert_eq!(introspection["client_id"], service.id.as_str());

    let narrow = token(Some("reports:read")).await.expect("narrow");
    assert_eq!(narrow.scope, "reports:read");
    refused(token(Some("openid")).await, ErrorCode::InvalidScope);
    refused(token(Some("admin")).await, ErrorCode::InvalidScope);
    refused(
        op.provider
            .userinfo(&all.access_token, TokenPresentation::Bearer)
            .await
            .map(|_| ()),
        ErrorCode::InvalidToken,
    );

    // A client not registered for the grant, and a wrong secret.
    let web = register(&op, |_| {}).await;
    let form = params(&[("grant_type", "client_credentials")]);
    refused(
        op.provider.token(&form, &web.credentials, &ctx()).await,
        ErrorCode::UnauthorizedClient,
    );
    let wrong = PresentedCredentials::Basic {
        client_id: service.id.clone(),
        secret: Secret::new("tgcs_wrong"),
    };
    refused(
        op.provider.token(&form, &wrong, &ctx()).await,
        ErrorCode::InvalidClient,
    );
    let password = params(&[("grant_type", "password"), ("username", "alice")]);
    refused(
        op.provider
            .token(&password, &service.credentials, &ctx())
            .await,
        ErrorCode::UnsupportedGrantType,
    );

    // Exactly the two issued tokens are in the trail, as the client's own.
    let issued = audited(&op, "oauth_token_issued").await;
    assert_eq!(issued.len(), 2, "{issued:?}");
    for event in &issued {
        assert_eq!(event.outcome, "success");
        assert_eq!(event.user_id, None);
        assert_eq!(event.actor, Some(format!("client:{}", service.id)));
        assert_eq!(event.detail["grant_type"], "client_credentials");
        assert_eq!(event.detail["client_id"], service.id.as_str());
    }
    assert_eq!(issued[0].detail["scope"], "reports:read");
}

async fn tv(op: &Op) -> App {
    register(op, |r| {
        r.name = "TV".into();
        r.redirect_uris = Vec::new();
        r.auth_method = AuthMethod::None;
        r.grant_types = vec![GrantType::DeviceCode, GrantType::RefreshToken];
    })
    .await
}

async fn poll(op: &Op, app: &App, device_code: &str) -> Result<TokenResponse, OAuthError> {
    let form = params(&[
        ("grant_type", GrantType::DeviceCode.as_str()),
        ("device_code", device_code),
    ]);
    op.provider.token(&form, &app.credentials, &ctx()).await
}

#[tokio::test]
async fn device_polls_are_paced_and_an_approval_is_redeemed_once() {
    let op = op().await;
    let tv = tv(&op).await;
    let user = alice(&op).await;
    let started = op
        .provider
        .device_authorize(&params(&[("scope", "openid profile")]), &tv.credentials)
        .await
        .expect("device authorization");
    assert_eq!(started.interval, 5);
    assert_eq!(started.expires_in, 600);
    let code = started.device_code.as_str();

    refused(poll(&op, &tv, code).await, ErrorCode::AuthorizationPending);
    // Too soon: slow down, and the interval grows by 5 s each time.
    op.clock.advance(Duration::seconds(1));
    refused(poll(&op, &tv, code).await, ErrorCode::SlowDown);
    op.clock.advance(Duration::seconds(5));
    refused(poll(&op, &tv, code).await, ErrorCode::SlowDown);
    op.clock.advance(Duration::seconds(14));
    refused(poll(&op, &tv, code).await, ErrorCode::SlowDown);
    op.clock.advance(Duration::seconds(20));
    refused(poll(&op, &tv, code).await, ErrorCode::AuthorizationPending);

    // Another client's poll knows nothing of the code.
    let other = tv_named(&op, "Other TV").await;
    refused(poll(&op, &other, code).await, ErrorCode::InvalidGrant);

    let prompt = op
        .provider
        .device_prompt(&started.user_code.to_lowercase())
        .await
        .expect("prompt")
        .expect("pending code");
    assert_eq!(prompt.client_name, "TV");
    assert_eq!(prompt.scopes, ["openid", "profile"]);
    assert!(
        op.provider
            .device_decide(&started.user_code, true, &user, &ctx())
            .await
            .expect("approve")
    );
    assert!(
        !op.provider
            .device_decide(&started.user_code, false, &user, &ctx())
            .await
            .expect("decided already"),
        "a decision is final"
    );

    op.clock.advance(Duration::seconds(25));
    let tokens = poll(&op, &tv, code).await.expect("approved");
    assert_eq!(tokens.scope, "openid profile");
    assert!(tokens.id_token.is_some());
    assert!(tokens.refresh_token.is_some());
    op.clock.advance(Duration::seconds(25));
    refused(poll(&op, &tv, code).await, ErrorCode::InvalidGrant);
}

async fn tv_named(op: &Op, name: &str) -> App {
    register(op, |r| {
        r.name = name.into();
        r.redirect_uris = Vec::new();
        r.auth_method = AuthMethod::None;
        r.grant_types = vec![GrantType::DeviceCode];
    })
    .await
}

#[tokio::test]
async fn device_codes_denied_or_expired() {
    let op = op().await;
    let tv = tv(&op).await;
    let user = alice(&op).await;
    let start = || {
        let provider = op.provider.clone();
        let credentials = tv.credentials.clone();
        async move {
            provider
                .device_authorize(&params(&[("scope", "openid")]), &credentials)
                .await
                .expect("device authorization")
        }
    };
    let denied = start().await;
    assert!(
        op.provider
            .device_decide(&denied.user_code, false, &user, &ctx())
            .await
            .expect("deny")
    );
    refused(
        poll(&op, &tv, &denied.device_code).await,
        ErrorCode::AccessDenied,
    );

    let expiring = start().await;
    op.clock.advance(Duration::minutes(10));
    refused(
        poll(&op, &tv, &expiring.device_code).await,
        ErrorCode::ExpiredToken,
    );
    assert_eq!(
        op.provider
            .device_prompt(&expiring.user_code)
            .await
            .expect("prompt"),
        None
    );
    assert!(
        !op.provider
            .device_decide(&expiring.user_code, true, &user, &ctx())
            .await
            .expect("too late")
    );
    refused(poll(&op, &tv, "unknown").await, ErrorCode::InvalidGrant);

    let wider = op
        .provider
        .device_authorize(&params(&[("scope", "openid admin")]), &tv.credentials)
        .await;
    refused(wider, ErrorCode::InvalidScope);
}

#[tokio::test]
async fn revoking_a_refresh_token_ends_its_grant() {
    let op = op().await;
    let (app, _user, tokens) = tokens_for_alice(&op).await;
    let refresh_token = tokens.refresh_token.expect("refresh token");

    // Another client may not revoke it, and its attempt changes nothing.
    let other = other_app(&op).await;
    let form = params(&[("token", &refresh_token)]);
    refused(
        op.provider.revoke(&form, &other.credentials, &ctx()).await,
        ErrorCode::UnauthorizedClient,
    );
    assert!(active(&op, &app, &refresh_token).await);
    assert!(
        !active(&op, &other, &refresh_token).await,
        "refresh tokens introspect only for their client"
    );

    op.provider
        .revoke(&form, &app.credentials, &ctx())
        .await
        .expect("revoked");
    assert!(!active(&op, &app, &refresh_token).await);
    assert!(
        !active(&op, &app, &tokens.access_token).await,
        "the access token names the revoked grant"
    );
    refused(
        refresh(&op, &app, &refresh_token).await,
        ErrorCode::InvalidGrant,
    );
    // Revoking again, or something unknown, is not an error (RFC 7009 §2.2).
    op.provider
        .revoke(&form, &app.credentials, &ctx())
        .await
        .expect("again");
    op.provider
        .revoke(&params(&[("token", "nonsense")]), &app.credentials, &ctx())
        .await
        .expect("unknown");
}

#[tokio::test]
async fn revoking_an_access_token_leaves_the_grant() {
    let op = op().await;
    let (app, _user, tokens) = tokens_for_alice(&op).await;
    let form = params(&[("token", &tokens.access_token)]);
    let other = other_app(&op).await;
    refused(
        op.provider.revoke(&form, &other.credentials, &ctx()).await,
        ErrorCode::UnauthorizedClient,
    );
    assert!(active(&op, &app, &tokens.access_token).await);

    op.provider
        .revoke(&form, &app.credentials, &ctx())
        .await
        .expect("revoked");
    assert!(!active(&op, &app, &tokens.access_token).await);
    refused(
        op.provider
            .userinfo(&tokens.access_token, TokenPresentation::Bearer)
            .await
            .map(|_| ()),
        ErrorCode::InvalidToken,
    );
    let refresh_token = tokens.refresh_token.expect("refresh token");
    assert!(
        active(&op, &app, &refresh_token).await,
        "the grant lives on"
    );
    refresh(&op, &app, &refresh_token).await.expect("refresh");
}

#[tokio::test]
async fn introspection_needs_a_confidential_caller_and_a_live_token() {
    let op = op().await;
    let (app, user, tokens) = tokens_for_alice(&op).await;
    let spa = register(&op, |r| {
        r.name = "SPA".into();
        r.auth_method = AuthMethod::None;
    })
    .await;
    refused(
        op.provider
            .introspect(
                &params(&[("token", &tokens.access_token)]),
                &spa.credentials,
            )
            .await,
        ErrorCode::InvalidClient,
    );
    refused(
        op.provider.introspect(&params(&[]), &app.credentials).await,
        ErrorCode::InvalidRequest,
    );
    assert!(!active(&op, &app, "a.b.c").await);
    assert!(!active(&op, &app, "tgr_unknown").await);

    // Signing out everywhere moves the user's token version: the access token is dead for
    // introspection although it has not expired.
    assert!(active(&op, &app, &tokens.access_token).await);
    op.provider
        .revoke_user(&user.user_id)
        .await
        .expect("revoke user");
    assert!(!active(&op, &app, &tokens.access_token).await);

    // And an expired token is inactive whatever else holds.
    let (verifier, challenge) = pkce("e");
    let code = code_for(&op, &app, &user, &challenge).await;
    let fresh = exchange(&op, &app, &code, Some(&verifier))
        .await
        .expect("tokens");
    assert!(active(&op, &app, &fresh.access_token).await);
    // No leeway for our own tokens (same clock): active until the second before `exp`,
    // inactive at `exp` (RFC 7519: valid only before it), not 60 s later.
    op.clock.advance(
        Duration::seconds(fresh.expires_in - 1)
            - Duration::nanoseconds(i64::from(op.clock.now().nanosecond())),
    );
    assert!(
        active(&op, &app, &fresh.access_token).await,
        "a second before exp"
    );
    op.clock.advance(Duration::seconds(1));
    assert!(!active(&op, &app, &fresh.access_token).await, "at exp");
}

/// RFC 7662 §4: only the client a token was issued to, or a resource server it is for, learns
/// anything about it; every other confidential client gets `active: false`, as for garbage.
#[tokio::test]
async fn introspection_is_limited_to_the_token_s_client_and_its_resource_servers() {
    let op = op().await;
    let (app, _user, tokens) = tokens_for_alice(&op).await;
    let machine = |name: &'static str, audience: Vec<String>, serves: Vec<String>| {
        let op = &op;
        async move {
            register(op, |r| {
                r.name = name.into();
                r.redirect_uris = Vec::new();
                r.grant_types = vec![GrantType::ClientCredentials];
                r.audience = audience;
                r.resource_audiences = serves;
            })
            .await
        }
    };
    let stranger = machine("Stranger", vec![], vec![]).await;
    assert!(
        active(&op, &app, &tokens.access_token).await,
        "its own client"
    );
    assert!(
        !active(&op, &stranger, &tokens.access_token).await,
        "another confidential client learns nothing from a token for the issuer only"
    );

    let orders = machine("Orders API", vec![], vec!["https://orders.example".into()]).await;
    let billing = machine(
        "Billing API",
        vec![],
        vec!["https://billing.example".into()],
    )
    .await;
    let worker = machine(
        "Worker",
        vec!["https://orders.example".into(), orders.id.clone()],
        vec![],
    )
    .await;
    let cc = op
        .provider
        .token(
            &params(&[("grant_type", "client_credentials")]),
            &worker.credentials,
            &ctx(),
        )
        .await
        .expect("token");
    assert!(
        active(&op, &orders, &cc.access_token).await,
        "a resource server it is for"
    );
    assert!(
        active(&op, &worker, &cc.access_token).await,
        "its own client"
    );
    assert!(
        !active(&op, &billing, &cc.access_token).await,
        "another resource server"
    );
    assert!(!active(&op, &stranger, &cc.access_token).await);
    // The audience may also be the resource server's client id.
    let by_id = machine("Ledger", vec![], vec![]).await;
    let worker2 = machine("Worker 2", vec![by_id.id.clone()], vec![]).await;
    let cc2 = op
        .provider
        .token(
            &params(&[("grant_type", "client_credentials")]),
            &worker2.credentials,
            &ctx(),
        )
        .await
        .expect("token");
    assert!(active(&op, &by_id, &cc2.access_token).await);
    assert!(!active(&op, &orders, &cc2.access_token).await);
}
