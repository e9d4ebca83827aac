//! Turning a plugin's effects into SQL. Every effect is checked first against the plugin's
//! capabilities and the event (a guest's values are never trusted); then all of them and
//! the plugin's inbox row commit in one transaction, or none do.
//!
//! Give-backs are fenced by the step records: giving back needs the forward record (else
//! nothing happens: an "empty rollback"), must match its amount, and writes a `giveback`
//! record whose primary key makes a second give-back a no-op.

use super::{
    delivery::{Delivery, DomainEvent},
    runtime::{capability_name, Capability, Effect, LoadedPlugin},
};
use crate::{ids::now_ms, shop::Shop, store::Tx};

/// The most points per whole 1.00 paid that any points rule may award.
pub const MAX_POINTS_PER_UNIT: i64 = 100;
const MAX_NOTE_CHARS: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The effects break a rule: the plugin is wrong, not the database.
    #[error("effect rejected: {0}")]
    Rejected(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Effects and inbox row committed.
    Now,
    /// The inbox already had this event: nothing was done again.
    Before,
}

fn capability(effect: &Effect) -> Capability {
    match effect {
        Effect::RestoreStock(_) => Capability::RestoreStock,
        Effect::ReleaseCoupon(_) => Capability::ReleaseCoupon,
        Effect::RefundBalance(_) => Capability::RefundBalance,
        Effect::AddPoints(_) => Capability::AddPoints,
        Effect::AppendLog(_) => Capability::AppendLog,
    }
}

fn ensure(ok: bool, why: impl FnOnce() -> String) -> Result<(), ApplyError> {
    if ok { Ok(()) } else { Err(ApplyError::Rejected(why())) }
}

/// Checks one effect against the plugin and the event, without touching the database.
pub fn validate(plugin: &LoadedPlugin, d: &Delivery, effect: &Effect) -> Result<(), ApplyError> {
    let cap = capability(effect);
    ensure(plugin.manifest.capabilities.contains(&cap), || {
        format!("{} did not declare capability {}", plugin.name, capability_name(cap))
    })?;
    ensure(super::runtime::allowed_capabilities(&plugin.name).contains(&cap), || {
        format!("capability {} is not allowed for plugin {}", capability_name(cap), plugin.name)
    })?;
    let mismatch = |what: &str| format!("{what} does not match the event");
    match (effect, &d.event) {
        (Effect::RestoreStock(e), DomainEvent::Cancel(c)) => {
            ensure(e.order_id == c.order_id.0 && e.goods_id == c.goods_id.0, || mismatch("order or goods"))?;
            ensure(e.quantity > 0 && e.quantity <= c.goods_number, || {
                format!("quantity {} outside 1..={}", e.quantity, c.goods_number)
            })
        }
        (Effect::ReleaseCoupon(e), DomainEvent::Cancel(c)) => {
            ensure(e.order_id == c.order_id.0, || mismatch("order"))?;
            ensure(c.coupon_id.map(|id| id.0) == Some(e.coupon_id), || mismatch("coupon"))
        }
        (Effect::RefundBalance(e), DomainEvent::Cancel(c)) => {
            ensure(e.order_id == c.order_id.0 && e.user_id == c.user_id.0, || mismatch("order or user"))?;
            ensure(e.amount > 0 && e.amount <= c.money_paid.cents(), || {
                format!("refund {} outside 1..={} cents the order used", e.amount, c.money_paid.cents())
            })
        }
        (Effect::AddPoints(e), DomainEvent::Paid(p)) => {
            ensure(e.order_id == p.order_id.0 && e.user_id == p.user_id.0, || mismatch("order or user"))?;
            let most = (p.pay_amount.cents() / 100).saturating_mul(MAX_POINTS_PER_UNIT);
            ensure(e.points > 0 && e.points <= most, || format!("points {} outside 1..={most}", e.points))
        }
        (Effect::AppendLog(e), event) => {
            ensure(e.order_id == event.order_id() && e.user_id == event.user_id(), || mismatch("order or user"))?;
            let most = match event {
                DomainEvent::Paid(p) => p.pay_amount.cents(),
                DomainEvent::Cancel(c) => c.money_paid.cents(),
                DomainEvent::Confirmed(c) => c.order_amount.cents(),
            };
            ensure((0..=most).contains(&e.amount), || format!("amount {} outside 0..={most}", e.amount))?;
            ensure(e.note.chars().count() <= MAX_NOTE_CHARS, || "note longer than 500 characters".into())
        }
        (effect, _) => Err(ApplyError::Rejected(format!(
            "{} does not apply to a {} event",
            capability_name(capability(effect)),
            d.subject
        ))),
    }
}

/// Validates every effect, then applies them with the inbox row in one transaction.
pub async fn apply(shop: &Shop, plugin: &LoadedPlugin, d: &Delivery, effects: &[Effect], attempts: i64) -> Result<Applied, ApplyError> {
    for effect in effects {
        validate(plugin, d, effect)?;
    }
    let mut tx = shop.db.begin().await?;
    // The inbox row first: it is the idempotency fence, and a write that starts the
    // transaction (SQLite then holds the write lock from the start).
    let fresh = sqlx::query(
        "INSERT INTO trade_mq_consumer_log (group_name, msg_tag, msg_key, msg_id, msg_body,
             consumer_status, consumer_times, consumer_timestamp, remark, plugin_version, plugin_sha256)
         VALUES ($1, $2, $3, $3, $4, 1, $5, $6, $7, $8, $9)
         ON CONFLICT (group_name, msg_tag, msg_key) DO UPDATE
            SET consumer_status = 1, consumer_times = excluded.consumer_times,
                consumer_timestamp = excluded.consumer_timestamp, remark = excluded.remark,
                plugin_version = excluded.plugin_version, plugin_sha256 = excluded.plugin_sha256
          WHERE trade_mq_consumer_log.consumer_status <> 1",
    )
    .bind(&plugin.name)
    .bind(&d.subject)
    .bind(&d.id)
    .bind(&d.body)
    .bind(attempts)
    .bind(now_ms())
    .bind(format!("{} effect(s)", effects.len()))
    .bind(plugin.version())
    .bind(&plugin.sha256)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !fresh {
        return Ok(Applied::Before);
    }
    for effect in effects {
        apply_one(&mut tx, shop, plugin, d, effect).await?;
    }
    tx.commit().await?;
    Ok(Applied::Now)
}

/// Writes the give-back record if the forward step happened with exactly `amount` and was
/// not given back yet. `Ok(true)`: go ahead and give back.
async fn fence_giveback(tx: &mut Tx, order_id: i64, step: &str, amount: i64) -> Result<bool, ApplyError> {
    let forward: Option<i64> = sqlx::query_scalar(
        "SELECT amount FROM shop_order_step WHERE order_id = $1 AND step = $2 AND action = 'forward'",
    )
    .bind(order_id)
    .bind(step)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(forward) = forward else {
        return Ok(false); // empty rollback: the forward step never happened
    };
    ensure(forward == amount, || format!("{step} give-back of {amount} but the forward step recorded {forward}"))?;
    let inserted = sqlx::query(
        "INSERT INTO shop_order_step (order_id, step, action, amount, created_at)
         VALUES ($1, $2, 'giveback', $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(order_id)
    .bind(step)
    .bind(amount)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

async fn apply_one(tx: &mut Tx, shop: &Shop, plugin: &LoadedPlugin, d: &Delivery, effect: &Effect) -> Result<(), ApplyError> {
    let now = now_ms();
    match effect {
        Effect::RestoreStock(e) => {
            if fence_giveback(tx, e.order_id, "stock", e.quantity).await? {
                sqlx::query("UPDATE trade_goods SET goods_number = goods_number + $1 WHERE goods_id = $2")
                    .bind(e.quantity)
                    .bind(e.goods_id)
                    .execute(&mut **tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO trade_goods_number_log (goods_id, order_id, log_type, goods_number, log_time)
                     VALUES ($1, $2, 2, $3, $4)",
                )
                .bind(e.goods_id)
                .bind(e.order_id)
                .bind(e.quantity)
                .bind(now)
                .execute(&mut **tx)
                .await?;
            }
        }
        Effect::ReleaseCoupon(e) => {
            if fence_giveback(tx, e.order_id, "coupon", e.coupon_id).await? {
                sqlx::query(
                    "UPDATE trade_coupon SET is_used = 0, order_id = NULL, used_time = NULL
                      WHERE coupon_id = $1 AND order_id = $2",
                )
                .bind(e.coupon_id)
                .bind(e.order_id)
                .execute(&mut **tx)
                .await?;
            }
        }
        Effect::RefundBalance(e) => {
            if fence_giveback(tx, e.order_id, "balance", e.amount).await? {
                sqlx::query("UPDATE trade_user SET user_money = user_money + $1 WHERE user_id = $2")
                    .bind(e.amount)
                    .bind(e.user_id)
                    .execute(&mut **tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO trade_user_money_log (user_id, order_id, money_log_type, use_money, create_time)
                     VALUES ($1, $2, 2, $3, $4)",
                )
                .bind(e.user_id)
                .bind(e.order_id)
                .bind(e.amount)
                .bind(now)
                .execute(&mut **tx)
                .await?;
            }
        }
        Effect::AddPoints(e) => {
            // Once per event is guaranteed by the inbox row written above.
            sqlx::query("UPDATE trade_user SET user_score = user_score + $1 WHERE user_id = $2")
                .bind(e.points)
                .bind(e.user_id)
                .execute(&mut **tx)
                .await?;
        }
        Effect::AppendLog(e) => {
            let kind = match e.kind {
                super::runtime::LogKind::Paid => "paid",
                super::runtime::LogKind::Cancelled => "cancelled",
            };
            sqlx::query(
                "INSERT INTO shop_audit_log (id, order_id, user_id, kind, amount, note, event_id, plugin_version, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(shop.ids.next())
            .bind(e.order_id)
            .bind(e.user_id)
            .bind(kind)
            .bind(e.amount)
            .bind(&e.note)
            .bind(&d.id)
            .bind(plugin.version())
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

/// Records a failed attempt (outside the failed transaction) for operators and retries.
pub async fn record_failure(shop: &Shop, plugin: &str, d_subject: &str, event_id: &str, body: &str, attempts: i64, error: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO trade_mq_consumer_log (group_name, msg_tag, msg_key, msg_id, msg_body,
             consumer_status, consumer_times, consumer_timestamp, remark)
         VALUES ($1, $2, $3, $3, $4, 2, $5, $6, $7)
         ON CONFLICT (group_name, msg_tag, msg_key) DO UPDATE
            SET consumer_times = excluded.consumer_times, consumer_timestamp = excluded.consumer_timestamp,
                remark = excluded.remark
          WHERE trade_mq_consumer_log.consumer_status <> 1",
    )
    .bind(plugin)
    .bind(d_subject)
    .bind(event_id)
    .bind(body)
    .bind(attempts)
    .bind(now_ms())
    .bind(error)
    .execute(shop.db.pool())
    .await?;
    Ok(())
}
