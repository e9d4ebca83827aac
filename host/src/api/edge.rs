//! Around every request: one log line (method, path, status, milliseconds) and the HTTP
//! metrics (by operation id, so the label does not grow with ids in paths), the bearer
//! challenge on a refused admin request (`WWW-Authenticate: Bearer`, and a warning in the
//! log that never holds the token), and the `{code, message}` shape for whatever the
//! framework answered itself (an unknown path, a wrong method).

use std::{sync::Arc, time::Instant};

use opentelemetry::KeyValue;
use poem::{http::header, Endpoint, IntoResponse, Request, Response};

use poem_openapi::OperationId;
use regex::Regex;
use tracing::Instrument;

use super::{
    errors::{self, ApiError, TokenWrong},
    limits::{Refused, RequestLimits},
    wellformed,
};
use crate::{
    metrics::Metrics,
    trace::{self, Kind, TraceContext},
};

/// What the middleware needs: the metrics it counts in, the request limits, and the
/// methods each path allows (for the `Allow` header of a 405).
pub struct Edge {
    pub metrics: Arc<Metrics>,
    pub limits: RequestLimits,
    allowed: Vec<(Regex, String)>,
}

impl Edge {
    /// `spec` is the served OpenAPI document: its paths and their methods.
    pub fn new(metrics: Arc<Metrics>, limits: RequestLimits, spec: &serde_json::Value) -> Edge {
        let mut allowed = Vec::new();
        for (path, ops) in spec["paths"].as_object().into_iter().flatten() {
            // `/api/orders/{order_id}` → `^/api/orders/[^/]+$`
            let segments: Vec<String> = path.split('/').map(|seg| if seg.starts_with('{') { "[^/]+".to_owned() } else { regex::escape(seg) }).collect();
            let pattern = format!("^{}$", segments.join("/"));
            let methods: Vec<String> = ops.as_object().into_iter().flatten().map(|(m, _)| m.to_ascii_uppercase()).collect();
            allowed.push((Regex::new(&pattern).expect("a path template makes a regex"), methods.join(", ")));
        }
        // The one method-bound route the spec does not list (the docs and the spec itself
        // answer any method).
        allowed.push((Regex::new("^/metrics$").expect("a regex"), "GET".to_owned()));
        // The console's own routes (see `console::routes`).
        for (path, methods) in [("^/console/login$", "GET, POST"), ("^/console/logout$", "POST"), ("^/console(/.*)?$", "GET")] {
            allowed.push((Regex::new(path).expect("a regex"), methods.to_owned()));
        }
        Edge { metrics, limits, allowed }
    }

    fn allow(&self, path: &str) -> Option<&str> {
        self.allowed.iter().find(|(p, _)| p.is_match(path)).map(|(_, m)| m.as_str())
    }
}

/// The middleware: wraps the whole route.
pub async fn around<E: Endpoint>(next: E, mut req: Request, edge: &Edge) -> poem::Result<Response> {
    let start = Instant::now();
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let remote = req.remote_addr().to_string();
    // Continue the caller's trace, or start one; everything the request writes (outbox
    // rows, hence events) carries it, and the answer tells the caller which it is.
    let caller = req.headers().get("traceparent").and_then(|v| v.to_str().ok()).and_then(TraceContext::parse);
    let mut span = trace::start(Kind::Server, caller, || {
        (method.to_string().into(), vec![KeyValue::new("http.request.method", method.to_string()), KeyValue::new("url.path", path.clone())])
    });
    let trace = span.context;
    let log_span = tracing::info_span!("request", trace_id = %trace.trace_id_hex());
    let malformed = if path.starts_with("/api/") { wellformed::refusal(&req) } else { None };
    let admitted = match malformed {
        Some((status, code, message)) => Err(errors::respond(status, code, &message)),
        None => edge.limits.admit(&mut req).map_err(refusal),
    };
    let (mut resp, operation) = match admitted {
        Err(refused) => (refused, None),
        Ok(admitted) => {
            let answered = match trace::scope(trace, next.call(req)).instrument(log_span).await {
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
            // Reading the body ran past the cap or the deadline: whatever the operation made
            // of the cut body, the answer is 413 or 408.
            match admitted.overran() {
                Some(refused) => (refusal(refused), answered.1),
                None => answered,
            }
        }
    };
    if resp.status().as_u16() == 405 {
        if let Some(allow) = edge.allow(&path).and_then(|a| header::HeaderValue::from_str(a).ok()) {
            resp.headers_mut().insert(header::ALLOW, allow);
        }
    }
    if resp.status().as_u16() == 503 && !resp.headers().contains_key(header::RETRY_AFTER) {
        // Every 503 here is "try again" (the database, the stream or the fleet's registry
        // away, a step's service failed); a client's backoff reads when.
        resp.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    if let Ok(value) = header::HeaderValue::from_str(&trace.header()) {
        resp.headers_mut().insert("traceparent", value);
    }
    let status = resp.status().as_u16();
    if status == 401 {
        // The callback is refused for its signature, not for a token (RFC 7235 wants a
        // challenge on every 401: this one names the header it needs).
        let challenge = if path.starts_with("/api/admin") || path.starts_with("/console") { "Bearer" } else { r#"Shop-Signature header="X-Shop-Signature""# };
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static(challenge));
        if path.starts_with("/api/admin") {
            tracing::warn!(%method, %path, %remote, "admin request refused: token missing or wrong");
        }
    }
    let took = start.elapsed();
    let route = match operation {
        Some(op) => op.0,
        None => match path.as_str() {
            "/docs" | "/openapi.json" | "/metrics" => path.as_str(),
            p if p == "/console" || p.starts_with("/console/") => "console",
            _ => "unmatched", // any other path: one label, not one per guess
        },
    };
    edge.metrics.http_request(method.as_str(), route, status, took);
    span.rename(format!("{method} {route}"));
    span.set(KeyValue::new("http.route", route.to_owned()));
    span.set(KeyValue::new("http.response.status_code", i64::from(status)));
    if status >= 500 {
        span.fail(format!("status {status}"));
    }
    span.end();
    // A number to a tenth (a log shipper reads `"ms": 3.1`, not a string).
    let ms = (took.as_secs_f64() * 1e4).round() / 10.0;
    tracing::info!(%method, %path, status, ms, trace_id = %trace.trace_id_hex(), "request");
    Ok(resp)
}

/// A request turned away by the limits, in the API's shape.
fn refusal(refused: Refused) -> Response {
    let status = poem::http::StatusCode::from_u16(refused.status()).expect("a valid status");
    errors::respond(status, refused.code(), &refused.message()) // a 503 (busy) gets its Retry-After in `around`
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
        408 => "SHOP_REQUEST_TIMEOUT",
        413 => "SHOP_PAYLOAD_TOO_LARGE",
        415 => "SHOP_UNSUPPORTED_MEDIA_TYPE",
        s if s < 500 => "SHOP_REQUEST_PARAMETER_INVALID",
        _ => "SHOP_INTERNAL_ERROR",
    };
    let message = match err.status().as_u16() {
        // The bearer scheme refuses a request without the header before any operation runs.
        401 if err.is::<TokenWrong>() => ApiError::TokenWrong.to_string(),
        401 => ApiError::TokenMissing.to_string(),
        // Said as an operation's own 400 says it.
        400 => ApiError::BadRequest(errors::rejected(&err)).to_string(),
        _ => err.to_string(),
    };
    errors::respond(err.status(), code, &message)
}
