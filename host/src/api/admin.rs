use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

use poem::{Request, web::Data};
use poem_openapi::{OpenApi, SecurityScheme, auth::Bearer, payload::Json};

use super::{ApiTags, Created, errors::{api_error, TokenWrong}, strict::StrictJson};
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

impl AdminToken {
    /// Whether `offered` is the token, compared in constant time: MACs of both sides are
    /// compared rather than the strings themselves.
    pub fn matches(&self, offered: &str) -> bool {
        use hmac::{Mac, digest::KeyInit};
        let mac = |s: &str| {
            let mut m = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(b"admin-token").expect("any key");
            m.update(s.as_bytes());
            m
        };
        let want = mac(self.0.expose_secret()).finalize().into_bytes();
        mac(offered).verify_slice(&want).is_ok()
    }
}

/// `Authorization: Bearer <admin token>`. The operator console's session stands in for it
/// (see `console::session`): a same-origin request with the console's cookie, and on a
/// state-changing request its `X-CSRF-Token`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", checker = "check_admin_token")]
pub struct AdminAuth(());

async fn check_admin_token(req: &Request, bearer: Bearer) -> poem::Result<()> {
    let wrong = || poem::Error::new(TokenWrong, poem::http::StatusCode::UNAUTHORIZED);
    let expected = req.data::<AdminToken>().ok_or_else(wrong)?;
    expected.matches(&bearer.token).then_some(()).ok_or_else(wrong)
}

api_error!(
    /// Errors of the admin endpoints that only read.
    AdminError (400 "SHOP_REQUEST_PARAMETER_INVALID") admin {}
);

api_error!(
    /// Errors of adding goods or a user.
    NewEntityError (400 "SHOP_REQUEST_PARAMETER_INVALID") admin body {}
);

api_error!(
    /// Errors of adding a coupon.
    CouponAdminError (400 "SHOP_REQUEST_PARAMETER_INVALID") admin body {
        404 => NotFound("SHOP_USER_NO_EXIST"): "The user does not exist.",
    }
);

pub struct AdminApi;

#[OpenApi(prefix_path = "/api/admin")]
impl AdminApi {
    /// Add goods
    #[oai(path = "/goods", method = "post", operation_id = "addGoods", tag = "ApiTags::Admin")]
    async fn add_goods(&self, _auth: AdminAuth, shop: Data<&Arc<Shop>>, body: StrictJson<NewGoods>) -> Result<Created<Goods>, NewEntityError> {
        Ok(Created::Created(Json(shop.add(body.0).await?)))
    }

    /// Add a user
    #[oai(path = "/users", method = "post", operation_id = "addUser", tag = "ApiTags::Admin")]
    async fn add_user(&self, _auth: AdminAuth, shop: Data<&Arc<Shop>>, body: StrictJson<NewUser>) -> Result<Created<User>, NewEntityError> {
        Ok(Created::Created(Json(shop.add(body.0).await?)))
    }

    /// Add a coupon for a user
    #[oai(path = "/coupons", method = "post", operation_id = "addCoupon", tag = "ApiTags::Admin")]
    async fn add_coupon(&self, _auth: AdminAuth, shop: Data<&Arc<Shop>>, body: StrictJson<NewCoupon>) -> Result<Created<Coupon>, CouponAdminError> {
        Ok(Created::Created(Json(shop.add(body.0).await?)))
    }
}

#[cfg(test)]
mod tests {
    use super::NewEntityError;
    use crate::{ids::Id, shop::ShopError};

    #[test]
    fn a_failure_an_operation_does_not_expect_is_a_500_by_its_code_too() {
        // Adding a user answers 400, 401, 408, 413, 415 or 500; not 404.
        let NewEntityError::Internal(body) = NewEntityError::from(ShopError::UserNotFound(Id(7))) else { panic!("not a 500") };
        assert_eq!((body.0 .0.code.as_str(), body.0 .0.message.as_str()), ("SHOP_INTERNAL_ERROR", "internal error; nothing in this request can fix it"));
    }
}
