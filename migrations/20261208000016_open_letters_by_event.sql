-- no-transaction
-- Retention keeps an outbox row while its event has an open dead letter (see outbox::prune):
-- the open letters of an event, found by its id rather than by a scan per row.
CREATE INDEX CONCURRENTLY IF NOT EXISTS shop_dead_letter_open_event ON shop_dead_letter (event_id) WHERE redriven_at IS NULL;
