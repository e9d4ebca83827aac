-- Of a dry-run's failed events, those a version had applied live on the inputs the
-- recording holds: the candidate's own failures, which a release gate must see, apart from
-- the stream's (a malformed event, history from before inputs were recorded).
ALTER TABLE shop_replay ADD COLUMN regressed_count BIGINT NOT NULL DEFAULT 0;
