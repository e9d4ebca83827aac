-- The shop's tables (names from the original system) plus what the guarantees need.
--
-- One file serves SQLite and Postgres, so it uses only types both understand the same way:
--   * ids are BIGINT (64-bit snowflakes);
--   * money is BIGINT in minor units (cents). SQLite has no exact decimal type: a DECIMAL
--     column gets NUMERIC affinity and is stored as a REAL (a float). Integer cents are exact
--     in both databases and let conditional updates (`WHERE user_money >= $1`) stay atomic
--     in SQL. The host converts to rust_decimal at the boundary; JSON carries decimal strings.
--   * times are BIGINT unix milliseconds (UTC).
--   * flags and statuses are BIGINT so one Rust type (i64) decodes them on both databases.

CREATE TABLE trade_goods (
    goods_id      BIGINT PRIMARY KEY,
    goods_name    TEXT   NOT NULL,
    goods_number  BIGINT NOT NULL CHECK (goods_number >= 0),
    goods_price   BIGINT NOT NULL CHECK (goods_price >= 0),
    goods_desc    TEXT   NOT NULL DEFAULT '',
    add_time      BIGINT NOT NULL
);

-- Stock movements per order. log_type 1 = sale (goods_number < 0), 2 = give-back (> 0).
-- The original keyed this on (goods_id, order_id), so a give-back collided with its sale.
CREATE TABLE trade_goods_number_log (
    goods_id      BIGINT NOT NULL,
    order_id      BIGINT NOT NULL,
    log_type      BIGINT NOT NULL CHECK (log_type IN (1, 2)),
    goods_number  BIGINT NOT NULL,
    log_time      BIGINT NOT NULL,
    PRIMARY KEY (goods_id, order_id, log_type)
);

CREATE TABLE trade_user (
    user_id        BIGINT PRIMARY KEY,
    user_name      TEXT   NOT NULL,
    user_password  TEXT   NOT NULL DEFAULT '',
    user_mobile    TEXT   NOT NULL DEFAULT '',
    user_score     BIGINT NOT NULL DEFAULT 0 CHECK (user_score >= 0),
    user_reg_time  BIGINT NOT NULL,
    user_money     BIGINT NOT NULL DEFAULT 0 CHECK (user_money >= 0)
);

-- Balance movements: money_log_type 1 = paid, 2 = refund; at most one of each per order.
CREATE TABLE trade_user_money_log (
    user_id         BIGINT NOT NULL,
    order_id        BIGINT NOT NULL,
    money_log_type  BIGINT NOT NULL CHECK (money_log_type IN (1, 2)),
    use_money       BIGINT NOT NULL CHECK (use_money > 0),
    create_time     BIGINT NOT NULL,
    PRIMARY KEY (user_id, order_id, money_log_type)
);

CREATE TABLE trade_coupon (
    coupon_id     BIGINT PRIMARY KEY,
    coupon_price  BIGINT NOT NULL CHECK (coupon_price >= 0),
    user_id       BIGINT NOT NULL,
    order_id      BIGINT,
    is_used       BIGINT NOT NULL DEFAULT 0 CHECK (is_used IN (0, 1)),
    used_time     BIGINT
);

-- order_status: 0 unconfirmed (pre-order), 1 confirmed, 2 cancelled, 3 invalid, 4 refunded.
-- pay_status: 0 unpaid, 1 paying, 2 paid.
CREATE TABLE trade_order (
    order_id         BIGINT PRIMARY KEY,
    user_id          BIGINT NOT NULL,
    order_status     BIGINT NOT NULL,
    pay_status       BIGINT NOT NULL DEFAULT 0,
    shipping_status  BIGINT NOT NULL DEFAULT 0,
    address          TEXT   NOT NULL DEFAULT '',
    consignee        TEXT   NOT NULL DEFAULT '',
    goods_id         BIGINT NOT NULL,
    goods_number     BIGINT NOT NULL CHECK (goods_number > 0),
    goods_price      BIGINT NOT NULL,
    goods_amount     BIGINT NOT NULL,
    shipping_fee     BIGINT NOT NULL,
    order_amount     BIGINT NOT NULL,
    coupon_id        BIGINT,
    coupon_paid      BIGINT NOT NULL DEFAULT 0,
    money_paid       BIGINT NOT NULL DEFAULT 0,
    pay_amount       BIGINT NOT NULL CHECK (pay_amount >= 0),
    add_time         BIGINT NOT NULL,
    confirm_time     BIGINT,
    pay_time         BIGINT,
    cancel_time      BIGINT,
    cancel_reason    TEXT
);
-- The sweeper looks for pre-orders older than its timeout.
CREATE INDEX trade_order_status_time ON trade_order (order_status, add_time);

-- One payment per order; is_paid 1 = no, 2 = yes.
CREATE TABLE trade_pay (
    pay_id       BIGINT PRIMARY KEY,
    order_id     BIGINT NOT NULL UNIQUE,
    pay_amount   BIGINT NOT NULL CHECK (pay_amount >= 0),
    is_paid      BIGINT NOT NULL DEFAULT 1 CHECK (is_paid IN (1, 2)),
    create_time  BIGINT NOT NULL,
    paid_time    BIGINT
);

-- Step records: which forward steps of an order happened, and which were given back.
-- A give-back without its forward row does nothing ("empty rollback"); the primary key
-- makes each action happen at most once; a forward step is refused once the order has left
-- status 0 ("suspension"), which is checked under the order row's lock in the same
-- transaction that writes the forward row.
CREATE TABLE shop_order_step (
    order_id    BIGINT NOT NULL,
    step        TEXT   NOT NULL CHECK (step IN ('stock', 'coupon', 'balance')),
    action      TEXT   NOT NULL CHECK (action IN ('forward', 'giveback')),
    -- quantity for stock, cents for balance, the coupon id for coupon
    amount      BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (order_id, step, action)
);

-- The outbox (the original's producer table). A row is written in the same transaction as
-- the state change it announces; the relay publishes it with Nats-Msg-Id = id and marks it
-- sent only after JetStream acknowledged it. lease_until lets several relays share the
-- table without publishing a row twice (see outbox.rs).
CREATE TABLE trade_mq_producer_temp (
    id           BIGINT PRIMARY KEY,
    group_name   TEXT   NOT NULL,
    msg_topic    TEXT   NOT NULL,
    msg_tag      TEXT   NOT NULL,
    msg_key      TEXT   NOT NULL,
    msg_body     TEXT   NOT NULL,
    msg_status   BIGINT NOT NULL DEFAULT 0 CHECK (msg_status IN (0, 1)),
    create_time  BIGINT NOT NULL,
    lease_until  BIGINT NOT NULL DEFAULT 0,
    attempts     BIGINT NOT NULL DEFAULT 0,
    last_error   TEXT,
    sent_time    BIGINT,
    stream_seq   BIGINT
);
CREATE INDEX trade_mq_producer_temp_pending ON trade_mq_producer_temp (msg_status, lease_until);
