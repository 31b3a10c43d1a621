"""Reindex: rebuild the index into `<index>_v<N+1>` while live indexing goes on, then cut over."""
