-- Dead letters an operator can read, replay and purge, and dead letters from
-- broker consumers.
--
-- A dead letter is `open` until an operator replays it (`replayed`, by whom
-- and when) or purges it with a reason (`purged`: final). Rows and payloads
-- are kept either way. Every failure, replay and purge of a dead letter is a
-- row of dead_letter_history, its error chain.

-- The outbox row a delivery dead letter gave up on; replaying puts it back
-- to pending, and when it fails again the same dead letter reopens.
ALTER TABLE dead_letters ADD COLUMN outbox_id INTEGER REFERENCES outbox (id);
-- From the event when there is one, else as the broker's headers said.
ALTER TABLE dead_letters ADD COLUMN coi TEXT;
-- The broker routing key (delivery and broker dead letters).
ALTER TABLE dead_letters ADD COLUMN routing_key TEXT;
-- When the first attempt was made: the message's arrival, the outbox row's
-- creation (the relay tries a new row at once), the broker's first death.
-- NULL only for rows written before this column; readers fall back to
-- created_at.
ALTER TABLE dead_letters ADD COLUMN first_attempt_at TEXT;
-- The latest failed attempt (dead-lettering, a failed replay, a reopen).
ALTER TABLE dead_letters ADD COLUMN last_attempt_at TEXT;
ALTER TABLE dead_letters ADD COLUMN replayed_at TEXT;
ALTER TABLE dead_letters ADD COLUMN replayed_by TEXT;
ALTER TABLE dead_letters ADD COLUMN purged_at TEXT;
ALTER TABLE dead_letters ADD COLUMN purged_by TEXT;
ALTER TABLE dead_letters ADD COLUMN purge_reason TEXT;
-- Idempotency key of a broker dead letter (message id or payload hash,
-- queue, reason, death count, first death time): the same dead message
-- delivered twice is kept once.
ALTER TABLE dead_letters ADD COLUMN broker_key TEXT;

-- Rows written before: the delivery's outbox row (an event goes to a sink
-- once, so event + route + sink names it), the event's COI, the first and
-- last attempt times.
UPDATE dead_letters
SET outbox_id = (
    SELECT MAX(o.id) FROM outbox o
    WHERE o.event_id = dead_letters.event_id
      AND o.route = dead_letters.route
      AND o.sink = dead_letters.sink
      AND o.state = 'dead'
)
WHERE stage = 'deliver';
UPDATE dead_letters
SET coi = (SELECT e.coi FROM events e WHERE e.event_id = dead_letters.event_id)
WHERE event_id IS NOT NULL;
UPDATE dead_letters
SET routing_key = (SELECT o.routing_key FROM outbox o WHERE o.id = dead_letters.outbox_id)
WHERE outbox_id IS NOT NULL;
UPDATE dead_letters
SET first_attempt_at = COALESCE(
        CASE WHEN stage = 'deliver'
            THEN (SELECT o.created_at FROM outbox o WHERE o.id = dead_letters.outbox_id)
            ELSE (SELECT m.received_at FROM messages m WHERE m.id = dead_letters.message_row)
        END,
        created_at),
    last_attempt_at = created_at;

CREATE UNIQUE INDEX dead_letters_broker_key ON dead_letters (broker_key)
    WHERE broker_key IS NOT NULL;
-- `dlq list` (open ones, newest first) and `replay --all --reason CODE`.
CREATE INDEX dead_letters_status ON dead_letters (status, id);
CREATE INDEX dead_letters_status_code ON dead_letters (status, code, id);
-- A replayed delivery that fails again reopens its dead letter.
CREATE INDEX dead_letters_outbox ON dead_letters (outbox_id) WHERE outbox_id IS NOT NULL;

CREATE TRIGGER dead_letters_status_insert BEFORE INSERT ON dead_letters
WHEN NEW.status NOT IN ('open', 'replayed', 'purged')
BEGIN
    SELECT RAISE(ABORT, 'dead_letters.status must be open, replayed or purged');
END;

CREATE TRIGGER dead_letters_status_update BEFORE UPDATE OF status ON dead_letters
WHEN NEW.status NOT IN ('open', 'replayed', 'purged')
BEGIN
    SELECT RAISE(ABORT, 'dead_letters.status must be open, replayed or purged');
END;

-- A purge is an operator's final word, with a reason: nothing changes after it.
CREATE TRIGGER dead_letters_purged_is_final BEFORE UPDATE ON dead_letters
WHEN OLD.status = 'purged'
BEGIN
    SELECT RAISE(ABORT, 'a purged dead letter is final');
END;

-- Purging marks; it never deletes.
CREATE TRIGGER dead_letters_no_delete BEFORE DELETE ON dead_letters
BEGIN
    SELECT RAISE(ABORT, 'dead letters are kept; purge marks them');
END;

-- The error chain of each dead letter: its failures (`dead_lettered`,
-- `replay_failed`), replays and purge, oldest first. Append-only.
CREATE TABLE dead_letter_history (
    id          INTEGER PRIMARY KEY,
    dead_letter INTEGER NOT NULL REFERENCES dead_letters (id),
    at          TEXT    NOT NULL,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL
        CHECK (action IN ('dead_lettered', 'replay_failed', 'replayed', 'purged')),
    -- The reason code of a failure.
    code        TEXT,
    -- A failure's reason, what a replay did, or why it was purged.
    note        TEXT    NOT NULL
);
CREATE INDEX dead_letter_history_dead_letter ON dead_letter_history (dead_letter, id);

INSERT INTO dead_letter_history (dead_letter, at, actor, action, code, note)
SELECT id, created_at, 'system', 'dead_lettered', code, reason FROM dead_letters ORDER BY id;

CREATE TRIGGER dead_letter_history_no_update BEFORE UPDATE ON dead_letter_history
BEGIN
    SELECT RAISE(ABORT, 'dead_letter_history is append-only');
END;

CREATE TRIGGER dead_letter_history_no_delete BEFORE DELETE ON dead_letter_history
BEGIN
    SELECT RAISE(ABORT, 'dead_letter_history is append-only');
END;

-- Who did what to one subject (`dead_letter:7`), for operators.
CREATE INDEX audit_log_subject ON audit_log (subject, id);
