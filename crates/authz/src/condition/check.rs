//! Static checks of a parsed condition expression, standing in for cel-go's type checker.
//!
//! cel 0.15 has no checker, so this walks the AST with the declared parameter types and infers
//! the type of each node where it can. It rejects what cel-go's checker rejects in OpenFGA and can
//! be decided without running the expression:
//!
//! - identifiers that are neither declared parameters nor comprehension variables;
//! - functions outside OpenFGA's environment (cel-go's standard library plus `in_cidr`), and
//!   calls with the wrong number of arguments;
//! - operators and functions applied to types that have no such overload (`1 && true`,
//!   `"a" - "b"`, `ip.in_cidr(1)`, `s.startsWith(1)`, field selection on an `int`, ...);
//! - an expression whose result is not `bool`.
//!
//! `any` parameters, and whatever is derived from them, have the dynamic type and pass every
//! check, as in cel-go; such expressions are checked again when they run. The walk also records
//! which parameters the expression references and bounds the nesting depth, which bounds the
//! recursion of the evaluator too.

use super::functions::{GO_DURATION, GO_TIMESTAMP};
use super::ipaddress::{IN_CIDR, IPADDRESS};
use super::params::ParamType;
use cel::common::ast::{EntryExpr, Expr, LiteralValue, operators};
use cel::parser::Expression;
use indexmap::IndexMap;
use std::fmt;

/// The deepest expression tree accepted, in nodes from the root.
///
/// cel's evaluator recurses once per level with a large frame (about 32 KiB per level in a debug
/// build), and evaluation runs on the caller's thread, often a 2 MiB async worker. 32 levels keep
/// evaluation within about 1 MiB there while leaving room for any real condition: `&&`/`||`
/// chains are balanced by the parser (depth log n), and a nested comprehension costs a handful
/// of levels.
pub(crate) const MAX_DEPTH: usize = 32;

/// A statically known type, or `Dyn` when it is only known at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ty {
    Dyn,
    Bool,
    Int,
    Uint,
    Double,
    String,
    Bytes,
    Null,
    Duration,
    Timestamp,
    IpAddress,
    Type,
    List(Box<Ty>),
    Map(Box<Ty>, Box<Ty>),
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ty::Dyn => f.write_str("dyn"),
            Ty::Bool => f.write_str("bool"),
            Ty::Int => f.write_str("int"),
            Ty::Uint => f.write_str("uint"),
            Ty::Double => f.write_str("double"),
            Ty::String => f.write_str("string"),
            Ty::Bytes => f.write_str("bytes"),
            Ty::Null => f.write_str("null_type"),
            Ty::Duration => f.write_str("google.protobuf.Duration"),
            Ty::Timestamp => f.write_str("google.protobuf.Timestamp"),
            Ty::IpAddress => f.write_str("IPAddress"),
            Ty::Type => f.write_str("type"),
            Ty::List(t) => write!(f, "list({t})"),
            Ty::Map(k, v) => write!(f, "map({k}, {v})"),
        }
    }
}

impl Ty {
    fn of_param(p: &ParamType) -> Ty {
        match p {
            ParamType::Any => Ty::Dyn,
            ParamType::Bool => Ty::Bool,
            ParamType::String => Ty::String,
            ParamType::Int => Ty::Int,
            ParamType::Uint => Ty::Uint,
            ParamType::Double => Ty::Double,
            ParamType::Duration => Ty::Duration,
            ParamType::Timestamp => Ty::Timestamp,
            ParamType::IpAddress => Ty::IpAddress,
            ParamType::List(t) => Ty::List(Box::new(Ty::of_param(t))),
            ParamType::Map(t) => Ty::Map(Box::new(Ty::String), Box::new(Ty::of_param(t))),
        }
    }

    fn is_dyn(&self) -> bool {
        matches!(self, Ty::Dyn)
    }

    fn is_numeric(&self) -> bool {
        matches!(self, Ty::Int | Ty::Uint | Ty::Double)
    }

    /// Whether a value of this type may be `want` at run time.
    fn may_be(&self, want: &Ty) -> bool {
        self.is_dyn() || want.is_dyn() || self == want || self.same_kind(want)
    }

    /// Same container kind (`list(int)` vs `list(dyn)`): element types are not compared.
    fn same_kind(&self, other: &Ty) -> bool {
        matches!(
            (self, other),
            (Ty::List(_), Ty::List(_)) | (Ty::Map(_, _), Ty::Map(_, _))
        )
    }

    /// The type two branches or elements share, or `Dyn`.
    fn join(a: Ty, b: Ty) -> Ty {
        if a == b { a } else { Ty::Dyn }
    }
}

/// Checks `expr` against the declared parameters.
pub(crate) fn check(expr: &Expression, params: &IndexMap<String, ParamType>) -> Result<(), String> {
    let mut checker = Checker {
        params,
        scopes: Vec::new(),
    };
    let output = checker.infer(expr, 0)?;
    if !(output == Ty::Bool || output.is_dyn()) {
        return Err(format!(
            "expected a bool condition expression output, but got '{output}'"
        ));
    }
    Ok(())
}

struct Checker<'a> {
    params: &'a IndexMap<String, ParamType>,
    /// Comprehension variables in scope, innermost last.
    scopes: Vec<(String, Ty)>,
}

fn no_overload(function: &str, args: &[&Ty]) -> String {
    let types: Vec<String> = args.iter().map(ToString::to_string).collect();
    format!(
        "found no matching overload for '{function}' applied to '({})'",
        types.join(", ")
    )
}

fn no_member_overload(function: &str, receiver: &Ty, args: &[&Ty]) -> String {
    let types: Vec<String> = args.iter().map(ToString::to_string).collect();
    format!(
        "found no matching overload for '{function}' applied to '{receiver}.({})'",
        types.join(", ")
    )
}

/// The type names an expression may use as values (`type(x) == string`).
fn is_type_name(name: &str) -> bool {
    matches!(
        name,
        "bool"
            | "int"
            | "uint"
            | "double"
            | "string"
            | "bytes"
            | "list"
            | "map"
            | "null_type"
            | "type"
    )
}

impl Checker<'_> {
    fn lookup(&mut self, name: &str) -> Result<Ty, String> {
        if let Some((_, ty)) = self.scopes.iter().rev().find(|(n, _)| n == name) {
            return Ok(ty.clone());
        }
        if let Some(param) = self.params.get(name) {
            return Ok(Ty::of_param(param));
        }
        if is_type_name(name) {
            return Ok(Ty::Type);
        }
        Err(format!(
            "undeclared reference to '{name}' (in container '')"
        ))
    }

    fn infer(&mut self, expr: &Expression, depth: usize) -> Result<Ty, String> {
        if depth > MAX_DEPTH {
            return Err(format!("expression nests deeper than {MAX_DEPTH} levels"));
        }
        let depth = depth + 1;
        match &expr.expr {
            Expr::Unspecified => Err("unspecified expression".to_owned()),
            Expr::Literal(lit) => Ok(match lit {
                LiteralValue::Boolean(_) => Ty::Bool,
                LiteralValue::Bytes(_) => Ty::Bytes,
                LiteralValue::Double(_) => Ty::Double,
                LiteralValue::Int(_) => Ty::Int,
                LiteralValue::Null => Ty::Null,
                LiteralValue::String(_) => Ty::String,
                LiteralValue::UInt(_) => Ty::Uint,
            }),
            Expr::Ident(name) => self.lookup(name),
            Expr::Select(select) => {
                let operand = self.infer(&select.operand, depth)?;
                let value = match &operand {
                    Ty::Map(_, v) => (**v).clone(),
                    Ty::Dyn => Ty::Dyn,
                    other => {
                        return Err(format!("type '{other}' does not support field selection"));
                    }
                };
                Ok(if select.test { Ty::Bool } else { value })
            }
            Expr::List(list) => {
                let mut elem: Option<Ty> = None;
                for e in &list.elements {
                    let t = self.infer(e, depth)?;
                    elem = Some(match elem {
                        None => t,
                        Some(prev) => Ty::join(prev, t),
                    });
                }
                Ok(Ty::List(Box::new(elem.unwrap_or(Ty::Dyn))))
            }
            Expr::Map(map) => {
                let mut key_ty: Option<Ty> = None;
                let mut val_ty: Option<Ty> = None;
                for entry in &map.entries {
                    let EntryExpr::MapEntry(e) = &entry.expr else {
                        return Err("struct fields are not allowed in a map literal".to_owned());
                    };
                    let k = self.infer(&e.key, depth)?;
                    if !matches!(k, Ty::Dyn | Ty::Bool | Ty::Int | Ty::Uint | Ty::String) {
                        return Err(format!("unsupported map key type: {k}"));
                    }
                    let v = self.infer(&e.value, depth)?;
                    key_ty = Some(match key_ty {
                        None => k,
                        Some(prev) => Ty::join(prev, k),
                    });
                    val_ty = Some(match val_ty {
                        None => v,
                        Some(prev) => Ty::join(prev, v),
                    });
                }
                Ok(Ty::Map(
                    Box::new(key_ty.unwrap_or(Ty::Dyn)),
                    Box::new(val_ty.unwrap_or(Ty::Dyn)),
                ))
            }
            Expr::Struct(s) => Err(format!("undeclared reference to '{}'", s.type_name)),
            Expr::Comprehension(c) => {
                let range = self.infer(&c.iter_range, depth)?;
                let (first, second) = match &range {
                    Ty::List(e) => (Ty::Int, (**e).clone()),
                    Ty::Map(k, v) => ((**k).clone(), (**v).clone()),
                    Ty::Dyn => (Ty::Dyn, Ty::Dyn),
                    other => {
                        return Err(format!(
                            "expression of type '{other}' cannot be range of a comprehension (must be list, map, or dynamic)"
                        ));
                    }
                };
                let accu = self.infer(&c.accu_init, depth)?;
                let base = self.scopes.len();
                match &c.iter_var2 {
                    // Two-variable form: index/key and element/value.
                    Some(var2) => {
                        self.scopes.push((c.iter_var.clone(), first));
                        self.scopes.push((var2.clone(), second));
                    }
                    None => {
                        let single = match &range {
                            Ty::List(_) => second,
                            _ => first,
                        };
                        self.scopes.push((c.iter_var.clone(), single));
                    }
                }
                // The accumulator's type can change across steps (`[]` then `[x]`); dyn
                // unless the initial and stepped types agree.
                self.scopes.push((c.accu_var.clone(), accu.clone()));
                let result = (|| {
                    let cond = self.infer(&c.loop_cond, depth)?;
                    if !cond.may_be(&Ty::Bool) {
                        return Err(no_overload("loop condition", &[&cond]));
                    }
                    let step = self.infer(&c.loop_step, depth)?;
                    let accu_ty = Ty::join(accu, step);
                    if let Some(slot) = self.scopes.last_mut() {
                        slot.1 = accu_ty;
                    }
                    self.infer(&c.result, depth)
                })();
                self.scopes.truncate(base);
                result
            }
            Expr::Call(call) => {
                if let Some(target) = &call.target {
                    let receiver = self.infer(target, depth)?;
                    let mut args = Vec::with_capacity(call.args.len());
                    for a in &call.args {
                        args.push(self.infer(a, depth)?);
                    }
                    member_call(&call.func_name, &receiver, &args)
                } else {
                    let mut args = Vec::with_capacity(call.args.len());
                    for a in &call.args {
                        args.push(self.infer(a, depth)?);
                    }
                    global_call(&call.func_name, &args)
                }
            }
        }
    }
}

fn arity(function: &str, args: &[Ty], n: usize) -> Result<(), String> {
    if args.len() == n {
        Ok(())
    } else {
        let refs: Vec<&Ty> = args.iter().collect();
        Err(no_overload(function, &refs))
    }
}

/// Arithmetic result types, as cel-go's standard overloads declare them.
fn arithmetic(op: &str, a: &Ty, b: &Ty) -> Option<Ty> {
    if a.is_dyn() || b.is_dyn() {
        // One known side still narrows some results, but dyn is always safe.
        return Some(Ty::Dyn);
    }
    let same_numeric = a == b && a.is_numeric();
    Some(match op {
        operators::ADD => match (a, b) {
            _ if same_numeric => a.clone(),
            (Ty::String, Ty::String) => Ty::String,
            (Ty::Bytes, Ty::Bytes) => Ty::Bytes,
            (Ty::List(x), Ty::List(y)) => {
                Ty::List(Box::new(Ty::join((**x).clone(), (**y).clone())))
            }
            (Ty::Duration, Ty::Duration) => Ty::Duration,
            (Ty::Timestamp, Ty::Duration) | (Ty::Duration, Ty::Timestamp) => Ty::Timestamp,
            _ => return None,
        },
        operators::SUBSTRACT => match (a, b) {
            _ if same_numeric => a.clone(),
            (Ty::Duration, Ty::Duration) | (Ty::Timestamp, Ty::Timestamp) => Ty::Duration,
            (Ty::Timestamp, Ty::Duration) => Ty::Timestamp,
            _ => return None,
        },
        operators::MULTIPLY | operators::DIVIDE if same_numeric => a.clone(),
        operators::MODULO if a == b && matches!(a, Ty::Int | Ty::Uint) => a.clone(),
        _ => return None,
    })
}

/// Whether `<`, `<=`, `>`, `>=` are declared for the pair (cel-go declares cross-numeric ones).
fn comparable(a: &Ty, b: &Ty) -> bool {
    if a.is_dyn() || b.is_dyn() {
        return true;
    }
    if a.is_numeric() && b.is_numeric() {
        return true;
    }
    a == b
        && matches!(
            a,
            Ty::Bool | Ty::String | Ty::Bytes | Ty::Duration | Ty::Timestamp
        )
}

/// Whether `==` is declared for the pair. cel-go's `_==_` takes two arguments of one type;
/// numbers compare across types at run time, so only clearly different kinds are refused.
fn equatable(a: &Ty, b: &Ty) -> bool {
    if a.is_dyn() || b.is_dyn() || a == b || a.same_kind(b) {
        return true;
    }
    if a.is_numeric() && b.is_numeric() {
        return true;
    }
    // `null` compares with anything nullable in cel-go; keep it permissive.
    matches!(a, Ty::Null) || matches!(b, Ty::Null)
}

fn global_call(name: &str, args: &[Ty]) -> Result<Ty, String> {
    let refs: Vec<&Ty> = args.iter().collect();
    let fail = || Err(no_overload(name, &refs));
    match name {
        operators::LOGICAL_AND | operators::LOGICAL_OR => {
            arity(name, args, 2)?;
            if args.iter().all(|a| a.may_be(&Ty::Bool)) {
                Ok(Ty::Bool)
            } else {
                fail()
            }
        }
        operators::LOGICAL_NOT => {
            arity(name, args, 1)?;
            if args[0].may_be(&Ty::Bool) {
                Ok(Ty::Bool)
            } else {
                fail()
            }
        }
        operators::NOT_STRICTLY_FALSE => {
            arity(name, args, 1)?;
            Ok(Ty::Bool)
        }
        operators::CONDITIONAL => {
            arity(name, args, 3)?;
            if !args[0].may_be(&Ty::Bool) {
                return fail();
            }
            Ok(Ty::join(args[1].clone(), args[2].clone()))
        }
        operators::EQUALS | operators::NOT_EQUALS => {
            arity(name, args, 2)?;
            if equatable(&args[0], &args[1]) {
                Ok(Ty::Bool)
            } else {
                fail()
            }
        }
        operators::LESS
        | operators::LESS_EQUALS
        | operators::GREATER
        | operators::GREATER_EQUALS => {
            arity(name, args, 2)?;
            if comparable(&args[0], &args[1]) {
                Ok(Ty::Bool)
            } else {
                fail()
            }
        }
        operators::ADD
        | operators::SUBSTRACT
        | operators::MULTIPLY
        | operators::DIVIDE
        | operators::MODULO => {
            arity(name, args, 2)?;
            arithmetic(name, &args[0], &args[1]).map_or_else(fail, Ok)
        }
        operators::NEGATE => {
            arity(name, args, 1)?;
            match &args[0] {
                Ty::Int | Ty::Double | Ty::Dyn => Ok(args[0].clone()),
                _ => fail(),
            }
        }
        operators::INDEX => {
            arity(name, args, 2)?;
            match (&args[0], &args[1]) {
                (Ty::List(e), Ty::Int | Ty::Uint | Ty::Double | Ty::Dyn) => Ok((**e).clone()),
                (Ty::Map(k, v), key) if key.may_be(k) || key.is_numeric() && k.is_numeric() => {
                    Ok((**v).clone())
                }
                (Ty::Dyn, _) => Ok(Ty::Dyn),
                _ => fail(),
            }
        }
        operators::IN => {
            arity(name, args, 2)?;
            match &args[1] {
                Ty::List(_) | Ty::Map(_, _) | Ty::Dyn => Ok(Ty::Bool),
                _ => fail(),
            }
        }
        "size" => {
            arity(name, args, 1)?;
            match &args[0] {
                Ty::String | Ty::Bytes | Ty::List(_) | Ty::Map(_, _) | Ty::Dyn => Ok(Ty::Int),
                _ => fail(),
            }
        }
        "matches" => {
            arity(name, args, 2)?;
            if args[0].may_be(&Ty::String) && args[1].may_be(&Ty::String) {
                Ok(Ty::Bool)
            } else {
                fail()
            }
        }
        "int" | "uint" | "double" | "string" | "bytes" | "bool" | "dyn" | "type" => {
            arity(name, args, 1)?;
            Ok(match name {
                "int" => Ty::Int,
                "uint" => Ty::Uint,
                "double" => Ty::Double,
                "string" => Ty::String,
                "bytes" => Ty::Bytes,
                "bool" => Ty::Bool,
                "type" => Ty::Type,
                _ => Ty::Dyn,
            })
        }
        IPADDRESS => {
            arity(name, args, 1)?;
            if args[0].may_be(&Ty::String) {
                Ok(Ty::IpAddress)
            } else {
                fail()
            }
        }
        "duration" | GO_DURATION => {
            arity(name, args, 1)?;
            match &args[0] {
                Ty::String | Ty::Duration | Ty::Dyn => Ok(Ty::Duration),
                _ => fail(),
            }
        }
        "timestamp" | GO_TIMESTAMP => {
            arity(name, args, 1)?;
            match &args[0] {
                Ty::String | Ty::Timestamp | Ty::Int | Ty::Dyn => Ok(Ty::Timestamp),
                _ => fail(),
            }
        }
        _ => Err(format!(
            "undeclared reference to '{name}' (in container '')"
        )),
    }
}

fn member_call(name: &str, receiver: &Ty, args: &[Ty]) -> Result<Ty, String> {
    let refs: Vec<&Ty> = args.iter().collect();
    let fail = || Err(no_member_overload(name, receiver, &refs));
    let string_arg = args.len() == 1 && args[0].may_be(&Ty::String);
    match name {
        "size" => match receiver {
            Ty::String | Ty::Bytes | Ty::List(_) | Ty::Map(_, _) | Ty::Dyn if args.is_empty() => {
                Ok(Ty::Int)
            }
            _ => fail(),
        },
        "contains" | "startsWith" | "endsWith" | "matches" => {
            if receiver.may_be(&Ty::String) && string_arg {
                Ok(Ty::Bool)
            } else {
                fail()
            }
        }
        IN_CIDR => {
            if receiver.may_be(&Ty::IpAddress) && string_arg {
                Ok(Ty::Bool)
            } else {
                fail()
            }
        }
        "getFullYear" | "getMonth" | "getDayOfYear" | "getDayOfMonth" | "getDate"
        | "getDayOfWeek" => {
            let tz_ok = args.is_empty() || string_arg;
            if receiver.may_be(&Ty::Timestamp) && tz_ok {
                Ok(Ty::Int)
            } else {
                fail()
            }
        }
        "getHours" | "getMinutes" | "getSeconds" | "getMilliseconds" => {
            let ok = match receiver {
                Ty::Duration => args.is_empty(),
                Ty::Timestamp | Ty::Dyn => args.is_empty() || string_arg,
                _ => false,
            };
            if ok { Ok(Ty::Int) } else { fail() }
        }
        _ => Err(format!(
            "undeclared reference to '{name}' (in container '')"
        )),
    }
}
