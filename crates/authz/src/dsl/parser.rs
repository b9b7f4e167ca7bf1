//! Recursive-descent parser from tokens to the [`super::ast`] tree.
//!
//! The structure follows OpenFGA's grammar rule by rule (`main`, `modelHeader`, `typeDef`,
//! `relationDeclaration`, `relationDef`, `relationDefPartials`, `relationRecurse`, ...), so it
//! accepts exactly the language upstream accepts: a type restriction list only as the first
//! operand of a rewrite (or the first operand inside the first parentheses), one kind of operator
//! per level unless parentheses are used, at most one `but not` per level, whitespace around
//! operators, types before conditions.
//!
//! It stops at the first syntax error and reports it at the token upstream's parser reports
//! first (see the contract in [`super`]). Messages come in two forms:
//!
//! - [`Parser::mismatch`]: `mismatched input 'X' expecting E`, upstream's own text for a plain
//!   token mismatch, where `E` names tokens in upstream's vocabulary (`'schema'`,
//!   `SCHEMA_VERSION`, `WHITESPACE`, ...). Used where the grammar wants one token or a small
//!   token class and upstream reports the same failure without error recovery.
//! - [`Parser::unexpected`]: `unexpected 'X': expected ...` in plain words, used for structural
//!   mistakes (no header, a line that cannot start there, a misplaced `[...]`, operators mixed
//!   inside parentheses, a missing name) where upstream's generated parser can only describe
//!   what its error recovery did.
//!
//! Recursion depth is bounded by [`MAX_DEPTH`] so hostile input cannot overflow the stack.

use super::ast::{
    ConditionDecl, ConditionParam, Document, Header, RelationDecl, Rewrite, Spanned, TypeDecl,
    TypeRestriction,
};
use super::lexer::{Kind, RESERVED_WORDS, Token};

/// Deepest parenthesis nesting accepted.
pub(crate) const MAX_DEPTH: usize = 64;

/// The first syntax error found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub message: String,
    pub line: usize,
    pub col: usize,
    pub end_col: usize,
    pub symbol: String,
}

type PResult<T> = Result<T, SyntaxError>;

struct Parser<'a> {
    toks: &'a [Token],
    i: usize,
    depth: usize,
}

/// Parses a token stream produced by [`super::lexer::tokenize`] from `src`.
pub(crate) fn parse_tokens(toks: &[Token]) -> PResult<Document> {
    let mut p = Parser {
        toks,
        i: 0,
        depth: 0,
    };
    p.main()
}

fn is_identifier(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Model
            | Kind::Schema
            | Kind::Type
            | Kind::Relation
            | Kind::Identifier
            | Kind::Module
            | Kind::Extend
            | Kind::ExtendedIdentifier
    )
}

/// What may follow at the start of a line of the body, given what came before.
#[derive(Clone, Copy, PartialEq, Eq)]
enum After {
    /// The header.
    Header,
    /// A type without a `relations` block.
    TypeWithoutRelations,
    /// A relation definition.
    Relation,
    /// A condition.
    Condition,
}

impl After {
    /// The line starts accepted here, in words.
    fn expected(self, module: bool) -> &'static str {
        match (self, module) {
            (After::Header, false) => "'type', 'condition' or end of file",
            (After::Header, true) => "'type', 'extend', 'condition' or end of file",
            (After::TypeWithoutRelations, false) => {
                "'relations', 'type', 'condition' or end of file"
            }
            (After::TypeWithoutRelations, true) => {
                "'relations', 'type', 'extend', 'condition' or end of file"
            }
            (After::Relation, false) => "'define', 'type', 'condition' or end of file",
            (After::Relation, true) => "'define', 'type', 'extend', 'condition' or end of file",
            (After::Condition, _) => "'condition' or end of file",
        }
    }
}

/// How a token is named in [`Parser::unexpected`] messages.
fn describe(t: &Token) -> String {
    match t.kind {
        Kind::Eof => "end of file".to_string(),
        Kind::Newline => "end of line".to_string(),
        Kind::Whitespace => "space".to_string(),
        _ => format!("'{}'", display(&t.text)),
    }
}

fn is_operator(kind: Kind) -> bool {
    matches!(kind, Kind::Or | Kind::And | Kind::ButNot)
}

impl Parser<'_> {
    fn tok(&self, k: usize) -> &Token {
        let idx = (self.i + k).min(self.toks.len().saturating_sub(1));
        &self.toks[idx]
    }

    fn kind(&self, k: usize) -> Kind {
        if self.toks.is_empty() {
            Kind::Eof
        } else {
            self.tok(k).kind
        }
    }

    fn bump(&mut self) -> Token {
        let t = self.tok(0).clone();
        if self.i < self.toks.len() {
            self.i += 1;
        }
        t
    }

    /// An error at the current token. Errors are reported in source order: when the parser
    /// reaches a character the lexer could not use, that character is the error, whatever the
    /// parser expected.
    fn error_at_current(&self, message: String) -> SyntaxError {
        let t = self.tok(0);
        if t.kind == Kind::Unknown {
            return lexical_error(t);
        }
        SyntaxError {
            message,
            line: t.line,
            col: t.col,
            end_col: t.col + t.char_len(),
            symbol: t.text.clone(),
        }
    }

    /// Upstream's text for a plain mismatch: `expecting` names the accepted tokens in upstream's
    /// vocabulary (`'schema'`, `SCHEMA_VERSION`, `{',', ']'}`).
    fn mismatch(&self, expecting: &str) -> SyntaxError {
        let text = display(&self.tok(0).text);
        self.error_at_current(format!("mismatched input '{text}' expecting {expecting}"))
    }

    /// Our text for a structural mistake: `expected` says in words what would be accepted.
    fn unexpected(&self, expected: &str) -> SyntaxError {
        let found = describe(self.tok(0));
        self.error_at_current(format!("unexpected {found}: expected {expected}"))
    }

    fn expect(&mut self, kind: Kind, expecting: &str) -> PResult<Token> {
        if self.kind(0) == kind {
            Ok(self.bump())
        } else {
            Err(self.mismatch(expecting))
        }
    }

    fn opt(&mut self, kind: Kind) -> bool {
        if self.kind(0) == kind {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn spanned(t: &Token) -> Spanned {
        Spanned {
            text: t.text.clone(),
            line: t.line,
            col: t.col,
        }
    }

    /// An `identifier`; `what` names it for the error message (`a type name`).
    fn identifier(&mut self, what: &str) -> PResult<Spanned> {
        if is_identifier(self.kind(0)) {
            let t = self.bump();
            Ok(Self::spanned(&t))
        } else if RESERVED_WORDS.contains(&self.tok(0).text.as_str()) {
            Err(self.unexpected(&format!(
                "{what} ('{}' is reserved by the condition language)",
                self.tok(0).text
            )))
        } else {
            Err(self.unexpected(what))
        }
    }

    fn main(&mut self) -> PResult<Document> {
        self.opt(Kind::Whitespace);
        self.opt(Kind::Newline);
        let header = match self.kind(0) {
            Kind::Model => {
                self.bump();
                self.expect(Kind::Newline, "NEWLINE")?;
                self.expect(Kind::Schema, "'schema'")?;
                self.expect(Kind::Whitespace, "WHITESPACE")?;
                let v = self.expect(Kind::SchemaVersion, "SCHEMA_VERSION")?;
                self.opt(Kind::Whitespace);
                Header::Model {
                    schema: Self::spanned(&v),
                }
            }
            Kind::Module => {
                self.bump();
                self.expect(Kind::Whitespace, "WHITESPACE")?;
                // A module name is a plain `identifier`: no `.` or `/`.
                if !is_identifier(self.kind(0)) || self.kind(0) == Kind::ExtendedIdentifier {
                    return Err(self.unexpected("a module name (letters, digits, '_' and '-')"));
                }
                let name = Self::spanned(&self.bump());
                self.opt(Kind::Whitespace);
                Header::Module { name }
            }
            _ => return Err(self.unexpected("'model' or 'module'")),
        };
        let module = matches!(header, Header::Module { .. });
        // `header NEWLINE? typeDefs NEWLINE? conditions NEWLINE? EOF`: each optional NEWLINE is
        // taken only when another one follows, so blank-looking lines (a line holding only a
        // `//` comment) are accepted exactly where upstream accepts them.
        self.blank_line();
        let mut types = Vec::new();
        while self.kind(0) == Kind::Newline && matches!(self.kind(1), Kind::Type | Kind::Extend) {
            types.push(self.type_def()?);
        }
        self.blank_line();
        let mut conditions = Vec::new();
        while self.kind(0) == Kind::Newline && self.kind(1) == Kind::Condition {
            conditions.push(self.condition()?);
        }
        let newline = self.opt(Kind::Newline);
        if self.kind(0) == Kind::Eof {
            return Ok(Document {
                header,
                types,
                conditions,
            });
        }
        if !newline {
            return Err(self.mismatch("{<EOF>, NEWLINE}"));
        }
        let after = match (conditions.is_empty(), types.last()) {
            (false, _) => After::Condition,
            (true, Some(t)) if t.relations.is_some() => After::Relation,
            (true, Some(_)) => After::TypeWithoutRelations,
            (true, None) => After::Header,
        };
        let blank = self.i >= 2 && self.toks.get(self.i - 2).map(|t| t.kind) == Some(Kind::Newline);
        let expected = after.expected(module);
        Err(match self.kind(0) {
            _ if blank => self.unexpected(
                "end of file after a line holding only a '//' comment (use '#' for comment lines)",
            ),
            Kind::Type | Kind::Extend if !conditions.is_empty() => self.unexpected(&format!(
                "{expected} (types are declared before conditions)"
            )),
            Kind::Model | Kind::Module => self.unexpected(&format!(
                "{expected} (a file has a single 'model' or 'module' header)"
            )),
            _ => self.unexpected(expected),
        })
    }

    /// An optional NEWLINE of `main`, taken when another NEWLINE follows.
    fn blank_line(&mut self) {
        if self.kind(0) == Kind::Newline && self.kind(1) == Kind::Newline {
            self.bump();
        }
    }

    fn type_def(&mut self) -> PResult<TypeDecl> {
        self.expect(Kind::Newline, "NEWLINE")?;
        let extend = if self.opt(Kind::Extend) {
            self.expect(Kind::Whitespace, "WHITESPACE")?;
            true
        } else {
            false
        };
        self.expect(Kind::Type, "'type'")?;
        self.expect(Kind::Whitespace, "WHITESPACE")?;
        let name = self.identifier("a type name")?;
        let mut relations = None;
        if self.kind(0) == Kind::Newline && self.kind(1) == Kind::Relations {
            self.bump();
            self.bump();
            let mut rels = Vec::new();
            if !(self.kind(0) == Kind::Newline && self.kind(1) == Kind::Define) {
                if self.kind(0) == Kind::Newline {
                    self.bump();
                }
                return Err(self.unexpected("'define'"));
            }
            while self.kind(0) == Kind::Newline && self.kind(1) == Kind::Define {
                rels.push(self.relation_declaration()?);
            }
            relations = Some(rels);
        }
        Ok(TypeDecl {
            extend,
            name,
            relations,
        })
    }

    fn relation_declaration(&mut self) -> PResult<RelationDecl> {
        self.expect(Kind::Newline, "NEWLINE")?;
        self.expect(Kind::Define, "'define'")?;
        self.expect(Kind::Whitespace, "WHITESPACE")?;
        let name = self.identifier("a relation name")?;
        self.opt(Kind::Whitespace);
        if !self.opt(Kind::Colon) {
            return Err(self.unexpected("':' after the relation name"));
        }
        self.opt(Kind::Whitespace);
        let rewrite = self.relation_def(true)?;
        match self.kind(0) {
            Kind::Newline | Kind::Eof => Ok(RelationDecl { name, rewrite }),
            _ => Err(self.mismatch("{<EOF>, NEWLINE}")),
        }
    }

    /// `relationDef` (`allow_direct`) or `relationDefNoDirect`.
    fn relation_def(&mut self, allow_direct: bool) -> PResult<Rewrite> {
        let first = self.operand(allow_direct)?;
        let op = match (self.kind(0), self.kind(1)) {
            (Kind::Whitespace, k) if is_operator(k) => k,
            _ => return Ok(first),
        };
        let mut children = vec![first];
        while self.kind(0) == Kind::Whitespace && self.kind(1) == op {
            self.bump();
            self.bump();
            self.expect(Kind::Whitespace, "WHITESPACE")?;
            children.push(self.operand(false)?);
            if op == Kind::ButNot {
                break;
            }
        }
        Ok(match op {
            Kind::Or => Rewrite::Union(children),
            Kind::And => Rewrite::Intersection(children),
            _ => {
                let mut it = children.into_iter();
                match (it.next(), it.next()) {
                    (Some(base), Some(subtract)) => {
                        Rewrite::Difference(Box::new(base), Box::new(subtract))
                    }
                    (Some(only), None) => only,
                    _ => return Err(self.unexpected("a relation name or '('")),
                }
            }
        })
    }

    fn operand(&mut self, allow_direct: bool) -> PResult<Rewrite> {
        match self.kind(0) {
            Kind::LBracket if allow_direct => self.direct_assignment(),
            Kind::LParen => {
                if self.depth >= MAX_DEPTH {
                    let t = self.tok(0);
                    return Err(self.error_at_current(format!(
                        "unexpected '{}': parentheses nest deeper than {MAX_DEPTH} levels",
                        display(&t.text)
                    )));
                }
                self.bump();
                self.depth += 1;
                while self.opt(Kind::Whitespace) {}
                let inner = self.relation_def(allow_direct)?;
                while self.opt(Kind::Whitespace) {}
                if !self.opt(Kind::RParen) {
                    return Err(if is_operator(self.kind(0)) {
                        self.unexpected(
                            "')' (different operators, or more than one 'but not', need their own parentheses)",
                        )
                    } else {
                        self.unexpected("')'")
                    });
                }
                self.depth -= 1;
                Ok(inner)
            }
            k if is_identifier(k) => {
                let computed = self.identifier("a relation name")?;
                if self.kind(0) == Kind::Whitespace && self.kind(1) == Kind::From {
                    self.bump();
                    self.bump();
                    self.expect(Kind::Whitespace, "WHITESPACE")?;
                    let tupleset = self.identifier("a relation name after 'from'")?;
                    Ok(Rewrite::TupleToUserset { computed, tupleset })
                } else {
                    Ok(Rewrite::Computed(computed))
                }
            }
            _ if allow_direct => Err(self.mismatch(
                "{'[', '(', IDENTIFIER, 'module', 'model', 'schema', 'extend', 'type', 'relation', EXTENDED_IDENTIFIER}",
            )),
            Kind::LBracket => Err(self.unexpected(
                "a relation name or '(' (a '[...]' list of directly related types can only be the first operand)",
            )),
            _ => Err(self.unexpected("a relation name or '('")),
        }
    }

    fn direct_assignment(&mut self) -> PResult<Rewrite> {
        self.expect(Kind::LBracket, "'['")?;
        let mut list = Vec::new();
        loop {
            self.opt(Kind::Whitespace);
            list.push(self.type_restriction()?);
            let spaced = self.opt(Kind::Whitespace);
            match self.kind(0) {
                Kind::Comma => {
                    self.bump();
                }
                Kind::RBracket => {
                    self.bump();
                    break;
                }
                _ if spaced => return Err(self.mismatch("{',', ']'}")),
                _ => return Err(self.mismatch("{',', WHITESPACE, ']'}")),
            }
        }
        Ok(Rewrite::Direct(list))
    }

    fn type_restriction(&mut self) -> PResult<TypeRestriction> {
        self.opt(Kind::Newline);
        let type_name = self.identifier("a type name")?;
        let mut relation = None;
        let mut wildcard = false;
        match self.kind(0) {
            Kind::Colon => {
                self.bump();
                self.expect(Kind::Star, "'*'")?;
                wildcard = true;
            }
            Kind::Hash => {
                self.bump();
                relation = Some(self.identifier("a relation name after '#'")?);
            }
            _ => {}
        }
        let mut condition = None;
        if self.kind(0) == Kind::Whitespace && self.kind(1) == Kind::With {
            self.bump();
            self.bump();
            self.expect(Kind::Whitespace, "WHITESPACE")?;
            if self.kind(0) != Kind::Identifier {
                return Err(self.unexpected("a condition name after 'with'"));
            }
            condition = Some(Self::spanned(&self.bump()));
        }
        self.opt(Kind::Newline);
        Ok(TypeRestriction {
            type_name,
            relation,
            wildcard,
            condition,
        })
    }

    fn condition(&mut self) -> PResult<ConditionDecl> {
        self.expect(Kind::Newline, "NEWLINE")?;
        self.expect(Kind::Condition, "'condition'")?;
        self.expect(Kind::Whitespace, "WHITESPACE")?;
        if self.kind(0) != Kind::Identifier {
            return Err(self.unexpected("a condition name"));
        }
        let name = Self::spanned(&self.bump());
        self.opt(Kind::Whitespace);
        self.expect(Kind::LParen, "'('")?;
        let spaced = self.opt(Kind::Whitespace);
        let mut params = vec![self.condition_param(spaced)?];
        self.opt(Kind::Whitespace);
        while self.opt(Kind::Comma) {
            let spaced = self.opt(Kind::Whitespace);
            params.push(self.condition_param(spaced)?);
            self.opt(Kind::Whitespace);
        }
        self.opt(Kind::Newline);
        self.expect(Kind::RParen, "')'")?;
        self.opt(Kind::Whitespace);
        self.expect(Kind::LBrace, "'{'")?;
        // The expression is its tokens' text without `//` comments, as upstream builds it (`#`
        // comments are gone already).
        let mut expression = String::new();
        while !matches!(self.kind(0), Kind::RBrace | Kind::Eof) {
            let t = self.bump();
            match t.kind {
                Kind::Unknown => return Err(lexical_error(&t)),
                Kind::Cel if t.text.starts_with("//") => {}
                _ => expression.push_str(&t.text),
            }
        }
        if self.kind(0) != Kind::RBrace {
            return Err(self.unexpected("'}' to close the condition expression"));
        }
        self.bump();
        let expression = expression.trim().to_string();
        Ok(ConditionDecl {
            name,
            params,
            expression,
        })
    }

    /// `conditionParameter`; `spaced` tells whether whitespace preceded it (which changes what
    /// can still come before the name).
    fn condition_param(&mut self, spaced: bool) -> PResult<ConditionParam> {
        let newline = self.opt(Kind::Newline);
        if self.kind(0) != Kind::Identifier {
            // Blanks before a line break belong to the NEWLINE token, so after either only the
            // name itself can come.
            return Err(self.mismatch(if spaced || newline {
                "IDENTIFIER"
            } else {
                "{WHITESPACE, IDENTIFIER, NEWLINE}"
            }));
        }
        let name = Self::spanned(&self.bump());
        self.opt(Kind::Whitespace);
        self.expect(Kind::Colon, "':'")?;
        self.opt(Kind::Whitespace);
        match self.kind(0) {
            Kind::ParamType => {
                let t = self.bump();
                Ok(ConditionParam {
                    name,
                    type_name: Self::spanned(&t),
                    generic: None,
                })
            }
            Kind::ParamContainer => {
                let t = self.bump();
                self.expect(Kind::Less, "'<'")?;
                let g = self.expect(Kind::ParamType, "CONDITION_PARAM_TYPE")?;
                self.expect(Kind::Greater, "'>'")?;
                Ok(ConditionParam {
                    name,
                    type_name: Self::spanned(&t),
                    generic: Some(Self::spanned(&g)),
                })
            }
            _ => Err(self.unexpected(
                "a parameter type (bool, string, int, uint, double, duration, timestamp, ipaddress, any, map<T> or list<T>)",
            )),
        }
    }
}

/// The error for a character the lexer could not use.
fn lexical_error(t: &Token) -> SyntaxError {
    let message = if t.text.contains(['"', '\'']) {
        "unterminated string literal".to_string()
    } else if t.text.starts_with(['\n', '\r']) {
        "unexpected end of line: a condition's parameter list must be on one line".to_string()
    } else {
        format!("unexpected character '{}'", display(&t.text))
    };
    SyntaxError {
        message,
        line: t.line,
        col: t.col,
        end_col: t.col + t.char_len(),
        symbol: t.text.clone(),
    }
}

/// How upstream prints a token's text in messages: control characters escaped.
pub(crate) fn display(text: &str) -> String {
    text.replace('\n', "\\n")
        .replace('\r', "\\r")
        .replace('\t', "\\t")
}
