//! Users: creation, profile, status, deletion and admin password resets.

use serde_json::{Map, Value};
use trustgate_core::Secret;
use trustgate_core::id::{is_ulid, new_ulid};
use trustgate_store_api::NewUser;

use trustgate_audit::{AuditKind, Event, Outcome};

use super::{
    AccountError, Accounts, CreateUser, MAX_LOGIN_CHARS, MAX_PAGE, RequestContext, User, UserPage,
    UserStatus, UserUpdate,
};

/// Longest username.
pub const MAX_USERNAME_CHARS: usize = 64;
/// Longest display name.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest locale tag.
pub const MAX_LOCALE_CHARS: usize = 35;
/// Largest custom-attributes object, serialized.
pub const MAX_ATTRIBUTES_BYTES: usize = 16 * 1024;

/// Checks a username: 1 to 64 characters of ASCII letters, digits, `.`, `_`, `-`, starting with
/// a letter or digit. No `@`, so a login name is never mistaken for an email address.
pub fn validate_username(username: &str) -> Result<(), AccountError> {
    let ok = !username.is_empty()
        && username.len() <= MAX_USERNAME_CHARS
        && username
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && username
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(AccountError::InvalidInput(format!(
            "username: 1 to {MAX_USERNAME_CHARS} letters, digits, '.', '_' or '-', starting with a letter or digit"
        )))
    }
}

/// Checks an email address's shape: `local@domain`, no spaces or control characters, at most
/// 254 characters. (Ownership is proven by verification, not by parsing.)
pub fn validate_email(email: &str) -> Result<(), AccountError> {
    let shaped = email.chars().count() <= MAX_LOGIN_CHARS
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        });
    if shaped {
        Ok(())
    } else {
        Err(AccountError::InvalidInput(
            "email: expected an address like name@example.com".into(),
        ))
    }
}

fn validate_name(name: &str) -> Result<(), AccountError> {
    if name.trim().is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(AccountError::InvalidInput(format!(
            "name: 1 to {MAX_NAME_CHARS} characters, no control characters"
        )));
    }
    Ok(())
}

fn validate_locale(locale: &str) -> Result<(), AccountError> {
    let ok = !locale.is_empty()
        && locale.len() <= MAX_LOCALE_CHARS
        && locale
            .split('-')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric()));
    if ok {
        Ok(())
    } else {
        Err(AccountError::InvalidInput(
            "locale: a BCP 47 tag such as en or pt-BR".into(),
        ))
    }
}

fn validate_attributes(attributes: &Map<String, Value>) -> Result<(), AccountError> {
    let size = serde_json::to_vec(attributes).map_or(usize::MAX, |v| v.len());
    if size > MAX_ATTRIBUTES_BYTES {
        return Err(AccountError::InvalidInput(format!(
            "attributes: at most {MAX_ATTRIBUTES_BYTES} bytes of JSON"
        )));
    }
    Ok(())
}

impl Accounts {
    /// Checks `password` against the policy for this user's identifiers.
    pub(super) fn check_new_password(
        &self,
        password: &Secret,
        username: &str,
        email: &str,
        name: Option<&str>,
    ) -> Result<(), AccountError> {
        let mut identifiers = vec![username, email];
        identifiers.extend(name);
        self.inner
            .config
            .password_policy
            .check(password, &identifiers)
            .map_err(AccountError::PasswordRejected)
    }

    /// Creates a user (admin API, CLI). Username and email are unique case-insensitively
    /// ([`AccountError::Conflict`]); a password, if given, must pass the policy.
    pub async fn create_user(
        &self,
        input: CreateUser,
        actor: &str,
        ctx: &RequestContext,
    ) -> Result<User, AccountError> {
        let username = input.username.trim().to_owned();
        let email = input.email.trim().to_owned();
        validate_username(&username)?;
        validate_email(&email)?;
        if let Some(name) = &input.name {
            validate_name(name)?;
        }
        if let Some(locale) = &input.locale {
            validate_locale(locale)?;
        }
        validate_attributes(&input.attributes)?;
        let password_hash = match input.password {
            Some(password) => {
                self.check_new_password(&password, &username, &email, input.name.as_deref())?;
                Some(self.inner.hasher.hash(password).await?.as_phc().to_owned())
            }
            None => None,
        };
        let now = self.now();
        let has_password = password_hash.is_some();
        let user = self
            .store()
            .create_user(
                &NewUser {
                    id: new_ulid(now),
                    username,
                    email,
                    name: input.name,
                    locale: input.locale,
                    attributes: input.attributes,
                    password_hash,
                },
                now,
            )
            .await?;
        self.record(
            ctx,
            Event::new(AuditKind::UserCreated, Outcome::Success)
                .user(&user.id)
                .actor(actor)
                .detail("username", user.username.clone())
                .detail("password_set", has_password),
        )
        .await?;
        Ok(user)
    }

    /// A user by id, else by username (or email).
    pub async fn get_user(&self, id_or_username: &str) -> Result<User, AccountError> {
        let key = id_or_username.trim();
        if key.is_empty() || key.chars().count() > MAX_LOGIN_CHARS {
            return Err(AccountError::NotFound);
        }
        if is_ulid(key)
            && let Some(user) = self.store().get_user(key).await?
        {
            return Ok(user);
        }
        self.store()
            .find_user_by_login(key)
            .await?
            .ok_or(AccountError::NotFound)
    }

    /// Users ordered by id, after `after`, at most `limit` (1 to [`MAX_PAGE`]).
    pub async fn list_users(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<UserPage, AccountError> {
        if after.is_some_and(|a| a.len() > 64) {
            return Err(AccountError::InvalidInput("after: not a user id".into()));
        }
        Ok(self
            .store()
            .list_users(after, limit.clamp(1, MAX_PAGE))
            .await?)
    }

    /// Changes a user's profile.
    pub async fn update_user(
        &self,
        id: &str,
        update: UserUpdate,
        actor: &str,
        ctx: &RequestContext,
    ) -> Result<User, AccountError> {
        let mut update = update;
        if let Some(email) = &mut update.email {
            *email = email.trim().to_owned();
            validate_email(email)?;
        }
        if let Some(Some(name)) = &update.name {
            validate_name(name)?;
        }
        if let Some(Some(locale)) = &update.locale {
            validate_locale(locale)?;
        }
        if let Some(attributes) = &update.attributes {
            validate_attributes(attributes)?;
        }
        let user = self.get_user(id).await?;
        let updated = self
            .store()
            .update_user(&user.id, &update, self.now())
            .await?
            .ok_or(AccountError::NotFound)?;
        let mut fields = Vec::new();
        for (field, changed) in [
            ("email", update.email.is_some()),
            ("email_verified", update.email_verified.is_some()),
            ("name", update.name.is_some()),
            ("locale", update.locale.is_some()),
            ("attributes", update.attributes.is_some()),
        ] {
            if changed {
                fields.push(Value::from(field));
            }
        }
        self.record(
            ctx,
            Event::new(AuditKind::UserUpdated, Outcome::Success)
                .user(&updated.id)
                .actor(actor)
                .detail("fields", fields),
        )
        .await?;
        Ok(updated)
    }

    /// Enables or disables a user. Disabling revokes every session at once (in the same
    /// transaction), and a disabled user cannot log in.
    pub async fn set_user_status(
        &self,
        id: &str,
        status: UserStatus,
        actor: &str,
        ctx: &RequestContext,
    ) -> Result<User, AccountError> {
        let user = self.get_user(id).await?;
        if !self
            .store()
            .set_user_status(&user.id, status, self.now())
            .await?
        {
            return Err(AccountError::NotFound);
        }
        let kind = match status {
            UserStatus::Active => AuditKind::UserEnabled,
            UserStatus::Disabled => AuditKind::UserDisabled,
        };
        self.record(
            ctx,
            Event::new(kind, Outcome::Success)
                .user(&user.id)
                .actor(actor),
        )
        .await?;
        self.store()
            .get_user(&user.id)
            .await?
            .ok_or(AccountError::NotFound)
    }

    /// Deletes a user with their sessions and factors. The audit trail keeps their events.
    pub async fn delete_user(
        &self,
        id: &str,
        actor: &str,
        ctx: &RequestContext,
    ) -> Result<(), AccountError> {
        let user = self.get_user(id).await?;
        if !self.store().delete_user(&user.id).await? {
            return Err(AccountError::NotFound);
        }
        self.record(
            ctx,
            Event::new(AuditKind::UserDeleted, Outcome::Success)
                .user(&user.id)
                .actor(actor)
                .detail("username", user.username),
        )
        .await
    }

    /// Sets a user's password (admin reset). The policy applies; every session of the user is
    /// revoked.
    pub async fn admin_set_password(
        &self,
        id: &str,
        password: Secret,
        actor: &str,
        ctx: &RequestContext,
    ) -> Result<(), AccountError> {
        let user = self.get_user(id).await?;
        self.check_new_password(&password, &user.username, &user.email, user.name.as_deref())?;
        let hash = self.inner.hasher.hash(password).await?;
        let now = self.now();
        if !self
            .store()
            .set_password_hash(&user.id, hash.as_phc(), now)
            .await?
        {
            return Err(AccountError::NotFound);
        }
        let revoked = self
            .store()
            .revoke_user_sessions(&user.id, None, now)
            .await?;
        self.record(
            ctx,
            Event::new(AuditKind::PasswordChanged, Outcome::Success)
                .user(&user.id)
                .actor(actor)
                .detail("by", "admin")
                .detail("sessions_revoked", revoked),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        for ok in ["alice", "a", "bob.smith", "x_1-2", "Alice9"] {
            assert!(validate_username(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-x",
            ".x",
            "a b",
            "a@b",
            "ä",
            &"x".repeat(65),
            "a/b",
            "a\0",
        ] {
            assert!(validate_username(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn emails() {
        for ok in ["a@b", "alice@example.com", "a.b+c@sub.example.org"] {
            assert!(validate_email(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "a@b@c",
            "a b@c",
            "a@.c",
            "a@c.",
            "a\n@c",
        ] {
            assert!(validate_email(bad).is_err(), "{bad:?}");
        }
        assert!(validate_email(&format!("{}@example.com", "x".repeat(300))).is_err());
    }

    #[test]
    fn locales_names_attributes() {
        assert!(validate_locale("pt-BR").is_ok());
        assert!(validate_locale("en").is_ok());
        assert!(validate_locale("en--US").is_err());
        assert!(validate_locale("<script>").is_err());
        assert!(validate_name("Alice Liddell").is_ok());
        assert!(validate_name("  ").is_err());
        assert!(validate_name("a\u{7}").is_err());
        let mut big = Map::new();
        big.insert("k".into(), Value::from("v".repeat(MAX_ATTRIBUTES_BYTES)));
        assert!(validate_attributes(&big).is_err());
        assert!(validate_attributes(&Map::new()).is_ok());
    }
}
