"""Errors of the streams package.

StreamsError                 anything the streams layer refuses or cannot do
 ├── TopicNotFoundError      a topic we need does not exist (run `agentstream topics create`)
 ├── TopicMismatchError      an existing topic differs from the catalogue; never used silently
 └── KafkaUnavailableError   no broker answered at the bootstrap address
"""

from __future__ import annotations

from agentstream.errors import AgentstreamError


class StreamsError(AgentstreamError):
    """Base of the streams layer's own errors."""


class TopicNotFoundError(StreamsError, LookupError):
    """A topic we need does not exist."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        super().__init__(f"topic {topic!r} does not exist (run `agentstream topics create`)")


class TopicMismatchError(StreamsError):
    """Existing topics differ from the catalogue (partition count or configs)."""


class KafkaUnavailableError(StreamsError):
    """No broker answered at the bootstrap address."""
