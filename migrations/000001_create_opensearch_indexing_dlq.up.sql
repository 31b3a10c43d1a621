-- Dead letters of the indexer (DESIGN.md section 3): the latest failure per (listing_id, action),
-- with the source record's bytes so it can be replayed. Rows without a listing id (the record
-- could not be decoded far enough) are kept one per source offset.
--
-- The table may already exist from the system this service replaces (same name, columns id,
-- listing_id, action, data, attempts, last_error, created_at, last_attempt_at and a unique
-- (listing_id, action)); it is then adopted: its rows stay and the new columns are added.
--
-- headers holds the source record's Kafka headers as a JSON array of [name, base64(value)]
-- pairs, in their original order, duplicates kept, so the bytes round-trip exactly.

CREATE TABLE IF NOT EXISTS opensearch_indexing_dlq (
    id              bigserial   PRIMARY KEY,
    listing_id      bigint,
    action          text        NOT NULL,
    data            jsonb,
    attempts        integer     NOT NULL,
    last_error      text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_attempt_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE opensearch_indexing_dlq
    ADD COLUMN IF NOT EXISTS topic          text,
    ADD COLUMN IF NOT EXISTS "partition"    integer,
    ADD COLUMN IF NOT EXISTS "offset"       bigint,
    ADD COLUMN IF NOT EXISTS key            bytea,
    ADD COLUMN IF NOT EXISTS value          bytea,
    ADD COLUMN IF NOT EXISTS headers        jsonb,
    ADD COLUMN IF NOT EXISTS error_class    text NOT NULL DEFAULT 'unknown',
    ADD COLUMN IF NOT EXISTS consumer_group text;

-- The default above only fills rows adopted from the old table; writers always set it.
ALTER TABLE opensearch_indexing_dlq ALTER COLUMN error_class DROP DEFAULT;

-- Latest failure per listing and action. NULL listing ids are distinct, so they never collide.
CREATE UNIQUE INDEX IF NOT EXISTS opensearch_indexing_dlq_listing_id_action_key
    ON opensearch_indexing_dlq (listing_id, action);

-- Records whose listing id could not be recovered: one row per source offset.
CREATE UNIQUE INDEX IF NOT EXISTS opensearch_indexing_dlq_source_offset_key
    ON opensearch_indexing_dlq (topic, "partition", "offset")
    WHERE listing_id IS NULL;

CREATE INDEX IF NOT EXISTS opensearch_indexing_dlq_created_at_idx
    ON opensearch_indexing_dlq (created_at);

CREATE INDEX IF NOT EXISTS opensearch_indexing_dlq_error_class_idx
    ON opensearch_indexing_dlq (error_class);
