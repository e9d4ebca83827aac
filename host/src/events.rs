//! Events: a CloudEvents 1.0 JSON envelope around the domain payloads. The envelope `id` is
//! the outbox row id and also the `Nats-Msg-Id`, so JetStream de-duplicates re-publishes and
//! consumers key their inbox on it. Ids are strings and money decimal strings, as in the API.

use serde::{Deserialize, Serialize};

use crate::{ids::Id, money::Money};

pub const SUBJECT_ORDER_CANCEL: &str = "shop.order.cancel";
pub const SUBJECT_ORDER_CONFIRMED: &str = "shop.order.confirmed";
pub const SUBJECT_PAY_SUCCESS: &str = "shop.pay.success";
/// Every subject the shop publishes an event on.
pub const SUBJECTS: [&str; 3] = [SUBJECT_ORDER_CANCEL, SUBJECT_ORDER_CONFIRMED, SUBJECT_PAY_SUCCESS];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent<T> {
    pub specversion: String,
    pub id: String,
    pub source: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub subject: String,
    pub time: String,
    pub datacontenttype: String,
    /// The CloudEvents distributed-tracing extension: the W3C trace context of the request
    /// that caused the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    pub data: T,
}

/// A domain event: which subject it travels on and what its payload is.
pub trait Event: Serialize {
    const SUBJECT: &'static str;
    /// The key the outbox row is filed under (the order id), as in the original's msg_key.
    fn key(&self) -> Id;
}

/// Every event is filed under its order (`order_id`): `keyed_by_order!(Type, SUBJECT)`.
macro_rules! keyed_by_order {
    ($ty:ty, $subject:expr) => {
        impl Event for $ty {
            const SUBJECT: &'static str = $subject;
            fn key(&self) -> Id {
                self.order_id
            }
        }
    };
}

/// An order was cancelled after its pre-order was saved: give back what its forward steps
/// took. Every give-back must be safe to run twice and when its forward step never ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderCancelled {
    pub order_id: Id,
    pub user_id: Id,
    pub goods_id: Id,
    pub goods_number: i64,
    pub coupon_id: Option<Id>,
    /// Balance the order meant to use ("balance used").
    pub money_paid: Money,
    pub reason: String,
}

keyed_by_order!(OrderCancelled, SUBJECT_ORDER_CANCEL);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderConfirmed {
    pub order_id: Id,
    pub user_id: Id,
    pub goods_id: Id,
    pub goods_number: i64,
    pub goods_price: Money,
    pub order_amount: Money,
    pub coupon_id: Option<Id>,
    pub coupon_paid: Money,
    pub money_paid: Money,
    pub pay_amount: Money,
}

keyed_by_order!(OrderConfirmed, SUBJECT_ORDER_CONFIRMED);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaySucceeded {
    pub pay_id: Id,
    pub order_id: Id,
    pub user_id: Id,
    pub pay_amount: Money,
}

keyed_by_order!(PaySucceeded, SUBJECT_PAY_SUCCESS);

impl<T: Event> CloudEvent<T> {
    pub fn new(id: i64, created_ms: i64, data: T) -> CloudEvent<T> {
        CloudEvent {
            specversion: "1.0".into(),
            id: id.to_string(),
            source: "shopmesh".into(),
            ty: T::SUBJECT.into(),
            subject: data.key().to_string(),
            time: crate::timestamp::rfc3339(created_ms),
            datacontenttype: "application/json".into(),
            traceparent: None,
            data,
        }
    }
}
