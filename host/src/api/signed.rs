//! A JSON request body that keeps its raw bytes, for checking a signature over exactly
//! what was sent. Parsing is deferred so an unsigned request is refused with 401 before
//! anything in its body is looked at.

use poem::{FromRequest, Request, RequestBody, Result};
use poem_openapi::{
    impl_apirequest_for_payload,
    payload::{ParsePayload, Payload},
    registry::{MetaSchemaRef, Registry},
    types::{ParseFromJSON, Type},
};

pub struct SignedJson<T> {
    pub raw: Vec<u8>,
    _parsed: std::marker::PhantomData<T>,
}

impl<T: ParseFromJSON> SignedJson<T> {
    /// Parses the body (after the caller has checked its signature).
    pub fn parse(&self) -> std::result::Result<T, String> {
        super::strict::parse(&self.raw)
    }
}

impl<T: Type + Send> Payload for SignedJson<T> {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn check_content_type(content_type: &str) -> bool {
        super::strict::is_json(content_type)
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: ParseFromJSON + Send> ParsePayload for SignedJson<T> {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> Result<Self> {
        let raw = Vec::<u8>::from_request(request, body).await?;
        Ok(SignedJson { raw, _parsed: std::marker::PhantomData })
    }
}

impl_apirequest_for_payload!(SignedJson<T>, T: ParseFromJSON + Send);
