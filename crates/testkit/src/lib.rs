//! Test support shared by trustgate crates: readers of the conformance suites' file formats and
//! of the server-rendered pages, look-alike credentials, certificates and DPoP proofs made at run time. Used only as a dev-dependency.

pub mod authzen_decisions;
pub mod dpop;
pub mod forge;
pub mod html;
pub mod openfga_matrix;
pub mod store_file;
pub mod tls;
