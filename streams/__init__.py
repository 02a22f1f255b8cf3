"""streams: the Kafka side of agentstream.

Depends on :mod:`schemas` only. The pieces::

    settings    KafkaSettings           where Kafka is, from AGENTSTREAM_* variables
    catalogue   Catalogue, TopicSpec    topic names, partitions, retention (spelled only here)
    partitioner murmur2 ...             Java's default partitioner, bit for bit
    producer    Producer, ...           idempotent, batched, keyed producer; transactional factory
    consumer    tail, end_offsets ...   read_committed consumers, offset helpers, decoded tailing
    admin       ensure_topics ...       create, describe and compare topics against the catalogue
    jsonlines   validate_lines ...      validate a JSON-lines file before anything is sent
    errors      StreamsError ...        the exception tree
    dlq         dead_letter ...         DLQ records with origin and error headers
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streams.admin import (
        Mismatch,
        TopicDescription,
        TopicsReport,
        check_topics,
        delete_topics,
        describe_topics,
        ensure_topics,
        require_ok,
    )
    from streams.catalogue import Catalogue, TopicSpec
    from streams.consumer import TailedRecord, create_consumer, end_offsets, tail
    from streams.errors import (
        KafkaUnavailableError,
        StreamsError,
        TopicMismatchError,
        TopicNotFoundError,
    )
    from streams.jsonlines import LineError, ValidatedLines, validate_lines
    from streams.partitioner import (
        murmur2,
        murmur2_partitioner,
        partition_for_key,
        session_partition,
    )
    from streams.producer import OutgoingRecord, Producer, transactional_producer
    from streams.settings import KafkaSettings

# Public name -> defining module. Loaded on first use, so that importing
# ``streams.settings`` (the CLI parser does) does not import aiokafka.
_EXPORTS: dict[str, str] = {
    "KafkaSettings": "settings",
    "Catalogue": "catalogue",
    "TopicSpec": "catalogue",
    "murmur2": "partitioner",
    "partition_for_key": "partitioner",
    "murmur2_partitioner": "partitioner",
    "session_partition": "partitioner",
    "OutgoingRecord": "producer",
    "Producer": "producer",
    "transactional_producer": "producer",
    "TailedRecord": "consumer",
    "create_consumer": "consumer",
    "end_offsets": "consumer",
    "tail": "consumer",
    "Mismatch": "admin",
    "TopicDescription": "admin",
    "TopicsReport": "admin",
    "check_topics": "admin",
    "delete_topics": "admin",
    "describe_topics": "admin",
    "ensure_topics": "admin",
    "require_ok": "admin",
    "LineError": "jsonlines",
    "ValidatedLines": "jsonlines",
    "validate_lines": "jsonlines",
    "KafkaUnavailableError": "errors",
    "StreamsError": "errors",
    "TopicMismatchError": "errors",
    "TopicNotFoundError": "errors",
}

__all__ = [
    "Catalogue",
    "KafkaSettings",
    "KafkaUnavailableError",
    "LineError",
    "Mismatch",
    "OutgoingRecord",
    "Producer",
    "StreamsError",
    "TailedRecord",
    "TopicDescription",
    "TopicMismatchError",
    "TopicNotFoundError",
    "TopicSpec",
    "TopicsReport",
    "ValidatedLines",
    "check_topics",
    "create_consumer",
    "delete_topics",
    "describe_topics",
    "end_offsets",
    "ensure_topics",
    "murmur2",
    "murmur2_partitioner",
    "partition_for_key",
    "require_ok",
    "session_partition",
    "tail",
    "transactional_producer",
    "validate_lines",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'streams' has no attribute {name!r}")
    return getattr(importlib.import_module(f"streams.{module}"), name)
