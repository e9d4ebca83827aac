-- W3C trace context of the request that wrote an outbox row, so the relay publishes the
-- event with its `traceparent` header (the event's CloudEvent carries it too).
ALTER TABLE trade_mq_producer_temp ADD COLUMN traceparent TEXT;
