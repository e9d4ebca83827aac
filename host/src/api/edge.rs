//! Around every request: one log line (method, path, status, milliseconds) and the HTTP
//! metrics (by operation id, so the label does not grow with ids in paths), the bearer
//! challenge on a refused admin request (`WWW-Authenticate: Bearer`, and a warning in the
//! log that never holds the token), and the `{code, message}` shape for whatever the
//! framework answered itself (an unknown path, a wrong method).

use std::time::Instant;

use opentelemetry::KeyValue;
use poem::{http::header, Endpoint, IntoResponse, Request, Response};

use poem_openapi::OperationId;
use tracing::Instrument;

use super::errors::{ApiError, TokenWrong};
use crate::{
    metrics::Metrics,
    trace::{self, Kind, TraceContext},
};

/// The middleware: wraps the whole route.
pub async fn around<E: Endpoint>(next: E, req: Request, metrics: &Metrics) -> poem::Result<Response> {
    let start = Instant::now();
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let remote = req.remote_addr().to_string();
    // Continue the caller's trace, or start one; everything the request writes (outbox
    // rows, hence events) carries it, and the answer tells the caller which it is.
    let caller = req.headers().get("traceparent").and_then(|v| v.to_str().ok()).and_then(TraceContext::parse);
    let attributes = vec![KeyValue::new("http.request.method", method.to_string()), KeyValue::new("url.path", path.clone())];
    let mut span = trace::start(method.to_string(), Kind::Server, caller, attributes);
    let trace = span.context;
    let log_span = tracing::info_span!("request", trace_id = %trace.trace_id_hex());
    let (mut resp, operation) = match trace::scope(trace, next.call(req)).instrument(log_span).await {
        Ok(r) => {
            let r = r.into_response();
            let operation = r.data::<OperationId>().copied();
            (r, operation)
        }
        Err(e) => {
            let operation = e.data::<OperationId>().copied();
            (framework_error(e), operation)
        }
    };
    if let Ok(value) = header::HeaderValue::from_str(&trace.header()) {
        resp.headers_mut().insert("traceparent", value);
    }
    let status = resp.status().as_u16();
    if status == 401 {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        if path.starts_with("/api/admin") {
            tracing::warn!(%method, %path, %remote, "admin request refused: token missing or wrong");
        }
    }
    let took = start.elapsed();
    let route = match operation {
        Some(op) => op.0,
        None => match path.as_str() {
            "/docs" | "/openapi.json" | "/metrics" => path.as_str(),
            _ => "unmatched", // any other path: one label, not one per guess
        },
    };
    metrics.http_request(method.as_str(), route, status, took);
    span.rename(format!("{method} {route}"));
    span.set(KeyValue::new("http.route", route.to_owned()));
    span.set(KeyValue::new("http.response.status_code", i64::from(status)));
    if status >= 500 {
        span.fail(format!("status {status}"));
    }
    span.end();
    let ms = took.as_secs_f64() * 1e3;
    tracing::info!(%method, %path, status, ms = format_args!("{ms:.1}"), trace_id = %trace.trace_id_hex(), "request");
    Ok(resp)
}

/// An error the framework raised before any operation answered, in the API's shape.
pub fn framework_error(err: poem::Error) -> Response {
    if err.is_from_response() {
        // Already an API response (an operation's own error enum): pass it through.
        return err.into_response();
    }
    let code = match err.status().as_u16() {
        401 => "SHOP_UNAUTHORIZED",
        404 => "SHOP_NOT_FOUND",
        405 => "SHOP_METHOD_NOT_ALLOWED",
        s if s < 500 => "SHOP_REQUEST_PARAMETER_INVALID",
        _ => "SHOP_INTERNAL_ERROR",
    };
    let message = match err.status().as_u16() {
        // The bearer scheme refuses a request without the header before any operation runs.
        401 if err.is::<TokenWrong>() => ApiError::TokenWrong.to_string(),
        401 => ApiError::TokenMissing.to_string(),
        _ => err.to_string(),
    };
    let body = serde_json::json!({ "code": code, "message": message });
    poem::web::Json(body).with_status(err.status()).into_response()
}
