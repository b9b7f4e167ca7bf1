//! Set-up shared by the integration tests of this crate.

use std::sync::Arc;

use trustgate_core::{ManualClock, SealingKey};
use trustgate_store_api::Store;
use trustgate_tokens::{KeyManager, KeyPolicy};

/// Signing keys on `store`, one per algorithm, active at `clock`'s time, sealed with a fresh key.
pub async fn signing_keys(store: Arc<dyn Store>, clock: &ManualClock) -> KeyManager {
    let keys = KeyManager::load(
        store,
        SealingKey::generate(),
        KeyPolicy::default(),
        Arc::new(clock.clone()),
    )
    .await
    .expect("keys");
    keys.ensure_keys().await.expect("ensure keys");
    keys
}
