//! `X-Request-ID`: accepted from the client when it is sane, generated otherwise, echoed on
//! every response and recorded on the request's tracing span and error bodies.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderValue;

/// The header carrying the id.
pub const HEADER: &str = "x-request-id";

/// The id of the request being served (a request extension).
#[derive(Debug, Clone)]
pub struct RequestId(String);

impl RequestId {
    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A client-supplied id is kept if it is 1..=128 visible ASCII characters; anything else could
/// be used to forge or break log lines, so it is replaced.
fn acceptable(value: &HeaderValue) -> Option<String> {
    let bytes = value.as_bytes();
    let ok = !bytes.is_empty() && bytes.len() <= 128 && bytes.iter().all(|b| b.is_ascii_graphic());
    ok.then(|| String::from_utf8_lossy(bytes).into_owned())
}

/// Assigns the request id, runs the request inside a span carrying it, echoes it.
pub async fn assign_request_id(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(HEADER)
        .and_then(acceptable)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let header = HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    request.headers_mut().insert(HEADER, header.clone());
    request.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!(
        "request",
        otel.kind = "server",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
        trace_id = tracing::field::Empty,
    );
    // With traces exported, the log lines of the request name its trace.
    let trace_id = {
        use opentelemetry::trace::TraceContextExt as _;
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        span.context().span().span_context().trace_id()
    };
    if trace_id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace_id));
    }
    let mut response = {
        use tracing::Instrument as _;
        next.run(request).instrument(span).await
    };
    response.headers_mut().insert(HEADER, header);
    response
}
