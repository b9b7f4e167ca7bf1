//! Signing keys: a client of `/admin/v1/keys`.
//!
//! `keys list` prints every key (kid, algorithm, state, times); `keys rotate` publishes a new
//! key for one algorithm (or all three) that signs after `oauth.key_publish_ahead_secs`, while
//! the key it replaces stays in the JWKS until every token it signed has expired.

use clap::Subcommand;
use reqwest::Method;
use serde_json::json;

use super::Failure;
use crate::client::{Client, ClientArgs, print_json};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List the signing keys and their state (published, active, retired, expired).
    List,
    /// Rotate: a new key, published now, signing after the publish-ahead period.
    Rotate {
        /// Only this algorithm (EdDSA, ES256 or RS256); all three when omitted.
        #[arg(long)]
        algorithm: Option<String>,
    },
}

/// Runs a `keys` command.
pub async fn keys(command: KeysCommand, args: &ClientArgs) -> Result<(), Failure> {
    let api = Client::new(args)?;
    let answer = match command {
        KeysCommand::List => api.call(Method::GET, "/admin/v1/keys", None).await?,
        KeysCommand::Rotate { algorithm } => {
            let body = match algorithm {
                Some(algorithm) => json!({ "algorithm": algorithm }),
                None => json!({}),
            };
            api.call(Method::POST, "/admin/v1/keys/rotate", Some(&body))
                .await?
        }
    };
    print_json(&answer);
    Ok(())
}
