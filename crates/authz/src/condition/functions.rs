//! The CEL environment conditions run in: cel's standard library, OpenFGA's `in_cidr`, and Go's
//! parsing of `duration(..)` and `timestamp(..)` strings.
//!
//! cel's `duration("1hxyz")` returns one hour (its parser ignores what it cannot read), and its
//! `timestamp(..)` accepts spellings Go's RFC 3339 layout refuses. Standard overloads cannot be
//! replaced on an [`Env`], so [`rewrite`] renames those calls in the parsed expression to
//! `@duration` / `@timestamp` (names no source text can spell, since `@` starts no identifier),
//! which are declared here with [`super::go_time`]'s parsers.

use super::go_time;
use super::ipaddress;
use cel::common::ast::Expr;
use cel::common::types::{
    CelDuration, CelInt, CelString, CelTimestamp, DURATION_TYPE, INT_TYPE, STRING_TYPE,
    TIMESTAMP_TYPE,
};
use cel::common::value::CowVal;
use cel::parser::Expression;
use cel::{DeclarationError, Env, ExecutionError};
use std::sync::{Arc, LazyLock};

/// The name `duration(..)` calls are rewritten to.
pub(crate) const GO_DURATION: &str = "@duration";
/// The name `timestamp(..)` calls are rewritten to.
pub(crate) const GO_TIMESTAMP: &str = "@timestamp";

/// The environment, built once per process: it holds no per-model state (parameters are bound
/// per evaluation through a resolver), so every condition of every model shares it.
static ENV: LazyLock<Result<Arc<Env>, String>> =
    LazyLock::new(|| build_env().map(Arc::new).map_err(|e| e.to_string()));

/// The shared environment, or why it could not be built (a programming error, reported as a
/// compile error rather than a panic).
pub(crate) fn env() -> Result<Arc<Env>, String> {
    ENV.clone()
}

fn build_env() -> Result<Env, DeclarationError> {
    // Optional syntax (`a.?b`) is not part of OpenFGA's CEL environment.
    let mut env = Env::stdlib().with_optional_support(false);
    ipaddress::register(&mut env)?;
    env.add_overload(
        GO_DURATION,
        "go_string_to_duration",
        vec![STRING_TYPE],
        go_duration,
    )?;
    env.add_overload(
        GO_DURATION,
        "go_duration_to_duration",
        vec![DURATION_TYPE],
        identity,
    )?;
    env.add_overload(
        GO_TIMESTAMP,
        "go_string_to_timestamp",
        vec![STRING_TYPE],
        go_timestamp,
    )?;
    env.add_overload(
        GO_TIMESTAMP,
        "go_timestamp_to_timestamp",
        vec![TIMESTAMP_TYPE],
        identity,
    )?;
    env.add_overload(
        GO_TIMESTAMP,
        "go_int_to_timestamp",
        vec![INT_TYPE],
        unix_timestamp,
    )?;
    Ok(env)
}

fn single<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let count = args.len();
    let mut args = args.into_iter();
    match (args.next(), args.next()) {
        (Some(arg), None) => Ok(arg),
        _ => Err(ExecutionError::invalid_argument_count(1, count)),
    }
}

fn identity<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    single(args)
}

fn go_duration<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let arg = single(args)?;
    let s = arg
        .downcast_ref::<CelString>()
        .ok_or_else(|| ExecutionError::function_error("duration", "expected a string"))?;
    let d = go_time::parse_duration(s.inner())
        .map_err(|e| ExecutionError::function_error("duration", e))?;
    Ok(CowVal::owned(CelDuration::from(d)))
}

fn go_timestamp<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let arg = single(args)?;
    let s = arg
        .downcast_ref::<CelString>()
        .ok_or_else(|| ExecutionError::function_error("timestamp", "expected a string"))?;
    let t = go_time::parse_timestamp(s.inner())
        .map_err(|e| ExecutionError::function_error("timestamp", e))?;
    Ok(CowVal::owned(CelTimestamp::from(t)))
}

fn unix_timestamp<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let arg = single(args)?;
    let secs = arg
        .downcast_ref::<CelInt>()
        .map(|i| *i.inner())
        .ok_or_else(|| ExecutionError::function_error("timestamp", "expected an int"))?;
    let t = chrono::DateTime::from_timestamp(secs, 0)
        .filter(|t| (1..=9999).contains(&chrono::Datelike::year(t)))
        .ok_or_else(|| ExecutionError::function_error("timestamp", "timestamp out of range"))?;
    Ok(CowVal::owned(CelTimestamp::from(t.fixed_offset())))
}

/// Renames global `duration(x)` / `timestamp(x)` calls to their Go-parsing versions. Iterative,
/// so no expression can exhaust the stack here (the parser bounds nesting anyway).
pub(crate) fn rewrite(expr: &mut Expression) {
    let mut stack: Vec<&mut Expression> = vec![expr];
    while let Some(node) = stack.pop() {
        match &mut node.expr {
            Expr::Call(call) => {
                if call.target.is_none() && call.args.len() == 1 {
                    if call.func_name == "duration" {
                        call.func_name = GO_DURATION.to_owned();
                    } else if call.func_name == "timestamp" {
                        call.func_name = GO_TIMESTAMP.to_owned();
                    }
                }
                if let Some(target) = call.target.as_deref_mut() {
                    stack.push(target);
                }
                stack.extend(call.args.iter_mut());
            }
            Expr::Comprehension(c) => {
                stack.push(&mut c.iter_range);
                stack.push(&mut c.accu_init);
                stack.push(&mut c.loop_cond);
                stack.push(&mut c.loop_step);
                stack.push(&mut c.result);
            }
            Expr::List(list) => stack.extend(list.elements.iter_mut()),
            Expr::Map(map) => {
                for entry in &mut map.entries {
                    if let cel::common::ast::EntryExpr::MapEntry(e) = &mut entry.expr {
                        stack.push(&mut e.key);
                        stack.push(&mut e.value);
                    }
                }
            }
            Expr::Struct(s) => {
                for entry in &mut s.entries {
                    match &mut entry.expr {
                        cel::common::ast::EntryExpr::MapEntry(e) => {
                            stack.push(&mut e.key);
                            stack.push(&mut e.value);
                        }
                        cel::common::ast::EntryExpr::StructField(f) => stack.push(&mut f.value),
                    }
                }
            }
            Expr::Select(select) => stack.push(&mut select.operand),
            Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
        }
    }
}
