//! CORS (issue #16): the endpoints a single-page application calls answer its registered
//! origin (a public client's redirect URI origin) and no other; public documents answer any
//! origin without credentials; pages and the admin API answer none.

use http::StatusCode;
use serde_json::json;
use trustgate_store::test_on_both_backends;
use trustgate_store::testing::TestDatabase;

use crate::common::{Api, Resp};

test_on_both_backends!(
    browser_endpoints_answer_registered_origins_only,
    public_documents_answer_any_origin_and_the_rest_none,
);

const SPA: &str = "https://spa.example";

async fn preflight(api: &Api, path: &str, origin: &str, method: &str) -> Resp {
    api.raw(
        "OPTIONS",
        path,
        Vec::new(),
        &[
            ("origin", origin),
            ("access-control-request-method", method),
            ("access-control-request-headers", "content-type, dpop"),
        ],
        false,
    )
    .await
}

fn allow_origin(r: &Resp) -> Option<&str> {
    r.headers
        .get("access-control-allow-origin")
        .map(|v| v.to_str().expect("ascii"))
}

async fn token_request(api: &Api, origin: &str, client_id: &str) -> Resp {
    let body = format!(
        "grant_type=authorization_code&code=not-a-code&redirect_uri={}&client_id={client_id}&code_verifier={}",
        "https%3A%2F%2Fspa.example%2Fcallback",
        "a".repeat(43)
    );
    api.raw(
        "POST",
        "/oauth2/token",
        body.into_bytes(),
        &[
            ("origin", origin),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        false,
    )
    .await
}

async fn browser_endpoints_answer_registered_origins_only(db: TestDatabase) {
    let api = Api::new(db).await;
    let public = api
        .post(
            "/admin/v1/clients",
            json!({"name": "SPA", "auth_method": "none", "redirect_uris": [format!("{SPA}/callback")]}),
        )
        .await;
    let public_id = public.expect(StatusCode::CREATED)["client_id"]
        .as_str()
        .expect("id")
        .to_owned();
    // A confidential client's redirect origin is a server's, not a page's.
    api.post(
        "/admin/v1/clients",
        json!({"name": "Web", "redirect_uris": ["https://server.example/cb"]}),
    )
    .await
    .expect(StatusCode::CREATED);

    for path in ["/oauth2/token", "/oauth2/revoke", "/oidc/userinfo"] {
        let ok = preflight(&api, path, SPA, "POST").await;
        assert_eq!(ok.status, StatusCode::NO_CONTENT, "{path}");
        assert_eq!(
            allow_origin(&ok),
            Some(SPA),
            "{path}: the origin echoed, never *"
        );
        let allowed_headers = ok.headers["access-control-allow-headers"]
            .to_str()
            .expect("ascii");
        assert!(allowed_headers.contains("dpop"), "{allowed_headers}");
        assert!(
            ok.headers.get("access-control-allow-credentials").is_none(),
            "{path}: never credentials"
        );
        for stranger in [
            "https://evil.example",
            "https://server.example",
            "http://spa.example",
            "https://spa.example:8443",
            "null",
        ] {
            let refused = preflight(&api, path, stranger, "POST").await;
            assert_eq!(refused.status, StatusCode::FORBIDDEN, "{path} {stranger}");
            assert_eq!(allow_origin(&refused), None, "{path} {stranger}");
        }
        let wrong_method = preflight(&api, path, SPA, "DELETE").await;
        assert_eq!(wrong_method.status, StatusCode::FORBIDDEN, "{path}");
    }

    // The actual request: answered to the registered origin (the error included, so the page
    // can read it), not to another.
    let answered = token_request(&api, SPA, &public_id).await;
    assert_eq!(answered.status, StatusCode::BAD_REQUEST);
    assert_eq!(answered.body["error"], "invalid_grant");
    assert_eq!(allow_origin(&answered), Some(SPA));
    assert!(
        answered.headers["access-control-expose-headers"]
            .to_str()
            .expect("ascii")
            .contains("dpop-nonce")
    );
    let unreadable = token_request(&api, "https://evil.example", &public_id).await;
    assert_eq!(unreadable.status, StatusCode::BAD_REQUEST);
    assert_eq!(allow_origin(&unreadable), None);
    assert!(
        unreadable.headers["vary"]
            .to_str()
            .expect("ascii")
            .contains("origin")
    );
    // Userinfo's challenge is readable by the registered page.
    let userinfo = api
        .raw(
            "GET",
            "/oidc/userinfo",
            Vec::new(),
            &[("origin", SPA), ("authorization", "Bearer not-a-token")],
            false,
        )
        .await;
    assert_eq!(userinfo.status, StatusCode::UNAUTHORIZED);
    assert_eq!(allow_origin(&userinfo), Some(SPA));

    // A client registered or removed changes the answer at once.
    let later = api
        .post(
            "/admin/v1/clients",
            json!({"name": "Later", "auth_method": "none", "redirect_uris": ["http://localhost:5173/cb"]}),
        )
        .await;
    let later_id = later.expect(StatusCode::CREATED)["client_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let now_allowed = preflight(&api, "/oauth2/token", "http://localhost:5173", "POST").await;
    assert_eq!(allow_origin(&now_allowed), Some("http://localhost:5173"));
    api.call(
        "DELETE",
        &format!("/admin/v1/clients/{later_id}"),
        &serde_json::Value::Null,
    )
    .await;
    let gone = preflight(&api, "/oauth2/token", "http://localhost:5173", "POST").await;
    assert_eq!(gone.status, StatusCode::FORBIDDEN);
}

async fn public_documents_answer_any_origin_and_the_rest_none(db: TestDatabase) {
    let api = Api::new(db).await;
    api.post(
        "/admin/v1/clients",
        json!({"name": "SPA", "auth_method": "none", "redirect_uris": [format!("{SPA}/callback")]}),
    )
    .await
    .expect(StatusCode::CREATED);
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
        "/.well-known/jwks.json",
    ] {
        let read = api
            .raw(
                "GET",
                path,
                Vec::new(),
                &[("origin", "https://anyone.example")],
                false,
            )
            .await;
        assert_eq!(read.status, StatusCode::OK, "{path}");
        assert_eq!(allow_origin(&read), Some("*"), "{path}");
        assert!(
            read.headers
                .get("access-control-allow-credentials")
                .is_none()
        );
        let pre = preflight(&api, path, "https://anyone.example", "GET").await;
        assert_eq!(pre.status, StatusCode::NO_CONTENT, "{path}");
        assert_eq!(allow_origin(&pre), Some("*"), "{path}");
    }
    // Even the registered page origin gets nothing from the admin API or the pages.
    for path in [
        "/admin/v1/users",
        "/login",
        "/oauth2/authorize",
        "/oauth2/introspect",
    ] {
        let pre = preflight(&api, path, SPA, "GET").await;
        assert_eq!(allow_origin(&pre), None, "{path}");
        let read = api
            .raw("GET", path, Vec::new(), &[("origin", SPA)], true)
            .await;
        assert_eq!(allow_origin(&read), None, "{path}");
    }
}
