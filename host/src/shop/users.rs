//! Users (`trade_user`): the row itself. Its balance column belongs to [`super::balance`]
//! and its points column to [`super::points`].

use poem_openapi::Object;

use super::{not_negative, NewRow, ShopError};
use crate::{
    timestamp::Timestamp,
    ids::{now_ms, Id},
    money::Money,
    store::Conn,
};

/// A shop user (the password column is never returned).
#[derive(Debug, Clone, Object, sqlx::FromRow)]
#[oai(skip_serializing_if_is_none)]
pub struct User {
    pub user_id: Id,
    pub user_name: String,
    pub user_mobile: String,
    /// Points.
    pub user_score: i64,
    /// Balance.
    pub user_money: Money,
    pub user_reg_time: Option<Timestamp>,
}

#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct NewUser {
    #[oai(validator(min_length = 1, max_length = 100))]
    pub user_name: String,
    pub user_money: Money,
    #[oai(default, validator(minimum(value = "0"), maximum(value = "1000000000000")))]
    pub user_score: i64,
    #[oai(default, validator(max_length = 32))]
    pub user_mobile: String,
}

entity!(User, "trade_user", user_id, UserNotFound);

impl NewRow for NewUser {
    type Row = User;

    async fn insert(&self, tx: &mut Conn, user_id: Id) -> Result<(), ShopError> {
        not_negative(self.user_money, "user_money")?;
        let sql = "INSERT INTO trade_user (user_id, user_name, user_mobile, user_score, user_reg_time, user_money)
                   VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id) DO NOTHING";
        let query = sqlx::query(sql).bind(user_id).bind(&self.user_name).bind(&self.user_mobile);
        query.bind(self.user_score).bind(now_ms()).bind(self.user_money).execute(tx).await?;
        Ok(())
    }
}
