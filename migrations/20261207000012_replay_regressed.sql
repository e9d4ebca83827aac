-- Of a dry-run's failed events, those a version had applied on the inputs the recording
-- holds: the candidate's own failures, which a release gate must see, apart from the
-- stream's (a malformed event, history from before inputs were recorded). Counted per
-- replay, and marked per event (1) so that they can be listed.
ALTER TABLE shop_replay ADD COLUMN regressed_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE shop_replay_event ADD COLUMN regressed BIGINT NOT NULL DEFAULT 0;
