-- Drops the dead-letter table with its indexes and every row in it (including rows adopted
-- from the system this service replaced). Export what you need first.
DROP TABLE IF EXISTS opensearch_indexing_dlq;
