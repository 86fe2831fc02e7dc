-- cgthub store schema, SQLite.
--
-- Portable on purpose, so that a PostgreSQL twin is a translation: INTEGER
-- ids (BIGINT there), TEXT timestamps in RFC 3339 UTC with milliseconds
-- ("2026-11-21T09:14:02.311Z", fixed width, so text order is time order),
-- CHECK constraints instead of enums, JSON kept as TEXT exactly as given.
-- Row ids of messages, dead_letters and audit_log are assigned by the store's
-- single writer inside its write transaction.

-- Raw inbound messages, exactly as received, with their disposition.
CREATE TABLE messages (
    id           INTEGER PRIMARY KEY,
    connector    TEXT    NOT NULL,
    partner      TEXT    NOT NULL,
    -- The partner's own id (HL7 MSH-10). NULL never conflicts.
    message_id   TEXT,
    content_type TEXT    NOT NULL,
    payload      BLOB    NOT NULL,
    -- Lowercase hex SHA-256 of payload.
    sha256       TEXT    NOT NULL,
    status       TEXT    NOT NULL
        CHECK (status IN ('accepted', 'mapped', 'held', 'routed', 'dead', 'rejected')),
    error_code   TEXT,
    error        TEXT,
    -- Stage of the error, when there is one.
    stage        TEXT,
    received_at  TEXT    NOT NULL,
    -- Peer address or file path.
    origin       TEXT    NOT NULL,
    updated_at   TEXT    NOT NULL
);
-- The dedup key: a partner's message id is taken once it was accepted. A
-- message that failed or was refused does not hold its id, so the partner
-- can resend it, fixed, under the same id.
CREATE UNIQUE INDEX messages_dedup ON messages (connector, partner, message_id)
    WHERE status NOT IN ('dead', 'rejected');
-- File dedup by payload hash (files have no message id). Partial: a random
-- key per row would dirty an index page per message at intake.
CREATE INDEX messages_sha256 ON messages (sha256) WHERE message_id IS NULL;
-- Status counts, and finding held messages to retry.
CREATE INDEX messages_status ON messages (status);

-- Canonical events, one row per event, body as serialised at intake.
CREATE TABLE events (
    event_id    TEXT    PRIMARY KEY,  -- UUIDv7, hyphenated lowercase
    message_row INTEGER NOT NULL REFERENCES messages (id),
    kind        TEXT    NOT NULL,
    coi         TEXT,
    order_id    TEXT,
    product     TEXT,
    occurred_at TEXT    NOT NULL,
    recorded_at TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    -- 'unmatched': no route wanted it; kept and visible, never delivered.
    routing     TEXT    NOT NULL CHECK (routing IN ('routed', 'unmatched'))
);
CREATE INDEX events_coi ON events (coi);
CREATE INDEX events_kind ON events (kind);
CREATE INDEX events_message_row ON events (message_row);
-- Small: only unmatched events are in it.
CREATE INDEX events_unmatched ON events (routing) WHERE routing = 'unmatched';

-- One row per (event, destination) until the sink confirms it.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    event_id        TEXT    NOT NULL REFERENCES events (event_id),
    route           TEXT    NOT NULL,
    sink            TEXT    NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT    NOT NULL,
    last_error      TEXT,
    created_at      TEXT    NOT NULL,
    delivered_at    TEXT
);
-- The relay's poll: pending rows of one sink that are due, in id order.
CREATE INDEX outbox_due ON outbox (state, sink, next_attempt_at, id);

-- What could not be processed or delivered, for an operator to act on.
CREATE TABLE dead_letters (
    id          INTEGER PRIMARY KEY,
    message_row INTEGER NOT NULL REFERENCES messages (id),
    event_id    TEXT    REFERENCES events (event_id),
    route       TEXT,
    sink        TEXT,
    stage       TEXT    NOT NULL,
    class       TEXT    NOT NULL CHECK (class IN ('transient', 'permanent', 'fatal')),
    code        TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT    NOT NULL,
    status      TEXT    NOT NULL DEFAULT 'open'
);
CREATE INDEX dead_letters_message_row ON dead_letters (message_row);

-- Append-only, hash-chained (see hub-core/src/store/audit.rs for the hash).
CREATE TABLE audit_log (
    id        INTEGER PRIMARY KEY,
    at        TEXT    NOT NULL,
    actor     TEXT    NOT NULL,
    action    TEXT    NOT NULL,
    subject   TEXT    NOT NULL,
    detail    TEXT    NOT NULL,  -- JSON
    prev_hash TEXT    NOT NULL,
    hash      TEXT    NOT NULL
);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
