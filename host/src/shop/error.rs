//! The shop's errors, one variant per rule a request can break, so callers can match them.
//! The API edge (`api::errors`) gives each its stable `SHOP_*` code and HTTP status.

use super::steps::Step;
use crate::ids::Id;

#[derive(Debug, thiserror::Error)]
pub enum ShopError {
    #[error("request parameter invalid: {0}")]
    RequestParameterInvalid(String),
    #[error("order {0} does not exist")]
    OrderNotFound(Id),
    #[error("goods {0} does not exist")]
    GoodsNotFound(Id),
    #[error("user {0} does not exist")]
    UserNotFound(Id),
    #[error("coupon {0} does not exist")]
    CouponNotFound(Id),
    #[error("payment {0} does not exist")]
    PaymentNotFound(Id),
    #[error("goods price is {current}, the order says {ordered}")]
    GoodsPriceInvalid { current: String, ordered: String },
    #[error("goods quantity must be positive, got {0}")]
    GoodsNumInvalid(i64),
    #[error("only {stock} in stock, {wanted} ordered")]
    GoodsNumNotEnough { stock: i64, wanted: i64 },
    #[error("shipping fee should be {expected}, the order says {given}")]
    ShippingFeeInvalid { expected: String, given: String },
    #[error("order amount should be {expected}, the order says {given}")]
    OrderAmountInvalid { expected: String, given: String },
    #[error("coupon {0} belongs to another user")]
    CouponNotOwned(Id),
    #[error("coupon {0} is already used")]
    CouponIsUsed(Id),
    #[error("balance to use must not be negative")]
    MoneyPaidLessZero,
    #[error("balance to use ({wanted}) exceeds the user's balance ({balance})")]
    MoneyPaidInvalid { wanted: String, balance: String },
    #[error("coupon ({coupon}) plus balance ({money}) exceed the order amount ({amount})")]
    DiscountExceedsAmount { coupon: String, money: String, amount: String },
    /// A forward step of the order flow failed after the pre-order was saved; the order
    /// has been cancelled and an order-cancel event written.
    #[error("order {order_id} cancelled: {step} step failed: {reason}")]
    StepFailed { order_id: Id, step: Step, reason: StepFailure },
    #[error("order {0} is not confirmed")]
    OrderNotConfirmed(Id),
    #[error("order {0} is already paid")]
    OrderPayStatusIsPay(Id),
    #[error("payment amount should be {expected}, got {given}")]
    PaymentAmountInvalid { expected: String, given: String },
    #[error("callback signature rejected: {0}")]
    SignatureInvalid(crate::signature::SignatureError),
    #[error("Idempotency-Key {0:?} was used for another order of this user")]
    RequestKeyReused(String),
    #[error("storage error: {0}")]
    Storage(#[from] sqlx::Error),
}

/// Why a forward step failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepFailure {
    /// The conditional update found nothing to change (sold out meanwhile, coupon taken,
    /// balance spent, order no longer a pre-order).
    Conflict,
    /// The step's service errored (a database error, or an injected fault).
    Unavailable,
}

impl std::fmt::Display for StepFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StepFailure::Conflict => "its condition no longer holds",
            StepFailure::Unavailable => "the step's service failed",
        })
    }
}
