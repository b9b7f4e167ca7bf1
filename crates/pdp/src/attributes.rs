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
//! # Stored attributes (not yet)
//!
//! An attribute is named after the party it describes, not after where its value comes from:
//! when the PDP learns attributes of users (directory attributes) or of objects (stored
//! attributes), they will appear as `subject.properties.<name>` and `resource.properties.<name>`,
//! so conditions written against request-supplied properties keep working unchanged.

use serde_json::{Map, Value};

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
        let context = self.context.cloned().unwrap_or_default();
        let mut out = context.clone();
        out.insert(SUBJECT.to_owned(), party(&self.subject));
        out.insert(RESOURCE.to_owned(), party(&self.resource));
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

fn party(p: &Party<'_>) -> Value {
    let mut out = Map::new();
    out.insert("type".to_owned(), Value::from(p.party_type));
    if let Some(id) = p.id {
        out.insert("id".to_owned(), Value::from(id));
    }
    out.insert("properties".to_owned(), properties(p.properties));
    Value::Object(out)
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
}
