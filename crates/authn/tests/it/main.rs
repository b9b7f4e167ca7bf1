//! The integration tests of `trustgate-authn`, gathered into one binary so the stack is
//! linked once.

mod accounts;
mod api_keys;
mod certificates;
mod password;
mod second_factor;
mod throttle;
