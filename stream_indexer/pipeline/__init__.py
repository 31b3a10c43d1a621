"""Per-partition processing: decode, coalesce, hydrate, build documents, track offsets.

Sits below `app/` and above the two sinks it writes to, `opensearch/` and `dlq/`.
"""
