//! The pages in-process (`tower::ServiceExt::oneshot`) on both backends: CSRF and origin checks,
//! cookie flags and session rotation, identical failures, throttling, disabled users, open
//! redirects, security headers and step-up.

use std::sync::Arc;

use axum::body::Body;
use http::{Request, StatusCode};
use trustgate_authn::accounts::{CreateUser, RequestContext, UserStatus};
use trustgate_core::{ManualClock, SealingKey, Secret};
use trustgate_server::{AppState, Config, router};
use trustgate_store::test_on_both_backends;
use trustgate_store::testing::TestDatabase;

use crate::common::browser::{App, Browser, ORIGIN, SESSION, enc, hidden};

const PASSWORD: &str = "correct horse battery staple 42";

struct Pages {
    app: axum::Router,
    state: AppState,
    clock: ManualClock,
}

impl App for Pages {
    fn app(&self) -> &axum::Router {
        &self.app
    }
}

async fn pages(db: &TestDatabase) -> Pages {
    pages_with(db, Config::default()).await
}

async fn pages_with(db: &TestDatabase, config: Config) -> Pages {
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let state = AppState::start(
        db.store.clone(),
        Arc::new(clock.clone()),
        config,
        SealingKey::generate(),
    )
    .await
    .expect("app state");
    for name in ["alice", "bob"] {
        state
            .accounts
            .create_user(
                CreateUser {
                    username: name.into(),
                    email: format!("{name}@example.com"),
                    password: Some(Secret::new(PASSWORD)),
                    ..CreateUser::default()
                },
                "test",
                &RequestContext::default(),
            )
            .await
            .expect("create user");
    }
    Pages {
        app: router(state.clone()),
        state,
        clock,
    }
}

async fn signed_in(p: &Pages) -> Browser {
    let mut b = Browser::new();
    let r = b.login(p, "alice", PASSWORD).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location(), "/account");
    b
}

async fn session_count(p: &Pages, b: &mut Browser) -> usize {
    let page = b.get(p, "/account").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.body.matches("data-session=").count()
}

test_on_both_backends!(
    login_rotates_the_session_id_and_sets_the_strict_cookie,
    missing_or_wrong_csrf_token_is_403_and_changes_nothing,
    foreign_origin_is_403_and_changes_nothing,
    wrong_password_unknown_and_disabled_users_look_the_same,
    throttled_logins_get_429_with_retry_after,
    disabled_user_loses_their_session,
    next_only_goes_to_local_paths,
    security_headers_on_every_page_response,
    password_change_needs_step_up_after_the_window,
    revoking_a_session_signs_it_out,
    personal_access_tokens_need_step_up_never_exceed_the_user_and_die_with_them,
    the_passkey_relying_party_comes_from_configuration_not_the_host_header,
);

/// `GET /login` with this `Host`: whether the passkey sign-in is offered, and its options.
async fn passkey_offer(app: &axum::Router, host: &str) -> Option<String> {
    use tower::ServiceExt as _;
    let request = Request::get("/login")
        .header("host", host)
        .body(Body::empty())
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("infallible");
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    let page = String::from_utf8_lossy(&bytes).into_owned();
    page.contains("id=\"passkey-login\"").then_some(page)
}

async fn the_passkey_relying_party_comes_from_configuration_not_the_host_header(db: TestDatabase) {
    // Development (loopback listener, no public origin): the RP is localhost on the port.
    let p = pages(&db).await;
    let offer = passkey_offer(&p.app, "localhost:8080")
        .await
        .expect("offered");
    assert!(offer.contains("localhost"), "rp id localhost");
    for host in [
        "evil.example",
        "evil.example:8080",
        "127.0.0.1:8080",
        "localhost:9999",
    ] {
        assert!(
            passkey_offer(&p.app, host).await.is_none(),
            "a request for {host} must not get a passkey ceremony"
        );
    }
    // Production: exactly the configured origin, whatever the Host says.
    let mut config = Config {
        listen: "0.0.0.0:8443".parse().expect("addr"),
        ..Config::default()
    };
    config.pages.public_origin = Some("https://id.example.com".into());
    let other = TestDatabase::sqlite_in_memory().await;
    let state = AppState::start(
        other.store.clone(),
        Arc::new(ManualClock::new(time::OffsetDateTime::now_utc())),
        config,
        SealingKey::generate(),
    )
    .await
    .expect("state");
    let app = router(state);
    let offer = passkey_offer(&app, "id.example.com")
        .await
        .expect("offered");
    assert!(offer.contains("id.example.com"));
    assert!(passkey_offer(&app, "id.example.com:443").await.is_some());
    for host in [
        "attacker.example",
        "localhost:8443",
        "id.example.com.attacker.example",
    ] {
        assert!(passkey_offer(&app, host).await.is_none(), "{host}");
    }
}

/// A request to the API with a personal access token; the status.
async fn api_status(p: &Pages, token: &str, path: &str) -> StatusCode {
    use tower::ServiceExt as _;
    let request = Request::get(path)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .expect("request");
    p.app
        .clone()
        .oneshot(request)
        .await
        .expect("infallible")
        .status()
}

async fn personal_access_tokens_need_step_up_never_exceed_the_user_and_die_with_them(
    db: TestDatabase,
) {
    let p = pages(&db).await;
    let alice = p.state.accounts.get_user("alice").await.expect("alice");
    let mut b = signed_in(&p).await;
    // Without a role there is nothing to give a token.
    let page = b.get(&p, "/account").await;
    assert!(
        page.body.contains("You hold no role on trustgate"),
        "{}",
        page.body
    );
    p.state
        .access
        .grant(
            &format!("user:{}", alice.id),
            &"auditor".parse().expect("role"),
        )
        .await
        .expect("grant");
    let page = b.get(&p, "/account").await;
    assert!(page.body.contains("value=\"auditor\""), "{}", page.body);

    // Creating needs a recent sign-in.
    p.clock.advance(time::Duration::minutes(11));
    let csrf = b.get(&p, "/account").await.csrf();
    let form = [
        ("csrf", csrf.as_str()),
        ("description", "nightly report"),
        ("scope_0", "auditor"),
        ("expires_days", "30"),
    ];
    let r = b.post(&p, "/account/tokens", &form).await;
    assert_eq!(r.location(), "/account/reauth?next=%2Faccount%23tokens");
    let prompt = b.get(&p, r.location()).await;
    let r = b
        .post(
            &p,
            "/account/reauth",
            &[
                ("csrf", &prompt.csrf()),
                ("password", PASSWORD),
                ("next", "/account#tokens"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let csrf = b.get(&p, "/account").await.csrf();

    // A forged form asking for a role the user does not hold creates nothing.
    let r = b
        .post(
            &p,
            "/account/tokens",
            &[
                ("csrf", csrf.as_str()),
                ("description", "too much"),
                ("scope_0", "admin"),
                ("expires_days", "30"),
            ],
        )
        .await;
    assert_eq!(r.location(), "/account?error=token_scope#tokens");

    let mut form = form;
    form[0].1 = &csrf;
    let r = b.post(&p, "/account/tokens", &form).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location(), "/account/tokens/new");
    let shown = b.get(&p, "/account/tokens/new").await;
    assert_eq!(shown.status, StatusCode::OK);
    let start = shown.body.find("tg_live_").expect("the token on the page");
    let token: String = shown.body[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    // Shown once: the flash is gone, the account page lists only its prefix.
    let again = b.get(&p, "/account/tokens/new").await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    let account = b.get(&p, "/account").await;
    assert!(
        !account.body.contains(&token),
        "the account page shows the secret"
    );
    assert!(account.body.contains("nightly report"));

    // It acts as the user, within the user's roles.
    assert_eq!(
        api_status(&p, &token, "/admin/v1/audit").await,
        StatusCode::OK
    );
    assert_eq!(
        api_status(&p, &token, "/admin/v1/users").await,
        StatusCode::FORBIDDEN
    );
    // It loses what the user loses, and dies with the user's account.
    p.state
        .access
        .revoke(
            &format!("user:{}", alice.id),
            &"auditor".parse().expect("role"),
        )
        .await
        .expect("revoke");
    assert_eq!(
        api_status(&p, &token, "/admin/v1/audit").await,
        StatusCode::FORBIDDEN
    );
    p.state
        .access
        .grant(
            &format!("user:{}", alice.id),
            &"auditor".parse().expect("role"),
        )
        .await
        .expect("grant");
    assert_eq!(
        api_status(&p, &token, "/admin/v1/audit").await,
        StatusCode::OK
    );
    p.state
        .accounts
        .set_user_status(
            &alice.id,
            UserStatus::Disabled,
            "test",
            &RequestContext::default(),
        )
        .await
        .expect("disable");
    p.state.api_keys.sync().await.expect("epoch");
    assert_eq!(
        api_status(&p, &token, "/admin/v1/audit").await,
        StatusCode::UNAUTHORIZED
    );
}

async fn login_rotates_the_session_id_and_sets_the_strict_cookie(db: TestDatabase) {
    let p = pages(&db).await;
    let mut b = Browser::new();
    let planted = format!("tg_sess_{}", "A".repeat(43));
    b.jar.insert(SESSION.into(), planted.clone());
    let form = b.get(&p, "/login").await;
    assert_eq!(form.status, StatusCode::OK);
    let csrf_cookie = form
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("__Host-trustgate_csrf="))
        .expect("csrf cookie");
    assert!(
        csrf_cookie.ends_with("; Path=/; Secure; HttpOnly; SameSite=Lax"),
        "{csrf_cookie}"
    );

    let r = b
        .post(
            &p,
            "/login",
            &[
                ("csrf", &form.csrf()),
                ("username", "alice"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let set = r
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("__Host-trustgate_session="))
        .expect("session cookie");
    let first = b.session().expect("session");
    assert_ne!(first, planted, "a planted id is never kept");
    assert_eq!(
        set,
        format!("{SESSION}={first}; Path=/; Secure; HttpOnly; SameSite=Lax"),
        "exact attributes, no Domain, no Max-Age"
    );

    // Signing in again with a live session: a new id, and the old one stops working.
    let mut old = b.clone();
    let again = b.get(&p, "/login").await;
    assert_eq!(
        again.location(),
        "/account",
        "a signed-in browser skips the form"
    );
    let csrf = b.jar["__Host-trustgate_csrf"].clone();
    let r = b
        .post(
            &p,
            "/login",
            &[
                ("csrf", &csrf),
                ("username", "alice"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let second = b.session().expect("session");
    assert_ne!(first, second);
    assert_eq!(old.get(&p, "/account").await.status, StatusCode::SEE_OTHER);
    assert_eq!(b.get(&p, "/account").await.status, StatusCode::OK);
}

async fn missing_or_wrong_csrf_token_is_403_and_changes_nothing(db: TestDatabase) {
    let p = pages(&db).await;
    let mut a = signed_in(&p).await;
    let mut other = signed_in(&p).await;
    assert_eq!(session_count(&p, &mut a).await, 2);
    let foreign_token = trustgate_server::pages::csrf::session_token(&other.session().expect("s"));

    for form in [
        vec![],
        vec![("csrf", "")],
        vec![("csrf", "nope")],
        vec![("csrf", foreign_token.as_str())],
    ] {
        for path in [
            "/account/sessions/revoke-others",
            "/logout",
            "/account/totp/remove",
            "/account/totp",
        ] {
            let r = a.post(&p, path, &form).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{path} {form:?}");
            assert!(r.body.contains("Request refused"), "{}", r.body);
            assert!(
                r.headers["content-type"]
                    .to_str()
                    .expect("ct")
                    .starts_with("text/html")
            );
        }
    }
    assert_eq!(session_count(&p, &mut a).await, 2, "nothing revoked");
    assert_eq!(other.get(&p, "/account").await.status, StatusCode::OK);

    // The pre-login forms need the double-submit cookie.
    let mut fresh = Browser::new();
    let r = fresh
        .post(
            &p,
            "/login",
            &[("csrf", "x"), ("username", "alice"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(fresh.session().is_none());
    let form = fresh.get(&p, "/login").await;
    let mut wrong = form.csrf();
    wrong.replace_range(0..1, if wrong.starts_with('A') { "B" } else { "A" });
    let r = fresh
        .post(
            &p,
            "/login",
            &[
                ("csrf", &wrong),
                ("username", "alice"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(fresh.session().is_none());
}

async fn foreign_origin_is_403_and_changes_nothing(db: TestDatabase) {
    let p = pages(&db).await;
    let mut a = signed_in(&p).await;
    let _other = signed_in(&p).await;
    let token = a.get(&p, "/account").await.csrf();
    for origin in [
        Some("http://evil.com"),
        Some("https://127.0.0.1:8080.evil.com"),
        Some("null"),
        None,
    ] {
        let mut attacker = a.clone();
        attacker.origin = origin;
        let r = attacker
            .post(&p, "/account/sessions/revoke-others", &[("csrf", &token)])
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{origin:?}");
    }
    assert_eq!(session_count(&p, &mut a).await, 2);

    // A cross-site fetch is refused even with a matching Origin.
    let r = a
        .send(
            &p,
            Request::post("/account/sessions/revoke-others")
                .header("content-type", "application/x-www-form-urlencoded")
                .header("origin", ORIGIN)
                .header("sec-fetch-site", "cross-site"),
            Body::from(format!("csrf={token}")),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // `Origin: null` as browsers send it under `Referrer-Policy: no-referrer`, with fetch
    // metadata saying same-origin: accepted.
    let r = a
        .send(
            &p,
            Request::post("/account/sessions/revoke-others")
                .header("content-type", "application/x-www-form-urlencoded")
                .header("origin", "null")
                .header("sec-fetch-site", "same-origin"),
            Body::from(format!("csrf={token}")),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(session_count(&p, &mut a).await, 1);
}

async fn wrong_password_unknown_and_disabled_users_look_the_same(db: TestDatabase) {
    let p = pages(&db).await;
    let bob = p.state.accounts.get_user("bob").await.expect("bob");
    p.state
        .accounts
        .set_user_status(
            &bob.id,
            UserStatus::Disabled,
            "test",
            &RequestContext::default(),
        )
        .await
        .expect("disable");
    let mut b = Browser::new();
    let attempt = |user: &'static str, password: &'static str| {
        let mut b = b.clone();
        let p = &p;
        async move {
            let r = b.login(p, user, password).await;
            (
                r.status,
                r.body
                    .replace(&format!("value=\"{user}\""), "value=\"USER\""),
            )
        }
    };
    let wrong = attempt("alice", "wrong password 123").await;
    let unknown = attempt("nobody", "wrong password 123").await;
    let disabled = attempt("bob", PASSWORD).await;
    // Normalise the per-browser CSRF token.
    let norm = |(s, body): (StatusCode, String)| (s, body.replace(&hidden(&body, "csrf"), "T"));
    let (wrong, unknown, disabled) = (norm(wrong), norm(unknown), norm(disabled));
    assert_eq!(wrong.0, StatusCode::OK);
    assert!(
        wrong.1.contains("Incorrect username or password."),
        "{}",
        wrong.1
    );
    assert!(wrong.1.contains("aria-invalid=\"true\""));
    assert_eq!(wrong, unknown);
    assert_eq!(wrong, disabled);
    assert!(b.get(&p, "/account").await.status == StatusCode::SEE_OTHER);
}

async fn throttled_logins_get_429_with_retry_after(db: TestDatabase) {
    let p = pages(&db).await;
    let mut b = Browser::new();
    let mut throttled = None;
    for _ in 0..12 {
        let r = b.login(&p, "alice", "not the password!").await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            throttled = Some(r);
            break;
        }
        assert_eq!(r.status, StatusCode::OK);
    }
    let r = throttled.expect("throttled within 12 attempts");
    let retry: u64 = r.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(retry >= 1);
    assert!(r.body.contains("Too many attempts"), "{}", r.body);
    assert!(r.headers["content-security-policy"].to_str().is_ok());
    // Even the right password waits.
    let r = b.login(&p, "alice", PASSWORD).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(b.session().is_none());
    // After the wait, it works.
    p.clock.advance(time::Duration::seconds(
        i64::try_from(retry).expect("small") + 1,
    ));
    let r = b.login(&p, "alice", PASSWORD).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
}

async fn disabled_user_loses_their_session(db: TestDatabase) {
    let p = pages(&db).await;
    let mut b = signed_in(&p).await;
    assert_eq!(b.get(&p, "/account").await.status, StatusCode::OK);
    let alice = p.state.accounts.get_user("alice").await.expect("alice");
    p.state
        .accounts
        .set_user_status(
            &alice.id,
            UserStatus::Disabled,
            "test",
            &RequestContext::default(),
        )
        .await
        .expect("disable");
    let r = b.get(&p, "/account").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/login?next=%2Faccount");
    assert!(b.session().is_none(), "the dead cookie is deleted");
    let r = b.login(&p, "alice", PASSWORD).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("Incorrect username or password."));
    assert!(b.session().is_none());
}

async fn next_only_goes_to_local_paths(db: TestDatabase) {
    let p = pages(&db).await;
    let r = Browser::new().get(&p, "/account?tab=1").await;
    assert_eq!(r.location(), "/login?next=%2Faccount%3Ftab%3D1");
    for (next, expected) in [
        ("//evil.com", "/account"),
        ("https://evil.com", "/account"),
        ("/\\evil.com", "/account"),
        ("%2F%2Fevil.com", "/account"),
        ("/%2F%2Fevil.com", "/account"),
        ("/%5Cevil.com", "/account"),
        ("javascript:alert(1)", "/account"),
        ("/account?tab=sessions", "/account?tab=sessions"),
    ] {
        let mut b = Browser::new();
        let form = b.get(&p, &format!("/login?next={}", enc(next))).await;
        assert_eq!(
            hidden(&form.body, "next"),
            expected.replace('&', "&amp;"),
            "{next}"
        );
        // The form field is what counts; a tampered field is validated again.
        let r = b
            .post(
                &p,
                "/login",
                &[
                    ("csrf", &form.csrf()),
                    ("username", "alice"),
                    ("password", PASSWORD),
                    ("next", next),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        assert_eq!(r.location(), expected, "{next}");
    }
}

async fn security_headers_on_every_page_response(db: TestDatabase) {
    let p = pages(&db).await;
    let mut b = Browser::new();
    let mut replies = vec![
        ("login", b.get(&p, "/login").await),
        ("redirect", b.get(&p, "/account").await),
        ("403", b.post(&p, "/login", &[]).await),
    ];
    let mut s = signed_in(&p).await;
    replies.push(("account", s.get(&p, "/account").await));
    replies.push(("reauth", s.get(&p, "/account/reauth").await));
    for (what, r) in &replies {
        let h = &r.headers;
        assert_eq!(
            h["content-security-policy"],
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
            "{what}"
        );
        assert_eq!(h["x-frame-options"], "DENY", "{what}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{what}");
        assert_eq!(h["cache-control"], "no-store", "{what}");
    }
    let css = b.get(&p, "/static/pages.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(
        css.headers["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/css")
    );
    assert_eq!(css.headers["x-content-type-options"], "nosniff");
    let login = &replies[0].1;
    assert!(login.body.contains("<html lang=\"en\">"));
    assert!(login.body.contains("<label for=\"password\">"));
    assert!(!login.body.contains("<script"), "no JavaScript");
}

/// `[branding]`: the name (escaped like every interpolation), the logo and the colours reach
/// every page, through files of this origin only, so the CSP is unchanged; without it, the
/// defaults.
#[tokio::test]
async fn branded_pages_show_the_name_logo_and_colours_under_the_same_csp() {
    let db = TestDatabase::sqlite().await;
    let dir = tempfile::tempdir().expect("dir");
    let logo = dir.path().join("logo.svg");
    let svg = "<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>";
    std::fs::write(&logo, svg).expect("write");
    let mut config = Config::default();
    config.branding.product_name = "Acme <Sign-in>".into();
    config.branding.logo_file = Some(logo.clone());
    config.branding.accent_colour = Some("#0a7d32".into());
    let p = pages_with(&db, config.clone()).await;
    let mut b = Browser::new();
    let login = b.get(&p, "/login").await;
    assert!(
        login
            .body
            .contains("<title>Sign in · Acme &#60;Sign-in&#62;</title>")
            || login
                .body
                .contains("<title>Sign in · Acme &lt;Sign-in&gt;</title>"),
        "{}",
        login.body
    );
    assert!(
        login
            .body
            .contains("<img class=\"logo\" src=\"/static/logo\" alt=\"\">"),
        "{}",
        login.body
    );
    assert!(login.body.contains("href=\"/static/brand.css\""));
    assert!(!login.body.contains("<Sign-in>"), "escaped");
    let css = b.get(&p, "/static/brand.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.body.contains("--accent: #0a7d32;"), "{}", css.body);
    let served = b.get(&p, "/static/logo").await;
    assert_eq!(served.status, StatusCode::OK);
    assert_eq!(served.headers["content-type"], "image/svg+xml");
    assert_eq!(served.body, svg);
    let csp = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";
    for reply in [&login, &css, &served] {
        assert_eq!(reply.headers["content-security-policy"], csp);
    }
    // Pages of the OAuth endpoints too: an authorization request without a client is an
    // error page, branded.
    let error = b.get(&p, "/oauth2/authorize").await;
    assert!(error.body.contains("Acme &"), "{}", error.body);

    // No branding: trustgate's name, no logo (404), the default accent.
    let plain_db = TestDatabase::sqlite().await;
    let plain = pages(&plain_db).await;
    let login = b.get(&plain, "/login").await;
    assert!(login.body.contains("<title>Sign in · trustgate</title>"));
    assert!(!login.body.contains("class=\"logo\""));
    assert_eq!(
        b.get(&plain, "/static/logo").await.status,
        StatusCode::NOT_FOUND
    );
    assert!(
        b.get(&plain, "/static/brand.css")
            .await
            .body
            .contains("--accent: #2456c7;")
    );

    // A logo that cannot be read fails the start, naming the key.
    config.branding.logo_file = Some(dir.path().join("missing.png"));
    let err = AppState::start(
        db.store.clone(),
        Arc::new(ManualClock::new(time::OffsetDateTime::now_utc())),
        config,
        SealingKey::generate(),
    )
    .await
    .expect_err("no logo");
    assert!(err.to_string().contains("branding.logo_file"), "{err}");
}

async fn password_change_needs_step_up_after_the_window(db: TestDatabase) {
    let p = pages(&db).await;
    let mut b = signed_in(&p).await;
    p.clock.advance(time::Duration::minutes(11));
    let token = b.get(&p, "/account").await.csrf();
    let change = [
        ("csrf", token.as_str()),
        ("current_password", PASSWORD),
        ("new_password", "a brand new passphrase 7"),
        ("confirm_password", "a brand new passphrase 7"),
    ];
    let r = b.post(&p, "/account/password", &change).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/account/reauth?next=%2Faccount%23password");
    // Nothing changed: the old password still signs in.
    assert_eq!(
        Browser::new().login(&p, "alice", PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );

    let prompt = b.get(&p, r.location()).await;
    assert_eq!(prompt.status, StatusCode::OK);
    assert_eq!(hidden(&prompt.body, "next"), "/account#password");
    let before = b.session().expect("session");
    let wrong = b
        .post(
            &p,
            "/account/reauth",
            &[
                ("csrf", &prompt.csrf()),
                ("password", "wrong"),
                ("next", "/account#password"),
            ],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::OK);
    assert!(wrong.body.contains("The password is incorrect."));
    let r = b
        .post(
            &p,
            "/account/reauth",
            &[
                ("csrf", &prompt.csrf()),
                ("password", PASSWORD),
                ("next", "/account#password"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location(), "/account#password");
    assert_ne!(
        b.session().expect("session"),
        before,
        "step-up rotates the session id"
    );

    // The old token died with the old session id.
    let r = b.post(&p, "/account/password", &change).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let token = b.get(&p, "/account").await.csrf();
    let mut change = change;
    change[0].1 = &token;
    let r = b.post(&p, "/account/password", &change).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/account?done=password_changed");
    assert!(
        b.get(&p, r.location())
            .await
            .body
            .contains("Your password was changed.")
    );
    assert_eq!(
        Browser::new()
            .login(&p, "alice", "a brand new passphrase 7")
            .await
            .status,
        StatusCode::SEE_OTHER
    );
}

async fn revoking_a_session_signs_it_out(db: TestDatabase) {
    let p = pages(&db).await;
    let mut a = signed_in(&p).await;
    let mut other = signed_in(&p).await;
    let page = a.get(&p, "/account").await;
    let ids: Vec<String> = page
        .body
        .split("data-session=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next().map(str::to_owned))
        .collect();
    assert_eq!(ids.len(), 2);
    let current_row = page
        .body
        .split("<tr class=\"current\" data-session=\"")
        .nth(1)
        .expect("current row");
    let other_id = ids
        .iter()
        .find(|id| !current_row.starts_with(id.as_str()))
        .expect("other");
    let r = a
        .post(
            &p,
            &format!("/account/sessions/{other_id}/revoke"),
            &[("csrf", &page.csrf())],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/account?done=session_revoked#sessions");
    assert_eq!(
        other.get(&p, "/account").await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(session_count(&p, &mut a).await, 1);
    // Unknown ids and other users' ids change nothing.
    let r = a
        .post(
            &p,
            "/account/sessions/nonexistent/revoke",
            &[("csrf", &page.csrf())],
        )
        .await;
    assert_eq!(r.location(), "/account?error=session_not_found#sessions");
}
