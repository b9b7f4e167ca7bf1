//! Expand: the one-level userset tree of `object#relation`, in OpenFGA's JSON shape.
//!
//! The tree mirrors the relation's rewrite: direct assignment becomes a leaf listing the users
//! of the stored (and contextual) tuples that fit the model; a computed userset a leaf naming
//! `object#other`; a tuple-to-userset a leaf naming the tupleset and `parent#relation` for every
//! parent whose type defines the relation; union, intersection and exclusion become nodes with
//! children. Nothing below the first level is resolved: callers expand the named usersets
//! themselves. As in OpenFGA, conditions are not evaluated (Expand has no request context):
//! conditioned tuples are listed.
//!
//! ```json
//! {"tree":{"root":{"name":"document:1#viewer","union":{"nodes":[
//!   {"name":"document:1#viewer","leaf":{"users":{"users":["user:anne","group:eng#member"]}}},
//!   {"name":"document:1#viewer","leaf":{"computed":{"userset":"document:1#editor"}}}]}}}}
//! ```

use std::ops::ControlFlow;

use serde::{Deserialize, Serialize};

use crate::tuple::{ObjectRef, TupleKey, UserRef};

use super::error::EngineError;
use super::reader::{TupleReader, TupleView, UserSelector, user_string};
use super::typesystem::{RelId, Rewrite, TypeSystem};
use super::validation::{resolve_object_relation, validate_contextual_tuples};

/// An expand request.
#[derive(Debug, Clone, Copy)]
pub struct ExpandRequest<'a> {
    /// `type:id`.
    pub object: &'a str,
    /// The relation to expand.
    pub relation: &'a str,
    /// Tuples that hold for this request only (at most 100).
    pub contextual_tuples: &'a [TupleKey],
}

/// The response body: `{"tree": {"root": ...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpandResponse {
    /// The tree.
    pub tree: UsersetTree,
}

/// A userset tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsersetTree {
    /// Its root node.
    pub root: ExpandNode,
}

/// One node: its name (`object#relation`) and what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpandNode {
    /// `object#relation`.
    pub name: String,
    /// A leaf or an operator over child nodes.
    #[serde(flatten)]
    pub value: ExpandNodeValue,
}

/// What a node is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ExpandNodeValue {
    /// A leaf.
    Leaf(ExpandLeaf),
    /// `a or b`.
    Union(ExpandNodes),
    /// `a and b`.
    Intersection(ExpandNodes),
    /// `base but not subtract`.
    Difference(ExpandDifference),
}

/// The children of a union or intersection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpandNodes {
    /// The children, in model order.
    pub nodes: Vec<ExpandNode>,
}

/// The operands of an exclusion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpandDifference {
    /// The users to start from.
    pub base: Box<ExpandNode>,
    /// The users removed.
    pub subtract: Box<ExpandNode>,
}

/// A leaf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ExpandLeaf {
    /// Directly assigned users.
    Users(ExpandUsers),
    /// A computed userset.
    Computed(ExpandComputed),
    /// A tuple-to-userset.
    TupleToUserset(ExpandTupleToUserset),
}

/// Directly assigned users (`user:anne`, `user:*`, `group:eng#member`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpandUsers {
    /// The users, in read order (contextual tuples first).
    pub users: Vec<String>,
}

/// A userset `object#relation` to expand further.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpandComputed {
    /// `object#relation`.
    pub userset: String,
}

/// A tuple-to-userset leaf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpandTupleToUserset {
    /// `object#tupleset`.
    pub tupleset: String,
    /// `parent#relation` for each parent.
    pub computed: Vec<ExpandComputed>,
}

/// Expands `object#relation` one level.
pub fn expand(
    ts: &TypeSystem,
    reader: &dyn TupleReader,
    req: &ExpandRequest<'_>,
) -> Result<ExpandResponse, EngineError> {
    let (object, relation) = resolve_object_relation(ts, req.object, req.relation)?;
    let contextual = validate_contextual_tuples(ts, req.contextual_tuples)?;
    let overlay = contextual.over(reader);
    let reader: &dyn TupleReader = if contextual.is_empty() {
        reader
    } else {
        &overlay
    };
    let name = format!("{}#{}", req.object, req.relation);
    let root = node(
        ts,
        reader,
        object,
        relation,
        &ts.rel(relation).rewrite,
        &name,
    )?;
    Ok(ExpandResponse {
        tree: UsersetTree { root },
    })
}

fn node(
    ts: &TypeSystem,
    reader: &dyn TupleReader,
    object: ObjectRef<'_>,
    relation: RelId,
    rewrite: &Rewrite,
    name: &str,
) -> Result<ExpandNode, EngineError> {
    let object_str = format!("{}:{}", object.object_type, object.object_id);
    let value = match rewrite {
        Rewrite::This => {
            let mut users = Vec::new();
            reader
                .read_users(
                    object,
                    &ts.rel(relation).name,
                    UserSelector::All,
                    &mut |t: TupleView<'_>| {
                        if ts.admits_stored_view(relation, &t) {
                            users.push(user_string(&t.user));
                        }
                        ControlFlow::Continue(())
                    },
                )
                .map_err(|e| EngineError::Read(e.0))?;
            ExpandNodeValue::Leaf(ExpandLeaf::Users(ExpandUsers { users }))
        }
        Rewrite::Computed(k) => ExpandNodeValue::Leaf(ExpandLeaf::Computed(ExpandComputed {
            userset: format!("{object_str}#{}", ts.rel(*k).name),
        })),
        Rewrite::TupleToUserset {
            tupleset,
            computed,
            parents,
        } => {
            let tupleset_name = &*ts.rel(*tupleset).name;
            let mut out = Vec::new();
            for &(parent_type, _) in parents {
                let selector = UserSelector::Type {
                    user_type: ts.type_name(parent_type),
                    relation: None,
                };
                reader
                    .read_users(object, tupleset_name, selector, &mut |t: TupleView<'_>| {
                        if let UserRef::Object(p) = t.user
                            && ts.admits_stored(*tupleset, parent_type, &t.user, t.condition)
                        {
                            out.push(ExpandComputed {
                                userset: format!("{}:{}#{computed}", p.object_type, p.object_id),
                            });
                        }
                        ControlFlow::Continue(())
                    })
                    .map_err(|e| EngineError::Read(e.0))?;
            }
            ExpandNodeValue::Leaf(ExpandLeaf::TupleToUserset(ExpandTupleToUserset {
                tupleset: format!("{object_str}#{tupleset_name}"),
                computed: out,
            }))
        }
        Rewrite::Union(children) => ExpandNodeValue::Union(ExpandNodes {
            nodes: children
                .iter()
                .map(|c| node(ts, reader, object, relation, c, name))
                .collect::<Result<_, _>>()?,
        }),
        Rewrite::Intersection(children) => ExpandNodeValue::Intersection(ExpandNodes {
            nodes: children
                .iter()
                .map(|c| node(ts, reader, object, relation, c, name))
                .collect::<Result<_, _>>()?,
        }),
        Rewrite::Difference(base, subtract) => ExpandNodeValue::Difference(ExpandDifference {
            base: Box::new(node(ts, reader, object, relation, base, name)?),
            subtract: Box::new(node(ts, reader, object, relation, subtract, name)?),
        }),
    };
    Ok(ExpandNode {
        name: name.to_owned(),
        value,
    })
}
