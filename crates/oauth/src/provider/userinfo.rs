//! The UserInfo endpoint (OIDC Core §5.3).

use serde_json::{Map, Value, json};

use super::Provider;
use crate::scope::Scope;
use crate::{ErrorCode, OAuthError};

impl Provider {
    /// `/oidc/userinfo` (OIDC Core §5.3): the claims the token's scope allows.
    pub async fn userinfo(&self, access_token: &str) -> Result<Value, OAuthError> {
        let invalid = || OAuthError::new(ErrorCode::InvalidToken, "the access token is invalid");
        let claims = self
            .live_access_token(access_token, &[self.issuer()])
            .await?
            .ok_or_else(invalid)?;
        if claims.uv.is_none() {
            return Err(invalid());
        }
        let scope = Scope::parse(claims.scope.as_deref().unwrap_or(""))?;
        if !scope.is_openid() {
            return Err(OAuthError::new(
                ErrorCode::InsufficientScope,
                "the access token lacks the openid scope",
            ));
        }
        let user = self
            .inner
            .store
            .get_user(&claims.sub)
            .await?
            .ok_or_else(invalid)?;
        let mut body = Map::new();
        body.insert("sub".into(), json!(user.id));
        if scope.contains("profile") {
            body.insert("preferred_username".into(), json!(user.username));
            if let Some(name) = &user.name {
                body.insert("name".into(), json!(name));
            }
            if let Some(locale) = &user.locale {
                body.insert("locale".into(), json!(locale));
            }
            body.insert("updated_at".into(), json!(user.updated_at.unix_timestamp()));
        }
        if scope.contains("email") {
            body.insert("email".into(), json!(user.email));
            body.insert("email_verified".into(), json!(user.email_verified));
        }
        Ok(Value::Object(body))
    }
}
