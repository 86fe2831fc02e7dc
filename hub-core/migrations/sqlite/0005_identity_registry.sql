-- The identity registry: one therapy per chain of identity (COI), every
-- identifier seen for it, and the events held until their identity is
-- settled. Patient data is never kept in clear: names, birth dates and MRNs
-- are sealed (AES-256-GCM, "v1:<key id>:…", bound to the COI), and compared
-- by keyed hashes (HMAC-SHA256 of the normalised value).

CREATE TABLE therapies (
    coi              TEXT    PRIMARY KEY,
    product          TEXT,
    order_id         TEXT,
    state            TEXT    NOT NULL CHECK (state IN ('active', 'cancelled', 'completed')),
    -- Kinds of the events that went on for it, comma-separated, in order
    -- of first arrival (the sequence rules read them).
    milestones       TEXT    NOT NULL DEFAULT '',
    name_sealed      TEXT,
    birth_date_sealed TEXT,
    mrn_sealed       TEXT,
    name_index       TEXT,
    birth_date_index TEXT,
    -- The message that registered it.
    message_row      INTEGER NOT NULL REFERENCES messages (id),
    created_at       TEXT    NOT NULL,
    updated_at       TEXT    NOT NULL
);

-- The crosswalk: each identifier belongs to one COI, forever (a second COI
-- for the same key is a conflict, never an update).
CREATE TABLE identifiers (
    -- kind|authority|value; an MRN's value is its keyed hash.
    key         TEXT    PRIMARY KEY,
    kind        TEXT    NOT NULL,
    authority   TEXT    NOT NULL,
    -- As stated; empty for an MRN.
    value       TEXT    NOT NULL,
    coi         TEXT    NOT NULL REFERENCES therapies (coi),
    -- connector/partner that asserted the link, and its message.
    asserted_by TEXT    NOT NULL,
    message_id  TEXT,
    message_row INTEGER NOT NULL REFERENCES messages (id),
    created_at  TEXT    NOT NULL
);
CREATE INDEX identifiers_coi ON identifiers (coi);

-- Events that did not go on: held (identifiers unknown yet, or out of
-- sequence) or quarantined (a conflict). The event is kept as mapped;
-- released events move to `events` and the outbox.
CREATE TABLE holds (
    id          INTEGER PRIMARY KEY,
    event_id    TEXT    NOT NULL UNIQUE,
    message_row INTEGER NOT NULL REFERENCES messages (id),
    kind        TEXT    NOT NULL,
    coi         TEXT,
    order_id    TEXT,
    product     TEXT,
    occurred_at TEXT    NOT NULL,
    recorded_at TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    -- unknown_identifiers, out_of_sequence, identity_conflict
    reason      TEXT    NOT NULL,
    detail      TEXT    NOT NULL,
    -- JSON array of the event's registry keys (re-evaluation when one is
    -- linked); "coi||<COI>" stands for its own COI, linked when its order
    -- registers it.
    keys        TEXT    NOT NULL,
    -- Keyed hashes of the name and birth date it states, checked again on
    -- release.
    name_index  TEXT,
    birth_date_index TEXT,
    state       TEXT    NOT NULL
        CHECK (state IN ('held', 'released', 'rejected', 'expired', 'quarantined')),
    deadline    TEXT,
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL,
    resolved_by TEXT,
    resolution  TEXT
);
CREATE INDEX holds_open ON holds (state, deadline) WHERE state = 'held';
CREATE INDEX holds_coi ON holds (coi);

-- Which open hold waits on which key.
CREATE TABLE hold_keys (
    key     TEXT    NOT NULL,
    hold_id INTEGER NOT NULL REFERENCES holds (id),
    PRIMARY KEY (key, hold_id)
);

-- Which key the registry's keyed hashes were made with (a fingerprint: an
-- HMAC of a fixed label, revealing nothing of the key). Every hub on this
-- store must hash with the same key, or one patient's MRN would look like
-- two: a hub whose key differs refuses to start.
CREATE TABLE registry_keys (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    fingerprint TEXT    NOT NULL,
    created_at  TEXT    NOT NULL
);
