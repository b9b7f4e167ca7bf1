//! The integration tests of `trustgate-pdp`, gathered into one binary so the stack is
//! linked once.

mod hot_path;
mod service;
mod system;
