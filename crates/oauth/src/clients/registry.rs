//! [`ClientRegistry`]: registration, lookup and authentication of clients over the store.
//!
//! The store's metadata object for a client is [`StoredMetadata`] as JSON: the registration
//! minus the name (which has its own column), lifetimes as given (`null`: the default), plus a
//! format version `v`. Unknown members are ignored when reading, so a newer version's extra
//! fields do not make a client unreadable after a rollback.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::Duration;
use trustgate_core::secret::generate_token;
use trustgate_core::{Clock, Secret, TokenDigest};
use trustgate_store_api::{ClientStore, OAuthClient};

use super::assertion;
use super::credentials::{JWT_BEARER_ASSERTION_TYPE, PresentedCredentials};
use super::{
    ApplicationType, AuthMethod, Client, ClientError, ClientRegistration, DEFAULT_ACCESS_TOKEN_TTL,
    DEFAULT_REFRESH_TOKEN_TTL, GrantType, TokenExchangePolicy, validate_registration,
};
use crate::error::OAuthError;

/// Prefix of client ids (then 22 base64url characters: 128 random bits).
pub const CLIENT_ID_PREFIX: &str = "tgc_";
/// Prefix of client secrets (then 256 random bits), so secret scanners recognise them.
pub const CLIENT_SECRET_PREFIX: &str = "tgcs_";
/// Most clients one listing returns.
pub const MAX_PAGE: u32 = 1000;
/// How far in the future a client assertion's `exp` may lie.
pub const MAX_ASSERTION_LIFETIME: Duration = Duration::minutes(10);

/// The one description of every failed secret or public-client authentication: it must not
/// tell an unknown client id from a wrong secret or a wrong method.
pub(super) const AUTH_FAILED: &str = "client authentication failed";

/// Format version of [`StoredMetadata`].
const METADATA_VERSION: u32 = 1;

/// The `metadata` object the store keeps for a client.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredMetadata {
    v: u32,
    auth_method: AuthMethod,
    application_type: ApplicationType,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    post_logout_redirect_uris: Vec<String>,
    grant_types: Vec<GrantType>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    jwks: Option<Value>,
    #[serde(default)]
    require_par: bool,
    #[serde(default)]
    skip_consent: bool,
    #[serde(default)]
    access_token_ttl_secs: Option<u32>,
    #[serde(default)]
    refresh_token_ttl_secs: Option<u32>,
    #[serde(default)]
    refresh_grace_secs: Option<u32>,
    #[serde(default)]
    audience: Vec<String>,
    #[serde(default)]
    resource_audiences: Vec<String>,
    #[serde(default)]
    backchannel_logout_uri: Option<String>,
    #[serde(default)]
    backchannel_logout_session_required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_exchange: Option<TokenExchangePolicy>,
}

impl StoredMetadata {
    fn of(reg: &ClientRegistration) -> Self {
        Self {
            v: METADATA_VERSION,
            auth_method: reg.auth_method,
            application_type: reg.application_type,
            redirect_uris: reg.redirect_uris.clone(),
            post_logout_redirect_uris: reg.post_logout_redirect_uris.clone(),
            grant_types: reg.grant_types.clone(),
            scopes: reg.scopes.clone(),
            jwks: reg.jwks.clone(),
            require_par: reg.require_par,
            skip_consent: reg.skip_consent,
            access_token_ttl_secs: reg.access_token_ttl_secs,
            refresh_token_ttl_secs: reg.refresh_token_ttl_secs,
            refresh_grace_secs: reg.refresh_grace_secs,
            audience: reg.audience.clone(),
            resource_audiences: reg.resource_audiences.clone(),
            backchannel_logout_uri: reg.backchannel_logout_uri.clone(),
            backchannel_logout_session_required: reg.backchannel_logout_session_required,
            token_exchange: reg.token_exchange.clone(),
        }
    }

    fn to_map(&self) -> Result<Map<String, Value>, ClientError> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(ClientError::Corrupt {
                id: String::new(),
                detail: "metadata did not serialize to an object".into(),
            }),
            Err(e) => Err(ClientError::Corrupt {
                id: String::new(),
                detail: e.to_string(),
            }),
        }
    }
}

/// A [`Client`] from what the store holds.
fn decode(stored: OAuthClient) -> Result<Client, ClientError> {
    let corrupt = |detail: String| ClientError::Corrupt {
        id: stored.id.clone(),
        detail,
    };
    let meta: StoredMetadata = serde_json::from_value(Value::Object(stored.metadata.clone()))
        .map_err(|e| corrupt(e.to_string()))?;
    if meta.v != METADATA_VERSION {
        return Err(corrupt(format!("unknown metadata version {}", meta.v)));
    }
    let ttl = |secs: Option<u32>, default: Duration| {
        secs.map_or(default, |s| Duration::seconds(i64::from(s)))
    };
    Ok(Client {
        has_secret: stored.secret_digest.is_some(),
        id: stored.id,
        name: stored.name,
        auth_method: meta.auth_method,
        application_type: meta.application_type,
        redirect_uris: meta.redirect_uris,
        post_logout_redirect_uris: meta.post_logout_redirect_uris,
        grant_types: meta.grant_types,
        scopes: meta.scopes,
        jwks: meta.jwks,
        require_par: meta.require_par,
        skip_consent: meta.skip_consent,
        access_token_ttl: ttl(meta.access_token_ttl_secs, DEFAULT_ACCESS_TOKEN_TTL),
        refresh_token_ttl: ttl(meta.refresh_token_ttl_secs, DEFAULT_REFRESH_TOKEN_TTL),
        refresh_grace: meta
            .refresh_grace_secs
            .map(|s| Duration::seconds(i64::from(s))),
        audience: meta.audience,
        resource_audiences: meta.resource_audiences,
        backchannel_logout_uri: meta.backchannel_logout_uri,
        backchannel_logout_session_required: meta.backchannel_logout_session_required,
        token_exchange: meta.token_exchange,
        created_at: stored.created_at,
        updated_at: stored.updated_at,
    })
}

/// A new client id: `tgc_` and 128 random bits in base64url (22 characters).
fn new_client_id() -> String {
    let bytes: [u8; 16] = rand::random();
    format!("{CLIENT_ID_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// A new secret and its digest.
fn new_secret() -> (Secret, TokenDigest) {
    let secret = generate_token(CLIENT_SECRET_PREFIX);
    let digest = TokenDigest::of(secret.expose());
    (secret, digest)
}

/// Registered clients: CRUD for the admin API and authentication for the protocol endpoints.
#[derive(Debug, Clone)]
pub struct ClientRegistry {
    store: Arc<dyn ClientStore>,
    clock: Arc<dyn Clock>,
    assertion_leeway: time::Duration,
}

impl ClientRegistry {
    /// A registry over `store`, reading the time from `clock`.
    pub fn new(store: Arc<dyn ClientStore>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            assertion_leeway: super::assertion::DEFAULT_ASSERTION_LEEWAY,
        }
    }

    /// The clock skew tolerated on `private_key_jwt` assertions (`exp`, `nbf`, `iat`).
    pub fn with_assertion_leeway(mut self, leeway: time::Duration) -> Self {
        self.assertion_leeway = leeway;
        self
    }

    /// The current time at the precision both stores keep (microseconds), so what `create`
    /// returns equals what `get` reads back.
    fn now(&self) -> time::OffsetDateTime {
        let now = self.clock.now();
        now.replace_nanosecond(now.nanosecond() / 1_000 * 1_000)
            .unwrap_or(now)
    }

    /// Validates and registers a client. Returns it with its secret (shown this once) when its
    /// method uses one (`client_secret_basic`, `client_secret_post`).
    pub async fn create(
        &self,
        reg: ClientRegistration,
    ) -> Result<(Client, Option<Secret>), ClientError> {
        let reg = validate_registration(reg)?;
        let metadata = StoredMetadata::of(&reg).to_map()?;
        let (secret, digest) = if reg.auth_method.uses_secret() {
            let (secret, digest) = new_secret();
            (Some(secret), Some(digest))
        } else {
            (None, None)
        };
        let now = self.now();
        let stored = OAuthClient {
            id: new_client_id(),
            name: reg.name,
            secret_digest: digest,
            metadata,
            created_at: now,
            updated_at: now,
        };
        self.store.create_client(&stored).await?;
        Ok((decode(stored)?, secret))
    }

    /// The client with this id, if registered.
    pub async fn get(&self, id: &str) -> Result<Option<Client>, ClientError> {
        match self.store.get_client(id).await? {
            Some(stored) => decode(stored).map(Some),
            None => Ok(None),
        }
    }

    /// Up to `limit` clients (clamped to 1..=[`MAX_PAGE`]) with an id after `after`, by id, and
    /// the `after` of the next page (`None` on the last one).
    pub async fn list(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<Client>, Option<String>), ClientError> {
        let page = self
            .store
            .list_clients(after, limit.clamp(1, MAX_PAGE))
            .await?;
        let clients = page
            .clients
            .into_iter()
            .map(decode)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((clients, page.next))
    }

    /// Replaces a client's registration with `reg` (validated completely first). Switching to
    /// a secret method from one without a secret issues a secret (returned, shown once);
    /// switching to a method without a secret removes the stored digest.
    pub async fn update(
        &self,
        id: &str,
        reg: ClientRegistration,
    ) -> Result<(Client, Option<Secret>), ClientError> {
        let reg = validate_registration(reg)?;
        let metadata = StoredMetadata::of(&reg).to_map()?;
        let now = self.now();
        let mut stored = self
            .store
            .update_client(id, &reg.name, &metadata, now)
            .await?
            .ok_or(ClientError::NotFound)?;
        let mut issued = None;
        match (
            reg.auth_method.uses_secret(),
            stored.secret_digest.is_some(),
        ) {
            (true, false) => {
                let (secret, digest) = new_secret();
                if !self.store.set_client_secret(id, Some(&digest), now).await? {
                    return Err(ClientError::NotFound);
                }
                stored.secret_digest = Some(digest);
                issued = Some(secret);
            }
            (false, true) => {
                if !self.store.set_client_secret(id, None, now).await? {
                    return Err(ClientError::NotFound);
                }
                stored.secret_digest = None;
            }
            _ => {}
        }
        Ok((decode(stored)?, issued))
    }

    /// Issues a new secret for a `client_secret_*` client; the old one stops working at once.
    pub async fn rotate_secret(&self, id: &str) -> Result<Secret, ClientError> {
        let client = self.get(id).await?.ok_or(ClientError::NotFound)?;
        if !client.auth_method.uses_secret() {
            return Err(ClientError::NoSecret(client.auth_method));
        }
        let (secret, digest) = new_secret();
        if !self
            .store
            .set_client_secret(id, Some(&digest), self.now())
            .await?
        {
            return Err(ClientError::NotFound);
        }
        Ok(secret)
    }

    /// Deletes a client and everything issued to it; `false` if there was no such client.
    pub async fn delete(&self, id: &str) -> Result<bool, ClientError> {
        Ok(self.store.delete_client(id).await?)
    }

    /// Authenticates the client of a token, introspection, revocation, PAR or device request.
    ///
    /// The presented method must be the registered one: a confidential client presenting only
    /// its id, a public client presenting a secret, a secret client presenting an assertion
    /// (or the other way round) all fail. Secrets are compared by SHA-256 digest in constant
    /// time, and an unknown client id costs the same digest and comparison as a wrong secret.
    /// For `private_key_jwt`, `audiences` are the values the assertion's `aud` may have (the
    /// endpoint URL and the issuer; RFC 7523 §3, OIDC Core §9).
    ///
    /// Every failure is `invalid_client` (a storage failure is `server_error` or
    /// `temporarily_unavailable`); the description never tells whether the id exists: unknown
    /// id, wrong secret, wrong method and an assertion whose signature does not verify against
    /// the client's keys all read the same. Only an assertion the client verifiably signed gets
    /// a specific description (expired, wrong `aud`, `jti` replayed, ...).
    pub async fn authenticate(
        &self,
        presented: &PresentedCredentials,
        audiences: &[&str],
    ) -> Result<Client, OAuthError> {
        match presented {
            PresentedCredentials::Basic { client_id, secret } => {
                self.authenticate_secret(client_id, secret, AuthMethod::ClientSecretBasic)
                    .await
            }
            PresentedCredentials::Post { client_id, secret } => {
                self.authenticate_secret(client_id, secret, AuthMethod::ClientSecretPost)
                    .await
            }
            PresentedCredentials::None { client_id } => match self.lookup(client_id).await? {
                Some(client) if client.auth_method == AuthMethod::None => Ok(client),
                _ => Err(OAuthError::invalid_client(AUTH_FAILED)),
            },
            PresentedCredentials::Assertion {
                client_id,
                assertion_type,
                assertion,
            } => {
                self.authenticate_assertion(
                    client_id.as_deref(),
                    assertion_type,
                    assertion,
                    audiences,
                )
                .await
            }
        }
    }

    /// The client with this id; a corrupt record counts as absent (and is logged).
    async fn lookup(&self, id: &str) -> Result<Option<Client>, OAuthError> {
        let stored = self.store.get_client(id).await?;
        Ok(match stored {
            None => None,
            Some(stored) => match decode(stored) {
                Ok(client) => Some(client),
                Err(e) => {
                    tracing::error!(error = %e, "unreadable client record");
                    None
                }
            },
        })
    }

    async fn authenticate_secret(
        &self,
        client_id: &str,
        secret: &Secret,
        method: AuthMethod,
    ) -> Result<Client, OAuthError> {
        let presented = TokenDigest::of(secret.expose());
        let stored = self.store.get_client(client_id).await?;
        // Compare against a fixed digest when there is nothing to compare with, so an unknown id
        // or a missing secret costs what a wrong secret costs.
        let unknown = TokenDigest::of("");
        let expected = stored
            .as_ref()
            .and_then(|s| s.secret_digest.as_ref())
            .unwrap_or(&unknown);
        let secret_ok =
            presented.ct_eq(expected) && stored.as_ref().is_some_and(|s| s.secret_digest.is_some());
        let Some(stored) = stored else {
            tracing::debug!("client authentication: unknown client id");
            return Err(OAuthError::invalid_client(AUTH_FAILED));
        };
        let client = decode(stored).map_err(|e| {
            tracing::error!(error = %e, "unreadable client record");
            OAuthError::invalid_client(AUTH_FAILED)
        })?;
        if client.auth_method != method {
            tracing::debug!(
                client_id = %client.id,
                registered = %client.auth_method,
                presented = %method,
                "client authentication: wrong method"
            );
            return Err(OAuthError::invalid_client(AUTH_FAILED));
        }
        if !secret_ok {
            tracing::debug!(client_id = %client.id, "client authentication: wrong secret");
            return Err(OAuthError::invalid_client(AUTH_FAILED));
        }
        Ok(client)
    }

    async fn authenticate_assertion(
        &self,
        form_client_id: Option<&str>,
        assertion_type: &str,
        assertion: &str,
        audiences: &[&str],
    ) -> Result<Client, OAuthError> {
        if assertion_type != JWT_BEARER_ASSERTION_TYPE {
            return Err(OAuthError::invalid_client(format!(
                "unsupported client_assertion_type (use {JWT_BEARER_ASSERTION_TYPE})"
            )));
        }
        // Which client: the form's client_id, else the (not yet verified) issuer. Whichever it
        // is, the verified assertion must name it as both iss and sub.
        let client_id = match form_client_id {
            Some(id) => id.to_owned(),
            None => assertion::unverified_issuer(assertion)
                .ok_or_else(|| OAuthError::invalid_client("malformed client assertion"))?,
        };
        let client = match self.lookup(&client_id).await? {
            Some(client) if client.auth_method == AuthMethod::PrivateKeyJwt => client,
            _ => return Err(OAuthError::invalid_client(AUTH_FAILED)),
        };
        let now = self.now();
        let verified =
            assertion::verify(&client, assertion, audiences, now, self.assertion_leeway)?;
        let recorded = self
            .store
            .record_client_assertion(&client.id, &verified.jti, verified.expires_at)
            .await?;
        if !recorded {
            tracing::info!(client_id = %client.id, "client assertion replayed");
            return Err(OAuthError::invalid_client(
                "client assertion was used before (jti replay)",
            ));
        }
        Ok(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_secrets_have_their_shape() {
        let id = new_client_id();
        assert!(id.starts_with(CLIENT_ID_PREFIX));
        assert_eq!(id.len(), CLIENT_ID_PREFIX.len() + 22);
        assert!(
            id[CLIENT_ID_PREFIX.len()..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_ne!(id, new_client_id());
        let (secret, digest) = new_secret();
        assert!(secret.expose().starts_with(CLIENT_SECRET_PREFIX));
        assert!(digest.ct_eq(&TokenDigest::of(secret.expose())));
    }

    #[test]
    fn metadata_round_trips_and_tolerates_unknown_members() {
        let reg = validate_registration(ClientRegistration {
            redirect_uris: vec!["https://a.example/cb".into()],
            access_token_ttl_secs: Some(120),
            ..ClientRegistration::named("App")
        })
        .expect("valid");
        let mut metadata = StoredMetadata::of(&reg).to_map().expect("map");
        metadata.insert("from_a_newer_version".into(), Value::Bool(true));
        let now = time::OffsetDateTime::UNIX_EPOCH;
        let client = decode(OAuthClient {
            id: "tgc_x".into(),
            name: reg.name.clone(),
            secret_digest: None,
            metadata: metadata.clone(),
            created_at: now,
            updated_at: now,
        })
        .expect("decode");
        assert_eq!(client.access_token_ttl, Duration::seconds(120));
        assert_eq!(client.refresh_token_ttl, DEFAULT_REFRESH_TOKEN_TTL);
        assert!(!client.has_secret);
        let mut again = client.registration();
        again.refresh_token_ttl_secs = None;
        assert_eq!(again, reg);

        metadata.insert("v".into(), Value::from(99));
        let err = decode(OAuthClient {
            id: "tgc_x".into(),
            name: "App".into(),
            secret_digest: None,
            metadata,
            created_at: now,
            updated_at: now,
        })
        .expect_err("unknown version");
        assert!(matches!(err, ClientError::Corrupt { .. }));
    }
}
