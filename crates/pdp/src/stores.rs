//! Stores: the namespaces of models and tuples.

use trustgate_store_api::{FgaStore, SYSTEM_STORE_ID};

use crate::{Page, Paged, Pdp, PdpError};

impl Pdp {
    /// Creates a store named `name` (3 to 64 characters, no control characters) with a new id.
    pub async fn create_store(&self, name: &str) -> Result<FgaStore, PdpError> {
        let n = name.chars().count();
        if !(3..=64).contains(&n) || name.chars().any(char::is_control) {
            return Err(PdpError::Validation(
                "invalid CreateStoreRequest.Name: value does not match regex pattern \"^[\\\\w\\\\d\\\\s./_-]{3,64}$\"".to_owned(),
            ));
        }
        let now = self.inner.clock.now();
        let id = trustgate_core::id::new_ulid(now);
        Ok(self.inner.store.create_fga_store(&id, name, now).await?)
    }

    /// The store `store_id` ([`PdpError::StoreNotFound`] if it does not exist or was deleted).
    pub async fn get_store(&self, store_id: &str) -> Result<FgaStore, PdpError> {
        self.open(store_id)?;
        self.inner
            .store
            .get_fga_store(store_id)
            .await?
            .ok_or(PdpError::StoreNotFound)
    }

    /// Live stores ordered by id, a page at a time (the system store is not listed); with
    /// `name`, only the stores of exactly that name.
    pub async fn list_stores(
        &self,
        page: Page<'_>,
        name: Option<&str>,
    ) -> Result<Paged<FgaStore>, PdpError> {
        let size = page.size()?;
        let (mut items, next) = self
            .inner
            .store
            .list_fga_stores(size, page.continuation(), name)
            .await?;
        items.retain(|s| s.id != SYSTEM_STORE_ID);
        Ok(Paged {
            items,
            continuation_token: next,
        })
    }

    /// Deletes the store and evicts its index and models from this service at once (other
    /// replicas drop theirs within a refresh interval, or at their next
    /// [`crate::Consistency::HigherConsistency`] query). [`PdpError::StoreNotFound`] if it did
    /// not exist (any more).
    pub async fn delete_store(&self, store_id: &str) -> Result<(), PdpError> {
        self.open(store_id)?;
        let deleted = self
            .inner
            .store
            .delete_fga_store(store_id, self.inner.clock.now())
            .await?;
        self.inner.forget_store(store_id);
        if deleted {
            Ok(())
        } else {
            Err(PdpError::StoreNotFound)
        }
    }
}
