"""Errors of the streams package.

StreamsError                 anything the streams layer refuses or cannot do
 ├── TopicNotFoundError      a topic we need does not exist (run `agentstream topics create`)
 ├── TopicMismatchError      an existing topic differs from the catalogue; never used silently
 ├── KafkaUnavailableError   no broker answered at the bootstrap address
 ├── KafkaSettingsError      (ValueError) security settings that cannot work (names the setting)
 ├── KafkaAuthenticationError the cluster refused our TLS or SASL login (names the setting)
 └── KafkaAuthorizationError an ACL refused what a client asked (names the principal)
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


class KafkaSettingsError(StreamsError, ValueError):
    """Kafka settings that cannot work; the message names the variable and flag."""


class KafkaAuthenticationError(StreamsError):
    """The cluster refused the connection's TLS or SASL set-up."""


class KafkaAuthorizationError(StreamsError):
    """A Kafka ACL refused an operation (topic, group, transactional id or cluster)."""
