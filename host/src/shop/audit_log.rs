//! The audit log (`shop_audit_log`): the payment log and the cancellation trail, written by
//! the append-log effect; each row names the event and the plugin version behind it.

use crate::{
    ids::now_ms,
    store::{placeholders, rows_per_statement, Conn},
};

/// One audit row.
pub struct Entry<'a> {
    pub id: i64,
    pub order_id: i64,
    pub user_id: i64,
    /// "paid" or "cancelled".
    pub kind: &'static str,
    pub amount: i64,
    pub note: &'a str,
    pub event_id: &'a str,
    pub plugin_version: &'a str,
}

/// Appends the rows, a few hundred parameters per statement.
pub async fn append(tx: &mut Conn, entries: &[Entry<'_>]) -> Result<(), sqlx::Error> {
    for entries in entries.chunks(rows_per_statement(8)) {
        let rows: Vec<String> = (0..entries.len()).map(|i| format!("({}, $1)", placeholders(i * 8 + 2, 8))).collect();
        let sql = format!(
            "INSERT INTO shop_audit_log (id, order_id, user_id, kind, amount, note, event_id, plugin_version, created_at) VALUES {}",
            rows.join(", ")
        );
        let query = entries.iter().fold(sqlx::query(&sql).bind(now_ms()), |q, e| {
            q.bind(e.id).bind(e.order_id).bind(e.user_id).bind(e.kind).bind(e.amount).bind(e.note).bind(e.event_id).bind(e.plugin_version)
        });
        query.execute(&mut *tx).await?;
    }
    Ok(())
}
