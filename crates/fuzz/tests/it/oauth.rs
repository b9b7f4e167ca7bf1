//! The OAuth request parsers: form / query parsing into `Params`, the authorization request
//! (redirect URI check, then every other parameter), client authentication as presented, token
//! exchange parameters, and `private_key_jwt` client assertions.

use bolero::{TypeGenerator, check};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};
use trustgate_oauth::clients::{
    AuthMethod, Client, GrantType, JWT_BEARER_ASSERTION_TYPE, MAX_ASSERTION_BYTES,
    MAX_ASSERTION_LIFETIME, MAX_CREDENTIAL_BYTES, presented_credentials, verify_client_assertion,
};
use trustgate_oauth::request::{
    AuthorizeError, MAX_PARAM_BYTES, MAX_PARAMS, Params, check_redirect_uri, validate,
};
use trustgate_oauth::token_exchange::{API_KEY_TOKEN_TYPE, SubjectKind, parse_request};
use trustgate_tokens::Algorithm;

use crate::support::{SMOKE_ITERATIONS, SMOKE_ITERATIONS_SLOW, b64, good, keys, pick};

const REDIRECT_URI: &str = "https://rp.example/cb";
const CLIENT_ID: &str = "tgc_fuzz";
const TOKEN_ENDPOINT: &str = "https://id.example/oauth2/token";
const NOW: i64 = 1_800_000_000;

fn client(jwks: Option<Value>) -> Client {
    let at = OffsetDateTime::from_unix_timestamp(NOW).expect("time");
    Client {
        id: CLIENT_ID.into(),
        name: "Fuzz".into(),
        auth_method: if jwks.is_some() {
            AuthMethod::PrivateKeyJwt
        } else {
            AuthMethod::ClientSecretBasic
        },
        application_type: Default::default(),
        redirect_uris: vec![REDIRECT_URI.into(), "https://rp.example/cb?x=1".into()],
        post_logout_redirect_uris: Vec::new(),
        grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        scopes: ["openid", "profile", "email", "offline_access"]
            .map(str::to_owned)
            .into(),
        jwks,
        require_par: false,
        dpop_bound_access_tokens: false,
        tls_client_auth: Default::default(),
        skip_consent: false,
        access_token_ttl: Duration::minutes(10),
        refresh_token_ttl: Duration::days(30),
        refresh_grace: None,
        audience: Vec::new(),
        resource_audiences: Vec::new(),
        backchannel_logout_uri: None,
        backchannel_logout_session_required: false,
        token_exchange: None,
        created_at: at,
        updated_at: at,
        has_secret: true,
    }
}

/// Runs the authorization request steps on `params` and checks where errors may go: never to a
/// URI the client did not register (an open redirector otherwise).
fn authorize(client: &Client, params: &Params) {
    let redirect_uri = match check_redirect_uri(client, params) {
        Ok(uri) => uri,
        Err(AuthorizeError::Page(_)) => return,
        Err(AuthorizeError::Redirect { .. }) => panic!("step 1 must never redirect"),
    };
    assert!(client.redirect_uris.contains(&redirect_uri));
    match validate(client, redirect_uri.clone(), params, None, params.clone()) {
        Ok(request) => {
            assert_eq!(request.redirect_uri, redirect_uri);
            assert_eq!(params.get("response_type"), Some("code"));
            assert_eq!(request.code_challenge.len(), 43, "PKCE S256 only");
            assert!(request.scope.iter().all(|s| client.allows_scope(s)));
        }
        Err(AuthorizeError::Redirect {
            redirect_uri: to, ..
        }) => assert!(
            client.redirect_uris.contains(&to),
            "error redirected to {to}"
        ),
        Err(AuthorizeError::Page(_)) => {}
    }
}

/// Client authentication as presented: the form's fields and an `Authorization` header.
fn credentials(params: &Params, authorization: Option<&str>) {
    let form = |name: &str| params.get(name).map(str::to_owned);
    if let Ok(presented) = presented_credentials(authorization, &form) {
        let id_len = presented.claimed_client_id().map_or(0, str::len);
        assert!(id_len <= MAX_CREDENTIAL_BYTES);
    }
}

#[test]
fn form() {
    // A query string or urlencoded body, up to a bit above what `Params` accepts (64 parameters
    // of at most 4 KiB each).
    let client = client(None);
    check!()
        .with_iterations(SMOKE_ITERATIONS)
        .with_max_len(MAX_PARAMS * 64 + MAX_PARAM_BYTES + 1024)
        .for_each(|raw: &[u8]| {
            let Ok(params) = Params::from_form(raw) else {
                return;
            };
            assert!(params.iter().count() <= MAX_PARAMS);
            assert!(
                params
                    .iter()
                    .all(|(_, v)| !v.is_empty() && v.len() <= MAX_PARAM_BYTES)
            );
            // What we put into a redirect or a stored PAR request parses back to itself.
            let again = Params::from_form(params.to_query().as_bytes()).expect("round trip");
            assert_eq!(again, params);
            authorize(&client, &params);
            credentials(&params, params.get("authorization"));
            token_exchange(&params);
        });
}

/// A token exchange request's parameters: parsed or refused, never a panic; what parses names
/// one target that the form holds, and typed tokens the form holds; an API key only as the
/// subject.
fn token_exchange(params: &Params) {
    let Ok(request) = parse_request(params) else {
        return;
    };
    assert!(
        params.all("resource").any(|t| t == request.target)
            || params.all("audience").any(|t| t == request.target)
    );
    assert!(
        params
            .all("resource")
            .chain(params.all("audience"))
            .all(|t| t == request.target)
    );
    assert_eq!(params.get("subject_token"), Some(request.subject_token));
    assert_eq!(params.get("actor_token"), request.actor_token);
    let key = params.get("subject_token_type") == Some(API_KEY_TOKEN_TYPE);
    assert_eq!(request.subject_kind == SubjectKind::ApiKey, key);
    assert_ne!(params.get("actor_token_type"), Some(API_KEY_TOKEN_TYPE));
}

/// An authorization request from known parameter names and telling values.
#[derive(Debug, TypeGenerator)]
struct Request {
    pairs: Vec<(u8, u8)>,
    raw_value: Option<(u8, Vec<u8>)>,
    authorization: Option<Vec<u8>>,
}

const NAMES: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "resource",
    "audience",
    "subject_token",
    "subject_token_type",
    "actor_token",
    "actor_token_type",
    "state",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "max_age",
    "nonce",
    "response_mode",
    "request",
    "request_uri",
    "acr_values",
    "login_hint",
    "id_token_hint",
    "tg_login_after",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
];
const VALUES: &[&str] = &[
    "code",
    "token",
    "code id_token",
    REDIRECT_URI,
    "https://rp.example/cb?x=1",
    "https://rp.example/cb/",
    "https://evil.example/cb",
    "openid profile",
    "openid admin",
    "",
    " ",
    "openid  email",
    "S256",
    "plain",
    "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
    "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c",
    "none",
    "login consent",
    "none login",
    "0",
    "-1",
    "99999999999999999999",
    "query",
    "fragment",
    "urn:ietf:params:oauth:request_uri:x",
    "1 2",
    CLIENT_ID,
    "%00",
    "\u{0}",
    "é",
    JWT_BEARER_ASSERTION_TYPE,
    "a.b.c",
    "urn:ietf:params:oauth:token-type:access_token",
    "urn:ietf:params:oauth:token-type:jwt",
    API_KEY_TOKEN_TYPE,
    "https://orders.example",
    "https://orders.example#x",
    "orders",
];

#[test]
fn authorize_request() {
    let client = client(None);
    check!()
        .with_type::<Request>()
        .with_iterations(SMOKE_ITERATIONS)
        .with_max_len(MAX_PARAMS * 64 + MAX_PARAM_BYTES + 1024)
        .for_each(|request| {
            let mut pairs: Vec<(String, String)> = request
                .pairs
                .iter()
                .map(|(n, v)| (pick(NAMES, *n).to_owned(), pick(VALUES, *v).to_owned()))
                .collect();
            if let Some((n, raw)) = &request.raw_value {
                pairs.push((
                    pick(NAMES, *n).to_owned(),
                    String::from_utf8_lossy(raw).into_owned(),
                ));
            }
            let Ok(params) = Params::from_pairs(pairs) else {
                return;
            };
            authorize(&client, &params);
            let authorization = request
                .authorization
                .as_ref()
                .map(|raw| format!("Basic {}", String::from_utf8_lossy(raw)));
            credentials(&params, authorization.as_deref());
            token_exchange(&params);
        });
}

/// A client assertion: each claim well-formed (see [`good`]) or a telling wrong choice, signed
/// by the client's key or not.
#[derive(Debug, TypeGenerator)]
struct Assertion {
    key: u8,
    alg: u8,
    kid: u8,
    iss: u8,
    sub: u8,
    aud: u8,
    exp: u8,
    nbf: u8,
    iat: u8,
    jti: u8,
    signer: u8,
    raw_claims: Option<Vec<u8>>,
    tamper: (u8, u16, u8),
}

const PARTIES: &[&str] = &["tgc_other", "", "TGC_FUZZ"];

/// `exp` when `is_exp`, else `nbf` / `iat`.
fn time_claim(choice: u8, is_exp: bool) -> Option<Value> {
    if good(choice) {
        return match (is_exp, choice % 2) {
            (true, 0) => Some(json!(NOW + 60)),
            (true, _) => Some(json!(NOW + MAX_ASSERTION_LIFETIME.whole_seconds())),
            (false, 0) => None,
            (false, _) => Some(json!(NOW + 29)),
        };
    }
    match choice % 8 {
        0 => None,
        1 => Some(json!(NOW - 31)),
        2 => Some(json!(NOW + 31)),
        3 => Some(json!(NOW + MAX_ASSERTION_LIFETIME.whole_seconds() + 31)),
        4 => Some(json!(i64::MAX)),
        5 => Some(json!(i64::MIN)),
        6 => Some(json!("soon")),
        _ => Some(json!(NOW)),
    }
}

#[test]
fn client_assertion() {
    let keys = keys();
    let client = client(Some(keys.jwks.clone()));
    let audiences = [TOKEN_ENDPOINT, "https://id.example"];
    let now = OffsetDateTime::from_unix_timestamp(NOW).expect("time");
    let leeway = Duration::seconds(30);
    check!()
        .with_type::<Assertion>()
        .with_iterations(SMOKE_ITERATIONS_SLOW)
        .with_max_len(MAX_ASSERTION_BYTES + 1024)
        .for_each(|case| {
            let key = Algorithm::all()[usize::from(case.key % 3)];
            let alg = if good(case.alg) {
                key.as_str()
            } else {
                pick(&["EdDSA", "ES256", "RS256", "none", "HS256"], case.alg)
            };
            let kid = if good(case.kid) {
                crate::support::TestKeys::kid(key)
            } else {
                pick(&["ed", "es", "rs", "nope"], case.kid)
            };
            let header = json!({"alg": alg, "kid": kid, "typ": "JWT"});
            let mut claims = serde_json::Map::new();
            for (name, choice) in [("iss", case.iss), ("sub", case.sub)] {
                if good(choice) {
                    claims.insert(name.into(), json!(CLIENT_ID));
                } else if let Some(v) = PARTIES.get(usize::from(choice % 4)) {
                    claims.insert(name.into(), json!(v));
                }
            }
            match (good(case.aud), case.aud % 3) {
                (true, 0) => drop(claims.insert("aud".into(), json!(TOKEN_ENDPOINT))),
                (true, _) => drop(claims.insert("aud".into(), json!(["x", "https://id.example"]))),
                (false, 0) => {}
                (false, _) => drop(claims.insert("aud".into(), json!("https://evil.example"))),
            }
            for (name, choice) in [("exp", case.exp), ("nbf", case.nbf), ("iat", case.iat)] {
                if let Some(v) = time_claim(choice, name == "exp") {
                    claims.insert(name.into(), v);
                }
            }
            match (good(case.jti), case.jti % 3) {
                (true, _) => drop(claims.insert("jti".into(), json!("j-1"))),
                (false, 0) => {}
                (false, 1) => drop(claims.insert("jti".into(), json!(""))),
                (false, _) => drop(claims.insert("jti".into(), json!("j".repeat(257)))),
            }
            let payload = match &case.raw_claims {
                Some(raw) => raw.clone(),
                None => serde_json::to_vec(&claims).expect("json"),
            };
            let input = format!(
                "{}.{}",
                b64(&serde_json::to_vec(&header).expect("json")),
                b64(&payload)
            );
            let header_alg: Option<Algorithm> = alg.parse().ok();
            let signature = match (good(case.signer), header_alg) {
                (true, Some(a)) => keys.sign(a, input.as_bytes()),
                _ => keys.stranger.sign(input.as_bytes()).as_ref().to_vec(),
            };
            let untampered = format!("{input}.{}", b64(&signature));
            let mut token = untampered.clone().into_bytes();
            if !good(case.tamper.0) {
                let at = usize::from(case.tamper.1) % token.len();
                token[at] ^= case.tamper.2;
            }
            let token = String::from_utf8_lossy(&token).into_owned();
            let signed = good(case.signer)
                && header_alg.is_some_and(|a| crate::support::TestKeys::kid(a) == kid)
                && token == untampered;
            let pristine = case.raw_claims.is_none()
                && [
                    case.alg,
                    case.kid,
                    case.iss,
                    case.sub,
                    case.aud,
                    case.exp,
                    case.nbf,
                    case.iat,
                    case.jti,
                    case.signer,
                    case.tamper.0,
                ]
                .into_iter()
                .all(good);
            match verify_client_assertion(&client, &token, &audiences, now, leeway) {
                Ok(verified) => {
                    assert!(signed, "accepted without the client's signature: {case:?}");
                    if case.raw_claims.is_none() {
                        assert_eq!(claims.get("iss"), Some(&json!(CLIENT_ID)));
                        assert_eq!(claims.get("sub"), Some(&json!(CLIENT_ID)));
                    }
                    assert!(!verified.jti.is_empty() && verified.jti.len() <= 256);
                    assert!(verified.expires_at > now);
                    assert!(verified.expires_at <= now + MAX_ASSERTION_LIFETIME + leeway * 2);
                }
                Err(err) => {
                    assert_eq!(err.code.as_str(), "invalid_client");
                    assert!(
                        !pristine,
                        "a well-formed assertion was refused: {err:?} {case:?}"
                    );
                }
            }
        });
}
