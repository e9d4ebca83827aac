//! What a query, header or path parameter the framework refused says: the parameter and what
//! it expects, plainly, as the body checks do ([`super::strict`]), not in poem-openapi's
//! (`failed to parse "integer_int64": invalid digit found in string (occurred while parsing
//! "optional_integer_int64")`, `verification failed. minimum(1, exclusive: false)`).

use std::sync::LazyLock;

use serde_json::Value;

/// `reason` (poem-openapi's, for parameter `name`) said plainly: `limit: must be at least 1`.
pub fn said(name: &str, reason: &str) -> String {
    // Its shape: [failed to parse "TYPE": ]WHAT[ (occurred while parsing "OUTER")].
    let reason = reason.split(" (occurred while parsing \"").next().unwrap_or(reason);
    let (ty, what) = match reason.strip_prefix("failed to parse \"").and_then(|r| r.split_once("\": ")) {
        Some((ty, what)) => (ty, what),
        None => ("", reason),
    };
    let plain = match what.strip_prefix("verification failed. ") {
        Some(validator) => rule(validator),
        None if what.ends_with("expects an input value.") => "required".to_owned(),
        None if ty.starts_with("integer") && what.contains("too large") => "must be an integer; the one given is out of range".to_owned(),
        None if ty.starts_with("integer") => "must be an integer".to_owned(),
        None if ty == "boolean" => "must be true or false".to_owned(),
        None => match values_of(ty) {
            Some(values) => format!("must be one of {values}"),
            // Our own types (an id, a time) say what they expect themselves.
            None => what.to_owned(),
        },
    };
    format!("{name}: {plain}")
}

/// A validator as poem-openapi prints it (`maximum(500, exclusive: false)`), as a rule.
fn rule(validator: &str) -> String {
    let Some((kind, args)) = validator.strip_suffix(')').and_then(|v| v.split_once('(')) else {
        return validator.to_owned();
    };
    let (n, exclusive) = match args.split_once(", exclusive: ") {
        Some((n, exclusive)) => (n, exclusive == "true"),
        None => (args, false),
    };
    match (kind, exclusive) {
        ("minimum", false) => format!("must be at least {n}"),
        ("minimum", true) => format!("must be more than {n}"),
        ("maximum", false) => format!("must be at most {n}"),
        ("maximum", true) => format!("must be less than {n}"),
        ("minLength", _) => format!("must be at least {n} characters"),
        ("maxLength", _) => format!("must be at most {n} characters"),
        ("pattern", _) => format!("must match {}", n.trim_matches('"')),
        _ => validator.to_owned(),
    }
}

/// The values of the API's enum type `ty`, from the served spec: `same, changed, new`.
fn values_of(ty: &str) -> Option<String> {
    static SPEC: LazyLock<Value> = LazyLock::new(|| serde_json::from_str(&super::spec_json()).unwrap_or_default());
    let values = SPEC["components"]["schemas"].get(ty)?["enum"].as_array()?;
    Some(values.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
}

#[cfg(test)]
mod tests {
    use super::said;

    /// poem-openapi's reasons, as it words them today (a new wording shows up here).
    #[test]
    fn parameters_are_named_with_what_they_expect() {
        let cases = [
            (r#"failed to parse "integer_int64": invalid digit found in string (occurred while parsing "optional_integer_int64")"#, "after: must be an integer"),
            ("verification failed. minimum(1, exclusive: false)", "after: must be at least 1"),
            ("verification failed. maximum(500, exclusive: false)", "after: must be at most 500"),
            (r#"verification failed. pattern("^[A-Za-z0-9_-]{1,64}$")"#, "after: must match ^[A-Za-z0-9_-]{1,64}$"),
            (r#"failed to parse "Outcome": Expect a valid enumeration value. (occurred while parsing "optional_Outcome")"#, "after: must be one of same, changed, new, failed, applied, skipped"),
            (r#"failed to parse "Id": not an id: "abc""#, r#"after: not an id: "abc""#),
            (r#"Type "integer_int64" expects an input value."#, "after: required"),
            (r#"failed to parse "integer_int64": number too large to fit in target type (occurred while parsing "optional_integer_int64")"#, "after: must be an integer; the one given is out of range"),
        ];
        for (reason, expected) in cases {
            assert_eq!(said("after", reason), expected, "{reason}");
        }
    }
}
