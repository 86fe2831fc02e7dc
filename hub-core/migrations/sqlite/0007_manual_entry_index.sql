-- The PDF entry portal lists its own messages (uploads, entries,
-- verifications) newest first. Partial: no other connector's messages pay
-- for this index. Queries must name the connector as this literal.
CREATE INDEX messages_pdf_entry ON messages (id) WHERE connector = 'pdf_entry';
