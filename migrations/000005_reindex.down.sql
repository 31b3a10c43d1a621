DROP TABLE IF EXISTS stream_indexer_reindex_runs;
