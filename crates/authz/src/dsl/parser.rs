//! Recursive-descent parser from tokens to the [`super::ast`] tree.
//!
//! The structure follows OpenFGA's grammar rule by rule (`main`, `modelHeader`, `typeDef`,
//! `relationDeclaration`, `relationDef`, `relationDefPartials`, `relationRecurse`, ...), so it
//! accepts exactly the language upstream accepts: a type restriction list only as the first
//! operand of a rewrite (or the first operand inside the first parentheses), one kind of operator
//! per level unless parentheses are used, at most one `but not` per level, whitespace around
//! operators, types before conditions.
//!
//! It stops at the first error; [`super::antlr`] computes the full upstream error list for
//! invalid input. Recursion depth is bounded by [`MAX_DEPTH`] so hostile input cannot overflow
//! the stack.

use super::ast::{
    ConditionDecl, ConditionParam, Document, Header, RelationDecl, Rewrite, Spanned, TypeDecl,
    TypeRestriction,
};
use super::lexer::{Kind, Token};

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
    src: &'a str,
    i: usize,
    depth: usize,
}

/// Parses a token stream produced by [`super::lexer::tokenize`] from `src`.
pub(crate) fn parse_tokens(toks: &[Token], src: &str) -> PResult<Document> {
    let mut p = Parser {
        toks,
        src,
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

const IDENTIFIER_SET: &str =
    "{IDENTIFIER, 'module', 'model', 'schema', 'extend', 'type', 'relation', EXTENDED_IDENTIFIER}";

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

    fn error_here(&self, expecting: &str) -> SyntaxError {
        let t = self.tok(0);
        SyntaxError {
            message: format!(
                "mismatched input '{}' expecting {}",
                display(&t.text),
                expecting
            ),
            line: t.line,
            col: t.col,
            end_col: t.col + t.char_len(),
            symbol: t.text.clone(),
        }
    }

    fn expect(&mut self, kind: Kind, expecting: &str) -> PResult<Token> {
        if self.kind(0) == kind {
            Ok(self.bump())
        } else {
            Err(self.error_here(expecting))
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

    fn identifier(&mut self) -> PResult<Spanned> {
        if is_identifier(self.kind(0)) {
            let t = self.bump();
            Ok(Self::spanned(&t))
        } else {
            Err(self.error_here(IDENTIFIER_SET))
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
                let name = self.identifier()?;
                self.opt(Kind::Whitespace);
                Header::Module { name }
            }
            _ => return Err(self.error_here("{'#', 'module', 'model'}")),
        };
        let mut types = Vec::new();
        let mut conditions = Vec::new();
        loop {
            match (self.kind(0), self.kind(1)) {
                (Kind::Newline, Kind::Type | Kind::Extend) if conditions.is_empty() => {
                    types.push(self.type_def()?);
                }
                (Kind::Newline, Kind::Condition) => conditions.push(self.condition()?),
                (Kind::Newline, Kind::Eof) => {
                    self.bump();
                }
                (Kind::Eof, _) => break,
                (Kind::Newline, _) => {
                    self.bump();
                    return Err(self.error_here("<EOF>"));
                }
                _ => return Err(self.error_here("{<EOF>, NEWLINE}")),
            }
        }
        Ok(Document {
            header,
            types,
            conditions,
        })
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
        let name = self.identifier()?;
        let mut relations = None;
        if self.kind(0) == Kind::Newline && self.kind(1) == Kind::Relations {
            self.bump();
            self.bump();
            let mut rels = Vec::new();
            if !(self.kind(0) == Kind::Newline && self.kind(1) == Kind::Define) {
                if self.kind(0) == Kind::Newline {
                    self.bump();
                }
                return Err(self.error_here("'define'"));
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
        let name = self.identifier()?;
        self.opt(Kind::Whitespace);
        self.expect(Kind::Colon, "':'")?;
        self.opt(Kind::Whitespace);
        let rewrite = self.relation_def(true)?;
        match self.kind(0) {
            Kind::Newline | Kind::Eof => Ok(RelationDecl { name, rewrite }),
            _ => Err(self.error_here("{<EOF>, NEWLINE}")),
        }
    }

    /// `relationDef` (`allow_direct`) or `relationDefNoDirect`.
    fn relation_def(&mut self, allow_direct: bool) -> PResult<Rewrite> {
        let first = self.operand(allow_direct)?;
        let op = match (self.kind(0), self.kind(1)) {
            (Kind::Whitespace, k @ (Kind::Or | Kind::And | Kind::ButNot)) => k,
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
                    _ => return Err(self.error_here("{'(', IDENTIFIER}")),
                }
            }
        })
    }

    fn operand(&mut self, allow_direct: bool) -> PResult<Rewrite> {
        match self.kind(0) {
            Kind::LBracket if allow_direct => self.direct_assignment(),
            Kind::LParen => {
                if self.depth >= MAX_DEPTH {
                    return Err(self.error_here("fewer nested parentheses"));
                }
                self.bump();
                self.depth += 1;
                while self.opt(Kind::Whitespace) {}
                let inner = self.relation_def(allow_direct)?;
                while self.opt(Kind::Whitespace) {}
                self.expect(Kind::RParen, "')'")?;
                self.depth -= 1;
                Ok(inner)
            }
            k if is_identifier(k) => {
                let computed = self.identifier()?;
                if self.kind(0) == Kind::Whitespace && self.kind(1) == Kind::From {
                    self.bump();
                    self.bump();
                    self.expect(Kind::Whitespace, "WHITESPACE")?;
                    let tupleset = self.identifier()?;
                    Ok(Rewrite::TupleToUserset { computed, tupleset })
                } else {
                    Ok(Rewrite::Computed(computed))
                }
            }
            _ if allow_direct => Err(self.error_here("{'[', '(', IDENTIFIER, 'module', 'model', 'schema', 'extend', 'type', 'relation', EXTENDED_IDENTIFIER}")),
            _ => Err(self.error_here("{'(', IDENTIFIER, 'module', 'model', 'schema', 'extend', 'type', 'relation', EXTENDED_IDENTIFIER}")),
        }
    }

    fn direct_assignment(&mut self) -> PResult<Rewrite> {
        self.expect(Kind::LBracket, "'['")?;
        let mut list = Vec::new();
        loop {
            self.opt(Kind::Whitespace);
            list.push(self.type_restriction()?);
            self.opt(Kind::Whitespace);
            match self.kind(0) {
                Kind::Comma => {
                    self.bump();
                }
                Kind::RBracket => {
                    self.bump();
                    break;
                }
                _ => return Err(self.error_here("{',', ']'}")),
            }
        }
        Ok(Rewrite::Direct(list))
    }

    fn type_restriction(&mut self) -> PResult<TypeRestriction> {
        self.opt(Kind::Newline);
        let type_name = self.identifier()?;
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
                relation = Some(self.identifier()?);
            }
            _ => {}
        }
        let mut condition = None;
        if self.kind(0) == Kind::Whitespace && self.kind(1) == Kind::With {
            self.bump();
            self.bump();
            self.expect(Kind::Whitespace, "WHITESPACE")?;
            let t = self.expect(Kind::Identifier, "IDENTIFIER")?;
            condition = Some(Self::spanned(&t));
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
        let name = Self::spanned(&self.expect(Kind::Identifier, "IDENTIFIER")?);
        self.opt(Kind::Whitespace);
        self.expect(Kind::LParen, "'('")?;
        self.opt(Kind::Whitespace);
        let mut params = vec![self.condition_param()?];
        self.opt(Kind::Whitespace);
        while self.opt(Kind::Comma) {
            self.opt(Kind::Whitespace);
            params.push(self.condition_param()?);
            self.opt(Kind::Whitespace);
        }
        self.opt(Kind::Newline);
        self.expect(Kind::RParen, "')'")?;
        self.opt(Kind::Whitespace);
        let lbrace = self.expect(Kind::LBrace, "'{'")?;
        while !matches!(self.kind(0), Kind::RBrace | Kind::Eof) {
            self.bump();
        }
        let rbrace = self.expect(Kind::RBrace, "'}'")?;
        let expression = self
            .src
            .get(lbrace.end..rbrace.start)
            .unwrap_or_default()
            .trim()
            .to_string();
        Ok(ConditionDecl {
            name,
            params,
            expression,
        })
    }

    fn condition_param(&mut self) -> PResult<ConditionParam> {
        self.opt(Kind::Newline);
        let name = Self::spanned(&self.expect(Kind::Identifier, "IDENTIFIER")?);
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
            _ => Err(self.error_here("{CONDITION_PARAM_CONTAINER, CONDITION_PARAM_TYPE}")),
        }
    }
}

/// How ANTLR prints a token's text in messages: control characters escaped.
pub(crate) fn display(text: &str) -> String {
    text.replace('\n', "\\n")
        .replace('\r', "\\r")
        .replace('\t', "\\t")
}
