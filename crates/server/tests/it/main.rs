//! The integration tests of `trustgate-server`, gathered into one binary so the stack is
//! linked once.

mod common;

mod admin_audit;
mod admin_clients;
mod admin_keys;
mod admin_users;
mod admin_webhooks;
mod authzen;
mod connections;
mod cors;
mod fga_api;
mod fga_audit;
mod http;
mod machine_access;
mod oauth_flows;
mod openfga_matrix;
mod pages;
mod pep;
mod replicas;
mod signing_keys;
mod tls;
