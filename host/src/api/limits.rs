//! What one request may cost the host: a body cap per route, checked against
//! `Content-Length` before anything is read and enforced while reading when the length is
//! not announced (chunked), and a bound on requests in flight, past which the host answers
//! 503 at once instead of queueing work and memory.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
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
    in_flight: Arc<Semaphore>,
}

/// Why a request was turned away before it ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its body is (announced as) larger than its route's cap.
    TooLarge { limit: usize },
    /// Too many requests in flight.
    Busy,
}

impl Refused {
    pub fn status(self) -> u16 {
        match self {
            Refused::TooLarge { .. } => 413,
            Refused::Busy => 503,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Refused::TooLarge { .. } => "SHOP_PAYLOAD_TOO_LARGE",
            Refused::Busy => "SHOP_OVERLOADED",
        }
    }

    pub fn message(self) -> String {
        match self {
            Refused::TooLarge { limit } => format!("request body larger than {limit} bytes, the limit of this route"),
            Refused::Busy => "too many requests in flight; retry shortly".into(),
        }
    }
}

/// A request admitted: its slot in flight, and whether reading its body ran past the cap.
pub struct Admitted {
    _slot: OwnedSemaphorePermit,
    over: Arc<AtomicBool>,
    limit: usize,
}

impl Admitted {
    /// The body turned out larger than the cap while it was read.
    pub fn overran(&self) -> Option<Refused> {
        self.over.load(Ordering::Relaxed).then_some(Refused::TooLarge { limit: self.limit })
    }
}

impl RequestLimits {
    pub fn new(json_body: usize, upload_body: usize, max_in_flight: usize) -> RequestLimits {
        RequestLimits { json_body, upload_body, in_flight: Arc::new(Semaphore::new(max_in_flight.max(1))) }
    }

    fn body_cap(&self, method: &Method, path: &str) -> usize {
        if method == Method::PUT && path.starts_with("/api/admin/plugins/") {
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
        let slot = self.in_flight.clone().try_acquire_owned().map_err(|_| Refused::Busy)?;
        // Counted while read: a chunked body announces nothing, and a wrong length is no
        // promise. Past the cap the read fails, so nothing larger is ever held.
        let over = Arc::new(AtomicBool::new(false));
        let flag = over.clone();
        let mut seen = 0usize;
        let stream = req.take_body().into_bytes_stream().map(move |chunk| {
            let chunk = chunk?;
            seen += chunk.len();
            if seen > limit {
                flag.store(true, Ordering::Relaxed);
                return Err(std::io::Error::other(format!("request body larger than {limit} bytes")));
            }
            Ok(chunk)
        });
        req.set_body(Body::from_bytes_stream(stream));
        Ok(Admitted { _slot: slot, over, limit })
    }
}
