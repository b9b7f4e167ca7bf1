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
//! # Stored attributes
//!
//! An attribute is named after the party it describes, not after where its value comes from:
//! the attributes a store keeps for an object (`type:id`, any object, subjects such as
//! `user:alice` included; written with [`Pdp::put_attributes`], over HTTP at
//! `/stores/{id}/attributes/{object}`) appear as `subject.properties.<name>` and
//! `resource.properties.<name>` ([`Attributes::condition_context_with`]), so conditions
//! written against request-supplied properties keep working unchanged.
//!
//! Precedence: a stored attribute wins over a property of the same name that the request
//! sent, because the PDP is the authority on what it stores (a caller cannot claim another
//! email or department); properties the store does not have still come from the request.
//! Bounded by [`MAX_OBJECT_ATTRIBUTES_BYTES`] per object.
//!
//! Freshness, as for the latest model: an evaluation reads an object's attributes from a
//! per-replica cache ([`ATTRIBUTES_TTL`], absent attributes cached too), so the evaluation hot
//! path does not wait on the database. A write or delete through this replica replaces the
//! entry at once (read-your-writes); one through another replica is seen here within
//! [`ATTRIBUTES_TTL`]. A query with a consistency token or
//! [`Consistency::HigherConsistency`], and
//! [`Pdp::get_attributes`], read the database.
//!
//! An attribute that is absent is absent from `properties`: a condition that reads it without
//! `has()` fails to evaluate (an error, so a denial), and `has(...) && ...` is false. Neither
//! ever allows.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use trustgate_store_api::relationships::MAX_FIELD_BYTES;
use trustgate_store_api::{MAX_ATTRIBUTE_OBJECTS_PER_READ, MAX_OBJECT_ATTRIBUTES_BYTES};

use crate::consistency::{Consistency, Freshness};
use crate::{Pdp, PdpError};

/// How long this replica reuses an object's attributes as read (writes through it are seen at
/// once): the bound, like [`crate::LATEST_MODEL_TTL`] for models, on a write through another
/// replica.
pub const ATTRIBUTES_TTL: Duration = Duration::from_secs(1);
/// Objects whose attributes (or their absence) this replica keeps.
const CACHED_OBJECTS: u64 = 100_000;

/// (store id, object) → the object's attributes, `None` when it has none.
pub(crate) type AttributeCache =
    moka::sync::Cache<(String, String), Option<Arc<Map<String, Value>>>>;

/// An empty [`AttributeCache`] with its bounds.
pub(crate) fn attribute_cache() -> AttributeCache {
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

impl Attributes<'_> {
    /// The condition context of the naming scheme (see the module documentation).
    pub fn condition_context(&self) -> Map<String, Value> {
        self.condition_context_with(None, None)
    }

    /// The condition context with the stored attributes of the subject and of the resource
    /// merged into their `properties` (a stored attribute wins over a request property of the
    /// same name; see the module documentation).
    pub fn condition_context_with(
        &self,
        stored_subject: Option<&Map<String, Value>>,
        stored_resource: Option<&Map<String, Value>>,
    ) -> Map<String, Value> {
        let context = self.context.cloned().unwrap_or_default();
        let mut out = context.clone();
        out.insert(SUBJECT.to_owned(), party(&self.subject, stored_subject));
        out.insert(RESOURCE.to_owned(), party(&self.resource, stored_resource));
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

fn party(p: &Party<'_>, stored: Option<&Map<String, Value>>) -> Value {
    let mut out = Map::new();
    out.insert("type".to_owned(), Value::from(p.party_type));
    if let Some(id) = p.id {
        out.insert("id".to_owned(), Value::from(id));
    }
    let mut props = p.properties.cloned().unwrap_or_default();
    for (name, value) in stored.into_iter().flatten() {
        props.insert(name.clone(), value.clone());
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
            .invalidate(&(store_id.to_owned(), object.to_owned()));
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
            .invalidate(&(store_id.to_owned(), object.to_owned()));
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
        let mut wanted: Vec<&str> = objects.iter().copied().filter(|o| storable(o)).collect();
        wanted.sort_unstable();
        wanted.dedup();
        let cache = &self.inner.attributes;
        let cached =
            freshness.consistency == Consistency::MinimizeLatency && freshness.token.is_none();
        let mut out = HashMap::new();
        let mut missing = Vec::new();
        for object in wanted {
            match cached
                .then(|| cache.get(&(store_id.to_owned(), object.to_owned())))
                .flatten()
            {
                Some(Some(attributes)) => {
                    out.insert(object.to_owned(), Map::clone(&attributes));
                }
                Some(None) => {}
                None => missing.push(object),
            }
        }
        for chunk in missing.chunks(MAX_ATTRIBUTE_OBJECTS_PER_READ) {
            let mut read: HashMap<String, Map<String, Value>> = self
                .inner
                .store
                .get_object_attributes(store_id, chunk)
                .await?
                .into_iter()
                .collect();
            for object in chunk {
                let attributes = read.remove(*object);
                cache.insert(
                    (store_id.to_owned(), (*object).to_owned()),
                    attributes.clone().map(Arc::new),
                );
                if let Some(attributes) = attributes {
                    out.insert((*object).to_owned(), attributes);
                }
            }
        }
        Ok(out)
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
        let out = attrs.condition_context_with(Some(&stored_subject), Some(&stored_resource));
        assert_eq!(
            out["subject"]["properties"],
            json!({ "email": "alice@x", "role": "admin" })
        );
        assert_eq!(
            out["resource"]["properties"],
            json!({ "department": "eng" })
        );
        assert_eq!(
            attrs.condition_context_with(None, None),
            attrs.condition_context()
        );
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
