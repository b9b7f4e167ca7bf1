//! trustgate's own permissions, decided by its own relationship engine (dogfooding).
//!
//! Who may manage users, clients, signing keys, service accounts and API keys, read the audit
//! trail, or use a relationship store is not a column or a hard-coded list: it is a relationship
//! in the **system store** ([`SYSTEM_STORE_ID`], created by the database migration and hidden
//! from the OpenFGA API), evaluated by the same engine as every user store, over this model:
//!
//! ```text
#![doc = include_str!("system.fga")]
//! ```
//!
//! - The system roles are relations of the one object `system:trustgate`: `admin` (everything),
//!   `user_admin`, `client_admin` and `auditor` (each implied by `admin`).
//! - The store roles are relations of `store:<store id>`: `store_admin` (models, assertions,
//!   deleting the store), `writer` (tuples) and `reader` (check, list, expand, read); each
//!   implies the next, and `admin` implies `store_admin` of every store. That implication needs
//!   the store's link to the system object, which is supplied as a contextual tuple on every
//!   question rather than stored, so no store can miss it.
//! - A principal is `user:<id>` or `service:<id>`. A request authenticated by an API key is also
//!   asked as `api_key:<key id>`, with the key's scopes as contextual tuples: it is allowed only
//!   when the owner **and** the key are. So a key never exceeds its owner's permissions (and
//!   loses what the owner loses), and the scope hierarchy is the model's, not a second one.
//!
//! A principal granted roles only on one store cannot see or touch any other store: this is how
//! tenants of the PDP are isolated. Permission checks are not written to the decision log; the
//! caller audits denials with the missing permission.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use trustgate_authz::engine::CheckRequest;
use trustgate_store_api::{OnDuplicate, OnMissing, SYSTEM_STORE_ID, TupleKey};

use crate::tuples::{ReadFilter, TupleWrite};
use crate::{Page, Pdp, PdpError, QueryScope};

/// The system model in the OpenFGA DSL.
pub const SYSTEM_MODEL: &str = include_str!("system.fga");
/// The one object the system roles are relations of.
pub const SYSTEM_OBJECT: &str = "system:trustgate";
/// The largest number of scopes an API key may carry.
pub const MAX_SCOPES: usize = 32;

/// A role on trustgate itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SystemRole {
    /// Everything, including every store.
    Admin,
    /// Users, their sessions and second factors.
    UserAdmin,
    /// OAuth clients.
    ClientAdmin,
    /// Reading the audit trail.
    Auditor,
}

/// A role on one relationship store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StoreRole {
    /// Models and assertions, deleting the store; implies `writer`.
    StoreAdmin,
    /// Writing tuples; implies `reader`.
    Writer,
    /// Check, batch check, expand, list objects and users, reading tuples, models and changes.
    Reader,
}

impl SystemRole {
    /// Every system role.
    pub const ALL: [SystemRole; 4] = [
        SystemRole::Admin,
        SystemRole::UserAdmin,
        SystemRole::ClientAdmin,
        SystemRole::Auditor,
    ];

    /// The relation (and scope) name.
    pub fn as_str(self) -> &'static str {
        match self {
            SystemRole::Admin => "admin",
            SystemRole::UserAdmin => "user_admin",
            SystemRole::ClientAdmin => "client_admin",
            SystemRole::Auditor => "auditor",
        }
    }
}

impl StoreRole {
    /// Every store role.
    pub const ALL: [StoreRole; 3] = [StoreRole::StoreAdmin, StoreRole::Writer, StoreRole::Reader];

    /// The relation name.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreRole::StoreAdmin => "store_admin",
            StoreRole::Writer => "writer",
            StoreRole::Reader => "reader",
        }
    }
}

/// A role a principal holds, or a permission a request needs: the same thing, a relation on the
/// system object or on one store. Spelled `admin`, `user_admin`, `client_admin`, `auditor`, or
/// `store:<store id>:store_admin|writer|reader` (the scope syntax of API keys).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// A role on trustgate itself.
    System(SystemRole),
    /// A role on the store with this id.
    Store(StoreRole, String),
}

/// Why a role string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid role {0:?}: expected admin, user_admin, client_admin, auditor or store:<store id>:store_admin|writer|reader"
)]
pub struct InvalidRole(pub String);

impl FromStr for Role {
    type Err = InvalidRole;

    fn from_str(s: &str) -> Result<Self, InvalidRole> {
        let invalid = || InvalidRole(s.chars().take(80).collect());
        if let Some(role) = SystemRole::ALL.into_iter().find(|r| r.as_str() == s) {
            return Ok(Role::System(role));
        }
        let rest = s.strip_prefix("store:").ok_or_else(invalid)?;
        let (store_id, relation) = rest.split_once(':').ok_or_else(invalid)?;
        if !trustgate_core::id::is_ulid(store_id) || store_id == SYSTEM_STORE_ID {
            return Err(invalid());
        }
        let role = StoreRole::ALL
            .into_iter()
            .find(|r| r.as_str() == relation)
            .ok_or_else(invalid)?;
        Ok(Role::Store(role, store_id.to_owned()))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::System(role) => f.write_str(role.as_str()),
            Role::Store(role, store) => write!(f, "store:{store}:{}", role.as_str()),
        }
    }
}

impl Role {
    /// The object of the relationship: `system:trustgate` or `store:<id>`.
    pub fn object(&self) -> String {
        match self {
            Role::System(_) => SYSTEM_OBJECT.to_owned(),
            Role::Store(_, store) => format!("store:{store}"),
        }
    }

    /// The relation.
    pub fn relation(&self) -> &'static str {
        match self {
            Role::System(role) => role.as_str(),
            Role::Store(role, _) => role.as_str(),
        }
    }

    /// The store this role is about, if any.
    pub fn store(&self) -> Option<&str> {
        match self {
            Role::System(_) => None,
            Role::Store(_, store) => Some(store),
        }
    }

    /// The tuple that grants this role to `subject`.
    pub fn tuple(&self, subject: &str) -> TupleKey {
        TupleKey::new(self.object(), self.relation(), subject)
    }

    fn from_tuple(tuple: &TupleKey) -> Option<Role> {
        let (object_type, id) = tuple.object.split_once(':')?;
        match object_type {
            "system" if tuple.object == SYSTEM_OBJECT => {
                let role = SystemRole::ALL
                    .into_iter()
                    .find(|r| r.as_str() == tuple.relation)?;
                Some(Role::System(role))
            }
            "store" => {
                let role = StoreRole::ALL
                    .into_iter()
                    .find(|r| r.as_str() == tuple.relation)?;
                Some(Role::Store(role, id.to_owned()))
            }
            _ => None,
        }
    }
}

/// Parses API-key scopes (at most [`MAX_SCOPES`], no duplicates, at least one).
pub fn parse_scopes<S: AsRef<str>>(scopes: &[S]) -> Result<Vec<Role>, InvalidRole> {
    if scopes.is_empty() || scopes.len() > MAX_SCOPES {
        return Err(InvalidRole(format!("{} scopes", scopes.len())));
    }
    let mut roles = BTreeSet::new();
    for scope in scopes {
        roles.insert(scope.as_ref().parse::<Role>()?);
    }
    Ok(roles.into_iter().collect())
}

/// The longest application scope on a key.
pub const MAX_APPLICATION_SCOPE_BYTES: usize = 128;

/// An API key's scopes, split: trustgate's own roles (which the owner must hold, and which
/// limit the key on trustgate's APIs) and application scopes (labels for the services the key
/// is presented to — a route's required scopes at the pep or gateway; they grant nothing on
/// trustgate's APIs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyScopes {
    /// trustgate roles, sorted, without duplicates.
    pub roles: Vec<Role>,
    /// Application scopes, sorted, without duplicates.
    pub application: Vec<String>,
}

/// Parses an API key's scopes (1 to [`MAX_SCOPES`]): each is a [`Role`], or else an application
/// scope — an RFC 6749 §3.3 scope-token of at most [`MAX_APPLICATION_SCOPE_BYTES`] bytes that
/// does not start with `store:` (reserved: a malformed store role is an error, never a label).
/// A misspelt system role thus becomes a label that grants nothing, never more.
pub fn parse_key_scopes<S: AsRef<str>>(scopes: &[S]) -> Result<KeyScopes, InvalidRole> {
    if scopes.is_empty() || scopes.len() > MAX_SCOPES {
        return Err(InvalidRole(format!("{} scopes", scopes.len())));
    }
    let mut roles = BTreeSet::new();
    let mut application = BTreeSet::new();
    for scope in scopes {
        let scope = scope.as_ref();
        match scope.parse::<Role>() {
            Ok(role) => {
                roles.insert(role);
            }
            Err(e) if scope.starts_with("store:") => return Err(e),
            Err(e) => {
                let token = !scope.is_empty()
                    && scope.len() <= MAX_APPLICATION_SCOPE_BYTES
                    && scope.bytes().all(|b| {
                        b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b)
                    });
                if !token {
                    return Err(e);
                }
                application.insert(scope.to_owned());
            }
        }
    }
    Ok(KeyScopes {
        roles: roles.into_iter().collect(),
        application: application.into_iter().collect(),
    })
}

/// The subject an API key is asked as.
pub fn key_subject(key_id: &str) -> String {
    format!("api_key:{key_id}")
}

/// Which stores a principal may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadableStores {
    /// Every store (an administrator).
    All,
    /// Only these store ids.
    Only(BTreeSet<String>),
}

/// Who is asking: a principal's subject, and the key that authenticated the request if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asker<'a> {
    /// `user:<id>` or `service:<id>`.
    pub subject: &'a str,
    /// The API key (id and scopes) the request was authenticated by.
    pub key: Option<(&'a str, &'a [Role])>,
}

/// The system store's handle: permission checks and role grants. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SystemAccess {
    pdp: Pdp,
}

impl Pdp {
    /// The handle on trustgate's own permissions; the only handle that reaches the system store.
    pub fn system_access(&self) -> SystemAccess {
        SystemAccess {
            pdp: Pdp {
                inner: self.inner.clone(),
                system: true,
            },
        }
    }
}

impl SystemAccess {
    /// Writes the system model unless the store's latest model is it already. Run at start-up
    /// (replicas racing write the same model twice, which is harmless).
    pub async fn install(&self) -> Result<(), PdpError> {
        let model = trustgate_authz::dsl::parse(SYSTEM_MODEL)
            .map_err(|e| PdpError::internal(format!("the system model does not parse: {e}")))?;
        if let Some(latest) = self.pdp.inner.store.latest_model(SYSTEM_STORE_ID).await? {
            let mut stored: trustgate_authz::model::AuthorizationModel =
                serde_json::from_value(latest.model_json).map_err(PdpError::internal)?;
            stored.id = String::new();
            if stored == model {
                return Ok(());
            }
        }
        self.pdp.write_model(SYSTEM_STORE_ID, model).await?;
        Ok(())
    }

    /// Does `asker` hold `needed` (and, for a key, does the key's scope cover it)? Never `true`
    /// on an error.
    pub async fn allows(&self, asker: Asker<'_>, needed: &Role) -> Result<bool, PdpError> {
        let object = needed.object();
        let link;
        let link_tuples: &[TupleKey] = match needed.store() {
            Some(_) => {
                link = [TupleKey::new(object.clone(), "system", SYSTEM_OBJECT)];
                &link
            }
            None => &[],
        };
        if !self
            .check(
                &object,
                needed.relation(),
                asker.subject,
                link_tuples.to_vec(),
            )
            .await?
        {
            return Ok(false);
        }
        let Some((key_id, scopes)) = asker.key else {
            return Ok(true);
        };
        let key = key_subject(key_id);
        let mut contextual: Vec<TupleKey> = scopes.iter().map(|r| r.tuple(&key)).collect();
        contextual.extend_from_slice(link_tuples);
        self.check(&object, needed.relation(), &key, contextual)
            .await
    }

    async fn check(
        &self,
        object: &str,
        relation: &str,
        user: &str,
        contextual_tuples: Vec<TupleKey>,
    ) -> Result<bool, PdpError> {
        self.pdp
            .check_unlogged(
                &QueryScope::latest(SYSTEM_STORE_ID),
                &CheckRequest {
                    object,
                    relation,
                    user,
                    contextual_tuples: &contextual_tuples,
                    context: None,
                },
            )
            .await
    }

    /// The stores `asker` may read: all for an administrator (whose key, if any, has the
    /// `admin` scope), else those where it holds a store role (and its key a store scope).
    pub async fn readable_stores(&self, asker: Asker<'_>) -> Result<ReadableStores, PdpError> {
        if self.allows(asker, &Role::System(SystemRole::Admin)).await? {
            return Ok(ReadableStores::All);
        }
        let mut stores: BTreeSet<String> = self
            .roles_of(asker.subject)
            .await?
            .iter()
            .filter_map(|r| r.store().map(str::to_owned))
            .collect();
        if let Some((_, scopes)) = asker.key {
            let admin_scope = scopes.contains(&Role::System(SystemRole::Admin));
            if !admin_scope {
                let scoped: BTreeSet<&str> = scopes.iter().filter_map(Role::store).collect();
                stores.retain(|s| scoped.contains(s.as_str()));
            }
        }
        Ok(ReadableStores::Only(stores))
    }

    /// Grants `role` to `subject` (idempotent).
    pub async fn grant(&self, subject: &str, role: &Role) -> Result<(), PdpError> {
        self.change(&[role.tuple(subject)], &[]).await
    }

    /// Revokes `role` from `subject` (idempotent).
    pub async fn revoke(&self, subject: &str, role: &Role) -> Result<(), PdpError> {
        self.change(&[], &[role.tuple(subject)]).await
    }

    /// Writes and deletes role tuples in one write; existing writes and missing deletes are
    /// not errors.
    async fn change(&self, writes: &[TupleKey], deletes: &[TupleKey]) -> Result<(), PdpError> {
        self.pdp
            .write(
                SYSTEM_STORE_ID,
                &TupleWrite {
                    writes,
                    deletes,
                    on_duplicate: OnDuplicate::Ignore,
                    on_missing: OnMissing::Ignore,
                    ..TupleWrite::default()
                },
            )
            .await?;
        Ok(())
    }

    /// The roles granted to `subject` directly (not the ones implied), sorted.
    pub async fn roles_of(&self, subject: &str) -> Result<Vec<Role>, PdpError> {
        let mut roles = BTreeSet::new();
        for object in [SYSTEM_OBJECT, "store:"] {
            let mut continuation: Option<String> = None;
            loop {
                let page = self
                    .pdp
                    .read(
                        SYSTEM_STORE_ID,
                        Some(ReadFilter {
                            object,
                            relation: "",
                            user: subject,
                        }),
                        Page {
                            size: crate::MAX_PAGE_SIZE,
                            continuation_token: continuation.as_deref(),
                        },
                    )
                    .await?;
                roles.extend(page.items.iter().filter_map(|t| Role::from_tuple(&t.tuple)));
                match page.continuation_token {
                    Some(next) if !next.is_empty() => continuation = Some(next),
                    _ => break,
                }
            }
        }
        Ok(roles.into_iter().collect())
    }

    /// Revokes every role of `subject` (when the principal is deleted).
    pub async fn forget(&self, subject: &str) -> Result<(), PdpError> {
        for role in self.roles_of(subject).await? {
            self.revoke(subject, &role).await?;
        }
        Ok(())
    }

    /// Revokes every role on `store_id` (when the store is deleted).
    pub async fn forget_store(&self, store_id: &str) -> Result<(), PdpError> {
        let object = format!("store:{store_id}");
        loop {
            let page = self
                .pdp
                .read(
                    SYSTEM_STORE_ID,
                    Some(ReadFilter {
                        object: &object,
                        relation: "",
                        user: "",
                    }),
                    Page {
                        size: crate::MAX_PAGE_SIZE,
                        continuation_token: None,
                    },
                )
                .await?;
            if page.items.is_empty() {
                return Ok(());
            }
            let deletes: Vec<TupleKey> = page.items.into_iter().map(|t| t.tuple).collect();
            self.change(&[], &deletes).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_through_their_spelling() {
        for s in [
            "admin",
            "user_admin",
            "client_admin",
            "auditor",
            "store:01JF0000000000000000000000:store_admin",
            "store:01JF0000000000000000000000:writer",
            "store:01JF0000000000000000000000:reader",
        ] {
            let role: Role = s.parse().expect(s);
            assert_eq!(role.to_string(), s);
        }
    }

    #[test]
    fn malformed_roles_and_the_system_store_are_refused() {
        for s in [
            "",
            "Admin",
            "root",
            "store:01JF0000000000000000000000",
            "store:01JF0000000000000000000000:owner",
            "store:not-a-ulid:reader",
            "store:00000000000000000000000000:reader",
            "store::reader",
        ] {
            assert!(s.parse::<Role>().is_err(), "{s} accepted");
        }
    }

    #[test]
    fn scopes_are_deduplicated_and_bounded() {
        let parsed = parse_scopes(&["auditor", "auditor", "admin"]).expect("scopes");
        assert_eq!(
            parsed,
            vec![
                Role::System(SystemRole::Admin),
                Role::System(SystemRole::Auditor)
            ]
        );
        assert!(parse_scopes::<&str>(&[]).is_err());
        let many: Vec<String> = (0..=MAX_SCOPES).map(|_| "admin".to_owned()).collect();
        assert!(parse_scopes(&many).is_err());
    }

    #[test]
    fn key_scopes_are_roles_or_application_labels() {
        let parsed =
            parse_key_scopes(&["courses:read", "auditor", "read", "courses:read"]).expect("scopes");
        assert_eq!(parsed.roles, vec![Role::System(SystemRole::Auditor)]);
        assert_eq!(parsed.application, vec!["courses:read", "read"]);
        // A malformed store role is an error, never a label; so is what is no scope-token.
        for bad in [
            "store:01JF0000000000000000000000:owner",
            "store:not-a-ulid:reader",
            "two words",
            "quote\"",
            "back\\slash",
            "",
            "é",
        ] {
            assert!(parse_key_scopes(&[bad]).is_err(), "{bad:?} accepted");
        }
        let long = "a".repeat(MAX_APPLICATION_SCOPE_BYTES + 1);
        assert!(parse_key_scopes(&[long]).is_err());
        assert!(parse_key_scopes::<&str>(&[]).is_err());
    }

    #[test]
    fn the_system_model_parses_and_validates() {
        let model = trustgate_authz::dsl::parse(SYSTEM_MODEL).expect("parses");
        trustgate_authz::validate::validate_json_model(&model).expect("valid");
    }
}
