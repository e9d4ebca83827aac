//! The shop: everything with a `trade_*` table, and the order and payment flows over them.
//! [`Shop`] is the service the API calls; each resource has one module that owns its table
//! and *both* directions of its change, so "who changes the stock row?" has one answer:
//!
//! | module | owns | changed by |
//! |---|---|---|
//! | [`stock`] | `trade_goods`, `trade_goods_number_log` | order step takes, restore-stock effect gives back |
//! | [`coupons`] | `trade_coupon` | order step uses, release-coupon effect releases |
//! | [`users`] | `trade_user` (the row) | admin creates |
//! | [`balance`] | `trade_user.user_money`, `trade_user_money_log` | order step deducts, refund-balance effect refunds |
//! | [`points`] | `trade_user.user_score` | add-points effect |
//! | [`audit_log`] | `shop_audit_log` | append-log effect |
//! | [`steps`] | `shop_order_step` | every take writes its forward record; every give-back is fenced by it |
//! | [`orders`] | `trade_order` | the order flow, its cancellation, the [`sweeper`] |
//! | [`payments`] | `trade_pay` | payment creation and the signed callback |
//!
//! Takes and give-backs share one piece per resource ([`steps::Taken::shift`]); the fence
//! (nothing taken, nothing given; never twice) is written once, in [`steps`].

pub mod audit_log;
pub mod balance;
pub mod coupons;
pub mod error;
pub mod fault;
pub mod orders;
pub mod payments;
pub mod points;
pub mod steps;
pub mod stock;
pub mod sweeper;
pub mod users;

use std::sync::Arc;

use sqlx::{any::AnyRow, Row};
use tokio::sync::Notify;

pub use self::error::{ShopError, StepFailure};
use crate::{
    events::rfc3339,
    ids::{Id, Snowflake},
    money::Money,
    store::Db,
};

pub struct Shop {
    pub db: Db,
    pub ids: Snowflake,
    pub fault: Option<fault::Fault>,
    /// Wakes the outbox relay after a transaction that wrote an outbox row commits.
    pub outbox_wake: Arc<Notify>,
}

/// Decoding from a row, by column name, on either database.
pub trait FromRow: Sized {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error>;
}

pub(crate) fn money(row: &AnyRow, col: &str) -> Result<Money, sqlx::Error> {
    row.try_get::<i64, _>(col).map(Money::from_cents)
}

pub(crate) fn id(row: &AnyRow, col: &str) -> Result<Id, sqlx::Error> {
    row.try_get::<i64, _>(col).map(Id)
}

pub(crate) fn opt_id(row: &AnyRow, col: &str) -> Result<Option<Id>, sqlx::Error> {
    row.try_get::<Option<i64>, _>(col).map(|v| v.map(Id))
}

pub(crate) fn time(row: &AnyRow, col: &str) -> Result<Option<String>, sqlx::Error> {
    row.try_get::<Option<i64>, _>(col).map(|v| v.map(rfc3339))
}

/// Refuses a negative amount in an admin-created row.
pub(crate) fn not_negative(m: Money, field: &str) -> Result<(), ShopError> {
    if m.is_negative() {
        return Err(ShopError::RequestParameterInvalid(format!("{field} must not be negative")));
    }
    Ok(())
}

impl Shop {
    /// The row `sql` selects by one id, decoded; `None` when there is none.
    pub(crate) async fn fetch<T: FromRow>(&self, sql: &'static str, id: Id) -> Result<Option<T>, ShopError> {
        let row = sqlx::query(sql).bind(id.0).fetch_optional(self.db.pool()).await?;
        Ok(row.as_ref().map(T::from_row).transpose()?)
    }
}
