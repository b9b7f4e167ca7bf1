//! [`AuthorizationModel`] → DSL text, in the format `fga model transform` prints.
//!
//! Layout: the `model` / `schema` header, then each type in model order (`type x`, then
//! `relations` and one `define` per relation in model order), then the conditions sorted by name
//! with their parameters sorted by name. A modular model is ordered by module instead (see
//! [`write_with`]), optionally with source comments. Operands that are themselves operations are
//! parenthesized; the top level is not.
//!
//! Not every JSON model has a DSL spelling: the DSL only allows a type restriction list as the
//! first operand. The writer moves a direct assignment to the front of a union or intersection
//! (they are commutative), but a model with a direct assignment in the subtracted part of a
//! difference, or with two direct assignments in one relation, is rejected with upstream's
//! message instead of being printed as DSL that would not parse back.

use std::cmp::Ordering;
use std::fmt::Write as _;

use crate::model::{
    AuthorizationModel, Condition, ConditionParamTypeRef, RelationReference, SourceInfo,
    TypeDefinition, Userset,
};

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

/// Options for [`write_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// For a modular model, end the lines of types, extension relations and conditions with
    /// `# module: m, file: f` comments (`# extended by: ...` for relations), as
    /// `fga model transform --include-source-information` does.
    pub include_source_information: bool,
}

/// Writes `model` as DSL.
pub fn write(model: &AuthorizationModel) -> Result<String, UnsupportedRelation> {
    write_with(model, WriteOptions::default())
}

/// Orders names as upstream's `localeCompare` does for the names models use: letters compare
/// without regard to case first.
fn name_order(a: &str, b: &str) -> Ordering {
    a.to_lowercase()
        .cmp(&b.to_lowercase())
        .then_with(|| a.cmp(b))
}

/// Upstream's order for the elements of a modular model: elements without a module (those of
/// the type's own file) first, by name; then by module, file and name.
fn module_order(
    (a_name, a_module, a_file): (&str, &str, &str),
    (b_name, b_module, b_file): (&str, &str, &str),
) -> Ordering {
    match (a_module.is_empty(), b_module.is_empty()) {
        (true, true) => name_order(a_name, b_name),
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => name_order(a_module, b_module)
            .then_with(|| name_order(a_file, b_file))
            .then_with(|| name_order(a_name, b_name)),
    }
}

fn source_comment(module: &str, file: Option<&SourceInfo>, lead: &str, on: bool) -> String {
    if !on || module.is_empty() {
        return String::new();
    }
    let file = file.map_or("", |f| f.file.as_str());
    format!(" #{lead} module: {module}, file: {file}")
}

/// Writes `model` as DSL with `options`. A modular model (one whose types name modules) is
/// written in upstream's module order: types, relations and conditions sorted by module, file
/// and name, a type's own relations first.
pub fn write_with(
    model: &AuthorizationModel,
    options: WriteOptions,
) -> Result<String, UnsupportedRelation> {
    let modular = model
        .type_definitions
        .iter()
        .any(|t| t.metadata.as_ref().is_some_and(|m| !m.module.is_empty()));
    let sources = options.include_source_information;
    let mut out = String::new();
    let version = if model.schema_version.is_empty() {
        "1.1"
    } else {
        model.schema_version.as_str()
    };
    let _ = writeln!(out, "model\n  schema {version}");
    let mut types: Vec<&TypeDefinition> = model.type_definitions.iter().collect();
    if modular {
        let key = |t: &&TypeDefinition| {
            let meta = t.metadata.as_ref();
            (
                t.type_name.clone(),
                meta.map(|m| m.module.clone()).unwrap_or_default(),
                meta.and_then(|m| m.source_info.as_ref())
                    .map(|s| s.file.clone())
                    .unwrap_or_default(),
            )
        };
        types.sort_by(|a, b| {
            let (a, b) = (key(a), key(b));
            module_order((&a.0, &a.1, &a.2), (&b.0, &b.1, &b.2))
        });
    }
    for ty in types {
        let meta = ty.metadata.as_ref();
        let comment = source_comment(
            meta.map_or("", |m| m.module.as_str()),
            meta.and_then(|m| m.source_info.as_ref()),
            "",
            sources,
        );
        let _ = writeln!(out, "\ntype {}{comment}", ty.type_name);
        let Some(relations) = ty.relations.as_ref().filter(|r| !r.is_empty()) else {
            continue;
        };
        out.push_str("  relations\n");
        let mut relations: Vec<(&String, &Userset)> = relations.iter().collect();
        if modular {
            let key = |name: &str| {
                let m = ty.relation_metadata(name);
                (
                    m.map_or("", |m| m.module.as_str()),
                    m.and_then(|m| m.source_info.as_ref())
                        .map_or("", |s| s.file.as_str()),
                )
            };
            relations.sort_by(|(a, _), (b, _)| {
                let (am, af) = key(a);
                let (bm, bf) = key(b);
                module_order((a, am, af), (b, bm, bf))
            });
        }
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
            let rmeta = ty.relation_metadata(name);
            let comment = source_comment(
                rmeta.map_or("", |m| m.module.as_str()),
                rmeta.and_then(|m| m.source_info.as_ref()),
                " extended by:",
                sources,
            );
            let _ = writeln!(out, "    define {name}: {text}{comment}");
        }
    }
    let mut conditions: Vec<(&String, &Condition)> = model.conditions.iter().collect();
    let condition_key = |c: &Condition| {
        let m = c.metadata.as_ref();
        (
            m.map_or(String::new(), |m| m.module.clone()),
            m.and_then(|m| m.source_info.as_ref())
                .map_or(String::new(), |s| s.file.clone()),
        )
    };
    if modular {
        conditions.sort_by(|(an, a), (bn, b)| {
            let (am, af) = condition_key(a);
            let (bm, bf) = condition_key(b);
            module_order((an, &am, &af), (bn, &bm, &bf))
        });
    } else {
        conditions.sort_by(|a, b| a.0.cmp(b.0));
    }
    for (name, cond) in conditions {
        let mut params: Vec<(&String, &ConditionParamTypeRef)> = cond.parameters.iter().collect();
        params.sort_by(|a, b| a.0.cmp(b.0));
        let params: Vec<String> = params
            .into_iter()
            .map(|(p, t)| format!("{p}: {}", param_type(t)))
            .collect();
        let (module, _) = condition_key(cond);
        let comment = source_comment(
            &module,
            cond.metadata.as_ref().and_then(|m| m.source_info.as_ref()),
            "",
            sources,
        );
        let _ = writeln!(
            out,
            "\ncondition {name}({}) {{\n  {}\n}}{comment}",
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
    match single_operand(u) {
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

/// A union or intersection of one operand is that operand: JSON can spell it so, the DSL
/// cannot, and writing it as `(x)` would make the text differ from what parsing it gives back.
fn single_operand(u: &Userset) -> &Userset {
    match u {
        Userset::Union(s) | Userset::Intersection(s) if s.child.len() == 1 => {
            s.child.first().map_or(u, single_operand)
        }
        _ => u,
    }
}

fn write_operand(u: &Userset, direct: &[RelationReference], first: bool) -> Option<String> {
    let text = write_userset(u, direct, first)?;
    Some(match single_operand(u) {
        Userset::Union(_) | Userset::Intersection(_) | Userset::Difference(_) => {
            format!("({text})")
        }
        _ => text,
    })
}
