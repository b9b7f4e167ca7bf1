//! Attributes of a decision request, and the names under which conditions see them.
//!
//! An AuthZEN request describes its parties — `subject`, `action`, `resource` — each with
//! optional `properties`, and an environment, `context`. The relationship engine evaluates
//! conditions over one flat map of named parameters (OpenFGA's request context). This module is
//! the one mapping between the two, so every transport (the AuthZEN API, later the gateway) and
//! every future source of attributes use the same names.
//!
//! # The naming scheme
//!
//! | condition parameter | value |
//! |---|---|
//! | `subject` | `{"type": …, "id": …, "properties": {…}}` |
//! | `resource` | `{"type": …, "id": …, "properties": {…}}` |
//! | `action` | `{"name": …, "properties": {…}}` |
//! | `context` | the request's `context` object |
//! | any other name `n` | the member `n` of the request's `context` |
//!
//! The four reserved parameters are present in every request, so a condition can declare them
//! as `map<any>` (`condition admin(subject: map<any>) { … }`) and never fails for a missing
//! parameter. `properties` and `context` are `{}` when the request has none, so the presence of
//! a property is a CEL `has()` test (`has(subject.properties.role) && subject.properties.role ==
//! "admin"`). A member absent from the request is absent from the map: `id` of the searched
//! party, `name` of the action in an action search.
//!
//! The members of `context` are also passed by their own names, which is exactly OpenFGA's
//! request context: a model written for OpenFGA (`condition in_office(ip: ipaddress) {…}`)
//! works unchanged with AuthZEN's `"context": {"ip": "…"}`. A context member named `subject`,
//! `resource`, `action` or `context` is reachable only as `context.<name>`.
//!
//! A stored tuple's condition context still wins over any of these on a conflicting name (the
//! engine's merge rule).
//!
//! # What trustgate adds to the request's properties
//!
//! An attribute is named after the party it describes, not after where its value comes from,
//! so conditions written against request-supplied properties keep working when trustgate
//! supplies the value instead. Sources, highest precedence first (a source replaces the names
//! it has; [`Attributes::condition_context_with`] is the one merge):
//!
//! | source | properties | of |
//! |---|---|---|
//! | the subject token's [`Authentication`] | `subject.properties.`: `amr` (list), `acr`, `auth_time` (Unix seconds), `client_id`, `scope` (list) ([`AUTHENTICATION_FIELDS`]) | the subject, when the transport verified a token issued to it |
//! | stored attributes ([`Pdp::stored_attributes`]) | any name | any object `type:id` of the store |
//! | the user directory ([`directory_entry`], [`Pdp::directory_attributes`]) | `email`, `email_verified`, `username`, `name`, `locale`, `groups` ([`DIRECTORY_FIELDS`]), then the user's custom attributes | a party that is a trustgate user, where the transport opens the directory to the store (the server: off unless configured) |
//! | the request | any name | every party |
//!
//! Stored attributes are written with [`Pdp::put_attributes`] (over HTTP at
//! `/stores/{id}/attributes/{object}`), at most [`MAX_OBJECT_ATTRIBUTES_BYTES`] per object.
//! They win because an administrator wrote them for this store; the directory wins over the
//! request because trustgate is the authority on its users (a caller cannot claim another
//! email); properties neither has still come from the request.
//!
//! Which parties are trustgate users is the transport's call (AuthZEN: the store's user type,
//! `user` by default, with an id that is a user's id, the `sub` of their tokens). For such a
//! party the directory's fields are its alone: the request's `email`, `groups`, … are dropped
//! even where the directory has no value (an unset `name`, no `groups`), so a request can never
//! supply what the directory withholds. `groups` is the user's custom attribute `groups` when
//! that is a list of strings (trustgate has no directory groups of its own); a custom
//! attribute never replaces a standard field. A disabled user's entry is empty: their
//! attributes are withheld, so conditions that need them fail.
//!
//! The authentication names belong to the subject's token alone: without a verified token they
//! are absent, whatever the request, the stored attributes or the directory say, so a caller
//! cannot fake a second factor (`'mfa' in subject.properties.amr`). The resource's properties
//! are not touched by them.
//!
//! Freshness, as for the latest model: stored attributes and directory entries are read from
//! one per-replica cache ([`ATTRIBUTES_TTL`], absences cached too), so the evaluation hot path
//! does not wait on the database. A write or delete through this replica replaces the entry at
//! once (read-your-writes; [`Pdp::directory_changed`] for a user changed through this
//! replica); one through another replica is seen here within [`ATTRIBUTES_TTL`]. A store
//! that keeps no stored attributes at all is known as such for as long (one probe of the
//! store, not a read per object: most stores have none). A query with a consistency token or
//! [`Consistency::HigherConsistency`], and [`Pdp::get_attributes`], read the database.
//!
//! An attribute that is absent is absent from `properties`: a condition that reads it without
//! `has()` fails to evaluate (an error, so a denial), and `has(...) && ...` is false. Neither
//! ever allows.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use trustgate_store_api::relationships::MAX_FIELD_BYTES;
use trustgate_store_api::{
    MAX_ATTRIBUTE_OBJECTS_PER_READ, MAX_OBJECT_ATTRIBUTES_BYTES, User, UserStatus, UserStore,
};

use crate::consistency::{Consistency, Freshness};
use crate::{Pdp, PdpError};

/// How long this replica reuses an object's attributes (or a user's directory entry) as read
/// (writes through it are seen at once): the bound, like [`crate::LATEST_MODEL_TTL`] for
/// models, on a write through another replica.
pub const ATTRIBUTES_TTL: Duration = Duration::from_secs(1);
/// Objects (and users) whose attributes, or their absence, this replica keeps.
const CACHED_OBJECTS: u64 = 100_000;

/// Where cached attributes come from: a store's stored attributes, or the user directory
/// (which is not per store).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    /// The `object_attributes` of the store with this id.
    Stored(String),
    /// trustgate's users, by id.
    Directory,
}

/// (source, object or user id) → the attributes, `None` when there are none.
pub(crate) type AttributeCache =
    moka::sync::Cache<(Source, String), Option<Arc<Map<String, Value>>>>;

/// An empty [`AttributeCache`] with its bounds.
pub(crate) fn attribute_cache() -> AttributeCache {
    moka::sync::Cache::builder()
        .max_capacity(CACHED_OBJECTS)
        .time_to_live(ATTRIBUTES_TTL)
        .build()
}

/// Store id → whether the store keeps stored attributes of any object, as fresh as
/// [`AttributeCache`]: a store without any is answered without a read per object.
pub(crate) type StoresWithAttributes = moka::sync::Cache<String, bool>;

/// An empty [`StoresWithAttributes`] with its bounds.
pub(crate) fn stores_with_attributes() -> StoresWithAttributes {
    moka::sync::Cache::builder()
        .max_capacity(CACHED_OBJECTS)
        .time_to_live(ATTRIBUTES_TTL)
        .build()
}

/// The parameter carrying the subject.
pub const SUBJECT: &str = "subject";
/// The parameter carrying the resource.
pub const RESOURCE: &str = "resource";
/// The parameter carrying the action.
pub const ACTION: &str = "action";
/// The parameter carrying the whole request context.
pub const CONTEXT: &str = "context";

/// The properties a trustgate user's directory entry defines ([`directory_entry`]). For a
/// party that is a trustgate user only the directory (or a stored attribute) sets them: the
/// request's properties of these names are dropped, even when the directory has no value.
pub const DIRECTORY_FIELDS: [&str; 6] = [
    "email",
    "email_verified",
    "username",
    "name",
    "locale",
    "groups",
];

/// The properties of a subject's authentication context ([`Authentication`]): only a verified
/// subject token sets them; no other source (the request, stored attributes, the directory)
/// can.
pub const AUTHENTICATION_FIELDS: [&str; 5] = ["amr", "acr", "auth_time", "client_id", "scope"];

/// A subject or a resource: a typed id with properties.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Party<'a> {
    /// Its type (`user`, `document`).
    pub party_type: &'a str,
    /// Its id; `None` for the party a search looks for.
    pub id: Option<&'a str>,
    /// Its properties, if the request gave any.
    pub properties: Option<&'a Map<String, Value>>,
}

/// An action with properties.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Act<'a> {
    /// Its name; `None` in an action search.
    pub name: Option<&'a str>,
    /// Its properties, if the request gave any.
    pub properties: Option<&'a Map<String, Value>>,
}

/// Everything a decision request says about its parties and its environment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Attributes<'a> {
    /// Who.
    pub subject: Party<'a>,
    /// Doing what.
    pub action: Act<'a>,
    /// To what.
    pub resource: Party<'a>,
    /// In which circumstances.
    pub context: Option<&'a Map<String, Value>>,
}

/// What trustgate itself knows about a party, merged over what the request says of it (see
/// the module documentation for the precedence).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Known<'a> {
    /// The store's attributes of the party's object ([`Pdp::stored_attributes`]).
    pub stored: Option<&'a Map<String, Value>>,
    /// The party's directory entry when it is a trustgate user ([`Pdp::directory_attributes`];
    /// empty for a disabled user); `None` when it is not one.
    pub directory: Option<&'a Map<String, Value>>,
}

/// A subject's authentication context, from an access token this trustgate issued to it and
/// verified (the transport's job): its `amr`, `acr`, `auth_time`, `client_id` and `scope`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Authentication<'a> {
    /// Authentication methods (RFC 8176), if the token names them.
    pub amr: Option<&'a [String]>,
    /// Authentication context class, if the token has one.
    pub acr: Option<&'a str>,
    /// When the user authenticated (Unix seconds), if the token says.
    pub auth_time: Option<i64>,
    /// The client the token was issued to.
    pub client_id: &'a str,
    /// The granted scope, space separated, if any.
    pub scope: Option<&'a str>,
}

impl Authentication<'_> {
    /// The properties of [`AUTHENTICATION_FIELDS`]: `amr` a list of strings, `acr` a string,
    /// `auth_time` an integer, `client_id` a string, `scope` a list of strings (the scope
    /// split at spaces); a member the token lacks is absent.
    pub fn properties(&self) -> Map<String, Value> {
        let mut out = Map::new();
        if let Some(amr) = self.amr {
            out.insert("amr".to_owned(), Value::from(amr.to_vec()));
        }
        if let Some(acr) = self.acr {
            out.insert("acr".to_owned(), Value::from(acr));
        }
        if let Some(auth_time) = self.auth_time {
            out.insert("auth_time".to_owned(), Value::from(auth_time));
        }
        out.insert("client_id".to_owned(), Value::from(self.client_id));
        if let Some(scope) = self.scope {
            let scopes: Vec<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
            out.insert("scope".to_owned(), Value::from(scopes));
        }
        out
    }
}

/// A trustgate user's directory entry as properties: the user's custom attributes, then the
/// standard fields over them (a custom attribute never replaces a standard field): `email`,
/// `email_verified`, `username`, `name` and `locale` (absent when unset), and `groups` — the
/// custom attribute `groups` when it is a list of strings (trustgate has no directory groups
/// of its own), absent otherwise. A disabled user's entry is empty: their attributes are
/// withheld, so a condition that needs one fails (a denial).
pub fn directory_entry(user: &User) -> Map<String, Value> {
    let mut out = Map::new();
    if user.status != UserStatus::Active {
        return out;
    }
    for (name, value) in &user.attributes {
        if !DIRECTORY_FIELDS.contains(&name.as_str()) {
            out.insert(name.clone(), value.clone());
        }
    }
    out.insert("email".to_owned(), Value::from(user.email.as_str()));
    out.insert(
        "email_verified".to_owned(),
        Value::from(user.email_verified),
    );
    out.insert("username".to_owned(), Value::from(user.username.as_str()));
    if let Some(name) = &user.name {
        out.insert("name".to_owned(), Value::from(name.as_str()));
    }
    if let Some(locale) = &user.locale {
        out.insert("locale".to_owned(), Value::from(locale.as_str()));
    }
    if let Some(groups) = user
        .attributes
        .get("groups")
        .filter(|g| g.as_array().is_some_and(|a| a.iter().all(Value::is_string)))
    {
        out.insert("groups".to_owned(), groups.clone());
    }
    out
}

impl Attributes<'_> {
    /// The condition context of the naming scheme (see the module documentation), from the
    /// request alone.
    pub fn condition_context(&self) -> Map<String, Value> {
        self.condition_context_with(Known::default(), Known::default(), None)
    }

    /// The condition context with what trustgate knows merged into the `properties` of the
    /// subject and the resource, and the subject's verified authentication context (see the
    /// module documentation for the precedence).
    pub fn condition_context_with(
        &self,
        subject: Known<'_>,
        resource: Known<'_>,
        authentication: Option<&Map<String, Value>>,
    ) -> Map<String, Value> {
        let context = self.context.cloned().unwrap_or_default();
        let mut out = context.clone();
        out.insert(
            SUBJECT.to_owned(),
            party(&self.subject, subject, Some(authentication)),
        );
        out.insert(RESOURCE.to_owned(), party(&self.resource, resource, None));
        let mut action = Map::new();
        if let Some(name) = self.action.name {
            action.insert("name".to_owned(), Value::from(name));
        }
        action.insert("properties".to_owned(), properties(self.action.properties));
        out.insert(ACTION.to_owned(), Value::Object(action));
        out.insert(CONTEXT.to_owned(), Value::Object(context));
        out
    }
}

fn properties(given: Option<&Map<String, Value>>) -> Value {
    Value::Object(given.cloned().unwrap_or_default())
}

/// A party with its properties merged: the request's, then the directory's, then the
/// stored ones, each replacing the names it has; for a trustgate user the request's
/// [`DIRECTORY_FIELDS`] are dropped first. For the subject (`authentication` is `Some`),
/// [`AUTHENTICATION_FIELDS`] come from the verified token alone.
fn party(
    p: &Party<'_>,
    known: Known<'_>,
    authentication: Option<Option<&Map<String, Value>>>,
) -> Value {
    let mut out = Map::new();
    out.insert("type".to_owned(), Value::from(p.party_type));
    if let Some(id) = p.id {
        out.insert("id".to_owned(), Value::from(id));
    }
    let mut props = p.properties.cloned().unwrap_or_default();
    if known.directory.is_some() {
        props.retain(|name, _| !DIRECTORY_FIELDS.contains(&name.as_str()));
    }
    for (name, value) in known.directory.into_iter().chain(known.stored).flatten() {
        props.insert(name.clone(), value.clone());
    }
    if let Some(token) = authentication {
        props.retain(|name, _| !AUTHENTICATION_FIELDS.contains(&name.as_str()));
        for (name, value) in token.into_iter().flatten() {
            if AUTHENTICATION_FIELDS.contains(&name.as_str()) {
                props.insert(name.clone(), value.clone());
            }
        }
    }
    out.insert("properties".to_owned(), Value::Object(props));
    Value::Object(out)
}

/// Whether `object` is a `type:id` whose attributes can be stored.
fn storable(object: &str) -> bool {
    object.split_once(':').is_some_and(|(t, id)| {
        !t.is_empty()
            && !id.is_empty()
            && t.len() <= MAX_FIELD_BYTES
            && id.len() <= MAX_FIELD_BYTES
            && !object.contains('\0')
    })
}

fn check_object(object: &str) -> Result<(), PdpError> {
    if storable(object) {
        Ok(())
    } else {
        Err(PdpError::Validation(format!(
            "invalid object '{}': expected type:id",
            crate::shorten(object)
        )))
    }
}

impl Pdp {
    /// This service with trustgate's user directory, which [`Pdp::directory_attributes`]
    /// reads. Call it once, before the service is cloned or used; a directory set already is
    /// kept.
    pub fn with_directory(self, users: Arc<dyn UserStore>) -> Self {
        // Ignored when set: the directory is chosen once, at construction.
        let _ = self.inner.directory.set(users);
        self
    }

    /// Replaces the stored attributes of `object` (`type:id`) in store `store_id`.
    /// [`PdpError::StoreNotFound`] for an unknown store, [`PdpError::Validation`] for an
    /// invalid object or attributes over [`MAX_OBJECT_ATTRIBUTES_BYTES`] of JSON.
    pub async fn put_attributes(
        &self,
        store_id: &str,
        object: &str,
        attributes: &Map<String, Value>,
    ) -> Result<(), PdpError> {
        self.open(store_id)?;
        check_object(object)?;
        let size = serde_json::to_string(attributes).map_or(usize::MAX, |s| s.len());
        if size > MAX_OBJECT_ATTRIBUTES_BYTES {
            return Err(PdpError::Validation(format!(
                "the attributes are {size} bytes of JSON, at most {MAX_OBJECT_ATTRIBUTES_BYTES} are accepted"
            )));
        }
        let now = self.inner.clock.now();
        self.inner
            .store
            .put_object_attributes(store_id, object, attributes, now)
            .await?;
        self.inner
            .attributes
            .invalidate(&(Source::Stored(store_id.to_owned()), object.to_owned()));
        self.inner
            .stores_with_attributes
            .insert(store_id.to_owned(), true);
        Ok(())
    }

    /// The stored attributes of `object` (`{}` if it has none).
    pub async fn get_attributes(
        &self,
        store_id: &str,
        object: &str,
    ) -> Result<Map<String, Value>, PdpError> {
        self.open(store_id)?;
        check_object(object)?;
        let mut found = self
            .stored_attributes(store_id, &[object], Freshness::HIGHER_CONSISTENCY)
            .await?;
        Ok(found.remove(object).unwrap_or_default())
    }

    /// Deletes the stored attributes of `object`; false if it had none.
    pub async fn delete_attributes(&self, store_id: &str, object: &str) -> Result<bool, PdpError> {
        self.open(store_id)?;
        check_object(object)?;
        let deleted = self
            .inner
            .store
            .delete_object_attributes(store_id, object)
            .await?;
        self.inner
            .attributes
            .invalidate(&(Source::Stored(store_id.to_owned()), object.to_owned()));
        // It may have been the store's last: probe again.
        self.inner.stores_with_attributes.invalidate(store_id);
        Ok(deleted)
    }

    /// The stored attributes of those of `objects` that have some (objects that cannot have
    /// attributes, such as `type:` or a userset, are skipped), as fresh as `freshness` asks:
    /// from this replica's cache for [`Consistency::MinimizeLatency`] without a token (see the
    /// module documentation), from the database otherwise.
    pub async fn stored_attributes(
        &self,
        store_id: &str,
        objects: &[&str],
        freshness: Freshness<'_>,
    ) -> Result<HashMap<String, Map<String, Value>>, PdpError> {
        self.open(store_id)?;
        let wanted: Vec<&str> = objects.iter().copied().filter(|o| storable(o)).collect();
        if wanted.is_empty() || !self.may_have_attributes(store_id, freshness).await? {
            return Ok(HashMap::new());
        }
        self.read_through(&Source::Stored(store_id.to_owned()), wanted, freshness)
            .await
    }

    /// Whether `store_id` may keep stored attributes: from this replica's cache (one probe of
    /// the store per [`ATTRIBUTES_TTL`]) where the cache may answer, else `true` (the objects'
    /// own read decides).
    async fn may_have_attributes(
        &self,
        store_id: &str,
        freshness: Freshness<'_>,
    ) -> Result<bool, PdpError> {
        if freshness.consistency != Consistency::MinimizeLatency || freshness.token.is_some() {
            return Ok(true);
        }
        let cache = &self.inner.stores_with_attributes;
        if let Some(has) = cache.get(store_id) {
            return Ok(has);
        }
        let has = self.inner.store.has_object_attributes(store_id).await?;
        cache.insert(store_id.to_owned(), has);
        Ok(has)
    }

    /// The directory entries ([`directory_entry`]) of those of `user_ids` that are trustgate
    /// users (ids that are not ULIDs are skipped; a disabled user's entry is empty), as fresh
    /// as `freshness` asks, through the same per-replica cache as
    /// [`Pdp::stored_attributes`]. Without a directory ([`Pdp::with_directory`]) no id is a
    /// user.
    pub async fn directory_attributes(
        &self,
        user_ids: &[&str],
        freshness: Freshness<'_>,
    ) -> Result<HashMap<String, Map<String, Value>>, PdpError> {
        if self.inner.directory.get().is_none() {
            return Ok(HashMap::new());
        }
        let wanted: Vec<&str> = user_ids
            .iter()
            .copied()
            .filter(|id| trustgate_core::id::is_ulid(id))
            .collect();
        self.read_through(&Source::Directory, wanted, freshness)
            .await
    }

    /// Forgets this replica's cached directory entry of `user_id`, so the next evaluation
    /// reads the user's profile or status as just changed (other replicas: within
    /// [`ATTRIBUTES_TTL`]).
    pub fn directory_changed(&self, user_id: &str) {
        self.inner
            .attributes
            .invalidate(&(Source::Directory, user_id.to_owned()));
    }

    /// The attributes of `keys` from `source`: from the cache when `freshness` allows,
    /// the rest read (and cached, absences too).
    async fn read_through(
        &self,
        source: &Source,
        mut keys: Vec<&str>,
        freshness: Freshness<'_>,
    ) -> Result<HashMap<String, Map<String, Value>>, PdpError> {
        keys.sort_unstable();
        keys.dedup();
        let cache = &self.inner.attributes;
        let cached =
            freshness.consistency == Consistency::MinimizeLatency && freshness.token.is_none();
        let mut out = HashMap::new();
        let mut missing = Vec::new();
        for key in keys {
            match cached
                .then(|| cache.get(&(source.clone(), key.to_owned())))
                .flatten()
            {
                Some(Some(attributes)) => {
                    out.insert(key.to_owned(), Map::clone(&attributes));
                }
                Some(None) => {}
                None => missing.push(key),
            }
        }
        for chunk in missing.chunks(MAX_ATTRIBUTE_OBJECTS_PER_READ) {
            let mut read = self.load(source, chunk).await?;
            for key in chunk {
                let attributes = read.remove(*key);
                cache.insert(
                    (source.clone(), (*key).to_owned()),
                    attributes.clone().map(Arc::new),
                );
                if let Some(attributes) = attributes {
                    out.insert((*key).to_owned(), attributes);
                }
            }
        }
        Ok(out)
    }

    /// Reads the attributes of `keys` from `source`'s table.
    async fn load(
        &self,
        source: &Source,
        keys: &[&str],
    ) -> Result<HashMap<String, Map<String, Value>>, PdpError> {
        match source {
            Source::Stored(store_id) => Ok(self
                .inner
                .store
                .get_object_attributes(store_id, keys)
                .await?
                .into_iter()
                .collect()),
            Source::Directory => {
                let mut out = HashMap::new();
                let Some(users) = self.inner.directory.get() else {
                    return Ok(out);
                };
                for id in keys {
                    if let Some(user) = users.get_user(id).await? {
                        out.insert((*id).to_owned(), directory_entry(&user));
                    }
                }
                Ok(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn every_reserved_parameter_is_present_and_context_members_are_flat() {
        let subject_props = map(json!({ "role": "admin" }));
        let context = map(json!({ "ip": "10.0.0.1", "subject": "shadowed" }));
        let attrs = Attributes {
            subject: Party {
                party_type: "user",
                id: Some("alice"),
                properties: Some(&subject_props),
            },
            action: Act {
                name: Some("read"),
                properties: None,
            },
            resource: Party {
                party_type: "record",
                id: None,
                properties: None,
            },
            context: Some(&context),
        };
        assert_eq!(
            Value::Object(attrs.condition_context()),
            json!({
                "ip": "10.0.0.1",
                "subject": { "type": "user", "id": "alice", "properties": { "role": "admin" } },
                "resource": { "type": "record", "properties": {} },
                "action": { "name": "read", "properties": {} },
                "context": { "ip": "10.0.0.1", "subject": "shadowed" },
            })
        );
        let empty = Attributes::default().condition_context();
        assert_eq!(empty["context"], json!({}));
        assert_eq!(empty["action"], json!({ "properties": {} }));
    }

    #[test]
    fn stored_attributes_win_and_the_request_fills_the_rest() {
        let sent = map(json!({ "email": "forged@x", "role": "admin" }));
        let stored_subject = map(json!({ "email": "alice@x" }));
        let stored_resource = map(json!({ "department": "eng" }));
        let attrs = Attributes {
            subject: Party {
                party_type: "user",
                id: Some("alice"),
                properties: Some(&sent),
            },
            resource: Party {
                party_type: "record",
                id: Some("101"),
                properties: None,
            },
            ..Attributes::default()
        };
        let out = attrs.condition_context_with(
            Known {
                stored: Some(&stored_subject),
                directory: None,
            },
            Known {
                stored: Some(&stored_resource),
                directory: None,
            },
            None,
        );
        assert_eq!(
            out["subject"]["properties"],
            json!({ "email": "alice@x", "role": "admin" })
        );
        assert_eq!(
            out["resource"]["properties"],
            json!({ "department": "eng" })
        );
        assert_eq!(
            attrs.condition_context_with(Known::default(), Known::default(), None),
            attrs.condition_context()
        );
    }

    fn user(status: UserStatus, attributes: Value) -> User {
        let now = time::OffsetDateTime::UNIX_EPOCH;
        User {
            id: "01JC0000000000000000000000".to_owned(),
            username: "alice".to_owned(),
            email: "alice@example.com".to_owned(),
            email_verified: true,
            name: None,
            locale: Some("en".to_owned()),
            attributes: map(attributes),
            status,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn a_directory_entry_has_the_standard_fields_over_the_custom_ones() {
        let entry = directory_entry(&user(
            UserStatus::Active,
            json!({ "email": "custom@x", "department": "eng", "groups": ["staff", "ops"] }),
        ));
        assert_eq!(
            Value::Object(entry),
            json!({
                "email": "alice@example.com",
                "email_verified": true,
                "username": "alice",
                "locale": "en",
                "groups": ["staff", "ops"],
                "department": "eng",
            })
        );
        // groups that are not a list of strings are no groups.
        for groups in [json!("staff"), json!(["staff", 1]), json!({ "a": 1 })] {
            let entry = directory_entry(&user(UserStatus::Active, json!({ "groups": groups })));
            assert!(!entry.contains_key("groups"), "{entry:?}");
        }
        // A disabled user's attributes are withheld.
        assert!(directory_entry(&user(UserStatus::Disabled, json!({ "a": 1 }))).is_empty());
    }

    #[test]
    fn the_directory_is_the_authority_on_its_fields_and_stored_attributes_win_over_it() {
        let sent = map(json!({
            "email": "forged@x", "email_verified": true, "name": "Mallory", "groups": ["admin"],
            "department": "sales", "role": "admin",
        }));
        let directory = map(json!({
            "email": "alice@x", "email_verified": false, "department": "eng",
        }));
        let stored = map(json!({ "department": "ops" }));
        let attrs = Attributes {
            subject: Party {
                party_type: "user",
                id: Some("01JC0000000000000000000000"),
                properties: Some(&sent),
            },
            ..Attributes::default()
        };
        let out = attrs.condition_context_with(
            Known {
                stored: Some(&stored),
                directory: Some(&directory),
            },
            Known::default(),
            None,
        );
        // The request's directory fields are gone even where the directory has no value
        // (name, groups); its other properties stay unless trustgate knows better.
        assert_eq!(
            out["subject"]["properties"],
            json!({
                "email": "alice@x", "email_verified": false, "department": "ops", "role": "admin",
            })
        );
        // A disabled user (an empty entry): every directory field absent, none from the request.
        let empty = Map::new();
        let out = attrs.condition_context_with(
            Known {
                stored: None,
                directory: Some(&empty),
            },
            Known::default(),
            None,
        );
        assert_eq!(
            out["subject"]["properties"],
            json!({ "department": "sales", "role": "admin" })
        );
    }

    #[test]
    fn the_authentication_context_comes_from_the_token_alone() {
        let sent = map(json!({ "amr": ["mfa"], "acr": "2", "scope": ["admin"], "role": "x" }));
        let stored = map(json!({ "auth_time": 1, "client_id": "forged" }));
        let attrs = Attributes {
            subject: Party {
                party_type: "user",
                id: Some("alice"),
                properties: Some(&sent),
            },
            resource: Party {
                party_type: "record",
                id: Some("1"),
                properties: Some(&sent),
            },
            ..Attributes::default()
        };
        let known = Known {
            stored: Some(&stored),
            directory: None,
        };
        // Without a token: none of the names, whoever sent them.
        let out = attrs.condition_context_with(known, Known::default(), None);
        assert_eq!(out["subject"]["properties"], json!({ "role": "x" }));
        // The resource is not the authenticated party: its properties are its own.
        assert_eq!(out["resource"]["properties"], Value::Object(sent.clone()));
        let amr = vec!["pwd".to_owned(), "mfa".to_owned()];
        let token = Authentication {
            amr: Some(&amr),
            acr: Some("2"),
            auth_time: Some(1_700_000_000),
            client_id: "tgc_app",
            scope: Some("openid  orders:read"),
        }
        .properties();
        let out = attrs.condition_context_with(known, Known::default(), Some(&token));
        assert_eq!(
            out["subject"]["properties"],
            json!({
                "role": "x", "amr": ["pwd", "mfa"], "acr": "2", "auth_time": 1_700_000_000,
                "client_id": "tgc_app", "scope": ["openid", "orders:read"],
            })
        );
        // A token without amr, acr or auth_time: those stay absent.
        let bare = Authentication {
            client_id: "tgc_app",
            ..Authentication::default()
        }
        .properties();
        assert_eq!(Value::Object(bare), json!({ "client_id": "tgc_app" }));
    }

    #[test]
    fn only_type_id_objects_are_storable() {
        assert!(storable("user:alice"));
        assert!(storable("todo:a:b"));
        for bad in ["", "user", "user:", ":alice", "user:a\0b"] {
            assert!(!storable(bad), "{bad:?}");
        }
        assert!(!storable(&format!(
            "user:{}",
            "x".repeat(MAX_FIELD_BYTES + 1)
        )));
    }
}
