//! The database layer: which database a host writes to, and its connections after a write
//! fault.
//!
//! A fleet shares one database: stream SHOP says whose events it holds, and a host on
//! another database (its own SQLite file beside a fleet's, an empty one after its file went
//! missing) refuses to start rather than consume the stream's events into it.
//!
//! After a write fault, on SQLite. On an I/O error or a full disk during
//! a commit, SQLite rolls the transaction back by itself, so the rollback sqlx then sends
//! fails and sqlx goes on counting that transaction open. A connection back in the pool in
//! that state would begin every later transaction as a savepoint, the first of which opens
//! a transaction that nothing commits: writes answered as committed, seen only by that
//! connection, lost at the next start, and the file's write lock held for good (seen in an
//! operator's walk with the database file made unwritable for 5 s).

use std::time::Duration;

use shopmesh::store::Db;

use crate::helpers::{spawn_app, Backend};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_on_another_database_refuses_the_fleets_stream() {
    let app = spawn_app(Backend::Sqlite).await;
    let ours: String = sqlx::query_scalar("SELECT id FROM shop_database").fetch_one(app.db.pool()).await.unwrap();
    let js = async_nats::jetstream::new(async_nats::connect(&app.nats_url).await.unwrap());
    let stream = js.get_stream("SHOP").await.unwrap();
    assert_eq!(stream.cached_info().config.metadata.get("shopmesh.database"), Some(&ours), "the stream says whose events it holds");

    // A second host on a database of its own, on the same NATS.
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let other = tokio::process::Command::new(env!("CARGO_BIN_EXE_shopmesh"))
        .arg("serve")
        .env("SHOPMESH_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("SHOPMESH_DATABASE_URL", format!("sqlite://{}", dir.path().join("other.db").display()))
        .env("SHOPMESH_NATS_URL", &app.nats_url)
        .env("SHOPMESH_DATA_DIR", dir.path())
        .env("SHOPMESH_DEMO_DATA", "false")
        .env_remove("SHOPMESH_FAULT")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), other).await.expect("it stops by itself").unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{said}");
    assert!(said.contains(&format!("stream SHOP holds the events of another database ({ours}; this host's is ")), "{said}");
    assert!(said.contains("the hosts sharing a NATS share one database"), "{said}");
    let after = js.get_stream("SHOP").await.unwrap();
    assert_eq!(after.cached_info().config.metadata.get("shopmesh.database"), Some(&ours), "not claimed by the other");
}

/// Found after the start (the stream removed and made again by a host of another shop), the
/// host stops, with an error, instead of publishing into it or consuming from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_stops_when_its_stream_turns_out_to_be_another_databases() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut host = crate::helpers::HostProcess::start(&app.db_url, &app.nats_url, &[("SHOPMESH_WORKER_ID", "2")]).await;
    let js = async_nats::jetstream::new(async_nats::connect(&app.nats_url).await.unwrap());
    let mut config = js.get_stream("SHOP").await.unwrap().cached_info().config.clone();
    config.metadata.insert("shopmesh.database".into(), "another shop's".into());
    js.update_stream(&config).await.unwrap();
    let stopped = tokio::time::timeout(Duration::from_secs(60), host.child.wait()).await.expect("it stops by itself").unwrap();
    assert_eq!(stopped.code(), Some(1), "stopped with an error: {stopped:?}");
}

#[tokio::test]
async fn a_transaction_sqlite_rolled_back_by_itself_leaves_later_ones_committing() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("shop.db").display());
    // One connection, so each transaction below runs on the one the fault touched.
    let db = Db::connect(&url, 1).await.unwrap();
    db.execute(sqlx::query("CREATE TABLE t (x TEXT)")).await.unwrap();
    // A mark of this connection's own: a connection made anew has SQLite's default.
    let cache = || async { sqlx::query_scalar::<_, i64>("PRAGMA cache_size").fetch_one(db.pool()).await.unwrap() };
    sqlx::query("PRAGMA cache_size = -1234").execute(db.pool()).await.unwrap();
    // A transaction dropped as usual leaves its connection to serve again.
    let mut healthy = db.begin().await.unwrap();
    sqlx::query("INSERT INTO t (x) VALUES ('dropped')").execute(&mut *healthy).await.unwrap();
    drop(healthy);
    assert_eq!(cache().await, -1234, "the same connection, kept");

    let mut cut = db.begin().await.unwrap();
    sqlx::query("INSERT INTO t (x) VALUES ('cut')").execute(&mut *cut).await.unwrap();
    // What SQLite does by itself on such a fault.
    sqlx::query("ROLLBACK").execute(&mut *cut).await.unwrap();
    drop(cut);
    assert_ne!(cache().await, -1234, "that connection was closed, and another made");
    let mut dropped = db.begin().await.unwrap();
    sqlx::query("INSERT INTO t (x) VALUES ('dropped')").execute(&mut *dropped).await.unwrap();
    drop(dropped);
    let mut tx = db.begin().await.unwrap();
    sqlx::query("INSERT INTO t (x) VALUES ('kept')").execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();

    // Committed means on disk, for every other connection, and the write lock is free.
    let other = Db::connect(&url, 1).await.unwrap();
    let rows: Vec<String> = sqlx::query_scalar("SELECT x FROM t ORDER BY x").fetch_all(other.pool()).await.unwrap();
    assert_eq!(rows, ["kept"], "only the committed row, seen by another connection");
    sqlx::query("PRAGMA busy_timeout = 100").execute(other.pool()).await.unwrap();
    other.execute(sqlx::query("INSERT INTO t (x) VALUES ('other')")).await.expect("the write lock is free");
}

/// A connection SQLite could only open read-only (it does so silently when the file cannot be
/// written: a full disk, a file made read-only) is refused, not kept to fail every write of
/// its life; once the file can be written, connections are made as usual.
#[tokio::test]
async fn a_connection_that_cannot_write_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shop.db");
    Db::connect(&format!("sqlite://{}", path.display()), 1).await.unwrap().execute(sqlx::query("CREATE TABLE t (x TEXT)")).await.unwrap();
    // The pool tries again until its acquire timeout, then says so.
    let refused = Db::connect(&format!("sqlite://{}?mode=ro", path.display()), 1).await.err().expect("refused");
    assert!(refused.to_string().contains("pool timed out"), "{refused}");
    let db = Db::connect(&format!("sqlite://{}", path.display()), 1).await.unwrap();
    db.execute(sqlx::query("INSERT INTO t (x) VALUES ('written')")).await.expect("writable again");
}

