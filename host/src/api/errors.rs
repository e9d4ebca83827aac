//! The API edge of every error: each error enum of the crate that can reach a caller gets its
//! stable `SHOP_*` code and HTTP status here ([`ApiFailure`]), and the body is always
//! `{"code": "SHOP_…", "message": "…"}`. Each operation gets a response enum listing only
//! the statuses it can answer, so the spec tells the truth; `api_error!` writes those enums
//! from one pattern.

use poem::http::StatusCode;
use poem_openapi::Object;

use crate::{
    plugins::{dead_letters::DeadLetterError, grants::GrantError, InstallError},
    replay::ReplayError,
    shop::{ShopError, StepFailure},
    store,
};

#[derive(Debug, Clone, Object)]
#[oai(rename = "ErrorBody")]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `SHOP_GOODS_NO_EXIST`.
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
}

/// An error as the API answers it.
pub trait ApiFailure: std::fmt::Display {
    /// Its HTTP status and stable `SHOP_*` code, from one match per error type, so a code
    /// and its status cannot drift apart.
    fn failure(&self) -> (u16, &'static str);
    fn status(&self) -> u16 {
        self.failure().0
    }
    fn code(&self) -> &'static str {
        self.failure().1
    }
    /// What the caller is told; an internal error's text may carry SQL or paths, so it is
    /// logged instead.
    fn message(&self) -> String {
        match self.failure() {
            INTERNAL => internal_message(),
            DATABASE_UNAVAILABLE => DATABASE_UNAVAILABLE_MESSAGE.into(),
            _ => self.to_string(),
        }
    }
}

/// The failures many error types share.
pub(crate) const INTERNAL: (u16, &str) = (500, "SHOP_INTERNAL_ERROR");

/// What a 500 says; its cause is logged instead.
pub(crate) fn internal_message() -> String {
    "internal error; nothing in this request can fix it".into()
}
/// A database failure the request may overcome if sent again ([`store::unavailable`]); its
/// cause is logged, as a 500's is.
pub(crate) const DATABASE_UNAVAILABLE: (u16, &str) = (503, "SHOP_DATABASE_UNAVAILABLE");
const DATABASE_UNAVAILABLE_MESSAGE: &str = "the database is unavailable right now (restarting, unreachable or busy); try again shortly";

/// The spec's example of an operation's 503: its own reason, where it has one besides the
/// database's.
pub(crate) fn unavailable_example(own: &[(&'static str, &'static str)]) -> (&'static str, &'static str) {
    own.first().copied().unwrap_or((DATABASE_UNAVAILABLE.1, DATABASE_UNAVAILABLE_MESSAGE))
}

/// What a database error is answered: 503 when trying again may succeed, else 500.
fn stored(e: &sqlx::Error) -> (u16, &'static str) {
    if store::unavailable(e) { DATABASE_UNAVAILABLE } else { INTERNAL }
}

const INVALID: (u16, &str) = (400, "SHOP_REQUEST_PARAMETER_INVALID");
const UNAUTHORIZED: (u16, &str) = (401, "SHOP_UNAUTHORIZED");

/// Errors that belong to the API itself rather than to a domain.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("admin token missing: send Authorization: Bearer <admin token> (another scheme, such as Basic, is not read; a console session that ended: log in again)")]
    TokenMissing,
    #[error("admin token wrong")]
    TokenWrong,
    #[error("request parameter invalid: {0}")]
    BadRequest(String),
}

/// What the admin token check answers when a token is there but is not the admin's.
#[derive(Debug, thiserror::Error)]
#[error("admin token wrong")]
pub struct TokenWrong;

impl ApiFailure for ApiError {
    fn failure(&self) -> (u16, &'static str) {
        match self {
            ApiError::TokenMissing | ApiError::TokenWrong => UNAUTHORIZED,
            ApiError::BadRequest(_) => INVALID,
        }
    }
}

impl ApiFailure for ShopError {
    fn failure(&self) -> (u16, &'static str) {
        use ShopError::*;
        match self {
            RequestParameterInvalid(_) => INVALID,
            OrderNotFound(_) => (404, "SHOP_ORDER_INVALID"),
            GoodsNotFound(_) => (404, "SHOP_GOODS_NO_EXIST"),
            UserNotFound(_) => (404, "SHOP_USER_NO_EXIST"),
            CouponNotFound(_) => (404, "SHOP_COUPON_NO_EXIST"),
            PaymentNotFound(_) => (404, "SHOP_PAYMENT_NOT_FOUND"),
            GoodsPriceInvalid { .. } => (400, "SHOP_GOODS_PRICE_INVALID"),
            GoodsNumInvalid(_) => (400, "SHOP_GOODS_NUM_INVALID"),
            GoodsNumNotEnough { .. } => (409, "SHOP_GOODS_NUM_NOT_ENOUGH"),
            ShippingFeeInvalid { .. } => (400, "SHOP_ORDER_SHIPPINGFEE_INVALID"),
            OrderAmountInvalid { .. } => (400, "SHOP_ORDERAMOUNT_INVALID"),
            CouponNotOwned(_) => (400, "SHOP_COUPON_NOT_OWNED"),
            CouponIsUsed(_) => (409, "SHOP_COUPON_ISUSED"),
            MoneyPaidLessZero => (400, "SHOP_MONEY_PAID_LESS_ZERO"),
            MoneyPaidInvalid { .. } => (400, "SHOP_MONEY_PAID_INVALID"),
            DiscountExceedsAmount { .. } => (400, "SHOP_DISCOUNT_EXCEEDS_ORDER_AMOUNT"),
            StepFailed { step, reason: StepFailure::Conflict, .. } => (409, step.failure_code()),
            StepFailed { step, reason: StepFailure::Unavailable, .. } => (503, step.failure_code()),
            OrderNotConfirmed(_) => (409, "SHOP_ORDER_STATUS_NOT_CONFIRMED"),
            RequestKeyReused(_) => (422, "SHOP_IDEMPOTENCY_KEY_REUSED"),
            OrderPayStatusIsPay(_) => (409, "SHOP_ORDER_PAY_STATUS_IS_PAY"),
            PaymentAmountInvalid { .. } => (400, "SHOP_PAYMENT_AMOUNT_INVALID"),
            SignatureInvalid(_) => (401, "SHOP_CALLBACK_SIGNATURE_INVALID"),
            Storage(e) => stored(e),
        }
    }
}

impl ApiFailure for InstallError {
    fn failure(&self) -> (u16, &'static str) {
        match self {
            InstallError::Load(_) => (400, "SHOP_PLUGIN_REJECTED"),
            InstallError::VersionExists { .. } | InstallError::UseActivate { .. } | InstallError::OtherBuild { .. } => (409, "SHOP_PLUGIN_VERSION_EXISTS"),
            InstallError::UnknownVersion { .. } | InstallError::UnknownPlugin(_) => (404, "SHOP_PLUGIN_NOT_FOUND"),
            InstallError::Registry(_) | InstallError::NotFollowed(_) => (503, "SHOP_PLUGIN_NOT_DISTRIBUTED"),
        }
    }

    fn message(&self) -> String {
        match self {
            InstallError::Load(e) => format!("plugin rejected: {e}"),
            other => other.to_string(),
        }
    }
}

impl ApiFailure for GrantError {
    fn failure(&self) -> (u16, &'static str) {
        match self {
            GrantError::BadName(_) => INVALID,
            GrantError::Db(e) => stored(e),
        }
    }
}

impl ApiFailure for DeadLetterError {
    fn failure(&self) -> (u16, &'static str) {
        match self {
            // Closed keeps the 404 it always had: there is no open letter of that id.
            DeadLetterError::NotFound(_) | DeadLetterError::Closed(..) => (404, "SHOP_DEAD_LETTER_NOT_FOUND"),
            DeadLetterError::Db(e) => stored(e),
        }
    }
}

impl ApiFailure for ReplayError {
    fn failure(&self) -> (u16, &'static str) {
        match self {
            ReplayError::UnknownPlugin(_) | ReplayError::UnknownVersion { .. } | ReplayError::NotFound(_) => (404, "SHOP_NOT_FOUND"),
            ReplayError::Range(_) => (400, "SHOP_REPLAY_RANGE_INVALID"),
            ReplayError::Invalid(_) => INVALID,
            ReplayError::Stream(_) => (503, "SHOP_STREAM_UNAVAILABLE"),
            ReplayError::Db(e) => stored(e),
        }
    }
}

impl ErrorBody {
    pub fn of(e: &dyn ApiFailure) -> ErrorBody {
        ErrorBody { code: e.code().into(), message: bounded(&e.message()) }
    }
}

/// A message as an answer carries it: about 2,000 characters at most. A message may quote
/// what the request held (a path, a value), which may be tens of kilobytes; the middle goes,
/// so what the message says of it (the rule, the fields there are) stays.
fn bounded(message: &str) -> String {
    const HEAD: usize = 1000;
    const TAIL: usize = 1000;
    let chars = message.chars().count();
    if chars <= HEAD + TAIL {
        return message.to_owned();
    }
    let head: String = message.chars().take(HEAD).collect();
    let tail: String = message.chars().skip(chars - TAIL).collect();
    format!("{head} … {tail}")
}

/// An answer given outside any operation (by the edge's limits, the framework, the console),
/// in the same `{code, message}` shape as the operations' errors.
pub fn respond(status: StatusCode, code: &str, message: &str) -> poem::Response {
    use poem::IntoResponse;
    let body = serde_json::json!({ "code": code, "message": bounded(message) });
    poem::web::Json(body).with_status(status).into_response()
}

/// The `bad_request_handler` of every error enum: a request poem-openapi could not parse
/// (bad JSON, missing field, failed validator, wrong content type) or authenticate.
pub fn from_request_error<T: From<ApiError>>(err: poem::Error) -> T {
    if err.is::<TokenWrong>() {
        ApiError::TokenWrong.into()
    } else if err.status() == StatusCode::UNAUTHORIZED {
        ApiError::TokenMissing.into()
    } else {
        ApiError::BadRequest(rejected(&err)).into()
    }
}

/// What a request the framework could not take says: a parameter by its name and what it
/// expects ([`super::params`]); a path parameter by its place, not by poem-openapi's
/// internal name for it (`param0`).
pub fn rejected(err: &poem::Error) -> String {
    use poem_openapi::error::{ParseParamError, ParsePathError};
    if let Some(path) = err.downcast_ref::<ParsePathError>() {
        super::params::said("in the path", &path.reason)
    } else if let Some(param) = err.downcast_ref::<ParseParamError>() {
        super::params::said(param.name, &param.reason)
    } else {
        err.to_string()
    }
}

/// The names and example codes of an error enum's responses (written by [`api_error!`]).
pub trait ErrorExamples {
    const NAME: &'static str;
    /// A real code this operation answers with `status`, for the spec's example.
    fn example(status: u16) -> (&'static str, &'static str);
}

/// An error body as one operation answers it with one status: the same `{code, message}`,
/// but its own schema, whose example carries a code that operation really answers.
pub struct ErrorOf<E, const S: u16>(pub ErrorBody, std::marker::PhantomData<E>);

impl<E, const S: u16> std::fmt::Debug for ErrorOf<E, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<E, const S: u16> ErrorOf<E, S> {
    pub fn new(body: ErrorBody) -> Self {
        ErrorOf(body, std::marker::PhantomData)
    }
}

impl<E: ErrorExamples + Send + Sync, const S: u16> poem_openapi::types::Type for ErrorOf<E, S> {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> std::borrow::Cow<'static, str> {
        format!("{}{}", E::NAME, S).into()
    }

    fn schema_ref() -> poem_openapi::registry::MetaSchemaRef {
        poem_openapi::registry::MetaSchemaRef::Reference(Self::name().into_owned())
    }

    fn register(registry: &mut poem_openapi::registry::Registry) {
        registry.create_schema::<Self, _>(Self::name().into_owned(), |registry| {
            <ErrorBody as poem_openapi::types::Type>::register(registry);
            let mut meta = registry.schemas.get("ErrorBody").cloned().expect("ErrorBody is registered");
            let (code, message) = E::example(S);
            meta.example = Some(serde_json::json!({ "code": code, "message": message }));
            meta
        })
    }

    fn as_raw_value(&self) -> Option<&Self> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl<E: ErrorExamples + Send + Sync, const S: u16> poem_openapi::types::ToJSON for ErrorOf<E, S> {
    fn to_json(&self) -> Option<serde_json::Value> {
        self.0.to_json()
    }
}

/// Declares an error response enum: 400, 503 and 500 always, plus the listed statuses, each with
/// a code it really answers as the spec's example. Any [`ApiFailure`] converts into it, with
/// `?`.
macro_rules! api_error {
    // Operations that only look one thing up: 400 for a malformed request, 404 when it is not
    // there (with the admin's 401 where marked `admin`). Several to one call, each a line.
    (lookups { $(#[$meta:meta])* $name:ident : admin 404 $code:literal : $doc:literal ; $($rest:tt)* }) => {
        $crate::api::errors::api_error!($(#[$meta])* $name (400 "SHOP_REQUEST_PARAMETER_INVALID") admin { 404 => NotFound($code): $doc });
        $crate::api::errors::api_error!(lookups { $($rest)* });
    };
    (lookups { $(#[$meta:meta])* $name:ident : 404 $code:literal : $doc:literal ; $($rest:tt)* }) => {
        $crate::api::errors::api_error!($(#[$meta])* $name (400 "SHOP_REQUEST_PARAMETER_INVALID") { 404 => NotFound($code): $doc });
        $crate::api::errors::api_error!(lookups { $($rest)* });
    };
    (lookups {}) => {};
    // An admin operation can also be answered 401 (no or a wrong admin token), listed first.
    ($(#[$meta:meta])* $name:ident (400 $bad:literal) admin body { $($variants:tt)* } $($unavailable:tt)*) => {
        $crate::api::errors::api_error!($(#[$meta])* $name (400 $bad) body { 401 => Unauthorized("SHOP_UNAUTHORIZED"): "Missing or wrong bearer token.", $($variants)* } $($unavailable)*);
    };
    ($(#[$meta:meta])* $name:ident (400 $bad:literal) admin { $($variants:tt)* } $($unavailable:tt)*) => {
        $crate::api::errors::api_error!($(#[$meta])* $name (400 $bad) { 401 => Unauthorized("SHOP_UNAUTHORIZED"): "Missing or wrong bearer token.", $($variants)* } $($unavailable)*);
    };
    // An operation that reads a body can also be answered 408, 413 and 415 (by the edge,
    // before or while the operation reads it): the same enum with those three documented.
    (
        $(#[$meta:meta])* $name:ident (400 $bad:literal) body {
            $($status:literal => $variant:ident ($code:literal) : $doc:literal),* $(,)?
        } $($unavailable:tt)*
    ) => {
        $crate::api::errors::api_error!(
            $(#[$meta])* $name (400 $bad) {
                $($status => $variant ($code) : $doc,)*
                408 => RequestTimeout("SHOP_REQUEST_TIMEOUT"): "The body did not arrive in time (SHOPMESH_HTTP_BODY_TIMEOUT); nothing was changed.",
                413 => PayloadTooLarge("SHOP_PAYLOAD_TOO_LARGE"): "The body is larger than this route's limit; it was not read.",
                415 => UnsupportedMediaType("SHOP_UNSUPPORTED_MEDIA_TYPE"): "The body is not of the media type this operation reads.",
            } $($unavailable)*
        );
    };
    (
        $(#[$meta:meta])* $name:ident (400 $bad:literal) {
            $($status:literal => $variant:ident ($code:literal) : $doc:literal),* $(,)?
        } $(or 503 ($unavailable:literal) : $why:literal)?
    ) => {
        $(#[$meta])*
        #[derive(Debug, poem_openapi::ApiResponse)]
        #[oai(bad_request_handler = "crate::api::errors::from_request_error")]
        pub enum $name {
            /// The request is malformed or breaks a rule; nothing was changed.
            #[oai(status = 400)]
            BadRequest(poem_openapi::payload::Json<$crate::api::errors::ErrorOf<$name, 400>>),
            $(
                #[doc = $doc]
                #[oai(status = $status)]
                $variant(poem_openapi::payload::Json<$crate::api::errors::ErrorOf<$name, $status>>),
            )*
            $(#[doc = $why])?
            /// SHOP_DATABASE_UNAVAILABLE: the database is unavailable right now; SHOP_OVERLOADED:
            /// this host has too many requests in flight. Try again after `Retry-After`.
            #[oai(status = 503)]
            Unavailable(poem_openapi::payload::Json<$crate::api::errors::ErrorOf<$name, 503>>),
            /// The server failed (SHOP_INTERNAL_ERROR).
            #[oai(status = 500)]
            Internal(poem_openapi::payload::Json<$crate::api::errors::ErrorOf<$name, 500>>),
        }

        impl $crate::api::errors::ErrorExamples for $name {
            const NAME: &'static str = stringify!($name);
            fn example(status: u16) -> (&'static str, &'static str) {
                match status {
                    400 => ($bad, "The request is malformed or breaks a rule; nothing was changed."),
                    $($status => ($code, $doc),)*
                    503 => $crate::api::errors::unavailable_example(&[$(($unavailable, $why))?]),
                    _ => ("SHOP_INTERNAL_ERROR", "internal error; nothing in this request can fix it"),
                }
            }
        }

        impl<E: $crate::api::errors::ApiFailure> From<E> for $name {
            fn from(e: E) -> Self {
                let body = $crate::api::errors::ErrorBody::of(&e);
                if e.failure() == $crate::api::errors::DATABASE_UNAVAILABLE {
                    tracing::warn!(error = %e, "request failed: the database is unavailable");
                }
                match e.status() {
                    400 => $name::BadRequest(poem_openapi::payload::Json($crate::api::errors::ErrorOf::new(body))),
                    $($status => $name::$variant(poem_openapi::payload::Json($crate::api::errors::ErrorOf::new(body))),)*
                    503 => $name::Unavailable(poem_openapi::payload::Json($crate::api::errors::ErrorOf::new(body))),
                    // A failure this operation does not expect (a row it just wrote not found
                    // after a fault): a 500 says so with the 500's code, not the failure's own.
                    _ => {
                        tracing::error!(error = %e, "request failed");
                        let body = $crate::api::errors::ErrorBody { code: $crate::api::errors::INTERNAL.1.into(), message: $crate::api::errors::internal_message() };
                        $name::Internal(poem_openapi::payload::Json($crate::api::errors::ErrorOf::new(body)))
                    }
                }
            }
        }
    };
}
pub(crate) use api_error;
