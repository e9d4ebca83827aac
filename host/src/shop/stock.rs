//! Stock: goods (`trade_goods`) and every movement of their stock, with its log row
//! (`trade_goods_number_log`, log_type 1 = sale, 2 = give-back). The order flow's stock step
//! takes and the restore-stock effect gives back through the one [`Stock::shift`], fenced by
//! [`super::steps`].

use poem_openapi::Object;
use sqlx::{any::AnyRow, Row};

use super::{id, money, not_negative, steps::{Step, Taken}, time, FromRow, Shop, ShopError};
use crate::{
    ids::{now_ms, Id},
    money::Money,
    store::Tx,
};

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

/// Writes a goods row unless `goods_id` exists (the demo data loads this way on every start).
pub(crate) async fn insert(tx: &mut Tx, goods_id: Id, new: &NewGoods) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO trade_goods (goods_id, goods_name, goods_number, goods_price, goods_desc, add_time)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (goods_id) DO NOTHING",
    )
    .bind(goods_id.0)
    .bind(&new.goods_name)
    .bind(new.goods_number)
    .bind(new.goods_price.cents())
    .bind(&new.goods_desc)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Shop {
    pub async fn goods(&self, goods_id: Id) -> Result<Goods, ShopError> {
        self.fetch("SELECT * FROM trade_goods WHERE goods_id = $1", goods_id)
            .await?
            .ok_or(ShopError::GoodsNotFound(goods_id))
    }

    pub async fn add_goods(&self, new: NewGoods) -> Result<Goods, ShopError> {
        not_negative(new.goods_price, "goods_price")?;
        let goods_id = Id(self.ids.next());
        let mut tx = self.db.begin().await?;
        insert(&mut tx, goods_id, &new).await?;
        tx.commit().await?;
        self.goods(goods_id).await
    }
}

/// The stock of one goods, as an order step takes it and a cancellation gives it back.
pub struct Stock {
    pub goods_id: i64,
}

impl Taken for Stock {
    const STEP: Step = Step::Stock;

    async fn shift(&self, tx: &mut Tx, order_id: i64, delta: i64) -> Result<bool, sqlx::Error> {
        // Conditional, never read-modify-write: a take cannot oversell.
        let changed = sqlx::query(
            "UPDATE trade_goods SET goods_number = goods_number + $1
              WHERE goods_id = $2 AND goods_number + $1 >= 0",
        )
        .bind(delta)
        .bind(self.goods_id)
        .execute(&mut **tx)
        .await?
        .rows_affected()
            == 1;
        if changed {
            sqlx::query(
                "INSERT INTO trade_goods_number_log (goods_id, order_id, log_type, goods_number, log_time)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(self.goods_id)
            .bind(order_id)
            .bind(if delta < 0 { 1i64 } else { 2 })
            .bind(delta)
            .bind(now_ms())
            .execute(&mut **tx)
            .await?;
        }
        Ok(changed)
    }
}
