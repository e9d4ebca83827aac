//! Each plugin's configuration: the values the operator set (`SHOPMESH_PLUGIN_CONFIG`,
//! `[plugin_config.<name>]`), and their check against the JSON Schema that a version's
//! manifest declares. The registry runs the check before a version may load, so a value the
//! plugin cannot use is refused where the operator can see it (at start, at upload) rather
//! than failing every event the plugin is handed, each to end in the dead-letter store.
//!
//! A plugin reads every value as a string (`config(key) -> option<string>`), so the check
//! knows the part of JSON Schema that describes a string setting: per property `type`
//! (`string`, `integer`, `number`, `boolean`: the text must read as one), `enum`, `const`,
//! `pattern` (unanchored, as JSON Schema has it), `minLength`/`maxLength`, and for numbers
//! `minimum`/`maximum`/`exclusiveMinimum`/`exclusiveMaximum`; at the top, `required` and
//! `additionalProperties: false`. Other keywords are ignored, as JSON Schema ignores
//! keywords it does not know. A key the schema does not declare is allowed (JSON Schema's
//! default) but logged, since it is most often a typo the plugin will never read.

use std::{collections::HashMap, sync::Arc};

use serde_json::{Map, Value};

/// The operator's configuration values, per plugin name.
#[derive(Debug, Default)]
pub struct Configs(HashMap<String, Arc<HashMap<String, String>>>);

/// Why a version's configuration schema and this host's values for its name do not agree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigRefusal {
    #[error("its config schema is not usable: {0}")]
    Schema(String),
    #[error("config {key} = {value:?} does not fit its config schema: {why}")]
    Value { key: String, value: String, why: String },
    #[error("config {0} is required by its config schema and not set")]
    Missing(String),
    #[error("config {0} is set, but its config schema declares no such key and allows no other")]
    Undeclared(String),
}

impl Configs {
    pub fn new(values: HashMap<String, HashMap<String, String>>) -> Configs {
        Configs(values.into_iter().map(|(name, v)| (name, Arc::new(v))).collect())
    }

    /// The values set for plugin `name` (none set: empty).
    pub fn of(&self, name: &str) -> Arc<HashMap<String, String>> {
        self.0.get(name).cloned().unwrap_or_default()
    }

    /// Whether the values set for `name` fit `schema` (a version's manifest's). A schema
    /// that is not a JSON object refuses only when there are values to check (such a
    /// version loads with none set, as it always did: the schema is for operators).
    pub fn check(&self, name: &str, schema: &str) -> Result<(), ConfigRefusal> {
        let values = self.of(name);
        let schema = match serde_json::from_str::<Value>(schema) {
            Ok(Value::Object(schema)) => schema,
            _ if values.is_empty() => return Ok(()),
            Ok(_) => return Err(ConfigRefusal::Schema("not a JSON object".into())),
            Err(e) => return Err(ConfigRefusal::Schema(format!("not JSON: {e}"))),
        };
        let empty = Map::new();
        let properties = schema.get("properties").and_then(Value::as_object).unwrap_or(&empty);
        for key in schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
            if !values.contains_key(key) {
                return Err(ConfigRefusal::Missing(key.into()));
            }
        }
        let mut keys: Vec<_> = values.iter().collect();
        keys.sort();
        for (key, value) in keys {
            match properties.get(key) {
                Some(property) => fits(value, property).map_err(|misfit| match misfit {
                    Misfit::Value(why) => ConfigRefusal::Value { key: key.clone(), value: value.clone(), why },
                    Misfit::Schema(why) => ConfigRefusal::Schema(format!("property {key}: {why}")),
                })?,
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => return Err(ConfigRefusal::Undeclared(key.clone())),
                None => tracing::warn!(plugin = name, key = %key, "config key not declared by the plugin's config schema: it may never be read"),
            }
        }
        Ok(())
    }
}

/// Why a value does not fit a property: the value's fault, or the schema's.
enum Misfit {
    Value(String),
    Schema(String),
}

/// Whether the text `value` fits one property's schema; why not, if it does not.
fn fits(value: &str, property: &Value) -> Result<(), Misfit> {
    let Value::Object(p) = property else {
        return Ok(()); // `true` or a schema form we do not know: anything goes
    };
    let types: Vec<&str> = match p.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let number = value.parse::<f64>().ok().filter(|n| n.is_finite());
    let reads_as = |t: &str| match t {
        "string" => true,
        "integer" => value.parse::<i64>().is_ok(),
        "number" => number.is_some(),
        "boolean" => value == "true" || value == "false",
        _ => false,
    };
    if !types.is_empty() && !types.iter().any(|t| reads_as(t)) {
        return Err(Misfit::Value(format!("must read as {}", types.join(" or "))));
    }
    // A string in the schema is compared as it stands; another value as its JSON text.
    let same = |v: &Value| v.as_str().map_or_else(|| v.to_string() == value, |s| s == value);
    if let Some(options) = p.get("enum").and_then(Value::as_array) {
        if !options.iter().any(same) {
            return Err(Misfit::Value(format!("must be one of {}", Value::Array(options.clone()))));
        }
    }
    if let Some(only) = p.get("const").filter(|v| !same(v)) {
        return Err(Misfit::Value(format!("must be {only}")));
    }
    if let Some(pattern) = p.get("pattern").and_then(Value::as_str) {
        let re = regex::Regex::new(pattern).map_err(|e| Misfit::Schema(format!("its pattern {pattern:?} is not a regular expression: {e}")))?;
        if !re.is_match(value) {
            return Err(Misfit::Value(format!("must match {pattern}")));
        }
    }
    let chars = value.chars().count() as u64;
    if p.get("minLength").and_then(Value::as_u64).is_some_and(|min| chars < min) {
        return Err(Misfit::Value(format!("must be at least {} characters", p["minLength"])));
    }
    if p.get("maxLength").and_then(Value::as_u64).is_some_and(|max| chars > max) {
        return Err(Misfit::Value(format!("must be at most {} characters", p["maxLength"])));
    }
    // Bounds are about numbers: they apply where the schema says the text is one.
    if let Some(n) = number.filter(|_| types.iter().any(|t| matches!(*t, "integer" | "number"))) {
        let bound = |k: &str| p.get(k).and_then(Value::as_f64);
        let bounds: [(&str, &str, fn(f64, f64) -> bool); 4] = [
            ("minimum", "at least", |n, b| n >= b),
            ("maximum", "at most", |n, b| n <= b),
            ("exclusiveMinimum", "more than", |n, b| n > b),
            ("exclusiveMaximum", "less than", |n, b| n < b),
        ];
        for (keyword, words, holds) in bounds {
            if let Some(b) = bound(keyword).filter(|b| !holds(n, *b)) {
                return Err(Misfit::Value(format!("must be {words} {b}")));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(schema: &str, values: &[(&str, &str)]) -> Result<(), ConfigRefusal> {
        let values = values.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Configs::new([("p".to_string(), values)].into()).check("p", schema)
    }

    const POINTS: &str = r#"{"type":"object","properties":{"points_per_unit":{"type":"string","pattern":"^[0-9]{1,3}$","default":"1"}}}"#;

    #[test]
    fn values_that_fit_pass_and_others_say_why() {
        assert_eq!(check(POINTS, &[]), Ok(()));
        assert_eq!(check(POINTS, &[("points_per_unit", "999")]), Ok(()));
        let refused = check(POINTS, &[("points_per_unit", "1.5")]).unwrap_err();
        assert_eq!(refused, ConfigRefusal::Value { key: "points_per_unit".into(), value: "1.5".into(), why: "must match ^[0-9]{1,3}$".into() });
        assert!(refused.to_string().contains("points_per_unit = \"1.5\""), "{refused}");
    }

    #[test]
    fn types_enums_lengths_and_bounds() {
        let schema = r#"{"properties":{
            "n":{"type":"integer","minimum":1,"exclusiveMaximum":10},
            "x":{"type":["number","boolean"]},
            "mode":{"enum":["fast","safe",3]},
            "name":{"type":"string","minLength":2,"maxLength":3},
            "always":{"const":"on"}}}"#;
        assert_eq!(check(schema, &[("n", "9"), ("x", "true"), ("mode", "3"), ("name", "ab"), ("always", "on")]), Ok(()));
        for (key, value, why) in [
            ("n", "1.5", "must read as integer"),
            ("n", "0", "must be at least 1"),
            ("n", "10", "must be less than 10"),
            ("x", "yes", "must read as number or boolean"),
            ("mode", "slow", r#"must be one of ["fast","safe",3]"#),
            ("name", "a", "must be at least 2 characters"),
            ("name", "abcd", "must be at most 3 characters"),
            ("always", "off", r#"must be "on""#),
        ] {
            assert_eq!(check(schema, &[(key, value)]), Err(ConfigRefusal::Value { key: key.into(), value: value.into(), why: why.into() }));
        }
    }

    #[test]
    fn required_undeclared_and_unusable_schemas() {
        let strict = r#"{"required":["a"],"properties":{"a":{}},"additionalProperties":false}"#;
        assert_eq!(check(strict, &[]), Err(ConfigRefusal::Missing("a".into())));
        assert_eq!(check(strict, &[("a", "1"), ("b", "2")]), Err(ConfigRefusal::Undeclared("b".into())));
        assert_eq!(check(POINTS, &[("typo", "2")]), Ok(()), "undeclared is allowed unless the schema says otherwise");
        assert!(matches!(check("not json", &[("a", "1")]), Err(ConfigRefusal::Schema(_))));
        assert!(matches!(check("[]", &[("a", "1")]), Err(ConfigRefusal::Schema(_))));
        assert_eq!(check("not json", &[]), Ok(()), "nothing set, nothing to check");
        assert!(matches!(check(r#"{"properties":{"a":{"pattern":"("}}}"#, &[("a", "x")]), Err(ConfigRefusal::Schema(_))));
        assert_eq!(check("{}", &[("anything", "goes")]), Ok(()));
    }
}
