//! [`Shop`]: the service the API calls. It owns the database handle, the id generator
//! and the relay's wake-up signal; orders and payments add their methods in their own
//! modules. This file holds the plain entities: goods, users and coupons.

use std::sync::Arc;

use poem_openapi::Object;
use sqlx::{any::AnyRow, Row};
use tokio::sync::Notify;

use crate::{
    error::ShopError,
    events::rfc3339,
    fault::Fault,
    ids::{now_ms, Id, Snowflake},
    money::Money,
    store::Db,
};

pub struct Shop {
    pub db: Db,
    pub ids: Snowflake,
    pub fault: Option<Fault>,
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

/// Goods and their stock.
#[derive(Debug, Clone, Object)]
pub struct Goods {
    pub goods_id: Id,
    pub goods_name: String,
    /// Units in stock.
    pub goods_number: i64,
    pub goods_price: Money,
    pub goods_desc: String,
    pub add_time: Option<String>,
}

impl FromRow for Goods {
    fn from_row(r: &AnyRow) -> Result<Goods, sqlx::Error> {
        Ok(Goods {
            goods_id: id(r, "goods_id")?,
            goods_name: r.try_get("goods_name")?,
            goods_number: r.try_get("goods_number")?,
            goods_price: money(r, "goods_price")?,
            goods_desc: r.try_get("goods_desc")?,
            add_time: time(r, "add_time")?,
        })
    }
}

/// A shop user (the password column is never returned).
#[derive(Debug, Clone, Object)]
pub struct User {
    pub user_id: Id,
    pub user_name: String,
    pub user_mobile: String,
    /// Points.
    pub user_score: i64,
    /// Balance.
    pub user_money: Money,
    pub user_reg_time: Option<String>,
}

impl FromRow for User {
    fn from_row(r: &AnyRow) -> Result<User, sqlx::Error> {
        Ok(User {
            user_id: id(r, "user_id")?,
            user_name: r.try_get("user_name")?,
            user_mobile: r.try_get("user_mobile")?,
            user_score: r.try_get("user_score")?,
            user_money: money(r, "user_money")?,
            user_reg_time: time(r, "user_reg_time")?,
        })
    }
}

#[derive(Debug, Clone, Object)]
pub struct Coupon {
    pub coupon_id: Id,
    pub coupon_price: Money,
    pub user_id: Id,
    /// The order that used it, once used.
    pub order_id: Option<Id>,
    /// 0 unused, 1 used.
    pub is_used: i64,
    pub used_time: Option<String>,
}

impl FromRow for Coupon {
    fn from_row(r: &AnyRow) -> Result<Coupon, sqlx::Error> {
        Ok(Coupon {
            coupon_id: id(r, "coupon_id")?,
            coupon_price: money(r, "coupon_price")?,
            user_id: id(r, "user_id")?,
            order_id: opt_id(r, "order_id")?,
            is_used: r.try_get("is_used")?,
            used_time: time(r, "used_time")?,
        })
    }
}

#[derive(Debug, Clone, Object)]
pub struct NewGoods {
    #[oai(validator(min_length = 1, max_length = 200))]
    pub goods_name: String,
    #[oai(validator(minimum(value = "0"), maximum(value = "1000000000")))]
    pub goods_number: i64,
    pub goods_price: Money,
    #[oai(default, validator(max_length = 2000))]
    pub goods_desc: String,
}

#[derive(Debug, Clone, Object)]
pub struct NewUser {
    #[oai(validator(min_length = 1, max_length = 100))]
    pub user_name: String,
    pub user_money: Money,
    #[oai(default, validator(minimum(value = "0"), maximum(value = "1000000000000")))]
    pub user_score: i64,
    #[oai(default, validator(max_length = 32))]
    pub user_mobile: String,
}

#[derive(Debug, Clone, Object)]
pub struct NewCoupon {
    pub coupon_price: Money,
    pub user_id: Id,
}

fn not_negative(m: Money, field: &str) -> Result<(), ShopError> {
    if m.is_negative() {
        return Err(ShopError::RequestParameterInvalid(format!("{field} must not be negative")));
    }
    Ok(())
}

impl Shop {
    pub(crate) async fn fetch<T: FromRow>(&self, sql: &'static str, id: Id) -> Result<Option<T>, ShopError> {
        let row = sqlx::query(sql).bind(id.0).fetch_optional(self.db.pool()).await?;
        Ok(row.as_ref().map(T::from_row).transpose()?)
    }

    pub async fn goods(&self, goods_id: Id) -> Result<Goods, ShopError> {
        self.fetch("SELECT * FROM trade_goods WHERE goods_id = $1", goods_id)
            .await?
            .ok_or(ShopError::GoodsNotFound(goods_id))
    }

    pub async fn user(&self, user_id: Id) -> Result<User, ShopError> {
        self.fetch("SELECT * FROM trade_user WHERE user_id = $1", user_id)
            .await?
            .ok_or(ShopError::UserNotFound(user_id))
    }

    pub async fn coupon(&self, coupon_id: Id) -> Result<Coupon, ShopError> {
        self.fetch("SELECT * FROM trade_coupon WHERE coupon_id = $1", coupon_id)
            .await?
            .ok_or(ShopError::CouponNotFound(coupon_id))
    }

    pub async fn add_goods(&self, new: NewGoods) -> Result<Goods, ShopError> {
        not_negative(new.goods_price, "goods_price")?;
        let goods_id = Id(self.ids.next());
        sqlx::query(
            "INSERT INTO trade_goods (goods_id, goods_name, goods_number, goods_price, goods_desc, add_time)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(goods_id.0)
        .bind(&new.goods_name)
        .bind(new.goods_number)
        .bind(new.goods_price.cents())
        .bind(&new.goods_desc)
        .bind(now_ms())
        .execute(self.db.pool())
        .await?;
        self.goods(goods_id).await
    }

    pub async fn add_user(&self, new: NewUser) -> Result<User, ShopError> {
        not_negative(new.user_money, "user_money")?;
        let user_id = Id(self.ids.next());
        sqlx::query(
            "INSERT INTO trade_user (user_id, user_name, user_mobile, user_score, user_reg_time, user_money)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(user_id.0)
        .bind(&new.user_name)
        .bind(&new.user_mobile)
        .bind(new.user_score)
        .bind(now_ms())
        .bind(new.user_money.cents())
        .execute(self.db.pool())
        .await?;
        self.user(user_id).await
    }

    pub async fn add_coupon(&self, new: NewCoupon) -> Result<Coupon, ShopError> {
        not_negative(new.coupon_price, "coupon_price")?;
        self.user(new.user_id).await?;
        let coupon_id = Id(self.ids.next());
        sqlx::query(
            "INSERT INTO trade_coupon (coupon_id, coupon_price, user_id, is_used) VALUES ($1, $2, $3, 0)",
        )
        .bind(coupon_id.0)
        .bind(new.coupon_price.cents())
        .bind(new.user_id.0)
        .execute(self.db.pool())
        .await?;
        self.coupon(coupon_id).await
    }
}
