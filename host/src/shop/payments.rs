//! Payments: create one for a confirmed, unpaid order; the payment platform's callback
//! marks it paid. The callback commits payment paid + order paid + a pay-success outbox row
//! in one transaction and returns; points and the payment log happen from the event.

use poem_openapi::{Enum, Object};
use sqlx::Row;

use super::{orders::{self, Order, Placed, STATUS_CONFIRMED}, Shop, ShopError};
use std::sync::Arc;

use tokio::sync::Notify;

use crate::{
    events::PaySucceeded,
    ids::{now_ms, Id, Snowflake},
    money::Money,
    outbox,
    group_commit::Commit,
    store::Conn,
    timestamp::Timestamp,
};

#[derive(Debug, Clone, Object, sqlx::FromRow)]
#[oai(skip_serializing_if_is_none)]
pub struct Payment {
    pub pay_id: Id,
    pub order_id: Id,
    pub pay_amount: Money,
    /// 1 not paid, 2 paid.
    pub is_paid: i64,
    pub create_time: Option<Timestamp>,
    pub paid_time: Option<Timestamp>,
}


#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct CreatePayment {
    pub order_id: Id,
    /// Must equal the order's pay_amount.
    pub pay_amount: Money,
}

/// What the payment platform reports.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct PaymentNotice {
    pub pay_id: Id,
    /// The amount the platform collected; must equal the payment's.
    pub pay_amount: Money,
    /// 2 = paid; 1 = not paid (acknowledged, nothing changes).
    #[oai(validator(minimum(value = "1"), maximum(value = "2")))]
    pub is_paid: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum CallbackOutcome {
    /// The payment and its order are now paid; a pay-success event is on its way.
    Paid,
    /// The payment was already paid: acknowledged, nothing new emitted.
    AlreadyPaid,
    /// The platform reported no payment: acknowledged, nothing changed.
    NotPaid,
}

entity!(Payment, "trade_pay", pay_id, PaymentNotFound);

impl Shop {
    /// Creates the order's payment, or returns the unpaid one it already has.
    pub async fn create_payment(&self, req: CreatePayment) -> Result<Placed<Payment>, ShopError> {
        self.create_payment_as(Id(self.ids.next()), req).await
    }

    /// [`create_payment`](Self::create_payment), a new payment taking the id `pay_id`.
    pub(crate) async fn create_payment_as(&self, pay_id: Id, req: CreatePayment) -> Result<Placed<Payment>, ShopError> {
        let order: Order = self.get(req.order_id).await?;
        if order.pay_status == 2 {
            return Err(ShopError::OrderPayStatusIsPay(order.order_id));
        }
        if order.order_status != STATUS_CONFIRMED {
            return Err(ShopError::OrderNotConfirmed(order.order_id));
        }
        if req.pay_amount != order.pay_amount {
            return Err(ShopError::PaymentAmountInvalid {
                expected: order.pay_amount.to_string(),
                given: req.pay_amount.to_string(),
            });
        }
        // One payment per order (UNIQUE order_id): a repeated create returns the same one.
        let sql = "INSERT INTO trade_pay (pay_id, order_id, pay_amount, is_paid, create_time)
                   VALUES ($1, $2, $3, 1, $4) ON CONFLICT (order_id) DO NOTHING";
        let query = sqlx::query(sql).bind(pay_id).bind(order.order_id).bind(order.pay_amount);
        self.db.execute(query.bind(now_ms())).await?;
        let payment: Payment = sqlx::query_as("SELECT * FROM trade_pay WHERE order_id = $1")
            .bind(order.order_id)
            .fetch_one(self.db.pool())
            .await?;
        if payment.is_paid == 2 {
            return Err(ShopError::OrderPayStatusIsPay(order.order_id));
        }
        Ok(if payment.pay_id == pay_id { Placed::New(payment) } else { Placed::Before(payment) })
    }

    /// Applies a payment notice whose signature the API has already verified.
    pub async fn payment_callback(&self, notice: PaymentNotice) -> Result<CallbackOutcome, ShopError> {
        if notice.is_paid == 2 {
            // The usual case takes no read: committed with whatever other callbacks arrive
            // meanwhile (one fsync for all), the job's conditional update checks the
            // payment's amount and state itself.
            if let Some(outcome) = self.paid.submit(notice.clone()).await? {
                return Ok(outcome);
            }
        }
        // Nothing changed, or not paid: read the payment to say why.
        let payment: Payment = self.get(notice.pay_id).await?;
        if notice.pay_amount != payment.pay_amount {
            return Err(ShopError::PaymentAmountInvalid {
                expected: payment.pay_amount.to_string(),
                given: notice.pay_amount.to_string(),
            });
        }
        if notice.is_paid != 2 {
            return Ok(CallbackOutcome::NotPaid);
        }
        Ok(CallbackOutcome::AlreadyPaid)
    }
}

/// Marking a payment paid, as one job of the callbacks' group commit: payment and order
/// paid and the pay-success event written, all or nothing; `None` when the notice changes
/// nothing (no such unpaid payment of that amount).
pub(crate) struct MarkPaid {
    pub ids: Arc<Snowflake>,
    pub outbox_wake: Arc<Notify>,
}

impl Commit for MarkPaid {
    type Job = PaymentNotice;
    type Done = Option<CallbackOutcome>;
    type Error = ShopError;

    async fn run(&self, tx: &mut Conn, notice: &PaymentNotice) -> Result<Option<CallbackOutcome>, ShopError> {
        let now = now_ms();
        // The conditional update is the idempotency check: of two concurrent callbacks,
        // one changes the row and emits, the other finds it paid.
        let changed = sqlx::query(
            "UPDATE trade_pay SET is_paid = 2, paid_time = $1 WHERE pay_id = $2 AND is_paid = 1 AND pay_amount = $3
            RETURNING order_id",
        )
        .bind(now)
        .bind(notice.pay_id)
        .bind(notice.pay_amount)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(changed) = changed else {
            return Ok(None);
        };
        let order_id: Id = changed.try_get("order_id")?;
        let Some(user_id) = orders::mark_paid(tx, order_id, now).await? else {
            // The job rolls the payment back: an order that is not confirmed and unpaid
            // cannot be paid.
            return Err(ShopError::OrderNotConfirmed(order_id));
        };
        let event = PaySucceeded {
            pay_id: notice.pay_id,
            order_id,
            user_id,
            pay_amount: notice.pay_amount,
        };
        outbox::enqueue(tx, &self.ids, event).await?;
        Ok(Some(CallbackOutcome::Paid))
    }

    fn committed(&self) {
        self.outbox_wake.notify_one();
    }
}
