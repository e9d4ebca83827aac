-- no-transaction
-- Retention deletes published outbox rows by when they were sent (see 20261207000008).
CREATE INDEX CONCURRENTLY IF NOT EXISTS trade_mq_producer_temp_sent ON trade_mq_producer_temp (sent_time);
