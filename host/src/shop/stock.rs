//! Stock: goods (`trade_goods`) and every movement of their stock, with its log row
//! (`trade_goods_number_log`, log_type 1 = sale, 2 = give-back). The order flow's stock step
//! takes and the restore-stock effect gives back through the one [`Stock::shift`], fenced by
//! [`super::steps`].

use poem_openapi::Object;

use super::{not_negative, steps::{counted_shift, Step, Taken}, NewRow, ShopError};
use crate::{
    timestamp::Timestamp,
    ids::{now_ms, Id},
    money::Money,
    store::Conn,
};

/// Goods and their stock.
#[derive(Debug, Clone, Object, sqlx::FromRow)]
#[oai(skip_serializing_if_is_none)]
pub struct Goods {
    pub goods_id: Id,
    pub goods_name: String,
    /// Units in stock.
    pub goods_number: i64,
    pub goods_price: Money,
    pub goods_desc: String,
    pub add_time: Option<Timestamp>,
}

#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct NewGoods {
    #[oai(validator(min_length = 1, max_length = 200))]
    pub goods_name: String,
    #[oai(validator(minimum(value = "0"), maximum(value = "1000000000")))]
    pub goods_number: i64,
    pub goods_price: Money,
    #[oai(default, validator(max_length = 2000))]
    pub goods_desc: String,
}

entity!(Goods, "trade_goods", goods_id, GoodsNotFound);

impl NewRow for NewGoods {
    type Row = Goods;

    async fn insert(&self, tx: &mut Conn, goods_id: Id) -> Result<(), ShopError> {
        not_negative(self.goods_price, "goods_price")?;
        let sql = "INSERT INTO trade_goods (goods_id, goods_name, goods_number, goods_price, goods_desc, add_time)
                   VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (goods_id) DO NOTHING";
        let query = sqlx::query(sql).bind(goods_id).bind(&self.goods_name).bind(self.goods_number);
        query.bind(self.goods_price).bind(&self.goods_desc).bind(now_ms()).execute(tx).await?;
        Ok(())
    }
}

/// The stock of one goods, as an order step takes it and a cancellation gives it back.
pub struct Stock {
    pub goods_id: i64,
}

impl Taken for Stock {
    const STEP: Step = Step::Stock;

    async fn shift(tx: &mut Conn, moves: &[(i64, &Stock, i64)]) -> Result<Vec<bool>, sqlx::Error> {
        // Conditional, never read-modify-write: a take cannot oversell. The log row carries
        // the signed movement.
        const SQL: (&str, &str) = (
            "UPDATE trade_goods SET goods_number = goods_number + $1 WHERE goods_id = $2 AND goods_number + $1 >= 0",
            "INSERT INTO trade_goods_number_log (goods_id, order_id, log_type, goods_number, log_time) VALUES ($1, $2, $3, $4, $5)",
        );
        let moves: Vec<(i64, i64, i64)> = moves.iter().map(|(order, stock, delta)| (*order, stock.goods_id, *delta)).collect();
        counted_shift(tx, SQL, &moves, |delta| delta).await
    }
}
