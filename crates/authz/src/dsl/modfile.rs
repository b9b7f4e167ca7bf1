//! `fga.mod`: the manifest of a modular model.
//!
//! ```yaml
//! schema: '1.2'
//! contents:
//!   - core.fga
//!   - team1/project.fga
//! ```
//!
//! [`parse_mod_file`] reads it with upstream's rules and messages (`fga model write` with a
//! modular model): `schema` must be the string `1.2`; `contents` a list of strings, each a
//! relative path ending in `.fga` that does not climb out of the directory (`../`, `..\`, a
//! leading `/`, also when URL-encoded as `%2e%2e%2f` and the like). Every problem is reported,
//! with the 0-based line and column range of the offending YAML node.
//!
//! The reader understands the part of YAML a manifest uses: a top-level block mapping whose
//! values are scalars (plain, single- or double-quoted), block sequences (`- item`) or flow
//! sequences (`[a, b]`), and `#` comments. Scalars are typed as YAML's core schema types them
//! (`true`, `1`, `null` are not strings), since upstream reports their values. Anything else is
//! reported as not understood rather than guessed at.

use serde::Serialize;

use super::{DslError, DslErrors, Span};

/// A value from `fga.mod` with where it was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModProperty<T> {
    /// The value.
    pub value: T,
    /// 0-based line range.
    pub line: Span,
    /// 0-based column range (the end is exclusive; for a block sequence, the position after it).
    pub column: Span,
}

/// A parsed `fga.mod`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModFile {
    /// The schema version, `1.2`.
    pub schema: ModProperty<String>,
    /// The module files, in the order listed, URL-decoded.
    pub contents: ModProperty<Vec<ModProperty<String>>>,
}

/// A YAML scalar as the core schema types it.
#[derive(Debug, Clone, PartialEq)]
enum Scalar {
    Str(String),
    /// Anything else, as JavaScript would print the value (`true`, `1`, `null`).
    Other(String),
}

impl Scalar {
    fn printed(&self) -> &str {
        match self {
            Scalar::Str(s) | Scalar::Other(s) => s,
        }
    }
}

/// A YAML node with its range.
#[derive(Debug, Clone)]
struct Node {
    kind: NodeKind,
    start: (usize, usize),
    end: (usize, usize),
}

#[derive(Debug, Clone)]
enum NodeKind {
    Scalar(Scalar),
    Seq(Vec<Node>),
    /// A nested mapping (never valid in a manifest; kept to report it).
    Map,
}

fn error(message: String, start: (usize, usize), end: (usize, usize)) -> DslError {
    DslError {
        message,
        line: Some(Span {
            start: start.0,
            end: end.0,
        }),
        column: Some(Span {
            start: start.1,
            end: end.1,
        }),
        symbol: None,
        error_type: None,
        file: None,
        module: None,
    }
}

fn property<T>(value: T, node: &Node) -> ModProperty<T> {
    ModProperty {
        value,
        line: Span {
            start: node.start.0,
            end: node.end.0,
        },
        column: Span {
            start: node.start.1,
            end: node.end.1,
        },
    }
}

/// Types a plain scalar as YAML 1.2's core schema does.
fn plain_scalar(text: &str) -> Scalar {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Scalar::Other("null".to_string()),
        "true" | "True" | "TRUE" => return Scalar::Other("true".to_string()),
        "false" | "False" | "FALSE" => return Scalar::Other("false".to_string()),
        _ => {}
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    let is_int = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    if is_int {
        // JavaScript prints the number: no leading zeros or plus sign.
        let value = digits.trim_start_matches('0');
        let value = if value.is_empty() { "0" } else { value };
        let sign = if text.starts_with('-') && value != "0" {
            "-"
        } else {
            ""
        };
        return Scalar::Other(format!("{sign}{value}"));
    }
    if text.parse::<f64>().is_ok() && text.bytes().any(|b| b.is_ascii_digit()) {
        return Scalar::Other(
            text.parse::<f64>()
                .map_or(text.to_string(), |f| f.to_string()),
        );
    }
    Scalar::Str(text.to_string())
}

/// Byte offset → column in characters.
fn col_of(line: &str, byte: usize) -> usize {
    line.get(..byte).map_or(0, |s| s.chars().count())
}

/// Where the comment of a line starts (a `#` at the start or after a blank, outside quotes).
fn comment_start(line: &str) -> usize {
    let mut quote: Option<char> = None;
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' && (prev == ' ' || prev == '\t') => return i,
            None => {}
        }
        prev = c;
    }
    line.len()
}

/// Reads one scalar starting at byte `at` of `line` (up to the end, or up to `stop` characters
/// for flow sequences). Returns the scalar, its start and end byte offsets.
fn read_scalar(
    line: &str,
    at: usize,
    stop: &[char],
) -> Result<(Scalar, usize, usize), &'static str> {
    let rest = &line[at..];
    let Some(first) = rest.chars().next() else {
        return Ok((Scalar::Other("null".to_string()), at, at));
    };
    if first == '"' || first == '\'' {
        let mut value = String::new();
        let mut chars = rest.char_indices().skip(1);
        while let Some((i, c)) = chars.next() {
            if c == first {
                if first == '\'' && rest[i + 1..].starts_with('\'') {
                    value.push('\'');
                    chars.next();
                    continue;
                }
                return Ok((Scalar::Str(value), at, at + i + 1));
            }
            if c == '\\' && first == '"' {
                let Some((_, e)) = chars.next() else {
                    break;
                };
                value.push(match e {
                    'n' => '\n',
                    't' => '\t',
                    other => other,
                });
                continue;
            }
            value.push(c);
        }
        return Err("unterminated quoted string");
    }
    let len = rest.find(|c: char| stop.contains(&c)).unwrap_or(rest.len());
    let text = rest[..len].trim_end();
    Ok((plain_scalar(text), at, at + text.len()))
}

struct Reader<'a> {
    lines: Vec<&'a str>,
    errors: Vec<DslError>,
}

impl Reader<'_> {
    /// The content of line `i` without its comment and trailing blanks.
    fn content(&self, i: usize) -> &str {
        let line = self.lines.get(i).copied().unwrap_or("");
        line[..comment_start(line)].trim_end()
    }

    fn indent(&self, i: usize) -> usize {
        let c = self.content(i);
        c.len() - c.trim_start_matches(' ').len()
    }

    fn is_blank(&self, i: usize) -> bool {
        self.content(i).trim().is_empty()
    }

    /// A value that starts at byte `at` of line `i` (after `key:`), or on the following more
    /// indented lines when the rest of the line is empty. Returns the node and the next line.
    fn value(&mut self, i: usize, at: usize, parent_indent: usize) -> (Node, usize) {
        let content = self.content(i).to_string();
        let rest = content[at..].trim_start();
        let at = content.len() - rest.len();
        if !rest.is_empty() {
            let node = if rest.starts_with('[') {
                self.flow_seq(i, &content, at)
            } else if rest.starts_with('{') {
                Node {
                    kind: NodeKind::Map,
                    start: (i, col_of(&content, at)),
                    end: (i, col_of(&content, content.len())),
                }
            } else {
                match read_scalar(&content, at, &[]) {
                    Ok((s, start, end)) => Node {
                        kind: NodeKind::Scalar(s),
                        start: (i, col_of(&content, start)),
                        end: (i, col_of(&content, end)),
                    },
                    Err(why) => self.bad(i, at, why),
                }
            };
            return (node, i + 1);
        }
        // A block value on the next non-blank, more indented lines.
        let mut j = i + 1;
        while j < self.lines.len() && self.is_blank(j) {
            j += 1;
        }
        let starts_item = |c: &str| c.trim_start().starts_with("- ") || c.trim() == "-";
        let nested = j < self.lines.len()
            && (self.indent(j) > parent_indent
                || (self.indent(j) == parent_indent && starts_item(self.content(j))));
        if !nested {
            let col = col_of(&content, content.len());
            return (
                Node {
                    kind: NodeKind::Scalar(Scalar::Other("null".to_string())),
                    start: (i, col),
                    end: (i, col),
                },
                i + 1,
            );
        }
        let indent = self.indent(j);
        let first = self.content(j).trim_start();
        if first.starts_with('-') {
            return self.block_seq(j, indent);
        }
        // A nested mapping: skip it whole.
        let start = (j, indent);
        let mut k = j;
        while k < self.lines.len() && (self.is_blank(k) || self.indent(k) >= indent) {
            k += 1;
        }
        (
            Node {
                kind: NodeKind::Map,
                start,
                end: (k, 0),
            },
            k,
        )
    }

    fn bad(&mut self, i: usize, at: usize, why: &str) -> Node {
        let content = self.content(i).to_string();
        let start = (i, col_of(&content, at));
        let end = (i, col_of(&content, content.len()));
        self.errors
            .push(error(format!("invalid YAML: {why}"), start, end));
        Node {
            kind: NodeKind::Map,
            start,
            end,
        }
    }

    fn flow_seq(&mut self, i: usize, content: &str, at: usize) -> Node {
        let mut items = Vec::new();
        let mut pos = at + 1;
        loop {
            let rest = &content[pos..];
            let skipped = rest.len() - rest.trim_start().len();
            pos += skipped;
            if content[pos..].starts_with(']') {
                return Node {
                    kind: NodeKind::Seq(items),
                    start: (i, col_of(content, at)),
                    end: (i, col_of(content, pos + 1)),
                };
            }
            if pos >= content.len() {
                return self.bad(i, at, "unterminated flow sequence");
            }
            match read_scalar(content, pos, &[',', ']']) {
                Ok((s, start, end)) => {
                    items.push(Node {
                        kind: NodeKind::Scalar(s),
                        start: (i, col_of(content, start)),
                        end: (i, col_of(content, end)),
                    });
                    pos = end;
                }
                Err(why) => return self.bad(i, pos, why),
            }
            let rest = &content[pos..];
            pos += rest.len() - rest.trim_start().len();
            if content[pos..].starts_with(',') {
                pos += 1;
            } else if !content[pos..].starts_with(']') {
                return self.bad(i, pos, "expected ',' or ']' in a flow sequence");
            }
        }
    }

    /// A block sequence whose items start at `indent` from line `i`.
    fn block_seq(&mut self, i: usize, indent: usize) -> (Node, usize) {
        let mut items = Vec::new();
        let mut j = i;
        let mut last = i;
        while j < self.lines.len() {
            if self.is_blank(j) {
                j += 1;
                continue;
            }
            let content = self.content(j).to_string();
            if self.indent(j) != indent
                || !(content[indent..].starts_with("- ") || content[indent..] == *"-")
            {
                break;
            }
            let (node, next) = self.value(j, indent + 1, indent);
            items.push(node);
            last = next - 1;
            j = next;
        }
        // The sequence ends after the line break of its last line, as YAML ranges do.
        let end = if last + 1 < self.lines.len() {
            (last + 1, 0)
        } else {
            let content = self.content(last);
            (last, col_of(content, content.len()))
        };
        (
            Node {
                kind: NodeKind::Seq(items),
                start: (i, indent),
                end,
            },
            j,
        )
    }
}

/// Decodes the URL escapes upstream decodes before checking a path (`%2e`, `%2f`, `%5c`).
fn decode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 3).map(str::to_ascii_lowercase);
        let decoded = match code.as_deref() {
            Some("2e") => Some('.'),
            Some("2f") => Some('/'),
            Some("5c") => Some('\\'),
            _ => None,
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[at + 3..];
            }
            None => {
                out.push('%');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Parses an `fga.mod` file (see the module documentation).
pub fn parse_mod_file(text: &str) -> Result<ModFile, DslErrors> {
    let mut reader = Reader {
        lines: text
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .collect(),
        errors: Vec::new(),
    };
    let mut schema_node = None;
    let mut contents_node = None;
    let mut i = 0;
    while i < reader.lines.len() {
        if reader.is_blank(i) {
            i += 1;
            continue;
        }
        let content = reader.content(i).to_string();
        if reader.indent(i) != 0 {
            reader.bad(i, 0, "unexpected indentation");
            i += 1;
            continue;
        }
        let Some(colon) = content
            .find(':')
            .filter(|c| content[c + 1..].is_empty() || content[c + 1..].starts_with([' ', '\t']))
        else {
            reader.bad(i, 0, "expected a 'key: value' line");
            i += 1;
            continue;
        };
        let key = content[..colon]
            .trim()
            .trim_matches(['"', '\''])
            .to_string();
        let (node, next) = reader.value(i, colon + 1, 0);
        match key.as_str() {
            "schema" => schema_node = Some(node),
            "contents" => contents_node = Some(node),
            _ => {}
        }
        i = next;
    }
    let mut errors = reader.errors;
    let origin = ((0, 0), (0, 0));

    let schema = match &schema_node {
        None => {
            errors.push(error(
                "missing schema field".to_string(),
                origin.0,
                origin.1,
            ));
            None
        }
        Some(node) => match &node.kind {
            NodeKind::Scalar(Scalar::Str(s)) if s == "1.2" => Some(property(s.clone(), node)),
            NodeKind::Scalar(Scalar::Str(_)) => {
                errors.push(error(
                    "unsupported schema version, fga.mod only supported in version `1.2`"
                        .to_string(),
                    node.start,
                    node.end,
                ));
                None
            }
            kind => {
                errors.push(error(
                    format!(
                        "unexpected schema type, expected string got value {}",
                        printed(kind)
                    ),
                    node.start,
                    node.end,
                ));
                None
            }
        },
    };

    let contents = match &contents_node {
        None => {
            errors.push(error(
                "missing contents field".to_string(),
                origin.0,
                origin.1,
            ));
            None
        }
        Some(node) => match &node.kind {
            NodeKind::Seq(items) => {
                let mut files = Vec::new();
                for item in items {
                    let NodeKind::Scalar(Scalar::Str(value)) = &item.kind else {
                        errors.push(error(
                            format!(
                                "unexpected contents item type, expected string got value {}",
                                printed(&item.kind)
                            ),
                            item.start,
                            item.end,
                        ));
                        continue;
                    };
                    let path = decode_path(value);
                    if path.contains("../") || path.contains("..\\") || path.starts_with('/') {
                        errors.push(error(
                            format!("invalid contents item {value}"),
                            item.start,
                            item.end,
                        ));
                        continue;
                    }
                    if !path.ends_with(".fga") {
                        errors.push(error(
                            format!("contents items should use fga file extension, got {value}"),
                            item.start,
                            item.end,
                        ));
                        continue;
                    }
                    files.push(property(path, item));
                }
                Some(property(files, node))
            }
            kind => {
                errors.push(error(
                    format!(
                        "unexpected contents type, expected list of strings got value {}",
                        printed(kind)
                    ),
                    node.start,
                    node.end,
                ));
                None
            }
        },
    };

    match (schema, contents) {
        (Some(schema), Some(contents)) if errors.is_empty() => Ok(ModFile { schema, contents }),
        _ => Err(DslErrors { errors }),
    }
}

/// How upstream prints a non-string value in its messages.
fn printed(kind: &NodeKind) -> String {
    match kind {
        NodeKind::Scalar(s) => s.printed().to_string(),
        NodeKind::Seq(items) => items
            .iter()
            .map(|i| printed(&i.kind))
            .collect::<Vec<_>>()
            .join(","),
        NodeKind::Map => "a mapping".to_string(),
    }
}
