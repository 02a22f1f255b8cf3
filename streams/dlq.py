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


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    """A dead letter read back from the DLQ topic."""

    partition: int
    """DLQ partition it sits in."""
    offset: int
    """Its offset there."""
    key: bytes | None
    """The original key."""
    value: bytes | None
    """The original value bytes."""
    headers: tuple[tuple[str, bytes], ...]
    """All headers: the original ones, then the ``dlq.*`` ones."""

    def header(self, name: str) -> str:
        """A header as text ('' when absent)."""
        for key, value in self.headers:
            if key == name:
                return value.decode("utf-8", "replace")
        return ""

    @property
    def original_headers(self) -> list[tuple[str, bytes]]:
        """The headers the record had before it was refused."""
        return [(k, v) for k, v in self.headers if not k.startswith("dlq.")]

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary: where it came from and why it was refused."""
        return {
            "partition": self.partition,
            "offset": self.offset,
            "key": None if self.key is None else self.key.decode("utf-8", "replace"),
            "type": next((v.decode() for k, v in self.headers if k == "type"), None),
            "origin": {
                "topic": self.header(ORIGIN_TOPIC),
                "partition": int(self.header(ORIGIN_PARTITION) or -1),
                "offset": int(self.header(ORIGIN_OFFSET) or -1),
            },
            "reason": self.header(REASON),
            "error": self.header(ERROR),
            "source": self.header(SOURCE),
            "bytes": 0 if self.value is None else len(self.value),
        }
