//! OpenFGA-compatible CEL conditions: compiled once per model, evaluated per tuple.
//!
//! A model's `conditions` are CEL expressions over typed parameters (`condition in_office(ip:
//! ipaddress, cidr: string) { ip.in_cidr(cidr) }`). A tuple may name a condition and carry part
//! of its context; a check request carries the rest. This module reproduces OpenFGA's
//! `internal/condition` behaviour on top of the `cel` crate:
//!
//! - **Compile** ([`ConditionSet::compile`]): each expression is parsed once, checked against
//!   its declared parameters by `check` (cel 0.15 has no type checker: undeclared identifiers,
//!   unknown functions, definite type mismatches and a non-`bool` result are refused, as cel-go's
//!   checker refuses them), and kept as an AST. [`validate_condition`] runs the same checks for
//!   `WriteAuthorizationModel`.
//! - **Evaluate** ([`ConditionSet::evaluate`]): the tuple context is merged over the request
//!   context (the tuple's value wins on a conflicting key, as in OpenFGA), each declared
//!   parameter present is converted to its declared type by `params` (a wrong type is a
//!   [`ConditionError::ParameterType`], never a silent `false`), undeclared keys are ignored, and
//!   the AST is evaluated.
//! - **Missing parameters**: when a declared parameter is absent from both contexts the outcome
//!   is [`ConditionOutcome::MissingParameters`] with every absent declared parameter, sorted,
//!   and the expression is not evaluated, even where short-circuiting could decide
//!   (`true || missing`), exactly as OpenFGA answers; the caller decides (OpenFGA turns it into
//!   an error for that tuple).
//! - **Fail closed**: any evaluation error (missing map key, runtime type error, a malformed
//!   CIDR, the cost limit) is [`ConditionError::Evaluation`] and a non-`bool` result is an error;
//!   nothing but a `true` result yields [`ConditionOutcome::Met`].
//!
//! # How cel is extended
//!
//! - `ipaddress` is a [`cel::common::value::Val`] of our own with the member overload
//!   `in_cidr(string) -> bool` declared on the shared [`cel::Env`] (`ipaddress`).
//! - `duration(..)` / `timestamp(..)` calls are rewritten at compile time to overloads that
//!   parse with Go's rules, so literals and parameters accept exactly the same strings
//!   (`functions`, `go_time`).
//! - cel has no cost tracking: `cost` computes cel-go's runtime cost model over the AST and
//!   the bound values before evaluating, and refuses to run an expression over the limit
//!   (OpenFGA's default is 100).
//!
//! # Concurrency and performance
//!
//! A [`ConditionSet`] is immutable after `compile` and `Send + Sync`. It stores parsed ASTs
//! ([`cel::parser::Expression`], plain owned data) rather than `cel::Program`s, plus one
//! process-wide `Arc<Env>`; every evaluation builds a cheap per-call `cel::Context` whose
//! variable resolver reads the converted parameters from a local vector. Nothing is re-parsed
//! and no lock is taken on the evaluation path (about a microsecond per evaluation in release
//! builds for OpenFGA's documented examples).
//!
//! # Limits
//!
//! - Expressions are at most [`MAX_EXPRESSION_LENGTH`] bytes and 32 AST levels deep. cel
//!   evaluates recursively on the caller's thread with large frames; the depth bound keeps an
//!   evaluation within about 1 MiB of stack even in debug builds.
//! - Parsing runs on a short-lived thread with a large stack, because cel's ANTLR parser can
//!   exhaust a small stack on nested input before its own recursion limit answers. Compiling is
//!   once per model, so the thread start does not matter.
//! - Evaluation cost is capped as described above ([`DEFAULT_MAX_EVALUATION_COST`]).

mod check;
mod cost;
mod functions;
mod go_time;
mod ipaddress;
mod params;

pub use params::ParamType;

use crate::model::{AuthorizationModel, Condition};
use cel::common::types::CelBool;
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::parser::Expression;
use cel::{Context, Env, Value};
use indexmap::IndexMap;
use serde_json::{Map, Value as Json};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// OpenFGA's default `maxConditionEvaluationCost`.
pub const DEFAULT_MAX_EVALUATION_COST: u64 = 100;

/// The longest expression accepted, in bytes. OpenFGA bounds whole models rather than single
/// expressions; this keeps parse time and AST size bounded for any one condition.
pub const MAX_EXPRESSION_LENGTH: usize = 16 * 1024;

/// The result of evaluating a condition for one tuple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConditionOutcome {
    /// The expression evaluated to `true`.
    Met,
    /// The expression evaluated to `false`.
    NotMet,
    /// The result depends on these parameters, absent from both contexts (sorted by name).
    MissingParameters(Vec<String>),
}

/// Why a condition could not be compiled or evaluated. Messages follow OpenFGA's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConditionError {
    /// The model defines no condition of this name.
    #[error("failed to evaluate relationship condition: '{0}' - condition was not found")]
    NotDefined(String),
    /// The condition is invalid: its expression does not parse or check, or a parameter type is
    /// invalid.
    #[error("failed to compile expression on condition '{condition}' - {cause}")]
    Compile {
        /// The condition name.
        condition: String,
        /// What is wrong.
        cause: String,
    },
    /// A context value does not convert to its parameter's declared type.
    #[error(
        "parameter type error on condition '{condition}' - failed to convert context parameter '{parameter}': {cause}"
    )]
    ParameterType {
        /// The condition name.
        condition: String,
        /// The parameter whose value is wrong.
        parameter: String,
        /// What is wrong with it.
        cause: String,
    },
    /// Evaluation failed (runtime error, non-`bool` result, cost limit exceeded).
    #[error("failed to evaluate relationship condition: '{condition}' - {cause}")]
    Evaluation {
        /// The condition name.
        condition: String,
        /// What went wrong.
        cause: String,
    },
}

/// One compiled condition.
struct CompiledCondition {
    name: String,
    /// The checked and rewritten AST.
    expr: Expression,
    /// Declared parameters in declaration order.
    params: IndexMap<String, ParamType>,
}

/// The compiled conditions of one model; compile once per model, evaluate many times.
/// `Send + Sync`: share it behind an `Arc` across threads.
pub struct ConditionSet {
    env: Arc<Env>,
    conditions: HashMap<String, CompiledCondition>,
    max_cost: u64,
}

impl fmt::Debug for ConditionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.conditions.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("ConditionSet")
            .field("conditions", &names)
            .field("max_cost", &self.max_cost)
            .finish()
    }
}

/// Validates one condition as `WriteAuthorizationModel` must: its parameter types are valid
/// (`map`/`list` with exactly one generic type, other types none), its expression parses,
/// references only declared parameters and known functions, type-checks where types are known
/// statically, and produces a `bool`.
pub fn validate_condition(condition: &Condition) -> Result<(), ConditionError> {
    on_compiler_stack(|| compile_condition(&condition.name, condition))
        .map_err(|e| compile_error(&condition.name, e))?
        .map(|_| ())
}

/// Validates every condition of `model` (see [`validate_condition`]), compiling them all on one
/// parser thread; also checks that each condition's name matches its key.
pub fn validate_model_conditions(model: &AuthorizationModel) -> Result<(), ConditionError> {
    ConditionSet::compile(model).map(|_| ())
}

/// The stack for parsing and checking. cel's ANTLR-generated parser recurses through a dozen
/// grammar rules per nesting level with large frames: a few dozen parentheses exhaust a 2 MiB
/// thread stack in unoptimised builds before the parser's own recursion limit answers. Only the
/// pages actually used are committed, so a generous reservation costs nothing.
const COMPILER_STACK_BYTES: usize = 64 << 20;

/// Runs `f` on a thread with [`COMPILER_STACK_BYTES`] of stack and waits for it. Compiling
/// happens once per model, so the thread start (tens of microseconds) is not on any hot path. A
/// panic inside the parser becomes an error rather than unwinding into the caller.
fn on_compiler_stack<T: Send>(f: impl FnOnce() -> T + Send) -> Result<T, String> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("cel-compile".to_owned())
            .stack_size(COMPILER_STACK_BYTES)
            .spawn_scoped(scope, f)
            .map_err(|e| format!("could not start the compiler thread: {e}"))?
            .join()
            .map_err(|_| "the CEL parser failed unexpectedly".to_owned())
    })
}

fn compile_error(condition: &str, cause: impl Into<String>) -> ConditionError {
    ConditionError::Compile {
        condition: condition.to_owned(),
        cause: cause.into(),
    }
}

fn compile_condition(
    name: &str,
    condition: &Condition,
) -> Result<CompiledCondition, ConditionError> {
    let mut params = IndexMap::with_capacity(condition.parameters.len());
    for (param, type_ref) in &condition.parameters {
        let ty = ParamType::decode(type_ref).map_err(|e| {
            compile_error(
                name,
                format!("failed to decode parameter type for parameter '{param}': {e}"),
            )
        })?;
        params.insert(param.clone(), ty);
    }
    let source = condition.expression.as_str();
    if source.trim().is_empty() {
        return Err(compile_error(name, "the expression is empty"));
    }
    if source.len() > MAX_EXPRESSION_LENGTH {
        return Err(compile_error(
            name,
            format!("the expression is longer than {MAX_EXPRESSION_LENGTH} bytes"),
        ));
    }
    let env = functions::env().map_err(|e| compile_error(name, e))?;
    let mut expr = env
        .parser()
        .parse(source)
        .map_err(|e| compile_error(name, e.to_string()))?;
    check::check(&expr, &params).map_err(|e| compile_error(name, e))?;
    functions::rewrite(&mut expr);
    Ok(CompiledCondition {
        name: name.to_owned(),
        expr,
        params,
    })
}

impl ConditionSet {
    /// Compiles every condition of `model`. Fails on the first invalid condition.
    pub fn compile(model: &AuthorizationModel) -> Result<Self, ConditionError> {
        let env = functions::env().map_err(|e| compile_error("", e))?;
        let compile_all = || -> Result<HashMap<String, CompiledCondition>, ConditionError> {
            let mut conditions = HashMap::with_capacity(model.conditions.len());
            for (key, condition) in &model.conditions {
                if !condition.name.is_empty() && condition.name != *key {
                    return Err(compile_error(
                        key,
                        format!(
                            "the condition is keyed '{key}' but named '{}'",
                            condition.name
                        ),
                    ));
                }
                conditions.insert(key.clone(), compile_condition(key, condition)?);
            }
            Ok(conditions)
        };
        let conditions = if model.conditions.is_empty() {
            HashMap::new()
        } else {
            on_compiler_stack(compile_all).map_err(|e| compile_error("", e))??
        };
        Ok(ConditionSet {
            env,
            conditions,
            max_cost: DEFAULT_MAX_EVALUATION_COST,
        })
    }

    /// Sets the evaluation cost limit (OpenFGA's `maxConditionEvaluationCost`).
    #[must_use]
    pub fn with_max_evaluation_cost(mut self, max_cost: u64) -> Self {
        self.max_cost = max_cost;
        self
    }

    /// The evaluation cost limit in force.
    pub fn max_evaluation_cost(&self) -> u64 {
        self.max_cost
    }

    /// Whether the model defines condition `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.conditions.contains_key(name)
    }

    /// The declared parameters of condition `name`, in declaration order.
    pub fn parameters(&self, name: &str) -> Option<&IndexMap<String, ParamType>> {
        self.conditions.get(name).map(|c| &c.params)
    }

    /// The number of conditions.
    pub fn len(&self) -> usize {
        self.conditions.len()
    }

    /// Whether the model has no conditions.
    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    /// Evaluates condition `name` with the tuple's stored context merged with the request context
    /// (tuple context wins on conflicting keys, as in OpenFGA).
    pub fn evaluate(
        &self,
        name: &str,
        tuple_context: Option<&Map<String, Json>>,
        request_context: Option<&Map<String, Json>>,
    ) -> Result<ConditionOutcome, ConditionError> {
        let condition = self
            .conditions
            .get(name)
            .ok_or_else(|| ConditionError::NotDefined(name.to_owned()))?;
        condition.evaluate(&self.env, tuple_context, request_context, self.max_cost)
    }
}

impl ConditionSet {
    /// The raw values condition `name` is evaluated with: each declared parameter's value from
    /// the tuple's context, else from the request context (the merge rule of
    /// [`ConditionSet::evaluate`]); parameters in neither are absent. Empty for an unknown
    /// condition. For explanations: what a condition saw.
    pub fn arguments(
        &self,
        name: &str,
        tuple_context: Option<&Map<String, Json>>,
        request_context: Option<&Map<String, Json>>,
    ) -> Map<String, Json> {
        let Some(condition) = self.conditions.get(name) else {
            return Map::new();
        };
        condition
            .params
            .keys()
            .filter_map(|param| {
                let value = argument(param, tuple_context, request_context)?;
                Some((param.clone(), value.clone()))
            })
            .collect()
    }
}

/// The merge rule of tuple and request contexts: the tuple's value of a parameter wins.
fn argument<'c>(
    param: &str,
    tuple_context: Option<&'c Map<String, Json>>,
    request_context: Option<&'c Map<String, Json>>,
) -> Option<&'c Json> {
    tuple_context
        .and_then(|m| m.get(param))
        .or_else(|| request_context.and_then(|m| m.get(param)))
}

/// The converted parameter values of one evaluation, handed to cel as its variable resolver.
/// Every declared parameter has a value by then (a missing one ends evaluation before).
struct Bindings<'a> {
    params: &'a IndexMap<String, ParamType>,
    values: Vec<Option<Box<dyn Val>>>,
}

impl VariableResolver for Bindings<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let index = self.params.get_index_of(variable)?;
        let value = self.values.get(index)?.as_ref()?;
        Some(CowVal::Borrowed(value.as_ref()))
    }
}

impl CompiledCondition {
    fn evaluation_error(&self, cause: impl Into<String>) -> ConditionError {
        ConditionError::Evaluation {
            condition: self.name.clone(),
            cause: cause.into(),
        }
    }

    fn evaluate(
        &self,
        env: &Arc<Env>,
        tuple_context: Option<&Map<String, Json>>,
        request_context: Option<&Map<String, Json>>,
        max_cost: u64,
    ) -> Result<ConditionOutcome, ConditionError> {
        let has_context = tuple_context.is_some_and(|m| !m.is_empty())
            || request_context.is_some_and(|m| !m.is_empty());
        if has_context && self.params.is_empty() {
            // OpenFGA refuses a context for a condition that declares no parameters.
            return Err(self.evaluation_error("no parameters defined for the condition"));
        }
        let mut values: Vec<Option<Box<dyn Val>>> = Vec::with_capacity(self.params.len());
        for (param, ty) in &self.params {
            let value = match argument(param, tuple_context, request_context) {
                None => None,
                Some(raw) => {
                    Some(
                        ty.convert(raw)
                            .map_err(|cause| ConditionError::ParameterType {
                                condition: self.name.clone(),
                                parameter: param.clone(),
                                cause,
                            })?,
                    )
                }
            };
            values.push(value);
        }
        let mut missing: Vec<String> = self
            .params
            .keys()
            .zip(&values)
            .filter(|(_, value)| value.is_none())
            .map(|(name, _)| name.clone())
            .collect();
        if !missing.is_empty() {
            missing.sort_unstable();
            return Ok(ConditionOutcome::MissingParameters(missing));
        }

        let cost = cost::estimate(&self.expr, &self.params, &values);
        if cost > max_cost {
            return Err(self.evaluation_error(format!(
                "operation cancelled: actual cost limit exceeded (estimated cost {cost}, limit {max_cost})"
            )));
        }

        let bindings = Bindings {
            params: &self.params,
            values,
        };
        let mut context = Context::with_env(Arc::clone(env));
        context.set_variable_resolver(&bindings);
        let result = Value::resolve_val(&self.expr, &context);
        match result {
            Ok(value) => match value.downcast_ref::<CelBool>() {
                Some(b) if *b.inner() => Ok(ConditionOutcome::Met),
                Some(_) => Ok(ConditionOutcome::NotMet),
                None => Err(self.evaluation_error(format!(
                    "expected CEL type conversion to bool: got a value of type '{}'",
                    value.get_type().name()
                ))),
            },
            Err(error) => {
                Err(self
                    .evaluation_error(format!("failed to evaluate condition expression: {error}")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn condition_set_is_send_and_sync() {
        assert_send_sync::<ConditionSet>();
    }
}
