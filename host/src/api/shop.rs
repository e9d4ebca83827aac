use std::sync::Arc;

use poem::web::Data;
use poem_openapi::{OpenApi, param::Path, payload::Json};

use super::{ApiTags, Created, errors::api_error};
use crate::{
    ids::Id,
    shop::{
        coupons::Coupon,
        orders::{Order, PlaceOrder},
        stock::Goods,
        users::User,
        Shop,
    },
};

api_error!(
    /// Errors of placing an order.
    OrderError {
        404 => NotFound: "The goods, user or coupon does not exist.",
        409 => Conflict: "Stock, coupon or balance no longer allow it; a cancelled order is left behind when a step already ran.",
        503 => Unavailable: "A step's service failed; the order was cancelled and its give-backs announced.",
    }
);

api_error!(
    /// Errors of reading one resource.
    LookupError {
        404 => NotFound: "No such resource.",
    }
);

pub struct ShopApi;

#[OpenApi(prefix_path = "/api")]
impl ShopApi {
    /// Place and confirm an order
    ///
    /// Validates the order against current prices, stock, coupon and balance, then takes
    /// stock, uses the coupon, deducts the balance and confirms. If a step fails after the
    /// pre-order is saved, the order is cancelled and an order-cancel event gives back what
    /// was taken.
    #[oai(path = "/orders", method = "post", tag = "ApiTags::Orders")]
    async fn place_order(&self, shop: Data<&Arc<Shop>>, body: Json<PlaceOrder>) -> Result<Created<Order>, OrderError> {
        Ok(Created::Created(Json(shop.place_order(body.0).await?)))
    }

    /// Get an order
    #[oai(path = "/orders/:order_id", method = "get", tag = "ApiTags::Orders")]
    async fn get_order(&self, shop: Data<&Arc<Shop>>, order_id: Path<Id>) -> Result<Json<Order>, LookupError> {
        Ok(Json(shop.get::<Order>(order_id.0).await?))
    }

    /// Get goods
    #[oai(path = "/goods/:goods_id", method = "get", tag = "ApiTags::Catalog")]
    async fn get_goods(&self, shop: Data<&Arc<Shop>>, goods_id: Path<Id>) -> Result<Json<Goods>, LookupError> {
        Ok(Json(shop.get::<Goods>(goods_id.0).await?))
    }

    /// Get a user
    #[oai(path = "/users/:user_id", method = "get", tag = "ApiTags::Catalog")]
    async fn get_user(&self, shop: Data<&Arc<Shop>>, user_id: Path<Id>) -> Result<Json<User>, LookupError> {
        Ok(Json(shop.get::<User>(user_id.0).await?))
    }

    /// Get a coupon
    #[oai(path = "/coupons/:coupon_id", method = "get", tag = "ApiTags::Catalog")]
    async fn get_coupon(&self, shop: Data<&Arc<Shop>>, coupon_id: Path<Id>) -> Result<Json<Coupon>, LookupError> {
        Ok(Json(shop.get::<Coupon>(coupon_id.0).await?))
    }
}
