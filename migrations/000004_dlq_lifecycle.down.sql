-- Drops the lifecycle columns. Resolved rows stay in the table and look open again:
-- delete them first (`dlq purge --resolved --older-than 0s --yes`) if that is not wanted.
DROP INDEX IF EXISTS opensearch_indexing_dlq_resolved_at_idx;
DROP INDEX IF EXISTS opensearch_indexing_dlq_open_created_at_idx;
DROP INDEX IF EXISTS opensearch_indexing_dlq_open_listing_idx;
ALTER TABLE opensearch_indexing_dlq
    DROP CONSTRAINT IF EXISTS opensearch_indexing_dlq_resolution_check,
    DROP COLUMN IF EXISTS replay_count,
    DROP COLUMN IF EXISTS replayed_at,
    DROP COLUMN IF EXISTS resolution,
    DROP COLUMN IF EXISTS resolved_at,
    DROP COLUMN IF EXISTS version;
