//! What one request may cost the host: a body cap per route, checked against
//! `Content-Length` before anything is read and enforced while reading when the length is
//! not announced (chunked); a deadline for the body to arrive; and a bound on requests in
//! flight, past which the host answers 503 at once instead of queueing work and memory.
//! The liveness probe (`/healthz`) takes no slot: a host that is busy is not dead.

use std::{
    sync::{
        atomic::{AtomicU8, Ordering},
        Arc,
    },
    time::Duration,
};

use futures::StreamExt;
use poem::{http::Method, web::headers::HeaderMapExt, Body, Request};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug, Clone)]
pub struct RequestLimits {
    /// Bytes of a JSON body (every route but the plugin upload).
    pub json_body: usize,
    /// Bytes of a plugin component upload.
    pub upload_body: usize,
    /// How long a body may take to arrive.
    pub body_timeout: Duration,
    in_flight: Arc<Semaphore>,
}

/// Why a request was turned away before it ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its body is (announced as) larger than its route's cap.
    TooLarge { limit: usize },
    /// Its body did not arrive within the deadline.
    TooSlow { within: Duration },
    /// Too many requests in flight.
    Busy,
}

impl Refused {
    pub fn status(self) -> u16 {
        match self {
            Refused::TooLarge { .. } => 413,
            Refused::TooSlow { .. } => 408,
            Refused::Busy => 503,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Refused::TooLarge { .. } => "SHOP_PAYLOAD_TOO_LARGE",
            Refused::TooSlow { .. } => "SHOP_REQUEST_TIMEOUT",
            Refused::Busy => "SHOP_OVERLOADED",
        }
    }

    pub fn message(self) -> String {
        match self {
            Refused::TooLarge { limit } => format!("request body larger than {limit} bytes, the limit of this route"),
            Refused::TooSlow { within } => format!("request body did not arrive within {}", humantime::format_duration(within)),
            Refused::Busy => "too many requests in flight; retry shortly".into(),
        }
    }
}

/// A request admitted: its slot in flight (none for the liveness probe), and whether
/// reading its body ran past the cap or the deadline.
pub struct Admitted {
    _slot: Option<OwnedSemaphorePermit>,
    overran: Arc<AtomicU8>,
    limit: usize,
    within: Duration,
}

const IN_TIME: u8 = 0;
const TOO_LARGE: u8 = 1;
const TOO_SLOW: u8 = 2;

impl Admitted {
    /// The body turned out larger than the cap, or slower than the deadline, while read.
    pub fn overran(&self) -> Option<Refused> {
        match self.overran.load(Ordering::Relaxed) {
            TOO_LARGE => Some(Refused::TooLarge { limit: self.limit }),
            TOO_SLOW => Some(Refused::TooSlow { within: self.within }),
            _ => None,
        }
    }
}

impl RequestLimits {
    pub fn new(json_body: usize, upload_body: usize, max_in_flight: usize, body_timeout: Duration) -> RequestLimits {
        RequestLimits { json_body, upload_body, body_timeout, in_flight: Arc::new(Semaphore::new(max_in_flight.max(1))) }
    }

    fn body_cap(&self, method: &Method, path: &str) -> usize {
        // Only the upload itself (`PUT /api/admin/plugins/{name}`); its grants are JSON.
        let upload = path.strip_prefix("/api/admin/plugins/").is_some_and(|name| !name.contains('/'));
        if method == Method::PUT && upload {
            self.upload_body
        } else {
            self.json_body
        }
    }

    /// Takes a slot in flight and caps `req`'s body, or says why not.
    pub fn admit(&self, req: &mut Request) -> Result<Admitted, Refused> {
        let limit = self.body_cap(req.method(), req.uri().path());
        if let Some(announced) = req.headers().typed_get::<poem::web::headers::ContentLength>() {
            if announced.0 > limit as u64 {
                return Err(Refused::TooLarge { limit });
            }
        }
        let slot = match req.uri().path() {
            "/healthz" => None,
            _ => Some(self.in_flight.clone().try_acquire_owned().map_err(|_| Refused::Busy)?),
        };
        // Counted while read: a chunked body announces nothing, and a wrong length is no
        // promise. Past the cap the read fails, so nothing larger is ever held.
        let overran = Arc::new(AtomicU8::new(IN_TIME));
        let flag = overran.clone();
        let mut seen = 0usize;
        let body = req.take_body().into_bytes_stream().map(move |chunk| {
            let chunk = chunk?;
            seen += chunk.len();
            if seen > limit {
                flag.store(TOO_LARGE, Ordering::Relaxed);
                return Err(std::io::Error::other(format!("request body larger than {limit} bytes")));
            }
            Ok(chunk)
        });
        // And it must have arrived by the deadline; past it the read fails the same way.
        let (deadline, flag) = (tokio::time::Instant::now() + self.body_timeout, overran.clone());
        let body = futures::stream::unfold(Some(Box::pin(body)), move |body| {
            let flag = flag.clone();
            async move {
                let mut body = body?;
                match tokio::time::timeout_at(deadline, body.next()).await {
                    Ok(chunk) => Some((chunk?, Some(body))),
                    Err(_) => {
                        flag.store(TOO_SLOW, Ordering::Relaxed);
                        Some((Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "request body too slow")), None))
                    }
                }
            }
        });
        req.set_body(Body::from_bytes_stream(body));
        Ok(Admitted { _slot: slot, overran, limit, within: self.body_timeout })
    }
}
