"""Operator repairs of dead letters: `dlq retry` re-indexes letters through the pipeline's
own document path, `dlq replay` republishes them to the source topic.

They live above `pipeline/` because they reuse it; `dlq/` itself (the stores) stays below it.
"""
