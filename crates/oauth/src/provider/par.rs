//! Pushed authorization requests (RFC 9126).

use serde::Serialize;
use trustgate_core::secret::generate_token;
use trustgate_store_api::PushedRequest;

use super::{Possession, Provider};
use crate::OAuthError;
use crate::clients::PresentedCredentials;
use crate::request::{self, AuthorizeError, LOGIN_AFTER_PARAM, Params};

/// A pushed authorization request's response (RFC 9126 §2.2).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PushedAuthorizationResponse {
    /// The reference to pass to `/oauth2/authorize`.
    pub request_uri: String,
    /// Seconds until it expires.
    pub expires_in: i64,
}

impl Provider {
    /// `/oauth2/par` (RFC 9126). A DPoP proof sent with the request (RFC 9449 §10.1) binds the
    /// code to its key, as `dpop_jkt` does; both must then name the same key. A request over
    /// mutual TLS (`possession.certificate`) reached the endpoint's mutual-TLS alias, which is
    /// the URL its proof names.
    pub async fn push(
        &self,
        params: &Params,
        credentials: &PresentedCredentials,
        possession: impl Into<Possession<'_>>,
    ) -> Result<PushedAuthorizationResponse, OAuthError> {
        let possession = possession.into();
        let par_url = &self.endpoints_reached(possession.certificate.is_some()).par;
        let client = self.authenticate(credentials, par_url).await?;
        let proven_jkt = match possession.dpop {
            Some(proof) => Some(
                self.verify_dpop(proof, "POST", par_url, None, true)
                    .await?
                    .jkt,
            ),
            None => None,
        };
        if params.get("request_uri").is_some() {
            return Err(OAuthError::invalid_request(
                "request_uri is not allowed in a pushed request",
            ));
        }
        if params.get("client_id").is_some_and(|id| id != client.id) {
            return Err(OAuthError::invalid_request(
                "client_id does not match the authenticated client",
            ));
        }
        let mut stored = params.clone();
        for auth_param in ["client_secret", "client_assertion", "client_assertion_type"] {
            stored.remove(auth_param);
        }
        stored.remove(LOGIN_AFTER_PARAM);
        stored.set("client_id", client.id.clone());
        if let Some(jkt) = proven_jkt {
            if stored.get("dpop_jkt").is_some_and(|named| named != jkt) {
                return Err(OAuthError::invalid_dpop_proof(
                    "dpop_jkt names another key than the DPoP proof's",
                ));
            }
            stored.set("dpop_jkt", jkt);
        }
        let to_oauth_error = |e: AuthorizeError| match e {
            AuthorizeError::Page(error) | AuthorizeError::Redirect { error, .. } => error,
        };
        let redirect_uri = request::check_redirect_uri(&client, &stored).map_err(to_oauth_error)?;
        request::validate(
            &client,
            redirect_uri,
            &stored,
            Some(String::new()),
            Params::default(),
        )
        .map_err(to_oauth_error)?;
        let now = self.now();
        let id = generate_token("").expose().to_owned();
        let pushed = PushedRequest {
            client_id: client.id.clone(),
            parameters: stored.to_json(),
            created_at: now,
            expires_at: now + self.inner.settings.par_ttl,
        };
        self.inner.store.put_pushed_request(&id, &pushed).await?;
        Ok(PushedAuthorizationResponse {
            request_uri: format!("{}{id}", request::PAR_URN_PREFIX),
            expires_in: self.inner.settings.par_ttl.whole_seconds(),
        })
    }
}
