"""Kafka settings for the streams layer, read from the environment.

Every component takes a small typed settings object instead of reading
``os.environ`` itself, so tests can build one directly and the environment is
read in exactly one place. All variables share the ``AGENTSTREAM_`` prefix.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from streams.security import KafkaSecurity

ENV_PREFIX = "AGENTSTREAM_"


@dataclass(frozen=True)
class KafkaSettings:
    """Where Kafka is and how the session-keyed topics are laid out."""

    bootstrap: str = "127.0.0.1:9092"
    """Comma-separated ``host:port`` list (``AGENTSTREAM_KAFKA_BOOTSTRAP``)."""
    topic_prefix: str = "agentstream"
    """Prefix of every topic name, ``<prefix>.inbox`` etc. (``AGENTSTREAM_TOPIC_PREFIX``)."""
    partitions: int = 4
    """Partition count shared by all session-keyed topics (``AGENTSTREAM_PARTITIONS``).

    It bounds how many engines can share the work (one per partition at most), and
    every partition is a separate Kafka transaction stream: with more partitions
    each transaction carries fewer commands, and there are more transactions, each
    costing broker and client CPU whatever it carries, so on a small machine fewer
    partitions give more steps/s (``bench_engine throughput --partitions N``; figures
    in docs/benchmarks.md). Size it to the engines you will run, with headroom only as
    needed, before creating the topics (it cannot shrink; docs/operations.md)."""
    replication_factor: int = 1
    """Replication factor of new topics (``AGENTSTREAM_REPLICATION_FACTOR``)."""
    fetch_max_wait_ms: int = 100
    """Longest a hot-path consumer's fetch waits at the broker for data
    (``AGENTSTREAM_FETCH_MAX_WAIT_MS``). The broker answers as soon as data is
    there, but aiokafka does not re-fetch a partition whose records were just
    consumed while a fetch to the same broker is waiting, so this bounds that
    stall. Too short and empty fetches burn the broker's and our CPU; too long and
    that stall adds latency (the trade-off measured with ``bench_engine``,
    docs/benchmarks.md)."""
    security: KafkaSecurity = field(default_factory=KafkaSecurity)
    """TLS and SASL settings (``AGENTSTREAM_KAFKA_SECURITY_PROTOCOL`` etc.,
    :mod:`streams.security`); every client gets them through :meth:`client_config`."""

    def __post_init__(self) -> None:
        if not self.bootstrap.strip():
            raise ValueError("bootstrap must not be empty")
        if not self.topic_prefix or any(c not in _TOPIC_CHARS for c in self.topic_prefix):
            raise ValueError(
                f"topic prefix {self.topic_prefix!r} must be non-empty and use only "
                "letters, digits, '.', '_' and '-'"
            )
        if self.partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {self.partitions}")
        if self.replication_factor < 1:
            raise ValueError(f"replication factor must be >= 1, got {self.replication_factor}")

    def client_config(self) -> dict[str, Any]:
        """How every Kafka client of ours reaches the cluster (aiokafka keyword arguments).

        The one place that knows it: producers, consumers and admin clients all
        start from this (:mod:`streams.clients`), so a setting added here reaches
        every client at once: the security settings do (one shared TLS context).
        """
        return {"bootstrap_servers": self.bootstrap, **self.security.client_config()}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KafkaSettings:
        """Build settings from ``AGENTSTREAM_*`` variables; unset ones keep their default.

        A malformed number raises ``ValueError`` naming the variable, rather than
        silently falling back to the default.
        """
        env = os.environ if environ is None else environ
        defaults = cls()
        return cls(
            bootstrap=env.get(f"{ENV_PREFIX}KAFKA_BOOTSTRAP", defaults.bootstrap),
            topic_prefix=env.get(f"{ENV_PREFIX}TOPIC_PREFIX", defaults.topic_prefix),
            partitions=_int(env, f"{ENV_PREFIX}PARTITIONS", defaults.partitions),
            replication_factor=_int(
                env, f"{ENV_PREFIX}REPLICATION_FACTOR", defaults.replication_factor
            ),
            fetch_max_wait_ms=_int(
                env, f"{ENV_PREFIX}FETCH_MAX_WAIT_MS", defaults.fetch_max_wait_ms
            ),
            security=KafkaSecurity.from_env(env),
        )


# Kafka's legal topic characters (Topic.LEGAL_CHARS in the Java client).
_TOPIC_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer") from None


def env_number(env: Mapping[str, str], name: str, default: float) -> float:
    """``env[name]`` as a number, ``default`` when unset or blank; a malformed value
    raises ``ValueError`` naming the variable (every package's settings use this)."""
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None
