//! Step records (`shop_order_step`): which forward steps of an order happened, and which were
//! given back. The order flow's take and a plugin's give-back of one resource are the same
//! movement in two directions ([`Taken::shift`]); what differs is the record around it,
//! written here once for every resource:
//!
//! - [`take`]: the conditional change, then the `forward` record (same transaction);
//! - [`give_back`]: the `giveback` record first, allowed only when the `forward` record
//!   exists with the same amount (else nothing happens: an "empty rollback"); its primary
//!   key makes a second give-back a no-op. Then the change.

use std::{collections::HashMap, fmt, future::Future};

use sqlx::Row;

use crate::{
    ids::now_ms,
    store::{placeholders, rows_per_statement, Conn},
};

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
pub trait Taken: Sized + Sync {
    const STEP: Step;
    /// Moves the resource once per `(order, resource, delta)` (negative takes, positive
    /// gives back), with its log rows, in as few statements as the moves allow. Answers, per
    /// move, whether it happened: a take that finds too little changes nothing.
    fn shift(tx: &mut Conn, moves: &[(i64, &Self, i64)]) -> impl Future<Output = Result<Vec<bool>, sqlx::Error>> + Send;
}

/// The shape of a counted resource's [`Taken::shift`]: per distinct `key`, `update`
/// ($1 = the summed delta, $2 = key) changes a counter only where it stays ≥ 0; the moves
/// of a key that changed get their rows in `log` ($1 = key, $2 = order, $3 = 1 for a take or
/// 2 for a give-back, $4 = `logged(delta)`, $5 = now), in one statement.
pub(crate) async fn counted_shift(
    tx: &mut Conn,
    (update, log): (&'static str, &'static str),
    moves: &[(i64, i64, i64)],
    logged: fn(i64) -> i64,
) -> Result<Vec<bool>, sqlx::Error> {
    let mut sums: Vec<(i64, i64)> = Vec::new(); // (key, summed delta), in first-seen order
    for (_, key, delta) in moves {
        match sums.iter_mut().find(|(k, _)| k == key) {
            Some((_, sum)) => *sum += delta,
            None => sums.push((*key, *delta)),
        }
    }
    let mut changed = Vec::with_capacity(sums.len());
    for (key, sum) in sums {
        if sqlx::query(update).bind(sum).bind(key).execute(&mut *tx).await?.rows_affected() == 1 {
            changed.push(key);
        }
    }
    let done: Vec<bool> = moves.iter().map(|(_, key, _)| changed.contains(key)).collect();
    let logged_moves: Vec<&(i64, i64, i64)> = moves.iter().zip(&done).filter(|(_, d)| **d).map(|(m, _)| m).collect();
    for rows in logged_moves.chunks(rows_per_statement(5)) {
        let values: Vec<String> = (0..rows.len()).map(|i| format!("({})", placeholders(i * 5 + 1, 5))).collect();
        let (head, _) = log.split_once("VALUES").expect("a log statement has VALUES");
        let sql = format!("{head}VALUES {}", values.join(", "));
        let now = now_ms();
        let query = rows.iter().fold(sqlx::query(&sql), |q, (order, key, delta)| {
            q.bind(*key).bind(*order).bind(if *delta < 0 { 1i64 } else { 2 }).bind(logged(*delta)).bind(now)
        });
        query.execute(&mut *tx).await?;
    }
    Ok(done)
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
pub async fn take<R: Taken>(tx: &mut Conn, order_id: i64, resource: &R, amount: i64) -> Result<bool, sqlx::Error> {
    let taken = R::shift(tx, &[(order_id, resource, -amount)]).await?[0];
    if taken {
        let record = format!("INSERT INTO shop_order_step (order_id, step, action, amount, created_at) VALUES ({})", placeholders(1, 5));
        let query = sqlx::query(&record).bind(order_id).bind(R::STEP.as_str()).bind("forward").bind(amount).bind(now_ms());
        query.execute(&mut *tx).await?;
    }
    Ok(taken)
}

/// Gives back, for each `(order, resource, amount)`, what the order's step took, fenced by
/// its records (see the module docs): one query for the forward records, one insert for the
/// give-back records, one [`Taken::shift`]. Nothing is changed when any give-back does not
/// match its forward record (the answer says which).
pub async fn give_back<R: Taken>(tx: &mut Conn, items: &[(i64, R, i64)]) -> Result<Vec<GiveBack>, sqlx::Error> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let orders: Vec<i64> = items.iter().map(|(order, _, _)| *order).collect();
    let mut forward: HashMap<i64, i64> = HashMap::new();
    for orders in orders.chunks(rows_per_statement(1)) {
        let sql = format!(
            "SELECT order_id, amount FROM shop_order_step WHERE step = $1 AND action = 'forward' AND order_id IN ({})",
            placeholders(2, orders.len())
        );
        let query = orders.iter().fold(sqlx::query_as::<_, (i64, i64)>(&sql).bind(R::STEP.as_str()), |q, o| q.bind(*o));
        forward.extend(query.fetch_all(&mut *tx).await?);
    }
    let mut results: Vec<GiveBack> = items
        .iter()
        .map(|(order, _, amount)| match forward.get(order) {
            None => GiveBack::NothingTaken,
            Some(recorded) if recorded != amount => GiveBack::Mismatch { recorded: *recorded },
            Some(_) => GiveBack::Done,
        })
        .collect();
    if results.iter().any(|r| matches!(r, GiveBack::Mismatch { .. })) {
        return Ok(results);
    }
    // An order's step is given back once, however often it is asked for.
    let mut seen = Vec::new();
    for (item, result) in items.iter().zip(results.iter_mut()) {
        if *result == GiveBack::Done {
            if seen.contains(&item.0) {
                *result = GiveBack::AlreadyGiven;
            } else {
                seen.push(item.0);
            }
        }
    }
    let due: Vec<&(i64, R, i64)> = items.iter().zip(&results).filter(|(_, r)| **r == GiveBack::Done).map(|(i, _)| i).collect();
    if due.is_empty() {
        return Ok(results);
    }
    // The primary key lets each give-back record in once: those already there are not new.
    let mut recorded: Vec<i64> = Vec::with_capacity(due.len());
    for due in due.chunks(rows_per_statement(3)) {
        let values: Vec<String> = (0..due.len()).map(|i| format!("({}, 'giveback', $1)", placeholders(i * 3 + 2, 3))).collect();
        let sql = format!(
            "INSERT INTO shop_order_step (order_id, step, amount, action, created_at) VALUES {} ON CONFLICT DO NOTHING RETURNING order_id",
            values.join(", ")
        );
        let query = due.iter().fold(sqlx::query_scalar::<_, i64>(&sql).bind(now_ms()), |q, (order, _, amount)| {
            q.bind(*order).bind(R::STEP.as_str()).bind(*amount)
        });
        recorded.extend(query.fetch_all(&mut *tx).await?);
    }
    let moves: Vec<(i64, &R, i64)> =
        due.iter().filter(|(order, _, _)| recorded.contains(order)).map(|(order, r, amount)| (*order, r, *amount)).collect();
    for (item, result) in items.iter().zip(results.iter_mut()) {
        if *result == GiveBack::Done && !recorded.contains(&item.0) {
            *result = GiveBack::AlreadyGiven;
        }
    }
    R::shift(tx, &moves).await?;
    Ok(results)
}

/// One step record as read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub order_id: i64,
    pub step: Step,
    pub forward: bool,
    pub amount: i64,
    /// When it was written (unix ms).
    pub at: i64,
}

/// Every record of the given orders.
pub async fn of_orders(pool: &sqlx::AnyPool, order_ids: &[i64]) -> Result<Vec<Record>, sqlx::Error> {
    let mut records = Vec::new();
    for ids in order_ids.chunks(rows_per_statement(1)) {
        let sql = format!("SELECT order_id, step, action, amount, created_at FROM shop_order_step WHERE order_id IN ({}) ORDER BY created_at", placeholders(1, ids.len()));
        let rows = ids.iter().fold(sqlx::query(&sql), |q, id| q.bind(*id)).fetch_all(pool).await?;
        for r in &rows {
            let step: String = r.try_get(1)?;
            records.push(Record {
                order_id: r.try_get(0)?,
                step: Step::parse(&step).ok_or_else(|| sqlx::Error::Decode(format!("unknown step {step:?}").into()))?,
                forward: r.try_get::<String, _>(2)? == "forward",
                amount: r.try_get(3)?,
                at: r.try_get(4)?,
            });
        }
    }
    Ok(records)
}
