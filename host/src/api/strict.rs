//! A JSON request body held to its schema before it is parsed: an unknown field, a missing
//! required field or a value of the wrong kind is refused with a message that names the
//! field and says what was expected, in the API's words (`goods_number: required, an
//! integer ≥ 1`), instead of the framework's. The schema is the one the spec publishes, so
//! what the server accepts and what the spec says cannot drift apart.

use poem::{http::StatusCode, FromRequest, Request, RequestBody, Result};
use poem_openapi::{
    impl_apirequest_for_payload,
    payload::{ParsePayload, Payload},
    registry::{MetaSchema, MetaSchemaRef, Registry},
    types::{ParseFromJSON, Type},
};
use regex::Regex;
use serde_json::Value;
use std::{
    collections::HashMap,
    sync::{Arc, LazyLock, RwLock},
};

/// A JSON body checked field by field against `T`'s schema, then parsed.
pub struct StrictJson<T>(pub T);

impl<T: Type + Send> Payload for StrictJson<T> {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn check_content_type(content_type: &str) -> bool {
        is_json(content_type)
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

/// JSON, whatever charset it is labelled with: it is read as UTF-8 (the only charset JSON
/// has), and a body that is not valid UTF-8 is refused as not JSON. (A payment platform that
/// labels an ASCII body `charset=GBK` is still heard.)
pub fn is_json(content_type: &str) -> bool {
    content_type.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

impl<T: ParseFromJSON + Send> ParsePayload for StrictJson<T> {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> Result<Self> {
        let raw = Vec::<u8>::from_request(request, body).await?;
        parse::<T>(&raw).map(StrictJson).map_err(|why| poem::Error::from_string(why, StatusCode::BAD_REQUEST))
    }
}

impl_apirequest_for_payload!(StrictJson<T>, T: ParseFromJSON + Send);

/// Parses `raw` as a `T`, checking it against `T`'s schema first.
pub fn parse<T: ParseFromJSON>(raw: &[u8]) -> std::result::Result<T, String> {
    let Unique(value) = serde_json::from_slice(raw).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => format!("the body is refused: {e}"),
        _ => format!("the body is not valid JSON ({e})"),
    })?;
    if let Some(shape) = shape_of::<T>() {
        check_object(&value, &shape)?;
    }
    T::parse_from_json(Some(value)).map_err(|e| e.into_message())
}

/// A body type's schema as the checks use it: each property resolved, its pattern compiled.
struct Shape {
    properties: Vec<Property>,
    required: Vec<&'static str>,
}

struct Property {
    name: &'static str,
    schema: MetaSchema,
    /// An array's items, resolved (their kind and enum are checked; not their pattern).
    items: Option<MetaSchema>,
    /// The compiled pattern; one that does not compile admits nothing (as before caching).
    pattern: Option<Result<Regex, regex::Error>>,
}

/// `T`'s shape, worked out on its first request and kept: the schema does not change while
/// the server runs, and compiling its patterns (an id's spans the whole i64 range) for
/// every request cost more than the rest of a payment callback.
fn shape_of<T: ParseFromJSON>() -> Option<Arc<Shape>> {
    static SHAPES: LazyLock<RwLock<HashMap<String, Option<Arc<Shape>>>>> = LazyLock::new(Default::default);
    let name = T::name();
    if let Some(shape) = SHAPES.read().expect("no panics while held").get(name.as_ref()) {
        return shape.clone();
    }
    let mut registry = Registry::new();
    T::register(&mut registry);
    let shape = registry.schemas.get(name.as_ref()).map(|schema| {
        let properties = schema
            .properties
            .iter()
            .map(|(name, r)| {
                let schema = resolve(r, &registry);
                let pattern = schema.pattern.as_deref().map(Regex::new);
                let items = schema.items.as_deref().map(|items| resolve(items, &registry));
                Property { name, schema, items, pattern }
            })
            .collect();
        Arc::new(Shape { properties, required: schema.required.clone() })
    });
    SHAPES.write().expect("no panics while held").insert(name.into_owned(), shape.clone());
    shape
}

/// A property's schema with what its references and `allOf` parts add, merged.
fn resolve(r: &MetaSchemaRef, registry: &Registry) -> MetaSchema {
    let mut schema = match r {
        MetaSchemaRef::Inline(s) => (**s).clone(),
        MetaSchemaRef::Reference(name) => registry.schemas.get(name).cloned().unwrap_or_else(|| MetaSchema::new("object")),
    };
    for part in std::mem::take(&mut schema.all_of) {
        let part = resolve(&part, registry);
        if schema.ty.is_empty() || schema.ty == "object" && part.ty != "object" {
            schema.ty = part.ty;
        }
        schema.format = schema.format.or(part.format);
        schema.pattern = schema.pattern.or(part.pattern);
        schema.minimum = schema.minimum.or(part.minimum);
        schema.maximum = schema.maximum.or(part.maximum);
        schema.max_length = schema.max_length.or(part.max_length);
        schema.min_length = schema.min_length.or(part.min_length);
        schema.example = schema.example.or(part.example);
        if schema.enum_items.is_empty() {
            schema.enum_items = part.enum_items;
        }
    }
    schema
}

fn check_object(value: &Value, shape: &Shape) -> std::result::Result<(), String> {
    let Value::Object(fields) = value else {
        return Err("the body must be a JSON object".into());
    };
    if let Some(unknown) = fields.keys().find(|k| !shape.properties.iter().any(|p| p.name == *k)) {
        let known: Vec<&str> = shape.properties.iter().map(|p| p.name).collect();
        return Err(format!("{unknown}: unknown field (the fields are {})", known.join(", ")));
    }
    for Property { name, schema: property, items, pattern } in &shape.properties {
        let expected = || match items {
            Some(items) => format!("a JSON array, each {}", describe(items)),
            None => describe(property),
        };
        match fields.get(*name) {
            None | Some(Value::Null) if shape.required.contains(name) => {
                return Err(format!("{name}: required, {}", expected()));
            }
            None => {}
            // The schema does not say nullable: an optional field is left out, not null
            // (else the spec and what is accepted would disagree).
            Some(Value::Null) if !property.nullable => {
                return Err(format!("{name}: must be {}, or left out (not null)", expected()));
            }
            Some(Value::Null) => {}
            Some(v) => {
                if !fits(v, property, pattern.as_ref()) {
                    // A whole number past 64 bits is an integer too: say why it is not one here.
                    let huge = property.ty == "integer" && (v.is_u64() && v.as_i64().is_none() || v.as_f64().is_some_and(|f| f.fract() == 0.0 && f.abs() >= 9.223_372_036_854_775_807e18));
                    let why = if huge { "; the one given is out of range" } else { "" };
                    return Err(format!("{name}: must be {}{why}", expected()));
                }
                let unfit = items.as_ref().and_then(|i| v.as_array()?.iter().find(|x| !fits(x, i, None)).map(|x| (x, i)));
                if let Some((item, items)) = unfit {
                    return Err(format!("{name}: {item} is not {}", describe(items)));
                }
            }
        }
    }
    Ok(())
}

/// Whether `v` is what `schema` describes (its kind, bounds, length and `pattern`).
fn fits(v: &Value, schema: &MetaSchema, pattern: Option<&Result<Regex, regex::Error>>) -> bool {
    match schema.ty {
        "integer" => v.as_i64().is_some_and(|n| {
            schema.minimum.is_none_or(|m| n as f64 >= m) && schema.maximum.is_none_or(|m| n as f64 <= m)
        }),
        "number" => v.as_f64().is_some(),
        "boolean" => v.is_boolean(),
        "string" => v.as_str().is_some_and(|s| {
            let chars = s.chars().count();
            schema.max_length.is_none_or(|m| chars <= m)
                && schema.min_length.is_none_or(|m| chars >= m)
                && pattern.is_none_or(|re| re.as_ref().is_ok_and(|re| re.is_match(s)))
                && (schema.enum_items.is_empty() || schema.enum_items.iter().any(|e| e == v))
                && parses(schema.format, s)
        }),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => true,
    }
}

/// Whether a time the pattern only shapes is a time: a month 13 fits the pattern, and would
/// otherwise reach the type's parser, whose error names the schema's internals. (An id's
/// pattern is exact.)
fn parses(format: Option<&str>, s: &str) -> bool {
    format != Some("date-time") || s.parse::<crate::timestamp::Timestamp>().is_ok()
}

/// What `schema` expects, for people.
pub fn describe(schema: &MetaSchema) -> String {
    let example = schema.example.as_ref().map(|e| format!(", like {e}")).unwrap_or_default();
    match (schema.ty, schema.format) {
        ("integer", _) => match (schema.minimum, schema.maximum) {
            (Some(lo), Some(hi)) => format!("an integer from {lo} to {hi}"),
            (Some(lo), None) => format!("an integer ≥ {lo}"),
            (None, Some(hi)) => format!("an integer ≤ {hi}"),
            (None, None) => "an integer".into(),
        },
        ("string", Some("decimal")) => format!("an amount as a decimal string, at most 11 digits before the point and 2 after{example}"),
        ("string", Some("int64")) => format!("an id as a string of 1 to 19 digits{example}"),
        ("string", Some("date-time")) => format!("an RFC 3339 time{example}"),
        ("string", _) if !schema.enum_items.is_empty() => {
            let items: Vec<String> = schema.enum_items.iter().map(|e| e.to_string()).collect();
            format!("one of {}", items.join(", "))
        }
        ("string", _) => match (schema.min_length, schema.max_length) {
            (Some(lo), Some(hi)) => format!("a string of {lo} to {hi} characters"),
            (None, Some(hi)) => format!("a string of at most {hi} characters"),
            _ => "a string".into(),
        },
        ("boolean", _) => "true or false".into(),
        ("array", _) => "a JSON array".into(),
        (other, _) => format!("a JSON {other}"),
    }
}

/// A JSON value whose objects name each key once. JSON parsers keep the last of a repeated
/// key (serde_json does), so `{"goods_number": 1, "goods_number": 2}` would be read as 2
/// here and perhaps as 1 by whatever checked it upstream: a body that says two things is
/// refused instead of read one way.
struct Unique(Value);

impl<'de> serde::Deserialize<'de> for Unique {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Unique, D::Error> {
        d.deserialize_any(UniqueVisitor).map(Unique)
    }
}

struct UniqueVisitor;

/// A text no database of ours stores as it came: Postgres refuses the NUL character (and
/// SQLite would keep it), so it is refused here, alike on both, before anything is written.
fn text<E: serde::de::Error>(v: &str) -> std::result::Result<(), E> {
    if v.contains('\0') { Err(E::custom("a text holds the NUL character (U+0000), which is not stored")) } else { Ok(()) }
}

impl<'de> serde::de::Visitor<'de> for UniqueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> std::result::Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> std::result::Result<Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> std::result::Result<Value, E> {
        Ok(v.into())
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<Value, E> {
        text(v).map(|()| v.into())
    }
    fn visit_string<E: serde::de::Error>(self, v: String) -> std::result::Result<Value, E> {
        text(&v).map(|()| v.into())
    }
    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Unique(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Unique(value) = map.next_value()?;
            match object.entry(key) {
                serde_json::map::Entry::Occupied(twice) => {
                    return Err(serde::de::Error::custom(format_args!("{:?} is given twice, which parsers read differently", twice.key())))
                }
                serde_json::map::Entry::Vacant(first) => first.insert(value),
            };
        }
        Ok(Value::Object(object))
    }
}
