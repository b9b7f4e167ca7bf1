//! Logs, traces and metrics.
//!
//! Logs go through `tracing` (pretty or JSON lines). With `[telemetry] otlp_endpoint` the same
//! spans are also exported as OpenTelemetry traces over OTLP/HTTP (JSON) by the SDK's batch
//! processor on its own thread: the request span (with its `request_id`, so a trace is found
//! from a log line and the other way round), and the `oauth.*`, `authn.*`, `pdp.*` and
//! `store.*` spans under it. The store and PDP spans are at `debug` level: exported whatever
//! `log_level` says, and costing a disabled callsite when no exporter runs. Metrics are kept by the `metrics` facade
//! and rendered in the Prometheus text format at `/metrics`: a request counter and a latency
//! histogram labelled by method, matched route (the route template, never the raw path, so
//! label cardinality stays bounded) and status.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::config::{LogFormat, TelemetryConfig};

/// Latency buckets in seconds: microsecond checks up to slow password hashing.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Installs the global tracing subscriber (logs only). Later calls (tests starting several
/// servers) are no-ops.
pub fn init_logging(format: LogFormat, filter: &str) {
    let _ = init(format, filter, &TelemetryConfig::default());
}

/// Keeps the trace exporter running; dropping it exports what is pending and stops it. Drop it
/// off the async workers (its HTTP client blocks).
#[must_use = "dropping it stops the trace export"]
pub struct Telemetry {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("exporting", &self.provider.is_some())
            .finish()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!(error = %e, "the trace exporter did not shut down cleanly");
        }
    }
}

/// Installs the global subscriber: logs to standard error in `format`, filtered by `filter`,
/// and with an OTLP endpoint configured, the trace exporter. Call it off the async workers:
/// the exporter's client is a blocking one. A second call installs nothing (and exports
/// nothing).
pub fn init(
    format: LogFormat,
    filter: &str,
    telemetry: &TelemetryConfig,
) -> Result<Telemetry, String> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Json => logs.json().flatten_event(true).boxed(),
        LogFormat::Pretty => logs.with_ansi(true).boxed(),
        LogFormat::Auto => logs.with_ansi(colour_on_stderr()).boxed(),
    }
    .with_filter(filter);
    let (traces, provider) = match &telemetry.otlp_endpoint {
        Some(endpoint) => {
            let provider = tracer_provider(endpoint, &telemetry.service_name)?;
            let tracer = opentelemetry::trace::TracerProvider::tracer(&provider, "trustgate");
            let layer = tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(trace_filter());
            (Some(layer), Some(provider))
        }
        None => (None, None),
    };
    match tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init()
    {
        Ok(()) => Ok(Telemetry { provider }),
        // Already installed (a second server in one process): this one exports nothing.
        Err(_) => Ok(Telemetry { provider: None }),
    }
}

/// What is exported: spans at `info` and up, and the debug-level store and PDP spans, but
/// those only inside another span (a request's): the background pollers' queries would each be
/// a trace of their own, several a second.
fn trace_filter<S>() -> impl tracing_subscriber::layer::Filter<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use tracing_subscriber::filter::FilterExt as _;
    let levels = tracing_subscriber::filter::Targets::new()
        .with_target("trustgate_store", tracing::Level::DEBUG)
        .with_target("trustgate_pdp", tracing::Level::DEBUG)
        .with_default(tracing::Level::INFO);
    let within_a_request = tracing_subscriber::filter::dynamic_filter_fn(|meta, cx| {
        *meta.level() < tracing::Level::DEBUG || cx.lookup_current().is_some()
    });
    levels.and(within_a_request)
}

fn tracer_provider(
    endpoint: &str,
    service_name: &str,
) -> Result<opentelemetry_sdk::trace::SdkTracerProvider, String> {
    use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpJson)
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .with_timeout(Duration::from_secs(5))
        .with_headers(std::collections::HashMap::new())
        .build()
        .map_err(|e| format!("telemetry.otlp_endpoint: {e}"))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name.to_owned())
        .build();
    Ok(opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Whether `auto` colours: standard error is a terminal and `NO_COLOR` (no-color.org) is unset
/// or empty.
fn colour_on_stderr() -> bool {
    use std::io::IsTerminal as _;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The process-wide Prometheus recorder (installed on first use).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(LATENCY_BUCKETS)
                .map(|b| b.build_recorder())
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            // Fails only if another recorder was installed first; the handle still renders ours.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// How often histogram samples are folded into their buckets.
const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Folds the recorder's pending histogram samples into their buckets, every
/// [`METRICS_UPKEEP_INTERVAL`], until aborted. The Prometheus recorder keeps every sample
/// recorded since the last upkeep or scrape: without this a server nobody scrapes would grow by
/// eight bytes per request forever.
pub(crate) async fn metrics_upkeep(handle: PrometheusHandle) {
    let mut every = tokio::time::interval(METRICS_UPKEEP_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        handle.run_upkeep();
    }
}

/// Counts and times every request by method, route template and status.
pub async fn record_metrics(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}
