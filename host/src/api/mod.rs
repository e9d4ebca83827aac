//! The HTTP API: poem-openapi operations over [`crate::shop::Shop`], Swagger UI at `/docs`,
//! the spec at `/openapi.json`. Handlers are thin: parse, call the shop, map the error.

mod admin;
pub mod errors;
mod payments;
mod plugins;
mod replays;
mod shop;
mod signed;

use std::sync::Arc;

use poem::{EndpointExt, IntoEndpoint, Route};
use poem_openapi::{ApiResponse, OpenApiService, Tags, payload::Json, types::ToJSON};

pub use admin::AdminToken;
pub use payments::CallbackSecret;

use crate::{plugins::PluginHost, replay::runner::Replays, shop::Shop};

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
}

/// 201 with the created resource.
#[derive(Debug, ApiResponse)]
pub enum Created<T: ToJSON + Send> {
    /// Created.
    #[oai(status = 201)]
    Created(Json<T>),
}

type Apis = (shop::ShopApi, payments::PaymentsApi, admin::AdminApi, plugins::PluginsAdminApi, replays::ReplaysApi);

pub fn service() -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (shop::ShopApi, payments::PaymentsApi, admin::AdminApi, plugins::PluginsAdminApi, replays::ReplaysApi),
        "shopmesh",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Shop API: orders, payments and the signed payment callback. Side effects travel as \
         events on NATS JetStream. Ids are strings, money is decimal strings.",
    )
}

/// The spec exactly as served at `/openapi.json` (what `openapi/openapi.json` must equal).
pub fn spec_json() -> String {
    service().spec()
}

pub fn routes(shop: Arc<Shop>, plugins: Arc<PluginHost>, replays: Arc<Replays>, admin_token: AdminToken, callback_secret: CallbackSecret) -> impl IntoEndpoint {
    let api = service();
    let docs = api.swagger_ui();
    let spec = api.spec_endpoint();
    Route::new()
        .nest("/", api)
        .nest("/docs", docs)
        .at("/openapi.json", spec)
        .data(shop)
        .data(plugins)
        .data(replays)
        .data(admin_token)
        .data(callback_secret)
        // Whatever poem-openapi did not answer itself (an unknown path, a wrong method)
        // still answers in the API's error shape.
        .catch_all_error(|err: poem::Error| async move {
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
            let body = serde_json::json!({ "code": code, "message": err.to_string() });
            poem::IntoResponse::into_response(poem::IntoResponse::with_status(poem::web::Json(body), err.status()))
        })
}
