//! The integration tests of `trustgate-oauth`, gathered into one binary so the stack is
//! linked once.

mod support;

mod authorize_decision;
mod clients;
mod dpop;
mod provider;
mod token_exchange;
