//! Tokenizer for the OpenFGA DSL.
//!
//! The token kinds mirror the upstream grammar's lexer (keywords, `IDENTIFIER`,
//! `EXTENDED_IDENTIFIER`, `NEWLINE`, punctuation) so that parser errors can name tokens the way
//! OpenFGA's tooling does, and token boundaries are upstream's, so that errors point at the same
//! text. The modes follow upstream's lexer:
//!
//! - the default mode (types and relations), where `map` or `string` are plain identifiers and
//!   CEL's operators, numbers and strings are tokens (upstream shares one mode between the two)
//!   that the parser never accepts outside an expression, and `//` starts a skipped comment;
//! - the condition-signature mode, entered by the `condition` keyword and left at `)`, where
//!   parameter types are keywords and nothing but names, types, `(),:<>` and blanks is valid;
//! - the CEL mode, entered by the `{` after a condition's parameters and left at the first `}`
//!   outside a string literal, whose tokens are kept verbatim for the expression text.
//!
//! Invariants: the input is the cleaned text (comments removed and lines right-trimmed, see
//! [`clean`]); every token covers a non-empty byte range except the final `Eof`; positions are
//! 0-based lines and 0-based columns counted in Unicode scalar values. The lexer never fails: a
//! character upstream's lexer rejects (`@`, a lone `=`, an unterminated string, ...) becomes an
//! `Unknown` token that the parser reports when it reaches it.

/// Token kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Colon,
    Comma,
    Less,
    Greater,
    LBracket,
    RBracket,
    LParen,
    RParen,
    LBrace,
    RBrace,
    Whitespace,
    Identifier,
    ExtendedIdentifier,
    Hash,
    Star,
    And,
    Or,
    ButNot,
    From,
    Module,
    Model,
    Schema,
    SchemaVersion,
    Extend,
    Type,
    Condition,
    Relations,
    Relation,
    Define,
    With,
    ParamContainer,
    ParamType,
    Newline,
    /// Any other token of a CEL expression (operators, literals, names).
    Cel,
    /// A character that starts no token of the current mode.
    Unknown,
    Eof,
}

/// One token with its 0-based position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub kind: Kind,
    pub text: String,
    /// Byte offset of the first character in the cleaned input.
    pub start: usize,
    /// Byte offset one past the last character.
    pub end: usize,
    pub line: usize,
    pub col: usize,
}

impl Token {
    /// Number of characters in the token.
    pub fn char_len(&self) -> usize {
        self.text.chars().count()
    }
}

/// Prepares the input the way OpenFGA's transformer does before parsing, line by line: a line
/// whose first non-blank character is `#` becomes empty, everything from the first ` #` on is
/// cut (a comment, even inside what looks like a string), and trailing whitespace is removed.
/// The remaining characters keep their line and column.
pub(crate) fn clean(input: &str) -> String {
    input
        .split('\n')
        .map(|line| {
            if line.trim_start().starts_with('#') {
                ""
            } else {
                line.split(" #").next().unwrap_or_default().trim_end()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Default,
    ConditionSignature,
    Cel,
}

const KEYWORDS: &[(&str, Kind)] = &[
    ("and", Kind::And),
    ("or", Kind::Or),
    ("from", Kind::From),
    ("module", Kind::Module),
    ("model", Kind::Model),
    ("schema", Kind::Schema),
    ("extend", Kind::Extend),
    ("type", Kind::Type),
    ("condition", Kind::Condition),
    ("relations", Kind::Relations),
    ("relation", Kind::Relation),
    ("define", Kind::Define),
    ("with", Kind::With),
];

/// CEL's words that upstream's default mode lexes as tokens of their own, so they can name
/// nothing in a model.
pub(crate) const RESERVED_WORDS: &[&str] = &["in", "true", "false", "null"];

/// Parameter types. `any` is trustgate's one extension of upstream's grammar: OpenFGA's JSON
/// models have `TYPE_NAME_ANY` (so `map<any>` holds a JSON object of any shape, such as an
/// AuthZEN request's attributes), but its DSL has no keyword for it, so a model using it could
/// not be written in the DSL or printed back into one.
const PARAM_TYPES: &[&str] = &[
    "any",
    "bool",
    "string",
    "int",
    "uint",
    "double",
    "duration",
    "timestamp",
    "ipaddress",
];

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Length of an `IDENTIFIER` at the start of `s`: `[a-zA-Z_][a-zA-Z0-9_-]*`.
fn ident_len(s: &str) -> usize {
    let bytes = s.as_bytes();
    match bytes.first() {
        Some(&b) if is_ident_start(char::from(b)) => {
            1 + bytes[1..]
                .iter()
                .take_while(|b| is_word_byte(**b) || **b == b'-')
                .count()
        }
        _ => 0,
    }
}

/// Length of one segment of an extended identifier: `[a-zA-Z0-9_]+ ('-' [a-zA-Z0-9_]+)*`
/// (hyphens only between word characters).
fn segment_len(bytes: &[u8]) -> usize {
    let mut i = bytes.iter().take_while(|b| is_word_byte(**b)).count();
    if i == 0 {
        return 0;
    }
    while bytes.get(i) == Some(&b'-') {
        let run = bytes[i + 1..]
            .iter()
            .take_while(|b| is_word_byte(**b))
            .count();
        if run == 0 {
            break;
        }
        i += 1 + run;
    }
    i
}

/// Length of an `EXTENDED_IDENTIFIER` at the start of `s` (0 if there is none): a segment that
/// starts with a letter or `_`, then one or more segments each after a `.` or `/` (`a.b`,
/// `team/doc-v2`, `_.a_/_b._`). A separator must be followed by a segment, so `a.` and `a//b`
/// are not extended identifiers.
fn ext_len(s: &str) -> usize {
    let bytes = s.as_bytes();
    if !bytes
        .first()
        .is_some_and(|b| is_ident_start(char::from(*b)))
    {
        return 0;
    }
    let mut i = segment_len(bytes);
    let mut separators = 0;
    while matches!(bytes.get(i), Some(b'.' | b'/')) {
        let seg = segment_len(&bytes[i + 1..]);
        if seg == 0 {
            break;
        }
        i += 1 + seg;
        separators += 1;
    }
    if separators == 0 { 0 } else { i }
}

/// Length of a `SCHEMA_VERSION` (`[0-9]+ '.' [0-9]+`) at the start of `s`, or 0.
fn schema_version_len(s: &str) -> usize {
    let bytes = s.as_bytes();
    let major = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if major == 0 || bytes.get(major) != Some(&b'.') {
        return 0;
    }
    let minor = bytes[major + 1..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if minor == 0 { 0 } else { major + 1 + minor }
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    line: usize,
    col: usize,
    mode: Mode,
    /// A condition's parameter list was closed: the next `{` opens its expression.
    body_pending: bool,
    /// The mode a parameter list returns to at `)`: the default mode for a condition
    /// declaration, the expression for the keyword `condition` inside an expression.
    signature_returns_to: Mode,
    tokens: Vec<Token>,
}

/// Splits cleaned input into tokens; the last token is always `Eof`.
pub(crate) fn tokenize(src: &str) -> Vec<Token> {
    let mut lx = Lexer {
        src,
        pos: 0,
        line: 0,
        col: 0,
        mode: Mode::Default,
        body_pending: false,
        signature_returns_to: Mode::Default,
        tokens: Vec::new(),
    };
    while lx.pos < src.len() {
        lx.next_token();
    }
    lx.tokens.push(Token {
        kind: Kind::Eof,
        text: "<EOF>".to_string(),
        start: src.len(),
        end: src.len(),
        line: lx.line,
        col: lx.col,
    });
    lx.tokens
}

impl Lexer<'_> {
    fn rest(&self) -> &str {
        &self.src[self.pos..]
    }

    fn peek_char(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn emit(&mut self, kind: Kind, len: usize) {
        let text = &self.src[self.pos..self.pos + len];
        let token = Token {
            kind,
            text: text.to_string(),
            start: self.pos,
            end: self.pos + len,
            line: self.line,
            col: self.col,
        };
        for c in text.chars() {
            if c == '\n' {
                self.line += 1;
                self.col = 0;
            } else {
                self.col += 1;
            }
        }
        self.pos += len;
        self.tokens.push(token);
    }

    /// Advances over `len` bytes of one line without emitting a token.
    fn skip(&mut self, len: usize) {
        let text = &self.src[self.pos..self.pos + len];
        self.col += text.chars().count();
        self.pos += len;
    }

    /// Length of a NEWLINE token at the current position (0 if none starts here): one or more
    /// line breaks, each with the blanks that follow it. Comments are gone by now ([`clean`]).
    fn newline_len(&self) -> usize {
        let bytes = self.rest().as_bytes();
        let mut i = 0;
        loop {
            let start = i;
            if bytes.get(i) == Some(&b'\r') {
                i += 1;
            }
            if bytes.get(i) != Some(&b'\n') {
                return start;
            }
            i += 1;
            while matches!(bytes.get(i), Some(b' ' | b'\t')) {
                i += 1;
            }
        }
    }

    fn next_token(&mut self) {
        match self.mode {
            Mode::Default => self.next_default(),
            Mode::ConditionSignature => self.next_signature(),
            Mode::Cel => self.next_cel(),
        }
    }

    fn next_default(&mut self) {
        let nl = self.newline_len();
        if nl > 0 {
            self.emit(Kind::Newline, nl);
            return;
        }
        let Some(c) = self.peek_char() else {
            return;
        };
        if c == '{' && self.body_pending {
            self.body_pending = false;
            self.mode = Mode::Cel;
            self.emit(Kind::LBrace, 1);
            return;
        }
        if self.rest().starts_with("//") {
            // A `//` comment runs to the end of the line and is skipped, as upstream's lexer
            // (which shares CEL's comment rule in this mode) does.
            let len = self.rest().find('\n').unwrap_or(self.rest().len());
            self.skip(len);
            return;
        }
        if let Some(len) = cel_operator_len(self.rest()) {
            // `<=`, `==`, `&&`, ...: tokens of upstream's lexer in this mode (which it shares
            // with CEL expressions), never accepted by the parser outside an expression.
            self.emit(Kind::Cel, len);
            return;
        }
        let single = match c {
            ':' => Some(Kind::Colon),
            ',' => Some(Kind::Comma),
            '<' => Some(Kind::Less),
            '>' => Some(Kind::Greater),
            '[' => Some(Kind::LBracket),
            ']' => Some(Kind::RBracket),
            '(' => Some(Kind::LParen),
            ')' => Some(Kind::RParen),
            '{' => Some(Kind::LBrace),
            '}' => Some(Kind::RBrace),
            '#' => Some(Kind::Hash),
            '*' => Some(Kind::Star),
            '.' | '-' | '!' | '?' | '+' | '/' | '%' => Some(Kind::Cel),
            _ => None,
        };
        if let Some(kind) = single {
            self.emit(kind, 1);
            return;
        }
        if c == ' ' || c == '\t' {
            let len = self
                .rest()
                .bytes()
                .take_while(|b| *b == b' ' || *b == b'\t')
                .count();
            self.emit(Kind::Whitespace, len);
            return;
        }
        if self.rest().starts_with("but not") {
            self.emit(Kind::ButNot, "but not".len());
            return;
        }
        if let Some((len, terminated)) = cel_string_len(self.rest()) {
            self.emit(if terminated { Kind::Cel } else { Kind::Unknown }, len);
            return;
        }
        let version = schema_version_len(self.rest());
        if version > 0 {
            self.emit(Kind::SchemaVersion, version);
            return;
        }
        if c.is_ascii_digit() {
            // A number: only ever part of a CEL expression, but one token, as upstream lexes it.
            let len = self.rest().bytes().take_while(u8::is_ascii_digit).count();
            self.emit(Kind::Cel, len);
            return;
        }
        let ident = ident_len(self.rest());
        let ext = ext_len(self.rest());
        if ident == 0 && ext == 0 {
            self.emit(Kind::Unknown, c.len_utf8());
            return;
        }
        if ext > ident {
            self.emit(Kind::ExtendedIdentifier, ext);
            return;
        }
        let word = &self.rest()[..ident];
        if RESERVED_WORDS.contains(&word) {
            self.emit(Kind::Cel, ident);
            return;
        }
        if let Some((_, kind)) = KEYWORDS.iter().find(|(k, _)| *k == word) {
            let kind = *kind;
            if kind == Kind::Condition {
                self.mode = Mode::ConditionSignature;
                self.signature_returns_to = Mode::Default;
                self.body_pending = false;
            }
            self.emit(kind, ident);
        } else {
            self.emit(Kind::Identifier, ident);
        }
    }

    /// The parameter list of a condition (upstream's `CONDITION_DEF` mode, which ends at `)`):
    /// only names, parameter types, `(`, `)`, `:`, `,`, `<`, `>` and blanks. Anything else,
    /// including a line break, is a character upstream's lexer rejects.
    fn next_signature(&mut self) {
        let Some(c) = self.peek_char() else {
            return;
        };
        let single = match c {
            ':' => Some(Kind::Colon),
            ',' => Some(Kind::Comma),
            '<' => Some(Kind::Less),
            '>' => Some(Kind::Greater),
            '(' => Some(Kind::LParen),
            _ => None,
        };
        if let Some(kind) = single {
            self.emit(kind, 1);
            return;
        }
        if c == ')' {
            self.mode = self.signature_returns_to;
            if self.mode == Mode::Default {
                self.body_pending = true;
                self.emit(Kind::RParen, 1);
            } else {
                self.emit(Kind::Cel, 1);
            }
            return;
        }
        if c == ' ' || c == '\t' {
            let len = self
                .rest()
                .bytes()
                .take_while(|b| *b == b' ' || *b == b'\t')
                .count();
            self.emit(Kind::Whitespace, len);
            return;
        }
        let ident = ident_len(self.rest());
        if ident == 0 {
            self.emit(Kind::Unknown, c.len_utf8());
            return;
        }
        let word = &self.rest()[..ident];
        let kind = if word == "map" || word == "list" {
            Kind::ParamContainer
        } else if PARAM_TYPES.contains(&word) {
            Kind::ParamType
        } else {
            Kind::Identifier
        };
        self.emit(kind, ident);
    }

    /// A condition's expression, up to the first `}` outside a string literal. Upstream lexes it
    /// in its default mode, so the same characters are rejected there (`@`, `$`, a lone `=`,
    /// an unterminated string, ...); everything else is kept verbatim.
    fn next_cel(&mut self) {
        let nl = self.newline_len();
        if nl > 0 {
            self.emit(Kind::Newline, nl);
            return;
        }
        let Some(c) = self.peek_char() else {
            return;
        };
        match c {
            '}' => {
                self.mode = Mode::Default;
                self.emit(Kind::RBrace, 1);
            }
            ' ' | '\t' => {
                let len = self
                    .rest()
                    .bytes()
                    .take_while(|b| *b == b' ' || *b == b'\t')
                    .count();
                self.emit(Kind::Whitespace, len);
            }
            _ => {
                let rest = self.rest();
                if rest.starts_with("//") {
                    let len = rest.find('\n').unwrap_or(rest.len());
                    self.emit(Kind::Cel, len);
                } else if let Some((len, terminated)) = cel_string_len(rest) {
                    self.emit(if terminated { Kind::Cel } else { Kind::Unknown }, len);
                } else if let Some(len) = cel_operator_len(rest) {
                    self.emit(Kind::Cel, len);
                } else if is_word_byte(rest.as_bytes()[0]) {
                    let len = rest.bytes().take_while(|b| is_word_byte(*b)).count();
                    if &rest[..len] == "condition" {
                        // Upstream's lexer switches to the parameter-list mode at this keyword
                        // wherever it is, and back at the next `)`; the characters in between
                        // must be valid there.
                        self.mode = Mode::ConditionSignature;
                        self.signature_returns_to = Mode::Cel;
                    }
                    self.emit(Kind::Cel, len);
                } else if is_rejected_char(c) {
                    self.emit(Kind::Unknown, c.len_utf8());
                } else {
                    self.emit(Kind::Cel, c.len_utf8());
                }
            }
        }
    }
}

/// Characters upstream's default-mode lexer (types, relations, CEL expressions) does not accept
/// outside comments and string literals: `&`, `|` and `=` only as `&&`, `||`, `==`.
fn is_rejected_char(c: char) -> bool {
    !c.is_ascii()
        || matches!(
            c,
            '$' | '&' | ';' | '=' | '@' | '\\' | '^' | '`' | '|' | '~'
        )
}

/// Length of a two-character operator of upstream's default mode at the start of `s`.
fn cel_operator_len(s: &str) -> Option<usize> {
    ["==", "!=", "<=", ">=", "&&", "||"]
        .iter()
        .any(|op| s.starts_with(op))
        .then_some(2)
}

/// Length of a CEL string or bytes literal at the start of `s` (with optional `r`/`b` prefixes
/// and triple quotes), and whether it is terminated. An unterminated single-quoted literal runs
/// to the end of its line, a triple-quoted one to the end of the input.
fn cel_string_len(s: &str) -> Option<(usize, bool)> {
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut raw = false;
    while i < bytes.len() && i < 2 && matches!(bytes[i], b'r' | b'R' | b'b' | b'B') {
        raw |= matches!(bytes[i], b'r' | b'R');
        i += 1;
    }
    let quote = *bytes.get(i)?;
    if quote != b'"' && quote != b'\'' {
        return None;
    }
    let triple = bytes.len() >= i + 3 && bytes[i + 1] == quote && bytes[i + 2] == quote;
    let mut j = if triple { i + 3 } else { i + 1 };
    while j < bytes.len() {
        let b = bytes[j];
        if !triple && matches!(b, b'\n' | b'\r') {
            return Some((j, false));
        }
        if b == b'\\' && !raw {
            j += if matches!(bytes.get(j + 1), Some(b'\n' | b'\r')) {
                1
            } else {
                2
            };
            continue;
        }
        if b == quote {
            if !triple {
                return Some((j + 1, true));
            }
            if bytes.len() >= j + 3 && bytes[j + 1] == quote && bytes[j + 2] == quote {
                return Some((j + 3, true));
            }
        }
        j += 1;
    }
    // `j` may have stepped past the end over a trailing backslash.
    Some((bytes.len(), false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(s: &str) -> Vec<Kind> {
        tokenize(&clean(s)).into_iter().map(|t| t.kind).collect()
    }

    #[test]
    fn keywords_win_ties_and_longer_words_are_identifiers() {
        assert_eq!(
            kinds("type types a.b 1.1 but not"),
            vec![
                Kind::Type,
                Kind::Whitespace,
                Kind::Identifier,
                Kind::Whitespace,
                Kind::ExtendedIdentifier,
                Kind::Whitespace,
                Kind::SchemaVersion,
                Kind::Whitespace,
                Kind::ButNot,
                Kind::Eof
            ]
        );
    }

    #[test]
    fn comments_are_part_of_newlines() {
        assert_eq!(
            kinds("model # c\n  # d\n\n  schema"),
            vec![Kind::Model, Kind::Newline, Kind::Schema, Kind::Eof]
        );
    }

    #[test]
    fn condition_modes() {
        let toks = tokenize("condition c(x: map<string>) {\n  x == \"}\"\n}\ntype map");
        let kinds: Vec<Kind> = toks.iter().map(|t| t.kind).collect();
        assert!(kinds.contains(&Kind::ParamContainer));
        assert!(kinds.contains(&Kind::ParamType));
        assert_eq!(toks.iter().filter(|t| t.kind == Kind::RBrace).count(), 1);
        assert_eq!(toks[toks.len() - 2].kind, Kind::Identifier);
    }
}
