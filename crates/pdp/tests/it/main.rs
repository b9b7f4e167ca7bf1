//! The integration tests of `trustgate-pdp`, gathered into one binary so the stack is
//! linked once.

mod hot_path;
mod model_evolution;
mod searches;
mod service;
mod system;
