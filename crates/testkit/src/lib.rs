//! Test support shared by trustgate crates.
