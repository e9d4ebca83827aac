use std::sync::Arc;

use poem::{Request, web::Data};
use poem_openapi::{OpenApi, SecurityScheme, auth::Bearer, param::{Path, Query}, payload::Json};

use super::{ApiTags, Created, errors::api_error};
use crate::{
    config::Secret,
    error::ShopError,
    plugins::{DeadLetter, PluginHost},
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

/// A loaded plugin version.
#[derive(Debug, Clone, poem_openapi::Object)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    /// sha256 of the component bytes.
    pub sha256: String,
    pub subjects: Vec<String>,
    pub capabilities: Vec<String>,
}

#[derive(Debug, Clone, poem_openapi::Object)]
pub struct RedriveResult {
    pub id: crate::ids::Id,
    /// "applied", or why it failed again.
    pub result: String,
}

pub struct PluginsAdminApi;

#[OpenApi(prefix_path = "/api/admin")]
impl PluginsAdminApi {
    /// List loaded plugins
    #[oai(path = "/plugins", method = "get", tag = "ApiTags::Admin")]
    async fn list_plugins(&self, _auth: AdminAuth, host: Data<&Arc<PluginHost>>) -> Result<Json<Vec<PluginInfo>>, AdminError> {
        let list = host
            .names()
            .into_iter()
            .filter_map(|n| host.current(&n))
            .map(|p| PluginInfo {
                name: p.name.clone(),
                version: p.version().to_owned(),
                sha256: p.sha256.clone(),
                subjects: p.subjects().to_vec(),
                capabilities: p.manifest.capabilities.iter().map(|c| crate::plugins::runtime::capability_name(*c).to_owned()).collect(),
            })
            .collect();
        Ok(Json(list))
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
