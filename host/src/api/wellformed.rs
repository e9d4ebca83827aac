//! What every API request must be before an operation reads it, where the framework would
//! read it one way without a word: a query parameter given twice (the first would win, and a
//! proxy or a cache may have read the last) or holding the NUL character (which Postgres
//! cannot take as a parameter), a header the API reads given twice or not in visible ASCII
//! (taken as absent: an `Idempotency-Key: ключ` placed a new order on every retry), and a
//! compressed body (parsed as it came).

use poem::{http::StatusCode, Request};

/// The headers the API's operations read.
const READ_HEADERS: [&str; 3] = ["idempotency-key", "x-shop-signature", "authorization"];

/// Why `req` is refused before any operation reads it: status, code and message.
pub fn refusal(req: &Request) -> Option<(StatusCode, &'static str, String)> {
    let invalid = |why: String| Some((StatusCode::BAD_REQUEST, "SHOP_REQUEST_PARAMETER_INVALID", format!("request parameter invalid: {why}")));
    let mut seen = Vec::new();
    // Decoded, as the operations read them: `%6Cimit` is `limit`.
    for (name, value) in form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes()) {
        if seen.contains(&name) {
            return invalid(format!("query parameter {name:?} is given twice"));
        }
        if value.contains('\0') {
            return invalid(format!("query parameter {name:?} holds the NUL character (U+0000)"));
        }
        seen.push(name);
    }
    for name in READ_HEADERS {
        let mut values = req.headers().get_all(name).iter();
        let (first, second) = (values.next(), values.next());
        if second.is_some() {
            return invalid(format!("header {name} is given twice"));
        }
        if first.is_some_and(|v| v.to_str().is_err()) {
            return invalid(format!("header {name}: must be visible ASCII"));
        }
    }
    let encoding = req.headers().get("content-encoding").map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    // Only a body can be compressed: a GET is not refused for its header.
    let body = req.headers().contains_key("transfer-encoding") || req.headers().get("content-length").is_some_and(|l| l != "0");
    if let Some(encoding) = encoding.filter(|e| body && !e.is_empty() && e != "identity") {
        let why = format!("Content-Encoding {encoding:?}: a body is read as it is sent, not compressed");
        return Some((StatusCode::UNSUPPORTED_MEDIA_TYPE, "SHOP_UNSUPPORTED_MEDIA_TYPE", why));
    }
    None
}
