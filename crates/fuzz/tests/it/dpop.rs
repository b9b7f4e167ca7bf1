//! `tokens::dpop::verify_proof`: the size cap, the compact serialization, the header's own
//! key, the signature and the claims. Random text carries no signature of any key it names,
//! so nothing verifies; past the cap the answer is `TooLarge` before any parsing.

use bolero::check;
use time::{Duration, OffsetDateTime};
use trustgate_tokens::dpop::{DpopError, MAX_PROOF_BYTES, ProofExpectation, verify_proof};

use crate::support::SMOKE_ITERATIONS;

#[test]
fn bytes() {
    let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time");
    check!()
        .with_iterations(SMOKE_ITERATIONS)
        .with_max_len(MAX_PROOF_BYTES + 1024)
        .for_each(|input: &[u8]| {
            let expect = ProofExpectation {
                htm: "POST",
                htu: "https://id.example/oauth2/token",
                now,
                max_age: Duration::seconds(60),
                leeway: Duration::seconds(5),
                nonce: Some(&|nonce: &str| nonce == "nonce"),
                access_token: Some("token"),
            };
            let proof = String::from_utf8_lossy(input);
            let result = verify_proof(&proof, &expect);
            assert!(result.is_err(), "random text verified: {proof:?}");
            if proof.len() > MAX_PROOF_BYTES {
                assert_eq!(result.err(), Some(DpopError::TooLarge));
            }
        });
}
