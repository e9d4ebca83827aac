//! The subjects a plugin version may ask for. They become its durable consumer's filter
//! (and a replay's), so they are checked when the version loads: a filter the server would
//! refuse would otherwise stop the plugin's consumer at its next bind, on every host; and
//! one that no event of the shop travels on would bind and never deliver anything.

use crate::events::SUBJECTS;

/// Why a version's subjects cannot be its consumer's filter.
pub fn refusal(subjects: &[String]) -> Option<String> {
    if subjects.is_empty() {
        return Some("no subjects".into());
    }
    if let Some(bad) = subjects.iter().find(|s| !valid(s)) {
        return Some(format!("{bad:?} is not a subject of stream SHOP (shop.<token>…; `*` a whole token, `>` only last)"));
    }
    // A typo (`shop.pay.sucess`) would otherwise be a plugin that quietly never runs: the
    // shop publishes nothing else, and the guard dead-letters any other subject's events.
    if let Some(idle) = subjects.iter().find(|f| !SUBJECTS.iter().any(|s| overlap(f, s))) {
        return Some(format!("{idle:?} reads none of the shop's events ({})", SUBJECTS.join(", ")));
    }
    for (i, a) in subjects.iter().enumerate() {
        // nats-server refuses a consumer whose filters overlap (one event, two filters).
        if let Some(b) = subjects[i + 1..].iter().find(|b| overlap(a, b)) {
            return Some(format!("{a:?} and {b:?} overlap"));
        }
    }
    None
}

/// Whether a version that asked for `filters` reads events of `subject`.
pub fn reads(filters: &[String], subject: &str) -> bool {
    filters.iter().any(|f| overlap(f, subject))
}

/// A NATS subject filter under `shop.`: non-empty tokens of printable characters, `*` only
/// as a whole token, `>` only as the whole last one.
fn valid(subject: &str) -> bool {
    let tokens: Vec<&str> = subject.split('.').collect();
    let last = tokens.len() - 1;
    tokens.len() >= 2
        && tokens[0] == "shop"
        && tokens.iter().enumerate().all(|(i, t)| {
            let plain = !t.is_empty() && t.chars().all(|c| c.is_ascii_graphic() && c != '*' && c != '>');
            plain || *t == "*" || (*t == ">" && i == last)
        })
}

/// Whether some subject matches both filters.
fn overlap(a: &str, b: &str) -> bool {
    let (mut a, mut b) = (a.split('.'), b.split('.'));
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
            (Some(x), Some(y)) if x == y || x == "*" || y == "*" => continue,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::refusal;

    fn check(subjects: &[&str]) -> Option<String> {
        refusal(&subjects.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn a_consumer_filter_is_refused_where_the_server_would_refuse_it() {
        assert_eq!(check(&["shop.pay.success"]), None);
        assert_eq!(check(&["shop.order.cancel", "shop.pay.success"]), None);
        assert_eq!(check(&["shop.order.*", "shop.pay.>"]), None);
        assert_eq!(check(&["shop.>"]), None);
        for bad in ["shop.", "shop", "shop..cancel", "shop.>.x", "shop.pay*", "shop.pay success", "other.pay", ""] {
            assert!(check(&[bad]).is_some_and(|why| why.contains("is not a subject")), "{bad:?}");
        }
        for (a, b) in [("shop.>", "shop.pay.success"), ("shop.order.*", "shop.order.cancel"), ("shop.pay.success", "shop.pay.success"), ("shop.*.cancel", "shop.order.>")] {
            assert!(check(&[a, b]).is_some_and(|why| why.contains("overlap")), "{a} {b}");
        }
        assert!(!super::overlap("shop.order.*", "shop.order.cancel.x"), "different depths");
        for idle in ["shop.pay.sucess", "shop.order.cancel.x", "shop.refund.*"] {
            let why = check(&["shop.order.cancel", idle]).unwrap_or_default();
            assert!(why.contains("reads none of the shop's events (shop.order.cancel, shop.order.confirmed, shop.pay.success)"), "{idle}: {why}");
        }
        assert_eq!(check(&[]), Some("no subjects".into()));
        let filters = ["shop.order.*".to_string(), "shop.pay.success".to_string()];
        assert!(super::reads(&filters, "shop.order.cancel") && super::reads(&filters, "shop.pay.success"));
        assert!(!super::reads(&filters, "shop.pay.refund") && !super::reads(&filters, "shop.order.cancel.x"));
    }
}
