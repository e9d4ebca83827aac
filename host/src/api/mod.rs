//! The HTTP API: poem-openapi operations over [`crate::shop::Shop`], Swagger UI at `/docs`,
//! the spec at `/openapi.json`. Handlers are thin: parse, call the shop, map the error.

mod admin;
pub mod console;
mod edge;
mod examples;
mod health;
pub mod limits;
mod metrics;
mod observe;
pub mod errors;
mod params;
mod payments;
mod plugins;
mod replays;
mod shop;
mod signed;
mod strict;
mod wellformed;

use std::sync::Arc;

use poem::{Endpoint, EndpointExt, IntoEndpoint, IntoResponse, Route};
use poem_openapi::{ApiResponse, OpenApiService, Tags, payload::Json, types::ToJSON};

pub use admin::AdminToken;
pub use health::Probes;
pub use payments::CallbackSecret;

use crate::{metrics::Metrics, plugins::PluginHost, replay::runner::Replays, shop::{orders::Placed, Shop}};

#[derive(Tags)]
pub enum ApiTags {
    /// Place orders and read them.
    Orders,
    /// Goods, users and coupons.
    Catalog,
    /// Payments and the payment platform's callback.
    Payments,
    /// Operator endpoints (bearer token).
    Admin,
    /// Liveness and readiness probes.
    Health,
}

/// 201 with the created resource.
#[derive(Debug, ApiResponse)]
pub enum Created<T: ToJSON + Send> {
    /// Created.
    #[oai(status = 201)]
    Created(Json<T>),
}

/// What a request that may have been sent before answers: 201 with what it made, or 200 with
/// what an earlier one made.
#[derive(Debug, ApiResponse)]
pub enum Made<T: ToJSON + Send> {
    /// Made by this request.
    #[oai(status = 201)]
    New(Json<T>),
    /// Made by an earlier request, as it stands now (see the operation's description).
    #[oai(status = 200)]
    Before(Json<T>),
}

impl<T: ToJSON + Send> From<Placed<T>> for Made<T> {
    fn from(placed: Placed<T>) -> Made<T> {
        match placed {
            Placed::New(t) => Made::New(Json(t)),
            Placed::Before(t) => Made::Before(Json(t)),
        }
    }
}

type Apis = (shop::ShopApi, payments::PaymentsApi, admin::AdminApi, plugins::PluginsAdminApi, replays::ReplaysApi, observe::ObserveApi, health::HealthApi);

pub fn service() -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (shop::ShopApi, payments::PaymentsApi, admin::AdminApi, plugins::PluginsAdminApi, replays::ReplaysApi, observe::ObserveApi, health::HealthApi),
        "shopmesh",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Shop API: orders, payments and the signed payment callback. Side effects travel as \
         events on NATS JetStream. Ids are strings, money is decimal strings.",
    )
}

/// The spec exactly as served at `/openapi.json` (what `openapi/openapi.json` must equal),
/// with its tags in the order a user meets them (the framework sorts them by name).
pub fn spec_json() -> String {
    reorder_tags(&service().spec())
}

fn reorder_tags(spec: &str) -> String {
    const ORDER: [&str; 5] = ["Catalog", "Orders", "Payments", "Admin", "Health"];
    let mut doc: serde_json::Value = serde_json::from_str(spec).expect("the framework writes JSON");
    close_request_bodies(&mut doc);
    if let Some(tags) = doc.get_mut("tags").and_then(|t| t.as_array_mut()) {
        tags.sort_by_key(|t| ORDER.iter().position(|name| t["name"] == *name).unwrap_or(ORDER.len()));
    }
    serde_json::to_string_pretty(&doc).expect("JSON serialises")
}

/// Everything the routes need from the assembled application.
pub struct Parts {
    pub shop: Arc<Shop>,
    pub plugins: Arc<PluginHost>,
    pub replays: Arc<Replays>,
    pub probes: Probes,
    pub metrics: Arc<Metrics>,
    pub limits: limits::RequestLimits,
    pub admin_token: AdminToken,
    pub callback_secret: CallbackSecret,
}

/// Request bodies are strict ([`strict`]): an unknown field is refused, so the schemas of
/// request bodies say `additionalProperties: false`; and so is a text holding the NUL
/// character, so their free texts say `pattern: ^[^\u0000]*$`.
fn close_request_bodies(doc: &mut serde_json::Value) {
    let mut names = Vec::new();
    for ops in doc["paths"].as_object().into_iter().flat_map(|p| p.values()) {
        for op in ops.as_object().into_iter().flat_map(|o| o.values()) {
            let contents = op.pointer("/requestBody/content").and_then(|c| c.as_object());
            for (media, content) in contents.into_iter().flatten() {
                if let Some(name) = content.pointer("/schema/$ref").and_then(|r| r.as_str()).filter(|_| media.starts_with("application/json")) {
                    names.push(name.trim_start_matches("#/components/schemas/").to_owned());
                }
            }
        }
    }
    for name in names {
        if let Some(schema) = doc["components"]["schemas"].get_mut(&name).and_then(|s| s.as_object_mut()) {
            schema.insert("additionalProperties".into(), false.into());
            for property in schema.get_mut("properties").and_then(|p| p.as_object_mut()).into_iter().flat_map(|p| p.values_mut()) {
                let text = if property["type"] == "array" { property.get_mut("items") } else { Some(property) };
                let free = |t: &serde_json::Value| t["type"] == "string" && ["pattern", "format", "enum"].iter().all(|k| t.get(k).is_none());
                if let Some(text) = text.filter(|t| free(t)).and_then(|t| t.as_object_mut()) {
                    text.insert("pattern".into(), "^[^\\u0000]*$".into());
                }
            }
        }
    }
}

pub fn routes(parts: Parts) -> impl IntoEndpoint {
    let Parts { shop, plugins, replays, probes, metrics, limits, admin_token, callback_secret } = parts;
    let api = service();
    let spec = spec_json();
    // Swagger UI embeds the spec it shows: give it the served one.
    let docs = api.swagger_ui_html().replace(&api.spec(), &spec);
    let edge = Arc::new(edge::Edge::new(metrics.clone(), limits, &serde_json::from_str(&spec).expect("the spec is JSON")));
    let sessions = Arc::new(console::session::Sessions::new(admin_token.clone()));
    // The console's session stands in for the bearer token on the admin endpoints.
    let admitting = sessions.clone();
    let api = api.into_endpoint().around(move |next, mut req| {
        let sessions = admitting.clone();
        async move {
            if req.uri().path().starts_with("/api/admin/") {
                if let Err(why) = sessions.admit(&mut req) {
                    return Ok(console::refused(why));
                }
            }
            next.call(req).await.map(IntoResponse::into_response)
        }
    });
    Route::new()
        .nest("/", api)
        .nest("/console", console::routes(sessions))
        .at("/docs", poem::endpoint::make_sync(move |_| poem::web::Html(docs.clone())))
        .at("/openapi.json", poem::endpoint::make_sync(move |_| {
            poem::Response::builder().content_type("application/json; charset=utf-8").body(spec.clone())
        }))
        .at("/metrics", poem::get(metrics::scrape))
        .data(metrics.clone())
        .data(shop)
        .data(plugins)
        .data(replays)
        .data(probes)
        .data(admin_token)
        .data(callback_secret)
        .around(move |next, req| {
            let edge = edge.clone();
            async move {
                // The bare address points people at the docs.
                if req.uri().path() == "/" && req.method() == poem::http::Method::GET {
                    return Ok(poem::web::Redirect::see_other("/docs").into_response());
                }
                edge::around(next, req, &edge).await
            }
        })
}
