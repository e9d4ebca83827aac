//! What a database failure means for the code that met it: a transaction SQLite gave up by
//! itself ([`end_savepoint`], [`lost`]), and a failure that trying again may overcome
//! ([`unavailable`]: the API answers it 503 with `Retry-After`, not 500).

/// Ends `savepoint`: released when what ran in it is to be `kept`, else rolled back; `Err`
/// when it could not end: the transaction around it is gone (SQLite rolls a whole
/// transaction back by itself on an I/O error or a full disk), so nothing written in it
/// stands, before the savepoint or after. Ended here rather than when dropped, so that the
/// caller learns it and answers what the transaction held as failed ([`lost`]).
pub async fn end_savepoint(savepoint: sqlx::Transaction<'_, sqlx::Any>, kept: bool) -> Result<(), sqlx::Error> {
    if kept { savepoint.commit().await } else { savepoint.rollback().await }
}

/// What a job of a transaction that is gone ([`end_savepoint`]) is answered, when it had
/// succeeded in it or had not run yet (one that failed keeps its own answer).
pub fn lost(why: &sqlx::Error) -> sqlx::Error {
    // An I/O failure in kind: the request is not at fault and may be tried again ([`unavailable`]).
    let said = format!("the database rolled the transaction back ({why}): nothing of it stands; it is retried or may be");
    sqlx::Error::Io(std::io::Error::other(said))
}

/// `e` again, for each of several callers it fails (sqlx's errors do not clone): its text,
/// and whether trying again may help ([`unavailable`]) kept.
pub fn copied(e: &sqlx::Error) -> sqlx::Error {
    if unavailable(e) { sqlx::Error::Io(std::io::Error::other(e.to_string())) } else { sqlx::Error::Protocol(e.to_string()) }
}

/// Whether `e` says the database cannot serve right now (unreachable, restarting, busy, out
/// of disk or memory, or a transaction it gave up) rather than that the statement or the data
/// is wrong: the request that met it may succeed if tried again, so the API answers 503, not
/// 500.
pub fn unavailable(e: &sqlx::Error) -> bool {
    use sqlx::Error::*;
    match e {
        PoolTimedOut | PoolClosed | Io(_) | Tls(_) | WorkerCrashed => true,
        // Postgres' SQLSTATE: a connection exception, insufficient resources, the operator's
        // intervention (shutdown, a cancelled statement), a system error, a transaction rolled
        // back for a serialization failure or a deadlock, a standby that cannot write yet (a
        // failover), a lock not to be had now. (A SQLSTATE may be all
        // digits, so the driver, not the code's look, says which database spoke.)
        Database(db) if db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some() => {
            let code = db.code().unwrap_or_default();
            ["08", "53", "57", "58"].iter().any(|class| code.starts_with(class)) || ["40001", "40P01", "25006", "55P03"].contains(&&*code)
        }
        // SQLite's extended result code: its primary code is the low byte. BUSY, LOCKED,
        // NOMEM, READONLY (a file it cannot write), IOERR, FULL, CANTOPEN.
        Database(db) if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() => {
            db.code().and_then(|code| code.parse::<i32>().ok()).is_some_and(|n| matches!(n & 0xff, 5 | 6 | 7 | 8 | 10 | 13 | 14))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Db;

    /// The failures SQLite really gives, read as the API reads them.
    #[tokio::test]
    async fn a_busy_database_is_unavailable_a_wrong_statement_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/f.db", dir.path().display());
        let db = Db::connect(&url, 2).await.unwrap();
        db.execute(sqlx::query("CREATE TABLE t (n INTEGER PRIMARY KEY)")).await.unwrap();
        db.execute(sqlx::query("INSERT INTO t (n) VALUES (1)")).await.unwrap();

        // Another process holds the write lock; this one will not wait for it.
        let other = Db::connect(&url, 1).await.unwrap();
        let mut holder = other.pool().acquire().await.unwrap();
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *holder).await.unwrap();
        let mut conn = db.pool().acquire().await.unwrap();
        sqlx::query("PRAGMA busy_timeout = 0").execute(&mut *conn).await.unwrap();
        let busy = sqlx::query("INSERT INTO t (n) VALUES (2)").execute(&mut *conn).await.unwrap_err();
        assert!(unavailable(&busy), "{busy:?}");
        sqlx::query("ROLLBACK").execute(&mut *holder).await.unwrap();

        let duplicate = sqlx::query("INSERT INTO t (n) VALUES (1)").execute(&mut *conn).await.unwrap_err();
        let wrong = sqlx::query("INSERT INTO nowhere (n) VALUES (1)").execute(&mut *conn).await.unwrap_err();
        for e in [&duplicate, &wrong] {
            assert!(!unavailable(e), "{e:?}");
        }
        assert!(unavailable(&sqlx::Error::PoolTimedOut));
        // Told to each of several callers, a failure keeps whether trying again may help.
        assert!(unavailable(&copied(&busy)) && !unavailable(&copied(&wrong)));
        assert!(unavailable(&lost(&wrong)), "a transaction given up is tried again");
    }
}
