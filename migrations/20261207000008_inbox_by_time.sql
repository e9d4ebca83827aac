-- no-transaction
-- Retention (retention.rs) deletes the inbox's rows by age; without an index on the moment
-- each pass would read the whole table. One statement per migration: on Postgres the index
-- is built CONCURRENTLY (plugins go on writing meanwhile), which cannot run inside a
-- transaction; on SQLite, which has no such thing, the word is dropped (store.rs).
CREATE INDEX CONCURRENTLY IF NOT EXISTS trade_mq_consumer_log_time ON trade_mq_consumer_log (consumer_timestamp);
