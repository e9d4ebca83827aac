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
    Ok(Delivery { id: env.id, subject: subject.to_owned(), time: env.time, event, body: text.to_owned(), trace })
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

/// The envelope id of a malformed message, if it has one, for the dead-letter record.
pub fn event_id_guess(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("id").and_then(|id| id.as_str().map(str::to_owned)))
        .unwrap_or_else(|| "unknown".into())
}
