"""The topic catalogue: the one place topic names and settings are spelled.

Every other module asks a :class:`Catalogue` for a :class:`TopicSpec` instead
of writing ``"agentstream.inbox"`` itself, so a prefix change (tests isolate
themselves with a unique prefix) or a retention change happens here only.

All session-keyed topics share one partition count. Partition *p* of ``inbox``,
``events``, ``llm-calls``, ``tool-calls`` and ``deltas`` therefore holds the
same sessions (co-partitioning): the engine that owns inbox partition *p* is
the only writer of events partition *p*, and a consumer of any of them can
find a session's records without a lookup.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from schemas import COMMAND_NAMES, EVENT_NAMES
from streams.settings import KafkaSettings

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
FOREVER = -1
"""``retention.ms=-1``: Kafka never deletes by age."""


@dataclass(frozen=True)
class TopicSpec:
    """One topic's name, layout and the configs we create it with and check."""

    role: str
    """Short name, the same under every prefix: ``inbox``, ``events``, ``llm-calls``..."""
    name: str
    """Full topic name, ``<prefix>.<role>``."""
    partitions: int
    """Partition count; equal for every session-keyed topic."""
    replication: int
    """Replication factor used when creating the topic."""
    retention_ms: int
    """``retention.ms``; ``-1`` keeps records forever."""
    cleanup_policy: str
    """``cleanup.policy``: ``delete`` for the logs, ``compact`` for engine-progress (a table)."""
    key: str
    """What the key holds."""
    value: str
    """What the values are (Avro records in Confluent wire format, named by the ``type`` header)."""
    session_keyed: bool
    """True when keyed by session id with the murmur2 partitioner, hence co-partitioned."""
    value_types: tuple[str, ...]
    """Record names (``type`` header) allowed on the topic; empty means any bytes (DLQ)."""
    extra_config: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Topic configs beyond retention and cleanup policy."""

    @property
    def config(self) -> dict[str, str]:
        """Every topic config we set, as Kafka spells them; these are compared on describe."""
        return {
            "cleanup.policy": self.cleanup_policy,
            "retention.ms": str(self.retention_ms),
            **self.extra_config,
        }


class Catalogue:
    """The topics of one deployment (one prefix).

    ``Catalogue("agentstream", 12, 1).inbox.name == "agentstream.inbox"``.
    """

    ROLES: tuple[str, ...] = (
        "inbox",
        "events",
        "llm-calls",
        "tool-calls",
        "deltas",
        "dlq",
        "engine-progress",
    )
    """Short names in creation order."""

    def __init__(self, prefix: str = "agentstream", partitions: int = 4, replication: int = 1):
        # KafkaSettings validates the prefix characters and the numbers for us.
        KafkaSettings(topic_prefix=prefix, partitions=partitions, replication_factor=replication)
        self.prefix = prefix
        self.partitions = partitions
        self.replication = replication

        def spec(
            role: str,
            *,
            retention_ms: int,
            key: str,
            value: str,
            types: tuple[str, ...],
            keyed: bool = True,
            cleanup: str = "delete",
        ) -> TopicSpec:
            return TopicSpec(
                role=role,
                name=f"{prefix}.{role}",
                partitions=partitions,
                replication=replication,
                retention_ms=retention_ms,
                cleanup_policy=cleanup,
                key=key,
                value=value,
                session_keyed=keyed,
                value_types=types,
            )

        session = "session id (UTF-8)"
        self.inbox = spec(
            "inbox",
            retention_ms=7 * DAY_MS,
            key=session,
            value="commands: StartSession, UserMessage, Approval, Cancel, results, timers",
            types=COMMAND_NAMES,
        )
        self.events = spec(
            "events",
            retention_ms=FOREVER,
            key=session,
            value="the event log, source of truth; written by the session engine only",
            types=EVENT_NAMES,
        )
        self.llm_calls = spec(
            "llm-calls",
            retention_ms=DAY_MS,
            key=session,
            value="LLM work items carrying the full prompt",
            types=("LLMCallWork",),
        )
        self.tool_calls = spec(
            "tool-calls",
            retention_ms=DAY_MS,
            key=session,
            value="tool work items",
            types=("ToolCallWork",),
        )
        self.deltas = spec(
            "deltas",
            retention_ms=HOUR_MS,
            key=session,
            value="token deltas for live streaming; best effort, not part of state",
            types=("TokenDelta",),
        )
        # The DLQ keeps the failed record's original key (possibly absent or not a
        # session id), so it is not part of the co-partitioned set.
        self.dlq = spec(
            "dlq",
            retention_ms=30 * DAY_MS,
            key="the failed record's original key",
            value="records that could not be decoded or applied, with origin and error headers",
            types=(),
            keyed=False,
        )
        # Where each engine transaction records how far it consumed its inbox
        # partition (key: the partition number), in the same transaction as its
        # events; see processors/engine/inbox_progress.py. Compacted: only the newest
        # per key counts.
        self.engine_progress = spec(
            "engine-progress",
            retention_ms=FOREVER,
            key="inbox partition number (decimal text)",
            value="JSON: the next inbox offset of that partition (written by the engine only)",
            types=(),
            keyed=False,
            cleanup="compact",
        )
        self._by_name = {s.name: s for s in self.all()}
        self._by_role = {s.role: s for s in self.all()}

    @classmethod
    def from_settings(cls, settings: KafkaSettings) -> Catalogue:
        """The catalogue that ``settings`` describe."""
        return cls(settings.topic_prefix, settings.partitions, settings.replication_factor)

    def all(self) -> tuple[TopicSpec, ...]:
        """Every topic, in :attr:`ROLES` order."""
        return (
            self.inbox,
            self.events,
            self.llm_calls,
            self.tool_calls,
            self.deltas,
            self.dlq,
            self.engine_progress,
        )

    def __iter__(self) -> Iterator[TopicSpec]:
        return iter(self.all())

    def by_name(self, name: str) -> TopicSpec:
        """The spec of the full topic ``name``; ``KeyError`` if it is not ours."""
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"{name!r} is not a topic of catalogue {self.prefix!r}") from None

    def resolve(self, name: str) -> TopicSpec:
        """Accept a short name (``inbox``) or a full one (``agentstream.inbox``).

        What the CLI's ``--topic`` takes; ``KeyError`` lists the valid names.
        """
        spec = self._by_role.get(name) or self._by_name.get(name)
        if spec is None:
            valid = ", ".join(self.ROLES)
            raise KeyError(f"unknown topic {name!r}; use one of {valid} or {self.prefix}.<name>")
        return spec

    def __repr__(self) -> str:
        return (
            f"Catalogue(prefix={self.prefix!r}, partitions={self.partitions}, "
            f"replication={self.replication})"
        )
