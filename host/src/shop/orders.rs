//! The order flow (the original's confirmOrder), fenced so that it never oversells, never
//! loses a compensation, and never gives back what it did not take:
//!
//! 1. validate (reads only; a rejected order leaves no trace);
//! 2. save the pre-order (status 0);
//! 3. take stock, 4. use the coupon, 5. deduct the balance, 6. confirm.
//!
//! Each forward step is its own unit of work, committed before the next begins (as when
//! they were separate services; on SQLite concurrent orders share the commit, see
//! [`OrderWrites`]). It first locks the order row and requires it still be a pre-order,
//! then makes one conditional change (`… WHERE goods_number >= $n`) and writes its step
//! record. If any step fails, the order is cancelled and an order-cancel event written to
//! the outbox in one transaction; if the process dies instead, the [`super::sweeper`] does
//! the same later. Because cancelling also needs the order row in status 0, a step and a
//! cancel never interleave: a step that comes after the cancel is refused ("suspension").

use std::sync::Arc;

use poem_openapi::Object;
use sqlx::Row;

// What the user submits is checkout's to judge; it is named here too, with the order.
pub use super::checkout::PlaceOrder;
use super::{
    balance::Balance,
    coupons::CouponUse,
    fault::FaultPoint,
    checkout::Plan,
    requests::{self, RequestKey},
    steps::{self, Step},
    stock::Stock,
    Shop, ShopError, StepFailure,
};
use crate::{
    timestamp::Timestamp,
    events::{OrderCancelled, OrderConfirmed},
    ids::{now_ms, Id, Snowflake},
    money::Money,
    outbox,
    group_commit::Commit,
    store::Conn,
};

#[derive(Debug, Clone, Object, sqlx::FromRow)]
#[oai(skip_serializing_if_is_none)]
pub struct Order {
    pub order_id: Id,
    pub user_id: Id,
    /// 0 unconfirmed, 1 confirmed, 2 cancelled, 3 invalid, 4 refunded.
    pub order_status: i64,
    /// 0 unpaid, 1 paying, 2 paid.
    pub pay_status: i64,
    pub shipping_status: i64,
    pub address: String,
    pub consignee: String,
    pub goods_id: Id,
    pub goods_number: i64,
    pub goods_price: Money,
    pub goods_amount: Money,
    pub shipping_fee: Money,
    pub order_amount: Money,
    pub coupon_id: Option<Id>,
    pub coupon_paid: Money,
    pub money_paid: Money,
    pub pay_amount: Money,
    pub add_time: Option<Timestamp>,
    pub confirm_time: Option<Timestamp>,
    pub pay_time: Option<Timestamp>,
    pub cancel_time: Option<Timestamp>,
    pub cancel_reason: Option<String>,
}


pub const STATUS_PREORDER: i64 = 0;
pub const STATUS_CONFIRMED: i64 = 1;
pub const STATUS_CANCELLED: i64 = 2;

entity!(Order, "trade_order", order_id, OrderNotFound);

/// What a request that may have been sent before got: an order (by its key), a payment.
pub enum Placed<T = Order> {
    /// Made by this request.
    New(T),
    /// Made by an earlier request, as it stands now (an order: confirmed, paid, or
    /// cancelled when a step of that request failed).
    Before(T),
}

impl<T> Placed<T> {
    /// What was made, by whichever request.
    pub fn into_inner(self) -> T {
        match self {
            Placed::New(t) | Placed::Before(t) => t,
        }
    }
}

impl Shop {
    /// Places an order once per user and request `key` ([`super::requests`]): a request
    /// sent again gets the order the first one placed.
    pub async fn place_order_once(&self, req: PlaceOrder, key: &str) -> Result<Placed, ShopError> {
        let (user_id, key) = (req.user_id, RequestKey::of(key, &req));
        if let Some(order) = self.placed_before(user_id, &key).await? {
            return Ok(Placed::Before(order));
        }
        match self.place_order_as(Id(self.ids.next()), req, Some(key.clone())).await {
            // The same key raced in and saved its pre-order first: that is the order.
            Err(ShopError::Storage(sqlx::Error::Database(e))) if e.is_unique_violation() => {
                self.placed_before(user_id, &key).await?.map(Placed::Before).ok_or(ShopError::Storage(sqlx::Error::Database(e)))
            }
            placed => placed.map(Placed::New),
        }
    }

    async fn placed_before(&self, user_id: Id, key: &RequestKey) -> Result<Option<Order>, ShopError> {
        match requests::find(&self.db, user_id, key).await? {
            None => Ok(None),
            Some((_, digest)) if digest != key.digest => Err(ShopError::RequestKeyReused(key.key.clone())),
            Some((order_id, _)) => Ok(Some(self.settled(Id(order_id)).await?)),
        }
    }

    /// The order as its first request leaves it: a repeat that raced in while that request
    /// still takes the steps waits for it (the steps take milliseconds), rather than answer
    /// a pre-order the shop never shows. One whose request died mid-flow stays a pre-order
    /// until the sweeper cancels it: once it was placed `SETTLE` ago, it is answered as it
    /// stands (at once, for a repeat that comes later).
    async fn settled(&self, order_id: Id) -> Result<Order, ShopError> {
        const SETTLE: i64 = 5_000;
        let (since, mut pause) = (now_ms(), 5);
        loop {
            let order: Order = self.get(order_id).await?;
            // Either: the placing host's clock may be ahead of this one's (and one far behind
            // answers at once, as for an order placed long ago).
            let placed = order.add_time.map_or(0, |t| t.0);
            if order.order_status != STATUS_PREORDER || now_ms() - placed >= SETTLE || now_ms() - since >= SETTLE {
                return Ok(order);
            }
            tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
            pause = (pause * 2).min(200);
        }
    }

    /// Places and confirms an order; see the module documentation for the steps.
    pub async fn place_order(&self, req: PlaceOrder) -> Result<Order, ShopError> {
        self.place_order_as(Id(self.ids.next()), req, None).await
    }

    /// [`place_order`](Self::place_order) under a given id (the demo order has a fixed one).
    /// With a request `key`, it is saved with the pre-order ([`super::requests`]).
    pub(crate) async fn place_order_as(&self, order_id: Id, req: PlaceOrder, key: Option<RequestKey>) -> Result<Order, ShopError> {
        let plan = self.check_out(&req).await?;
        let placing = Arc::new(Placing { order_id, req, plan, key });
        self.orders.submit(OrderWrite { placing: placing.clone(), step: None }).await.map_err(|e| match e {
            WriteError::Db(e) => ShopError::Storage(e),
            WriteError::Conflict => ShopError::Storage(sqlx::Error::Protocol("the pre-order was not saved".into())),
        })?;
        let (req, plan) = (&placing.req, &placing.plan);
        let mut steps = vec![Step::Stock];
        if req.coupon_id.is_some() {
            steps.push(Step::Coupon);
        }
        if plan.money_paid > Money::ZERO {
            steps.push(Step::Balance);
        }
        steps.push(Step::Confirm);
        for step in steps {
            if let Err(reason) = self.forward(&placing, step).await {
                let why = format!("{step} step failed: {reason}");
                match self.cancel_preorder(order_id, &why).await {
                    Ok(true) => {}
                    // No pre-order any more. Confirmed: the confirm did commit and only its
                    // answer was lost, so the order stands and is answered as placed (a client
                    // told "cancelled" would place it again and pay twice).
                    Ok(false) => match self.get::<Order>(order_id).await {
                        Ok(order) if order.order_status == STATUS_CONFIRMED => return Ok(order),
                        _ => {}
                    },
                    // The sweeper will cancel it once the database answers again.
                    Err(e) => tracing::error!(%order_id, error = %e, "cancelling the order failed"),
                }
                return Err(ShopError::StepFailed { order_id, step, reason });
            }
        }
        self.get(order_id).await
    }

    /// Runs one forward step, committed with whatever other orders' writes arrive meanwhile.
    async fn forward(&self, placing: &Arc<Placing>, step: Step) -> Result<(), StepFailure> {
        if self.fault.fails(step) {
            return Err(StepFailure::Unavailable);
        }
        match self.orders.submit(OrderWrite { placing: placing.clone(), step: Some(step) }).await {
            Ok(()) => {
                let lost = self.fault.after_commit(step);
                if step == Step::Confirm {
                    self.outbox_wake.notify_one();
                }
                if lost { Err(StepFailure::Unavailable) } else { Ok(()) }
            }
            Err(WriteError::Conflict) => Err(StepFailure::Conflict),
            Err(WriteError::Db(e)) => {
                tracing::warn!(order_id = %placing.order_id, %step, error = %e, "order step failed");
                Err(StepFailure::Unavailable)
            }
        }
    }

    /// Pre-orders added before `cutoff_ms` and still unconfirmed, oldest first.
    pub async fn abandoned_preorders(&self, cutoff_ms: i64, limit: i64) -> Result<Vec<Id>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT order_id FROM trade_order WHERE order_status = 0 AND add_time < $1 ORDER BY add_time LIMIT $2",
        )
        .bind(cutoff_ms)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(|r| r.try_get("order_id")).collect()
    }

    /// Cancels a pre-order and writes its order-cancel event, in one transaction.
    /// Returns `false` when the order is no longer a pre-order (confirmed, or already
    /// cancelled by someone else): then nothing is written, so there is one event at most.
    pub async fn cancel_preorder(&self, order_id: Id, reason: &str) -> Result<bool, sqlx::Error> {
        let mut tx = self.db.begin().await?;
        let row = sqlx::query(
            "UPDATE trade_order SET order_status = 2, cancel_time = $1, cancel_reason = $2
              WHERE order_id = $3 AND order_status = 0
            RETURNING user_id, goods_id, goods_number, coupon_id, money_paid",
        )
        .bind(now_ms())
        .bind(reason)
        .bind(order_id.0)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(false);
        };
        let event = OrderCancelled {
            order_id,
            user_id: row.try_get("user_id")?,
            goods_id: row.try_get("goods_id")?,
            goods_number: row.try_get("goods_number")?,
            coupon_id: row.try_get("coupon_id")?,
            money_paid: row.try_get("money_paid")?,
            reason: reason.to_owned(),
        };
        outbox::enqueue(&mut tx, &self.ids, event).await?;
        tx.commit().await?;
        self.outbox_wake.notify_one();
        tracing::info!(%order_id, reason, "order cancelled");
        Ok(true)
    }
}

/// An order being placed: its id, what the user asked for and what checkout settled.
pub(crate) struct Placing {
    order_id: Id,
    req: PlaceOrder,
    plan: Plan,
    key: Option<RequestKey>,
}

/// One write of the order flow: saving the pre-order (`step: None`) or a forward step.
pub(crate) struct OrderWrite {
    placing: Arc<Placing>,
    step: Option<Step>,
}

/// Why an order write did not commit.
pub(crate) enum WriteError {
    /// The step's condition no longer held (or the pre-order was gone): nothing written.
    Conflict,
    Db(sqlx::Error),
}

impl From<sqlx::Error> for WriteError {
    fn from(e: sqlx::Error) -> Self {
        WriteError::Db(e)
    }
}

/// The order flow's writes as jobs of a group commit. Each step stays its own unit, all or
/// nothing, and the caller goes on only once it is durable, exactly as with a transaction
/// per step; what concurrent orders share on SQLite is the commit, so its one writer
/// fsyncs once for many of them. On Postgres each step keeps a transaction of its own.
pub(crate) struct OrderWrites {
    pub ids: Arc<Snowflake>,
}

impl Commit for OrderWrites {
    type Job = OrderWrite;
    type Done = ();
    type Error = WriteError;
    /// The steps lock goods, coupon and user rows, which the plugins' give-backs lock too,
    /// several at a time: in one transaction with other orders' steps they could deadlock
    /// with a give-back. On SQLite (one writer, no row locks) they cannot.
    const GROUPED_ON_POSTGRES: bool = false;

    async fn run(&self, tx: &mut Conn, job: &OrderWrite) -> Result<(), WriteError> {
        let Placing { order_id, req, plan, key } = &*job.placing;
        let Some(step) = job.step else {
            save_preorder(tx, *order_id, req, plan).await?;
            if let Some(key) = key {
                requests::record(tx, req.user_id, key, *order_id).await?;
            }
            return Ok(());
        };
        // Lock the order row (Postgres: row lock; SQLite: the write lock) and require a
        // pre-order, so a concurrent cancel is either wholly before or wholly after us.
        let locked = sqlx::query("UPDATE trade_order SET order_status = order_status WHERE order_id = $1 AND order_status = 0")
            .bind(order_id.0)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if locked && self.apply_step(tx, *order_id, step, req, plan).await? {
            Ok(())
        } else {
            Err(WriteError::Conflict) // the group commit rolls back this job's lock
        }
    }
}

/// Marks a confirmed, unpaid order paid, in the payment callback's transaction (see
/// [`super::payments`]); the user who placed it, or `None` when the order is not confirmed
/// and unpaid, so cannot be paid.
pub(super) async fn mark_paid(tx: &mut Conn, order_id: Id, at: i64) -> Result<Option<Id>, sqlx::Error> {
    let order = sqlx::query(
        "UPDATE trade_order SET pay_status = 2, pay_time = $1
          WHERE order_id = $2 AND order_status = 1 AND pay_status <> 2
        RETURNING user_id",
    )
    .bind(at)
    .bind(order_id)
    .fetch_optional(&mut *tx)
    .await?;
    order.map(|r| r.try_get("user_id")).transpose()
}

async fn save_preorder(tx: &mut Conn, order_id: Id, req: &PlaceOrder, plan: &Plan) -> Result<(), WriteError> {
    let sql = "INSERT INTO trade_order (order_id, user_id, order_status, pay_status, shipping_status,
            address, consignee, goods_id, goods_number, goods_price, goods_amount, shipping_fee,
            order_amount, coupon_id, coupon_paid, money_paid, pay_amount, add_time)
         VALUES ($1, $2, 0, 0, 0, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)";
    let who = sqlx::query(sql).bind(order_id).bind(req.user_id).bind(&req.address).bind(&req.consignee);
    let what = who.bind(req.goods_id).bind(req.goods_number).bind(req.goods_price).bind(plan.goods_amount);
    let amounts = what.bind(plan.shipping_fee).bind(plan.order_amount).bind(req.coupon_id).bind(plan.coupon_paid);
    amounts.bind(plan.money_paid).bind(plan.pay_amount).bind(now_ms()).execute(&mut *tx).await?;
    Ok(())
}

impl OrderWrites {
    /// The step's conditional change plus its record; `false` when the condition failed.
    async fn apply_step(&self, tx: &mut Conn, order_id: Id, step: Step, req: &PlaceOrder, plan: &Plan) -> Result<bool, sqlx::Error> {
        let (user_id, order_id) = (req.user_id.0, order_id.0);
        match step {
            Step::Stock => steps::take(tx, order_id, &Stock { goods_id: req.goods_id.0 }, req.goods_number).await,
            Step::Coupon => {
                let coupon_id = req.coupon_id.expect("coupon step only with a coupon").0;
                steps::take(tx, order_id, &CouponUse { coupon_id, user_id }, coupon_id).await
            }
            Step::Balance => steps::take(tx, order_id, &Balance { user_id }, plan.money_paid.cents()).await,
            Step::Confirm => self.confirm(tx, Id(order_id), req, plan).await,
        }
    }

    /// Confirms the pre-order and writes its order-confirmed event.
    async fn confirm(&self, tx: &mut Conn, order_id: Id, req: &PlaceOrder, plan: &Plan) -> Result<bool, sqlx::Error> {
        let n = sqlx::query(
            "UPDATE trade_order SET order_status = 1, confirm_time = $1
              WHERE order_id = $2 AND order_status = 0",
        )
        .bind(now_ms())
        .bind(order_id.0)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 1 {
            let event = OrderConfirmed {
                order_id,
                user_id: req.user_id,
                goods_id: req.goods_id,
                goods_number: req.goods_number,
                goods_price: req.goods_price,
                order_amount: plan.order_amount,
                coupon_id: req.coupon_id,
                coupon_paid: plan.coupon_paid,
                money_paid: plan.money_paid,
                pay_amount: plan.pay_amount,
            };
            outbox::enqueue(tx, &self.ids, event).await?;
        }
        Ok(n == 1)
    }
}
