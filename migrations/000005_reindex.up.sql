-- Reindex runs (docs/operations.md, "Reindex and repair"): one row per `stream-indexer reindex`
-- run, the state a rerun resumes from after a crash. phase moves
-- backfill -> catchup -> grace -> done, or ends aborted / failed; a done run may become
-- rolling_back -> rolled_back. last_id is the backfill's keyset checkpoint (the highest source
-- id whose page OpenSearch acknowledged); live_offsets are the live group's committed offsets
-- taken before the backfill read its first row (where the catch-up group starts), and
-- cutover_offsets the live group's offsets at the alias switch (where a rollback replays from),
-- both as {"<partition>": offset}. index_body is what the new index was created with (a rerun
-- that finds the index missing creates it with the same mapping).

CREATE TABLE IF NOT EXISTS stream_indexer_reindex_runs (
    id                 bigserial   PRIMARY KEY,
    alias              text        NOT NULL,
    old_index          text,
    new_index          text        NOT NULL,
    source             text        NOT NULL CHECK (source IN ('postgres', 'topic')),
    phase              text        NOT NULL CHECK (phase IN (
                           'backfill', 'catchup', 'grace', 'done', 'aborted', 'failed',
                           'rolling_back', 'rolled_back')),
    last_id            bigint      NOT NULL DEFAULT 0,
    rows_done          bigint      NOT NULL DEFAULT 0,
    rows_total         bigint      NOT NULL DEFAULT 0,
    tombstones_carried bigint      NOT NULL DEFAULT 0,
    tombstones_done    boolean     NOT NULL DEFAULT false,
    dead_lettered      bigint      NOT NULL DEFAULT 0,
    resumes            integer     NOT NULL DEFAULT 0,
    docs_per_s         double precision,
    catchup_lag        bigint,
    index_body         jsonb,
    live_offsets       jsonb,
    cutover_offsets    jsonb,
    error              text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    cutover_at         timestamptz,
    finished_at        timestamptz
);

-- At most one open run per alias (the advisory lock keeps two processes apart; this keeps
-- two open rows apart even if the lock were bypassed).
CREATE UNIQUE INDEX IF NOT EXISTS stream_indexer_reindex_runs_open_key
    ON stream_indexer_reindex_runs (alias)
    WHERE phase IN ('backfill', 'catchup', 'grace', 'rolling_back');
