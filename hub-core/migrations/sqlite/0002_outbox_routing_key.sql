-- The broker routing key, filled from the route's template when the event was
-- routed, so that a later edit of the template does not re-key events
-- already waiting. Empty for rows routed before this column existed (the
-- relay then falls back to the event's kind).
ALTER TABLE outbox ADD COLUMN routing_key TEXT NOT NULL DEFAULT '';
