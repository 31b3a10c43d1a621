"""The OpenSearch sink: index and alias definition, `_bulk` bodies and answers, group commit,
the retry policy for bulk items, and the circuit breaker that pauses consumption."""
