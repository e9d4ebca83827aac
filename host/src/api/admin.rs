use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

use poem::{Request, web::Data};
use poem_openapi::{OpenApi, SecurityScheme, auth::Bearer, payload::Json};

use super::{ApiTags, Created, errors::api_error};
use crate::{
        shop::{
        coupons::{Coupon, NewCoupon},
        stock::{Goods, NewGoods},
        users::{NewUser, User},
        Shop,
    },
};

/// The operators' bearer token.
#[derive(Clone)]
pub struct AdminToken(pub SecretString);

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
    let want = mac(expected.0.expose_secret()).finalize().into_bytes();
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
