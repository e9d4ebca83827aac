use std::sync::Arc;

use poem::{Request, web::Data};
use poem_openapi::{OpenApi, SecurityScheme, auth::Bearer, param::{Path, Query}, payload::{Binary, Json}};

use super::{ApiTags, Created, errors::api_error};
use crate::{
    config::Secret,
    error::ShopError,
    plugins::{DeadLetter, PluginHost, PluginStatus},
    shop::{Coupon, Goods, NewCoupon, NewGoods, NewUser, Shop, User},
};

/// The operators' bearer token.
#[derive(Clone)]
pub struct AdminToken(pub Secret);

/// `Authorization: Bearer <admin token>`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", checker = "check_admin_token")]
pub struct AdminAuth(());

async fn check_admin_token(req: &Request, bearer: Bearer) -> Option<()> {
    let expected = req.data::<AdminToken>()?;
    // Constant-time: compare MACs of both sides rather than the strings themselves.
    use hmac::{Mac, digest::KeyInit};
    let mac = |s: &str| {
        let mut m = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(b"admin-token").expect("any key");
        m.update(s.as_bytes());
        m
    };
    let want = mac(expected.0.expose()).finalize().into_bytes();
    mac(&bearer.token).verify_slice(&want).ok()
}

api_error!(
    /// Errors of the admin endpoints.
    AdminError {
        401 => Unauthorized: "Missing or wrong bearer token.",
        404 => NotFound: "A referenced resource does not exist.",
    }
);

pub struct AdminApi;

#[OpenApi(prefix_path = "/api/admin")]
impl AdminApi {
    /// Add goods
    #[oai(path = "/goods", method = "post", tag = "ApiTags::Admin")]
    async fn add_goods(&self, _auth: AdminAuth, shop: Data<&Arc<Shop>>, body: Json<NewGoods>) -> Result<Created<Goods>, AdminError> {
        Ok(Created::Created(Json(shop.add_goods(body.0).await?)))
    }

    /// Add a user
    #[oai(path = "/users", method = "post", tag = "ApiTags::Admin")]
    async fn add_user(&self, _auth: AdminAuth, shop: Data<&Arc<Shop>>, body: Json<NewUser>) -> Result<Created<User>, AdminError> {
        Ok(Created::Created(Json(shop.add_user(body.0).await?)))
    }

    /// Add a coupon for a user
    #[oai(path = "/coupons", method = "post", tag = "ApiTags::Admin")]
    async fn add_coupon(&self, _auth: AdminAuth, shop: Data<&Arc<Shop>>, body: Json<NewCoupon>) -> Result<Created<Coupon>, AdminError> {
        Ok(Created::Created(Json(shop.add_coupon(body.0).await?)))
    }
}

#[derive(Debug, Clone, poem_openapi::Object)]
pub struct RedriveResult {
    pub id: crate::ids::Id,
    /// "applied", or why it failed again.
    pub result: String,
}

/// Which kept version to make active.
#[derive(Debug, Clone, poem_openapi::Object)]
pub struct Activate {
    #[oai(validator(min_length = 1, max_length = 64))]
    pub version: String,
}

api_error!(
    /// Errors of managing plugins.
    PluginAdminError {
        401 => Unauthorized: "Missing or wrong bearer token.",
        404 => NotFound: "No such plugin or kept version.",
        409 => Conflict: "That version is already known (upload a new version, or activate the kept one).",
        503 => Unavailable: "The fleet registry could not be reached (nothing was activated), or did not come back in time.",
    }
);

fn status_of(host: &PluginHost, name: &str) -> Result<PluginStatus, ShopError> {
    host.status()
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| ShopError::PluginNotFound(format!("no plugin {name}")))
}

pub struct PluginsAdminApi;

#[OpenApi(prefix_path = "/api/admin")]
impl PluginsAdminApi {
    /// List plugins
    ///
    /// Each plugin's active version, sha256, capabilities, subjects, activation time,
    /// invocation and failure counters, and the versions kept for rollback.
    #[oai(path = "/plugins", method = "get", tag = "ApiTags::Admin")]
    async fn list_plugins(&self, _auth: AdminAuth, host: Data<&Arc<PluginHost>>) -> Result<Json<Vec<PluginStatus>>, AdminError> {
        Ok(Json(host.status()))
    }

    /// Upload a new plugin version
    ///
    /// The body is the component (`.wasm`). It is compiled and checked (world, imports,
    /// manifest name, capabilities allowed for the name, a version not seen before), then
    /// put into the fleet's registry, from which every host, this one included, activates
    /// it in the same order. Deliveries in flight finish on the old version. Answers once
    /// it is active here.
    #[oai(path = "/plugins/:name", method = "put", tag = "ApiTags::Admin")]
    async fn upload(&self, _auth: AdminAuth, host: Data<&Arc<PluginHost>>, name: Path<String>, body: Binary<Vec<u8>>) -> Result<Json<PluginStatus>, PluginAdminError> {
        let staged = host.stage(&name.0, &body.0).map_err(ShopError::from)?;
        host.distribute(&name.0, staged.version()).await.map_err(ShopError::from)?;
        Ok(Json(status_of(&host, &name.0)?))
    }

    /// Activate a kept version (rollback)
    #[oai(path = "/plugins/:name/activate", method = "post", tag = "ApiTags::Admin")]
    async fn activate(&self, _auth: AdminAuth, host: Data<&Arc<PluginHost>>, name: Path<String>, body: Json<Activate>) -> Result<Json<PluginStatus>, PluginAdminError> {
        // Through the registry, so every host rolls back, in the same order.
        host.distribute(&name.0, &body.0.version).await.map_err(ShopError::from)?;
        Ok(Json(status_of(&host, &name.0)?))
    }

    /// Disable a plugin: its events wait in JetStream until it is enabled
    #[oai(path = "/plugins/:name/disable", method = "post", tag = "ApiTags::Admin")]
    async fn disable(&self, _auth: AdminAuth, host: Data<&Arc<PluginHost>>, name: Path<String>) -> Result<Json<PluginStatus>, PluginAdminError> {
        host.set_enabled(&name.0, false).map_err(ShopError::from)?;
        Ok(Json(status_of(&host, &name.0)?))
    }

    /// Enable a plugin
    #[oai(path = "/plugins/:name/enable", method = "post", tag = "ApiTags::Admin")]
    async fn enable(&self, _auth: AdminAuth, host: Data<&Arc<PluginHost>>, name: Path<String>) -> Result<Json<PluginStatus>, PluginAdminError> {
        host.set_enabled(&name.0, true).map_err(ShopError::from)?;
        Ok(Json(status_of(&host, &name.0)?))
    }

    /// List dead letters
    ///
    /// Events a plugin could not handle after its retries (or that were malformed), with
    /// the reason. Optionally for one plugin.
    #[oai(path = "/dead-letters", method = "get", tag = "ApiTags::Admin")]
    async fn dead_letters(
        &self,
        _auth: AdminAuth,
        host: Data<&Arc<PluginHost>>,
        plugin: Query<Option<String>>,
    ) -> Result<Json<Vec<DeadLetter>>, AdminError> {
        Ok(Json(host.dead_letters(plugin.0.as_deref()).await.map_err(ShopError::from)?))
    }

    /// Redrive one dead letter
    ///
    /// Runs the event through the plugin's current version once more (after a fix). It is
    /// applied at most once: the plugin's inbox still guards it.
    #[oai(path = "/dead-letters/:id/redrive", method = "post", tag = "ApiTags::Admin")]
    async fn redrive(&self, _auth: AdminAuth, host: Data<&Arc<PluginHost>>, id: Path<crate::ids::Id>) -> Result<Json<RedriveResult>, AdminError> {
        match host.redrive(id.0).await.map_err(ShopError::from)? {
            Some(result) => Ok(Json(RedriveResult { id: id.0, result })),
            None => Err(ShopError::DeadLetterNotFound(id.0).into()),
        }
    }

    /// Redrive every pending dead letter of a plugin
    #[oai(path = "/plugins/:name/redrive", method = "post", tag = "ApiTags::Admin")]
    async fn redrive_all(&self, _auth: AdminAuth, host: Data<&Arc<PluginHost>>, name: Path<String>) -> Result<Json<Vec<RedriveResult>>, AdminError> {
        let mut results = Vec::new();
        for dl in host.dead_letters(Some(&name.0)).await.map_err(ShopError::from)? {
            if dl.redriven_at.is_some() {
                continue;
            }
            if let Some(result) = host.redrive(dl.id).await.map_err(ShopError::from)? {
                results.push(RedriveResult { id: dl.id, result });
            }
        }
        Ok(Json(results))
    }
}
