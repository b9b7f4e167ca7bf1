//! Semantic validation of an authorization model (OpenFGA schema 1.1 / 1.2).
//!
//! The rules and messages are those of OpenFGA's language tooling (`fga model validate`), which
//! are a superset of what the OpenFGA server checks on `WriteAuthorizationModel`:
//!
//! 1. names: types and relations must not be `self` / `this` and must match OpenFGA's regexes;
//! 2. schema version: present, and `1.1` or `1.2`;
//! 3. references, relation by relation (operands breadth first): computed relations exist on the
//!    type; type restrictions name existing types, defined conditions and existing relations; a
//!    tupleset (`x from parent`) is a relation of the type that is a pure direct assignment of
//!    plain types (no `type#rel`, no `type:*`), and the computed relation exists on at least one
//!    of those types;
//! 4. duplicates (only when 3 found nothing): duplicate types, duplicate type restrictions,
//!    duplicate operands of one operator;
//! 5. entrypoints (only when nothing was found before): every relation must be satisfiable by
//!    some stored tuple without going around a loop;
//! 6. conditions, whatever came before: conditions no type restriction uses, then conditions
//!    whose expression does not compile.
//!
//! Every error names the model element it is about ([`Location`]); the DSL front end turns that
//! into a line and column. Conditions are also checked structurally (key equals nested name,
//! parameter types well-formed) and, in phase 6, compiled: an expression that does not parse,
//! references an undeclared parameter or an unknown function, mistypes an operand or does not
//! produce a `bool` is an [`ErrorKind::InvalidConditionExpression`] with OpenFGA's message
//! (`failed to compile expression on condition 'name' - ...`), as `WriteAuthorizationModel`
//! refuses it. OpenFGA's DSL tooling does not compile expressions; we do, so that a model that
//! validates here is one the server accepts.

use std::collections::{HashMap, HashSet};

use crate::model::{
    AuthorizationModel, ConditionParamTypeRef, RelationReference, TypeDefinition, TypeName, Userset,
};

/// What kind of rule a model breaks. [`ErrorKind::error_type`] is OpenFGA's DSL `errorType`,
/// [`ErrorKind::api_code`] the OpenFGA API error code for `WriteAuthorizationModel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The schema version is missing.
    SchemaVersionRequired,
    /// The schema version is not supported.
    InvalidSchema,
    /// A type named `self` or `this`.
    ReservedTypeKeywords,
    /// A relation named `self` or `this`.
    ReservedRelationKeywords,
    /// A type or relation name that does not match OpenFGA's naming rule.
    InvalidName,
    /// A rewrite references a relation the type does not define.
    MissingDefinition,
    /// A type restriction or tupleset references a relation that does not exist.
    InvalidRelationType,
    /// A type restriction references a type that does not exist.
    InvalidType,
    /// `x from parent` where no type of `parent` defines `x`.
    InvalidRelationOnTupleset,
    /// `x from parent` where `parent` is not a pure direct assignment of plain types.
    TuplesetNotDirect,
    /// A duplicate type, type restriction or operand.
    Duplicated,
    /// A type restriction names a condition the model does not define.
    ConditionNotDefined,
    /// A condition no type restriction uses.
    ConditionNotUsed,
    /// A relation that no tuple can ever satisfy.
    RelationNoEntryPoint,
    /// A condition whose map key differs from its `name`.
    DifferentNestedConditionName,
    /// A condition parameter with an unusable type.
    InvalidConditionParameter,
    /// A relation with a direct assignment but no type restrictions.
    AssignableRelationMustHaveTypes,
    /// Type restrictions on a relation without a direct assignment (JSON models only: the DSL
    /// cannot write them, and nothing could ever be assigned through them).
    NonAssignableRelationHasTypes,
    /// Modular metadata would put several modules in one file.
    MultipleModulesInFile,
    /// A condition's expression does not compile: it does not parse, references an undeclared
    /// parameter or unknown function, mistypes an operand, or does not produce a `bool`.
    InvalidConditionExpression,
}

impl ErrorKind {
    /// OpenFGA's DSL `errorType` string.
    pub fn error_type(self) -> &'static str {
        match self {
            ErrorKind::SchemaVersionRequired => "schema-version-required",
            ErrorKind::InvalidSchema => "invalid-schema",
            ErrorKind::ReservedTypeKeywords => "reserved-type-keywords",
            ErrorKind::ReservedRelationKeywords => "reserved-relation-keywords",
            ErrorKind::InvalidName => "invalid-name",
            ErrorKind::MissingDefinition => "missing-definition",
            ErrorKind::InvalidRelationType => "invalid-relation-type",
            ErrorKind::InvalidType => "invalid-type",
            ErrorKind::InvalidRelationOnTupleset => "invalid-relation-on-tupleset",
            ErrorKind::TuplesetNotDirect => "tupleuserset-not-direct",
            ErrorKind::Duplicated => "duplicated-error",
            ErrorKind::ConditionNotDefined => "condition-not-defined",
            ErrorKind::ConditionNotUsed => "condition-not-used",
            ErrorKind::RelationNoEntryPoint => "relation-no-entry-point",
            ErrorKind::DifferentNestedConditionName => "different-nested-condition-name",
            ErrorKind::InvalidConditionParameter => "invalid-condition-parameter",
            ErrorKind::AssignableRelationMustHaveTypes => "assignable-relation-must-have-type",
            ErrorKind::NonAssignableRelationHasTypes => "non-assignable-relation-has-type",
            ErrorKind::MultipleModulesInFile => "multiple-modules-in-file",
            ErrorKind::InvalidConditionExpression => "invalid-condition-expression",
        }
    }

    /// The OpenFGA API error code a server returns for a model with this error. OpenFGA reports
    /// every semantic model error of `WriteAuthorizationModel` as `invalid_authorization_model`
    /// (`schema_version` problems included), so this is the code for all kinds.
    pub fn api_code(self) -> &'static str {
        "invalid_authorization_model"
    }
}

/// The model element an error is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The model as a whole.
    Model,
    /// The schema version.
    SchemaVersion,
    /// The name of `type_definitions[type_index]`.
    Type {
        /// Index into `type_definitions`.
        type_index: usize,
    },
    /// The name of a relation.
    Relation {
        /// Index into `type_definitions`.
        type_index: usize,
        /// The relation name.
        relation: String,
    },
    /// An operand of a relation's rewrite, found by following `path` from the root (child index
    /// for unions and intersections, 0 / 1 for a difference's base / subtract).
    Operand {
        /// Index into `type_definitions`.
        type_index: usize,
        /// The relation name.
        relation: String,
        /// Path from the rewrite's root.
        path: Vec<usize>,
        /// Which part of the operand.
        part: OperandPart,
    },
    /// One type restriction of a relation.
    Restriction {
        /// Index into `type_definitions`.
        type_index: usize,
        /// The relation name.
        relation: String,
        /// Index into `directly_related_user_types`.
        index: usize,
        /// Which part of the restriction.
        part: RestrictionPart,
    },
    /// A condition's name.
    Condition {
        /// The condition name.
        name: String,
    },
}

/// Which part of a rewrite operand an error points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperandPart {
    /// The whole operand (`x` or `x from parent`).
    Whole,
    /// The tupleset (`parent` in `x from parent`).
    Tupleset,
}

/// Which part of a type restriction an error points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestrictionPart {
    /// The type name.
    Type,
    /// `type`, `type#relation` or `type:*` (without the condition).
    Reference,
    /// The whole restriction, including `with condition`.
    Whole,
    /// The condition name.
    Condition,
}

/// One semantic error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ModelError {
    /// The rule broken.
    pub kind: ErrorKind,
    /// OpenFGA's message.
    pub message: String,
    /// The offending text (a name, `type#relation`, `x from y`, ...).
    pub symbol: String,
    /// The element the error is about.
    pub location: Location,
}

/// All semantic errors of a model (never empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid authorization model: {}", first_message(.errors))]
pub struct ModelErrors {
    /// The errors in OpenFGA's order.
    pub errors: Vec<ModelError>,
}

fn first_message(errors: &[ModelError]) -> String {
    let mut s = errors
        .first()
        .map(|e| e.message.clone())
        .unwrap_or_default();
    if errors.len() > 1 {
        s.push_str(&format!(" (and {} more)", errors.len() - 1));
    }
    s
}

impl ModelErrors {
    /// The OpenFGA API error code for the whole failure.
    pub fn api_code(&self) -> &'static str {
        self.errors
            .first()
            .map(|e| e.kind.api_code())
            .unwrap_or("invalid_authorization_model")
    }
}

/// The naming rule for types.
pub const TYPE_NAME_RULE: &str = r"^[^:#@\*\s]{1,254}$";
/// The naming rule for relations.
pub const RELATION_NAME_RULE: &str = r"^[^:#@\*\s]{1,50}$";

fn matches_name_rule(name: &str, max: usize) -> bool {
    let n = name.chars().count();
    (1..=max).contains(&n)
        && !name
            .chars()
            .any(|c| matches!(c, ':' | '#' | '@' | '*') || c.is_whitespace())
}

/// Whether `id` is a valid object id as OpenFGA's language validators define it: ASCII letters,
/// digits and `_ | * @ . + / -` only (so no `#`, `:`, `,` or whitespace), not starting with `*`.
pub fn is_valid_object_id(id: &str) -> bool {
    !id.is_empty()
        && !id.starts_with('*')
        && id.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '_' | '|' | '*' | '@' | '.' | '+' | '/' | '-')
        })
}

/// Validates a model received as JSON, as the OpenFGA server does on `WriteAuthorizationModel`:
/// the same rules as [`validate_model`] (the server's checks are a subset of them) plus what only
/// JSON can express: type restrictions on a relation without a direct assignment (OpenFGA's
/// "non-assignable relation should not contain a relation type"), and the modular-metadata
/// consistency checks.
pub fn validate_json_model(model: &AuthorizationModel) -> Result<(), ModelErrors> {
    let mut errors = match validate_model(model) {
        Ok(()) => Vec::new(),
        Err(e) => e.errors,
    };
    errors.extend(non_assignable_restrictions(model));
    errors.extend(module_file_errors(model));
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ModelErrors { errors })
    }
}

/// Type restrictions on a relation whose rewrite has no direct assignment (`this`). The DSL has
/// no way to write them, so such a model would silently lose them (and with them the use of a
/// condition) on its way to DSL and back; and no tuple could be written through them.
fn non_assignable_restrictions(model: &AuthorizationModel) -> Vec<ModelError> {
    let mut errors = Vec::new();
    for (type_index, t) in model.type_definitions.iter().enumerate() {
        let Some(relations) = t.metadata.as_ref().and_then(|m| m.relations.as_ref()) else {
            continue;
        };
        for (rel, meta) in relations {
            if meta.directly_related_user_types.is_empty() {
                continue;
            }
            let assignable = t.relation(rel).is_some_and(|rewrite| {
                leaves(rewrite)
                    .iter()
                    .any(|leaf| matches!(leaf.userset, Userset::This(_)))
            });
            // A restriction on an undefined relation is reported by `validate_model`'s checks.
            if t.relation(rel).is_some() && !assignable {
                errors.push(ModelError {
                    kind: ErrorKind::NonAssignableRelationHasTypes,
                    message: format!(
                        "the non-assignable relation '{rel}' in object type '{}' should not contain a relation type",
                        t.type_name
                    ),
                    symbol: rel.clone(),
                    location: Location::Relation {
                        type_index,
                        relation: rel.clone(),
                    },
                });
            }
        }
    }
    errors
}

/// A modular model is written back as one DSL file per `source_info.file`, and a DSL file
/// declares a single module, so every element of one file must name the same module.
fn module_file_errors(model: &AuthorizationModel) -> Vec<ModelError> {
    let mut files: Vec<(String, Vec<String>)> = Vec::new();
    let mut note = |file: Option<&crate::model::SourceInfo>, module: &str| {
        let Some(file) = file.map(|f| f.file.as_str()).filter(|f| !f.is_empty()) else {
            return;
        };
        if module.is_empty() {
            return;
        }
        let idx = match files.iter().position(|(f, _)| f == file) {
            Some(i) => i,
            None => {
                files.push((file.to_string(), Vec::new()));
                files.len() - 1
            }
        };
        let modules = &mut files[idx].1;
        if !modules.iter().any(|m| m == module) {
            modules.push(module.to_string());
        }
    };
    for t in &model.type_definitions {
        if let Some(meta) = &t.metadata {
            note(meta.source_info.as_ref(), &meta.module);
            for rmeta in meta.relations.iter().flat_map(|r| r.values()) {
                note(rmeta.source_info.as_ref(), &rmeta.module);
            }
        }
    }
    for cond in model.conditions.values() {
        if let Some(meta) = &cond.metadata {
            note(meta.source_info.as_ref(), &meta.module);
        }
    }
    files
        .into_iter()
        .filter(|(_, modules)| modules.len() > 1)
        .map(|(file, modules)| ModelError {
            kind: ErrorKind::MultipleModulesInFile,
            message: format!(
                "file {file} would contain multiple module definitions ({}) when transforming to DSL. Only one module can be defined per file.",
                modules.join(", ")
            ),
            symbol: file,
            location: Location::Model,
        })
        .collect()
}

/// Validates a model the way `fga model validate` does (see the module documentation).
pub fn validate_model(model: &AuthorizationModel) -> Result<(), ModelErrors> {
    let mut v = Validator {
        model,
        errors: Vec::new(),
        type_map: HashMap::new(),
    };
    v.run();
    if v.errors.is_empty() {
        Ok(())
    } else {
        Err(ModelErrors { errors: v.errors })
    }
}

struct Validator<'a> {
    model: &'a AuthorizationModel,
    errors: Vec<ModelError>,
    /// Type name → index of its last definition (later definitions shadow earlier ones).
    type_map: HashMap<&'a str, usize>,
}

/// One leaf operand of a rewrite, with its path.
struct Leaf<'a> {
    userset: &'a Userset,
    path: Vec<usize>,
}

/// Leaves of a rewrite in breadth-first order, as upstream walks them.
fn leaves(root: &Userset) -> Vec<Leaf<'_>> {
    let mut out = Vec::new();
    let mut queue = std::collections::VecDeque::new();
    queue.push_back((root, Vec::new()));
    while let Some((u, path)) = queue.pop_front() {
        match u {
            Userset::Union(s) | Userset::Intersection(s) => {
                for (i, c) in s.child.iter().enumerate() {
                    let mut p = path.clone();
                    p.push(i);
                    queue.push_back((c, p));
                }
            }
            Userset::Difference(d) => {
                let mut b = path.clone();
                b.push(0);
                queue.push_back((&d.base, b));
                let mut s = path;
                s.push(1);
                queue.push_back((&d.subtract, s));
            }
            _ => out.push(Leaf { userset: u, path }),
        }
    }
    out
}

fn restriction_reference(r: &RelationReference) -> String {
    let mut s = r.type_name.clone();
    if r.wildcard.is_some() {
        s.push_str(":*");
    } else if let Some(rel) = &r.relation {
        s.push('#');
        s.push_str(rel);
    }
    s
}

fn restriction_string(r: &RelationReference) -> String {
    let mut s = restriction_reference(r);
    if !r.condition.is_empty() {
        s.push_str(" with ");
        s.push_str(&r.condition);
    }
    s
}

/// The name of an operand for duplicate detection: `x` or `x from y`.
fn operand_name(u: &Userset) -> Option<String> {
    match u {
        Userset::ComputedUserset(c) => Some(c.relation.clone()),
        Userset::TupleToUserset(t) => Some(format!(
            "{} from {}",
            t.computed_userset.relation, t.tupleset.relation
        )),
        _ => None,
    }
}

impl<'a> Validator<'a> {
    fn push(&mut self, kind: ErrorKind, message: String, symbol: &str, location: Location) {
        self.errors.push(ModelError {
            kind,
            message,
            symbol: symbol.to_string(),
            location,
        });
    }

    fn type_def(&self, name: &str) -> Option<&'a TypeDefinition> {
        self.type_map
            .get(name)
            .and_then(|i| self.model.type_definitions.get(*i))
    }

    fn run(&mut self) {
        let model = self.model;
        for (i, t) in model.type_definitions.iter().enumerate() {
            self.type_map.insert(t.type_name.as_str(), i);
        }
        self.check_names();
        self.check_conditions_structure();
        let version = model.schema_version.as_str();
        if version.is_empty() {
            self.push(
                ErrorKind::SchemaVersionRequired,
                "schema version required".to_string(),
                "",
                Location::SchemaVersion,
            );
            return;
        }
        if version != "1.1" && version != "1.2" {
            self.push(
                ErrorKind::InvalidSchema,
                format!("invalid schema {version}"),
                version,
                Location::SchemaVersion,
            );
            return;
        }
        if !self.errors.is_empty() {
            return;
        }
        self.check_references();
        if self.errors.is_empty() {
            self.check_duplicates();
        }
        if self.errors.is_empty() {
            self.check_entrypoints();
        }
        self.check_conditions_used();
        self.check_condition_expressions();
    }

    fn check_names(&mut self) {
        let model = self.model;
        for (ti, t) in model.type_definitions.iter().enumerate() {
            let name = t.type_name.as_str();
            if name == "self" || name == "this" {
                self.push(
                    ErrorKind::ReservedTypeKeywords,
                    "a type cannot be named 'self' or 'this'.".to_string(),
                    name,
                    Location::Type { type_index: ti },
                );
            } else if !matches_name_rule(name, 254) {
                self.push(
                    ErrorKind::InvalidName,
                    format!("type '{name}' does not match naming rule: '{TYPE_NAME_RULE}'."),
                    name,
                    Location::Type { type_index: ti },
                );
            }
            for rel in t.relations.iter().flat_map(|r| r.keys()) {
                let location = Location::Relation {
                    type_index: ti,
                    relation: rel.clone(),
                };
                if rel == "self" || rel == "this" {
                    self.push(
                        ErrorKind::ReservedRelationKeywords,
                        "a relation cannot be named 'self' or 'this'.".to_string(),
                        rel,
                        location,
                    );
                } else if !matches_name_rule(rel, 50) {
                    self.push(
                        ErrorKind::InvalidName,
                        format!(
                            "relation '{rel}' of type '{name}' does not match naming rule: '{RELATION_NAME_RULE}'."
                        ),
                        rel,
                        location,
                    );
                }
            }
        }
    }

    fn check_conditions_structure(&mut self) {
        let model = self.model;
        for (key, cond) in &model.conditions {
            let location = Location::Condition { name: key.clone() };
            if cond.name != *key {
                self.push(
                    ErrorKind::DifferentNestedConditionName,
                    format!(
                        "condition key is `{key}` but nested name property is {}",
                        cond.name
                    ),
                    &cond.name,
                    location.clone(),
                );
            }
            for (pname, ptype) in &cond.parameters {
                if let Err(why) = check_param_type(ptype, true) {
                    self.push(
                        ErrorKind::InvalidConditionParameter,
                        format!("parameter `{pname}` of condition `{key}` {why}"),
                        pname,
                        location.clone(),
                    );
                }
            }
        }
    }

    /// Phase 3: every reference resolves.
    fn check_references(&mut self) {
        let model = self.model;
        for (ti, t) in model.type_definitions.iter().enumerate() {
            let Some(relations) = &t.relations else {
                continue;
            };
            for (rel, rewrite) in relations {
                for leaf in leaves(rewrite) {
                    self.check_leaf(ti, t, rel, &leaf);
                }
            }
        }
    }

    fn check_leaf(&mut self, ti: usize, t: &'a TypeDefinition, rel: &str, leaf: &Leaf<'a>) {
        let relations = t.relations.as_ref();
        let has_relation = |name: &str| relations.is_some_and(|r| r.contains_key(name));
        match leaf.userset {
            Userset::This(_) => {
                let restrictions = t.directly_related_user_types(rel);
                if restrictions.is_empty() {
                    self.push(
                        ErrorKind::AssignableRelationMustHaveTypes,
                        format!("assignable relation '{rel}' must have types"),
                        rel,
                        Location::Relation {
                            type_index: ti,
                            relation: rel.to_string(),
                        },
                    );
                }
                for (index, r) in restrictions.iter().enumerate() {
                    let location = |part| Location::Restriction {
                        type_index: ti,
                        relation: rel.to_string(),
                        index,
                        part,
                    };
                    let target = self.type_def(&r.type_name);
                    if target.is_none() {
                        self.push(
                            ErrorKind::InvalidType,
                            format!("`{}` is not a valid type.", r.type_name),
                            &r.type_name,
                            location(RestrictionPart::Type),
                        );
                    }
                    if !r.condition.is_empty() && !self.model.conditions.contains_key(&r.condition)
                    {
                        self.push(
                            ErrorKind::ConditionNotDefined,
                            format!("`{}` is not a defined condition in the model.", r.condition),
                            &r.condition,
                            location(RestrictionPart::Condition),
                        );
                    }
                    if let Some(target_rel) = &r.relation
                        && target.is_none_or(|t| t.relation(target_rel).is_none())
                    {
                        self.push(
                            ErrorKind::InvalidRelationType,
                            format!(
                                "`{target_rel}` is not a valid relation for `{}`.",
                                r.type_name
                            ),
                            &restriction_reference(r),
                            location(RestrictionPart::Reference),
                        );
                    }
                }
            }
            Userset::ComputedUserset(c) if !has_relation(&c.relation) => {
                self.push(
                    ErrorKind::MissingDefinition,
                    format!("the relation `{}` does not exist.", c.relation),
                    &c.relation,
                    Location::Operand {
                        type_index: ti,
                        relation: rel.to_string(),
                        path: leaf.path.clone(),
                        part: OperandPart::Whole,
                    },
                );
            }
            Userset::TupleToUserset(ttu) => {
                let from = ttu.tupleset.relation.as_str();
                let target = ttu.computed_userset.relation.as_str();
                let whole = format!("{target} from {from}");
                let location = |part| Location::Operand {
                    type_index: ti,
                    relation: rel.to_string(),
                    path: leaf.path.clone(),
                    part,
                };
                let Some(tupleset) = relations.and_then(|r| r.get(from)) else {
                    self.push(
                        ErrorKind::InvalidRelationType,
                        format!("`{from}` is not a valid relation for `{}`.", t.type_name),
                        &whole,
                        location(OperandPart::Whole),
                    );
                    return;
                };
                if !matches!(tupleset, Userset::This(_)) {
                    self.push(
                        ErrorKind::TuplesetNotDirect,
                        format!("`{from}` relation used inside from allows only direct relation."),
                        from,
                        location(OperandPart::Tupleset),
                    );
                    return;
                }
                let from_types = t.directly_related_user_types(from);
                let mut missing = Vec::new();
                for r in from_types {
                    if r.wildcard.is_some() || r.relation.is_some() {
                        self.push(
                            ErrorKind::TuplesetNotDirect,
                            format!(
                                "`{from}` relation used inside from allows only direct relation."
                            ),
                            from,
                            location(OperandPart::Tupleset),
                        );
                    } else if self
                        .type_def(&r.type_name)
                        .is_none_or(|d| d.relation(target).is_none())
                    {
                        missing.push(r.type_name.clone());
                    }
                }
                if !from_types.is_empty() && missing.len() == from_types.len() {
                    for ty in missing {
                        self.push(
                            ErrorKind::InvalidRelationOnTupleset,
                            format!(
                                "the `{target}` relation definition on type `{}` is not valid: `{target}` does not exist on `{from}`, which is of type `{ty}`.",
                                t.type_name
                            ),
                            &whole,
                            location(OperandPart::Whole),
                        );
                    }
                }
            }
            _ => {}
        }
    }

    /// Phase 4: duplicate types, type restrictions and operands.
    fn check_duplicates(&mut self) {
        let model = self.model;
        let mut seen_types: HashMap<&str, usize> = HashMap::new();
        for (ti, t) in model.type_definitions.iter().enumerate() {
            if let Some(first) = seen_types.get(t.type_name.as_str()) {
                self.push(
                    ErrorKind::Duplicated,
                    format!("the type `{}` is a duplicate.", t.type_name),
                    &t.type_name,
                    Location::Type { type_index: *first },
                );
            } else {
                seen_types.insert(&t.type_name, ti);
            }
            let Some(meta) = t.metadata.as_ref().and_then(|m| m.relations.as_ref()) else {
                continue;
            };
            for (rel, rmeta) in meta {
                let mut seen: HashMap<String, usize> = HashMap::new();
                for (index, r) in rmeta.directly_related_user_types.iter().enumerate() {
                    let s = restriction_string(r);
                    if let Some(first) = seen.get(&s) {
                        self.push(
                            ErrorKind::Duplicated,
                            format!(
                                "the type restriction `{s}` is a duplicate in the relation `{rel}`."
                            ),
                            &s,
                            Location::Restriction {
                                type_index: ti,
                                relation: rel.clone(),
                                index: *first,
                                part: RestrictionPart::Whole,
                            },
                        );
                    } else {
                        seen.insert(s, index);
                    }
                }
                if let Some(rewrite) = t.relation(rel) {
                    self.check_duplicate_operands(ti, rel, rewrite);
                }
            }
        }
    }

    /// After the other phases, whatever they found: conditions no type restriction names.
    fn check_conditions_used(&mut self) {
        let model = self.model;
        let used: HashSet<&str> = model
            .type_definitions
            .iter()
            .filter_map(|t| t.metadata.as_ref()?.relations.as_ref())
            .flat_map(|relations| relations.values())
            .flat_map(|m| &m.directly_related_user_types)
            .filter(|r| !r.condition.is_empty())
            .map(|r| r.condition.as_str())
            .collect();
        for name in model.conditions.keys() {
            if !used.contains(name.as_str()) {
                self.push(
                    ErrorKind::ConditionNotUsed,
                    format!("`{name}` condition is not used in the model."),
                    name,
                    Location::Condition { name: name.clone() },
                );
            }
        }
    }

    /// Compiles every condition (the structural checks passed already, so names match keys and
    /// parameter types decode). All conditions compile on one parser thread; only when that
    /// fails are they compiled one by one, to report each invalid one.
    fn check_condition_expressions(&mut self) {
        let model = self.model;
        if model.conditions.is_empty() || crate::condition::validate_model_conditions(model).is_ok()
        {
            return;
        }
        for (key, condition) in &model.conditions {
            if let Err(e) = crate::condition::validate_condition(condition) {
                self.push(
                    ErrorKind::InvalidConditionExpression,
                    e.to_string(),
                    key,
                    Location::Condition { name: key.clone() },
                );
            }
        }
    }

    fn check_duplicate_operands(&mut self, ti: usize, rel: &str, rewrite: &Userset) {
        let children: Vec<&Userset> = match rewrite {
            Userset::Union(s) | Userset::Intersection(s) => s.child.iter().collect(),
            Userset::Difference(d) => vec![&d.base, &d.subtract],
            _ => return,
        };
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, c) in children.iter().enumerate() {
            let Some(name) = operand_name(c) else {
                continue;
            };
            if let Some(first) = seen.get(&name) {
                self.push(
                    ErrorKind::Duplicated,
                    format!(
                        "the partial relation definition `{name}` is a duplicate in the relation `{rel}`."
                    ),
                    &name,
                    Location::Operand {
                        type_index: ti,
                        relation: rel.to_string(),
                        path: vec![*first],
                        part: OperandPart::Whole,
                    },
                );
            } else {
                seen.insert(name, i);
            }
        }
    }

    /// Phase 5: every relation has an entrypoint.
    ///
    /// Which relations have one is a least fixpoint over (type, relation) pairs, computed with a
    /// worklist: a relation is re-evaluated only when one it depends on gained an entrypoint,
    /// so the work is polynomial in the model's size whatever its shape (a search along paths,
    /// as OpenFGA's reference does, is exponential on a "diamond" of unions and copies its
    /// visited set at every step). For a relation without one, whether its search would run
    /// into a loop (the message says "potential loop" rather than "no entrypoint") is whether
    /// it reaches a cycle of computed relations, found by one iterative depth-first pass.
    fn check_entrypoints(&mut self) {
        let model = self.model;
        let mut nodes: Vec<(&'a str, &'a str, &'a Userset)> = Vec::new();
        let mut index: HashMap<(&'a str, &'a str), usize> = HashMap::new();
        for t in &model.type_definitions {
            // Later definitions shadow earlier ones, as `type_def` resolves them.
            if self.type_def(&t.type_name).map(|d| std::ptr::eq(d, t)) != Some(true) {
                continue;
            }
            for (rel, rewrite) in t.relations.iter().flatten() {
                index.insert((t.type_name.as_str(), rel.as_str()), nodes.len());
                nodes.push((t.type_name.as_str(), rel.as_str(), rewrite));
            }
        }
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
        for (i, (type_name, relation, rewrite)) in nodes.iter().enumerate() {
            let mut targets = Vec::new();
            self.entry_dependencies(type_name, relation, rewrite, &mut targets);
            for target in targets {
                if let Some(&j) = index.get(&target) {
                    dependents[j].push(i);
                }
            }
        }
        let mut entry = vec![false; nodes.len()];
        let mut queue: std::collections::VecDeque<usize> = (0..nodes.len()).collect();
        let mut queued = vec![true; nodes.len()];
        while let Some(i) = queue.pop_front() {
            queued[i] = false;
            if entry[i] {
                continue;
            }
            let (type_name, relation, rewrite) = nodes[i];
            if self.entry_of(type_name, relation, rewrite, &index, &entry) {
                entry[i] = true;
                for &d in &dependents[i] {
                    if !entry[d] && !queued[d] {
                        queued[d] = true;
                        queue.push_back(d);
                    }
                }
            }
        }
        let looped = self.reaches_a_loop(&nodes, &index, &entry);
        for (ti, t) in model.type_definitions.iter().enumerate() {
            for (rel, _) in t.relations.iter().flatten() {
                let Some(&i) = index.get(&(t.type_name.as_str(), rel.as_str())) else {
                    continue;
                };
                if entry[i] {
                    continue;
                }
                let why = if looped[i] {
                    "potential loop"
                } else {
                    "no entrypoint"
                };
                self.push(
                    ErrorKind::RelationNoEntryPoint,
                    format!(
                        "`{rel}` is an impossible relation for `{}` ({why}).",
                        t.type_name
                    ),
                    rel,
                    Location::Relation {
                        type_index: ti,
                        relation: rel.clone(),
                    },
                );
            }
        }
    }

    /// The (type, relation) pairs whose entrypoints `rewrite` of `type_name#relation` depends on.
    fn entry_dependencies(
        &self,
        type_name: &'a str,
        relation: &'a str,
        rewrite: &'a Userset,
        out: &mut Vec<(&'a str, &'a str)>,
    ) {
        let Some(t) = self.type_def(type_name) else {
            return;
        };
        match rewrite {
            Userset::This(_) => {
                for r in t.directly_related_user_types(relation) {
                    if let Some(target_rel) = r.relation.as_deref().filter(|_| r.wildcard.is_none())
                    {
                        out.push((r.type_name.as_str(), target_rel));
                    }
                }
            }
            Userset::ComputedUserset(c) => out.push((type_name, c.relation.as_str())),
            Userset::TupleToUserset(ttu) => {
                let target_rel = ttu.computed_userset.relation.as_str();
                for r in t.directly_related_user_types(&ttu.tupleset.relation) {
                    out.push((r.type_name.as_str(), target_rel));
                }
            }
            Userset::Union(s) | Userset::Intersection(s) => {
                for c in &s.child {
                    self.entry_dependencies(type_name, relation, c, out);
                }
            }
            Userset::Difference(d) => {
                self.entry_dependencies(type_name, relation, &d.base, out);
                self.entry_dependencies(type_name, relation, &d.subtract, out);
            }
        }
    }

    /// Whether `rewrite` of `type_name#relation` has an entrypoint, given which relations have
    /// one so far (`entry`, indexed by `index`).
    fn entry_of(
        &self,
        type_name: &str,
        relation: &str,
        rewrite: &Userset,
        index: &HashMap<(&'a str, &'a str), usize>,
        entry: &[bool],
    ) -> bool {
        let Some(t) = self.type_def(type_name) else {
            return false;
        };
        if t.relation(relation).is_none() {
            return false;
        }
        let has = |type_name: &str, relation: &str| {
            index.get(&(type_name, relation)).is_some_and(|&i| entry[i])
        };
        match rewrite {
            Userset::This(_) => {
                for r in t.directly_related_user_types(relation) {
                    let Some(target_rel) = r.relation.as_deref().filter(|_| r.wildcard.is_none())
                    else {
                        return true;
                    };
                    if self
                        .type_def(&r.type_name)
                        .and_then(|d| d.relation(target_rel))
                        .is_none()
                    {
                        return false;
                    }
                    if has(&r.type_name, target_rel) {
                        return true;
                    }
                }
                false
            }
            Userset::ComputedUserset(c) => {
                t.relation(&c.relation).is_some() && has(type_name, &c.relation)
            }
            Userset::TupleToUserset(ttu) => {
                let target_rel = ttu.computed_userset.relation.as_str();
                t.relation(&ttu.tupleset.relation).is_some()
                    && t.directly_related_user_types(&ttu.tupleset.relation)
                        .iter()
                        .any(|r| has(&r.type_name, target_rel))
            }
            Userset::Union(s) => s
                .child
                .iter()
                .any(|c| self.entry_of(type_name, relation, c, index, entry)),
            Userset::Intersection(s) => s
                .child
                .iter()
                .all(|c| self.entry_of(type_name, relation, c, index, entry)),
            Userset::Difference(d) => {
                self.entry_of(type_name, relation, &d.base, index, entry)
                    && self.entry_of(type_name, relation, &d.subtract, index, entry)
            }
        }
    }

    /// For each relation without an entrypoint: whether following its computed relations (every
    /// branch of a union; the first branch without an entrypoint of an intersection or
    /// difference) reaches a cycle. Iterative, so a long chain cannot exhaust the stack.
    fn reaches_a_loop(
        &self,
        nodes: &[(&'a str, &'a str, &'a Userset)],
        index: &HashMap<(&'a str, &'a str), usize>,
        entry: &[bool],
    ) -> Vec<bool> {
        let edges: Vec<Vec<usize>> = nodes
            .iter()
            .enumerate()
            .map(|(i, (type_name, relation, rewrite))| {
                let mut out = Vec::new();
                if !entry[i] {
                    self.loop_edges(type_name, relation, rewrite, index, entry, &mut out);
                }
                out
            })
            .collect();
        // 0 unvisited, 1 on the stack, 2 done.
        let mut state = vec![0u8; nodes.len()];
        let mut looped = vec![false; nodes.len()];
        for root in 0..nodes.len() {
            if state[root] != 0 || entry[root] {
                continue;
            }
            let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
            state[root] = 1;
            while let Some(&mut (node, ref mut next)) = stack.last_mut() {
                if let Some(&child) = edges[node].get(*next) {
                    *next += 1;
                    match state[child] {
                        0 => {
                            state[child] = 1;
                            stack.push((child, 0));
                        }
                        1 => looped[node] = true,
                        _ => looped[node] |= looped[child],
                    }
                } else {
                    state[node] = 2;
                    stack.pop();
                    if let Some(&(parent, _)) = stack.last() {
                        looped[parent] |= looped[node];
                    }
                }
            }
        }
        looped
    }

    fn loop_edges(
        &self,
        type_name: &'a str,
        relation: &'a str,
        rewrite: &'a Userset,
        index: &HashMap<(&'a str, &'a str), usize>,
        entry: &[bool],
        out: &mut Vec<usize>,
    ) {
        let Some(t) = self.type_def(type_name) else {
            return;
        };
        match rewrite {
            Userset::This(_) | Userset::TupleToUserset(_) => {}
            Userset::ComputedUserset(c) => {
                if t.relation(&c.relation).is_some()
                    && let Some(&j) = index.get(&(type_name, c.relation.as_str()))
                {
                    out.push(j);
                }
            }
            Userset::Union(s) => {
                for c in &s.child {
                    self.loop_edges(type_name, relation, c, index, entry, out);
                }
            }
            Userset::Intersection(s) => {
                if let Some(c) = s
                    .child
                    .iter()
                    .find(|c| !self.entry_of(type_name, relation, c, index, entry))
                {
                    self.loop_edges(type_name, relation, c, index, entry, out);
                }
            }
            Userset::Difference(d) => {
                let failing = if self.entry_of(type_name, relation, &d.base, index, entry) {
                    &d.subtract
                } else {
                    &d.base
                };
                self.loop_edges(type_name, relation, failing, index, entry, out);
            }
        }
    }
}

/// Checks a parameter type: scalar types stand alone, `map` and `list` take exactly one scalar
/// element type.
fn check_param_type(t: &ConditionParamTypeRef, top: bool) -> Result<(), &'static str> {
    match t.type_name {
        TypeName::Unspecified => Err("has no type"),
        TypeName::Map | TypeName::List => {
            if !top {
                return Err("nests a container type");
            }
            match t.generic_types.as_slice() {
                [g] => check_param_type(g, false),
                _ => Err("needs exactly one generic type"),
            }
        }
        _ if t.generic_types.is_empty() => Ok(()),
        _ => Err("takes no generic type"),
    }
}
