-- An order's story (the console's timeline) finds its events by key alone: in the outbox by
-- the order's id, in the inbox by the events' ids, whichever plugin handled them. Without an
-- index leading with the key, both were whole-table scans, on tables that only grow. The
-- inbox's lookup index now leads with the key (a batch's lookup names the plugin and its
-- keys: the same index serves it), so the inbox pays for no extra index; the outbox gets one.
DROP INDEX trade_mq_consumer_log_event;
CREATE INDEX trade_mq_consumer_log_key ON trade_mq_consumer_log (msg_key, group_name);
CREATE INDEX trade_mq_producer_temp_key ON trade_mq_producer_temp (msg_key);
