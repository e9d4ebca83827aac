-- Which database this is: one row, made once with the database. Stream SHOP carries the id of
-- the database its events belong to (in its metadata), so that a host on another database
-- (its own SQLite file beside a fleet's, an empty one after its file went missing) does not
-- consume the stream's events into it, writing their effects where the orders are not.
CREATE TABLE shop_database (
    one         INTEGER NOT NULL PRIMARY KEY CHECK (one = 1),
    id          TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL
);
