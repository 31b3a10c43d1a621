-- Degraded dead letters (docs/dlq.md): the table is the store of record for a dead letter's
-- bytes. value holds the source value up to dlq.table_max_value_bytes; beyond that, its first
-- bytes, with value_truncated set. value_size and value_sha256 always describe the original,
-- so a DLQ topic record that left its value out (x-dlq-value-truncated) can be matched and
-- checked when replay fetches the bytes from here. Rows written before this migration have
-- NULL size and hash.

ALTER TABLE opensearch_indexing_dlq
    ADD COLUMN IF NOT EXISTS value_size      bigint,
    ADD COLUMN IF NOT EXISTS value_sha256    text,
    ADD COLUMN IF NOT EXISTS value_truncated boolean NOT NULL DEFAULT false;
