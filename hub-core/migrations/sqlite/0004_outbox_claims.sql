-- Outbox claims, for several hubs on one store (PostgreSQL). An instance
-- that takes pending rows to publish marks them its own until lease_until;
-- once that has passed (the instance died or hung), another instance may
-- take them. A single SQLite hub leaves both columns empty.
ALTER TABLE outbox ADD COLUMN lease_owner TEXT;
ALTER TABLE outbox ADD COLUMN lease_until TEXT;
