//! The API edge of every error: each error enum of the crate that can reach a caller gets its
//! stable `SHOP_*` code and HTTP status here ([`ApiFailure`]), and the body is always
//! `{"code": "SHOP_…", "message": "…"}`. Each operation gets a response enum listing only
//! the statuses it can answer, so the spec tells the truth; `api_error!` writes those enums
//! from one pattern.

use poem::http::StatusCode;
use poem_openapi::Object;

use crate::{
    plugins::{dead_letters::DeadLetterError, InstallError},
    replay::ReplayError,
    shop::{ShopError, StepFailure},
};

#[derive(Debug, Clone, Object)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `SHOP_GOODS_NO_EXIST`.
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
}

/// An error as the API answers it.
pub trait ApiFailure: std::fmt::Display {
    fn status(&self) -> u16;
    fn code(&self) -> &'static str;
    /// What the caller is told; an internal error's text may carry SQL or paths, so it is
    /// logged instead.
    fn message(&self) -> String {
        if self.status() >= 500 && self.code() == "SHOP_INTERNAL_ERROR" {
            "internal error; nothing in this request can fix it".into()
        } else {
            self.to_string()
        }
    }
}

/// Errors that belong to the API itself rather than to a domain.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("admin token missing or wrong")]
    Unauthorized,
    #[error("request parameter invalid: {0}")]
    BadRequest(String),
}

impl ApiFailure for ApiError {
    fn status(&self) -> u16 {
        match self {
            ApiError::Unauthorized => 401,
            ApiError::BadRequest(_) => 400,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "SHOP_UNAUTHORIZED",
            ApiError::BadRequest(_) => "SHOP_REQUEST_PARAMETER_INVALID",
        }
    }
}

impl ApiFailure for ShopError {
    fn code(&self) -> &'static str {
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
            Storage(_) => "SHOP_INTERNAL_ERROR",
        }
    }

    fn status(&self) -> u16 {
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
            | PaymentAmountInvalid { .. } => 400,
            SignatureInvalid(_) => 401,
            OrderNotFound(_) | GoodsNotFound(_) | UserNotFound(_) | CouponNotFound(_) | PaymentNotFound(_) => 404,
            GoodsNumNotEnough { .. } | CouponIsUsed(_) | OrderNotConfirmed(_) | OrderPayStatusIsPay(_) => 409,
            StepFailed { reason: StepFailure::Conflict, .. } => 409,
            StepFailed { reason: StepFailure::Unavailable, .. } => 503,
            Storage(_) => 500,
        }
    }
}

impl ApiFailure for InstallError {
    fn code(&self) -> &'static str {
        match self {
            InstallError::Load(_) => "SHOP_PLUGIN_REJECTED",
            InstallError::VersionExists { .. } | InstallError::UseActivate { .. } => "SHOP_PLUGIN_VERSION_EXISTS",
            InstallError::UnknownVersion { .. } | InstallError::UnknownPlugin(_) => "SHOP_PLUGIN_NOT_FOUND",
            InstallError::Registry(_) => "SHOP_PLUGIN_NOT_DISTRIBUTED",
        }
    }

    fn status(&self) -> u16 {
        match self {
            InstallError::Load(_) => 400,
            InstallError::VersionExists { .. } | InstallError::UseActivate { .. } => 409,
            InstallError::UnknownVersion { .. } | InstallError::UnknownPlugin(_) => 404,
            InstallError::Registry(_) => 503,
        }
    }

    fn message(&self) -> String {
        match self {
            InstallError::Load(e) => format!("plugin rejected: {e}"),
            other => other.to_string(),
        }
    }
}

impl ApiFailure for DeadLetterError {
    fn code(&self) -> &'static str {
        match self {
            DeadLetterError::NotFound(_) => "SHOP_DEAD_LETTER_NOT_FOUND",
            DeadLetterError::Db(_) => "SHOP_INTERNAL_ERROR",
        }
    }

    fn status(&self) -> u16 {
        match self {
            DeadLetterError::NotFound(_) => 404,
            DeadLetterError::Db(_) => 500,
        }
    }
}

impl ApiFailure for ReplayError {
    fn code(&self) -> &'static str {
        match self {
            ReplayError::UnknownPlugin(_) | ReplayError::UnknownVersion { .. } | ReplayError::NotFound(_) => "SHOP_NOT_FOUND",
            ReplayError::Range(_) => "SHOP_REPLAY_RANGE_INVALID",
            ReplayError::Invalid(_) => "SHOP_REQUEST_PARAMETER_INVALID",
            ReplayError::Stream(_) => "SHOP_STREAM_UNAVAILABLE",
            ReplayError::Db(_) => "SHOP_INTERNAL_ERROR",
        }
    }

    fn status(&self) -> u16 {
        match self {
            ReplayError::UnknownPlugin(_) | ReplayError::UnknownVersion { .. } | ReplayError::NotFound(_) => 404,
            ReplayError::Range(_) | ReplayError::Invalid(_) => 400,
            ReplayError::Stream(_) => 503,
            ReplayError::Db(_) => 500,
        }
    }
}

impl ErrorBody {
    pub fn of(e: &dyn ApiFailure) -> ErrorBody {
        ErrorBody { code: e.code().into(), message: e.message() }
    }
}

/// The `bad_request_handler` of every error enum: a request poem-openapi could not parse
/// (bad JSON, missing field, failed validator, wrong content type) or authenticate.
pub fn from_request_error<T: From<ApiError>>(err: poem::Error) -> T {
    if err.status() == StatusCode::UNAUTHORIZED {
        ApiError::Unauthorized.into()
    } else {
        ApiError::BadRequest(err.to_string()).into()
    }
}

/// Declares an error response enum: 400 and 500 always, plus the listed statuses. Any
/// [`ApiFailure`] converts into it, with `?`.
macro_rules! api_error {
    ($(#[$meta:meta])* $name:ident { $($status:literal => $variant:ident : $doc:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, poem_openapi::ApiResponse)]
        #[oai(bad_request_handler = "crate::api::errors::from_request_error")]
        pub enum $name {
            /// The request is malformed or breaks a rule; nothing was changed.
            #[oai(status = 400)]
            BadRequest(poem_openapi::payload::Json<$crate::api::errors::ErrorBody>),
            $(
                #[doc = $doc]
                #[oai(status = $status)]
                $variant(poem_openapi::payload::Json<$crate::api::errors::ErrorBody>),
            )*
            /// The server failed (SHOP_INTERNAL_ERROR).
            #[oai(status = 500)]
            Internal(poem_openapi::payload::Json<$crate::api::errors::ErrorBody>),
        }

        impl<E: $crate::api::errors::ApiFailure> From<E> for $name {
            fn from(e: E) -> Self {
                let body = poem_openapi::payload::Json($crate::api::errors::ErrorBody::of(&e));
                match e.status() {
                    400 => $name::BadRequest(body),
                    $($status => $name::$variant(body),)*
                    _ => {
                        tracing::error!(error = %e, "request failed");
                        $name::Internal(body)
                    }
                }
            }
        }
    };
}
pub(crate) use api_error;
