-- The last stream sequence a replay has run (NULL before its first chunk): a replay cancelled,
-- failed or interrupted by a restart goes on from the next one, and its record says which.
ALTER TABLE shop_replay ADD COLUMN last_seq BIGINT;
