//! Client JWK Sets as registered (private_key_jwt): only public keys of our algorithms, each
//! with a kid, are accepted.

use serde_json::json;
use trustgate_tokens::{Algorithm, JwkSetResolver, KeyResolver};

#[test]
fn registered_jwk_sets_are_checked() {
    let ok = json!({"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]});
    let resolver = JwkSetResolver::from_json(&ok).expect("ok");
    assert_eq!(
        resolver.resolve("a").map(|k| k.algorithm),
        Some(Algorithm::EdDSA)
    );
    assert!(resolver.resolve("b").is_none());
    for bad in [
        json!({}),
        json!({"keys": []}),
        json!({"keys":[{"kty":"oct","kid":"a","k":"c2VjcmV0"}]}),
        json!({"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}),
        json!({"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}]}),
        json!({"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","alg":"ES256","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}),
        json!({"keys":[{"kty":"RSA","kid":"a","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c","e":"AQAB"}]}),
        json!({"keys":[{"kty":"EC","crv":"P-384","kid":"a","x":"x","y":"y"}]}),
    ] {
        assert!(JwkSetResolver::from_json(&bad).is_err(), "{bad}");
    }
}
