//! The one place the engine evaluates a tuple's condition.
//!
//! OpenFGA semantics: a tuple without a condition always holds; a conditioned tuple holds when
//! its condition evaluates to true over the tuple's stored context merged with the request
//! context (the tuple's values win; the merge is done by [`crate::condition::ConditionSet`]).
//! Missing parameters or an evaluation failure is an error (`validation_error`), never "holds".

use serde_json::{Map, Value};

use crate::condition::ConditionOutcome;

use super::error::EngineError;
use super::reader::TupleView;
use super::typesystem::TypeSystem;

/// Whether `tuple` holds under `request_context`.
pub(crate) fn tuple_holds(
    ts: &TypeSystem,
    tuple: &TupleView<'_>,
    request_context: Option<&Map<String, Value>>,
) -> Result<bool, EngineError> {
    let Some(cond) = tuple.condition else {
        return Ok(true);
    };
    match ts
        .conditions()
        .evaluate(&cond.name, cond.context.as_ref(), request_context)
    {
        Ok(ConditionOutcome::Met) => Ok(true),
        Ok(ConditionOutcome::NotMet) => Ok(false),
        Ok(ConditionOutcome::MissingParameters(missing)) => Err(EngineError::Validation(format!(
            "failed to evaluate relationship condition '{}': tuple '{}' is missing context parameters '{}'",
            cond.name,
            tuple.to_tuple_string(),
            missing.join(", ")
        ))),
        Err(e) => Err(EngineError::Validation(format!(
            "failed to evaluate relationship condition '{}' on tuple '{}': {e}",
            cond.name,
            tuple.to_tuple_string()
        ))),
    }
}
