//! The integration tests of `trustgate-audit`, gathered into one binary so the stack is
//! linked once.

mod auditor;
mod chain;
