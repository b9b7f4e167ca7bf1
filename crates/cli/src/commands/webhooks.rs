//! Webhooks: a client of `/admin/v1/webhooks`.
//!
//! `webhooks create` subscribes a URL to audit events and prints the signing secret once;
//! `rotate` issues a new secret while the old one keeps signing for the overlap; `dead` lists
//! deliveries whose attempts ran out and `redeliver` queues one again.

use clap::Subcommand;
use reqwest::Method;
use serde_json::json;

use super::Failure;
use super::user::segment;
use crate::client::{Client, ClientArgs, print_json};

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Subscribe a URL to audit events; prints the signing secret (shown once).
    Create {
        /// Where to post (https, or http to a loopback host).
        url: String,
        /// An audit event kind to receive (repeatable); every kind when omitted.
        #[arg(long = "kind", value_name = "KIND")]
        kinds: Vec<String>,
        /// What it is for.
        #[arg(long)]
        description: Option<String>,
    },
    /// List the subscriptions (never their secrets).
    List,
    /// Show one subscription.
    Get {
        /// The subscription id.
        id: String,
    },
    /// Issue a new signing secret (shown once); the old one keeps signing for the overlap.
    Rotate {
        /// The subscription id.
        id: String,
        /// Seconds the old secret keeps signing, so receivers can switch.
        #[arg(long, default_value_t = 86_400)]
        overlap_secs: u64,
    },
    /// Delete a subscription and its queued deliveries.
    Delete {
        /// The subscription id.
        id: String,
    },
    /// List dead-lettered deliveries (webhooks and back-channel logout tokens).
    Dead {
        /// Continue after this delivery id.
        #[arg(long)]
        after: Option<String>,
    },
    /// Queue a dead-lettered delivery again, its attempts reset.
    Redeliver {
        /// The delivery id (msg_…).
        id: String,
    },
}

/// Runs a `webhooks` command.
pub async fn webhooks(command: WebhooksCommand, args: &ClientArgs) -> Result<(), Failure> {
    let api = Client::new(args)?;
    let answer = match command {
        WebhooksCommand::Create {
            url,
            kinds,
            description,
        } => {
            let body = json!({ "url": url, "kinds": kinds, "description": description });
            api.call(Method::POST, "/admin/v1/webhooks", Some(&body))
                .await?
        }
        WebhooksCommand::List => api.call(Method::GET, "/admin/v1/webhooks", None).await?,
        WebhooksCommand::Get { id } => {
            api.call(
                Method::GET,
                &format!("/admin/v1/webhooks/{}", segment(&id)),
                None,
            )
            .await?
        }
        WebhooksCommand::Rotate { id, overlap_secs } => {
            api.call(
                Method::POST,
                &format!("/admin/v1/webhooks/{}/rotate", segment(&id)),
                Some(&json!({ "overlap_secs": overlap_secs })),
            )
            .await?
        }
        WebhooksCommand::Delete { id } => {
            api.call(
                Method::DELETE,
                &format!("/admin/v1/webhooks/{}", segment(&id)),
                None,
            )
            .await?;
            json!({ "deleted": id })
        }
        WebhooksCommand::Dead { after } => {
            let path = match after {
                Some(after) => format!(
                    "/admin/v1/webhooks/dead-letters?limit=100&after={}",
                    segment(&after)
                ),
                None => "/admin/v1/webhooks/dead-letters?limit=100".to_owned(),
            };
            api.call(Method::GET, &path, None).await?
        }
        WebhooksCommand::Redeliver { id } => {
            api.call(
                Method::POST,
                &format!("/admin/v1/webhooks/dead-letters/{}/redeliver", segment(&id)),
                None,
            )
            .await?
        }
    };
    print_json(&answer);
    Ok(())
}
