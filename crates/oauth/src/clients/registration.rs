//! The rules a [`ClientRegistration`] must keep before anything is written.

use std::collections::HashSet;
use std::hash::Hash;
use std::net::{Ipv4Addr, Ipv6Addr};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use url::{Host, Url};

use crate::scope::is_scope_token;

use super::{
    ApplicationType, AuthMethod, ClientError, ClientRegistration, GrantType, MAX_ACCESS_TOKEN_TTL,
    MAX_REFRESH_TOKEN_TTL, MIN_ACCESS_TOKEN_TTL, MIN_REFRESH_TOKEN_TTL,
};

/// Longest client name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest redirect, post-logout or back-channel URI, in bytes.
pub const MAX_URI_BYTES: usize = 2000;
/// Most redirect URIs (and, separately, post-logout redirect URIs) per client.
pub const MAX_REDIRECT_URIS: usize = 100;
/// Most allowed scopes per client.
pub const MAX_SCOPES: usize = 200;
/// Longest scope token, in bytes.
const MAX_SCOPE_BYTES: usize = 200;
/// The longest refresh grace a client may opt into, in seconds.
pub const MAX_REFRESH_GRACE_SECS: u32 = 60;
/// Most audiences per client.
pub const MAX_AUDIENCES: usize = 100;
/// Longest audience value, in bytes.
const MAX_AUDIENCE_BYTES: usize = 2000;
/// Largest registered JWK Set, as JSON.
pub const MAX_JWKS_BYTES: usize = 32 * 1024;

/// Which URI field a URI belongs to: they share the scheme rules but not every exception.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UriField {
    Redirect,
    PostLogout,
    Backchannel,
}

impl UriField {
    fn name(self) -> &'static str {
        match self {
            UriField::Redirect => "redirect_uris",
            UriField::PostLogout => "post_logout_redirect_uris",
            UriField::Backchannel => "backchannel_logout_uri",
        }
    }

    fn code(self) -> &'static str {
        match self {
            UriField::Redirect => "invalid_redirect_uri",
            UriField::PostLogout => "invalid_post_logout_redirect_uri",
            UriField::Backchannel => "invalid_backchannel_logout_uri",
        }
    }
}

/// Checks a registration and returns it normalized: the name trimmed, duplicate list entries
/// removed (first occurrence kept). Rules, each with its own error code:
///
/// - `invalid_client_name`: 1 to 200 characters after trimming, no control characters.
/// - `invalid_redirect_uri` / `invalid_post_logout_redirect_uri`: absolute URIs of at most 2000
///   bytes, no fragment, no `*`, no user info, no whitespace; `https`, or `http` on a loopback
///   host (`127.0.0.1`, `[::1]`, `localhost`); for native clients also private-use schemes with
///   a dot (`com.example.app:/cb`, RFC 8252 §7.1). At most 100 of each.
/// - `invalid_backchannel_logout_uri`: as a redirect URI, but never a private-use scheme (the
///   server calls it).
/// - `invalid_grant_types`: at least one; `authorization_code` needs a redirect URI;
///   `refresh_token` needs `authorization_code` or the device code grant; `client_credentials`
///   is not for public clients (`auth_method: none`).
/// - `invalid_scope`: each an RFC 6749 §3.3 scope-token (visible ASCII but `"` and `\`), at most
///   200 of them.
/// - `invalid_jwks`: required for `private_key_jwt`; when given it must be a JWK Set of public
///   keys that token verification accepts, at most 32 KiB.
/// - `invalid_access_token_ttl` (60 s to 24 h), `invalid_refresh_token_ttl` (60 s to 365 days).
/// - `invalid_audience`: non-empty visible ASCII, at most 2000 bytes each, at most 100.
/// - `invalid_backchannel_logout`: `backchannel_logout_session_required` without a URI.
/// - `invalid_token_exchange`: the token exchange grant needs `token_exchange` with at least
///   one audience, and `token_exchange` needs the grant; its audiences follow the
///   `invalid_audience` rules (field `token_exchange.audiences`); `token_exchange.api_keys`
///   needs the client to be a resource server (`resource_audiences` not empty): only a
///   resource server learns about API keys at introspection, and only one receives them.
pub fn validate_registration(
    mut reg: ClientRegistration,
) -> Result<ClientRegistration, ClientError> {
    reg.name = reg.name.trim().to_owned();
    let name_chars = reg.name.chars().count();
    if name_chars == 0 || name_chars > MAX_NAME_CHARS {
        return Err(ClientError::invalid(
            "invalid_client_name",
            format!("name: must be 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    if reg.name.chars().any(char::is_control) {
        return Err(ClientError::invalid(
            "invalid_client_name",
            "name: must not contain control characters",
        ));
    }

    dedup(&mut reg.redirect_uris);
    dedup(&mut reg.post_logout_redirect_uris);
    dedup(&mut reg.grant_types);
    dedup(&mut reg.scopes);
    dedup(&mut reg.audience);
    dedup(&mut reg.resource_audiences);
    if let Some(policy) = &mut reg.token_exchange {
        dedup(&mut policy.audiences);
    }

    for (field, uris) in [
        (UriField::Redirect, &reg.redirect_uris),
        (UriField::PostLogout, &reg.post_logout_redirect_uris),
    ] {
        if uris.len() > MAX_REDIRECT_URIS {
            return Err(ClientError::invalid(
                field.code(),
                format!("{}: at most {MAX_REDIRECT_URIS} entries", field.name()),
            ));
        }
        for (i, uri) in uris.iter().enumerate() {
            check_uri(field, reg.application_type, uri).map_err(|why| {
                ClientError::invalid(field.code(), format!("{}[{i}]: {why}", field.name()))
            })?;
        }
    }
    if let Some(uri) = &reg.backchannel_logout_uri {
        check_uri(UriField::Backchannel, reg.application_type, uri).map_err(|why| {
            ClientError::invalid(
                UriField::Backchannel.code(),
                format!("backchannel_logout_uri: {why}"),
            )
        })?;
    } else if reg.backchannel_logout_session_required {
        return Err(ClientError::invalid(
            "invalid_backchannel_logout",
            "backchannel_logout_session_required: needs a backchannel_logout_uri",
        ));
    }

    check_grants(&reg)?;
    check_scopes(&reg.scopes)?;
    check_audience("audience", &reg.audience)?;
    check_audience("resource_audiences", &reg.resource_audiences)?;
    check_token_exchange(&reg)?;
    check_ttls(&reg)?;

    match &reg.jwks {
        Some(jwks) => check_jwks(jwks)
            .map_err(|why| ClientError::invalid("invalid_jwks", format!("jwks: {why}")))?,
        None if reg.auth_method == AuthMethod::PrivateKeyJwt => {
            return Err(ClientError::invalid(
                "invalid_jwks",
                "jwks: required for auth_method private_key_jwt",
            ));
        }
        None => {}
    }
    check_tls_client_auth(&reg)?;
    Ok(reg)
}

/// RFC 8705 §2.1.2: a `tls_client_auth` client names exactly one certificate attribute (its
/// subject DN or a DNS, URI, IP or email SAN); any other client names none. A
/// `self_signed_tls_client_auth` client (§2.2.2) registers its certificates as the `x5c` of
/// keys in its JWK Set.
fn check_tls_client_auth(reg: &ClientRegistration) -> Result<(), ClientError> {
    let invalid = |why: String| ClientError::invalid("invalid_tls_client_auth", why);
    let names = reg.tls_client_auth_names();
    let named = names.named();
    if reg.auth_method != AuthMethod::TlsClientAuth {
        if let Some((field, _)) = named.first() {
            return Err(invalid(format!(
                "{field}: only with auth_method tls_client_auth"
            )));
        }
        if reg.auth_method == AuthMethod::SelfSignedTlsClientAuth {
            let registered = reg.jwks.as_ref().map_or(0, registered_certificates);
            if registered == 0 {
                return Err(ClientError::invalid(
                    "invalid_jwks",
                    "jwks: auth_method self_signed_tls_client_auth needs a key whose x5c holds \
                     the client's certificate (base64 DER)",
                ));
            }
        }
        return Ok(());
    }
    let (field, value) = match named.as_slice() {
        [one] => *one,
        _ => {
            return Err(invalid(
                "auth_method tls_client_auth: give exactly one of tls_client_auth_subject_dn, \
                 tls_client_auth_san_dns, tls_client_auth_san_uri, tls_client_auth_san_ip and \
                 tls_client_auth_san_email"
                    .into(),
            ));
        }
    };
    if value.trim().is_empty() || value.len() > 2048 || value.contains('\0') {
        return Err(invalid(format!("{field}: 1 to 2048 bytes")));
    }
    if names.san_ip.is_some() && value.parse::<std::net::IpAddr>().is_err() {
        return Err(invalid(format!(
            "{field}: `{value}` is not an IPv4 (dotted decimal) or IPv6 (RFC 5952) address"
        )));
    }
    Ok(())
}

/// How many keys of `jwks` (already checked by [`check_jwks`]) carry a certificate (`x5c`).
fn registered_certificates(jwks: &Value) -> usize {
    let keys = jwks.get("keys").and_then(Value::as_array);
    keys.into_iter()
        .flatten()
        .filter(|key| key.get("x5c").is_some())
        .count()
}

/// Removes later duplicates, keeping the order of first occurrences.
fn dedup<T: Eq + Hash + Clone>(items: &mut Vec<T>) {
    let mut seen = HashSet::with_capacity(items.len());
    items.retain(|item| seen.insert(item.clone()));
}

/// Whether `host` is a loopback host that may use plain `http`.
fn is_loopback_host(host: &Host<&str>) -> bool {
    match host {
        Host::Ipv4(ip) => *ip == Ipv4Addr::LOCALHOST,
        Host::Ipv6(ip) => *ip == Ipv6Addr::LOCALHOST,
        Host::Domain(name) => *name == "localhost",
    }
}

/// Why `uri` cannot be registered in `field`, if it cannot.
fn check_uri(field: UriField, app: ApplicationType, uri: &str) -> Result<(), String> {
    if uri.is_empty() {
        return Err("must not be empty".into());
    }
    if uri.len() > MAX_URI_BYTES {
        return Err(format!("longer than {MAX_URI_BYTES} bytes"));
    }
    // The URL parser would silently trim or drop these; a registered URI is compared verbatim.
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters".into());
    }
    if uri.contains('#') {
        return Err("must not contain a fragment".into());
    }
    if uri.contains('*') {
        return Err("wildcards are not allowed (URIs are compared exactly)".into());
    }
    let url = Url::parse(uri).map_err(|e| format!("not an absolute URI ({e})"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain user information".into());
    }
    match url.scheme() {
        "https" => {
            if url.host_str().is_none_or(str::is_empty) {
                return Err("must name a host".into());
            }
            Ok(())
        }
        "http" => match url.host() {
            Some(host) if is_loopback_host(&host) => Ok(()),
            _ => Err("must use https (plain http only on 127.0.0.1, [::1] or localhost)".into()),
        },
        scheme => {
            let private_use = field != UriField::Backchannel
                && app == ApplicationType::Native
                && scheme.contains('.');
            if private_use {
                Ok(())
            } else if field == UriField::Backchannel {
                Err("must use https (plain http only on a loopback host)".into())
            } else if app == ApplicationType::Native {
                Err(format!(
                    "scheme {scheme:?}: a native app's private-use scheme must be a reverse \
                     domain name such as com.example.app (RFC 8252 §7.1)"
                ))
            } else {
                Err(format!(
                    "scheme {scheme:?}: web clients must use https (private-use schemes need \
                     application_type native)"
                ))
            }
        }
    }
}

fn check_grants(reg: &ClientRegistration) -> Result<(), ClientError> {
    let invalid = |message: &str| ClientError::invalid("invalid_grant_types", message);
    let has = |g| reg.grant_types.contains(&g);
    if reg.grant_types.is_empty() {
        return Err(invalid("grant_types: at least one grant type is required"));
    }
    if has(GrantType::AuthorizationCode) && reg.redirect_uris.is_empty() {
        return Err(invalid(
            "grant_types: authorization_code needs at least one redirect URI",
        ));
    }
    if has(GrantType::RefreshToken)
        && !has(GrantType::AuthorizationCode)
        && !has(GrantType::DeviceCode)
    {
        return Err(invalid(
            "grant_types: refresh_token needs authorization_code or the device code grant",
        ));
    }
    if has(GrantType::ClientCredentials) && reg.auth_method == AuthMethod::None {
        return Err(invalid(
            "grant_types: client_credentials is not allowed for public clients (auth_method none)",
        ));
    }
    // RFC 8693 §5: the exchanging party must be authenticated.
    if has(GrantType::TokenExchange) && reg.auth_method == AuthMethod::None {
        return Err(invalid(
            "grant_types: the token exchange grant is not allowed for public clients \
             (auth_method none)",
        ));
    }
    Ok(())
}

fn check_token_exchange(reg: &ClientRegistration) -> Result<(), ClientError> {
    let invalid = |message: &str| ClientError::invalid("invalid_token_exchange", message);
    let granted = reg.grant_types.contains(&GrantType::TokenExchange);
    match &reg.token_exchange {
        None if granted => Err(invalid(
            "token_exchange: required with the token exchange grant (the audiences the client \
             may exchange tokens for)",
        )),
        None => Ok(()),
        Some(_) if !granted => Err(invalid(
            "token_exchange: needs the grant type urn:ietf:params:oauth:grant-type:token-exchange",
        )),
        Some(policy) if policy.audiences.is_empty() => Err(invalid(
            "token_exchange.audiences: at least one audience is required",
        )),
        Some(policy) if policy.api_keys && reg.resource_audiences.is_empty() => Err(invalid(
            "token_exchange.api_keys: only a resource server (with resource_audiences) receives \
             API keys to exchange",
        )),
        Some(policy) => check_audience("token_exchange.audiences", &policy.audiences),
    }
}

fn check_scopes(scopes: &[String]) -> Result<(), ClientError> {
    if scopes.len() > MAX_SCOPES {
        return Err(ClientError::invalid(
            "invalid_scope",
            format!("scopes: at most {MAX_SCOPES} entries"),
        ));
    }
    for (i, scope) in scopes.iter().enumerate() {
        if !is_scope_token(scope) || scope.len() > MAX_SCOPE_BYTES {
            return Err(ClientError::invalid(
                "invalid_scope",
                format!(
                    "scopes[{i}]: must be 1 to {MAX_SCOPE_BYTES} visible ASCII characters other \
                     than '\"' and '\\' (RFC 6749 §3.3 scope-token)"
                ),
            ));
        }
    }
    Ok(())
}

fn check_audience(field: &str, audience: &[String]) -> Result<(), ClientError> {
    if audience.len() > MAX_AUDIENCES {
        return Err(ClientError::invalid(
            "invalid_audience",
            format!("{field}: at most {MAX_AUDIENCES} entries"),
        ));
    }
    for (i, aud) in audience.iter().enumerate() {
        let ok = !aud.is_empty()
            && aud.len() <= MAX_AUDIENCE_BYTES
            && aud.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            return Err(ClientError::invalid(
                "invalid_audience",
                format!("{field}[{i}]: must be 1 to {MAX_AUDIENCE_BYTES} visible ASCII characters"),
            ));
        }
    }
    Ok(())
}

fn check_ttls(reg: &ClientRegistration) -> Result<(), ClientError> {
    if reg
        .refresh_grace_secs
        .is_some_and(|g| g > MAX_REFRESH_GRACE_SECS)
    {
        return Err(ClientError::invalid(
            "invalid_refresh_grace",
            format!("refresh_grace_secs: at most {MAX_REFRESH_GRACE_SECS}"),
        ));
    }
    if let Some(secs) = reg.access_token_ttl_secs {
        let secs = i64::from(secs);
        if secs < MIN_ACCESS_TOKEN_TTL.whole_seconds()
            || secs > MAX_ACCESS_TOKEN_TTL.whole_seconds()
        {
            return Err(ClientError::invalid(
                "invalid_access_token_ttl",
                format!(
                    "access_token_ttl_secs: must be between {} and {}",
                    MIN_ACCESS_TOKEN_TTL.whole_seconds(),
                    MAX_ACCESS_TOKEN_TTL.whole_seconds()
                ),
            ));
        }
    }
    if let Some(secs) = reg.refresh_token_ttl_secs {
        let secs = i64::from(secs);
        if secs < MIN_REFRESH_TOKEN_TTL.whole_seconds()
            || secs > MAX_REFRESH_TOKEN_TTL.whole_seconds()
        {
            return Err(ClientError::invalid(
                "invalid_refresh_token_ttl",
                format!(
                    "refresh_token_ttl_secs: must be between {} and {}",
                    MIN_REFRESH_TOKEN_TTL.whole_seconds(),
                    MAX_REFRESH_TOKEN_TTL.whole_seconds()
                ),
            ));
        }
    }
    Ok(())
}

/// Why `chain` is not an `x5c` member (RFC 7517 §4.7): 1 to 10 base64 (not base64url) DER
/// certificates.
fn check_x5c(chain: &Value) -> Result<(), String> {
    let certificates = chain
        .as_array()
        .filter(|c| (1..=10).contains(&c.len()))
        .ok_or("must be an array of 1 to 10 certificates")?;
    for certificate in certificates {
        let der = certificate
            .as_str()
            .and_then(|b64| STANDARD.decode(b64).ok())
            .ok_or("each certificate is a base64 (not base64url) string")?;
        if der.first() != Some(&0x30) {
            return Err("a certificate is not DER (an ASN.1 SEQUENCE)".into());
        }
    }
    Ok(())
}

/// Why `jwks` is not a usable JWK Set of public verification keys.
fn check_jwks(jwks: &Value) -> Result<(), String> {
    let size = serde_json::to_vec(jwks)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > MAX_JWKS_BYTES {
        return Err(format!("larger than {MAX_JWKS_BYTES} bytes"));
    }
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("must be a JWK Set: an object with a \"keys\" array")?;
    if keys.is_empty() {
        return Err("holds no keys".into());
    }
    for (i, key) in keys.iter().enumerate() {
        let key = key
            .as_object()
            .ok_or_else(|| format!("keys[{i}]: must be an object"))?;
        if key.get("kty").and_then(Value::as_str).is_none() {
            return Err(format!("keys[{i}]: kty is required"));
        }
        // A private member ("d", or RSA's primes) means the client sent its private key.
        if ["d", "p", "q", "dp", "dq", "qi", "k"]
            .iter()
            .any(|m| key.contains_key(*m))
        {
            return Err(format!(
                "keys[{i}]: contains private or symmetric key material; register public keys only"
            ));
        }
        if let Some(chain) = key.get("x5c") {
            check_x5c(chain).map_err(|why| format!("keys[{i}].x5c: {why}"))?;
        }
    }
    super::assertion::verification_keys(jwks)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::TokenExchangePolicy;
    use super::*;

    fn web(uris: &[&str]) -> ClientRegistration {
        ClientRegistration {
            redirect_uris: uris.iter().map(|u| (*u).to_owned()).collect(),
            ..ClientRegistration::named("App")
        }
    }

    fn native(uris: &[&str]) -> ClientRegistration {
        ClientRegistration {
            application_type: ApplicationType::Native,
            auth_method: AuthMethod::None,
            ..web(uris)
        }
    }

    fn code_of(reg: ClientRegistration) -> &'static str {
        match validate_registration(reg) {
            Err(ClientError::Invalid { code, .. }) => code,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        let ok = validate_registration(ClientRegistration {
            name: "  Photo App  ".into(),
            ..web(&["https://a.example/cb"])
        })
        .expect("ok");
        assert_eq!(ok.name, "Photo App");
        assert_eq!(
            validate_registration(ClientRegistration {
                name: "é".repeat(200),
                ..web(&["https://a.example/cb"])
            })
            .map(|r| r.name.chars().count())
            .expect("200 chars"),
            200
        );
        for name in ["", "   ", &"x".repeat(201), "a\u{0}b", "line\nbreak"] {
            let reg = ClientRegistration {
                name: name.to_owned(),
                ..web(&["https://a.example/cb"])
            };
            assert_eq!(code_of(reg), "invalid_client_name", "{name:?}");
        }
    }

    #[test]
    fn redirect_uri_rules() {
        for ok in [
            "https://app.example.com/cb",
            "https://app.example.com:8443/cb?tenant=1",
            "http://127.0.0.1/cb",
            "http://127.0.0.1:8080/cb",
            "http://[::1]:8080/cb",
            "http://localhost:3000/cb",
        ] {
            validate_registration(web(&[ok])).unwrap_or_else(|e| panic!("{ok}: {e}"));
            validate_registration(native(&[ok])).unwrap_or_else(|e| panic!("native {ok}: {e}"));
        }
        for ok in ["com.example.app:/oauth2redirect", "com.example.app:/cb?x=1"] {
            validate_registration(native(&[ok])).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(code_of(web(&[ok])), "invalid_redirect_uri", "web {ok}");
        }
        let long = format!("https://a.example/{}", "x".repeat(MAX_URI_BYTES));
        for bad in [
            "",
            "/relative/cb",
            "app.example.com/cb",
            "https://app.example.com/cb#frag",
            "https://app.example.com/cb#",
            "https://*.example.com/cb",
            "https://app.example.com/*",
            "http://app.example.com/cb",
            "http://127.0.0.2/cb",
            "http://10.0.0.1/cb",
            "http://localhost.evil.example/cb",
            "https://user:pw@app.example.com/cb",
            "https://user@app.example.com/cb",
            " https://app.example.com/cb",
            "https://app.example.com/cb ",
            "https://app.example.com/c b",
            "https://app.example.com/cb\n",
            "javascript:alert(1)",
            "data:text/html,hi",
            "file:///etc/passwd",
            "myapp:/cb",
            "https://",
            long.as_str(),
        ] {
            assert_eq!(code_of(web(&[bad])), "invalid_redirect_uri", "web {bad:?}");
            assert_eq!(
                code_of(native(&[bad])),
                "invalid_redirect_uri",
                "native {bad:?}"
            );
        }
        let many: Vec<String> = (0..=MAX_REDIRECT_URIS)
            .map(|i| format!("https://a.example/{i}"))
            .collect();
        let reg = ClientRegistration {
            redirect_uris: many,
            ..web(&[])
        };
        assert_eq!(code_of(reg), "invalid_redirect_uri");
    }

    #[test]
    fn the_error_names_the_offending_entry() {
        let err = validate_registration(web(&["https://ok.example/cb", "http://bad.example/cb"]))
            .expect_err("bad");
        assert!(err.to_string().starts_with("redirect_uris[1]: "), "{err}");
    }

    #[test]
    fn post_logout_and_backchannel_uris() {
        let mut reg = web(&["https://a.example/cb"]);
        reg.post_logout_redirect_uris = vec!["https://a.example/bye".into()];
        reg.backchannel_logout_uri = Some("https://a.example/bc".into());
        reg.backchannel_logout_session_required = true;
        validate_registration(reg.clone()).expect("ok");

        for bad in [
            "http://a.example/bye",
            "https://a.example/bye#x",
            "com.example.app:/bye",
        ] {
            let mut r = reg.clone();
            r.post_logout_redirect_uris = vec![bad.into()];
            assert_eq!(code_of(r), "invalid_post_logout_redirect_uri", "{bad}");
        }
        let mut r = native(&["com.example.app:/cb"]);
        r.post_logout_redirect_uris = vec!["com.example.app:/bye".into()];
        validate_registration(r).expect("native private-use post-logout");

        for bad in [
            "http://a.example/bc",
            "https://a.example/bc#x",
            "com.example.app:/bc",
        ] {
            let mut r = native(&["com.example.app:/cb"]);
            r.backchannel_logout_uri = Some(bad.into());
            assert_eq!(code_of(r), "invalid_backchannel_logout_uri", "{bad}");
        }
        let mut r = reg.clone();
        r.backchannel_logout_uri = None;
        assert_eq!(code_of(r), "invalid_backchannel_logout");
    }

    #[test]
    fn grant_rules() {
        let with = |grants: Vec<GrantType>, method: AuthMethod, uris: &[&str]| ClientRegistration {
            grant_types: grants,
            auth_method: method,
            ..web(uris)
        };
        use GrantType::*;
        let cb = &["https://a.example/cb"][..];
        for (grants, method, uris) in [
            (vec![AuthorizationCode], AuthMethod::None, cb),
            (
                vec![AuthorizationCode, RefreshToken],
                AuthMethod::ClientSecretBasic,
                cb,
            ),
            (vec![DeviceCode, RefreshToken], AuthMethod::None, &[][..]),
            (
                vec![ClientCredentials],
                AuthMethod::ClientSecretPost,
                &[][..],
            ),
        ] {
            validate_registration(with(grants.clone(), method, uris))
                .unwrap_or_else(|e| panic!("{grants:?} {method}: {e}"));
        }
        for (grants, method, uris) in [
            (vec![], AuthMethod::ClientSecretBasic, cb),
            (
                vec![AuthorizationCode],
                AuthMethod::ClientSecretBasic,
                &[][..],
            ),
            (vec![RefreshToken], AuthMethod::ClientSecretBasic, cb),
            (
                vec![ClientCredentials, RefreshToken],
                AuthMethod::ClientSecretBasic,
                &[][..],
            ),
            (vec![ClientCredentials], AuthMethod::None, &[][..]),
        ] {
            assert_eq!(
                code_of(with(grants.clone(), method, uris)),
                "invalid_grant_types",
                "{grants:?} {method}"
            );
        }
    }

    #[test]
    fn token_exchange_rules() {
        let exchanger = |method: AuthMethod, policy: Option<Vec<&str>>| ClientRegistration {
            grant_types: vec![GrantType::TokenExchange],
            auth_method: method,
            token_exchange: policy.map(|audiences| TokenExchangePolicy {
                audiences: audiences.into_iter().map(str::to_owned).collect(),
                api_keys: false,
            }),
            ..ClientRegistration::named("Gateway")
        };
        let ok = validate_registration(exchanger(
            AuthMethod::PrivateKeyJwt,
            Some(vec![
                "https://orders.example",
                "tgc_ledger",
                "https://orders.example",
            ]),
        ));
        // private_key_jwt needs its JWKS first: the exchange rules pass, the JWKS rule speaks.
        assert_eq!(
            ok.map(|_| ()).map_err(|e| e.code()).expect_err("jwks"),
            "invalid_jwks"
        );
        let ok = validate_registration(exchanger(
            AuthMethod::ClientSecretBasic,
            Some(vec![
                "https://orders.example",
                "tgc_ledger",
                "https://orders.example",
            ]),
        ))
        .expect("ok");
        assert_eq!(
            ok.token_exchange.expect("policy").audiences,
            ["https://orders.example", "tgc_ledger"],
            "duplicates removed"
        );
        // RFC 8693 §5: only authenticated clients exchange tokens.
        assert_eq!(
            code_of(exchanger(
                AuthMethod::None,
                Some(vec!["https://orders.example"])
            )),
            "invalid_grant_types"
        );
        for (reg, what) in [
            (exchanger(AuthMethod::ClientSecretBasic, None), "no policy"),
            (
                exchanger(AuthMethod::ClientSecretBasic, Some(vec![])),
                "no audience",
            ),
            (
                ClientRegistration {
                    grant_types: vec![GrantType::ClientCredentials],
                    ..exchanger(AuthMethod::ClientSecretBasic, Some(vec!["a"]))
                },
                "policy without the grant",
            ),
        ] {
            assert_eq!(code_of(reg), "invalid_token_exchange", "{what}");
        }
        for aud in ["", "has space", "é"] {
            assert_eq!(
                code_of(exchanger(AuthMethod::ClientSecretBasic, Some(vec![aud]))),
                "invalid_audience",
                "{aud:?}"
            );
        }
        // API keys only for a resource server.
        let with_keys = |resource_audiences: Vec<String>| {
            let mut reg = exchanger(AuthMethod::ClientSecretBasic, Some(vec!["orders"]));
            reg.resource_audiences = resource_audiences;
            if let Some(policy) = &mut reg.token_exchange {
                policy.api_keys = true;
            }
            reg
        };
        assert_eq!(code_of(with_keys(Vec::new())), "invalid_token_exchange");
        let ok = validate_registration(with_keys(vec!["https://gateway.example".into()]))
            .expect("a resource server may opt in");
        assert!(ok.token_exchange.expect("policy").api_keys);
        let many: Vec<String> = (0..=MAX_AUDIENCES).map(|i| format!("a{i}")).collect();
        assert_eq!(
            code_of(exchanger(
                AuthMethod::ClientSecretBasic,
                Some(many.iter().map(String::as_str).collect())
            )),
            "invalid_audience"
        );
    }

    #[test]
    fn scope_audience_and_ttl_rules() {
        let base = web(&["https://a.example/cb"]);
        let ok = validate_registration(ClientRegistration {
            scopes: vec!["openid".into(), "api:read".into(), "urn:x!#[]~".into()],
            audience: vec!["https://api.example.com".into(), "orders".into()],
            access_token_ttl_secs: Some(60),
            refresh_token_ttl_secs: Some(365 * 86400),
            ..base.clone()
        })
        .expect("ok");
        assert_eq!(ok.scopes.len(), 3);
        validate_registration(ClientRegistration {
            scopes: vec![],
            access_token_ttl_secs: Some(86400),
            refresh_token_ttl_secs: Some(60),
            ..base.clone()
        })
        .expect("bounds inclusive, no scopes");
        for scope in [
            "",
            "a b",
            "quo\"te",
            "back\\slash",
            "é",
            "tab\t",
            &"s".repeat(201),
        ] {
            let reg = ClientRegistration {
                scopes: vec![scope.to_owned()],
                ..base.clone()
            };
            assert_eq!(code_of(reg), "invalid_scope", "{scope:?}");
        }
        let reg = ClientRegistration {
            scopes: (0..=MAX_SCOPES).map(|i| format!("s{i}")).collect(),
            ..base.clone()
        };
        assert_eq!(code_of(reg), "invalid_scope");
        for aud in ["", "has space", "é"] {
            let reg = ClientRegistration {
                audience: vec![aud.to_owned()],
                ..base.clone()
            };
            assert_eq!(code_of(reg), "invalid_audience", "{aud:?}");
        }
        for secs in [0, 59, 86401] {
            let reg = ClientRegistration {
                access_token_ttl_secs: Some(secs),
                ..base.clone()
            };
            assert_eq!(code_of(reg), "invalid_access_token_ttl", "{secs}");
        }
        for secs in [0, 59, 365 * 86400 + 1] {
            let reg = ClientRegistration {
                refresh_token_ttl_secs: Some(secs),
                ..base.clone()
            };
            assert_eq!(code_of(reg), "invalid_refresh_token_ttl", "{secs}");
        }
    }

    #[test]
    fn duplicates_are_removed_in_order() {
        let reg = ClientRegistration {
            redirect_uris: vec![
                "https://a.example/2".into(),
                "https://a.example/1".into(),
                "https://a.example/2".into(),
            ],
            scopes: vec!["b".into(), "a".into(), "b".into()],
            grant_types: vec![
                GrantType::AuthorizationCode,
                GrantType::AuthorizationCode,
                GrantType::RefreshToken,
            ],
            audience: vec!["x".into(), "x".into()],
            post_logout_redirect_uris: vec!["https://a.example/b".into(); 2],
            ..ClientRegistration::named("App")
        };
        let reg = validate_registration(reg).expect("ok");
        assert_eq!(
            reg.redirect_uris,
            ["https://a.example/2", "https://a.example/1"]
        );
        assert_eq!(reg.scopes, ["b", "a"]);
        assert_eq!(
            reg.grant_types,
            [GrantType::AuthorizationCode, GrantType::RefreshToken]
        );
        assert_eq!(reg.audience, ["x"]);
        assert_eq!(reg.post_logout_redirect_uris.len(), 1);
    }

    #[test]
    fn jwks_rules() {
        let base = ClientRegistration {
            auth_method: AuthMethod::PrivateKeyJwt,
            grant_types: vec![GrantType::ClientCredentials],
            ..ClientRegistration::named("Service")
        };
        assert_eq!(code_of(base.clone()), "invalid_jwks");
        for bad in [
            json!([]),
            json!({}),
            json!({"keys": []}),
            json!({"keys": "x"}),
            json!({"keys": [1]}),
            json!({"keys": [{"kid": "no-kty"}]}),
            json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}),
            json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "a", "y": "b", "d": "c"}]}),
            json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "!!", "y": "??"}]}),
            json!({"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}),
            json!({"keys": [{"kty": "RSA", "n": "x".repeat(MAX_JWKS_BYTES), "e": "AQAB"}]}),
        ] {
            let reg = ClientRegistration {
                jwks: Some(bad.clone()),
                ..base.clone()
            };
            assert_eq!(code_of(reg), "invalid_jwks", "{bad}");
        }
    }
}
