"""Dead-letter records: what any consumer does with a record it cannot use.

A poison record is copied to the DLQ topic with its original key, value and
headers, plus headers that say where it came from and why it was refused, so
the partition it came from can move on and an operator can inspect, fix and
re-produce it (``agentstream dlq``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Headers = list[tuple[str, bytes]]

ORIGIN_TOPIC = "dlq.origin.topic"
ORIGIN_PARTITION = "dlq.origin.partition"
ORIGIN_OFFSET = "dlq.origin.offset"
ERROR = "dlq.error"
REASON = "dlq.reason"
SOURCE = "dlq.source"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record refused by a consumer, ready to produce to the DLQ topic."""

    key: bytes | None
    """The original key (the session id for session-keyed topics)."""
    value: bytes | None
    """The original value bytes, untouched."""
    headers: Headers
    """The original headers followed by the ``dlq.*`` headers."""


def dead_letter(
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    headers: Headers | tuple[tuple[str, bytes], ...],
    reason: str,
    error: str,
    source: str,
) -> DeadLetter:
    """Wrap a refused record.

    ``reason`` is a short machine-readable class (undecodable, rejected, error);
    ``error`` the human explanation; ``source`` the consumer that refused it.
    """
    extra = [
        (ORIGIN_TOPIC, topic.encode()),
        (ORIGIN_PARTITION, str(partition).encode()),
        (ORIGIN_OFFSET, str(offset).encode()),
        (REASON, reason.encode()),
        (ERROR, error.encode("utf-8", "replace")[:4096]),
        (SOURCE, source.encode()),
    ]
    return DeadLetter(key, value, [*headers, *extra])


def dead_letter_of(record: Any, *, reason: str, error: str, source: str) -> DeadLetter:
    """:func:`dead_letter` of an aiokafka ``ConsumerRecord`` (topic, partition, offset, key,
    value and headers taken from it)."""
    return dead_letter(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        headers=tuple(record.headers or ()),
        reason=reason,
        error=error,
        source=source,
    )
