-- Where a dead-lettered event stands in stream SHOP, so that one whose body says nothing
-- (not JSON: its event id is "unknown") can still be found there, and replayed from.
ALTER TABLE shop_dead_letter ADD COLUMN stream_seq BIGINT;
