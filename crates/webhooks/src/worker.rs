//! The delivery worker: one per replica, started and stopped with the server's other
//! background tasks.
//!
//! Each round claims up to `concurrency` due deliveries under a lease longer than two attempt
//! timeouts, posts them concurrently, and records each outcome under that lease. A worker
//! stopped mid-attempt (shutdown, crash) leaves its claims to run out; another round, here or
//! on another replica, attempts them again, so delivery is at least once and receivers
//! deduplicate on `webhook-id`.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use http::HeaderValue;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use time::OffsetDateTime;
use trustgate_audit::{AuditKind, Auditor, Event, Outcome, RequestContext};
use trustgate_pep::webhooks::{
    ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookSecret, signature_header,
};
use trustgate_store_api::{AttemptResult, ClaimedDelivery, Delivery, DeliveryKind};

use crate::target::GuardedResolver;
use crate::{SECRET_PURPOSE, Shared, Webhooks, WebhooksConfig, check_url};

/// How often the worker deletes old delivered messages.
const PURGE_EVERY: Duration = Duration::from_secs(600);

/// The wait after `failures` failed attempts (1 for the first): the configured schedule, its
/// last entry repeating, with ±20 % jitter so receivers coming back are not hit by every
/// retry at once. `None` when the attempts are used up.
pub fn retry_delay(config: &WebhooksConfig, failures: u32) -> Option<Duration> {
    if failures >= config.max_attempts {
        return None;
    }
    let index = usize::try_from(failures.saturating_sub(1)).unwrap_or(usize::MAX);
    let base = config
        .retry_delays_ms
        .get(index)
        .or(config.retry_delays_ms.last())
        .copied()
        .unwrap_or(5_000);
    let jitter = 0.8 + 0.4 * rand::random::<f64>();
    Some(Duration::from_millis(base).mul_f64(jitter))
}

/// Runs the worker until the task is aborted. `auditor` records every back-channel logout
/// attempt (webhook attempts are not audited: a subscriber to its own failures would never
/// stop receiving).
pub async fn run(webhooks: Webhooks, auditor: Auditor) {
    let shared = Arc::clone(&webhooks.shared);
    let config = &shared.config;
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_millis(config.timeout_ms))
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(GuardedResolver)
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook HTTP client; nothing is delivered");
            return;
        }
    };
    let poll = Duration::from_millis(config.poll_interval_ms);
    let lease = time::Duration::milliseconds(
        i64::try_from(config.timeout_ms.saturating_mul(2)).unwrap_or(i64::MAX),
    ) + time::Duration::seconds(30);
    let limit = u32::try_from(config.concurrency).unwrap_or(u32::MAX);
    let mut last_purge = tokio::time::Instant::now();
    loop {
        let now = shared.clock.now();
        let claimed = match shared.store.claim_deliveries(limit, now + lease, now).await {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim webhook deliveries");
                Vec::new()
            }
        };
        let full = claimed.len() == config.concurrency;
        futures::stream::iter(claimed)
            .for_each_concurrent(config.concurrency, |claimed| {
                attempt(&shared, &client, &auditor, claimed)
            })
            .await;
        if last_purge.elapsed() >= PURGE_EVERY {
            last_purge = tokio::time::Instant::now();
            let keep = time::Duration::hours(i64::from(config.delivered_retention_hours));
            if let Err(e) = shared
                .store
                .purge_delivered(shared.clock.now() - keep)
                .await
            {
                tracing::warn!(error = %e, "cannot purge delivered webhooks");
            }
        }
        if !full {
            tokio::select! {
                () = tokio::time::sleep(poll) => {}
                () = shared.wake.notified() => {}
            }
        }
    }
}

/// What one attempt came to, before it is recorded.
struct Attempt {
    status: Option<u16>,
    error: Option<String>,
    /// Retrying cannot help (the URL is now refused, no secret opens).
    permanent: bool,
}

impl Attempt {
    fn failed(error: impl Into<String>, permanent: bool) -> Self {
        Self {
            status: None,
            error: Some(error.into()),
            permanent,
        }
    }
}

async fn attempt(
    shared: &Shared,
    client: &reqwest::Client,
    auditor: &Auditor,
    claimed: ClaimedDelivery,
) {
    let delivery = &claimed.delivery;
    let outcome = send(shared, client, delivery).await;
    let now = shared.clock.now();
    let failures = delivery.attempts.saturating_add(1);
    let result = match (&outcome.error, outcome.permanent) {
        (None, _) => AttemptResult::Delivered {
            status: outcome.status.unwrap_or(200),
        },
        (Some(error), permanent) => match retry_delay(&shared.config, failures) {
            Some(wait) if !permanent => AttemptResult::Retry {
                status: outcome.status,
                error: error.clone(),
                next_attempt_at: now + wait,
            },
            _ => AttemptResult::Dead {
                status: outcome.status,
                error: error.clone(),
            },
        },
    };
    let label = match &result {
        AttemptResult::Delivered { .. } => "delivered",
        AttemptResult::Retry { .. } => "retry",
        AttemptResult::Dead { .. } => "dead",
    };
    metrics::counter!(
        "webhook_delivery_attempts_total",
        "kind" => delivery.kind.as_str(),
        "result" => label
    )
    .increment(1);
    if label == "dead" {
        tracing::warn!(
            delivery = %delivery.id,
            target = %delivery.target,
            attempts = failures,
            error = outcome.error.as_deref().unwrap_or_default(),
            "delivery dead-lettered"
        );
    }
    match shared
        .store
        .complete_delivery(&delivery.id, &claimed.lease, &result, now)
        .await
    {
        Ok(true) => {}
        Ok(false) => tracing::info!(
            delivery = %delivery.id,
            "the lease ran out before the attempt was recorded; another attempt follows"
        ),
        Err(e) => {
            tracing::warn!(error = %e, delivery = %delivery.id, "cannot record a delivery attempt")
        }
    }
    if delivery.kind == DeliveryKind::BackchannelLogout {
        audit_backchannel(auditor, delivery, &outcome, failures).await;
    }
}

async fn send(shared: &Shared, client: &reqwest::Client, delivery: &Delivery) -> Attempt {
    if let Err(e) = check_url(&delivery.url, shared.config.allow_http) {
        return Attempt::failed(e.to_string(), true);
    }
    let request = match delivery.kind {
        DeliveryKind::Webhook => {
            let secrets = match signing_secrets(shared, delivery).await {
                Ok(secrets) => secrets,
                Err(attempt) => return attempt,
            };
            let timestamp = shared.clock.now().unix_timestamp();
            let signature = signature_header(
                &secrets,
                &delivery.id,
                timestamp,
                delivery.payload.as_bytes(),
            );
            client
                .post(&delivery.url)
                .header(ID_HEADER, &delivery.id)
                .header(TIMESTAMP_HEADER, timestamp.to_string())
                .header(SIGNATURE_HEADER, signature)
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(delivery.payload.clone())
        }
        DeliveryKind::BackchannelLogout => client
            .post(&delivery.url)
            .header(CACHE_CONTROL, HeaderValue::from_static("no-store"))
            .form(&[("logout_token", delivery.payload.as_str())]),
    };
    match request.send().await {
        Ok(response) if response.status().is_success() => Attempt {
            status: Some(response.status().as_u16()),
            error: None,
            permanent: false,
        },
        Ok(response) => Attempt {
            status: Some(response.status().as_u16()),
            error: Some(format!("HTTP {}", response.status().as_u16())),
            permanent: false,
        },
        Err(e) if e.is_timeout() => Attempt::failed("timed out", false),
        Err(e) if e.is_connect() => Attempt::failed(format!("cannot connect: {}", root(&e)), false),
        Err(e) => Attempt::failed(root(&e), false),
    }
}

/// The innermost cause of a transport error (reqwest's own message names only the URL).
fn root(e: &(dyn std::error::Error + 'static)) -> String {
    let mut current = e;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// The secrets a webhook is signed with now: every secret of its subscription still in its
/// overlap, opened with the server's secrets key.
async fn signing_secrets(
    shared: &Shared,
    delivery: &Delivery,
) -> Result<Vec<WebhookSecret>, Attempt> {
    let Some(id) = delivery.subscription_id.as_deref() else {
        return Err(Attempt::failed("a webhook without a subscription", true));
    };
    let subscription = match shared.store.get_subscription(id).await {
        Ok(Some(subscription)) => subscription,
        Ok(None) => return Err(Attempt::failed("the subscription was deleted", true)),
        Err(e) => {
            return Err(Attempt::failed(
                format!("cannot read the subscription: {e}"),
                false,
            ));
        }
    };
    let now: OffsetDateTime = shared.clock.now();
    let secrets: Vec<WebhookSecret> = subscription
        .signing_secrets(now)
        .filter_map(|s| shared.sealing.open(SECRET_PURPOSE, &s.sealed))
        .filter_map(|bytes| WebhookSecret::from_bytes(&bytes).ok())
        .collect();
    if secrets.is_empty() {
        // Sealed with another secrets key: only an operator can fix this (rotate the secret).
        return Err(Attempt::failed(
            "no signing secret opens with this server's secrets key",
            true,
        ));
    }
    Ok(secrets)
}

async fn audit_backchannel(auditor: &Auditor, delivery: &Delivery, attempt: &Attempt, number: u32) {
    let outcome = if attempt.error.is_none() {
        Outcome::Success
    } else {
        Outcome::Failure
    };
    let mut event = Event::new(AuditKind::OAuthBackchannelLogout, outcome)
        .resource(delivery.target.as_str())
        .detail("client_id", delivery.target.as_str())
        .detail("delivery", delivery.id.as_str())
        .detail("attempt", number);
    event = match (attempt.status, &attempt.error) {
        (Some(status), _) => event.detail("status", status),
        (None, Some(_)) => event.detail("reason", "unreachable"),
        (None, None) => event,
    };
    // A streamed kind: queued, never waits, cannot fail.
    let _ = auditor.record(&RequestContext::default(), event).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_backs_off_with_jitter_and_ends() {
        let config = WebhooksConfig {
            max_attempts: 4,
            retry_delays_ms: vec![1_000, 10_000],
            ..WebhooksConfig::default()
        };
        for _ in 0..50 {
            let first = retry_delay(&config, 1).expect("retry");
            assert!((800..=1_200).contains(&first.as_millis()), "{first:?}");
            let second = retry_delay(&config, 2).expect("retry");
            assert!((8_000..=12_000).contains(&second.as_millis()), "{second:?}");
            // The last wait repeats.
            let third = retry_delay(&config, 3).expect("retry");
            assert!((8_000..=12_000).contains(&third.as_millis()), "{third:?}");
        }
        assert_eq!(retry_delay(&config, 4), None);
        assert_eq!(retry_delay(&config, 40), None);
    }

    #[test]
    fn the_default_schedule_is_the_documented_one() {
        let config = WebhooksConfig::default();
        assert!(config.validate().is_ok());
        assert_eq!(config.max_attempts, 8);
        assert_eq!(config.retry_delays_ms[0], 5_000);
        assert!(
            WebhooksConfig {
                retry_delays_ms: vec![],
                ..config.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            WebhooksConfig {
                max_attempts: 0,
                ..config
            }
            .validate()
            .is_err()
        );
    }
}
