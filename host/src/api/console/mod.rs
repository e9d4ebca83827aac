//! The operator console at `/console`: a few pages of plain HTML, CSS and JavaScript
//! embedded in the binary (no CDN, no build step, works offline), which call the admin API
//! with the session of [`session`] instead of the token. Pages: overview, plugin, dead
//! letters, replay, order timeline; the page script (`host/console/app.js`) draws them.
//!
//! Without a session every page redirects to the login page, and every admin call answers
//! 401. Responses carry a strict Content-Security-Policy: only this host's own scripts and
//! styles run, nothing frames the console.

pub mod session;

use std::sync::Arc;

use poem::{
    handler,
    http::{header, StatusCode},
    web::{Data, Form, Path, Query, Redirect},
    Endpoint, EndpointExt, IntoResponse, Request, Response, Route,
};

use self::session::{Refusal, Sessions};

const SHELL: &str = include_str!("../../../console/index.html");
const LOGIN: &str = include_str!("../../../console/login.html");
const APP_JS: &str = include_str!("../../../console/app.js");
const APP_CSS: &str = include_str!("../../../console/app.css");

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's routes (under `/console`).
pub fn routes(sessions: Arc<Sessions>) -> impl Endpoint {
    Route::new()
        .at("/", poem::get(shell))
        .at("/login", poem::get(login_page).post(login))
        .at("/logout", poem::post(logout))
        .at("/assets/:file", poem::get(asset))
        .at("/*rest", poem::get(shell))
        .data(sessions)
        .after(|resp: poem::Result<Response>| async move {
            // What the routes answer themselves (a wrong method, say) in the API's shape.
            let mut resp = resp.unwrap_or_else(super::edge::framework_error);
            let headers = resp.headers_mut();
            headers.insert(header::CONTENT_SECURITY_POLICY, header::HeaderValue::from_static(CSP));
            headers.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
            headers.insert(header::REFERRER_POLICY, header::HeaderValue::from_static("same-origin"));
            Ok(resp)
        })
}

/// What a request refused by [`Sessions::admit`] (or the console's own checks) is answered:
/// 403 `SHOP_CSRF_REFUSED`; nothing ran.
pub fn refused(why: Refusal) -> Response {
    super::errors::respond(StatusCode::FORBIDDEN, "SHOP_CSRF_REFUSED", &why.to_string())
}

fn html(page: String, status: StatusCode) -> Response {
    Response::builder()
        .status(status)
        .content_type("text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(page)
}

/// To the login form, which brings the operator back to `req`'s page afterwards.
fn to_login(req: &Request) -> Response {
    // The URI as the browser sent it (nested routes see only their own part of the path).
    let page = req.original_uri().path_and_query().map_or("/console", |p| p.as_str());
    let mut next = String::new();
    for c in page.chars() {
        match c {
            '%' | '&' | '=' | '?' | '#' | '+' | ' ' => next.push_str(&format!("%{:02X}", c as u32)),
            c => next.push(c),
        }
    }
    Redirect::see_other(format!("/console/login?next={next}")).into_response()
}

/// Where to go after logging in: a console page, never another site.
fn next_page(next: Option<&str>) -> &str {
    match next {
        // No control characters either: a line break would make no Location header at all.
        Some(n) if n.starts_with("/console") && !n.contains("//") && !n.contains('\\') && !n.chars().any(char::is_control) => n,
        _ => "/console",
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Every page is the same shell; the script draws the page the path names. The session's
/// CSRF token is written into it for the script's state-changing calls.
#[handler]
fn shell(req: &Request, sessions: Data<&Arc<Sessions>>) -> Response {
    match sessions.of(req) {
        Some(s) => html(SHELL.replace("{{csrf}}", &s.csrf), StatusCode::OK),
        None => to_login(req),
    }
}

fn login_form(message: &str, next: &str) -> String {
    LOGIN.replace("{{message}}", &escape(message)).replace("{{next}}", &escape(next))
}

#[derive(serde::Deserialize)]
struct Next {
    next: Option<String>,
}

#[handler]
fn login_page(req: &Request, sessions: Data<&Arc<Sessions>>, Query(next): Query<Next>) -> Response {
    let next = next_page(next.next.as_deref());
    match sessions.of(req) {
        Some(_) => Redirect::see_other(next).into_response(),
        None => html(login_form("", next), StatusCode::OK),
    }
}

#[derive(serde::Deserialize)]
struct Login {
    token: String,
    next: Option<String>,
}

#[handler]
fn login(req: &Request, sessions: Data<&Arc<Sessions>>, form: poem::Result<Form<Login>>) -> Response {
    // Login CSRF: another site must not log a browser into this console.
    if !session::same_origin(req) {
        return refused(Refusal::Csrf);
    }
    let Ok(Form(login)) = form else {
        return html(login_form("send the admin token in the form's token field", "/console"), StatusCode::BAD_REQUEST);
    };
    let next = next_page(login.next.as_deref());
    match sessions.login(login.token.trim()) {
        Some(s) => {
            tracing::info!(by = %super::plugins::who(req), "console login");
            let mut resp = Redirect::see_other(next).into_response();
            resp.headers_mut().insert(header::SET_COOKIE, header::HeaderValue::from_str(&session::set_cookie(req, Some(&s))).expect("a cookie is ASCII"));
            resp
        }
        None => {
            tracing::warn!(by = %super::plugins::who(req), "console login refused: wrong admin token");
            html(login_form("admin token wrong", next), StatusCode::UNAUTHORIZED)
        }
    }
}

#[handler]
fn logout(req: &Request, sessions: Data<&Arc<Sessions>>) -> Response {
    let Some(s) = sessions.of(req) else {
        return super::errors::respond(StatusCode::UNAUTHORIZED, "SHOP_UNAUTHORIZED", "no console session");
    };
    if let Err(why) = session::check_csrf(req, &s) {
        return refused(why);
    }
    sessions.logout(&s);
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(header::SET_COOKIE, header::HeaderValue::from_str(&session::set_cookie(req, None)).expect("a cookie is ASCII"));
    resp
}

/// The script and the style sheet (nothing secret: served without a session).
#[handler]
fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        _ => return super::errors::respond(StatusCode::NOT_FOUND, "SHOP_NOT_FOUND", &format!("no console asset {file:?}")),
    };
    Response::builder().content_type(kind).header(header::CACHE_CONTROL, "no-cache").body(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_login_only_console_pages() {
        assert_eq!(next_page(Some("/console/orders/7?x=1")), "/console/orders/7?x=1");
        for foreign in [None, Some("https://evil.example/console"), Some("//evil.example"), Some("/console//evil"), Some("/api/admin/x"), Some("/console\\x"), Some("/console\r\nX-Injected: 1")] {
            assert_eq!(next_page(foreign), "/console", "{foreign:?}");
        }
        assert!(login_form("<b>", "\"/console\"").contains("value=\"&quot;/console&quot;\""));
    }
}
