"""The one root of agentstream's errors, and the tree below it.

Every error agentstream raises on purpose is an :class:`AgentstreamError`, so a
caller can catch "anything agentstream refused" in one clause and by meaning
below it. Where callers already relied on a builtin kind (``ValueError`` for
bad input, ``LookupError`` for a missing topic), the class keeps it as a
second base. Each class lives beside the code that raises it::

    AgentstreamError
     ├── SchemaError                   schemas.errors: a schema, id or wire-format problem
     │    ├── RecordValidationError    a record does not fit its schema (names the field)
     │    └── SchemaNotFoundError      the registry has no schema with that id
     ├── SchemaRegistryUnavailableError (ConnectionError) the registry does not answer
     ├── StreamsError                  streams.errors: what the Kafka layer refuses or cannot do
     │    ├── TopicNotFoundError       (LookupError) a topic we need does not exist
     │    ├── TopicMismatchError       an existing topic differs from the catalogue
     │    ├── KafkaUnavailableError    no broker answered at the bootstrap address
     │    ├── KafkaSettingsError       (ValueError) security settings that cannot work
     │    ├── KafkaAuthenticationError the cluster refused the TLS or SASL login
     │    └── KafkaAuthorizationError  an ACL refused the principal
     ├── AgentsFileError               (ValueError) processors.agents.catalog: a bad agents file
     ├── ToolSchemaError               (TypeError) processors.agents.tool_schema: a tool's hints
     ├── ToolError                     processors.agents.builtin_tools: a tool refused its input
     ├── ModelError                    processors.agents.model_types: a model call failed
     │    ├── ProviderError            processors.executors.pool.errors: one provider request
     │    ├── ShedError                the pool shed the call (capacity)
     │    └── PoolError                no endpoint could answer
     ├── PoolConfigError               (ValueError) pool settings that cannot work
     ├── EventOrderError               (ValueError) processors.core.evolve: an event out of order
     ├── SnapshotError                 (ValueError) processors.core.snapshot: unreadable state bytes
     ├── ProgressError                 processors.engine.inbox_progress: a bad progress record
     ├── RecoveryError                 processors.engine.recovery: a partition cannot be rebuilt
     ├── OffsetResetError              streams.offsets: a position move that is refused
     ├── PointError                    (ValueError) agentstream.time_travel: a bad --at/--diff point
     ├── CursorError                   (ValueError) projections.cursors: a bad page cursor
     ├── DatabaseUrlError              (ValueError) projections.db: a Postgres URL we cannot use
     ├── PoisonEvent                   (ValueError) projections.fold: an event the projector refuses
     ├── TenantError                   (ValueError) agentstream.gateway.tenants: bad tenant input
     ├── ApiError                      agentstream.gateway.errors: an HTTP request refused
     ├── DatabaseUnavailable           agentstream.commands.tenants: Postgres refused or is away
     └── InfraError                    (RuntimeError) infra.procs: local bring-up failed

This module imports nothing, so every layer may import it (``schemas`` at the
bottom as well as ``infra``, which otherwise stands alone).
"""

from __future__ import annotations

__all__ = ["AgentstreamError"]


class AgentstreamError(Exception):
    """Base of every error agentstream raises on purpose."""
