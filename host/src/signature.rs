//! The payment callback's signature: header
//! `X-Shop-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`.
//! The timestamp bounds replays; the MAC is compared in constant time (`verify_slice`).

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// How far the callback's timestamp may be from our clock, either way.
pub const TOLERANCE_SECS: i64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("X-Shop-Signature header is missing")]
    Missing,
    #[error("X-Shop-Signature header is malformed (want t=<unix seconds>,v1=<hex>)")]
    Malformed,
    #[error("timestamp is more than {TOLERANCE_SECS} s away from now")]
    Stale,
    #[error("signature does not match")]
    Mismatch,
}

fn mac(secret: &[u8], t: i64, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The header value a payment platform sends for `body` at time `t`.
pub fn sign(secret: &[u8], t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", hex::encode(mac(secret, t, body).finalize().into_bytes()))
}

pub fn verify(
    secret: &[u8],
    header: Option<&str>,
    body: &[u8],
    now_secs: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = hex::decode(v).ok(),
            _ => {}
        }
    }
    let (t, v1) = t.zip(v1).ok_or(SignatureError::Malformed)?;
    // Saturating: `t` is the sender's, and i64::MIN must read as stale, not overflow.
    if now_secs.saturating_sub(t).saturating_abs() > TOLERANCE_SECS {
        return Err(SignatureError::Stale);
    }
    mac(secret, t, body).verify_slice(&v1).map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_own_signature_and_rejects_the_rest() {
        let body = br#"{"pay_id":"1"}"#;
        let h = sign(b"k", 1000, body);
        assert_eq!(verify(b"k", Some(&h), body, 1000), Ok(()));
        assert_eq!(verify(b"k", Some(&h), body, 1000 + TOLERANCE_SECS), Ok(()));
        assert_eq!(verify(b"k", Some(&h), body, 1301), Err(SignatureError::Stale));
        assert_eq!(verify(b"other", Some(&h), body, 1000), Err(SignatureError::Mismatch));
        assert_eq!(verify(b"k", Some(&h), b"{}", 1000), Err(SignatureError::Mismatch));
        assert_eq!(verify(b"k", None, body, 1000), Err(SignatureError::Missing));
        assert_eq!(verify(b"k", Some("v1=00"), body, 1000), Err(SignatureError::Malformed));
        // Times at the ends of i64: stale, not an overflow (a panic in a debug build).
        assert_eq!(verify(b"k", Some(&format!("t={},v1=00", i64::MIN)), body, 1000), Err(SignatureError::Stale));
        assert_eq!(verify(b"k", Some(&format!("t={},v1=00", i64::MAX)), body, -1000), Err(SignatureError::Stale));
    }
}
