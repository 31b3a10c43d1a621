-- Dead-letter lifecycle (docs/dlq.md, "Lifecycle"): a row is open until it is resolved.
-- resolved_at NULL means open; resolution says how it closed: indexed (its own record was
-- written, by retry or a replayed copy), superseded (a newer version of the listing was
-- indexed), stale (the sink already held a newer version when its record was written) or
-- purged (by an operator; the row stays as an audit record unless purged with --hard).
-- version is the letter's event version where its value could be read, so the indexer can
-- resolve rows at or below a version it wrote. replayed_at / replay_count record what
-- `dlq replay` published. Existing rows stay open.

ALTER TABLE opensearch_indexing_dlq
    ADD COLUMN IF NOT EXISTS version      bigint,
    ADD COLUMN IF NOT EXISTS resolved_at  timestamptz,
    ADD COLUMN IF NOT EXISTS resolution   text,
    ADD COLUMN IF NOT EXISTS replayed_at  timestamptz,
    ADD COLUMN IF NOT EXISTS replay_count integer NOT NULL DEFAULT 0;

ALTER TABLE opensearch_indexing_dlq
    ADD CONSTRAINT opensearch_indexing_dlq_resolution_check CHECK (
        (resolved_at IS NULL AND resolution IS NULL)
        OR (resolved_at IS NOT NULL AND resolution IS NOT NULL
            AND resolution IN ('indexed', 'superseded', 'stale', 'purged'))
    );

-- Rows written before this migration: the version from the stored event, when it has one.
UPDATE opensearch_indexing_dlq
SET version = (data ->> 'version')::bigint
WHERE version IS NULL
  AND jsonb_typeof(data -> 'version') = 'number'
  AND (data ->> 'version') ~ '^[0-9]{1,18}$';

-- The resolver looks up open rows by listing; the gauges count and age open rows.
CREATE INDEX IF NOT EXISTS opensearch_indexing_dlq_open_listing_idx
    ON opensearch_indexing_dlq (listing_id, version) WHERE resolved_at IS NULL;
CREATE INDEX IF NOT EXISTS opensearch_indexing_dlq_open_created_at_idx
    ON opensearch_indexing_dlq (created_at) WHERE resolved_at IS NULL;
CREATE INDEX IF NOT EXISTS opensearch_indexing_dlq_resolved_at_idx
    ON opensearch_indexing_dlq (resolved_at) WHERE resolved_at IS NOT NULL;
