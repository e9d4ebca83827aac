//! Values that travel as JSON strings and live in BIGINT columns ([`crate::money::Money`],
//! [`crate::ids::Id`], [`crate::timestamp::Timestamp`]): [`impl_text_type!`] gives each its
//! serde and poem-openapi impls from its `FromStr` and `Display`, so parsing rules live in one
//! place per type and the schema says what the parser accepts; [`impl_bigint_column!`] lets
//! sqlx decode and bind it directly, so rows map onto the API's types without glue.

/// `impl_text_type!(Type, "SchemaName", "format", r"pattern", "description", "example")`
macro_rules! impl_text_type {
    ($ty:ty, $name:literal, $format:literal, $pattern:expr, $description:literal, $example:literal) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }

        impl poem_openapi::types::Type for $ty {
            const IS_REQUIRED: bool = true;
            type RawValueType = Self;
            type RawElementValueType = Self;

            fn name() -> std::borrow::Cow<'static, str> {
                $name.into()
            }

            fn schema_ref() -> poem_openapi::registry::MetaSchemaRef {
                let mut schema = poem_openapi::registry::MetaSchema::new_with_format("string", $format);
                schema.pattern = Some($pattern.into());
                schema.description = Some($description);
                schema.example = Some(serde_json::Value::String($example.into()));
                poem_openapi::registry::MetaSchemaRef::Inline(Box::new(schema))
            }

            fn as_raw_value(&self) -> Option<&Self> {
                Some(self)
            }

            fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
                Box::new(self.as_raw_value().into_iter())
            }
        }

        impl poem_openapi::types::ParseFromJSON for $ty {
            fn parse_from_json(value: Option<serde_json::Value>) -> poem_openapi::types::ParseResult<Self> {
                match value {
                    // Only strings: a JSON number may already have been through a float.
                    Some(serde_json::Value::String(s)) => {
                        s.parse().map_err(poem_openapi::types::ParseError::custom)
                    }
                    other => Err(poem_openapi::types::ParseError::expected_type(other.unwrap_or_default())),
                }
            }
        }

        impl poem_openapi::types::ParseFromParameter for $ty {
            fn parse_from_parameter(value: &str) -> poem_openapi::types::ParseResult<Self> {
                value.parse().map_err(poem_openapi::types::ParseError::custom)
            }
        }

        impl poem_openapi::types::ToJSON for $ty {
            fn to_json(&self) -> Option<serde_json::Value> {
                Some(serde_json::Value::String(self.to_string()))
            }
        }
    };
}
pub(crate) use impl_text_type;

/// `impl_bigint_column!(Type, |i64| -> Type, |&Type| -> i64)`: stored as BIGINT on both databases.
macro_rules! impl_bigint_column {
    ($ty:ty, $from:expr, $to:expr) => {
        impl sqlx::Type<sqlx::Any> for $ty {
            fn type_info() -> sqlx::any::AnyTypeInfo {
                <i64 as sqlx::Type<sqlx::Any>>::type_info()
            }

            fn compatible(ty: &sqlx::any::AnyTypeInfo) -> bool {
                <i64 as sqlx::Type<sqlx::Any>>::compatible(ty)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Any> for $ty {
            fn decode(value: sqlx::any::AnyValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                <i64 as sqlx::Decode<'r, sqlx::Any>>::decode(value).map($from)
            }
        }

        impl<'q> sqlx::Encode<'q, sqlx::Any> for $ty {
            fn encode_by_ref(
                &self,
                buf: &mut <sqlx::Any as sqlx::Database>::ArgumentBuffer<'q>,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <i64 as sqlx::Encode<'q, sqlx::Any>>::encode_by_ref(&$to(self), buf)
            }
        }
    };
}
pub(crate) use impl_bigint_column;
