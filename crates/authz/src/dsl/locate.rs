//! Positions semantic errors ([`crate::validate::ModelError`]) in the DSL source.
//!
//! The model built from a file mirrors its syntax tree one to one (type `i` is the `i`-th type
//! declaration, a rewrite path indexes the same operands in both), so a [`Location`] resolves to
//! the exact name the error is about; no text search is involved, which keeps positions right
//! when names are prefixes of each other or appear several times on a line.

use super::ast::{Document, Header, RelationDecl, Rewrite, Spanned, TypeRestriction};
use super::{DslError, Span};
use crate::validate::{Location, ModelError, OperandPart, RestrictionPart};

/// A line and a column range.
#[derive(Debug, Clone, Copy)]
struct Place {
    line: usize,
    start: usize,
    end: usize,
}

fn place(s: &Spanned) -> Place {
    Place {
        line: s.line,
        start: s.col,
        end: s.end_col(),
    }
}

fn join(a: &Spanned, b: &Spanned) -> Place {
    Place {
        line: a.line,
        start: a.col,
        end: if b.line == a.line {
            b.end_col()
        } else {
            a.end_col()
        },
    }
}

fn restriction_place(r: &TypeRestriction, part: RestrictionPart) -> Place {
    match part {
        RestrictionPart::Type => place(&r.type_name),
        RestrictionPart::Condition => r.condition.as_ref().map_or(place(&r.type_name), place),
        RestrictionPart::Reference | RestrictionPart::Whole => {
            let mut p = place(&r.type_name);
            if let Some(rel) = &r.relation {
                p = join(&r.type_name, rel);
            } else if r.wildcard {
                p.end += 2;
            }
            if part == RestrictionPart::Whole
                && let Some(c) = &r.condition
                && c.line == p.line
            {
                p.end = c.end_col();
            }
            p
        }
    }
}

fn find_direct(rw: &Rewrite) -> Option<&[TypeRestriction]> {
    match rw {
        Rewrite::Direct(list) => Some(list),
        Rewrite::Computed(_) | Rewrite::TupleToUserset { .. } => None,
        Rewrite::Union(c) | Rewrite::Intersection(c) => c.iter().find_map(find_direct),
        Rewrite::Difference(b, s) => find_direct(b).or_else(|| find_direct(s)),
    }
}

fn follow<'a>(rw: &'a Rewrite, path: &[usize]) -> Option<&'a Rewrite> {
    let Some((first, rest)) = path.split_first() else {
        return Some(rw);
    };
    let next = match rw {
        Rewrite::Union(c) | Rewrite::Intersection(c) => c.get(*first)?,
        Rewrite::Difference(b, s) => match first {
            0 => b,
            1 => s,
            _ => return None,
        },
        _ => return None,
    };
    follow(next, rest)
}

/// Where the elements of a model were declared: one file's syntax tree, or the files a modular
/// model was combined from.
pub(crate) trait Declarations {
    /// The name of `type_definitions[type_index]`.
    fn type_name(&self, type_index: usize) -> Option<&Spanned>;
    /// The declaration of relation `name` of `type_definitions[type_index]`.
    fn relation(&self, type_index: usize, name: &str) -> Option<&RelationDecl>;
    /// The name of condition `name`.
    fn condition(&self, name: &str) -> Option<&Spanned>;
    /// The schema version, if the source has one.
    fn schema(&self) -> Option<&Spanned>;
}

impl Declarations for Document {
    fn type_name(&self, type_index: usize) -> Option<&Spanned> {
        self.types.get(type_index).map(|t| &t.name)
    }

    fn relation(&self, type_index: usize, name: &str) -> Option<&RelationDecl> {
        self.types
            .get(type_index)?
            .relations
            .as_ref()?
            .iter()
            .find(|r| r.name.text == name)
    }

    fn condition(&self, name: &str) -> Option<&Spanned> {
        self.conditions
            .iter()
            .find(|c| c.name.text == name)
            .map(|c| &c.name)
    }

    fn schema(&self) -> Option<&Spanned> {
        match &self.header {
            Header::Model { schema } => Some(schema),
            Header::Module { .. } => None,
        }
    }
}

fn resolve(loc: &Location, decls: &dyn Declarations) -> Option<Place> {
    match loc {
        Location::Model => None,
        Location::SchemaVersion => Some(decls.schema().map_or(
            Place {
                line: 0,
                start: 0,
                end: 0,
            },
            place,
        )),
        Location::Type { type_index } => decls.type_name(*type_index).map(place),
        Location::Relation {
            type_index,
            relation: name,
        } => decls.relation(*type_index, name).map(|r| place(&r.name)),
        Location::Operand {
            type_index,
            relation: name,
            path,
            part,
        } => {
            let rel = decls.relation(*type_index, name)?;
            match follow(&rel.rewrite, path)? {
                Rewrite::Computed(c) => Some(place(c)),
                Rewrite::TupleToUserset { computed, tupleset } => Some(match part {
                    OperandPart::Whole => join(computed, tupleset),
                    OperandPart::Tupleset => place(tupleset),
                }),
                _ => Some(place(&rel.name)),
            }
        }
        Location::Restriction {
            type_index,
            relation: name,
            index,
            part,
        } => {
            let rel = decls.relation(*type_index, name)?;
            let list = find_direct(&rel.rewrite)?;
            list.get(*index).map(|r| restriction_place(r, *part))
        }
        Location::Condition { name } => decls.condition(name).map(place),
    }
}

/// The DSL error for a semantic error of the model declared by `decls`.
pub(crate) fn locate(e: &ModelError, decls: &dyn Declarations) -> DslError {
    let p = resolve(&e.location, decls);
    DslError {
        message: e.message.clone(),
        line: p.map(|p| Span {
            start: p.line,
            end: p.line,
        }),
        column: p.map(|p| Span {
            start: p.start,
            end: p.end,
        }),
        symbol: Some(e.symbol.clone()),
        error_type: Some(e.kind.error_type().to_string()),
        file: None,
        module: None,
    }
}
