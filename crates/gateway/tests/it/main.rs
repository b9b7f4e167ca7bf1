//! The gateway against a real trustgate (JWKS, token exchange, PDP over HTTP on a loopback
//! socket) and a real upstream: every status the gateway answers, what reaches the upstream,
//! streaming, upgrades, rate limits and reload; API keys introspected and exchanged, limited
//! per key.

mod harness;

use std::time::Duration;

use harness::{APP_AUD, Trustgate, closed_port, last, raw_head, upstream};
use http::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use trustgate_pep::{Decision, Reason};

fn app_upstream(url: &str, extra: &str, routes: &str) -> String {
    format!(
        r#"
[[upstream]]
name = "app"
url = "{url}"
audience = "{APP_AUD}"
{extra}
{routes}
"#
    )
}

const ROUTES: &str = r#"
[[upstream.route]]
method = "GET"
path = "/courses/{id}"
action = "viewer"
resource = "course:{id}"
scopes = ["courses:read"]
[[upstream.route]]
method = "POST"
path = "/upload/{id}"
action = "editor"
resource = "course:{id}"
[[upstream.route]]
method = "GET"
path = "/ws/{id}"
action = "viewer"
resource = "course:{id}"
[[upstream.route]]
method = "GET"
path = "/slow/{id}"
public = true
[[upstream.route]]
method = "GET"
path = "/public/info"
public = true
"#;

async fn get(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, http::HeaderMap, Value) {
    let mut request = reqwest::Client::new().get(format!("http://{addr}{path}"));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let r = request.send().await.expect("send");
    let status = r.status();
    let headers = r.headers().clone();
    let body = r.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn allowed_requests_reach_the_upstream_with_an_exchanged_token_and_no_forged_identity() {
    let tg = Trustgate::start().await;
    let (up, _, _) = upstream().await;
    let config = tg.config(
        &tg.base,
        "",
        &app_upstream(&format!("http://{up}"), "", ROUTES),
    );
    let (_gw, records, addr) = tg.gateway(config).await;
    let caller = tg.token(&tg.alice, |_| {});
    let auth = bearer(&caller);
    let (status, _, body) = get(
        addr,
        "/courses/1?x=1",
        &[
            ("authorization", &auth),
            ("x-trustgate-user", "admin"),
            ("X-Forwarded-User", "admin"),
            ("x-auth-request-email", "admin@example.com"),
            ("x-remote-user", "admin"),
            ("x-forwarded-for", "10.9.9.9"),
            ("x-request-id", "req-1"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["uri"], "/courses/1?x=1");
    let seen = body["headers"].as_object().expect("headers");
    for forged in [
        "x-trustgate-user",
        "x-forwarded-user",
        "x-auth-request-email",
        "x-remote-user",
    ] {
        assert!(!seen.contains_key(forged), "{forged} reached the upstream");
    }
    assert_eq!(seen["x-forwarded-for"], "10.9.9.9, 127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-host"], addr.to_string());
    assert_eq!(seen["x-request-id"], "req-1");
    let internal = seen["authorization"]
        .as_str()
        .and_then(|v| v.strip_prefix("Bearer "))
        .expect("an internal bearer token");
    assert_ne!(
        internal, caller,
        "the caller's own token is never forwarded"
    );
    let principal = tg.verify_internal(internal).await;
    assert_eq!(principal.id, tg.alice, "sub = the caller");
    let act = principal.act.expect("act");
    assert_eq!(act.sub, tg.gateway_client.0, "act = the gateway's client");
    let record = last(&records);
    assert_eq!(record.reason, Reason::Allowed);
    assert_eq!(record.resource, "course:1");
    assert_eq!(record.request_id.as_deref(), Some("req-1"));

    // The exchanged token is reused for the same caller token and audience.
    let (status, _, again) = get(addr, "/courses/1", &[("authorization", &auth)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["headers"]["authorization"], seen["authorization"]);

    // A public route reaches the upstream without any Authorization, even a forged one.
    let (status, _, body) = get(
        addr,
        "/public/info",
        &[
            ("authorization", "Bearer forged"),
            ("x-trustgate-user", "x"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["headers"].get("authorization").is_none(), "{body}");
    assert!(body["headers"].get("x-trustgate-user").is_none(), "{body}");
}

#[tokio::test]
async fn refusals_carry_the_pep_answers_and_records() {
    let tg = Trustgate::start().await;
    let (up, _, _) = upstream().await;
    let config = tg.config(
        &tg.base,
        "",
        &app_upstream(&format!("http://{up}"), "", ROUTES),
    );
    let (_gw, records, addr) = tg.gateway(config).await;

    // Anonymous: 401 with a challenge.
    let (status, headers, _) = get(addr, "/courses/1", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        headers["www-authenticate"],
        "Bearer realm=\"trustgate-gateway\""
    );
    assert_eq!(last(&records).reason, Reason::MissingCredential);

    // An expired token and a token for another audience: 401 invalid_token.
    for (name, token) in [
        ("expired", tg.token(&tg.alice, |c| c.exp = c.iat - 10)),
        (
            "other audience",
            tg.token(&tg.alice, |c| {
                c.aud = trustgate_tokens::Audience::One(APP_AUD.into());
            }),
        ),
    ] {
        let (status, headers, _) =
            get(addr, "/courses/1", &[("authorization", &bearer(&token))]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}");
        let challenge = headers["www-authenticate"].to_str().expect("ascii");
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{name}: {challenge}"
        );
    }

    // API keys are refused: the gateway forwards only bearer access tokens.
    let (status, _, body) = get(addr, "/courses/1", &[("x-api-key", "tg_live_abc")]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(
        last(&records).reason,
        Reason::InvalidToken {
            why: "opaque_token_not_accepted".into()
        }
    );

    // Denied by the PDP (bob has no tuple): 403.
    let bob = bearer(&tg.token(&tg.bob, |_| {}));
    let (status, _, body) = get(addr, "/courses/1", &[("authorization", &bob)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["code"], "permission_denied");
    assert_eq!(last(&records).reason, Reason::PdpDeny);

    // Missing scope: 403 insufficient_scope.
    let narrow = bearer(&tg.token(&tg.alice, |c| c.scope = Some("other".into())));
    let (status, headers, _) = get(addr, "/courses/1", &[("authorization", &narrow)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        headers["www-authenticate"]
            .to_str()
            .expect("ascii")
            .contains("insufficient_scope")
    );

    // No rule: 403 before any credential is looked at.
    let alice = bearer(&tg.token(&tg.alice, |_| {}));
    let (status, _, _) = get(addr, "/nowhere", &[("authorization", &alice)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(last(&records).reason, Reason::NoRule);
    assert_eq!(last(&records).decision, Decision::Deny);
}

#[tokio::test]
async fn outages_are_503_502_504_never_an_allow() {
    let tg = Trustgate::start().await;
    let (up, _, probe) = upstream().await;
    let alice = bearer(&tg.token(&tg.alice, |_| {}));

    // PDP down.
    let pdp_down = format!("http://{}/", closed_port().await);
    let config = tg.config(
        &pdp_down,
        "",
        &app_upstream(&format!("http://{up}"), "", ROUTES),
    );
    let (_gw, records, addr) = tg.gateway(config).await;
    let (status, _, _) = get(addr, "/courses/1", &[("authorization", &alice)]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(matches!(
        last(&records).reason,
        Reason::PdpUnavailable { .. }
    ));

    // Upstream down: 502.
    let down = format!("http://{}", closed_port().await);
    let config = tg.config(&tg.base, "", &app_upstream(&down, "", ROUTES));
    let (_gw, _, addr) = tg.gateway(config).await;
    let (status, _, body) = get(addr, "/courses/1", &[("authorization", &alice)]).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["code"], "upstream_unreachable");

    // Upstream slow: 504 after the request timeout; a fast answer passes.
    let config = tg.config(
        &tg.base,
        "",
        &app_upstream(&format!("http://{up}"), "request_timeout_ms = 300", ROUTES),
    );
    let (_gw, _, addr) = tg.gateway(config).await;
    let started = std::time::Instant::now();
    let (status, _, body) = get(addr, "/slow/3000", &[]).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(body["code"], "upstream_timeout");
    assert!(started.elapsed() < Duration::from_secs(2));
    let (status, _, _) = get(addr, "/slow/10", &[]).await;
    assert_eq!(status, StatusCode::OK);

    // Unhealthy by its health check: 503 at once, back when healthy again.
    let config = tg.config(
        &tg.base,
        "",
        &app_upstream(
            &format!("http://{up}"),
            "health = { path = \"/health\", interval_ms = 50 }",
            ROUTES,
        ),
    );
    let (_gw, _, addr) = tg.gateway(config).await;
    let (status, _, _) = get(addr, "/public/info", &[]).await;
    assert_eq!(status, StatusCode::OK);
    probe
        .healthy
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let mut status = StatusCode::OK;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (s, _, body) = get(addr, "/public/info", &[]).await;
        status = s;
        if s == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(body["code"], "upstream_unhealthy");
            break;
        }
    }
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    probe
        .healthy
        .store(true, std::sync::atomic::Ordering::SeqCst);
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        status = get(addr, "/public/info", &[]).await.0;
        if status == StatusCode::OK {
            break;
        }
    }
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn request_bodies_stream_through_without_buffering() {
    let tg = Trustgate::start().await;
    let (up, mut first_frames, _) = upstream().await;
    let config = tg.config(
        &tg.base,
        "",
        &app_upstream(&format!("http://{up}"), "", ROUTES),
    );
    let (_gw, _, addr) = tg.gateway(config).await;
    let alice = tg.token(&tg.alice, |_| {});
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /upload/2 HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {alice}\r\n\
         transfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    // The upstream sees the first chunk while the rest is not even sent: nothing waits for
    // the whole body.
    let first = tokio::time::timeout(Duration::from_secs(5), first_frames.recv())
        .await
        .expect("the first chunk arrives before the body is complete")
        .expect("frame");
    assert_eq!(first, 5);
    let big = vec![b'x'; 1 << 20];
    let mut total = 5usize;
    for _ in 0..8 {
        stream
            .write_all(format!("{:x}\r\n", big.len()).as_bytes())
            .await
            .expect("write");
        stream.write_all(&big).await.expect("write");
        stream.write_all(b"\r\n").await.expect("write");
        total += big.len();
    }
    stream.write_all(b"0\r\n\r\n").await.expect("write");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("frames") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("answer in time")
            .expect("read");
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(&format!("{total} bytes in ")), "{answer}");
}

#[tokio::test]
async fn websocket_style_upgrades_pass_through_after_authorization() {
    let tg = Trustgate::start().await;
    let (up, _, _) = upstream().await;
    let config = tg.config(
        &tg.base,
        "",
        &app_upstream(&format!("http://{up}"), "", ROUTES),
    );
    let (_gw, _, addr) = tg.gateway(config).await;
    let upgrade = |token: Option<&str>| {
        let auth = token
            .map(|t| format!("authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        format!(
            "GET /ws/1 HTTP/1.1\r\nhost: gw\r\n{auth}connection: upgrade\r\nupgrade: echo\r\n\r\n"
        )
    };
    // Unauthenticated: refused, no upgrade.
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = raw_head(&mut stream, &upgrade(None)).await;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");

    let alice = tg.token(&tg.alice, |_| {});
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = raw_head(&mut stream, &upgrade(Some(&alice))).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: echo"),
        "{head}"
    );
    for message in ["hello", "through the gateway"] {
        stream.write_all(message.as_bytes()).await.expect("write");
        let mut buf = vec![0u8; message.len()];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut buf))
            .await
            .expect("echo in time")
            .expect("read");
        assert_eq!(buf, message.as_bytes());
    }
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after_then_recover() {
    let tg = Trustgate::start().await;
    let (up, _, _) = upstream().await;
    let config = tg.config(
        &tg.base,
        "[rate_limit]\nper_second = 1\nburst = 2",
        &app_upstream(&format!("http://{up}"), "", ROUTES),
    );
    let (_gw, records, addr) = tg.gateway(config).await;
    let alice = bearer(&tg.token(&tg.alice, |_| {}));
    let bob = bearer(&tg.token(&tg.bob, |_| {}));
    for _ in 0..2 {
        assert_eq!(
            get(addr, "/courses/1", &[("authorization", &alice)])
                .await
                .0,
            StatusCode::OK
        );
    }
    let (status, headers, body) = get(addr, "/courses/1", &[("authorization", &alice)]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(body["code"], "rate_limited");
    let record = last(&records);
    assert_eq!(
        record.reason,
        Reason::RateLimited {
            retry_after_secs: 1
        }
    );
    assert_eq!(record.principal.map(|p| p.id), Some(tg.alice.clone()));
    // Another principal has its own bucket (bob is denied by the PDP, not limited).
    assert_eq!(
        get(addr, "/courses/1", &[("authorization", &bob)]).await.0,
        StatusCode::FORBIDDEN
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        get(addr, "/courses/1", &[("authorization", &alice)])
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_reload_changes_the_rules_while_in_flight_requests_complete() {
    let tg = Trustgate::start().await;
    let (up, _, _) = upstream().await;
    let url = format!("http://{up}");
    let config = tg.config(&tg.base, "", &app_upstream(&url, "", ROUTES));
    let (gw, _, addr) = tg.gateway(config).await;
    let alice = bearer(&tg.token(&tg.alice, |_| {}));
    assert_eq!(
        get(addr, "/courses/1", &[("authorization", &alice)])
            .await
            .0,
        StatusCode::OK
    );
    let in_flight = tokio::spawn(async move { get(addr, "/slow/800", &[]).await.0 });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The new configuration asks for `editor` on GET /courses/{id}: alice is only a viewer
    // of course 1. /slow is no longer routed at all.
    let stricter = r#"
[[upstream.route]]
method = "GET"
path = "/courses/{id}"
action = "editor"
resource = "course:{id}"
"#;
    gw.reload(tg.config(&tg.base, "", &app_upstream(&url, "", stricter)))
        .expect("reload");
    assert_eq!(
        get(addr, "/courses/1", &[("authorization", &alice)])
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get(addr, "/courses/2", &[("authorization", &alice)])
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(get(addr, "/slow/1", &[]).await.0, StatusCode::FORBIDDEN);
    assert_eq!(
        in_flight.await.expect("join"),
        StatusCode::OK,
        "the request in flight finished with the old state"
    );

    // A bad configuration is refused and the running one kept.
    let bad = tg.config(
        &tg.base,
        "",
        &app_upstream(
            &url,
            "",
            r#"
[[upstream.route]]
method = "GET"
path = "/courses/{id}"
action = "editor"
resource = "course:{nope}"
"#,
        ),
    );
    assert!(gw.reload(bad).is_err());
    assert_eq!(
        get(addr, "/courses/2", &[("authorization", &alice)])
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn hop_by_hop_headers_are_not_forwarded() {
    let tg = Trustgate::start().await;
    let (up, _, _) = upstream().await;
    let config = tg.config(
        &tg.base,
        "",
        &app_upstream(&format!("http://{up}"), "", ROUTES),
    );
    let (_gw, _, addr) = tg.gateway(config).await;
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = raw_head(
        &mut stream,
        "GET /public/info HTTP/1.1\r\nhost: gw\r\nconnection: keep-alive, x-hop\r\n\
         keep-alive: timeout=5\r\nx-hop: secret\r\nte: trailers\r\n\
         proxy-authorization: Basic eDp5\r\nx-end-to-end: kept\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(|v| v.trim().parse().expect("length"))
        })
        .expect("content-length");
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.expect("body");
    let body: Value = serde_json::from_slice(&body).expect("json");
    let seen = body["headers"].as_object().expect("headers");
    for hop in ["x-hop", "keep-alive", "te", "proxy-authorization"] {
        assert!(!seen.contains_key(hop), "{hop} was forwarded: {body}");
    }
    assert_eq!(seen["x-end-to-end"], "kept");
}

#[tokio::test]
async fn an_allowed_request_whose_exchange_is_refused_is_recorded_as_refused() {
    // Without the liveness check, a revoked token still verifies locally and the PDP allows;
    // only the token exchange refuses it. The client gets 401, and so says the record.
    let tg = Trustgate::start().await;
    let (up, _, _) = upstream().await;
    let config = tg.config(
        &tg.base,
        "liveness_ttl_secs = 0",
        &app_upstream(&format!("http://{up}"), "", ROUTES),
    );
    let (_gw, records, addr) = tg.gateway(config).await;
    let jti = "revoked-before-use".to_owned();
    let caller = tg.token(&tg.alice, |c| c.jti = jti.clone());
    let exp = time::OffsetDateTime::now_utc() + time::Duration::minutes(5);
    tg.state
        .store
        .revoke_access_token(&jti, exp)
        .await
        .expect("revoke");
    let (status, headers, body) =
        get(addr, "/courses/1", &[("authorization", &bearer(&caller))]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("invalid_token")),
        "{headers:?}"
    );
    let record = last(&records);
    assert_eq!(
        record.reason,
        Reason::InvalidToken {
            why: "token_exchange_refused".into()
        }
    );
    assert_eq!(record.decision, Decision::Unauthenticated);
    assert_eq!(records.len(), 1, "one record per request");
}

/// The gateway with `[api_keys]` (and `extra`) in front of the echo upstream.
async fn key_gateway(
    tg: &Trustgate,
    extra: &str,
) -> (
    std::sync::Arc<trustgate_gateway::Gateway>,
    std::sync::Arc<harness::Records>,
    std::net::SocketAddr,
) {
    let (up, _, _) = upstream().await;
    let config = tg.config(
        &tg.base,
        &format!("[api_keys]\nintrospection_ttl_secs = 1\n{extra}"),
        &app_upstream(&format!("http://{up}"), "", ROUTES),
    );
    tg.gateway(config).await
}

#[tokio::test]
async fn a_service_account_key_reaches_the_upstream_as_the_account() {
    let tg = Trustgate::start().await;
    let ci = tg.service_account("ci").await;
    tg.write(&[(&format!("service:{ci}"), "viewer", "course:1")])
        .await;
    let (key, key_id) = tg.api_key(&ci, &["courses:read"]).await;
    let (_gw, records, addr) = key_gateway(&tg, "").await;

    let auth = bearer(&key);
    let mut internals = Vec::new();
    for presented in [
        ("x-api-key", key.as_str()),
        ("authorization", auth.as_str()),
    ] {
        let (status, _, body) = get(
            addr,
            "/courses/1",
            &[
                presented,
                ("x-trustgate-user", "admin"),
                ("x-trustgate-subject", "service:admin"),
                ("x-forwarded-user", "admin"),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{presented:?}: {body}");
        let seen = body["headers"].as_object().expect("headers");
        for forged in [
            "x-trustgate-user",
            "x-trustgate-subject",
            "x-forwarded-user",
        ] {
            assert!(!seen.contains_key(forged), "{forged} reached the upstream");
        }
        assert!(
            !seen.contains_key("x-api-key"),
            "the key reached the upstream"
        );
        let internal = seen["authorization"]
            .as_str()
            .and_then(|v| v.strip_prefix("Bearer "))
            .expect("an internal bearer token")
            .to_owned();
        assert!(
            !internal.contains(&key),
            "the key itself is never forwarded"
        );
        // The upstream verifies it like any token for its audience, and sees the account,
        // the key it came from, the key's scope and the gateway acting.
        let principal = tg.verify_internal(&internal).await;
        assert_eq!(
            principal.id,
            format!("service:{ci}"),
            "sub = the key's owner"
        );
        assert_eq!(principal.kind, trustgate_pep::PrincipalKind::ApiKey);
        assert_eq!(principal.subject(), format!("service:{ci}"));
        assert_eq!(principal.key_id.as_deref(), Some(key_id.as_str()));
        assert_eq!(principal.scopes, ["courses:read"]);
        assert_eq!(principal.auth_time, None, "a key is no sign-in");
        let act = principal.act.expect("act");
        assert_eq!(act.sub, tg.gateway_client.0, "act = the gateway's client");
        assert_eq!(
            principal.client_id.as_deref(),
            Some(tg.gateway_client.0.as_str())
        );
        let record = last(&records);
        assert_eq!(record.reason, Reason::Allowed);
        let caller = record.principal.expect("principal");
        assert_eq!(caller.subject(), format!("service:{ci}"));
        assert_eq!(caller.key_id.as_deref(), Some(key_id.as_str()));
        internals.push(internal);
    }
    assert_eq!(
        internals[0], internals[1],
        "one exchange for the key, however it is presented"
    );

    // A key without the route's scope: 403 insufficient_scope, before the PDP is asked.
    let (writer_only, _) = tg.api_key(&ci, &["courses:write"]).await;
    let (status, headers, body) = get(addr, "/courses/1", &[("x-api-key", &writer_only)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let challenge = headers["www-authenticate"].to_str().expect("ascii");
    assert!(
        challenge.contains("error=\"insufficient_scope\"") && challenge.contains("courses:read"),
        "{challenge}"
    );
    assert!(matches!(last(&records).reason, Reason::MissingScope { .. }));
    // A key whose owner the PDP does not allow: 403 permission_denied.
    let nightly = tg.service_account("nightly").await;
    let (nightly_key, _) = tg.api_key(&nightly, &["courses:read"]).await;
    let (status, _, body) = get(addr, "/courses/1", &[("x-api-key", &nightly_key)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "permission_denied");
    assert_eq!(last(&records).reason, Reason::PdpDeny);
    // Not a key at all, and a look-alike of a real one: 401, the upstream never asked.
    let forged = trustgate_testkit::forge::last_char_changed(&key);
    for bad in ["tg_live_abc", forged.as_str()] {
        let (status, headers, _) = get(addr, "/courses/1", &[("x-api-key", bad)]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad}");
        assert!(
            headers["www-authenticate"]
                .to_str()
                .expect("ascii")
                .contains("invalid_token")
        );
        assert_eq!(
            last(&records).reason,
            Reason::InvalidToken {
                why: "inactive".into()
            }
        );
    }
}

#[tokio::test]
async fn a_revoked_key_is_refused_within_the_introspection_ttl() {
    let tg = Trustgate::start().await;
    let ci = tg.service_account("ci").await;
    tg.write(&[(&format!("service:{ci}"), "viewer", "course:1")])
        .await;
    let (used, used_id) = tg.api_key(&ci, &["courses:read"]).await;
    let (unused, unused_id) = tg.api_key(&ci, &["courses:read"]).await;
    let (_gw, records, addr) = key_gateway(&tg, "").await;
    assert_eq!(
        get(addr, "/courses/1", &[("x-api-key", &used)]).await.0,
        StatusCode::OK
    );
    tg.revoke_key(&unused_id).await;
    tg.revoke_key(&used_id).await;
    // Never seen by the gateway: refused at once.
    let (status, headers, _) = get(addr, "/courses/1", &[("x-api-key", &unused)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        headers["www-authenticate"]
            .to_str()
            .expect("ascii")
            .contains("invalid_token")
    );
    // Seen a moment ago: the active answer is reused at most introspection_ttl_secs (1 s), and
    // the exchanged token the gateway still holds is not used for a refused caller.
    let started = std::time::Instant::now();
    let mut status = StatusCode::OK;
    while started.elapsed() < Duration::from_secs(3) {
        status = get(addr, "/courses/1", &[("x-api-key", &used)]).await.0;
        if status != StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "within the TTL: {:?}",
        started.elapsed()
    );
    assert_eq!(
        last(&records).reason,
        Reason::InvalidToken {
            why: "inactive".into()
        }
    );
}

#[tokio::test]
async fn rate_limits_are_per_api_key() {
    let tg = Trustgate::start().await;
    let ci = tg.service_account("ci").await;
    tg.write(&[(&format!("service:{ci}"), "viewer", "course:1")])
        .await;
    let (first, first_id) = tg.api_key(&ci, &["courses:read"]).await;
    let (second, _) = tg.api_key(&ci, &["courses:read"]).await;
    let (_gw, records, addr) = key_gateway(&tg, "[rate_limit]\nper_second = 1\nburst = 2").await;
    for _ in 0..2 {
        assert_eq!(
            get(addr, "/courses/1", &[("x-api-key", &first)]).await.0,
            StatusCode::OK
        );
    }
    let (status, headers, body) = get(addr, "/courses/1", &[("x-api-key", &first)]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(body["code"], "rate_limited");
    let record = last(&records);
    assert_eq!(
        record.reason,
        Reason::RateLimited {
            retry_after_secs: 1
        }
    );
    assert_eq!(
        record.principal.and_then(|p| p.key_id),
        Some(first_id.clone())
    );
    // Another key of the same service account has its own bucket, and so has a user.
    for _ in 0..2 {
        assert_eq!(
            get(addr, "/courses/1", &[("x-api-key", &second)]).await.0,
            StatusCode::OK
        );
    }
    let alice = bearer(&tg.token(&tg.alice, |_| {}));
    assert_eq!(
        get(addr, "/courses/1", &[("authorization", &alice)])
            .await
            .0,
        StatusCode::OK
    );
    // The limited key as a bearer token is the same key: still limited.
    assert_eq!(
        get(addr, "/courses/1", &[("authorization", &bearer(&first))])
            .await
            .0,
        StatusCode::TOO_MANY_REQUESTS
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        get(addr, "/courses/1", &[("x-api-key", &first)]).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_gateway_serves_https_and_tells_the_upstream_so() {
    let tg = Trustgate::start().await;
    let (up, _, _) = upstream().await;
    let dir = tempfile::tempdir().expect("dir");
    let ca = trustgate_testkit::tls::TestCa::new("gateway test CA");
    let server = ca.server("localhost");
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, server.cert_pem).expect("write");
    std::fs::write(&key_file, server.key_pem).expect("write");
    let tls = format!(
        "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        cert_file.display(),
        key_file.display()
    );
    let config = tg.config(
        &tg.base,
        &tls,
        &app_upstream(&format!("http://{up}"), "", ROUTES),
    );
    assert!(config.tls.enabled());
    let (_gw, _, addr) = tg.gateway(config).await;
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.pem.as_bytes()).expect("CA")])
        .build()
        .expect("client");
    let caller = tg.token(&tg.alice, |_| {});
    let https = client
        .get(format!("https://localhost:{}/courses/1", addr.port()))
        .bearer_auth(&caller)
        .send()
        .await
        .expect("https");
    assert_eq!(https.status(), StatusCode::OK);
    assert_eq!(
        https.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    let body: Value = https.json().await.expect("json");
    assert_eq!(body["headers"]["x-forwarded-proto"], "https");
    // Plain HTTP to the TLS port gets no answer.
    let plain = reqwest::Client::new()
        .get(format!("http://{addr}/courses/1"))
        .bearer_auth(&caller)
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");
}

/// The upstream app over mutual TLS (trustgate's listener): a certificate of `server_ca` for
/// 127.0.0.1, client certificates of the CA in `client_ca_file` required.
async fn mutual_tls_upstream(
    dir: &std::path::Path,
    server_ca: &trustgate_testkit::tls::TestCa,
    client_ca_file: &std::path::Path,
) -> std::net::SocketAddr {
    use trustgate_listener::{ListenerSettings, Transport, mtls, tls};
    let server = server_ca.server("upstream");
    let (cert, key) = (dir.join("upstream.pem"), dir.join("upstream-key.pem"));
    std::fs::write(&cert, &server.cert_pem).expect("write");
    std::fs::write(&key, &server.key_pem).expect("write");
    let transport = Transport::mutual(
        tls::ReloadingCertificate::load(&cert, &key).expect("certificate"),
        mtls::ReloadingClientVerifier::load(&mtls::MtlsConfig {
            ca_files: vec![client_ca_file.to_path_buf()],
            ..mtls::MtlsConfig::default()
        })
        .expect("client CAs"),
        &tls::TlsConfig::default(),
        trustgate_core::net::TrustedProxies::default(),
    )
    .expect("transport");
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (app, _, _) = harness::upstream_app();
    tokio::spawn(trustgate_listener::serve(
        listener,
        app,
        ListenerSettings {
            header_read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(5),
            max_connections: 64,
            max_connections_per_ip: 64,
        },
        transport,
        std::future::pending(),
        Duration::from_secs(1),
    ));
    addr
}

#[tokio::test]
async fn https_upstreams_are_verified_and_get_the_gateway_s_client_certificate() {
    use trustgate_testkit::tls::TestCa;
    let tg = Trustgate::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let upstream_ca = TestCa::new("upstream CA");
    let clients_ca = TestCa::new("service clients CA");
    let clients_ca_file = dir.path().join("clients-ca.pem");
    std::fs::write(&clients_ca_file, &clients_ca.pem).expect("write");
    let upstream_ca_file = dir.path().join("upstream-ca.pem");
    std::fs::write(&upstream_ca_file, &upstream_ca.pem).expect("write");
    let gateway_cert = clients_ca.client("gateway", None);
    let (cert_file, key_file) = (dir.path().join("gw.pem"), dir.path().join("gw-key.pem"));
    std::fs::write(&cert_file, &gateway_cert.cert_pem).expect("write");
    std::fs::write(&key_file, &gateway_cert.key_pem).expect("write");
    let up = mutual_tls_upstream(dir.path(), &upstream_ca, &clients_ca_file).await;
    let caller = bearer(&tg.token(&tg.alice, |_| {}));
    let gateway_with = |tls: String, health: &str| {
        let upstream = app_upstream(
            &format!("https://{up}"),
            &format!("{health}\n[upstream.tls]\n{tls}"),
            ROUTES,
        );
        tg.config(&tg.base, "", &upstream)
    };
    let ca_line = format!("ca_files = [\"{}\"]\n", upstream_ca_file.display());
    let identity = format!(
        "cert_file = \"{}\"\nkey_file = \"{}\"\n",
        cert_file.display(),
        key_file.display()
    );

    // The upstream's CA named, the client certificate presented: through, health checks too.
    let (_gw, _, addr) = tg
        .gateway(gateway_with(
            format!("{ca_line}{identity}"),
            "health = { path = \"/health\", interval_ms = 200 }",
        ))
        .await;
    for _ in 0..2 {
        let (status, _, body) = get(addr, "/courses/1", &[("authorization", &caller)]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["uri"], "/courses/1");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // No client certificate: the upstream refuses the handshake. The Mozilla roots instead
    // of the upstream's CA: the gateway refuses the upstream. Both are 502, never a request
    // in clear.
    for (what, tls) in [
        ("no client certificate", ca_line.clone()),
        ("an untrusted upstream", identity.clone()),
    ] {
        let (_gw, _, addr) = tg.gateway(gateway_with(tls, "")).await;
        let (status, _, body) = get(addr, "/courses/1", &[("authorization", &caller)]).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{what}: {body}");
        assert_eq!(body["code"], "upstream_unreachable", "{what}");
    }

    // TLS settings on an http:// upstream are a configuration error.
    let text = format!(
        "{}\n",
        app_upstream(
            &format!("http://{up}"),
            &format!("[upstream.tls]\n{ca_line}"),
            ROUTES
        )
    );
    let err = trustgate_gateway::GatewayConfig::from_toml(&format!(
        "listen = \"127.0.0.1:0\"\nissuer = \"https://id.example\"\naudience = \"https://gw\"\n[client]\nid = \"x\"\n\
         secret_env = \"X\"\n[pdp]\nurl = \"https://id.example\"\nstore_id = \"s\"\n\
         api_key_env = \"K\"\n{text}"
    ))
    .expect_err("tls on http");
    assert!(
        err.to_string().contains("only with an https:// url"),
        "{err}"
    );
}

/// RFC 8705 §3 at the gateway (`[mtls]`): a token bound to a client certificate passes on the
/// mutual-TLS listener with that certificate only; never with another, never on the main
/// listener.
#[tokio::test]
async fn certificate_bound_tokens_pass_on_the_mutual_tls_listener_with_their_certificate() {
    use trustgate_testkit::tls::TestCa;
    let tg = Trustgate::start().await;
    let (up, _, _) = upstream().await;
    let dir = tempfile::tempdir().expect("dir");
    let server_ca = TestCa::new("gateway CA");
    let clients_ca = TestCa::new("clients CA");
    let server = server_ca.server("localhost");
    let path = |name: &str, text: &str| {
        let file = dir.path().join(name);
        std::fs::write(&file, text).expect("write");
        file.display().to_string()
    };
    let settings = format!(
        "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n\
         [mtls]\nlisten = \"127.0.0.1:0\"\nca_files = [\"{}\"]\n",
        path("cert.pem", &server.cert_pem),
        path("key.pem", &server.key_pem),
        path("clients.pem", &clients_ca.pem),
    );
    let config = tg.config(
        &tg.base,
        &settings,
        &app_upstream(&format!("http://{up}"), "", ROUTES),
    );
    let (_gw, records, addr, mutual) = tg.gateway_with_mtls(config).await;
    let mutual = mutual.expect("an mTLS listener");
    let client = |identity: Option<&trustgate_testkit::tls::ClientCertificate>| {
        let mut builder =
            reqwest::Client::builder()
                .tls_certs_only([
                    reqwest::Certificate::from_pem(server_ca.pem.as_bytes()).expect("CA")
                ]);
        if let Some(identity) = identity {
            let pem = format!("{}{}", identity.cert_pem, identity.key_pem);
            builder =
                builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("identity"));
        }
        builder.build().expect("client")
    };
    let worker = clients_ca.client("worker", None);
    let other = clients_ca.client("other", None);
    let bound = tg.token(&tg.alice, |c| {
        c.cnf = Some(trustgate_tokens::Confirmation {
            jkt: None,
            x5t_s256: Some(trustgate_tokens::Confirmation::certificate_thumbprint(
                &worker.der,
            )),
        });
    });
    let get_over = |client: reqwest::Client, port: u16, token: String| async move {
        client
            .get(format!("https://localhost:{port}/courses/1"))
            .bearer_auth(token)
            .send()
            .await
            .expect("answer")
            .status()
    };
    assert_eq!(
        get_over(client(Some(&worker)), mutual.port(), bound.clone()).await,
        StatusCode::OK
    );
    let mismatch = Reason::InvalidToken {
        why: "certificate_binding_mismatch".into(),
    };
    assert_eq!(
        get_over(client(Some(&other)), mutual.port(), bound.clone()).await,
        StatusCode::UNAUTHORIZED,
        "another certificate"
    );
    assert_eq!(last(&records).reason, mismatch);
    assert_eq!(
        get_over(client(None), addr.port(), bound.clone()).await,
        StatusCode::UNAUTHORIZED,
        "the main listener has no certificate"
    );
    assert_eq!(last(&records).reason, mismatch);
    // The mutual-TLS listener wants a certificate of its CAs; an unbound token passes there.
    let refused = client(None)
        .get(format!("https://localhost:{}/courses/1", mutual.port()))
        .send()
        .await;
    assert!(refused.is_err(), "{refused:?}");
    let unbound = tg.token(&tg.alice, |_| {});
    assert_eq!(
        get_over(client(Some(&other)), mutual.port(), unbound).await,
        StatusCode::OK
    );
}

#[test]
fn plain_http_off_loopback_needs_tls_or_a_declared_proxy() {
    let base = r#"
issuer = "https://id.example"
audience = "https://gw.example"
[client]
id = "tgc_x"
secret_env = "X"
[pdp]
url = "https://id.example/"
store_id = "01J00000000000000000000000"
api_key_env = "Y"
[[upstream]]
name = "app"
url = "http://127.0.0.1:9"
audience = "https://app.internal"
[[upstream.route]]
method = "GET"
path = "/x"
public = true
"#;
    let err =
        trustgate_gateway::GatewayConfig::from_toml(&format!("listen = \"0.0.0.0:8088\"\n{base}"))
            .expect_err("plain on 0.0.0.0");
    assert!(
        err.to_string().contains("plain HTTP on 0.0.0.0:8088"),
        "{err}"
    );
    trustgate_gateway::GatewayConfig::from_toml(&format!(
        "listen = \"0.0.0.0:8088\"\ntrusted_proxies = [\"10.0.0.0/8\"]\n{base}"
    ))
    .expect("behind a declared proxy");
    trustgate_gateway::GatewayConfig::from_toml(&format!("listen = \"127.0.0.1:8088\"\n{base}"))
        .expect("loopback");
    let err = trustgate_gateway::GatewayConfig::from_toml(&format!(
        "listen = \"127.0.0.1:8088\"\ntrusted_proxies = [\"nope\"]\n{base}"
    ))
    .expect_err("bad proxy");
    assert!(err.to_string().contains("trusted_proxies"), "{err}");
}

/// RFC 9449 at the gateway (`[dpop]`): a DPoP-bound token passes only with a fresh proof by its
/// key for the gateway's public URL; the proof and the caller's token stay at the gateway (the
/// upstream gets an internal bearer token); a bound token as bearer, a replayed proof and a
/// gateway without `[dpop]` are refused.
#[tokio::test]
async fn dpop_bound_tokens_pass_with_a_proof_that_stays_at_the_gateway() {
    use trustgate_testkit::dpop::{DpopKey, ath};
    let tg = Trustgate::start().await;
    let (up, _, _) = upstream().await;
    let upstreams = app_upstream(&format!("http://{up}"), "", ROUTES);
    let config = tg.config(
        &tg.base,
        "[dpop]\norigin = \"https://api.example\"\n",
        &upstreams,
    );
    let (_gw, records, addr) = tg.gateway(config).await;
    let key = DpopKey::generate();
    let bound = tg.token(&tg.alice, |c| {
        c.cnf = Some(trustgate_tokens::Confirmation::dpop(key.thumbprint()));
    });
    let now = || time::OffsetDateTime::now_utc().unix_timestamp();
    let htu = "https://api.example/courses/1";

    let (status, _, _) = get(addr, "/courses/1", &[("authorization", &bearer(&bound))]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        last(&records).reason,
        Reason::InvalidToken {
            why: "dpop_bound_token_as_bearer".into()
        }
    );

    let scheme = format!("DPoP {bound}");
    let proof = key.proof("GET", htu, now(), serde_json::json!({ "ath": ath(&bound) }));
    let (status, _, body) = get(
        addr,
        "/courses/1",
        &[("authorization", &scheme), ("dpop", &proof)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let forwarded = body["headers"]["authorization"]
        .as_str()
        .expect("internal token");
    assert!(forwarded.starts_with("Bearer "), "{forwarded}");
    assert!(
        !forwarded.contains(&bound),
        "the caller's token stays at the gateway"
    );
    assert!(body["headers"].get("dpop").is_none(), "{body}");

    let (status, headers, _) = get(
        addr,
        "/courses/1",
        &[("authorization", &scheme), ("dpop", &proof)],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let challenge = headers["www-authenticate"].to_str().expect("ascii");
    assert!(challenge.starts_with("DPoP "), "{challenge}");
    assert_eq!(
        last(&records).reason,
        Reason::InvalidDpopProof {
            why: "dpop_proof_replayed".into()
        }
    );

    // Without `[dpop]` the scheme is refused, so a bound token cannot pass at all.
    let (_plain, records, addr) = tg.gateway(tg.config(&tg.base, "", &upstreams)).await;
    let fresh = key.proof("GET", htu, now(), serde_json::json!({ "ath": ath(&bound) }));
    let (status, _, _) = get(
        addr,
        "/courses/1",
        &[("authorization", &scheme), ("dpop", &fresh)],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        last(&records).reason,
        Reason::InvalidToken {
            why: "dpop_not_accepted".into()
        }
    );
}
