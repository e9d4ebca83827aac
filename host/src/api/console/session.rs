//! Console sessions. The admin token is typed once into the login form and exchanged for a
//! random session id in an `HttpOnly`, `SameSite=Strict` cookie, so no script of the page
//! ever holds it (not in a URL, not in `localStorage`). Each session has its own CSRF token,
//! written into the console's page; every state-changing request with the cookie must carry
//! it in `X-CSRF-Token` (a cross-site form cannot set a header), and an `Origin` other than
//! the host's own is refused. `SameSite=Strict` already keeps the cookie off cross-site
//! requests; the token also covers a page on the same site (another port of the same host).
//!
//! Sessions live in this host's memory: logout really ends one, and a restart ends them all
//! (log in again). Behind a load balancer, pin the console to one host.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use poem::{http::header, Request};

use crate::api::AdminToken;

/// The session cookie's name.
pub const COOKIE: &str = "shopmesh_console";
/// The header a state-changing request carries its session's CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts without logging in again.
const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// A bound on live sessions: logging in again and again cannot grow memory without end.
const MAX_SESSIONS: usize = 1024;

/// A live session: its id (the cookie's value) and CSRF token.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub csrf: String,
}

/// Why a request with a session cookie was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("cross-site request refused: a state-changing console request needs its X-CSRF-Token header and the host's own Origin")]
    Csrf,
}

pub struct Sessions {
    token: AdminToken,
    live: Mutex<HashMap<String, (String, Instant)>>,
}

impl Sessions {
    pub fn new(token: AdminToken) -> Sessions {
        Sessions { token, live: Mutex::default() }
    }

    /// A new session when `offered` is the admin token.
    pub fn login(&self, offered: &str) -> Option<Session> {
        if !self.token.matches(offered) {
            return None;
        }
        let session = Session { id: random_hex(), csrf: random_hex() };
        let mut live = self.live.lock().expect("sessions lock");
        let now = Instant::now();
        live.retain(|_, (_, expires)| *expires > now);
        if live.len() >= MAX_SESSIONS {
            // The oldest goes: it is the one closest to expiring anyway.
            if let Some(oldest) = live.iter().min_by_key(|(_, (_, e))| *e).map(|(k, _)| k.clone()) {
                live.remove(&oldest);
            }
        }
        live.insert(session.id.clone(), (session.csrf.clone(), now + LIFETIME));
        Some(session)
    }

    pub fn logout(&self, session: &Session) {
        self.live.lock().expect("sessions lock").remove(&session.id);
    }

    /// The live session the request's cookie names, if any.
    pub fn of(&self, req: &Request) -> Option<Session> {
        let id = cookie(req, COOKIE)?;
        let mut live = self.live.lock().expect("sessions lock");
        match live.get(&id) {
            Some((csrf, expires)) if *expires > Instant::now() => Some(Session { id, csrf: csrf.clone() }),
            Some(_) => {
                live.remove(&id);
                None
            }
            None => None,
        }
    }

    /// For the admin API: a request without `Authorization` that carries a live session
    /// is let through as the admin (the token is added here, inside the host); a
    /// state-changing one must pass [`check_csrf`] first. Anything else is left as it is,
    /// for the bearer scheme to judge.
    pub fn admit(&self, req: &mut Request) -> Result<(), Refusal> {
        if req.headers().contains_key(header::AUTHORIZATION) {
            return Ok(());
        }
        let Some(session) = self.of(req) else { return Ok(()) };
        check_csrf(req, &session)?;
        let bearer = format!("Bearer {}", secrecy::ExposeSecret::expose_secret(&self.token.0));
        let value = header::HeaderValue::from_str(&bearer).map_err(|_| Refusal::Csrf)?;
        req.headers_mut().insert(header::AUTHORIZATION, value);
        Ok(())
    }
}

/// A safe method passes; any other needs the session's CSRF token in [`CSRF_HEADER`] (or,
/// for the console's own forms, the `csrf` field checked by the caller) and no foreign
/// `Origin`.
pub fn check_csrf(req: &Request, session: &Session) -> Result<(), Refusal> {
    if req.method().is_safe() {
        return Ok(());
    }
    let sent = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !same(sent, &session.csrf) || !same_origin(req) {
        return Err(Refusal::Csrf);
    }
    Ok(())
}

/// Whether the request's `Origin` (when a browser sent one) is this host: the `Host` it
/// asked for, or, behind a reverse proxy that rewrites `Host`, the `X-Forwarded-Host` the
/// proxy passed on.
pub fn same_origin(req: &Request) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return true };
    let Some((_, authority)) = origin.split_once("://") else { return false };
    [header::HOST.as_str(), "x-forwarded-host"]
        .into_iter()
        .filter_map(|h| req.header(h))
        .any(|host| !host.is_empty() && authority.eq_ignore_ascii_case(host))
}

/// Constant-time equality of two tokens.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `Set-Cookie` value that starts a session, or (`None`) ends it. `Secure` when the
/// browser reached the host over HTTPS (directly, or through a proxy that says so), so the
/// cookie never travels in clear afterwards; not on plain HTTP, where it would never be sent.
pub fn set_cookie(req: &Request, session: Option<&Session>) -> String {
    let https = req.uri().scheme_str() == Some("https") || req.header("x-forwarded-proto").is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let secure = if https { "; Secure" } else { "" };
    match session {
        Some(s) => format!("{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}", s.id, LIFETIME.as_secs()),
        None => format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    }
}

fn cookie(req: &Request, name: &str) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// 32 random bytes from the operating system, as hex.
fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    fn sessions() -> Sessions {
        Sessions::new(AdminToken(SecretString::from("t0ken")))
    }

    fn request(method: &str, cookie: Option<&str>, headers: &[(&str, &str)]) -> Request {
        let mut b = Request::builder().method(method.parse().unwrap()).uri("/api/admin/plugins".parse().unwrap()).header(header::HOST, "localhost:8080");
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, format!("other=1; {COOKIE}={c}"));
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.finish()
    }

    fn good_request(session: &Session) -> Request {
        request("GET", Some(&session.id), &[])
    }

    #[test]
    fn only_the_token_logs_in_and_logout_ends_the_session() {
        let s = sessions();
        assert!(s.login("wrong").is_none());
        let session = s.login("t0ken").unwrap();
        assert_eq!(session.id.len(), 64);
        assert_ne!(session.id, session.csrf);
        assert_eq!(s.of(&request("GET", Some(&session.id), &[])).unwrap().csrf, session.csrf);
        s.logout(&session);
        assert!(s.of(&request("GET", Some(&session.id), &[])).is_none());
    }

    #[test]
    fn a_state_change_needs_the_csrf_token_and_the_hosts_origin() {
        let s = sessions();
        let session = s.login("t0ken").unwrap();
        let mut read = request("GET", Some(&session.id), &[]);
        s.admit(&mut read).unwrap();
        assert_eq!(read.headers()[header::AUTHORIZATION], "Bearer t0ken");

        let mut forged = request("POST", Some(&session.id), &[]);
        assert_eq!(s.admit(&mut forged), Err(Refusal::Csrf));
        assert!(!forged.headers().contains_key(header::AUTHORIZATION));
        let mut foreign = request("POST", Some(&session.id), &[(CSRF_HEADER, &session.csrf), ("origin", "http://localhost:9999")]);
        assert_eq!(s.admit(&mut foreign), Err(Refusal::Csrf));
        let mut proxied = request("POST", Some(&session.id), &[(CSRF_HEADER, &session.csrf), ("origin", "https://console.example"), ("x-forwarded-host", "console.example")]);
        s.admit(&mut proxied).unwrap();
        let mut null = request("POST", Some(&session.id), &[(CSRF_HEADER, &session.csrf), ("origin", "null")]);
        assert_eq!(s.admit(&mut null), Err(Refusal::Csrf));
        let mut wrong = request("POST", Some(&session.id), &[(CSRF_HEADER, &session.id)]);
        assert_eq!(s.admit(&mut wrong), Err(Refusal::Csrf));

        assert!(!set_cookie(&good_request(&session), Some(&session)).contains("Secure"));
        let proxied = request("GET", None, &[("x-forwarded-proto", "https")]);
        assert!(set_cookie(&proxied, Some(&session)).ends_with("; Secure"));

        let mut good = request("POST", Some(&session.id), &[(CSRF_HEADER, &session.csrf), ("origin", "http://localhost:8080")]);
        s.admit(&mut good).unwrap();
        assert_eq!(good.headers()[header::AUTHORIZATION], "Bearer t0ken");
        // No cookie, or a dead one: left to the bearer scheme (which answers 401).
        let mut stranger = request("POST", Some("0000"), &[]);
        s.admit(&mut stranger).unwrap();
        assert!(!stranger.headers().contains_key(header::AUTHORIZATION));
    }
}
