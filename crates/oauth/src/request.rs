//! Authorization requests (RFC 6749 §4.1.1, RFC 7636 §4.3, OIDC Core §3.1.2.1, RFC 9126) and the
//! responses that go back to the client (RFC 6749 §4.1.2, RFC 9207).
//!
//! Validation happens in the order that decides *where* an error may go: until the client and
//! its redirect URI are known to match, an error is shown to the user ([`AuthorizeError::Page`])
//! and never sent to the URI in the request (an open redirector otherwise); after that, errors go
//! back to the client ([`AuthorizeError::Redirect`]) with `state` and `iss`.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use url::Url;

use crate::clients::{Client, GrantType};
use crate::scope::Scope;
use crate::{ErrorCode, OAuthError, pkce};

/// The prefix of `request_uri` values minted by the PAR endpoint (RFC 9126 §2.2).
pub const PAR_URN_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";
/// trustgate's own parameter on the way back from a forced login: the Unix time after which the
/// user must have authenticated. It only ever makes a request stricter than without it.
pub const LOGIN_AFTER_PARAM: &str = "tg_login_after";
/// Longest accepted single parameter value.
pub const MAX_PARAM_BYTES: usize = 4096;
/// Most parameters accepted in one request.
pub const MAX_PARAMS: usize = 64;

/// The parameters that may be repeated: `resource` (RFC 8707 §2) and `audience` (RFC 8693
/// §2.1) name one target each. [`Params::get`] gives the first value, [`Params::all`] every one,
/// so an endpoint that takes one target can tell one from several.
pub const REPEATABLE_PARAMS: [&str; 2] = ["resource", "audience"];

/// Request parameters: each present at most once (RFC 6749 §3.1) but those of
/// [`REPEATABLE_PARAMS`], empty values treated as absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    /// The (first) value of each parameter.
    first: BTreeMap<String, String>,
    /// The further values of repeatable parameters, in order.
    more: BTreeMap<String, Vec<String>>,
}

impl Params {
    /// Collects `(name, value)` pairs, refusing repeated parameters (but the repeatable ones)
    /// and oversized input.
    pub fn from_pairs<I>(pairs: I) -> Result<Self, OAuthError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut params = Self::default();
        let mut count = 0;
        for (name, value) in pairs {
            if count >= MAX_PARAMS || value.len() > MAX_PARAM_BYTES || name.len() > 128 {
                return Err(OAuthError::invalid_request(
                    "too many or too large parameters",
                ));
            }
            if value.is_empty() {
                continue;
            }
            count += 1;
            match params.first.entry(name) {
                Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                Entry::Occupied(taken) if REPEATABLE_PARAMS.contains(&taken.key().as_str()) => {
                    params
                        .more
                        .entry(taken.key().clone())
                        .or_default()
                        .push(value);
                }
                Entry::Occupied(taken) => {
                    return Err(OAuthError::invalid_request(format!(
                        "parameter {} is repeated",
                        taken.key()
                    )));
                }
            }
        }
        Ok(params)
    }

    /// Parses a query string or an `application/x-www-form-urlencoded` body (the one parser of
    /// both at every OAuth endpoint), with the rules of [`Params::from_pairs`].
    pub fn from_form(raw: &[u8]) -> Result<Self, OAuthError> {
        Self::from_pairs(
            url::form_urlencoded::parse(raw).map(|(k, v)| (k.into_owned(), v.into_owned())),
        )
    }

    /// The value of a parameter (the first, for a repeated one).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.first.get(name).map(String::as_str)
    }

    /// Every value of a parameter, in order (at most one but for [`REPEATABLE_PARAMS`]).
    pub fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.first
            .get(name)
            .into_iter()
            .chain(self.more.get(name).into_iter().flatten())
            .map(String::as_str)
    }

    /// Sets a parameter (its only value).
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.more.remove(name);
        self.first.insert(name.to_owned(), value.into());
    }

    /// Removes a parameter (every value); returns the first.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        self.more.remove(name);
        self.first.remove(name)
    }

    /// Every parameter by name, with its first value.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.first.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// As a JSON object (how pushed requests are stored): the first value of each parameter
    /// (authorization requests take no repeated one).
    pub fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
        self.first
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect()
    }

    /// From a JSON object of strings (a stored pushed request).
    pub fn from_json(map: &serde_json::Map<String, serde_json::Value>) -> Self {
        Self {
            first: map
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect(),
            more: BTreeMap::new(),
        }
    }

    /// `application/x-www-form-urlencoded` form, for a URL query (every value).
    pub fn to_query(&self) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(self.first.iter())
            .extend_pairs(
                self.more
                    .iter()
                    .flat_map(|(k, vs)| vs.iter().map(move |v| (k, v))),
            )
            .finish()
    }
}

/// OIDC `prompt` values (§3.1.2.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prompt {
    /// `none`: no interaction; fail with `login_required` / `consent_required` instead.
    pub none: bool,
    /// `login`: authenticate again even with a session.
    pub login: bool,
    /// `consent`: ask for consent even if remembered.
    pub consent: bool,
    /// `select_account`: accepted; trustgate has one account per browser, so it changes nothing.
    pub select_account: bool,
}

impl Prompt {
    fn parse(raw: Option<&str>) -> Result<Self, OAuthError> {
        let mut prompt = Prompt::default();
        for value in raw.unwrap_or("").split(' ').filter(|v| !v.is_empty()) {
            match value {
                "none" => prompt.none = true,
                "login" => prompt.login = true,
                "consent" => prompt.consent = true,
                "select_account" => prompt.select_account = true,
                _ => return Err(OAuthError::invalid_request("unknown prompt value")),
            }
        }
        if prompt.none && (prompt.login || prompt.consent || prompt.select_account) {
            return Err(OAuthError::invalid_request(
                "prompt=none cannot be combined with other values",
            ));
        }
        Ok(prompt)
    }
}

/// A validated authorization request.
#[derive(Debug, Clone)]
pub struct AuthorizationRequest {
    /// The client.
    pub client: Client,
    /// Where the response goes (registered, matched exactly).
    pub redirect_uri: String,
    /// Echoed back unchanged.
    pub state: Option<String>,
    /// Requested scope (every token allowed for the client).
    pub scope: Scope,
    /// OIDC nonce, echoed in the ID token.
    pub nonce: Option<String>,
    /// PKCE S256 challenge.
    pub code_challenge: String,
    /// The DPoP key the code is bound to (RFC 9449 §10): the `dpop_jkt` parameter, or for a
    /// pushed request the key of the proof sent with it.
    pub dpop_jkt: Option<String>,
    /// OIDC prompt.
    pub prompt: Prompt,
    /// OIDC max_age in seconds.
    pub max_age: Option<i64>,
    /// A login name to prefill.
    pub login_hint: Option<String>,
    /// A previously issued ID token naming the expected user.
    pub id_token_hint: Option<String>,
    /// Requested authentication context classes, in order of preference.
    pub acr_values: Vec<String>,
    /// See [`LOGIN_AFTER_PARAM`].
    pub login_after: Option<i64>,
    /// The PAR id when the request came through `request_uri`.
    pub pushed_id: Option<String>,
    /// The parameters to come back with after login or consent: the PAR reference, or the
    /// original parameters.
    pub resume: Params,
}

impl AuthorizationRequest {
    /// `error` as a redirect to the client, with the request's `state`.
    pub fn redirect_error(&self, error: OAuthError) -> AuthorizeError {
        AuthorizeError::Redirect {
            redirect_uri: self.redirect_uri.clone(),
            state: self.state.clone(),
            error,
        }
    }
}

/// Where an authorization error goes.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthorizeError {
    /// Shown to the user; the client cannot be trusted with it (unknown client, unregistered
    /// redirect URI, bad PAR reference).
    Page(OAuthError),
    /// Sent to the client's redirect URI.
    Redirect {
        /// The (registered) redirect URI.
        redirect_uri: String,
        /// The request's `state`.
        state: Option<String>,
        /// The error.
        error: OAuthError,
    },
}

/// Step 1: the redirect URI the request names, once checked against the client.
pub fn check_redirect_uri(client: &Client, params: &Params) -> Result<String, AuthorizeError> {
    let Some(uri) = params.get("redirect_uri") else {
        return Err(AuthorizeError::Page(OAuthError::invalid_request(
            "redirect_uri is required",
        )));
    };
    if !client.redirect_uri_registered(uri) {
        return Err(AuthorizeError::Page(OAuthError::invalid_request(
            "redirect_uri is not registered for this client",
        )));
    }
    Ok(uri.to_owned())
}

/// Step 2: everything else, given a client and a redirect URI that match. `params` are the
/// effective parameters (for PAR, the pushed ones); `resume` what to come back with.
pub fn validate(
    client: &Client,
    redirect_uri: String,
    params: &Params,
    pushed_id: Option<String>,
    resume: Params,
) -> Result<AuthorizationRequest, AuthorizeError> {
    let state = params.get("state").map(str::to_owned);
    let fail = |error: OAuthError| AuthorizeError::Redirect {
        redirect_uri: redirect_uri.clone(),
        state: state.clone(),
        error,
    };
    if params.get("request").is_some() {
        return Err(fail(OAuthError::new(
            ErrorCode::RequestNotSupported,
            "request objects are not supported; use PAR",
        )));
    }
    match params.get("response_type") {
        None => {
            return Err(fail(OAuthError::invalid_request(
                "response_type is required",
            )));
        }
        Some("code") => {}
        Some(_) => {
            return Err(fail(OAuthError::new(
                ErrorCode::UnsupportedResponseType,
                "only response_type=code is supported (implicit and hybrid flows are not)",
            )));
        }
    }
    match params.get("response_mode") {
        None | Some("query") => {}
        Some(_) => {
            return Err(fail(OAuthError::invalid_request(
                "only response_mode=query is supported",
            )));
        }
    }
    if !client.allows_grant(GrantType::AuthorizationCode) {
        return Err(fail(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "the client is not registered for the authorization code grant",
        )));
    }
    if client.require_par && pushed_id.is_none() {
        return Err(fail(OAuthError::invalid_request(
            "this client must use pushed authorization requests",
        )));
    }
    let code_challenge = pkce::check_challenge(
        params.get("code_challenge"),
        params.get("code_challenge_method"),
    )
    .map_err(&fail)?;
    let dpop_jkt = match params.get("dpop_jkt") {
        None => None,
        Some(jkt) if is_thumbprint(jkt) => Some(jkt.to_owned()),
        Some(_) => {
            return Err(fail(OAuthError::invalid_request(
                "dpop_jkt must be a base64url SHA-256 JWK thumbprint (RFC 7638)",
            )));
        }
    };
    let scope = Scope::parse(params.get("scope").unwrap_or("")).map_err(&fail)?;
    if let Some(token) = scope.iter().find(|t| !client.allows_scope(t)) {
        return Err(fail(OAuthError::new(
            ErrorCode::InvalidScope,
            format!("scope {token} is not allowed for this client"),
        )));
    }
    let prompt = Prompt::parse(params.get("prompt")).map_err(&fail)?;
    let max_age = match params.get("max_age") {
        None => None,
        Some(raw) => Some(raw.parse::<i64>().ok().filter(|v| *v >= 0).ok_or_else(|| {
            fail(OAuthError::invalid_request(
                "max_age must be a non-negative integer",
            ))
        })?),
    };
    let login_after = params
        .get(LOGIN_AFTER_PARAM)
        .and_then(|raw| raw.parse::<i64>().ok());
    Ok(AuthorizationRequest {
        client: client.clone(),
        redirect_uri: redirect_uri.clone(),
        state: state.clone(),
        scope,
        nonce: params.get("nonce").map(str::to_owned),
        code_challenge,
        dpop_jkt,
        prompt,
        max_age,
        login_hint: params.get("login_hint").map(str::to_owned),
        id_token_hint: params.get("id_token_hint").map(str::to_owned),
        acr_values: params
            .get("acr_values")
            .map(|v| {
                v.split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        login_after,
        pushed_id,
        resume,
    })
}

/// A JWK SHA-256 thumbprint (RFC 7638) in base64url without padding: 43 characters.
fn is_thumbprint(value: &str) -> bool {
    value.len() == 43
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The PAR id in a `request_uri`, if it has our prefix.
pub fn pushed_request_id(request_uri: &str) -> Option<&str> {
    request_uri
        .strip_prefix(PAR_URN_PREFIX)
        .filter(|id| !id.is_empty() && id.len() <= 128)
}

/// The redirect to the client: `params` appended to the redirect URI's query (which it may
/// already have), plus `state` and `iss` (RFC 9207).
pub fn redirect_to_client(
    redirect_uri: &str,
    params: &[(&str, &str)],
    state: Option<&str>,
    issuer: &str,
) -> String {
    match Url::parse(redirect_uri) {
        Ok(mut url) => {
            {
                let mut query = url.query_pairs_mut();
                for (name, value) in params {
                    query.append_pair(name, value);
                }
                if let Some(state) = state {
                    query.append_pair("state", state);
                }
                query.append_pair("iss", issuer);
            }
            url.into()
        }
        // Registered URIs are validated absolute URLs; this cannot be reached with one.
        Err(_) => redirect_uri.to_owned(),
    }
}

/// The error redirect for an [`AuthorizeError::Redirect`].
pub fn error_redirect(
    redirect_uri: &str,
    state: Option<&str>,
    error: &OAuthError,
    issuer: &str,
) -> String {
    redirect_to_client(
        redirect_uri,
        &[
            ("error", error.code.as_str()),
            ("error_description", &error.description),
        ],
        state,
        issuer,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn repeated_parameters_are_refused_and_empty_ones_ignored() {
        let err = Params::from_pairs(pairs(&[("scope", "a"), ("scope", "b")])).expect_err("dup");
        assert_eq!(err.code, ErrorCode::InvalidRequest);
        let params = Params::from_pairs(pairs(&[("state", ""), ("scope", "openid")])).expect("ok");
        assert_eq!(params.get("state"), None);
        assert_eq!(params.get("scope"), Some("openid"));
    }

    #[test]
    fn targets_may_repeat_and_keep_every_value() {
        let params = Params::from_pairs(pairs(&[
            ("resource", "https://a.example"),
            ("audience", "orders"),
            ("resource", ""),
            ("resource", "https://b.example"),
        ]))
        .expect("RFC 8707 and RFC 8693 targets repeat");
        assert_eq!(params.get("resource"), Some("https://a.example"));
        assert_eq!(
            params.all("resource").collect::<Vec<_>>(),
            ["https://a.example", "https://b.example"]
        );
        assert_eq!(params.all("audience").collect::<Vec<_>>(), ["orders"]);
        assert_eq!(params.all("scope").count(), 0);
        // Repeats count towards the parameter cap.
        let many = (0..=MAX_PARAMS).map(|i| ("audience".to_owned(), format!("a{i}")));
        assert!(Params::from_pairs(many).is_err());
        let mut params = params;
        params.set("resource", "https://c.example");
        assert_eq!(
            params.all("resource").collect::<Vec<_>>(),
            ["https://c.example"]
        );
        assert_eq!(params.remove("audience").as_deref(), Some("orders"));
        assert_eq!(params.all("audience").count(), 0);
    }

    #[test]
    fn prompt_none_stands_alone() {
        assert!(Prompt::parse(Some("none login")).is_err());
        assert!(Prompt::parse(Some("bogus")).is_err());
        let p = Prompt::parse(Some("login consent")).expect("ok");
        assert!(p.login && p.consent && !p.none);
    }

    #[test]
    fn redirect_keeps_the_registered_query_and_adds_iss() {
        let url = redirect_to_client(
            "https://rp.example/cb?tenant=a",
            &[("code", "xyz")],
            Some("s t"),
            "https://op.example",
        );
        assert_eq!(
            url,
            "https://rp.example/cb?tenant=a&code=xyz&state=s+t&iss=https%3A%2F%2Fop.example"
        );
    }

    #[test]
    fn par_urns() {
        assert_eq!(
            pushed_request_id("urn:ietf:params:oauth:request_uri:abc"),
            Some("abc")
        );
        assert_eq!(
            pushed_request_id("urn:ietf:params:oauth:request_uri:"),
            None
        );
        assert_eq!(pushed_request_id("https://evil.example/req"), None);
    }
}
