//! A message from stream SHOP, parsed and checked before any plugin sees it: a CloudEvents
//! 1.0 envelope whose `type` is the NATS subject and whose `data` is the domain payload of
//! that type. A message that fails here is a poison event: dead-lettered with the reason.

use serde::Deserialize;

use super::wit::{self as rt, Payload};
use crate::{
    events::{OrderCancelled, OrderConfirmed, PaySucceeded, SUBJECT_ORDER_CANCEL, SUBJECT_ORDER_CONFIRMED, SUBJECT_PAY_SUCCESS},
    trace::TraceContext,
};

#[derive(Debug, Clone)]
pub enum DomainEvent {
    Cancel(OrderCancelled),
    Confirmed(OrderConfirmed),
    Paid(PaySucceeded),
}

#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub subject: String,
    pub time: String,
    pub event: DomainEvent,
    /// The message as received, for the inbox and the dead-letter store.
    pub body: String,
    /// The trace it belongs to: the `traceparent` header, else the CloudEvent's attribute.
    pub trace: Option<TraceContext>,
    /// Its sequence in stream SHOP, where it came from the stream (a consumer, a replay).
    pub seq: Option<u64>,
}

#[derive(Deserialize)]
struct Envelope {
    specversion: String,
    id: String,
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    time: String,
    /// Tracing is best effort: a missing or malformed context is not a poison event.
    #[serde(default)]
    traceparent: Option<serde_json::Value>,
    data: serde_json::Value,
}

/// Parses a message received on `subject`; the error is a readable reason.
pub fn parse(subject: &str, body: &[u8]) -> Result<Delivery, String> {
    let text = std::str::from_utf8(body).map_err(|_| "body is not UTF-8".to_string())?;
    let env: Envelope = serde_json::from_str(text).map_err(|e| format!("not a CloudEvents JSON envelope: {e}"))?;
    // Postgres cannot store U+0000 in text, so an event carrying one could be neither
    // recorded in the inbox nor applied: it is refused here, like any other poison event.
    if [&env.id, &env.ty, &env.time].into_iter().any(|s| s.contains('\0')) || holds_nul(&env.data) {
        return Err("a text field holds a NUL character (U+0000)".into());
    }
    if env.specversion != "1.0" {
        return Err(format!("unsupported CloudEvents specversion {:?}", env.specversion));
    }
    if env.id.is_empty() || env.id.len() > 64 {
        return Err("event id is empty or longer than 64 characters".into());
    }
    if env.ty != subject {
        return Err(format!("event type {:?} arrived on subject {subject:?}", env.ty));
    }
    let bad = |e: serde_json::Error| format!("{subject} payload invalid: {e}");
    let event = match subject {
        SUBJECT_ORDER_CANCEL => DomainEvent::Cancel(serde_json::from_value(env.data).map_err(bad)?),
        SUBJECT_ORDER_CONFIRMED => DomainEvent::Confirmed(serde_json::from_value(env.data).map_err(bad)?),
        SUBJECT_PAY_SUCCESS => DomainEvent::Paid(serde_json::from_value(env.data).map_err(bad)?),
        other => return Err(format!("unknown event type {other:?}")),
    };
    let trace = env.traceparent.as_ref().and_then(|t| t.as_str()).and_then(TraceContext::parse);
    Ok(Delivery { id: env.id, subject: subject.to_owned(), time: env.time, event, body: text.to_owned(), trace, seq: None })
}

fn holds_nul(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(fields) => fields.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

impl DomainEvent {
    pub fn order_id(&self) -> i64 {
        match self {
            DomainEvent::Cancel(e) => e.order_id.0,
            DomainEvent::Confirmed(e) => e.order_id.0,
            DomainEvent::Paid(e) => e.order_id.0,
        }
    }

    pub fn user_id(&self) -> i64 {
        match self {
            DomainEvent::Cancel(e) => e.user_id.0,
            DomainEvent::Confirmed(e) => e.user_id.0,
            DomainEvent::Paid(e) => e.user_id.0,
        }
    }
}

impl Delivery {
    /// The event as the plugin world spells it.
    pub fn to_wit(&self) -> rt::Event {
        let payload = match &self.event {
            DomainEvent::Cancel(e) => Payload::OrderCancel(rt::OrderCancelled {
                order_id: e.order_id.0,
                user_id: e.user_id.0,
                goods_id: e.goods_id.0,
                goods_number: e.goods_number,
                coupon_id: e.coupon_id.map(|c| c.0),
                money_paid: e.money_paid.cents(),
                reason: e.reason.clone(),
            }),
            DomainEvent::Confirmed(e) => Payload::OrderConfirmed(rt::OrderConfirmed {
                order_id: e.order_id.0,
                user_id: e.user_id.0,
                goods_id: e.goods_id.0,
                goods_number: e.goods_number,
                goods_price: e.goods_price.cents(),
                order_amount: e.order_amount.cents(),
                coupon_id: e.coupon_id.map(|c| c.0),
                coupon_paid: e.coupon_paid.cents(),
                money_paid: e.money_paid.cents(),
                pay_amount: e.pay_amount.cents(),
            }),
            DomainEvent::Paid(e) => Payload::PaySuccess(rt::PaySucceeded {
                pay_id: e.pay_id.0,
                order_id: e.order_id.0,
                user_id: e.user_id.0,
                pay_amount: e.pay_amount.cents(),
            }),
        };
        rt::Event { id: self.id.clone(), subject: self.subject.clone(), time: self.time.clone(), payload }
    }
}

/// The envelope id of a malformed message, if it has one, for the dead-letter and replay
/// records: at most 64 characters, like a valid id, and none of them NUL (see [`parse`]).
pub fn event_id_guess(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("id").and_then(|id| id.as_str().map(|id| id.chars().take(64).map(|c| if c == '\0' { '\u{FFFD}' } else { c }).collect())))
        .unwrap_or_else(|| "unknown".into())
}
