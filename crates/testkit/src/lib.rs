//! Test support shared by trustgate crates: readers of the conformance suites' file formats.
//! Used only as a dev-dependency.

pub mod openfga_matrix;
