-- Which capabilities a plugin name may hold, as an operator granted them (the admin API).
-- A name without a row has its configured or built-in grant. Capabilities are the WIT's
-- names, comma-separated.
CREATE TABLE shop_plugin_grant (
    plugin       VARCHAR(64) PRIMARY KEY,
    capabilities TEXT        NOT NULL,
    updated_at   BIGINT      NOT NULL,
    updated_by   TEXT        NOT NULL
);
