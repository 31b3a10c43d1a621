-- Transactional outbox: a service inserts its listing events here in the same transaction as
-- the listing change; `stream-indexer outbox relay` publishes them to Kafka and sets sent_at
-- only after the broker acknowledged the record.
CREATE TABLE IF NOT EXISTS listing_events_outbox (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        UUID        NOT NULL,
    listing_id      BIGINT      NOT NULL CHECK (listing_id > 0),
    version         BIGINT      NOT NULL CHECK (version >= 0),
    topic           TEXT        NOT NULL,
    key             BYTEA       NOT NULL,
    value           BYTEA       NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts        INTEGER     NOT NULL DEFAULT 0,
    last_error      TEXT,
    last_attempt_at TIMESTAMPTZ,
    sent_at         TIMESTAMPTZ
);

-- The relay walks pending rows in id order and checks "is there an earlier pending row for this
-- listing?" for each: both lookups stay on these small partial indexes.
CREATE INDEX IF NOT EXISTS listing_events_outbox_pending_idx
    ON listing_events_outbox (id) WHERE sent_at IS NULL;
CREATE INDEX IF NOT EXISTS listing_events_outbox_listing_pending_idx
    ON listing_events_outbox (listing_id, id) WHERE sent_at IS NULL;
CREATE INDEX IF NOT EXISTS listing_events_outbox_sent_at_idx
    ON listing_events_outbox (sent_at) WHERE sent_at IS NOT NULL;
