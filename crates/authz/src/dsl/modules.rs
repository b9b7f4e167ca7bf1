//! Modular models: combining module files into one model.
//!
//! A modular model is an `fga.mod` manifest ([`super::parse_mod_file`]) and the `.fga` files it
//! lists, each starting with `module name`. [`combine_modules`] does what `fga model write`
//! does with them, with upstream's rules and messages:
//!
//! 1. each file is parsed; syntax and listener errors are reported with the file name, and a
//!    file with a `model` header is `file is not a module`;
//! 2. types and conditions are collected in file order, each tagged with its module and file
//!    (`metadata.module`, `metadata.source_info.file`); a condition defined again in another
//!    file is a `duplicate condition`;
//! 3. `extend type` blocks then add their relations to the type they extend (each relation
//!    tagged with the extending module and file): extending a type no file defines, or
//!    redefining one of its relations, is an error;
//! 4. the combined model is validated as a JSON model ([`crate::validate::validate_json_model`])
//!    and every error is placed in the file, line and column that declared the element, which
//!    for a relation added by an extension is the extending file.
//!
//! All errors are reported, in that order. Positions are exact: they come from the syntax trees,
//! not from searching the text for names.

use std::collections::HashMap;

use super::ast::{Document, Header, RelationDecl, Spanned};
use super::locate::{Declarations, locate};
use super::{DslError, DslErrors, Span, parse_document};
use crate::model::{AuthorizationModel, ConditionMetadata, Metadata, SourceInfo};
use crate::validate::{Location, validate_json_model};

/// One module file: its path as listed in `fga.mod` and its text.
#[derive(Debug, Clone, Copy)]
pub struct ModuleFile<'a> {
    /// The path, as listed in `fga.mod` (`core.fga`, `team/project.fga`).
    pub name: &'a str,
    /// The DSL text.
    pub contents: &'a str,
}

/// Where a combined element was declared: file index and type index within that file.
#[derive(Debug, Clone, Copy)]
struct Origin {
    file: usize,
    type_index: usize,
}

/// The declarations of a combined model, for placing validation errors.
struct Combined {
    documents: Vec<Option<Document>>,
    /// `type_definitions[i]` was declared at `types[i]`.
    types: Vec<Origin>,
    /// Relations added by `extend type`: (combined type index, relation) → declaration.
    extended: HashMap<(usize, String), Origin>,
    /// Condition name → file index.
    conditions: HashMap<String, usize>,
}

impl Combined {
    fn document(&self, file: usize) -> Option<&Document> {
        self.documents.get(file)?.as_ref()
    }

    fn relation_origin(&self, type_index: usize, name: &str) -> Option<Origin> {
        self.extended
            .get(&(type_index, name.to_string()))
            .copied()
            .or_else(|| self.types.get(type_index).copied())
    }

    /// The file an error about `location` belongs to.
    fn file_of(&self, location: &Location) -> Option<usize> {
        match location {
            Location::Model | Location::SchemaVersion => None,
            Location::Type { type_index } => self.types.get(*type_index).map(|o| o.file),
            Location::Relation {
                type_index,
                relation,
            }
            | Location::Operand {
                type_index,
                relation,
                ..
            }
            | Location::Restriction {
                type_index,
                relation,
                ..
            } => self.relation_origin(*type_index, relation).map(|o| o.file),
            Location::Condition { name } => self.conditions.get(name).copied(),
        }
    }

    fn module_of(&self, file: usize) -> Option<String> {
        match &self.document(file)?.header {
            Header::Module { name } => Some(name.text.clone()),
            Header::Model { .. } => None,
        }
    }
}

impl Declarations for Combined {
    fn type_name(&self, type_index: usize) -> Option<&Spanned> {
        let o = self.types.get(type_index)?;
        self.document(o.file)?
            .types
            .get(o.type_index)
            .map(|t| &t.name)
    }

    fn relation(&self, type_index: usize, name: &str) -> Option<&RelationDecl> {
        let o = self.relation_origin(type_index, name)?;
        self.document(o.file)?
            .types
            .get(o.type_index)?
            .relations
            .as_ref()?
            .iter()
            .find(|r| r.name.text == name)
    }

    fn condition(&self, name: &str) -> Option<&Spanned> {
        let file = *self.conditions.get(name)?;
        self.document(file)?
            .conditions
            .iter()
            .find(|c| c.name.text == name)
            .map(|c| &c.name)
    }

    fn schema(&self) -> Option<&Spanned> {
        None
    }
}

fn error_at(message: String, at: &Spanned, file: &str, module: &str) -> DslError {
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
        file: Some(file.to_string()),
        module: Some(module.to_string()).filter(|m| !m.is_empty()),
    }
}

fn source(file: &str) -> Option<SourceInfo> {
    Some(SourceInfo {
        file: file.to_string(),
    })
}

/// Combines module files into one model with `schema_version` (see the module documentation).
/// Files are taken in the order given (`fga.mod` order).
pub fn combine_modules(
    files: &[ModuleFile<'_>],
    schema_version: &str,
) -> Result<AuthorizationModel, DslErrors> {
    let mut errors = Vec::new();
    let mut model = AuthorizationModel {
        id: String::new(),
        schema_version: schema_version.to_string(),
        type_definitions: Vec::new(),
        conditions: Default::default(),
    };
    let mut combined = Combined {
        documents: Vec::with_capacity(files.len()),
        types: Vec::new(),
        extended: HashMap::new(),
        conditions: HashMap::new(),
    };
    // (file, type index in file, type definition) of every `extend type`, in file order.
    let mut extensions = Vec::new();

    for (fi, file) in files.iter().enumerate() {
        let parsed = match parse_document(file.contents) {
            Ok(parsed) => parsed,
            Err(e) => {
                errors.extend(e.errors.into_iter().map(|mut e| {
                    e.file = Some(file.name.to_string());
                    e
                }));
                combined.documents.push(None);
                continue;
            }
        };
        let module = match &parsed.document.header {
            Header::Module { name } => name.text.clone(),
            Header::Model { .. } => {
                errors.push(DslError {
                    message: "file is not a module".to_string(),
                    line: Some(Span::default()),
                    column: Some(Span::default()),
                    symbol: None,
                    error_type: None,
                    file: Some(file.name.to_string()),
                    module: None,
                });
                combined.documents.push(None);
                continue;
            }
        };
        let super::Parsed {
            model: file_model,
            document,
            ..
        } = parsed;
        for (ti, (decl, mut typedef)) in document
            .types
            .iter()
            .zip(file_model.type_definitions)
            .enumerate()
        {
            if decl.extend {
                extensions.push((fi, ti, typedef));
                continue;
            }
            let metadata = typedef.metadata.get_or_insert_with(Metadata::default);
            metadata.module = module.clone();
            metadata.source_info = source(file.name);
            combined.types.push(Origin {
                file: fi,
                type_index: ti,
            });
            model.type_definitions.push(typedef);
        }
        for (name, mut condition) in file_model.conditions {
            if model.conditions.contains_key(&name) {
                if let Some(decl) = document.conditions.iter().find(|c| c.name.text == name) {
                    errors.push(error_at(
                        format!("duplicate condition {name}"),
                        &decl.name,
                        file.name,
                        &module,
                    ));
                }
                continue;
            }
            condition.metadata = Some(ConditionMetadata {
                module: module.clone(),
                source_info: source(file.name),
            });
            combined.conditions.insert(name.clone(), fi);
            model.conditions.insert(name, condition);
        }
        combined.documents.push(Some(document));
    }

    for (fi, ti, extension) in extensions {
        let Some(file) = files.get(fi) else {
            continue;
        };
        let module = combined.module_of(fi).unwrap_or_default();
        let Some(decl) = combined.document(fi).and_then(|d| d.types.get(ti)).cloned() else {
            continue;
        };
        let Some(target) = model
            .type_definitions
            .iter()
            .position(|t| t.type_name == extension.type_name)
        else {
            errors.push(error_at(
                format!("extended type {} does not exist", extension.type_name),
                &decl.name,
                file.name,
                &module,
            ));
            continue;
        };
        let Some(original) = model.type_definitions.get_mut(target) else {
            continue;
        };
        let relations = original.relations.get_or_insert_with(Default::default);
        let metadata = original.metadata.get_or_insert_with(Metadata::default);
        let relation_metadata = metadata.relations.get_or_insert_with(Default::default);
        let extension_metadata = extension
            .metadata
            .and_then(|m| m.relations)
            .unwrap_or_default();
        let had_relations = !relations.is_empty();
        for (name, userset) in extension.relations.unwrap_or_default() {
            if had_relations && relations.contains_key(&name) {
                if let Some(r) = decl
                    .relations
                    .iter()
                    .flatten()
                    .find(|r| r.name.text == name)
                {
                    errors.push(error_at(
                        format!(
                            "relation {name} already exists on type {}",
                            extension.type_name
                        ),
                        &r.name,
                        file.name,
                        &module,
                    ));
                }
                continue;
            }
            let mut meta = extension_metadata.get(&name).cloned().unwrap_or_default();
            meta.module = module.clone();
            meta.source_info = source(file.name);
            relations.insert(name.clone(), userset);
            relation_metadata.insert(name.clone(), meta);
            combined.extended.insert(
                (target, name),
                Origin {
                    file: fi,
                    type_index: ti,
                },
            );
        }
        if relation_metadata.is_empty() {
            metadata.relations = None;
        }
    }

    if let Err(validation) = validate_json_model(&model) {
        for e in &validation.errors {
            let mut located = locate(e, &combined);
            let file = combined.file_of(&e.location);
            located.file = file.and_then(|f| files.get(f)).map(|f| f.name.to_string());
            located.module = file.and_then(|f| combined.module_of(f));
            errors.push(located);
        }
    }
    if errors.is_empty() {
        Ok(model)
    } else {
        Err(DslErrors { errors })
    }
}

/// The modules a (combined) model names in its type, relation and condition metadata, sorted
/// and without repeats.
pub fn model_modules(model: &AuthorizationModel) -> Vec<String> {
    let mut modules: Vec<String> = Vec::new();
    for t in &model.type_definitions {
        if let Some(meta) = &t.metadata {
            modules.push(meta.module.clone());
            for r in meta.relations.iter().flat_map(|r| r.values()) {
                modules.push(r.module.clone());
            }
        }
    }
    for c in model.conditions.values() {
        if let Some(meta) = &c.metadata {
            modules.push(meta.module.clone());
        }
    }
    modules.retain(|m| !m.is_empty());
    modules.sort();
    modules.dedup();
    modules
}
