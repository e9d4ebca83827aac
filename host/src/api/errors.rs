//! API errors: `{"code": "SHOP_…", "message": "…"}` with the status the [`ShopError`]
//! carries. Each operation gets an error enum listing only the statuses it can answer, so
//! the spec tells the truth; [`api_error!`] writes those enums from one pattern.

use poem::http::StatusCode;
use poem_openapi::Object;

use crate::error::ShopError;

#[derive(Debug, Clone, Object)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `SHOP_GOODS_NO_EXIST`.
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
}

impl From<&ShopError> for ErrorBody {
    fn from(e: &ShopError) -> ErrorBody {
        // A storage error's text may carry SQL or paths: log it, do not return it.
        let message = match e {
            ShopError::Storage(_) => "internal error; nothing in this request can fix it".into(),
            other => other.to_string(),
        };
        ErrorBody { code: e.code().into(), message }
    }
}

/// The `bad_request_handler` of every error enum: a request poem-openapi could not parse
/// (bad JSON, missing field, failed validator, wrong content type) or authenticate.
pub fn from_request_error<T: From<ShopError>>(err: poem::Error) -> T {
    if err.status() == StatusCode::UNAUTHORIZED {
        ShopError::Unauthorized.into()
    } else {
        ShopError::RequestParameterInvalid(err.to_string()).into()
    }
}

/// Declares an error response enum: 400 and 500 always, plus the listed statuses.
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

        impl From<$crate::error::ShopError> for $name {
            fn from(e: $crate::error::ShopError) -> Self {
                let body = poem_openapi::payload::Json($crate::api::errors::ErrorBody::from(&e));
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
