//! A plugin's effects: checked against the plugin's capabilities and the event (a guest's
//! values are never trusted), then handed to the shop resource that owns the change. This
//! file decides *whether* an effect may happen; the resources in [`crate::shop`] own *how*
//! (their SQL, log rows and give-back fences).

use std::fmt;

use super::{
    delivery::{Delivery, DomainEvent},
    runtime::{capability_name, Capability, Effect, LoadedPlugin, LogKind},
};
use crate::{
    ids::{Id, Snowflake},
    money::Money,
    outbox,
    shop::{
        audit_log,
        balance::Balance,
        coupons::CouponUse,
        points,
        steps::{self, GiveBack, Step},
        stock::Stock,
    },
    store::Conn,
};

/// The most points per whole 1.00 paid that one plugin's effects for a payment may award: a
/// guard against a rule gone wrong, above what the points plugin's schema lets it be
/// configured to give (`points_per_unit` up to 999), so that setting never trips it.
pub const MAX_POINTS_PER_UNIT: i64 = 1000;
const MAX_NOTE_CHARS: usize = 500;
/// The most effects one event may produce: the shop's plugins produce one; a list longer
/// than this is a plugin gone wrong, not a rule (each effect is a row written).
pub const MAX_EFFECTS_PER_EVENT: usize = 64;

/// Why an effect was refused. The plugin is wrong, not the database: nothing is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The plugin's manifest does not declare the capability.
    NotDeclared { plugin: String, capability: Capability },
    /// The plugin's name is not granted the capability.
    NotGranted { plugin: String, capability: Capability },
    /// An effect of this kind does not apply to this kind of event.
    WrongEvent { capability: Capability, subject: String },
    /// An id in the effect is not the event's (`what` names which).
    Mismatch { what: &'static str },
    /// A quantity or amount outside what the event allows.
    OutOfRange { what: &'static str, value: i64, least: i64, most: i64 },
    NoteTooLong,
    /// More effects for one event than [`MAX_EFFECTS_PER_EVENT`].
    TooMany { count: usize },
    /// A give-back of another amount than its forward step took.
    GiveBackMismatch { step: Step, asked: i64, recorded: i64 },
    /// The event is not one the shop wrote (no outbox row with its id, subject and body).
    NotWritten { event: String },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotDeclared { plugin, capability } => {
                write!(f, "{plugin} did not declare capability {}", capability_name(*capability))
            }
            Refusal::NotGranted { plugin, capability } => {
                write!(f, "capability {} is not allowed for plugin {plugin}", capability_name(*capability))
            }
            Refusal::WrongEvent { capability, subject } => {
                write!(f, "{} does not apply to a {subject} event", capability_name(*capability))
            }
            Refusal::Mismatch { what } => write!(f, "{what} does not match the event"),
            Refusal::OutOfRange { what, value, least, most } => write!(f, "{what}: {value} is outside {least}..={most}"),
            Refusal::NoteTooLong => write!(f, "note longer than {MAX_NOTE_CHARS} characters"),
            Refusal::TooMany { count } => write!(f, "{count} effects for one event, more than {MAX_EFFECTS_PER_EVENT}"),
            Refusal::GiveBackMismatch { step, asked, recorded } => {
                write!(f, "{step} give-back of {asked} but the forward step recorded {recorded}")
            }
            Refusal::NotWritten { event } => {
                write!(f, "event {event} is not one this shop wrote (no outbox row with its subject and body): forged or altered on the way; nothing applied")
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("effect rejected: {0}")]
    Rejected(Refusal),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

pub fn capability(effect: &Effect) -> Capability {
    match effect {
        Effect::RestoreStock(_) => Capability::RestoreStock,
        Effect::ReleaseCoupon(_) => Capability::ReleaseCoupon,
        Effect::RefundBalance(_) => Capability::RefundBalance,
        Effect::AddPoints(_) => Capability::AddPoints,
        Effect::AppendLog(_) => Capability::AppendLog,
    }
}

/// Effects as the API shows and the inbox records them: a JSON object per effect, with its
/// `kind` (the capability's name), ids as strings and money as decimal strings, so a recorded
/// list and a candidate's compare as values.
pub fn view(effects: &[Effect]) -> serde_json::Value {
    use serde_json::json;
    let id = |v: i64| Id(v).to_string();
    let money = |cents: i64| Money::from_cents(cents).to_string();
    effects
        .iter()
        .map(|effect| {
            let kind = capability_name(capability(effect));
            match effect {
                Effect::RestoreStock(e) => {
                    json!({"kind": kind, "order_id": id(e.order_id), "goods_id": id(e.goods_id), "quantity": e.quantity})
                }
                Effect::ReleaseCoupon(e) => json!({"kind": kind, "order_id": id(e.order_id), "coupon_id": id(e.coupon_id)}),
                Effect::RefundBalance(e) => {
                    json!({"kind": kind, "order_id": id(e.order_id), "user_id": id(e.user_id), "amount": money(e.amount)})
                }
                Effect::AddPoints(e) => {
                    json!({"kind": kind, "order_id": id(e.order_id), "user_id": id(e.user_id), "points": e.points})
                }
                Effect::AppendLog(e) => json!({
                    "kind": kind, "order_id": id(e.order_id), "user_id": id(e.user_id),
                    "log_kind": match e.kind { LogKind::Paid => "paid", LogKind::Cancelled => "cancelled" },
                    "amount": money(e.amount), "note": e.note,
                }),
            }
        })
        .collect()
}

fn ensure(ok: bool, refusal: impl FnOnce() -> Refusal) -> Result<(), Refusal> {
    if ok { Ok(()) } else { Err(refusal()) }
}

fn within(what: &'static str, value: i64, least: i64, most: i64) -> Result<(), Refusal> {
    ensure((least..=most).contains(&value), || Refusal::OutOfRange { what, value, least, most })
}

/// Checks an event's effects against the plugin (what its manifest declares and what its
/// name is `granted` now) and the event, without touching the database: each one alone,
/// then what they add up to. The points cap holds for the event,
/// not per effect, or a plugin could multiply it by returning the same award many times
/// (give-backs need no such sum: their fence allows one per step).
pub fn validate(plugin: &LoadedPlugin, granted: &[Capability], d: &Delivery, effects: &[Effect]) -> Result<(), Refusal> {
    ensure(effects.len() <= MAX_EFFECTS_PER_EVENT, || Refusal::TooMany { count: effects.len() })?;
    let mut points: i64 = 0;
    for effect in effects {
        validate_one(plugin, granted, d, effect)?;
        if let Effect::AddPoints(e) = effect {
            points = points.saturating_add(e.points);
        }
    }
    match &d.event {
        DomainEvent::Paid(p) if points > 0 => {
            within("add-points of the event together (at most 1000 a whole 1.00 paid)", points, 1, points_cap(p.pay_amount))
        }
        _ => Ok(()),
    }
}

/// The most points a payment of `paid` may earn.
fn points_cap(paid: Money) -> i64 {
    (paid.cents() / 100).saturating_mul(MAX_POINTS_PER_UNIT)
}

fn validate_one(plugin: &LoadedPlugin, granted: &[Capability], d: &Delivery, effect: &Effect) -> Result<(), Refusal> {
    let cap = capability(effect);
    let name = || plugin.name.clone();
    ensure(plugin.manifest.capabilities.contains(&cap), || Refusal::NotDeclared { plugin: name(), capability: cap })?;
    ensure(granted.contains(&cap), || Refusal::NotGranted { plugin: name(), capability: cap })?;
    let mismatch = |what| move || Refusal::Mismatch { what };
    match (effect, &d.event) {
        (Effect::RestoreStock(e), DomainEvent::Cancel(c)) => {
            ensure(e.order_id == c.order_id.0 && e.goods_id == c.goods_id.0, mismatch("order or goods"))?;
            within("restore-stock quantity (at most the order's goods number)", e.quantity, 1, c.goods_number)
        }
        (Effect::ReleaseCoupon(e), DomainEvent::Cancel(c)) => {
            ensure(e.order_id == c.order_id.0, mismatch("order"))?;
            ensure(c.coupon_id.map(|id| id.0) == Some(e.coupon_id), mismatch("coupon"))
        }
        (Effect::RefundBalance(e), DomainEvent::Cancel(c)) => {
            ensure(e.order_id == c.order_id.0 && e.user_id == c.user_id.0, mismatch("order or user"))?;
            within("refund-balance amount in cents (at most the balance the order used)", e.amount, 1, c.money_paid.cents())
        }
        (Effect::AddPoints(e), DomainEvent::Paid(p)) => {
            ensure(e.order_id == p.order_id.0 && e.user_id == p.user_id.0, mismatch("order or user"))?;
            within("add-points points (at most 1000 a whole 1.00 paid)", e.points, 1, points_cap(p.pay_amount))
        }
        (Effect::AppendLog(e), event) => {
            ensure(e.order_id == event.order_id() && e.user_id == event.user_id(), mismatch("order or user"))?;
            let (what, most) = match event {
                DomainEvent::Paid(p) => ("append-log amount in cents (at most what was paid)", p.pay_amount.cents()),
                DomainEvent::Cancel(c) => ("append-log amount in cents (at most the balance the order used)", c.money_paid.cents()),
                DomainEvent::Confirmed(c) => ("append-log amount in cents (at most the order's amount)", c.order_amount.cents()),
            };
            within(what, e.amount, 0, most)?;
            ensure(e.note.chars().count() <= MAX_NOTE_CHARS, || Refusal::NoteTooLong)
        }
        (_, _) => Err(Refusal::WrongEvent { capability: cap, subject: d.subject.clone() }),
    }
}

/// Refuses `events` unless the shop wrote each (its outbox row is there with that id, subject
/// and body): anyone who can publish to NATS can put an event on the stream, a cancel that
/// would give a paid order's stock and balance back, a payment never made. Checked in the
/// transaction that marks them applied, whose refusal undoes the marks: a copy under a real
/// event's id cannot fence the real one out.
pub async fn shops_own(tx: &mut Conn, events: &[&Delivery]) -> Result<(), ApplyError> {
    let asked: Vec<(&str, &str, &str)> = events.iter().map(|d| (d.id.as_str(), d.subject.as_str(), d.body.as_str())).collect();
    match events.iter().zip(outbox::written(tx, &asked).await?).find(|(_, written)| !written) {
        Some((forged, _)) => Err(ApplyError::Rejected(Refusal::NotWritten { event: forged.id.clone() })),
        None => Ok(()),
    }
}

/// Applies the validated effects of several events inside `tx` (which already holds their
/// inbox rows), handing each kind to the resource that owns it: one call per kind, whatever
/// the number of events.
pub async fn apply(tx: &mut Conn, ids: &Snowflake, plugin: &LoadedPlugin, events: &[(&Delivery, &[Effect])]) -> Result<(), ApplyError> {
    let (mut stock, mut coupons, mut balances, mut awards, mut logs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (d, effects) in events {
        for effect in *effects {
            match effect {
                Effect::RestoreStock(e) => stock.push((e.order_id, Stock { goods_id: e.goods_id }, e.quantity)),
                Effect::ReleaseCoupon(e) => {
                    coupons.push((e.order_id, CouponUse { coupon_id: e.coupon_id, user_id: d.event.user_id() }, e.coupon_id))
                }
                Effect::RefundBalance(e) => balances.push((e.order_id, Balance { user_id: e.user_id }, e.amount)),
                Effect::AddPoints(e) => awards.push((e.user_id, e.points)),
                Effect::AppendLog(e) => logs.push(audit_log::Entry {
                    id: ids.next(),
                    order_id: e.order_id,
                    user_id: e.user_id,
                    kind: match e.kind {
                        LogKind::Paid => "paid",
                        LogKind::Cancelled => "cancelled",
                    },
                    amount: e.amount,
                    note: &e.note,
                    event_id: &d.id,
                    plugin_version: plugin.version(),
                }),
            }
        }
    }
    fenced(Step::Stock, &stock, steps::give_back(tx, &stock).await?)?;
    fenced(Step::Coupon, &coupons, steps::give_back(tx, &coupons).await?)?;
    fenced(Step::Balance, &balances, steps::give_back(tx, &balances).await?)?;
    points::add(tx, &awards).await?;
    audit_log::append(tx, &logs).await?;
    Ok(())
}

/// A give-back that does not match its forward record refuses the effects.
fn fenced<R>(step: Step, asked: &[(i64, R, i64)], given: Vec<GiveBack>) -> Result<(), ApplyError> {
    match asked.iter().zip(given).find_map(|((_, _, amount), g)| match g {
        GiveBack::Mismatch { recorded } => Some((*amount, recorded)),
        _ => None,
    }) {
        Some((asked, recorded)) => Err(ApplyError::Rejected(Refusal::GiveBackMismatch { step, asked, recorded })),
        None => Ok(()),
    }
}
