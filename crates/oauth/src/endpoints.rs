//! The issuer and the URLs of its endpoints, all derived from the issuer identifier.

/// Where each endpoint lives, as absolute URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// The issuer identifier (`iss`): an https URL (http for loopback development), no query,
    /// no fragment, no trailing slash.
    pub issuer: String,
    /// `/oauth2/authorize`.
    pub authorization: String,
    /// `/oauth2/token`.
    pub token: String,
    /// `/oauth2/introspect`.
    pub introspection: String,
    /// `/oauth2/revoke`.
    pub revocation: String,
    /// `/oauth2/device_authorization`.
    pub device_authorization: String,
    /// `/device`: where the user types the code.
    pub device_verification: String,
    /// `/oauth2/par`.
    pub par: String,
    /// `/oidc/userinfo`.
    pub userinfo: String,
    /// `/oidc/logout`.
    pub end_session: String,
    /// `/.well-known/jwks.json`.
    pub jwks: String,
}

impl Endpoints {
    /// The endpoints of `issuer` (a trailing slash is dropped).
    pub fn new(issuer: &str) -> Self {
        let issuer = issuer.trim_end_matches('/').to_owned();
        let at = |path: &str| format!("{issuer}{path}");
        Self {
            authorization: at("/oauth2/authorize"),
            token: at("/oauth2/token"),
            introspection: at("/oauth2/introspect"),
            revocation: at("/oauth2/revoke"),
            device_authorization: at("/oauth2/device_authorization"),
            device_verification: at("/device"),
            par: at("/oauth2/par"),
            userinfo: at("/oidc/userinfo"),
            end_session: at("/oidc/logout"),
            jwks: at("/.well-known/jwks.json"),
            issuer,
        }
    }
}
