//! The integration tests of `trustgate-authz`, gathered into one binary so the stack is
//! linked once.

mod language_support;

mod conditions;
mod conditions_props;
mod engine_check;
mod engine_explain;
mod engine_index;
mod engine_matrix;
mod engine_proptest;
mod json_model_restrictions;
mod language_modules;
mod language_props;
mod language_transformer;
mod language_validation;
mod validation_bounds;
