//! Decoding of service account records, shared by the backends.

use trustgate_store_api::StoreError;
pub(crate) use trustgate_store_api::service_accounts::*;

pub(crate) fn role_from_db(role: &str) -> Result<AccountRole, StoreError> {
    AccountRole::parse(role).ok_or_else(|| StoreError::Corrupt(format!("unknown role {role:?}")))
}
