//! Service-account bearer tokens on every backend: a registered token yields its account's
//! principal; anything else yields none, and a miss is never remembered.

use time::macros::datetime;
use trustgate_authn::service_tokens::{MAX_SERVICE_TOKEN_BYTES, ServiceTokens};
use trustgate_core::{PrincipalKind, TokenDigest};
use trustgate_store::test_on_both_backends;
use trustgate_store::testing::TestDatabase;
use trustgate_store_api::AccountRole;

test_on_both_backends!(tokens_verify_to_their_account, misses_are_not_remembered);

async fn tokens_verify_to_their_account(db: TestDatabase) {
    let now = datetime!(2026-12-06 10:00 UTC);
    let token = "tg_test_0123456789abcdef0123456789abcdef";
    db.store
        .ensure_account_token(
            "sa-1",
            "deployer",
            AccountRole::Admin,
            &TokenDigest::of(token),
            "ci",
            now,
        )
        .await
        .expect("register token");
    let tokens = ServiceTokens::new(db.store.clone());
    let principal = tokens
        .verify(token)
        .await
        .expect("verify")
        .expect("a principal");
    assert_eq!(principal.kind, PrincipalKind::Service);
    assert_eq!(principal.id, "sa-1");
    assert_eq!(principal.display_name, "deployer");
    assert_eq!(principal.subject(), "service:sa-1");

    let oversized = "x".repeat(MAX_SERVICE_TOKEN_BYTES + 1);
    for wrong in [
        "",
        "tg_test_0123456789abcdef0123456789abcdeF",
        &token[..token.len() - 1],
        oversized.as_str(),
    ] {
        assert_eq!(
            tokens.verify(wrong).await.expect("verify"),
            None,
            "{wrong:.40}"
        );
    }
}

async fn misses_are_not_remembered(db: TestDatabase) {
    let now = datetime!(2026-12-06 10:00 UTC);
    let token = "tg_test_registered_later";
    let tokens = ServiceTokens::new(db.store.clone());
    assert_eq!(tokens.verify(token).await.expect("verify"), None);
    db.store
        .ensure_account_token(
            "sa-2",
            "late",
            AccountRole::Admin,
            &TokenDigest::of(token),
            "ci",
            now,
        )
        .await
        .expect("register token");
    let principal = tokens.verify(token).await.expect("verify");
    assert_eq!(principal.map(|p| p.id).as_deref(), Some("sa-2"));
}
