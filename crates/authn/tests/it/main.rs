//! The integration tests of `trustgate-authn`, gathered into one binary so the stack is
//! linked once.

mod accounts;
mod password;
mod second_factor;
mod service_tokens;
mod throttle;
