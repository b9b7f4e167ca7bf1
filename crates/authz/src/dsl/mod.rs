//! The OpenFGA DSL (schema 1.1): parsing to an [`AuthorizationModel`] and writing one back.
//!
//! - [`parse`] is what `fga model transform` / `fga model validate` do: syntax, then the checks
//!   upstream's parser listener makes, then semantic validation ([`crate::validate`]), with every
//!   error carrying 0-based line and column ranges and upstream's message.
//! - [`parse_syntax_only`] stops after the syntax and listener checks.
//! - [`write`] prints a model in the `fga model transform` layout.
//!
//! Invariants: no function here panics on any input; positions refer to the input with every
//! line right-trimmed (upstream trims lines before parsing, so positions of all non-blank
//! characters are the positions in the original text); columns count Unicode scalar values.

pub mod ast;
mod build;
mod lexer;
mod locate;
mod parser;
mod writer;

use std::fmt;

pub use build::SourceMap;
pub use writer::{UnsupportedRelation, write};

use crate::model::AuthorizationModel;

/// A 0-based `start..=end` line range or `start..end` column range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// First line / column.
    pub start: usize,
    /// Last line (inclusive) / column one past the end.
    pub end: usize,
}

/// One error found in a DSL file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DslError {
    /// Upstream's message.
    pub message: String,
    /// Lines of the offending text, when known.
    pub line: Option<Span>,
    /// Columns of the offending text, when known.
    pub column: Option<Span>,
    /// The offending text.
    pub symbol: Option<String>,
    /// Upstream's `errorType` for semantic errors (`missing-definition`, ...); `None` for syntax.
    pub error_type: Option<String>,
    /// The file, for modular models.
    pub file: Option<String>,
    /// The module, for modular models.
    pub module: Option<String>,
}

impl fmt::Display for DslError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}:")?;
        }
        if let (Some(l), Some(c)) = (self.line, self.column) {
            write!(f, "{}:{}: ", l.start + 1, c.start + 1)?;
        }
        f.write_str(&self.message)
    }
}

/// All errors found in a DSL file (never empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct DslErrors {
    /// The errors, in upstream's order.
    pub errors: Vec<DslError>,
}

impl fmt::Display for DslErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        write!(f, "{n} error{} occurred", if n == 1 { "" } else { "s" })?;
        for e in &self.errors {
            write!(f, "\n\t* {e}")?;
        }
        Ok(())
    }
}

impl DslErrors {
    fn one(e: DslError) -> Self {
        Self { errors: vec![e] }
    }
}

/// A parsed file: the model, where things were written, and the syntax tree.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The model (for a module: its types and conditions, schema version empty).
    pub model: AuthorizationModel,
    /// Source positions.
    pub source: SourceMap,
    /// The syntax tree.
    pub document: ast::Document,
}

/// Syntax and listener checks; returns the model with its source map.
pub(crate) fn parse_document(input: &str) -> Result<Parsed, DslErrors> {
    let src = lexer::clean(input);
    let tokens = lexer::tokenize(&src);
    let document = match parser::parse_tokens(&tokens, &src) {
        Ok(doc) => doc,
        Err(e) => {
            return Err(DslErrors::one(DslError {
                message: e.message,
                line: Some(Span {
                    start: e.line,
                    end: e.line,
                }),
                column: Some(Span {
                    start: e.col,
                    end: e.end_col,
                }),
                symbol: Some(e.symbol),
                error_type: None,
                file: None,
                module: None,
            }));
        }
    };
    let (model, source, errors) = build::build(&document, &src);
    if !errors.is_empty() {
        return Err(DslErrors { errors });
    }
    Ok(Parsed {
        model,
        source,
        document,
    })
}

/// Parses DSL text into a model without semantic validation (syntax errors and the checks
/// upstream's parser makes: duplicate relations, conditions and parameters).
pub fn parse_syntax_only(input: &str) -> Result<AuthorizationModel, DslErrors> {
    parse_document(input).map(|p| p.model)
}

/// Parses and validates DSL text, reporting errors the way `fga model validate` does.
pub fn parse(input: &str) -> Result<AuthorizationModel, DslErrors> {
    let parsed = parse_document(input)?;
    validate_parsed(&parsed)?;
    Ok(parsed.model)
}

/// Runs semantic validation on a parsed file and positions the errors in its source.
pub(crate) fn validate_parsed(parsed: &Parsed) -> Result<(), DslErrors> {
    match crate::validate::validate_model(&parsed.model) {
        Ok(()) => Ok(()),
        Err(errs) => Err(DslErrors {
            errors: errs
                .errors
                .iter()
                .map(|e| locate::locate(e, &parsed.document))
                .collect(),
        }),
    }
}
