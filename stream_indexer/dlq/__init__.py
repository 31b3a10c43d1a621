"""Dead letters: poison records go to a Postgres table (the actionable view) and a Kafka topic
(the complete log), both awaited before an offset moves (docs/contract.md sections 3 and 4).

`DeadLetter` is the record, `DeadLetterWriter` writes it to `PostgresDeadLetterTable` and
`KafkaDeadLetterTopic`; `dead_letter_headers` / `strip_dlq_headers` build and undo the
`x-dlq-*` headers (replay uses the latter).
"""

from stream_indexer.dlq.headers import dead_letter_headers, strip_dlq_headers
from stream_indexer.dlq.record import DeadLetter
from stream_indexer.dlq.table import PostgresDeadLetterTable, decode_headers
from stream_indexer.dlq.topic import KafkaDeadLetterTopic
from stream_indexer.dlq.writer import DeadLetterWriter

__all__ = [
    "DeadLetter",
    "DeadLetterWriter",
    "KafkaDeadLetterTopic",
    "PostgresDeadLetterTable",
    "dead_letter_headers",
    "decode_headers",
    "strip_dlq_headers",
]
