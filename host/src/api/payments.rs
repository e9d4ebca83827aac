use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

use poem::web::Data;
use poem_openapi::{Object, OpenApi, param::{Header, Path}, payload::Json};

use super::{ApiTags, Made, errors::api_error, signed::SignedJson, strict::StrictJson};
use crate::{
    ids::{now_ms, Id},
    shop::{
        payments::{CallbackOutcome, CreatePayment, Payment, PaymentNotice},
        Shop, ShopError,
    },
    signature,
};

/// The callback's HMAC key, shared with the payment platform.
#[derive(Clone)]
pub struct CallbackSecret(pub SecretString);

api_error!(
    /// Errors of creating a payment.
    PaymentError (400 "SHOP_PAYMENT_AMOUNT_INVALID") body {
        404 => NotFound("SHOP_ORDER_INVALID"): "No such order.",
        409 => Conflict("SHOP_ORDER_PAY_STATUS_IS_PAY"): "The order is not confirmed, or already paid.",
    }
);

api_error!(
    /// Errors of the payment callback.
    CallbackError (400 "SHOP_PAYMENT_AMOUNT_INVALID") body {
        401 => Unauthorized("SHOP_CALLBACK_SIGNATURE_INVALID"): "Missing, malformed, stale or wrong X-Shop-Signature; nothing changed.",
        404 => NotFound("SHOP_PAYMENT_NOT_FOUND"): "No such payment.",
        409 => Conflict("SHOP_ORDER_STATUS_NOT_CONFIRMED"): "The payment's order cannot be paid (not confirmed).",
    }
);

api_error!(lookups {
    /// Errors of reading a payment.
    PaymentLookupError: 404 "SHOP_PAYMENT_NOT_FOUND": "No such payment.";
});

#[derive(Debug, Clone, Object)]
pub struct CallbackAck {
    pub pay_id: Id,
    pub outcome: CallbackOutcome,
}

pub struct PaymentsApi;

#[OpenApi(prefix_path = "/api")]
impl PaymentsApi {
    /// Create a payment
    ///
    /// For a confirmed, unpaid order; the amount must equal the order's pay_amount. An order
    /// has one payment: asking again answers 200 with the same unpaid payment.
    #[oai(path = "/payments", method = "post", operation_id = "createPayment", tag = "ApiTags::Payments")]
    async fn create_payment(&self, shop: Data<&Arc<Shop>>, body: StrictJson<CreatePayment>) -> Result<Made<Payment>, PaymentError> {
        Ok(shop.create_payment(body.0).await?.into())
    }

    /// Get a payment
    #[oai(path = "/payments/:pay_id", method = "get", operation_id = "getPayment", tag = "ApiTags::Payments")]
    async fn get_payment(&self, shop: Data<&Arc<Shop>>, #[oai(example = "super::examples::pay_id")] pay_id: Path<Id>) -> Result<Json<Payment>, PaymentLookupError> {
        Ok(Json(shop.get::<Payment>(pay_id.0).await?))
    }

    /// Payment platform callback
    ///
    /// Signed: `X-Shop-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`
    /// with the shared callback secret, t within 300 s of the server's clock. Marks the
    /// payment and its order paid and emits one pay-success event, in one transaction, and
    /// answers at once. A repeated callback for a paid payment answers 200 and emits nothing.
    #[oai(path = "/payments/callback", method = "post", operation_id = "paymentCallback", tag = "ApiTags::Payments")]
    async fn callback(
        &self,
        shop: Data<&Arc<Shop>>,
        secret: Data<&CallbackSecret>,
        #[oai(name = "X-Shop-Signature")] signature: Header<Option<String>>,
        body: SignedJson<PaymentNotice>,
    ) -> Result<Json<CallbackAck>, CallbackError> {
        signature::verify(secret.0.0.expose_secret().as_bytes(), signature.0.as_deref(), &body.raw, now_ms() / 1000)
            .map_err(ShopError::SignatureInvalid)?;
        let notice = body.parse().map_err(ShopError::RequestParameterInvalid)?;
        let pay_id = notice.pay_id;
        let outcome = shop.payment_callback(notice).await?;
        Ok(Json(CallbackAck { pay_id, outcome }))
    }
}
