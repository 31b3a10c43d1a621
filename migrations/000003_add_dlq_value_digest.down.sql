-- Drops the value digest columns; the value bytes themselves stay in value.
ALTER TABLE opensearch_indexing_dlq
    DROP COLUMN IF EXISTS value_truncated,
    DROP COLUMN IF EXISTS value_sha256,
    DROP COLUMN IF EXISTS value_size;
