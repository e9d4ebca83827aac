-- Idempotency keys of order requests: POST /api/orders sent again with the same
-- Idempotency-Key (a client that timed out and retries) answers with the order the first
-- request placed instead of placing a second. Written with the pre-order, in its
-- transaction; request_hash is a digest of the request body, so a key used for another
-- order is refused.
CREATE TABLE shop_order_request (
    user_id      BIGINT      NOT NULL,
    request_key  VARCHAR(64) NOT NULL,
    request_hash VARCHAR(64) NOT NULL,
    order_id     BIGINT      NOT NULL,
    created_at   BIGINT      NOT NULL,
    PRIMARY KEY (user_id, request_key)
);
