//! Idempotency keys of order requests (`shop_order_request`). A client that sends
//! `POST /api/orders` again with the same `Idempotency-Key` (it timed out, it retries) gets
//! the order its first request placed, as it stands now, instead of a second order taking
//! stock, coupon and balance again. The key is written with the pre-order, in its
//! transaction, so two requests racing with one key place one order.

use sha2::{Digest, Sha256};

use super::checkout::PlaceOrder;
use crate::{
    ids::{now_ms, Id},
    money::Money,
    store::{Conn, Db},
};

/// A request's key, and a digest of what it asked for: the same key with another order
/// is a client's mistake, not a retry.
#[derive(Debug, Clone)]
pub struct RequestKey {
    pub key: String,
    pub digest: String,
}

impl RequestKey {
    pub fn of(key: &str, req: &PlaceOrder) -> RequestKey {
        // What was asked, not how it was spelt: `"money_paid": "0.00"` is the default left out
        // (written as left out, so a key recorded before this rule for a request that left it
        // out still matches its retries; one recorded with "0.00" spelt out no longer does).
        let asked = PlaceOrder { money_paid: req.money_paid.filter(|m| *m != Money::ZERO), ..req.clone() };
        let body = poem_openapi::types::ToJSON::to_json(&asked).map(|v| v.to_string()).unwrap_or_default();
        RequestKey { key: key.to_owned(), digest: hex::encode(Sha256::digest(body.as_bytes())) }
    }
}

/// Records the key of the pre-order being saved, in its transaction.
pub(super) async fn record(tx: &mut Conn, user_id: Id, key: &RequestKey, order_id: Id) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO shop_order_request (user_id, request_key, request_hash, order_id, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(user_id)
        .bind(&key.key)
        .bind(&key.digest)
        .bind(order_id)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// The order id and request digest recorded under `user_id`'s `key`, if any.
pub(super) async fn find(db: &Db, user_id: Id, key: &RequestKey) -> Result<Option<(i64, String)>, sqlx::Error> {
    sqlx::query_as("SELECT order_id, request_hash FROM shop_order_request WHERE user_id = $1 AND request_key = $2")
        .bind(user_id)
        .bind(&key.key)
        .fetch_optional(db.pool())
        .await
}

/// Deletes the keys recorded before `cutoff` (see `retention`): a client retries within
/// minutes, not after the retention period.
pub async fn prune(db: &Db, cutoff: i64) -> Result<u64, sqlx::Error> {
    db.prune("shop_order_request", "user_id, request_key", "created_at < $1", cutoff).await
}
