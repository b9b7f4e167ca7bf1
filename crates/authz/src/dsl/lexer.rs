//! Tokenizer for the OpenFGA DSL.
//!
//! The token kinds mirror the upstream grammar's lexer (keywords, `IDENTIFIER`,
//! `EXTENDED_IDENTIFIER`, `NEWLINE`, punctuation) so that parser errors can name tokens the way
//! OpenFGA's tooling does. Three lexer modes exist, as upstream:
//!
//! - the default mode (types and relations), where `map` or `string` are plain identifiers;
//! - the condition-signature mode, entered by the `condition` keyword, where parameter types are
//!   keywords;
//! - the CEL mode, entered by `{` in a condition signature and left at the first `}` outside a
//!   string literal, whose tokens are only kept verbatim for the expression text.
//!
//! Invariants: the input is the cleaned text (every line right-trimmed, see [`clean`]); every
//! token covers a non-empty byte range except the final `Eof`; positions are 0-based lines and
//! 0-based columns counted in Unicode scalar values. The lexer never fails: any character it does
//! not know becomes a one-character `Unknown` token that the parser then rejects.

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

/// Removes trailing whitespace from every line, as OpenFGA's transformer does before parsing, so
/// that positions of all remaining characters are unchanged.
pub(crate) fn clean(input: &str) -> String {
    input
        .split('\n')
        .map(|line| line.trim_end())
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

const PARAM_TYPES: &[&str] = &[
    "bool",
    "string",
    "int",
    "uint",
    "double",
    "duration",
    "timestamp",
    "ipaddress",
];

/// `SCHEMA_VERSION`: digits, a dot, digits (`1.1`, `1.2`, `0.9`); whether the version is
/// supported is a semantic check.
fn is_schema_version(word: &str) -> bool {
    let mut parts = word.split('.');
    let all_digits =
        |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    all_digits(parts.next()) && all_digits(parts.next()) && parts.next().is_none()
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn is_ext_char(c: char) -> bool {
    is_ident_char(c) || c == '.' || c == '/'
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    line: usize,
    col: usize,
    mode: Mode,
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

    /// Length of a newline token at the current position: optional blanks and a comment, then
    /// one or more line breaks, each followed by blanks and possibly a whole-line comment.
    /// Returns 0 when the current position does not start one.
    fn newline_len(&self, comment_allowed_here: bool) -> usize {
        let bytes = self.rest().as_bytes();
        let mut i = 0;
        while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'\t') {
            i += 1;
        }
        let comment_ok = comment_allowed_here || i > 0;
        if i < bytes.len() && bytes[i] == b'#' && comment_ok {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
        }
        if i >= bytes.len() {
            // A trailing comment at the very end of the input is trivia too.
            return if i > 0 && self.rest().trim_start().starts_with('#') {
                i
            } else {
                0
            };
        }
        if bytes[i] != b'\n' && bytes[i] != b'\r' {
            return 0;
        }
        let mut last_break_end;
        loop {
            if i < bytes.len() && bytes[i] == b'\r' {
                i += 1;
            }
            if i < bytes.len() && bytes[i] == b'\n' {
                i += 1;
                last_break_end = i;
            } else {
                break;
            }
            while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'\t') {
                i += 1;
            }
            if i < bytes.len() && bytes[i] == b'#' && self.mode == Mode::Default {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                if i >= bytes.len() {
                    return i;
                }
            }
            if i >= bytes.len() || (bytes[i] != b'\n' && bytes[i] != b'\r') {
                break;
            }
        }
        let _ = last_break_end;
        i
    }

    fn next_token(&mut self) {
        match self.mode {
            Mode::Default => self.next_default(),
            Mode::ConditionSignature => self.next_signature(),
            Mode::Cel => self.next_cel(),
        }
    }

    fn word_lens(&self) -> (usize, usize) {
        let mut ident = 0;
        let mut chars = self.rest().char_indices();
        if let Some((_, c)) = chars.next()
            && is_ident_start(c)
        {
            ident = c.len_utf8();
            for (i, c) in chars {
                if is_ident_char(c) {
                    ident = i + c.len_utf8();
                } else {
                    break;
                }
            }
        }
        let mut ext = 0;
        for (i, c) in self.rest().char_indices() {
            if is_ext_char(c) {
                ext = i + c.len_utf8();
            } else {
                break;
            }
        }
        (ident, ext)
    }

    fn next_default(&mut self) {
        let at_line_start = self.col == 0;
        let nl = self.newline_len(at_line_start);
        if nl > 0 {
            self.emit(Kind::Newline, nl);
            return;
        }
        let Some(c) = self.peek_char() else {
            return;
        };
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
        let (ident, ext) = self.word_lens();
        let longest = ident.max(ext);
        if longest == 0 {
            self.emit(Kind::Unknown, c.len_utf8());
            return;
        }
        let word = &self.rest()[..longest];
        if is_schema_version(word) {
            self.emit(Kind::SchemaVersion, longest);
        } else if let Some((_, kind)) = KEYWORDS.iter().find(|(k, _)| *k == word) {
            let kind = *kind;
            if kind == Kind::Condition {
                self.mode = Mode::ConditionSignature;
            }
            self.emit(kind, longest);
        } else if ident >= ext {
            self.emit(Kind::Identifier, ident);
        } else {
            self.emit(Kind::ExtendedIdentifier, ext);
        }
    }

    fn next_signature(&mut self) {
        let nl = self.newline_len(false);
        if nl > 0 {
            self.emit(Kind::Newline, nl);
            return;
        }
        let Some(c) = self.peek_char() else {
            return;
        };
        let single = match c {
            ':' => Some(Kind::Colon),
            ',' => Some(Kind::Comma),
            '<' => Some(Kind::Less),
            '>' => Some(Kind::Greater),
            '(' => Some(Kind::LParen),
            ')' => Some(Kind::RParen),
            '[' => Some(Kind::LBracket),
            ']' => Some(Kind::RBracket),
            '}' => Some(Kind::RBrace),
            _ => None,
        };
        if let Some(kind) = single {
            self.emit(kind, 1);
            return;
        }
        if c == '{' {
            self.mode = Mode::Cel;
            self.emit(Kind::LBrace, 1);
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
        let (ident, _) = self.word_lens();
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

    fn next_cel(&mut self) {
        let Some(c) = self.peek_char() else {
            return;
        };
        match c {
            '}' => {
                self.mode = Mode::Default;
                self.emit(Kind::RBrace, 1);
            }
            '\n' | '\r' => {
                let len = self
                    .rest()
                    .bytes()
                    .take_while(|b| matches!(b, b'\n' | b'\r' | b' ' | b'\t'))
                    .count();
                self.emit(Kind::Newline, len);
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
                let len = cel_string_len(self.rest())
                    .unwrap_or_else(|| cel_chunk_len(self.rest()).max(c.len_utf8()));
                self.emit(Kind::Cel, len);
            }
        }
    }
}

/// Length of a CEL string or bytes literal at the start of `s` (with optional `r`/`b` prefixes
/// and triple quotes), so that braces inside strings do not end the expression. An unterminated
/// literal runs to the end of its line.
fn cel_string_len(s: &str) -> Option<usize> {
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
        if b == b'\\' && !raw {
            j += 2;
            continue;
        }
        if !triple && b == b'\n' {
            return Some(j);
        }
        if b == quote {
            if !triple {
                return Some(j + 1);
            }
            if bytes.len() >= j + 3 && bytes[j + 1] == quote && bytes[j + 2] == quote {
                return Some(j + 3);
            }
        }
        j += 1;
    }
    Some(bytes.len())
}

/// Length of a run of CEL characters that cannot start a string, a brace or a line break.
fn cel_chunk_len(s: &str) -> usize {
    let mut len = 0;
    for (i, c) in s.char_indices() {
        if matches!(c, '}' | '\n' | '\r' | ' ' | '\t' | '"' | '\'') {
            break;
        }
        if i > 0 && matches!(c, 'r' | 'R' | 'b' | 'B') {
            // A prefix letter only starts a string at a word boundary; keep words together.
            let prev = s[..i].chars().last().unwrap_or(' ');
            if !prev.is_ascii_alphanumeric() && prev != '_' && cel_string_len(&s[i..]).is_some() {
                break;
            }
        }
        len = i + c.len_utf8();
    }
    len
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
