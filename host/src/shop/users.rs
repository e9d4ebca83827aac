//! Users (`trade_user`): the row itself. Its balance column belongs to [`super::balance`]
//! and its points column to [`super::points`].

use poem_openapi::Object;

use sqlx::{Any, Executor};

use super::{not_negative, Shop, ShopError};
use crate::{
    timestamp::Timestamp,
    ids::{now_ms, Id},
    money::Money,
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

impl Shop {
    pub async fn add_user(&self, new: NewUser) -> Result<User, ShopError> {
        let user_id = Id(self.ids.next());
        let mut tx = self.db.begin().await?;
        insert(&mut *tx, user_id, &new).await?;
        tx.commit().await?;
        self.get(user_id).await
    }
}

/// Writes a user unless `user_id` exists.
pub(crate) async fn insert(db: impl Executor<'_, Database = Any>, user_id: Id, new: &NewUser) -> Result<(), ShopError> {
    not_negative(new.user_money, "user_money")?;
    let sql = "INSERT INTO trade_user (user_id, user_name, user_mobile, user_score, user_reg_time, user_money)
               VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id) DO NOTHING";
    let query = sqlx::query(sql).bind(user_id).bind(&new.user_name).bind(&new.user_mobile);
    query.bind(new.user_score).bind(now_ms()).bind(new.user_money).execute(db).await?;
    Ok(())
}
