use std::sync::Arc;

use poem::web::Data;
use poem_openapi::{OpenApi, param::{Header, Path}, payload::Json};

use super::{ApiTags, Made, errors::api_error, strict::StrictJson};
use crate::{
    ids::Id,
    shop::{
        coupons::Coupon,
        orders::{Order, PlaceOrder, Placed},
        stock::Goods,
        users::User,
        Shop,
    },
};

api_error!(
    /// Errors of placing an order.
    OrderError (400 "SHOP_GOODS_PRICE_INVALID") body {
        404 => NotFound("SHOP_GOODS_NO_EXIST"): "The goods, user or coupon does not exist.",
        409 => Conflict("SHOP_GOODS_NUM_NOT_ENOUGH"): "Stock, coupon or balance no longer allow it; a cancelled order is left behind when a step already ran.",
        422 => KeyReused("SHOP_IDEMPOTENCY_KEY_REUSED"): "The Idempotency-Key was sent before with another order of this user; nothing was done.",
    } or 503 ("SHOP_REDUCE_GOODS_NUM_FAIL"): "A step's service failed; the order was cancelled and its give-backs announced."
);

api_error!(lookups {
    /// Errors of reading an order.
    OrderLookupError: 404 "SHOP_ORDER_INVALID": "No such order.";
    /// Errors of reading goods.
    GoodsLookupError: 404 "SHOP_GOODS_NO_EXIST": "No such goods.";
    /// Errors of reading a user.
    UserLookupError: 404 "SHOP_USER_NO_EXIST": "No such user.";
    /// Errors of reading a coupon.
    CouponLookupError: 404 "SHOP_COUPON_NO_EXIST": "No such coupon.";
});

pub struct ShopApi;

#[OpenApi(prefix_path = "/api")]
impl ShopApi {
    /// Place and confirm an order
    ///
    /// Validates the order against current prices, stock, coupon and balance, then takes
    /// stock, uses the coupon, deducts the balance and confirms. If a step fails after the
    /// pre-order is saved, the order is cancelled and an order-cancel event gives back what
    /// was taken.
    ///
    /// With an `Idempotency-Key` (1 to 64 letters, digits, `-` or `_`; one per order the
    /// client means to place), sending the request again, after a timeout say, answers 200
    /// with the order the first one placed instead of placing another, as it stands now
    /// (cancelled, if a step of that request failed; see `cancel_reason`).
    #[oai(path = "/orders", method = "post", operation_id = "placeOrder", tag = "ApiTags::Orders")]
    async fn place_order(
        &self,
        shop: Data<&Arc<Shop>>,
        // Before the body: a bad key is said as such, whatever the body.
        #[oai(name = "Idempotency-Key", validator(pattern = r"^[A-Za-z0-9_-]{1,64}$"))] key: Header<Option<String>>,
        body: StrictJson<PlaceOrder>,
    ) -> Result<Made<Order>, OrderError> {
        let Some(key) = key.0 else {
            return Ok(Placed::New(shop.place_order(body.0).await?).into());
        };
        Ok(shop.place_order_once(body.0, &key).await?.into())
    }

    /// Get an order
    #[oai(path = "/orders/:order_id", method = "get", operation_id = "getOrder", tag = "ApiTags::Orders")]
    async fn get_order(&self, shop: Data<&Arc<Shop>>, #[oai(example = "super::examples::order_id")] order_id: Path<Id>) -> Result<Json<Order>, OrderLookupError> {
        Ok(Json(shop.get::<Order>(order_id.0).await?))
    }

    /// Get goods
    #[oai(path = "/goods/:goods_id", method = "get", operation_id = "getGoods", tag = "ApiTags::Catalog")]
    async fn get_goods(&self, shop: Data<&Arc<Shop>>, #[oai(example = "super::examples::goods_id")] goods_id: Path<Id>) -> Result<Json<Goods>, GoodsLookupError> {
        Ok(Json(shop.get::<Goods>(goods_id.0).await?))
    }

    /// Get a user
    #[oai(path = "/users/:user_id", method = "get", operation_id = "getUser", tag = "ApiTags::Catalog")]
    async fn get_user(&self, shop: Data<&Arc<Shop>>, #[oai(example = "super::examples::user_id")] user_id: Path<Id>) -> Result<Json<User>, UserLookupError> {
        Ok(Json(shop.get::<User>(user_id.0).await?))
    }

    /// Get a coupon
    #[oai(path = "/coupons/:coupon_id", method = "get", operation_id = "getCoupon", tag = "ApiTags::Catalog")]
    async fn get_coupon(&self, shop: Data<&Arc<Shop>>, #[oai(example = "super::examples::coupon_id")] coupon_id: Path<Id>) -> Result<Json<Coupon>, CouponLookupError> {
        Ok(Json(shop.get::<Coupon>(coupon_id.0).await?))
    }
}
