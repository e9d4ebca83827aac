//! The shop's errors: each has a stable machine-readable `SHOP_*` code (the original's
//! `ShopCode` names, plus new ones where it had none) and an HTTP status.

use crate::{fault::Step, ids::Id};

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
    #[error("dead letter {0} does not exist or was already redriven")]
    DeadLetterNotFound(Id),
    #[error("plugin rejected: {0}")]
    PluginRejected(String),
    #[error("{0}")]
    PluginVersionConflict(String),
    #[error("{0}")]
    PluginNotFound(String),
    #[error("not activated through the fleet registry: {0}")]
    PluginNotDistributed(String),
    #[error("admin token missing or wrong")]
    Unauthorized,
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

impl ShopError {
    pub fn code(&self) -> &'static str {
        use ShopError::*;
        match self {
            RequestParameterInvalid(_) => "SHOP_REQUEST_PARAMETER_INVALID",
            OrderNotFound(_) => "SHOP_ORDER_INVALID",
            GoodsNotFound(_) => "SHOP_GOODS_NO_EXIST",
            UserNotFound(_) => "SHOP_USER_NO_EXIST",
            CouponNotFound(_) => "SHOP_COUPON_NO_EXIST",
            PaymentNotFound(_) => "SHOP_PAYMENT_NOT_FOUND",
            GoodsPriceInvalid { .. } => "SHOP_GOODS_PRICE_INVALID",
            GoodsNumInvalid(_) => "SHOP_GOODS_NUM_INVALID",
            GoodsNumNotEnough { .. } => "SHOP_GOODS_NUM_NOT_ENOUGH",
            ShippingFeeInvalid { .. } => "SHOP_ORDER_SHIPPINGFEE_INVALID",
            OrderAmountInvalid { .. } => "SHOP_ORDERAMOUNT_INVALID",
            CouponNotOwned(_) => "SHOP_COUPON_NOT_OWNED",
            CouponIsUsed(_) => "SHOP_COUPON_ISUSED",
            MoneyPaidLessZero => "SHOP_MONEY_PAID_LESS_ZERO",
            MoneyPaidInvalid { .. } => "SHOP_MONEY_PAID_INVALID",
            DiscountExceedsAmount { .. } => "SHOP_DISCOUNT_EXCEEDS_ORDER_AMOUNT",
            StepFailed { step, .. } => step.failure_code(),
            OrderNotConfirmed(_) => "SHOP_ORDER_STATUS_NOT_CONFIRMED",
            OrderPayStatusIsPay(_) => "SHOP_ORDER_PAY_STATUS_IS_PAY",
            PaymentAmountInvalid { .. } => "SHOP_PAYMENT_AMOUNT_INVALID",
            SignatureInvalid(_) => "SHOP_CALLBACK_SIGNATURE_INVALID",
            Unauthorized => "SHOP_UNAUTHORIZED",
            DeadLetterNotFound(_) => "SHOP_DEAD_LETTER_NOT_FOUND",
            PluginRejected(_) => "SHOP_PLUGIN_REJECTED",
            PluginVersionConflict(_) => "SHOP_PLUGIN_VERSION_EXISTS",
            PluginNotFound(_) => "SHOP_PLUGIN_NOT_FOUND",
            PluginNotDistributed(_) => "SHOP_PLUGIN_NOT_DISTRIBUTED",
            Storage(_) => "SHOP_INTERNAL_ERROR",
        }
    }

    pub fn status(&self) -> u16 {
        use ShopError::*;
        match self {
            RequestParameterInvalid(_)
            | GoodsPriceInvalid { .. }
            | GoodsNumInvalid(_)
            | ShippingFeeInvalid { .. }
            | OrderAmountInvalid { .. }
            | CouponNotOwned(_)
            | MoneyPaidLessZero
            | MoneyPaidInvalid { .. }
            | DiscountExceedsAmount { .. }
            | PaymentAmountInvalid { .. }
            | PluginRejected(_) => 400,
            SignatureInvalid(_) | Unauthorized => 401,
            OrderNotFound(_) | GoodsNotFound(_) | UserNotFound(_) | CouponNotFound(_)
            | PaymentNotFound(_) | DeadLetterNotFound(_) | PluginNotFound(_) => 404,
            GoodsNumNotEnough { .. } | CouponIsUsed(_) | OrderNotConfirmed(_)
            | OrderPayStatusIsPay(_) | PluginVersionConflict(_) => 409,
            PluginNotDistributed(_) => 503,
            StepFailed { reason: StepFailure::Conflict, .. } => 409,
            StepFailed { reason: StepFailure::Unavailable, .. } => 503,
            Storage(_) => 500,
        }
    }
}

impl From<crate::plugins::InstallError> for ShopError {
    fn from(e: crate::plugins::InstallError) -> ShopError {
        use crate::plugins::InstallError::*;
        match e {
            Load(_) => ShopError::PluginRejected(e.to_string()),
            VersionExists { .. } | UseActivate { .. } => ShopError::PluginVersionConflict(e.to_string()),
            UnknownVersion { .. } | UnknownPlugin(_) => ShopError::PluginNotFound(e.to_string()),
            Registry(why) => ShopError::PluginNotDistributed(why),
        }
    }
}
