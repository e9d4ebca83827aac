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
//! | [`orders`] | `trade_order` | the order flow, its cancellation, the [`sweeper`], the callback's mark paid |
//! | [`requests`] | `shop_order_request` | the order flow, with the pre-order of a request sent with an `Idempotency-Key` |
//! | [`payments`] | `trade_pay` | payment creation and the signed callback |
//!
//! Takes and give-backs share one piece per resource ([`steps::Taken::shift`]); the fence
//! (nothing taken, nothing given; never twice) is written once, in [`steps`].

/// `entity!(Type, "table", id_column, NotFoundVariant)`: `Type` is an [`Entity`] read by its
/// id from `table`. (Defined before the modules below, which use it.)
macro_rules! entity {
    ($ty:ty, $table:literal, $id:ident, $missing:ident) => {
        impl $crate::shop::Entity for $ty {
            const TABLE: &'static str = $table;
            const ID_COLUMN: &'static str = stringify!($id);
            fn id(&self) -> $crate::ids::Id {
                self.$id
            }
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
pub mod requests;
pub mod steps;
pub mod stock;
pub mod sweeper;
pub mod users;

use std::{collections::HashMap, future::Future, sync::Arc};

use sqlx::any::AnyRow;
use tokio::sync::Notify;

pub use self::error::{ShopError, StepFailure};
use crate::{
    ids::{Id, Snowflake},
    money::Money,
    group_commit::GroupCommit,
    store::{placeholders, rows_per_statement, Conn, Db},
};

pub struct Shop {
    pub db: Db,
    pub ids: Arc<Snowflake>,
    pub fault: Option<fault::Fault>,
    /// Wakes the outbox relay after a transaction that wrote an outbox row commits.
    pub outbox_wake: Arc<Notify>,
    /// The payment callbacks' group commit.
    paid: GroupCommit<payments::MarkPaid>,
    /// The order flow's group commit (pre-orders and forward steps).
    orders: GroupCommit<orders::OrderWrites>,
}

impl Shop {
    /// The shop over `db`, generating ids as `worker`. Starts the callbacks' committing task,
    /// so it must be called inside the tokio runtime.
    pub fn new(db: Db, worker: u16, fault: Option<fault::Fault>, outbox_wake: Arc<Notify>) -> Shop {
        let ids = Arc::new(Snowflake::new(worker));
        let paid = GroupCommit::start(db.clone(), payments::MarkPaid { ids: ids.clone(), outbox_wake: outbox_wake.clone() });
        let orders = GroupCommit::start(db.clone(), orders::OrderWrites { ids: ids.clone() });
        Shop { db, ids, fault, outbox_wake, paid, orders }
    }

    /// The same shop (ids, relay, committers) with another fault setting.
    pub fn with_fault(&self, fault: Option<fault::Fault>) -> Shop {
        Shop { db: self.db.clone(), ids: self.ids.clone(), fault, outbox_wake: self.outbox_wake.clone(), paid: self.paid.clone(), orders: self.orders.clone() }
    }
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
    const TABLE: &'static str;
    const ID_COLUMN: &'static str;
    fn id(&self) -> Id;
    fn not_found(id: Id) -> ShopError;
}

/// A new goods, user or coupon: what the catalog's `POST` creates under a fresh id and the
/// demo data loads under fixed ones.
pub trait NewRow: Sync {
    type Row: Entity;
    /// Writes the row under `id` unless a row with that id exists (so the demo data can load
    /// on every start), after checking what it refers to.
    fn insert(&self, tx: &mut Conn, id: Id) -> impl Future<Output = Result<(), ShopError>> + Send;
}

impl Shop {
    /// Adds a goods, user or coupon under a fresh id; returns it as stored.
    pub async fn add<N: NewRow>(&self, new: N) -> Result<N::Row, ShopError> {
        let id = Id(self.ids.next());
        let mut tx = self.db.begin().await?;
        new.insert(&mut tx, id).await?;
        tx.commit().await?;
        self.get(id).await
    }

    /// The `T` with this id.
    pub async fn get<T: Entity>(&self, id: Id) -> Result<T, ShopError> {
        self.get_many::<T>(&[id]).await?.remove(&id).ok_or_else(|| T::not_found(id))
    }

    /// The `T`s with these ids that exist, in one query.
    pub async fn get_many<T: Entity>(&self, ids: &[Id]) -> Result<HashMap<Id, T>, sqlx::Error> {
        let mut found = HashMap::with_capacity(ids.len());
        for ids in ids.chunks(rows_per_statement(1)) {
            let sql = format!("SELECT * FROM {} WHERE {} IN ({})", T::TABLE, T::ID_COLUMN, placeholders(1, ids.len()));
            let query = ids.iter().fold(sqlx::query_as::<_, T>(&sql), |q, id| q.bind(*id));
            found.extend(query.fetch_all(self.db.pool()).await?.into_iter().map(|row| (row.id(), row)));
        }
        Ok(found)
    }
}
