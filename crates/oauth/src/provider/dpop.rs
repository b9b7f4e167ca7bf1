//! DPoP proofs presented to this server (RFC 9449): at the token and PAR endpoints, and with
//! access tokens at userinfo. Each proof is verified statelessly, its nonce checked when one is
//! required, and its `jti` spent in the store's ledger, once across every replica.

use trustgate_core::TokenDigest;
use trustgate_tokens::dpop::{self, Proof, ProofExpectation};

use super::Provider;
use crate::OAuthError;
use crate::dpop::{JTI_PURPOSE, proof_error};

/// The proof a request carried (the `DPoP` header), not yet verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DpopProof<'a>(pub &'a str);

/// What a token request proves it holds, for the tokens to be bound to: a DPoP proof
/// (RFC 9449), the client certificate of a mutual-TLS connection (RFC 8705 §3: its `x5t#S256`,
/// verified by the listener), both or neither.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Possession<'a> {
    /// The `DPoP` header.
    pub dpop: Option<DpopProof<'a>>,
    /// The SHA-256 thumbprint of the client certificate, base64url.
    pub certificate: Option<&'a str>,
}

impl<'a> From<Option<DpopProof<'a>>> for Possession<'a> {
    fn from(dpop: Option<DpopProof<'a>>) -> Self {
        Possession {
            dpop,
            certificate: None,
        }
    }
}

impl Provider {
    /// A fresh nonce for the `DPoP-Nonce` header of a response to a request that carried a
    /// proof (RFC 9449 §8.2); `None` when nonces are not required.
    pub fn dpop_nonce(&self) -> Option<String> {
        let settings = &self.inner.settings.dpop;
        settings
            .require_nonce
            .then(|| settings.issue_nonce(self.now()))
    }

    /// Verifies `proof` for a `method` request to `url` (the endpoint's URL under this issuer),
    /// with the access token it accompanies, if any, and spends its `jti`. `with_nonce`: the
    /// endpoint requires the server's nonce when the settings do.
    pub(super) async fn verify_dpop(
        &self,
        proof: DpopProof<'_>,
        method: &str,
        url: &str,
        access_token: Option<&str>,
        with_nonce: bool,
    ) -> Result<Proof, OAuthError> {
        let settings = &self.inner.settings.dpop;
        let now = self.now();
        let accepts = |nonce: &str| settings.accepts_nonce(nonce, now);
        let verified = dpop::verify_proof(
            proof.0,
            &ProofExpectation {
                htm: method,
                htu: url,
                now,
                max_age: settings.proof_max_age,
                leeway: settings.proof_leeway,
                nonce: (with_nonce && settings.require_nonce).then_some(&accepts),
                access_token,
            },
        )
        .map_err(proof_error)?;
        let digest = TokenDigest::of(&verified.replay_id());
        let remember_until = verified.remember_until(now, settings.proof_max_age);
        let fresh = self
            .inner
            .store
            .spend_nonce(JTI_PURPOSE, &digest, remember_until, now)
            .await?;
        if !fresh {
            return Err(OAuthError::invalid_dpop_proof(
                "the DPoP proof was used before",
            ));
        }
        Ok(verified)
    }
}
