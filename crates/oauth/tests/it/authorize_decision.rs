//! The authorization endpoint's decision (`provider::decision::decide`), row by row: no session,
//! `prompt` none/login/consent, `max_age` reached and exceeded, `acr_values=2` with and without a
//! second factor, the `tg_login_after` re-authentication marker, consent missing, partial,
//! present, approved and denied, first-party clients, and the `id_token_hint`. Each row names
//! the step and, for errors, where the error goes (to the client, or on a page).

use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use trustgate_oauth::ErrorCode;
use trustgate_oauth::clients::{AuthMethod, Client, GrantType};
use trustgate_oauth::provider::decision::{AuthorizeFacts, AuthorizeStep, IdTokenHint, decide};
use trustgate_oauth::provider::{ConsentDecision, EndUser};
use trustgate_oauth::request::{
    self, AuthorizationRequest, AuthorizeError, LOGIN_AFTER_PARAM, Params,
};
use trustgate_store_api::Consent;

const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);
/// The session authenticated ten minutes before `NOW`.
const AUTH_AGE_SECS: i64 = 600;
const REDIRECT_URI: &str = "https://app.example.com/cb";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const CONSENTED_AT: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

#[derive(Debug, Clone, Copy)]
enum Session {
    None,
    /// alice, password only, no second factor enrolled.
    OneFactor,
    /// alice, password only, TOTP enrolled.
    OneFactorCanStepUp,
    /// alice, password and TOTP.
    TwoFactors,
}

#[derive(Debug, Clone, Copy)]
enum Hint {
    Absent,
    Invalid,
    Alice,
    Bob,
}

#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Log in; resume without the marker.
    Login,
    /// Authenticate again; resume with the marker at `NOW`.
    Reauthenticate,
    /// The consent page for the requested scope.
    Consent,
    /// A code, nothing to remember.
    Issue,
    /// A code, remembering these scopes.
    IssueRemembering(&'static [&'static str]),
    /// `access_denied` to the client, audited as a refusal.
    Denied,
    /// This error to the client's redirect URI with `state`.
    Redirect(ErrorCode),
    /// This error on a page, never to the client.
    Page(ErrorCode),
}

#[derive(Debug, Clone, Copy)]
struct Row {
    name: &'static str,
    /// On top of a valid `scope=openid profile` request with `state=xyz`; `@auth` stands for the
    /// session's `auth_time`, `@auth+1` for a second later.
    params: &'static [(&'static str, &'static str)],
    session: Session,
    hint: Hint,
    /// The remembered consent (`None`: never consented).
    consent: Option<&'static [&'static str]>,
    first_party: bool,
    decision: ConsentDecision,
    expect: Expect,
}

const BASE: Row = Row {
    name: "",
    params: &[],
    session: Session::OneFactor,
    hint: Hint::Absent,
    consent: Some(&["openid", "profile"]),
    first_party: false,
    decision: ConsentDecision::Ask,
    expect: Expect::Issue,
};

#[rustfmt::skip]
const ROWS: &[Row] = &[
    // Nobody signed in.
    Row { name: "no session: log in", session: Session::None, expect: Expect::Login, ..BASE },
    Row { name: "no session, login_hint passed on", session: Session::None, params: &[("login_hint", "alice")], expect: Expect::Login, ..BASE },
    Row { name: "no session, prompt=none", session: Session::None, params: &[("prompt", "none")], expect: Expect::Redirect(ErrorCode::LoginRequired), ..BASE },
    Row { name: "no session, prompt=login: just log in", session: Session::None, params: &[("prompt", "login")], expect: Expect::Login, ..BASE },
    Row { name: "no session, max_age=0: just log in", session: Session::None, params: &[("max_age", "0")], expect: Expect::Login, ..BASE },
    Row { name: "no session, approve is not enough", session: Session::None, decision: ConsentDecision::Approve, expect: Expect::Login, ..BASE },
    Row { name: "no session, deny is not enough", session: Session::None, decision: ConsentDecision::Deny, expect: Expect::Login, ..BASE },
    // The ID token hint.
    Row { name: "invalid hint, no session", session: Session::None, hint: Hint::Invalid, expect: Expect::Redirect(ErrorCode::InvalidRequest), ..BASE },
    Row { name: "invalid hint, prompt=none", session: Session::None, hint: Hint::Invalid, params: &[("prompt", "none")], expect: Expect::Redirect(ErrorCode::InvalidRequest), ..BASE },
    Row { name: "invalid hint with a session", hint: Hint::Invalid, expect: Expect::Redirect(ErrorCode::InvalidRequest), ..BASE },
    Row { name: "hint names the signed-in user", hint: Hint::Alice, expect: Expect::Issue, ..BASE },
    Row { name: "hint names another user: page, never a switch", hint: Hint::Bob, expect: Expect::Page(ErrorCode::LoginRequired), ..BASE },
    Row { name: "hint names another user, prompt=none", hint: Hint::Bob, params: &[("prompt", "none")], expect: Expect::Redirect(ErrorCode::LoginRequired), ..BASE },
    Row { name: "hint names another user, no session: log in", session: Session::None, hint: Hint::Bob, expect: Expect::Login, ..BASE },
    // prompt=login and the re-authentication marker.
    Row { name: "prompt=login", params: &[("prompt", "login")], expect: Expect::Reauthenticate, ..BASE },
    Row { name: "prompt=login, re-authenticated at the marker", params: &[("prompt", "login"), (LOGIN_AFTER_PARAM, "@auth")], expect: Expect::Issue, ..BASE },
    Row { name: "prompt=login, marker later than the session's auth_time", params: &[("prompt", "login"), (LOGIN_AFTER_PARAM, "@auth+1")], expect: Expect::Reauthenticate, ..BASE },
    Row { name: "prompt=login, unparsable marker is ignored", params: &[("prompt", "login"), (LOGIN_AFTER_PARAM, "soon")], expect: Expect::Reauthenticate, ..BASE },
    Row { name: "prompt=login re-authenticated, consent still missing", params: &[("prompt", "login"), (LOGIN_AFTER_PARAM, "@auth")], consent: None, expect: Expect::Consent, ..BASE },
    Row { name: "prompt=login before the consent decision counts", params: &[("prompt", "login")], decision: ConsentDecision::Approve, expect: Expect::Reauthenticate, ..BASE },
    Row { name: "prompt=select_account changes nothing", params: &[("prompt", "select_account")], expect: Expect::Issue, ..BASE },
    // max_age.
    Row { name: "max_age not reached", params: &[("max_age", "3600")], expect: Expect::Issue, ..BASE },
    Row { name: "max_age reached exactly", params: &[("max_age", "600")], expect: Expect::Issue, ..BASE },
    Row { name: "max_age exceeded by a second", params: &[("max_age", "599")], expect: Expect::Reauthenticate, ..BASE },
    Row { name: "max_age=0", params: &[("max_age", "0")], expect: Expect::Reauthenticate, ..BASE },
    Row { name: "max_age exceeded, prompt=none", params: &[("max_age", "60"), ("prompt", "none")], expect: Expect::Redirect(ErrorCode::LoginRequired), ..BASE },
    Row { name: "max_age exceeded, re-authenticated at the marker", params: &[("max_age", "60"), (LOGIN_AFTER_PARAM, "@auth")], expect: Expect::Issue, ..BASE },
    // acr_values=2: a second factor.
    Row { name: "acr 2, one factor, none enrolled: nothing to step up to", params: &[("acr_values", "2")], expect: Expect::Issue, ..BASE },
    Row { name: "acr 2, one factor, TOTP enrolled: step up", params: &[("acr_values", "2")], session: Session::OneFactorCanStepUp, expect: Expect::Reauthenticate, ..BASE },
    Row { name: "acr 2 among others, TOTP enrolled", params: &[("acr_values", "1 2")], session: Session::OneFactorCanStepUp, expect: Expect::Reauthenticate, ..BASE },
    Row { name: "acr 1 only, TOTP enrolled", params: &[("acr_values", "1")], session: Session::OneFactorCanStepUp, expect: Expect::Issue, ..BASE },
    Row { name: "acr 2, two factors already", params: &[("acr_values", "2")], session: Session::TwoFactors, expect: Expect::Issue, ..BASE },
    Row { name: "acr 2, step up needed, prompt=none", params: &[("acr_values", "2"), ("prompt", "none")], session: Session::OneFactorCanStepUp, expect: Expect::Redirect(ErrorCode::LoginRequired), ..BASE },
    Row { name: "acr 2, back from the step up at the marker", params: &[("acr_values", "2"), (LOGIN_AFTER_PARAM, "@auth")], session: Session::OneFactorCanStepUp, expect: Expect::Issue, ..BASE },
    // Consent.
    Row { name: "never consented", consent: None, expect: Expect::Consent, ..BASE },
    Row { name: "never consented, prompt=none", consent: None, params: &[("prompt", "none")], expect: Expect::Redirect(ErrorCode::ConsentRequired), ..BASE },
    Row { name: "consent covers part of the scope", consent: Some(&["openid"]), expect: Expect::Consent, ..BASE },
    Row { name: "partial consent, prompt=none", consent: Some(&["openid"]), params: &[("prompt", "none")], expect: Expect::Redirect(ErrorCode::ConsentRequired), ..BASE },
    Row { name: "consent covers more than the scope", consent: Some(&["email", "openid", "profile"]), expect: Expect::Issue, ..BASE },
    Row { name: "consent covers the scope, prompt=none", params: &[("prompt", "none")], expect: Expect::Issue, ..BASE },
    Row { name: "prompt=consent asks again", params: &[("prompt", "consent")], expect: Expect::Consent, ..BASE },
    Row { name: "empty scope, never consented", params: &[("scope", "")], consent: None, expect: Expect::Consent, ..BASE },
    Row { name: "empty scope, a consent on record", params: &[("scope", "")], consent: Some(&[]), expect: Expect::Issue, ..BASE },
    Row { name: "first party: never asked", first_party: true, consent: None, expect: Expect::Issue, ..BASE },
    Row { name: "first party, prompt=consent: not asked either", first_party: true, consent: None, params: &[("prompt", "consent")], expect: Expect::Issue, ..BASE },
    Row { name: "first party, prompt=none", first_party: true, consent: None, params: &[("prompt", "none")], expect: Expect::Issue, ..BASE },
    Row { name: "first party, no session, prompt=none", first_party: true, session: Session::None, params: &[("prompt", "none")], expect: Expect::Redirect(ErrorCode::LoginRequired), ..BASE },
    // The answer on the consent page.
    Row { name: "approved, first consent", consent: None, decision: ConsentDecision::Approve, expect: Expect::IssueRemembering(&["openid", "profile"]), ..BASE },
    Row { name: "approved, merged with the earlier consent", consent: Some(&["email", "openid"]), decision: ConsentDecision::Approve, expect: Expect::IssueRemembering(&["email", "openid", "profile"]), ..BASE },
    Row { name: "approved, first party: nothing to remember", first_party: true, consent: None, decision: ConsentDecision::Approve, expect: Expect::Issue, ..BASE },
    Row { name: "denied", consent: None, decision: ConsentDecision::Deny, expect: Expect::Denied, ..BASE },
    Row { name: "denied despite an earlier consent", decision: ConsentDecision::Deny, expect: Expect::Denied, ..BASE },
    Row { name: "denied, prompt=none", params: &[("prompt", "none")], decision: ConsentDecision::Deny, expect: Expect::Denied, ..BASE },
];

fn client(first_party: bool) -> Client {
    Client {
        id: "app".into(),
        name: "The App".into(),
        auth_method: AuthMethod::ClientSecretBasic,
        application_type: Default::default(),
        redirect_uris: vec![REDIRECT_URI.into()],
        post_logout_redirect_uris: Vec::new(),
        grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        scopes: ["openid", "profile", "email", "offline_access"]
            .map(str::to_owned)
            .into(),
        jwks: None,
        require_par: false,
        dpop_bound_access_tokens: false,
        tls_client_auth: Default::default(),
        skip_consent: first_party,
        access_token_ttl: Duration::minutes(10),
        refresh_token_ttl: Duration::days(30),
        audience: Vec::new(),
        resource_audiences: Vec::new(),
        refresh_grace: None,
        backchannel_logout_uri: None,
        backchannel_logout_session_required: false,
        token_exchange: None,
        created_at: CONSENTED_AT,
        updated_at: CONSENTED_AT,
        has_secret: true,
    }
}

fn auth_time() -> OffsetDateTime {
    NOW - Duration::seconds(AUTH_AGE_SECS)
}

fn end_user(session: Session) -> Option<EndUser> {
    let (amr, acr, can_step_up) = match session {
        Session::None => return None,
        Session::OneFactor => (vec!["pwd"], "1", false),
        Session::OneFactorCanStepUp => (vec!["pwd"], "1", true),
        Session::TwoFactors => (vec!["pwd", "otp"], "2", true),
    };
    Some(EndUser {
        user_id: "alice".into(),
        session_id: "s1".into(),
        auth_time: auth_time(),
        amr: amr.into_iter().map(str::to_owned).collect(),
        acr: acr.into(),
        can_step_up,
    })
}

/// The request as the provider validates it: `resume` is what the browser comes back with,
/// without the marker (the provider adds it where the step needs it).
fn validated(row: &Row) -> AuthorizationRequest {
    let mut params = Params::default();
    for (name, value) in [
        ("response_type", "code"),
        ("client_id", "app"),
        ("redirect_uri", REDIRECT_URI),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
        ("scope", "openid profile"),
        ("state", "xyz"),
    ] {
        params.set(name, value);
    }
    let at = auth_time().unix_timestamp();
    for (name, value) in row.params {
        let value = match *value {
            "@auth" => at.to_string(),
            "@auth+1" => (at + 1).to_string(),
            other => (*other).to_owned(),
        };
        if value.is_empty() {
            params.remove(name);
        } else {
            params.set(name, value);
        }
    }
    let mut resume = params.clone();
    resume.remove(LOGIN_AFTER_PARAM);
    let client = client(row.first_party);
    let redirect_uri = request::check_redirect_uri(&client, &params).expect("redirect URI");
    request::validate(&client, redirect_uri, &params, None, resume).expect("valid request")
}

fn consent_record(scopes: &[&str]) -> Consent {
    Consent {
        user_id: "alice".into(),
        client_id: "app".into(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        created_at: CONSENTED_AT,
        updated_at: CONSENTED_AT,
    }
}

fn hint(hint: Hint) -> IdTokenHint {
    match hint {
        Hint::Absent => IdTokenHint::Absent,
        Hint::Invalid => IdTokenHint::Invalid,
        Hint::Alice => IdTokenHint::Names("alice".into()),
        Hint::Bob => IdTokenHint::Names("bob".into()),
    }
}

fn assert_to_client(error: &AuthorizeError, code: ErrorCode, name: &str) {
    match error {
        AuthorizeError::Redirect {
            redirect_uri,
            state,
            error,
        } => {
            assert_eq!(redirect_uri, REDIRECT_URI, "{name}");
            assert_eq!(state.as_deref(), Some("xyz"), "{name}: state goes back");
            assert_eq!(error.code, code, "{name}");
        }
        AuthorizeError::Page(error) => panic!("{name}: expected a redirect, got a page: {error}"),
    }
}

fn check(row: &Row) {
    let name = row.name;
    let req = validated(row);
    let user = end_user(row.session);
    let consent = row.consent.map(consent_record);
    let id_token_hint = hint(row.hint);
    let step = decide(&AuthorizeFacts {
        request: &req,
        session: user.as_ref(),
        id_token_hint: &id_token_hint,
        consent: consent.as_ref(),
        decision: row.decision,
        now: NOW,
    });
    let marker = |resume: &Params| resume.get(LOGIN_AFTER_PARAM).map(str::to_owned);
    match (row.expect, step) {
        (Expect::Login, AuthorizeStep::Login { resume, login_hint }) => {
            assert_eq!(resume, req.resume, "{name}");
            assert_eq!(marker(&resume), None, "{name}");
            assert_eq!(login_hint, req.login_hint, "{name}");
        }
        (Expect::Reauthenticate, AuthorizeStep::Reauthenticate { mut resume, .. }) => {
            assert_eq!(
                marker(&resume),
                Some(NOW.unix_timestamp().to_string()),
                "{name}: the marker is the time of the demand"
            );
            resume.remove(LOGIN_AFTER_PARAM);
            assert_eq!(resume, req.resume, "{name}");
        }
        (Expect::Consent, AuthorizeStep::Consent(prompt)) => {
            assert_eq!(prompt.client_id, "app", "{name}");
            assert_eq!(prompt.client_name, "The App", "{name}");
            let asked: Vec<&str> = req.scope.iter().collect();
            assert_eq!(prompt.scopes, asked, "{name}");
            assert_eq!(
                marker(&prompt.resume),
                req.login_after.map(|t| t.to_string()),
                "{name}: the marker survives the consent page"
            );
        }
        (Expect::Issue, AuthorizeStep::IssueCode { user: to, remember }) => {
            assert_eq!(to.user_id, "alice", "{name}");
            assert_eq!(remember, None, "{name}");
        }
        (Expect::IssueRemembering(scopes), AuthorizeStep::IssueCode { user: to, remember }) => {
            assert_eq!(to.user_id, "alice", "{name}");
            let remembered = remember.unwrap_or_else(|| panic!("{name}: nothing remembered"));
            assert_eq!(remembered.user_id, "alice", "{name}");
            assert_eq!(remembered.client_id, "app", "{name}");
            assert_eq!(remembered.scopes, scopes, "{name}");
            let first_granted = if row.consent.is_some() {
                CONSENTED_AT
            } else {
                NOW
            };
            assert_eq!(remembered.created_at, first_granted, "{name}");
            assert_eq!(remembered.updated_at, NOW, "{name}");
        }
        (Expect::Denied, AuthorizeStep::ConsentDenied { user: by, error }) => {
            assert_eq!(by.user_id, "alice", "{name}");
            assert_to_client(&error, ErrorCode::AccessDenied, name);
        }
        (Expect::Redirect(code), AuthorizeStep::Fail(error)) => {
            assert_to_client(&error, code, name);
        }
        (Expect::Page(code), AuthorizeStep::Fail(AuthorizeError::Page(error))) => {
            assert_eq!(error.code, code, "{name}");
        }
        (expected, step) => panic!("{name}: expected {expected:?}, got {step:?}"),
    }
}

#[test]
fn every_row_decides_as_expected() {
    for row in ROWS {
        check(row);
    }
}

#[test]
fn the_table_is_not_trivial() {
    assert!(ROWS.len() >= 50, "{} rows", ROWS.len());
    let mut names: Vec<&str> = ROWS.iter().map(|r| r.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), ROWS.len(), "row names are unique");
}

/// The decision reads the clock it is given, not the system's: the same facts an hour later
/// exceed `max_age` and the marker moves with it.
#[test]
fn time_is_a_fact() {
    let row = Row {
        name: "later",
        params: &[("max_age", "3600")],
        ..BASE
    };
    let req = validated(&row);
    let user = end_user(Session::OneFactor);
    let consent = Some(consent_record(&["openid", "profile"]));
    let facts = |now| AuthorizeFacts {
        request: &req,
        session: user.as_ref(),
        id_token_hint: &IdTokenHint::Absent,
        consent: consent.as_ref(),
        decision: ConsentDecision::Ask,
        now,
    };
    assert!(matches!(
        decide(&facts(NOW)),
        AuthorizeStep::IssueCode { .. }
    ));
    let later = NOW + Duration::hours(1);
    match decide(&facts(later)) {
        AuthorizeStep::Reauthenticate { resume, .. } => assert_eq!(
            resume.get(LOGIN_AFTER_PARAM),
            Some(later.unix_timestamp().to_string().as_str())
        ),
        other => panic!("expected re-authentication, got {other:?}"),
    }
}
