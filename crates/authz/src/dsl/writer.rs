//! [`AuthorizationModel`] → DSL text, in the format `fga model transform` prints.
//!
//! Layout: the `model` / `schema` header, then each type in model order (`type x`, then
//! `relations` and one `define` per relation in model order), then the conditions sorted by name
//! with their parameters sorted by name. Operands that are themselves operations are
//! parenthesized; the top level is not.
//!
//! Not every JSON model has a DSL spelling: the DSL only allows a type restriction list as the
//! first operand. The writer moves a direct assignment to the front of a union or intersection
//! (they are commutative), but a model with a direct assignment in the subtracted part of a
//! difference, or with two direct assignments in one relation, is rejected with upstream's
//! message instead of being printed as DSL that would not parse back.

use std::fmt::Write as _;

use crate::model::{AuthorizationModel, ConditionParamTypeRef, RelationReference, Userset};

/// A model that has no DSL representation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the '{relation}' relation definition under the '{type_name}' type is not supported by the OpenFGA DSL syntax yet"
)]
pub struct UnsupportedRelation {
    /// The type holding the relation.
    pub type_name: String,
    /// The relation that cannot be written.
    pub relation: String,
}

/// Writes `model` as DSL.
pub fn write(model: &AuthorizationModel) -> Result<String, UnsupportedRelation> {
    let mut out = String::new();
    let version = if model.schema_version.is_empty() {
        "1.1"
    } else {
        model.schema_version.as_str()
    };
    let _ = writeln!(out, "model\n  schema {version}");
    for ty in &model.type_definitions {
        let _ = writeln!(out, "\ntype {}", ty.type_name);
        let Some(relations) = ty.relations.as_ref().filter(|r| !r.is_empty()) else {
            continue;
        };
        out.push_str("  relations\n");
        for (name, userset) in relations {
            let unsupported = || UnsupportedRelation {
                type_name: ty.type_name.clone(),
                relation: name.clone(),
            };
            if count_direct(userset) > 1 {
                return Err(unsupported());
            }
            let direct = ty.directly_related_user_types(name);
            let text = write_userset(userset, direct, true).ok_or_else(unsupported)?;
            let _ = writeln!(out, "    define {name}: {text}");
        }
    }
    let mut names: Vec<&String> = model.conditions.keys().collect();
    names.sort();
    for name in names {
        let Some(cond) = model.conditions.get(name) else {
            continue;
        };
        let mut params: Vec<(&String, &ConditionParamTypeRef)> = cond.parameters.iter().collect();
        params.sort_by(|a, b| a.0.cmp(b.0));
        let params: Vec<String> = params
            .into_iter()
            .map(|(p, t)| format!("{p}: {}", param_type(t)))
            .collect();
        let _ = writeln!(
            out,
            "\ncondition {name}({}) {{\n  {}\n}}",
            params.join(", "),
            cond.expression
        );
    }
    Ok(out)
}

fn param_type(t: &ConditionParamTypeRef) -> String {
    match t.generic_types.first() {
        Some(g) => format!("{}<{}>", t.type_name.dsl_name(), param_type(g)),
        None => t.type_name.dsl_name().to_string(),
    }
}

fn count_direct(u: &Userset) -> usize {
    match u {
        Userset::This(_) => 1,
        Userset::ComputedUserset(_) | Userset::TupleToUserset(_) => 0,
        Userset::Union(s) | Userset::Intersection(s) => s.child.iter().map(count_direct).sum(),
        Userset::Difference(d) => count_direct(&d.base) + count_direct(&d.subtract),
    }
}

fn restriction(r: &RelationReference) -> String {
    let mut s = r.type_name.clone();
    if r.wildcard.is_some() {
        s.push_str(":*");
    } else if let Some(rel) = &r.relation {
        s.push('#');
        s.push_str(rel);
    }
    if !r.condition.is_empty() {
        s.push_str(" with ");
        s.push_str(&r.condition);
    }
    s
}

/// Writes one operand; `None` when a direct assignment sits where the DSL cannot express it.
/// `first` says whether this operand is in a position where a type restriction list may appear.
fn write_userset(u: &Userset, direct: &[RelationReference], first: bool) -> Option<String> {
    match u {
        Userset::This(_) => {
            if !first {
                return None;
            }
            let list: Vec<String> = direct.iter().map(restriction).collect();
            Some(format!("[{}]", list.join(", ")))
        }
        Userset::ComputedUserset(c) => Some(c.relation.clone()),
        Userset::TupleToUserset(t) => Some(format!(
            "{} from {}",
            t.computed_userset.relation, t.tupleset.relation
        )),
        Userset::Union(s) => write_list(&s.child, " or ", direct, first),
        Userset::Intersection(s) => write_list(&s.child, " and ", direct, first),
        Userset::Difference(d) => {
            let base = write_operand(&d.base, direct, first)?;
            let subtract = write_operand(&d.subtract, direct, false)?;
            Some(format!("{base} but not {subtract}"))
        }
    }
}

fn write_list(
    children: &[Userset],
    sep: &str,
    direct: &[RelationReference],
    first: bool,
) -> Option<String> {
    // Put the operand holding the direct assignment first: union and intersection commute.
    let mut ordered: Vec<&Userset> = children.iter().filter(|c| count_direct(c) > 0).collect();
    ordered.extend(children.iter().filter(|c| count_direct(c) == 0));
    let mut parts = Vec::with_capacity(ordered.len());
    for (i, child) in ordered.into_iter().enumerate() {
        parts.push(write_operand(child, direct, first && i == 0)?);
    }
    Some(parts.join(sep))
}

fn write_operand(u: &Userset, direct: &[RelationReference], first: bool) -> Option<String> {
    let text = write_userset(u, direct, first)?;
    Some(match u {
        Userset::Union(_) | Userset::Intersection(_) | Userset::Difference(_) => {
            format!("({text})")
        }
        _ => text,
    })
}
