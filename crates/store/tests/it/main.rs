//! The integration tests of `trustgate-store`, gathered into one binary so the stack is
//! linked once.

mod accounts;
mod api_keys;
mod audit_chain;
mod limits;
mod load_tuples_timing;
mod oauth;
mod postgres_upgrade;
mod relationships;
mod service_accounts;
mod sqlite_faults;
mod sqlite_lock;
mod sqlite_upgrade;
mod webhooks;
