//! The pages, and the OpenID Connect relying party that signs users in at trustgate.
//!
//! Sign-in is the authorization code flow with PKCE (S256), `state` and `nonce`, a confidential
//! client authenticating with `client_secret_basic`; the ID token is verified against
//! trustgate's JWKS (`pep::JwtVerifier::verify_id_token`). The session is this service's own
//! (a random cookie naming a server-side record holding the tokens); the pages never decide
//! anything: each one calls the API through the `pep` layer with the user's access token and
//! shows what the layer answered. A step-up challenge (RFC 9470: 401
//! `insufficient_user_authentication` with `acr_values` and `max_age`) sends the browser back
//! to trustgate with exactly those parameters.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tower::ServiceExt;
use trustgate_core::Secret;
use trustgate_pep::JwtVerifier;

use crate::Endpoints;

/// The session cookie of the example (not trustgate's).
pub const SESSION_COOKIE: &str = "lp_session";
/// How long a sign-in may take between the redirect to trustgate and the callback.
const PENDING_TTL: time::Duration = time::Duration::minutes(10);
/// The most sign-ins in flight and sessions kept (the oldest are dropped beyond).
const MAX_ENTRIES: usize = 10_000;
/// The largest API answer a page reads.
const MAX_API_ANSWER: usize = 64 * 1024;

/// A sign-in between the redirect and the callback.
#[derive(Debug, Clone)]
struct Pending {
    verifier: String,
    nonce: String,
    return_to: String,
    started: OffsetDateTime,
}

/// A signed-in user of the example.
#[derive(Debug, Clone)]
struct Session {
    sub: String,
    name: String,
    access_token: Secret,
    id_token: Secret,
    expires_at: OffsetDateTime,
    csrf: String,
}

/// What the pages share.
#[derive(Debug)]
pub struct Web {
    pub(crate) endpoints: Endpoints,
    pub(crate) client_id: String,
    pub(crate) client_secret: Secret,
    pub(crate) public_url: url::Url,
    pub(crate) id_tokens: JwtVerifier,
    pub(crate) http: reqwest::Client,
    /// The API behind its `pep` layer, called in-process with the user's token.
    pub(crate) api: Router,
    pending: Mutex<HashMap<String, Pending>>,
    sessions: Mutex<HashMap<String, Session>>,
}

impl Web {
    pub(crate) fn new(
        endpoints: Endpoints,
        client_id: String,
        client_secret: Secret,
        public_url: url::Url,
        id_tokens: JwtVerifier,
        http: reqwest::Client,
        api: Router,
    ) -> Self {
        Web {
            endpoints,
            client_id,
            client_secret,
            public_url,
            id_tokens,
            http,
            api,
            pending: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn redirect_uri(&self) -> String {
        format!("{}callback", self.public_url)
    }
}

/// The pages' routes. Every answer carries a Content-Security-Policy without any script or
/// style: forms post to this service, whose redirects may lead to trustgate (sign-in, step-up,
/// sign-out), so trustgate's origin is allowed as a form target too.
pub fn router(web: Arc<Web>) -> Router {
    let csp = format!(
        "default-src 'none'; img-src 'self'; form-action 'self' {}; frame-ancestors 'none'; \
         base-uri 'none'",
        web.endpoints.authorization.origin().ascii_serialization()
    );
    let csp = HeaderValue::from_str(&csp).unwrap_or(HeaderValue::from_static("default-src 'none'"));
    Router::new()
        .route("/", get(home))
        .route("/login", get(login))
        .route("/callback", get(callback))
        .route("/logout", post(logout))
        .route("/progress/{student}", get(progress_page))
        .route("/courses/{course}", get(course_page).post(course_edit))
        .route("/settings", get(settings_page).post(settings_change))
        .with_state(web)
        .layer(axum::middleware::map_response(
            move |mut response: Response| {
                let csp = csp.clone();
                async move {
                    response
                        .headers_mut()
                        .insert(header::CONTENT_SECURITY_POLICY, csp);
                    response.headers_mut().insert(
                        header::X_CONTENT_TYPE_OPTIONS,
                        HeaderValue::from_static("nosniff"),
                    );
                    response
                }
            },
        ))
}

#[derive(Debug, Clone)]
struct Field {
    name: &'static str,
    label: &'static str,
    value: String,
}

#[derive(Debug, Clone)]
struct Form {
    action: String,
    fields: Vec<Field>,
    submit: &'static str,
}

#[derive(Debug, Template)]
#[template(path = "page.html")]
struct Page {
    title: String,
    banner: String,
    signed_in: Option<String>,
    csrf: String,
    status: Option<u16>,
    outcome: String,
    rows: Vec<(String, String)>,
    form: Option<Form>,
    links: Vec<(String, String)>,
}

impl Page {
    fn new(title: impl Into<String>, session: Option<&Session>) -> Self {
        Page {
            title: title.into(),
            banner: String::new(),
            signed_in: session.map(|s| s.name.clone()),
            csrf: session.map(|s| s.csrf.clone()).unwrap_or_default(),
            status: None,
            outcome: String::new(),
            rows: Vec::new(),
            form: None,
            links: Vec::new(),
        }
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        match self.render() {
            Ok(html) => {
                let mut response = (StatusCode::OK, html).into_response();
                let headers = response.headers_mut();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                );
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                response
            }
            Err(e) => {
                tracing::error!(error = %e, "page could not be rendered");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }
}

/// What the API answered a page.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    challenge: Option<String>,
    body: Value,
}

impl Answer {
    /// One line saying what the layer decided.
    fn outcome(&self) -> String {
        let code = self.body["code"].as_str().unwrap_or_default();
        match self.status.as_u16() {
            200 => "Allowed".to_owned(),
            403 => format!("Denied (403 {code})"),
            401 => format!("Not authenticated (401 {code})"),
            503 => "The policy decision point is unavailable (503): nothing was allowed".to_owned(),
            other => format!("{other} {code}"),
        }
    }

    /// The step-up a 401 asks for (RFC 9470 §3): `acr_values` and `max_age`.
    fn step_up(&self) -> Option<(Option<String>, Option<String>)> {
        let challenge = self.challenge.as_deref()?;
        if self.status != StatusCode::UNAUTHORIZED
            || !challenge.contains("error=\"insufficient_user_authentication\"")
        {
            return None;
        }
        Some((param(challenge, "acr_values"), param(challenge, "max_age")))
    }
}

/// A parameter of a `WWW-Authenticate` challenge (quoted or not).
fn param(challenge: &str, name: &str) -> Option<String> {
    let start = challenge.find(&format!("{name}="))? + name.len() + 1;
    let rest = &challenge[start..];
    let value = match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next()?,
        None => rest.split([',', ' ']).next()?,
    };
    Some(value.to_owned())
}

fn random() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_owned())
}

fn session_of(web: &Web, headers: &HeaderMap) -> Option<Session> {
    let id = cookie(headers, SESSION_COOKIE)?;
    let mut sessions = web.sessions.lock();
    let session = sessions.get(&id)?.clone();
    if session.expires_at <= OffsetDateTime::now_utc() {
        sessions.remove(&id);
        return None;
    }
    Some(session)
}

/// A local path to come back to after sign-in (never another origin).
fn local_path(path: Option<&str>) -> String {
    match path {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') => p.to_owned(),
        _ => "/".to_owned(),
    }
}

fn sign_in_first(path: &str) -> Response {
    let target = format!(
        "/login?return={}",
        url::form_urlencoded::byte_serialize(path.as_bytes()).collect::<String>()
    );
    Redirect::to(&target).into_response()
}

/// Calls the API in-process with the user's access token.
async fn call_api(
    web: &Web,
    session: &Session,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Answer {
    let mut request = http::Request::builder().method(method).uri(path).header(
        header::AUTHORIZATION,
        format!("Bearer {}", session.access_token.expose()),
    );
    let body = match body {
        Some(json) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Body::from(json.to_string())
        }
        None => Body::empty(),
    };
    let failed = |why: String| Answer {
        status: StatusCode::BAD_GATEWAY,
        challenge: None,
        body: json!({ "code": "api_unreachable", "message": why }),
    };
    let Ok(request) = request.body(body) else {
        return failed("the request could not be built".into());
    };
    let Ok(response) = web.api.clone().oneshot(request).await;
    let status = response.status();
    let challenge = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = match to_bytes(response.into_body(), MAX_API_ANSWER).await {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        Err(e) => return failed(e.to_string()),
    };
    Answer {
        status,
        challenge,
        body,
    }
}

/// Renders an API answer into a page, or sends the browser to step up.
fn answered(mut page: Page, answer: &Answer, return_to: &str) -> Response {
    if let Some((acr_values, max_age)) = answer.step_up() {
        let mut target = format!(
            "/login?return={}",
            url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect::<String>()
        );
        if let Some(acr) = acr_values {
            target.push_str(&format!("&acr_values={acr}"));
        }
        if let Some(age) = max_age {
            target.push_str(&format!("&max_age={age}"));
        }
        return Redirect::to(&target).into_response();
    }
    page.status = Some(answer.status.as_u16());
    page.outcome = answer.outcome();
    if answer.status.is_success()
        && let Some(fields) = answer.body.as_object()
    {
        page.rows = fields
            .iter()
            .map(|(k, v)| {
                let shown = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), shown)
            })
            .collect();
    }
    let mut response = page.into_response();
    if !answer.status.is_success() {
        *response.status_mut() = answer.status;
    }
    response
}

async fn home(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let session = session_of(&web, &headers);
    let mut page = Page::new("Learning platform", session.as_ref());
    if let Some(session) = &session {
        let settings = call_api(&web, session, "GET", "/api/settings", None).await;
        if let Some(banner) = settings.body["banner"].as_str() {
            page.banner = banner.to_owned();
        }
        page.links = vec![
            (
                format!("/progress/{}", session.sub),
                "My progress".to_owned(),
            ),
            ("/courses/rust".to_owned(), "Course: Rust".to_owned()),
            ("/courses/go".to_owned(), "Course: Go".to_owned()),
            ("/settings".to_owned(), "Platform settings".to_owned()),
        ];
    }
    page.into_response()
}

#[derive(Debug, Deserialize)]
struct LoginQuery {
    #[serde(rename = "return")]
    return_to: Option<String>,
    acr_values: Option<String>,
    max_age: Option<u64>,
}

/// Starts the authorization code flow (OpenID Connect Core §3.1.2.1, RFC 7636).
async fn login(State(web): State<Arc<Web>>, Query(q): Query<LoginQuery>) -> Response {
    let state = random();
    let verifier = random();
    let nonce = random();
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    {
        let mut pending = web.pending.lock();
        let now = OffsetDateTime::now_utc();
        pending.retain(|_, p| now - p.started < PENDING_TTL);
        if pending.len() >= MAX_ENTRIES {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "too many sign-ins in flight",
            )
                .into_response();
        }
        pending.insert(
            state.clone(),
            Pending {
                verifier,
                nonce: nonce.clone(),
                return_to: local_path(q.return_to.as_deref()),
                started: now,
            },
        );
    }
    let mut url = web.endpoints.authorization.clone();
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", &web.client_id)
            .append_pair("redirect_uri", &web.redirect_uri())
            .append_pair("scope", &format!("openid profile {}", crate::api::SCOPE))
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        if let Some(acr) = q.acr_values.as_deref().filter(|a| !a.is_empty()) {
            query.append_pair("acr_values", acr);
        }
        if let Some(age) = q.max_age {
            query.append_pair("max_age", &age.to_string());
        }
    }
    Redirect::to(url.as_str()).into_response()
}

#[derive(Debug, Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    access_token: String,
    id_token: String,
    expires_in: i64,
}

fn refused(why: &str) -> Response {
    let mut page = Page::new("Sign-in failed", None);
    page.status = Some(400);
    page.outcome = why.to_owned();
    let mut response = page.into_response();
    *response.status_mut() = StatusCode::BAD_REQUEST;
    response
}

/// The redirect back from trustgate (OpenID Connect Core §3.1.2.5, §3.1.3).
async fn callback(State(web): State<Arc<Web>>, Query(q): Query<CallbackQuery>) -> Response {
    let Some(pending) = q
        .state
        .as_deref()
        .and_then(|s| web.pending.lock().remove(s))
    else {
        return refused("unknown or spent sign-in state");
    };
    if OffsetDateTime::now_utc() - pending.started >= PENDING_TTL {
        return refused("the sign-in took too long; start again");
    }
    if let Some(error) = q.error {
        let description = q.error_description.unwrap_or_default();
        return refused(&format!("trustgate answered {error}: {description}"));
    }
    let Some(code) = q.code else {
        return refused("no code");
    };
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let redirect_uri = web.redirect_uri();
    let response = web
        .http
        .post(web.endpoints.token.clone())
        .basic_auth(enc(&web.client_id), Some(enc(web.client_secret.expose())))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect_uri.as_str()),
            ("code_verifier", pending.verifier.as_str()),
        ])
        .send()
        .await;
    let tokens: TokenAnswer = match response {
        Ok(r) if r.status().is_success() => match r.json().await {
            Ok(t) => t,
            Err(_) => return refused("the token answer is not what OpenID Connect says"),
        },
        Ok(r) => return refused(&format!("the token endpoint answered {}", r.status())),
        Err(e) => return refused(&format!("the token endpoint could not be reached: {e}")),
    };
    let claims = match web
        .id_tokens
        .verify_id_token(&tokens.id_token, &web.client_id, Some(&pending.nonce))
        .await
    {
        Ok(claims) => claims,
        Err(e) => return refused(&format!("the ID token is not valid: {e}")),
    };
    // The name is a `profile` claim, which the code flow returns from userinfo (Core §5.3),
    // whose `sub` must be the ID token's (§5.3.2).
    let name = match userinfo(&web, &tokens.access_token).await {
        Ok(info) if info["sub"].as_str() == Some(claims.sub.as_str()) => info["preferred_username"]
            .as_str()
            .or(claims.preferred_username.as_deref())
            .unwrap_or(&claims.sub)
            .to_owned(),
        Ok(_) => return refused("userinfo describes another subject than the ID token"),
        Err(why) => return refused(&format!("userinfo: {why}")),
    };
    let id = random();
    let session = Session {
        name,
        sub: claims.sub,
        access_token: Secret::new(tokens.access_token),
        id_token: Secret::new(tokens.id_token),
        expires_at: OffsetDateTime::now_utc()
            + time::Duration::seconds(tokens.expires_in.clamp(0, 86_400)),
        csrf: random(),
    };
    {
        let mut sessions = web.sessions.lock();
        let now = OffsetDateTime::now_utc();
        sessions.retain(|_, s| s.expires_at > now);
        if sessions.len() >= MAX_ENTRIES {
            return (StatusCode::SERVICE_UNAVAILABLE, "too many sessions").into_response();
        }
        sessions.insert(id.clone(), session);
    }
    let mut response = Redirect::to(&pending.return_to).into_response();
    let secure = if web.public_url.scheme() == "https" {
        "; Secure"
    } else {
        ""
    };
    if let Ok(value) = HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Lax{secure}"
    )) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// The userinfo answer (OpenID Connect Core §5.3.2).
async fn userinfo(web: &Web, access_token: &str) -> Result<Value, String> {
    let response = web
        .http
        .get(web.endpoints.userinfo.clone())
        .bearer_auth(access_token)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("answered {}", response.status()));
    }
    let bytes = response.bytes().await.map_err(|e| e.to_string())?;
    if bytes.len() > MAX_API_ANSWER {
        return Err("the answer is too large".into());
    }
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

#[derive(Debug, Deserialize)]
struct CsrfForm {
    csrf: String,
}

/// The CSRF token is a secret: compared in constant time.
fn csrf_ok(session: &Session, presented: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    session.csrf.as_bytes().ct_eq(presented.as_bytes()).into()
}

/// Signs out here, then at trustgate (RP-initiated logout).
async fn logout(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<CsrfForm>,
) -> Response {
    let Some(session) = session_of(&web, &headers) else {
        return Redirect::to("/").into_response();
    };
    if !csrf_ok(&session, &form.csrf) {
        return (StatusCode::FORBIDDEN, "bad CSRF token").into_response();
    }
    if let Some(id) = cookie(&headers, SESSION_COOKIE) {
        web.sessions.lock().remove(&id);
    }
    let mut url = web.endpoints.end_session.clone();
    url.query_pairs_mut()
        .append_pair("id_token_hint", session.id_token.expose())
        .append_pair("post_logout_redirect_uri", web.public_url.as_str());
    let mut response = Redirect::to(url.as_str()).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"
    )) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn progress_page(
    State(web): State<Arc<Web>>,
    Path(student): Path<String>,
    headers: HeaderMap,
) -> Response {
    let here = format!("/progress/{student}");
    let Some(session) = session_of(&web, &headers) else {
        return sign_in_first(&here);
    };
    let path = format!("/api/progress/{}", encode_segment(&student));
    let answer = call_api(&web, &session, "GET", &path, None).await;
    answered(Page::new("Progress", Some(&session)), &answer, &here)
}

fn encode_segment(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}

fn course_form(course: &str, answer: &Answer) -> Form {
    Form {
        action: format!("/courses/{}", encode_segment(course)),
        fields: vec![
            Field {
                name: "title",
                label: "Title",
                value: answer.body["title"].as_str().unwrap_or_default().to_owned(),
            },
            Field {
                name: "description",
                label: "Description",
                value: answer.body["description"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            },
        ],
        submit: "Save course",
    }
}

async fn course_page(
    State(web): State<Arc<Web>>,
    Path(course): Path<String>,
    headers: HeaderMap,
) -> Response {
    let here = format!("/courses/{course}");
    let Some(session) = session_of(&web, &headers) else {
        return sign_in_first(&here);
    };
    let path = format!("/api/courses/{}", encode_segment(&course));
    let answer = call_api(&web, &session, "GET", &path, None).await;
    let mut page = Page::new("Course", Some(&session));
    if answer.status.is_success() {
        page.form = Some(course_form(&course, &answer));
    }
    answered(page, &answer, &here)
}

#[derive(Debug, Deserialize)]
struct CourseForm {
    csrf: String,
    title: String,
    #[serde(default)]
    description: String,
}

async fn course_edit(
    State(web): State<Arc<Web>>,
    Path(course): Path<String>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<CourseForm>,
) -> Response {
    let here = format!("/courses/{course}");
    let Some(session) = session_of(&web, &headers) else {
        return sign_in_first(&here);
    };
    if !csrf_ok(&session, &form.csrf) {
        return (StatusCode::FORBIDDEN, "bad CSRF token").into_response();
    }
    let path = format!("/api/courses/{}", encode_segment(&course));
    let body = json!({ "title": form.title, "description": form.description });
    let answer = call_api(&web, &session, "PUT", &path, Some(body)).await;
    answered(Page::new("Course saved?", Some(&session)), &answer, &here)
}

fn settings_form(answer: &Answer) -> Form {
    Form {
        action: "/settings".to_owned(),
        fields: vec![
            Field {
                name: "banner",
                label: "Banner",
                value: answer.body["banner"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            },
            Field {
                name: "enrolment_open",
                label: "Enrolment open (yes/no)",
                value: if answer.body["enrolment_open"].as_bool() == Some(true) {
                    "yes".to_owned()
                } else {
                    "no".to_owned()
                },
            },
        ],
        submit: "Change settings",
    }
}

async fn settings_page(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let Some(session) = session_of(&web, &headers) else {
        return sign_in_first("/settings");
    };
    let answer = call_api(&web, &session, "GET", "/api/settings", None).await;
    let mut page = Page::new("Platform settings", Some(&session));
    if answer.status.is_success() {
        page.form = Some(settings_form(&answer));
    }
    answered(page, &answer, "/settings")
}

#[derive(Debug, Deserialize)]
struct SettingsForm {
    csrf: String,
    banner: String,
    enrolment_open: String,
}

async fn settings_change(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<SettingsForm>,
) -> Response {
    let Some(session) = session_of(&web, &headers) else {
        return sign_in_first("/settings");
    };
    if !csrf_ok(&session, &form.csrf) {
        return (StatusCode::FORBIDDEN, "bad CSRF token").into_response();
    }
    let body = json!({
        "banner": form.banner,
        "enrolment_open": form.enrolment_open.trim().eq_ignore_ascii_case("yes"),
    });
    let answer = call_api(&web, &session, "PUT", "/api/settings", Some(body)).await;
    answered(
        Page::new("Settings changed?", Some(&session)),
        &answer,
        "/settings",
    )
}

/// How long the example waits for trustgate.
pub(crate) const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_up_challenge_yields_its_parameters() {
        let answer = Answer {
            status: StatusCode::UNAUTHORIZED,
            challenge: Some(
                "Bearer realm=\"learning\", error=\"insufficient_user_authentication\", \
                 error_description=\"a second factor is needed\", acr_values=\"2\", max_age=600"
                    .into(),
            ),
            body: Value::Null,
        };
        assert_eq!(
            answer.step_up(),
            Some((Some("2".into()), Some("600".into())))
        );
        let invalid = Answer {
            challenge: Some("Bearer realm=\"learning\", error=\"invalid_token\"".into()),
            ..answer
        };
        assert_eq!(invalid.step_up(), None);
    }

    #[test]
    fn only_local_paths_are_returned_to() {
        assert_eq!(local_path(Some("/settings")), "/settings");
        for bad in ["//evil.example/", "https://evil.example/", "/\\evil", ""] {
            assert_eq!(local_path(Some(bad)), "/", "{bad}");
        }
        assert_eq!(local_path(None), "/");
    }
}
