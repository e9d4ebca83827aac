-- What the plugin runtime needs. Same conventions as the first migration (BIGINT ids,
-- cents and unix milliseconds).

-- The inbox (the original's consumer log): one row per (plugin, event type, event id).
-- consumer_status 1 = applied, 2 = failed (retrying or dead-lettered). A row with status 1
-- is written in the same transaction as the plugin's effects, so a redelivery finds it and
-- only acks, however long after JetStream's de-duplication window it arrives.
CREATE TABLE trade_mq_consumer_log (
    group_name          TEXT   NOT NULL,
    msg_tag             TEXT   NOT NULL,
    msg_key             TEXT   NOT NULL,
    msg_id              TEXT   NOT NULL,
    msg_body            TEXT   NOT NULL,
    consumer_status     BIGINT NOT NULL CHECK (consumer_status IN (1, 2)),
    consumer_times      BIGINT NOT NULL DEFAULT 0,
    consumer_timestamp  BIGINT NOT NULL,
    remark              TEXT,
    -- Which build of the plugin produced the applied effects.
    plugin_version      TEXT,
    plugin_sha256       TEXT,
    PRIMARY KEY (group_name, msg_tag, msg_key)
);

-- Rows the log plugin writes: the payment log and the cancellation audit trail.
CREATE TABLE shop_audit_log (
    id              BIGINT PRIMARY KEY,
    order_id        BIGINT NOT NULL,
    user_id         BIGINT NOT NULL,
    kind            TEXT   NOT NULL CHECK (kind IN ('paid', 'cancelled')),
    amount          BIGINT NOT NULL,
    note            TEXT   NOT NULL,
    event_id        TEXT   NOT NULL,
    plugin_version  TEXT   NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE INDEX shop_audit_log_order ON shop_audit_log (order_id);

-- Events a plugin could not handle after its retries, with why; redrive re-runs them.
CREATE TABLE shop_dead_letter (
    id              BIGINT PRIMARY KEY,
    plugin          TEXT   NOT NULL,
    plugin_version  TEXT   NOT NULL,
    subject         TEXT   NOT NULL,
    event_id        TEXT   NOT NULL,
    body            TEXT   NOT NULL,
    reason          TEXT   NOT NULL,
    attempts        BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    redriven_at     BIGINT,
    redrive_result  TEXT
);
CREATE INDEX shop_dead_letter_plugin ON shop_dead_letter (plugin, redriven_at);
