//! Step records (`shop_order_step`): which forward steps of an order happened, and which were
//! given back. The order flow's take and a plugin's give-back of one resource are the same
//! movement in two directions ([`Taken::shift`]); what differs is the record around it,
//! written here once for every resource:
//!
//! - [`take`]: the conditional change, then the `forward` record (same transaction);
//! - [`give_back`]: the `giveback` record first, allowed only when the `forward` record
//!   exists with the same amount (else nothing happens: an "empty rollback"); its primary
//!   key makes a second give-back a no-op. Then the change.

use std::{fmt, future::Future};

use sqlx::Row;

use crate::{ids::now_ms, store::Conn};

/// A forward step of the order flow after the pre-order is saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    Stock,
    Coupon,
    Balance,
    /// Confirmation is a status change, not something to give back: it has no record.
    Confirm,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Stock => "stock",
            Step::Coupon => "coupon",
            Step::Balance => "balance",
            Step::Confirm => "confirm",
        }
    }

    pub fn parse(s: &str) -> Option<Step> {
        [Step::Stock, Step::Coupon, Step::Balance, Step::Confirm].into_iter().find(|step| step.as_str() == s)
    }

    /// The original's code for this step's failure.
    pub fn failure_code(self) -> &'static str {
        match self {
            Step::Stock => "SHOP_REDUCE_GOODS_NUM_FAIL",
            Step::Coupon => "SHOP_COUPON_USE_FAIL",
            Step::Balance => "SHOP_USER_MONEY_REDUCE_FAIL",
            Step::Confirm => "SHOP_ORDER_CONFIRM_FAIL",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A resource an order step takes and a cancellation gives back.
pub trait Taken {
    const STEP: Step;
    /// Moves the resource for `order_id` by `delta` (negative takes, positive gives back),
    /// with its log row. A take that finds too little changes nothing and answers `false`.
    fn shift(&self, tx: &mut Conn, order_id: i64, delta: i64) -> impl Future<Output = Result<bool, sqlx::Error>> + Send;
}

/// The shape of a counted resource's [`Taken::shift`]: `update` ($1 = delta, $2 = `key`)
/// changes a counter only where it stays ≥ 0; when it did, `log` ($1 = `key`, $2 = order,
/// $3 = 1 for a take or 2 for a give-back, $4 = `logged`, $5 = now) records the movement.
pub(crate) async fn counted_shift(
    tx: &mut Conn,
    (update, log): (&'static str, &'static str),
    key: i64,
    order_id: i64,
    delta: i64,
    logged: i64,
) -> Result<bool, sqlx::Error> {
    let changed = sqlx::query(update).bind(delta).bind(key).execute(&mut *tx).await?.rows_affected() == 1;
    if changed {
        sqlx::query(log)
            .bind(key)
            .bind(order_id)
            .bind(if delta < 0 { 1i64 } else { 2 })
            .bind(logged)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
    }
    Ok(changed)
}

/// What a give-back did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveBack {
    Done,
    /// The forward step never happened: nothing to give back.
    NothingTaken,
    /// Given back before: nothing happens twice.
    AlreadyGiven,
    /// The forward step took another amount; nothing was changed.
    Mismatch { recorded: i64 },
}

/// Takes `amount` of `resource` for an order's step: the conditional change and its
/// forward record, or nothing (`false`) when the condition does not hold.
pub async fn take(tx: &mut Conn, order_id: i64, resource: &impl Taken, amount: i64) -> Result<bool, sqlx::Error> {
    let taken = resource.shift(tx, order_id, -amount).await?;
    if taken {
        insert(tx, order_id, resource_step(resource), "forward", amount, false).await?;
    }
    Ok(taken)
}

/// Gives back what an order's step took, fenced by its records (see the module docs).
pub async fn give_back(tx: &mut Conn, order_id: i64, resource: &impl Taken, amount: i64) -> Result<GiveBack, sqlx::Error> {
    let step = resource_step(resource);
    let forward: Option<i64> = sqlx::query_scalar(
        "SELECT amount FROM shop_order_step WHERE order_id = $1 AND step = $2 AND action = 'forward'",
    )
    .bind(order_id)
    .bind(step.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    match forward {
        None => return Ok(GiveBack::NothingTaken),
        Some(recorded) if recorded != amount => return Ok(GiveBack::Mismatch { recorded }),
        Some(_) => {}
    }
    if !insert(tx, order_id, step, "giveback", amount, true).await? {
        return Ok(GiveBack::AlreadyGiven);
    }
    resource.shift(tx, order_id, amount).await?;
    Ok(GiveBack::Done)
}

fn resource_step<R: Taken>(_: &R) -> Step {
    R::STEP
}

/// Writes a record; `once`: a record already there is left alone (`false`).
async fn insert(tx: &mut Conn, order_id: i64, step: Step, action: &str, amount: i64, once: bool) -> Result<bool, sqlx::Error> {
    let sql = if once {
        "INSERT INTO shop_order_step (order_id, step, action, amount, created_at)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING"
    } else {
        "INSERT INTO shop_order_step (order_id, step, action, amount, created_at) VALUES ($1, $2, $3, $4, $5)"
    };
    let inserted = sqlx::query(sql)
        .bind(order_id)
        .bind(step.as_str())
        .bind(action)
        .bind(amount)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?
        .rows_affected();
    Ok(inserted == 1)
}

/// One step record as read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub order_id: i64,
    pub step: Step,
    pub forward: bool,
    pub amount: i64,
}

/// Every record of the given orders.
pub async fn of_orders(pool: &sqlx::AnyPool, order_ids: &[i64]) -> Result<Vec<Record>, sqlx::Error> {
    if order_ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT order_id, step, action, amount FROM shop_order_step WHERE order_id IN ({})",
        crate::store::placeholders(1, order_ids.len())
    );
    let mut query = sqlx::query(&sql);
    for id in order_ids {
        query = query.bind(*id);
    }
    let rows = query.fetch_all(pool).await?;
    rows.iter()
        .map(|r| {
            let step: String = r.try_get(1)?;
            Ok(Record {
                order_id: r.try_get(0)?,
                step: Step::parse(&step).ok_or_else(|| sqlx::Error::Decode(format!("unknown step {step:?}").into()))?,
                forward: r.try_get::<String, _>(2)? == "forward",
                amount: r.try_get(3)?,
            })
        })
        .collect()
}
