//! The OpenFGA authorization model, schema 1.1.
//!
//! The serde form of these types is OpenFGA's JSON model format (the body of
//! `POST /stores/{id}/authorization-models` and of `fga model transform`), so a model round-trips
//! between the DSL, this crate and the OpenFGA SDKs without loss. Maps keep their insertion order
//! because the DSL writer emits relations and conditions in the order they were defined.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

/// A whole authorization model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthorizationModel {
    /// The model id (a ULID) once stored; empty for a model not yet written.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Always `"1.1"` for models this crate accepts. Defaults to empty when absent so that
    /// validation can report "schema version required" instead of a deserialization error.
    #[serde(default)]
    pub schema_version: String,
    /// Object types and their relations.
    #[serde(default)]
    pub type_definitions: Vec<TypeDefinition>,
    /// Named CEL conditions that type restrictions may reference.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub conditions: IndexMap<String, Condition>,
}

impl AuthorizationModel {
    /// The type definition named `type_name`.
    pub fn type_definition(&self, type_name: &str) -> Option<&TypeDefinition> {
        self.type_definitions
            .iter()
            .find(|t| t.type_name == type_name)
    }
}

/// One object type (`type document`) and its relations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TypeDefinition {
    /// The type name.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Relation name → how it is computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relations: Option<IndexMap<String, Userset>>,
    /// Type restrictions and source information.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
}

impl TypeDefinition {
    /// The rewrite of `relation`, if the type defines it.
    pub fn relation(&self, relation: &str) -> Option<&Userset> {
        self.relations.as_ref().and_then(|r| r.get(relation))
    }

    /// The metadata (type restrictions) of `relation`, if any.
    pub fn relation_metadata(&self, relation: &str) -> Option<&RelationMetadata> {
        self.metadata
            .as_ref()
            .and_then(|m| m.relations.as_ref())
            .and_then(|r| r.get(relation))
    }

    /// The directly related user types of `relation` (empty when the relation has none).
    pub fn directly_related_user_types(&self, relation: &str) -> &[RelationReference] {
        self.relation_metadata(relation)
            .map(|m| m.directly_related_user_types.as_slice())
            .unwrap_or(&[])
    }
}

/// A relation's rewrite rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Userset {
    /// `[user, group#member]`: users related by a stored tuple.
    This(DirectUserset),
    /// `viewer: editor`: the users of another relation on the same object.
    ComputedUserset(ObjectRelation),
    /// `viewer from parent`: the users of a relation on the objects related by a tupleset.
    TupleToUserset(TupleToUserset),
    /// `a or b`.
    Union(Usersets),
    /// `a and b`.
    Intersection(Usersets),
    /// `a but not b`.
    Difference(Difference),
}

/// The (empty) body of a direct-assignment rewrite, `{"this": {}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectUserset {}

/// A relation reference inside a rewrite. `object` is unused in schema 1.1 and kept for the wire
/// format.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRelation {
    /// Unused in schema 1.1 (always empty).
    #[serde(default)]
    pub object: String,
    /// The relation name.
    #[serde(default)]
    pub relation: String,
}

/// `computed_userset from tupleset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TupleToUserset {
    /// The relation on this object whose tuples point to the parent objects.
    pub tupleset: ObjectRelation,
    /// The relation evaluated on each parent object.
    #[serde(rename = "computedUserset")]
    pub computed_userset: ObjectRelation,
}

/// The operands of a union or intersection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Usersets {
    /// The operands, in definition order; at least one (OpenFGA's API requires it, and the DSL
    /// has no spelling for an empty union).
    #[serde(deserialize_with = "at_least_one_operand")]
    pub child: Vec<Userset>,
}

fn at_least_one_operand<'de, D>(deserializer: D) -> Result<Vec<Userset>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let child = Vec::<Userset>::deserialize(deserializer)?;
    if child.is_empty() {
        return Err(serde::de::Error::invalid_length(
            0,
            &"at least one operand in a union or intersection",
        ));
    }
    Ok(child)
}

/// `base but not subtract`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    /// The users to start from.
    pub base: Box<Userset>,
    /// The users removed from `base`.
    pub subtract: Box<Userset>,
}

/// Per-type metadata: type restrictions of each relation, module and source information.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// Relation name → its metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relations: Option<IndexMap<String, RelationMetadata>>,
    /// The module that defined the type (modular models), empty otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub module: String,
    /// Where the type was defined (modular models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_info: Option<SourceInfo>,
}

/// Metadata of one relation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RelationMetadata {
    /// The type restrictions `[user, group#member, user:*, user with cond]`.
    #[serde(default)]
    pub directly_related_user_types: Vec<RelationReference>,
    /// The module that defined the relation (modular models), empty otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub module: String,
    /// Where the relation was defined (modular models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_info: Option<SourceInfo>,
}

/// One allowed user type in a type restriction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelationReference {
    /// The user's object type.
    #[serde(rename = "type")]
    pub type_name: String,
    /// `group#member`: a userset of this relation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relation: Option<String>,
    /// `user:*`: the public wildcard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wildcard: Option<Wildcard>,
    /// `user with cond`: tuples of this shape must carry this condition.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub condition: String,
}

/// The (empty) wildcard marker, `{"wildcard": {}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wildcard {}

/// Where a type, relation or condition was defined, for modular models.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// The file name.
    #[serde(default)]
    pub file: String,
}

/// A named CEL condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    /// The condition name (equal to its key in [`AuthorizationModel::conditions`]).
    pub name: String,
    /// The CEL expression.
    pub expression: String,
    /// Parameter name → type.
    #[serde(default)]
    pub parameters: IndexMap<String, ConditionParamTypeRef>,
    /// Module and source information (modular models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<ConditionMetadata>,
}

/// Module and source information of a condition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConditionMetadata {
    /// The module that defined the condition.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub module: String,
    /// Where the condition was defined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_info: Option<SourceInfo>,
}

/// The type of a condition parameter, e.g. `map<string>` = MAP with generic STRING.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConditionParamTypeRef {
    /// The base type.
    pub type_name: TypeName,
    /// The element type of `list<T>` / `map<T>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub generic_types: Vec<ConditionParamTypeRef>,
}

/// OpenFGA's condition parameter types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TypeName {
    /// Not set.
    #[serde(rename = "TYPE_NAME_UNSPECIFIED")]
    Unspecified,
    /// Any value.
    #[serde(rename = "TYPE_NAME_ANY")]
    Any,
    /// `bool`.
    #[serde(rename = "TYPE_NAME_BOOL")]
    Bool,
    /// `string`.
    #[serde(rename = "TYPE_NAME_STRING")]
    String,
    /// `int` (64-bit signed).
    #[serde(rename = "TYPE_NAME_INT")]
    Int,
    /// `uint` (64-bit unsigned).
    #[serde(rename = "TYPE_NAME_UINT")]
    Uint,
    /// `double`.
    #[serde(rename = "TYPE_NAME_DOUBLE")]
    Double,
    /// `duration` (`"1h30m"`).
    #[serde(rename = "TYPE_NAME_DURATION")]
    Duration,
    /// `timestamp` (RFC 3339).
    #[serde(rename = "TYPE_NAME_TIMESTAMP")]
    Timestamp,
    /// `map<T>` with string keys.
    #[serde(rename = "TYPE_NAME_MAP")]
    Map,
    /// `list<T>`.
    #[serde(rename = "TYPE_NAME_LIST")]
    List,
    /// `ipaddress`.
    #[serde(rename = "TYPE_NAME_IPADDRESS")]
    IpAddress,
}

impl TypeName {
    /// The DSL spelling of the type (`int`, `map`, `ipaddress`, ...).
    pub fn dsl_name(self) -> &'static str {
        match self {
            TypeName::Unspecified => "unspecified",
            TypeName::Any => "any",
            TypeName::Bool => "bool",
            TypeName::String => "string",
            TypeName::Int => "int",
            TypeName::Uint => "uint",
            TypeName::Double => "double",
            TypeName::Duration => "duration",
            TypeName::Timestamp => "timestamp",
            TypeName::Map => "map",
            TypeName::List => "list",
            TypeName::IpAddress => "ipaddress",
        }
    }

    /// The type for a DSL spelling, if it is one.
    pub fn from_dsl_name(name: &str) -> Option<Self> {
        Some(match name {
            "any" => TypeName::Any,
            "bool" => TypeName::Bool,
            "string" => TypeName::String,
            "int" => TypeName::Int,
            "uint" => TypeName::Uint,
            "double" => TypeName::Double,
            "duration" => TypeName::Duration,
            "timestamp" => TypeName::Timestamp,
            "map" => TypeName::Map,
            "list" => TypeName::List,
            "ipaddress" => TypeName::IpAddress,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_model_round_trips() {
        let json = serde_json::json!({
            "schema_version": "1.1",
            "type_definitions": [
                {"type": "user"},
                {"type": "document",
                 "relations": {
                    "owner": {"this": {}},
                    "viewer": {"union": {"child": [
                        {"this": {}},
                        {"computedUserset": {"object": "", "relation": "owner"}},
                        {"tupleToUserset": {
                            "tupleset": {"object": "", "relation": "parent"},
                            "computedUserset": {"object": "", "relation": "viewer"}}}
                    ]}},
                    "blocked": {"difference": {
                        "base": {"this": {}},
                        "subtract": {"computedUserset": {"object": "", "relation": "owner"}}}}
                 },
                 "metadata": {"relations": {
                    "owner": {"directly_related_user_types": [{"type": "user"}]},
                    "viewer": {"directly_related_user_types": [
                        {"type": "user", "wildcard": {}},
                        {"type": "group", "relation": "member"},
                        {"type": "user", "condition": "in_office"}]}
                 }}}
            ],
            "conditions": {
                "in_office": {"name": "in_office", "expression": "ip.in_cidr(cidr)",
                    "parameters": {
                        "ip": {"type_name": "TYPE_NAME_IPADDRESS"},
                        "tags": {"type_name": "TYPE_NAME_MAP",
                                 "generic_types": [{"type_name": "TYPE_NAME_STRING"}]}}}
            }
        });
        let model: AuthorizationModel = serde_json::from_value(json.clone()).expect("parse");
        let doc = model.type_definition("document").expect("document");
        assert!(matches!(doc.relation("viewer"), Some(Userset::Union(u)) if u.child.len() == 3));
        assert_eq!(doc.directly_related_user_types("viewer").len(), 3);
        assert_eq!(
            model.conditions["in_office"].parameters["tags"].generic_types[0].type_name,
            TypeName::String
        );
        let back = serde_json::to_value(&model).expect("serialize");
        let reparsed: AuthorizationModel = serde_json::from_value(back).expect("reparse");
        assert_eq!(model, reparsed);
    }
}
