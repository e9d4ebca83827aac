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

/// `entity!(Type, "table", "id_column", NotFoundVariant)`: `Type` is an [`Entity`] read by
/// its id from `table`. (Defined before the modules below, which use it.)
macro_rules! entity {
    ($ty:ty, $table:literal, $id:literal, $missing:ident) => {
        impl $crate::shop::Entity for $ty {
            const BY_ID: &'static str = concat!("SELECT * FROM ", $table, " WHERE ", $id, " = $1");
            fn not_found(id: $crate::ids::Id) -> $crate::shop::ShopError {
                $crate::shop::ShopError::$missing(id)
            }
        }
    };
}

pub mod audit_log;
pub mod balance;
pub mod checkout;
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

use sqlx::any::AnyRow;
use tokio::sync::Notify;

pub use self::error::{ShopError, StepFailure};
use crate::{
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

/// Refuses a negative amount in an admin-created row.
pub(crate) fn not_negative(m: Money, field: &str) -> Result<(), ShopError> {
    if m.is_negative() {
        return Err(ShopError::RequestParameterInvalid(format!("{field} must not be negative")));
    }
    Ok(())
}

/// A row the shop reads by its id: goods, users, coupons, orders, payments.
pub trait Entity: for<'r> sqlx::FromRow<'r, AnyRow> + Send + Unpin {
    /// Selects the row by `$1` = its id.
    const BY_ID: &'static str;
    fn not_found(id: Id) -> ShopError;
}

impl Shop {
    /// The `T` with this id.
    pub async fn get<T: Entity>(&self, id: Id) -> Result<T, ShopError> {
        let row: Option<T> = sqlx::query_as(T::BY_ID).bind(id).fetch_optional(self.db.pool()).await?;
        row.ok_or_else(|| T::not_found(id))
    }
}
