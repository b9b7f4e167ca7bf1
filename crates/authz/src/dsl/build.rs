//! Turns a syntax tree into an [`AuthorizationModel`] plus a [`SourceMap`].
//!
//! This is the part of upstream's parse listener that builds the JSON model; it also reports the
//! errors upstream's listener reports during parsing (a relation defined twice in a type, a
//! condition or a parameter defined twice, `extend` outside a module, a type extended twice in a
//! file). The JSON shape follows `fga model transform`: a type without relations has an empty
//! `relations` map and no metadata; every relation of a type with relations has a metadata entry,
//! with an empty `directly_related_user_types` list when it has no type restrictions.

use indexmap::IndexMap;

use super::ast::{self, Document, Header, Rewrite, Spanned};
use super::{DslError, Span};
use crate::model::{
    AuthorizationModel, Condition, ConditionParamTypeRef, Difference, DirectUserset, Metadata,
    ObjectRelation, RelationMetadata, RelationReference, TupleToUserset, TypeDefinition, TypeName,
    Userset, Usersets, Wildcard,
};

/// Where things were written, for attaching positions to semantic errors.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    /// Cleaned source lines.
    pub lines: Vec<String>,
}

fn spanned_error(message: String, at: &Spanned) -> DslError {
    DslError {
        message,
        line: Some(Span {
            start: at.line,
            end: at.line,
        }),
        column: Some(Span {
            start: at.col,
            end: at.end_col(),
        }),
        symbol: Some(at.text.clone()),
        error_type: None,
        file: None,
        module: None,
    }
}

/// Builds the model. Listener-level errors are returned alongside (the model is still built so
/// callers that only want errors can ignore it).
pub(crate) fn build(doc: &Document, src: &str) -> (AuthorizationModel, SourceMap, Vec<DslError>) {
    let mut errors = Vec::new();
    let map = SourceMap {
        lines: src.split('\n').map(str::to_string).collect(),
    };
    let schema_version = match &doc.header {
        Header::Model { schema } => schema.text.clone(),
        Header::Module { .. } => String::new(),
    };
    let is_module = matches!(doc.header, Header::Module { .. });
    let mut type_definitions = Vec::new();
    let mut extended: Vec<String> = Vec::new();
    for ty in &doc.types {
        if ty.extend {
            if !is_module {
                errors.push(spanned_error(
                    "extend can only be used in a modular model".to_string(),
                    &ty.name,
                ));
            } else if extended.contains(&ty.name.text) {
                errors.push(spanned_error(
                    format!("'{}' is already extended in file.", ty.name.text),
                    &ty.name,
                ));
            } else {
                extended.push(ty.name.text.clone());
            }
        }
        type_definitions.push(build_type(ty, &mut errors));
    }
    let mut conditions = IndexMap::new();
    for cond in &doc.conditions {
        if conditions.contains_key(&cond.name.text) {
            errors.push(spanned_error(
                format!(
                    "condition '{}' is already defined in the model",
                    cond.name.text
                ),
                &cond.name,
            ));
            continue;
        }
        let mut parameters = IndexMap::new();
        for p in &cond.params {
            if parameters.contains_key(&p.name.text) {
                errors.push(spanned_error(
                    format!(
                        "parameter '{}' is already defined in the condition '{}'",
                        p.name.text, cond.name.text
                    ),
                    &p.name,
                ));
                continue;
            }
            parameters.insert(p.name.text.clone(), param_type(p));
        }
        conditions.insert(
            cond.name.text.clone(),
            Condition {
                name: cond.name.text.clone(),
                expression: cond.expression.clone(),
                parameters,
                metadata: None,
            },
        );
    }
    let model = AuthorizationModel {
        id: String::new(),
        schema_version,
        type_definitions,
        conditions,
    };
    (model, map, errors)
}

fn param_type(p: &ast::ConditionParam) -> ConditionParamTypeRef {
    let base = TypeName::from_dsl_name(&p.type_name.text).unwrap_or(TypeName::Unspecified);
    let generic_types = p
        .generic
        .iter()
        .map(|g| ConditionParamTypeRef {
            type_name: TypeName::from_dsl_name(&g.text).unwrap_or(TypeName::Unspecified),
            generic_types: Vec::new(),
        })
        .collect();
    ConditionParamTypeRef {
        type_name: base,
        generic_types,
    }
}

fn build_type(ty: &ast::TypeDecl, errors: &mut Vec<DslError>) -> TypeDefinition {
    let mut relations = IndexMap::new();
    let mut metadata = IndexMap::new();
    for rel in ty.relations.iter().flatten() {
        if relations.contains_key(&rel.name.text) {
            errors.push(spanned_error(
                format!(
                    "'{}' is already defined in '{}'",
                    rel.name.text, ty.name.text
                ),
                &rel.name,
            ));
            continue;
        }
        let mut direct = Vec::new();
        let userset = rewrite_to_userset(&rel.rewrite, &mut direct);
        relations.insert(rel.name.text.clone(), userset);
        metadata.insert(
            rel.name.text.clone(),
            RelationMetadata {
                directly_related_user_types: direct,
                module: String::new(),
                source_info: None,
            },
        );
    }
    let metadata = if metadata.is_empty() {
        None
    } else {
        Some(Metadata {
            relations: Some(metadata),
            module: String::new(),
            source_info: None,
        })
    };
    TypeDefinition {
        type_name: ty.name.text.clone(),
        relations: Some(relations),
        metadata,
    }
}

fn relation_ref(relation: &str) -> ObjectRelation {
    ObjectRelation {
        object: String::new(),
        relation: relation.to_string(),
    }
}

/// Converts a rewrite, collecting the type restrictions of its (single) direct assignment.
pub(crate) fn rewrite_to_userset(rw: &Rewrite, direct: &mut Vec<RelationReference>) -> Userset {
    match rw {
        Rewrite::Direct(list) => {
            direct.extend(list.iter().map(|r| {
                RelationReference {
                    type_name: r.type_name.text.clone(),
                    relation: r.relation.as_ref().map(|s| s.text.clone()),
                    wildcard: r.wildcard.then_some(Wildcard {}),
                    condition: r
                        .condition
                        .as_ref()
                        .map(|c| c.text.clone())
                        .unwrap_or_default(),
                }
            }));
            Userset::This(DirectUserset {})
        }
        Rewrite::Computed(name) => Userset::ComputedUserset(relation_ref(&name.text)),
        Rewrite::TupleToUserset { computed, tupleset } => Userset::TupleToUserset(TupleToUserset {
            tupleset: relation_ref(&tupleset.text),
            computed_userset: relation_ref(&computed.text),
        }),
        Rewrite::Union(children) => Userset::Union(Usersets {
            child: children
                .iter()
                .map(|c| rewrite_to_userset(c, direct))
                .collect(),
        }),
        Rewrite::Intersection(children) => Userset::Intersection(Usersets {
            child: children
                .iter()
                .map(|c| rewrite_to_userset(c, direct))
                .collect(),
        }),
        Rewrite::Difference(base, subtract) => Userset::Difference(Difference {
            base: Box::new(rewrite_to_userset(base, direct)),
            subtract: Box::new(rewrite_to_userset(subtract, direct)),
        }),
    }
}
