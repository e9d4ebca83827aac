//! An order's story, for the operator console: its states, its step records (taken, given
//! back), every event written for it (with its stream sequence once published), what each
//! plugin did with each event (by which version, when, which effects), and its dead letters.
//! Read-only; each table is read through the module that owns it.

use std::collections::HashMap;

use poem_openapi::{Enum, Object};

use crate::{
    ids::Id,
    money::Money,
    outbox,
    plugins::{
        dead_letters::{self, DeadLetter, LetterState},
        inbox,
        runtime::{capability_name, Capability},
    },
    shop::{orders::Order, steps, steps::Step, Shop, ShopError},
    timestamp::Timestamp,
};

#[derive(Debug, Clone, Object)]
pub struct OrderTimeline {
    pub order: Order,
    /// The order's states in the order they happened.
    pub states: Vec<OrderState>,
    /// Forward steps taken by the order flow and their give-backs by plugins.
    pub steps: Vec<StepEntry>,
    /// Every event written for the order, oldest first, with what each plugin did.
    pub events: Vec<TimelineEvent>,
    /// Dead letters of the order's events.
    pub dead_letters: Vec<DeadLetter>,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct OrderState {
    /// `placed`, `confirmed`, `paid` or `cancelled`.
    pub state: String,
    pub at: Timestamp,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "kebab-case")]
pub enum StepAction {
    Taken,
    GivenBack,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct StepEntry {
    /// `stock`, `coupon` or `balance`.
    pub step: String,
    pub action: StepAction,
    /// Units for stock, money for balance, the coupon's id for coupon.
    pub amount: String,
    pub at: Timestamp,
    /// For a give-back: the plugin and version whose effect did it (`stock@1.0.0`).
    pub by: Option<String>,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct TimelineEvent {
    pub event_id: Id,
    pub subject: String,
    pub written_at: Timestamp,
    /// When JetStream acknowledged it (by this host's clock, as the acknowledgement came);
    /// absent while it waits in the outbox. The stream's own time of the event, which a
    /// replay's time range reads, is a moment earlier: to replay this event, give its
    /// `stream_seq`.
    pub published_at: Option<Timestamp>,
    /// Its sequence in the stream.
    pub stream_seq: Option<i64>,
    /// What each plugin did with it.
    pub handled: Vec<Handling>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum HandlingState {
    Applied,
    /// Failed so far, and being retried.
    Failing,
    /// Its retries are over: an open dead letter waits for a redrive.
    #[oai(rename = "dead-lettered")]
    DeadLettered,
    /// Its dead letter was dismissed: it will not be applied.
    Dismissed,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Handling {
    pub plugin: String,
    pub state: HandlingState,
    /// The version that applied it.
    pub version: Option<String>,
    pub attempts: Option<i64>,
    /// When it was applied, or last failed.
    pub at: Timestamp,
    /// The effects applied (as the replay API shows them).
    pub effects: Option<Vec<serde_json::Value>>,
    /// Why the last attempt failed.
    pub remark: Option<String>,
}

/// The story of `order_id`; `ShopError::OrderNotFound` when there is no such order.
pub async fn of_order(shop: &Shop, order_id: Id) -> Result<OrderTimeline, ShopError> {
    let order: Order = shop.get(order_id).await?;
    let db = &shop.db;
    let records = steps::of_orders(db.pool(), &[order_id.0]).await?;
    let written = outbox::of_order(db, order_id.0).await?;
    let ids: Vec<String> = written.iter().map(|w| w.event_id.to_string()).collect();
    let dead_letters = dead_letters::of_events(db, &ids).await?;
    // What became of a plugin's dead letter of an event, once its retries are over: the
    // latest letter (a redelivery after a lost ack can leave two), open or dismissed.
    let lettered = |plugin: &str, event_id: &str| {
        let letter = dead_letters.iter().filter(|d| d.plugin == plugin && d.event_id == event_id).max_by_key(|d| (d.state == LetterState::Open, d.id.0))?;
        match letter.state {
            LetterState::Open => Some((HandlingState::DeadLettered, letter)),
            LetterState::Dismissed => Some((HandlingState::Dismissed, letter)),
            LetterState::Redriven => None,
        }
    };
    let mut handled: HashMap<String, Vec<Handling>> = HashMap::new();
    for h in inbox::of_events(db, &ids).await? {
        let (state, attempts) = match h.state {
            inbox::State::Failed(n) => (lettered(&h.plugin, &h.event_id).map_or(HandlingState::Failing, |(state, _)| state), Some(n)),
            _ => (HandlingState::Applied, None),
        };
        handled.entry(h.event_id).or_default().push(Handling {
            plugin: h.plugin,
            state,
            version: h.version,
            attempts,
            at: Timestamp(h.at),
            effects: h.effects.and_then(|e| serde_json::from_str(&e).ok()),
            remark: h.remark,
        });
    }
    // An event a plugin refused outright (a permanent failure) is dead-lettered at once,
    // with no attempt in its inbox: its letter tells what the plugin did.
    for d in &dead_letters {
        let rows = handled.entry(d.event_id.clone()).or_default();
        if rows.iter().any(|h| h.plugin == d.plugin) {
            continue;
        }
        // Once per plugin and event: a second letter of theirs finds the row pushed above.
        if let Some((state, letter)) = lettered(&d.plugin, &d.event_id) {
            rows.push(Handling {
                plugin: letter.plugin.clone(),
                state,
                version: Some(letter.plugin_version.clone()),
                attempts: Some(letter.attempts),
                at: letter.created_at.unwrap_or(Timestamp(0)),
                effects: None,
                remark: Some(letter.reason.clone()),
            });
        }
    }
    // Which plugin's effect gave each resource back: the applied effect of its kind.
    let giver = |step: Step| {
        let kind = capability_name(match step {
            Step::Stock => Capability::RestoreStock,
            Step::Coupon => Capability::ReleaseCoupon,
            Step::Balance => Capability::RefundBalance,
            Step::Confirm => return None,
        });
        handled.values().flatten().find_map(|h| {
            let did = h.effects.as_ref()?.iter().any(|e| e["kind"] == kind);
            did.then(|| format!("{}@{}", h.plugin, h.version.as_deref().unwrap_or("?")))
        })
    };
    Ok(OrderTimeline {
        states: states(&order),
        steps: records
            .into_iter()
            .map(|r| StepEntry {
                step: r.step.as_str().to_owned(),
                action: if r.forward { StepAction::Taken } else { StepAction::GivenBack },
                amount: match r.step {
                    Step::Balance => Money::from_cents(r.amount).to_string(),
                    _ => r.amount.to_string(),
                },
                at: Timestamp(r.at),
                by: if r.forward { None } else { giver(r.step) },
            })
            .collect(),
        events: written
            .into_iter()
            .map(|w| TimelineEvent {
                handled: handled.remove(&w.event_id.to_string()).unwrap_or_default(),
                event_id: Id(w.event_id),
                subject: w.subject,
                written_at: Timestamp(w.written_at),
                published_at: w.sent_at.map(Timestamp),
                stream_seq: w.stream_seq,
            })
            .collect(),
        dead_letters,
        order,
    })
}

fn states(order: &Order) -> Vec<OrderState> {
    let mut states: Vec<OrderState> = [
        ("placed", order.add_time, None),
        ("confirmed", order.confirm_time, None),
        ("paid", order.pay_time, None),
        ("cancelled", order.cancel_time, order.cancel_reason.clone()),
    ]
    .into_iter()
    .filter_map(|(state, at, note)| at.map(|at| OrderState { state: state.to_owned(), at, note }))
    .collect();
    states.sort_by_key(|s| s.at.0);
    states
}
