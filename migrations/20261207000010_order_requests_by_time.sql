-- no-transaction
-- Retention deletes idempotency keys by when they were recorded (see 20261207000008).
CREATE INDEX CONCURRENTLY IF NOT EXISTS shop_order_request_time ON shop_order_request (created_at);
