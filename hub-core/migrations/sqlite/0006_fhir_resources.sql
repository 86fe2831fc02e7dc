-- Resources partners create or update at the hub's FHIR endpoint: what a
-- read, a conditional create (If-None-Exist) or a relative reference finds.
-- A resource's version is the row of the message that last wrote it; its
-- identifiers point at it by (type, system, value). Written in the commit
-- that accepts the message, never for a message that failed.
CREATE TABLE fhir_resources (
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    version BIGINT NOT NULL,
    message_row BIGINT NOT NULL,
    body TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (resource_type, id)
);
CREATE INDEX fhir_resources_message ON fhir_resources (message_row);

CREATE TABLE fhir_identifiers (
    resource_type TEXT NOT NULL,
    system TEXT NOT NULL,
    value TEXT NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (resource_type, system, value)
);
