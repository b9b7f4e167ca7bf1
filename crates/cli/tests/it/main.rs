//! The integration tests of the `trustgate` binary, gathered into one binary so the stack is
//! linked once.

mod support;

mod backup;
mod browser;
mod clients;
mod durability;
mod learning;
mod machines;
mod oidc;
mod openfga_sdk;
mod packaging;
mod postgres;
mod relationships;
mod serve;
mod traces;
mod upgrade;
mod users;
