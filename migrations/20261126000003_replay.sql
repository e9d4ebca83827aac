-- What replay needs. Same conventions as the first migration (BIGINT ids, cents and unix
-- milliseconds; JSON documents as TEXT).

-- The inputs and outputs of every applied event, recorded with its inbox row: the effects
-- the plugin returned (as the API shows them) and the snapshot of reads it was given, so a
-- later version can be run on exactly the same inputs and compared.
ALTER TABLE trade_mq_consumer_log ADD COLUMN effects TEXT;
ALTER TABLE trade_mq_consumer_log ADD COLUMN reads TEXT;
-- A batch looks up its events by plugin and event id (the key also holds the subject).
CREATE INDEX trade_mq_consumer_log_event ON trade_mq_consumer_log (group_name, msg_key);

-- One replay: a range of stream SHOP run through one plugin version. Its record survives
-- restarts; `host` says which host runs it (a restarted host fails its own running ones).
CREATE TABLE shop_replay (
    id              BIGINT PRIMARY KEY,
    plugin          TEXT   NOT NULL,
    version         TEXT   NOT NULL,
    mode            TEXT   NOT NULL CHECK (mode IN ('dry-run', 'apply')),
    state           TEXT   NOT NULL CHECK (state IN ('running', 'done', 'failed', 'cancelled')),
    from_seq        BIGINT NOT NULL,
    to_seq          BIGINT NOT NULL,
    subjects        TEXT   NOT NULL,
    max_rate        BIGINT,
    total           BIGINT NOT NULL,
    processed       BIGINT NOT NULL DEFAULT 0,
    same_count      BIGINT NOT NULL DEFAULT 0,
    changed_count   BIGINT NOT NULL DEFAULT 0,
    new_count       BIGINT NOT NULL DEFAULT 0,
    failed_count    BIGINT NOT NULL DEFAULT 0,
    applied_count   BIGINT NOT NULL DEFAULT 0,
    skipped_count   BIGINT NOT NULL DEFAULT 0,
    requested_by    TEXT   NOT NULL,
    host            TEXT   NOT NULL,
    error           TEXT,
    created_at      BIGINT NOT NULL,
    finished_at     BIGINT
);

-- Each event a replay ran: its outcome and, where they differ or one is missing, the
-- recorded and the candidate effects.
CREATE TABLE shop_replay_event (
    replay_id  BIGINT NOT NULL,
    seq        BIGINT NOT NULL,
    event_id   TEXT   NOT NULL,
    subject    TEXT   NOT NULL,
    outcome    TEXT   NOT NULL CHECK (outcome IN ('same', 'changed', 'new', 'failed', 'applied', 'skipped')),
    recorded   TEXT,
    candidate  TEXT,
    reason     TEXT,
    PRIMARY KEY (replay_id, seq)
);
CREATE INDEX shop_replay_event_outcome ON shop_replay_event (replay_id, outcome, seq);
