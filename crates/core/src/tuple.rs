//! The relationship tuple: `user` has `relation` to `object`, optionally under a condition.
//!
//! One type for the tuple everywhere: on the wire (OpenFGA's `TupleKey` JSON shape), in the
//! policy engine, in storage and in the changelog. The string forms follow OpenFGA: an object is
//! `type:id`; a user is `type:id`, the wildcard `type:*`, or a userset `type:id#relation`.
//! Parsing those forms is the engine's business (`trustgate_authz::tuple`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A relationship tuple. Its identity is `(object, relation, user)`; the condition is not part
/// of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TupleKey {
    /// `type:id`, `type:*` or `type:id#relation`.
    pub user: String,
    /// The relation name.
    pub relation: String,
    /// `type:id`.
    pub object: String,
    /// A condition the tuple holds under, with its stored context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<RelationshipCondition>,
}

/// The condition attached to a tuple.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelationshipCondition {
    /// The name of a condition defined in the model.
    pub name: String,
    /// Parameter values stored with the tuple; merged with (and taking precedence over) the
    /// request context at evaluation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Map<String, Value>>,
}

impl TupleKey {
    /// An unconditioned tuple.
    pub fn new(
        object: impl Into<String>,
        relation: impl Into<String>,
        user: impl Into<String>,
    ) -> Self {
        Self {
            user: user.into(),
            relation: relation.into(),
            object: object.into(),
            condition: None,
        }
    }

    /// The same tuple under condition `name` with `context`.
    pub fn with_condition(
        mut self,
        name: impl Into<String>,
        context: Option<Map<String, Value>>,
    ) -> Self {
        self.condition = Some(RelationshipCondition {
            name: name.into(),
            context,
        });
        self
    }

    /// The condition's name, if any.
    pub fn condition_name(&self) -> Option<&str> {
        self.condition.as_ref().map(|c| c.name.as_str())
    }

    /// The condition's stored context, if any.
    pub fn condition_context(&self) -> Option<&Map<String, Value>> {
        self.condition.as_ref().and_then(|c| c.context.as_ref())
    }

    /// Whether `self` and `other` carry the same condition (an empty context equals none).
    pub fn same_condition(&self, other: &TupleKey) -> bool {
        fn context(t: &TupleKey) -> Option<&Map<String, Value>> {
            t.condition_context().filter(|c| !c.is_empty())
        }
        self.condition_name() == other.condition_name() && context(self) == context(other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_context_is_the_same_condition_as_none() {
        let plain = TupleKey::new("doc:1", "viewer", "user:anne");
        let none = plain.clone().with_condition("c", None);
        let empty = plain.clone().with_condition("c", Some(Map::new()));
        let mut ctx = Map::new();
        ctx.insert("x".into(), Value::from(1));
        let valued = plain.clone().with_condition("c", Some(ctx));
        assert!(none.same_condition(&empty));
        assert!(!none.same_condition(&valued));
        assert!(!plain.same_condition(&none));
        assert!(plain.same_condition(&plain.clone()));
    }

    #[test]
    fn wire_shape_is_openfga_s() {
        let t = TupleKey::new("doc:1", "viewer", "user:anne");
        let json = serde_json::to_value(&t).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({"user": "user:anne", "relation": "viewer", "object": "doc:1"})
        );
    }
}
