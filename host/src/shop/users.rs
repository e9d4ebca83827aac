//! Users (`trade_user`): the row itself. Its balance column belongs to [`super::balance`]
//! and its points column to [`super::points`].

use poem_openapi::Object;
use sqlx::{any::AnyRow, Row};

use super::{id, money, not_negative, time, FromRow, Shop, ShopError};
use crate::{
    ids::{now_ms, Id},
    money::Money,
    store::Tx,
};

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
pub struct NewUser {
    #[oai(validator(min_length = 1, max_length = 100))]
    pub user_name: String,
    pub user_money: Money,
    #[oai(default, validator(minimum(value = "0"), maximum(value = "1000000000000")))]
    pub user_score: i64,
    #[oai(default, validator(max_length = 32))]
    pub user_mobile: String,
}

/// Writes a user unless `user_id` exists.
pub(crate) async fn insert(tx: &mut Tx, user_id: Id, new: &NewUser) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO trade_user (user_id, user_name, user_mobile, user_score, user_reg_time, user_money)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id) DO NOTHING",
    )
    .bind(user_id.0)
    .bind(&new.user_name)
    .bind(&new.user_mobile)
    .bind(new.user_score)
    .bind(now_ms())
    .bind(new.user_money.cents())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Shop {
    pub async fn user(&self, user_id: Id) -> Result<User, ShopError> {
        self.fetch("SELECT * FROM trade_user WHERE user_id = $1", user_id)
            .await?
            .ok_or(ShopError::UserNotFound(user_id))
    }

    pub async fn add_user(&self, new: NewUser) -> Result<User, ShopError> {
        not_negative(new.user_money, "user_money")?;
        let user_id = Id(self.ids.next());
        let mut tx = self.db.begin().await?;
        insert(&mut tx, user_id, &new).await?;
        tx.commit().await?;
        self.user(user_id).await
    }
}
