//! Who is calling the machine APIs (admin API, OpenFGA API), and whether they may.
//!
//! Two extractors, one per question:
//! - [`Caller`] authenticates: an API key or personal access token from
//!   `Authorization: Bearer <key>` or `X-API-Key: <key>`, verified by
//!   [`trustgate_authn::api_keys::ApiKeys`] (this module only extracts); without one, on the
//!   mutual-TLS listener, the client certificate the listener verified, resolved by
//!   [`trustgate_authn::certificates::CertificateAccounts`] (the service account its SPIFFE ID or
//!   subject DN is bound to; unbound: authenticated with no permissions; bound to a disabled
//!   account: 401). No credential, or an
//!   invalid one of any kind → 401 `unauthenticated` with `WWW-Authenticate: Bearer`; the key's
//!   rate limit exhausted → 429 `rate_limited` with `Retry-After`; a credential in the query
//!   string → 400 `credential_in_query` (query strings end up in proxy and browser logs; this
//!   server logs only the path).
//! - [`Authorized<N>`] authorizes: the caller must hold the permission `N` names
//!   ([`SystemAdmin`], [`UserAdmin`], [`ClientAdmin`], [`Auditor`], or on the path's store
//!   [`StoreAdmin`], [`StoreWriter`], [`StoreReader`]), decided by trustgate's own PDP over the
//!   system model ([`trustgate_pdp::system`]), for the owner and the key's scopes both. A known
//!   caller without it → 403 `permission_denied` naming the permission, and an `access_denied`
//!   audit event with it.

use std::marker::PhantomData;
use std::sync::Arc;

use axum::extract::{FromRequestParts, RawPathParams};
use http::request::Parts;
use trustgate_audit::{AuditKind, Event, Outcome};
use trustgate_authn::api_keys::{KeyIdentity, KeyRefusal, MAX_KEY_BYTES};
use trustgate_authn::certificates::{CertificateCaller, identify};
use trustgate_core::Principal;
use trustgate_listener::mtls::PeerCertificates;
use trustgate_pdp::system::{Asker, Role, StoreRole, SystemRole};

use crate::AppState;
use crate::client_context::request_context;
use crate::error::ApiError;

/// The header an API key may also be sent in.
pub const API_KEY_HEADER: &str = "x-api-key";
/// Query parameters that look like a credential; refused wherever a [`Caller`] is extracted.
const CREDENTIAL_PARAMS: [&str; 5] = ["api_key", "apikey", "api-key", "x-api-key", "access_token"];

/// An authenticated caller of a machine API.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who.
    principal: Principal,
    /// The API key it called with, if it did (not with a client certificate).
    pub key: Option<CallerKey>,
    /// The `x5t#S256` of the client certificate it called with, if it did.
    pub certificate: Option<String>,
}

/// The API key of a [`Caller`].
#[derive(Debug, Clone)]
pub struct CallerKey {
    /// The owner and the key.
    pub identity: Arc<KeyIdentity>,
    /// The key's scopes, parsed (a stored scope this version does not know grants nothing).
    pub scopes: Arc<[Role]>,
}

impl std::ops::Deref for Caller {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.principal
    }
}

impl Caller {
    /// The owner (of the key, or of the certificate) as a principal.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The key id, if the caller used a key.
    pub fn key_id(&self) -> Option<&str> {
        self.key.as_ref().map(|k| k.identity.key_id.as_str())
    }

    /// The owner's subject `subject` (`service:<id>`, `user:<id>`) with the key, as the PDP
    /// asks them (a certificate has no scopes of its own: the owner's roles decide).
    pub fn asker<'a>(&'a self, subject: &'a str) -> Asker<'a> {
        Asker {
            subject,
            key: self
                .key
                .as_ref()
                .map(|k| (k.identity.key_id.as_str(), &*k.scopes)),
        }
    }
}

/// The credential of a request: `Authorization: Bearer` or `X-API-Key`, if well-formed.
pub fn presented_key(parts: &Parts) -> Option<&str> {
    let from_header = |name: http::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let key = match from_header(http::header::AUTHORIZATION) {
        Some(value) => {
            let (scheme, token) = value.split_once(' ')?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return None;
            }
            token.trim()
        }
        None => from_header(http::HeaderName::from_static(API_KEY_HEADER))?,
    };
    (!key.is_empty() && key.len() <= MAX_KEY_BYTES).then_some(key)
}

/// Whether the query string carries something that looks like a credential.
fn credential_in_query(parts: &Parts) -> bool {
    let Some(query) = parts.uri.query() else {
        return false;
    };
    url::form_urlencoded::parse(query.as_bytes()).any(|(name, value)| {
        CREDENTIAL_PARAMS
            .iter()
            .any(|p| name.eq_ignore_ascii_case(p))
            || value.starts_with("tg_")
    })
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        if credential_in_query(parts) {
            return Err(ApiError::bad_request(
                "credential_in_query",
                "credentials are not accepted in the query string; send Authorization: Bearer <key> or X-API-Key: <key>",
            ));
        }
        let Some(key) = presented_key(parts) else {
            // A credential that is there but malformed is refused; it never falls through to
            // the connection's certificate.
            if parts.headers.contains_key(http::header::AUTHORIZATION)
                || parts.headers.contains_key(API_KEY_HEADER)
            {
                return Err(ApiError::unauthenticated("the API key is not valid"));
            }
            let caller = certificate_caller(parts, state).await?;
            parts.extensions.insert(caller.clone());
            return Ok(caller);
        };
        let ip = request_context(parts).ip.map(|ip| ip.to_string());
        let identity = match state.api_keys.verify(key, ip.as_deref()).await {
            Ok(identity) => identity,
            Err(KeyRefusal::Invalid) => {
                return Err(ApiError::unauthenticated("the API key is not valid"));
            }
            Err(KeyRefusal::RateLimited { retry_after_secs }) => {
                return Err(ApiError::rate_limited(retry_after_secs));
            }
            Err(KeyRefusal::Store(e)) => return Err(e.into()),
        };
        let scopes: Arc<[Role]> = identity
            .scopes
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect();
        let caller = Caller {
            principal: identity.principal.clone(),
            key: Some(CallerKey { identity, scopes }),
            certificate: None,
        };
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}

/// The caller a verified client certificate names (mutual-TLS listener only: elsewhere there
/// is none, and the request needed an API key).
async fn certificate_caller(parts: &Parts, state: &AppState) -> Result<Caller, ApiError> {
    let required = || ApiError::unauthenticated("an API key is required");
    let peer = parts
        .extensions
        .get::<PeerCertificates>()
        .ok_or_else(required)?;
    // A certificate no trusted CA issued (a listener that accepts self-signed ones) names
    // nobody: anyone can write any name into one.
    let der = peer.trusted_end_entity().ok_or_else(|| {
        ApiError::unauthenticated("the client certificate is not issued by a trusted CA")
    })?;
    let identity = identify(der)
        .map_err(|_| ApiError::unauthenticated("the client certificate cannot be read"))?;
    match state.certificates.resolve(&identity).await? {
        CertificateCaller::Disabled => Err(ApiError::unauthenticated(
            "the client certificate's service account is disabled",
        )),
        CertificateCaller::Account(principal) | CertificateCaller::Unbound(principal) => {
            Ok(Caller {
                principal,
                key: None,
                certificate: Some(identity.thumbprint),
            })
        }
    }
}

/// A permission a route needs, named by a marker type.
pub trait Needs: Send + Sync + 'static {
    /// The role the caller must hold for this request; `None` when the request cannot name
    /// one (a store id that is not a store id), which the handler then refuses itself.
    fn role(parts: &Parts, store_id: Option<&str>) -> Option<Role>;
}

macro_rules! system_permission {
    ($($(#[$doc:meta])* $name:ident => $role:expr;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name;

        impl Needs for $name {
            fn role(_: &Parts, _: Option<&str>) -> Option<Role> {
                Some(Role::System($role))
            }
        }
    )*};
}

macro_rules! store_permission {
    ($($(#[$doc:meta])* $name:ident => $role:expr;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name;

        impl Needs for $name {
            fn role(_: &Parts, store_id: Option<&str>) -> Option<Role> {
                let store_id = store_id?;
                (trustgate_core::id::is_ulid(store_id)
                    && store_id != trustgate_store_api::SYSTEM_STORE_ID)
                    .then(|| Role::Store($role, store_id.to_owned()))
            }
        }
    )*};
}

system_permission! {
    /// `admin`: everything (signing keys, service accounts, API keys, roles, creating stores).
    SystemAdmin => SystemRole::Admin;
    /// `user_admin`: users, their sessions and second factors.
    UserAdmin => SystemRole::UserAdmin;
    /// `client_admin`: OAuth clients.
    ClientAdmin => SystemRole::ClientAdmin;
    /// `auditor`: the audit trail.
    Auditor => SystemRole::Auditor;
}

store_permission! {
    /// `store_admin` on the path's store: models, deleting the store.
    StoreAdmin => StoreRole::StoreAdmin;
    /// `writer` on the path's store: tuples.
    StoreWriter => StoreRole::Writer;
    /// `reader` on the path's store: queries and reads.
    StoreReader => StoreRole::Reader;
}

/// A caller that holds the permission `N` names.
#[derive(Debug, Clone)]
pub struct Authorized<N>(pub Caller, pub PhantomData<N>);

impl<N> Authorized<N> {
    /// The caller's principal.
    pub fn principal(&self) -> &Principal {
        self.0.principal()
    }
}

impl<N: Needs> FromRequestParts<AppState> for Authorized<N> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let store_id = match RawPathParams::from_request_parts(parts, state).await {
            Ok(params) => params
                .iter()
                .find(|(name, _)| *name == "store_id")
                .map(|(_, value)| value.to_owned()),
            Err(_) => None,
        };
        let Some(role) = N::role(parts, store_id.as_deref()) else {
            // Not a store id: nothing can be read or written under it; the handler answers.
            return Ok(Authorized(caller, PhantomData));
        };
        if allows(state, &caller, &role).await? {
            return Ok(Authorized(caller, PhantomData));
        }
        let ctx = request_context(parts);
        state
            .auditor
            .record(
                &ctx,
                Event::new(AuditKind::AccessDenied, Outcome::Denied)
                    .actor(caller.principal().subject())
                    .detail("permission", role.to_string())
                    .detail("key_id", caller.key_id().map(str::to_owned))
                    .detail("certificate", caller.certificate.clone())
                    .detail("path", parts.uri.path().to_owned()),
            )
            .await?;
        Err(ApiError::permission_denied(&role))
    }
}

/// Whether `caller` (owner and key) holds `role`.
pub async fn allows(state: &AppState, caller: &Caller, role: &Role) -> Result<bool, ApiError> {
    let subject = caller.principal().subject();
    state
        .access
        .allows(caller.asker(&subject), role)
        .await
        .map_err(ApiError::from)
}
