//! Syntax tree of a DSL file, with the source position of every name.
//!
//! The tree keeps exactly what the model needs plus positions; it is produced by
//! the parser only for syntactically valid input and turned into an
//! [`crate::model::AuthorizationModel`] by the model builder. Positions are 0-based lines and
//! 0-based character columns of the cleaned input.

/// A name and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned {
    /// The text.
    pub text: String,
    /// 0-based line.
    pub line: usize,
    /// 0-based start column.
    pub col: usize,
}

impl Spanned {
    /// The column one past the last character.
    pub fn end_col(&self) -> usize {
        self.col + self.text.chars().count()
    }
}

/// The first declaration of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Header {
    /// `model` / `schema 1.1`.
    Model {
        /// The schema version token.
        schema: Spanned,
    },
    /// `module name`.
    Module {
        /// The module name.
        name: Spanned,
    },
}

/// A whole file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// The header.
    pub header: Header,
    /// Type declarations in source order.
    pub types: Vec<TypeDecl>,
    /// Condition declarations in source order.
    pub conditions: Vec<ConditionDecl>,
}

/// `type name` or `extend type name`, with its relations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeDecl {
    /// Whether this is `extend type`.
    pub extend: bool,
    /// The type name.
    pub name: Spanned,
    /// The relations, `None` when there is no `relations` block.
    pub relations: Option<Vec<RelationDecl>>,
}

/// `define name: rewrite`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationDecl {
    /// The relation name.
    pub name: Spanned,
    /// The rewrite.
    pub rewrite: Rewrite,
}

/// A relation rewrite expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    /// `[user, group#member, ...]`.
    Direct(Vec<TypeRestriction>),
    /// `relation`.
    Computed(Spanned),
    /// `relation from tupleset`.
    TupleToUserset {
        /// The relation evaluated on the related objects.
        computed: Spanned,
        /// The relation holding the related objects.
        tupleset: Spanned,
    },
    /// `a or b or ...`.
    Union(Vec<Rewrite>),
    /// `a and b and ...`.
    Intersection(Vec<Rewrite>),
    /// `a but not b`.
    Difference(Box<Rewrite>, Box<Rewrite>),
}

/// One entry of a type restriction list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeRestriction {
    /// The user type.
    pub type_name: Spanned,
    /// `type#relation`.
    pub relation: Option<Spanned>,
    /// `type:*`.
    pub wildcard: bool,
    /// `... with condition`.
    pub condition: Option<Spanned>,
}

/// `condition name(params) { expression }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionDecl {
    /// The condition name.
    pub name: Spanned,
    /// Parameters in source order.
    pub params: Vec<ConditionParam>,
    /// The CEL expression, trimmed.
    pub expression: String,
}

/// One condition parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionParam {
    /// The parameter name.
    pub name: Spanned,
    /// The base type (`int`, `map`, ...).
    pub type_name: Spanned,
    /// The element type of `map<T>` / `list<T>`.
    pub generic: Option<Spanned>,
}
