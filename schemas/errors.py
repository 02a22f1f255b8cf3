"""Errors of the schemas package.

AgentstreamError (agentstream.errors)
 ├── SchemaError             anything about schemas, ids or the wire format
 │    ├── RecordValidationError   a record (e.g. a JSON command) does not fit its schema
 │    └── SchemaNotFoundError     no registry we read from knows a schema id
 └── SchemaRegistryUnavailableError   (ConnectionError) the registry did not answer, or
                                      refused our credentials

``SchemaRegistryUnavailableError`` is deliberately *not* a ``SchemaError``: callers
treat a ``SchemaError`` while decoding as a poison record (dead letter), and a record
must not be dead-lettered because the registry was down for a moment.
"""

from __future__ import annotations

from agentstream.errors import AgentstreamError


class SchemaError(AgentstreamError):
    """A schema, schema id or wire-format problem."""


class RecordValidationError(SchemaError):
    """A record does not fit its schema; ``field`` is the dotted path of the culprit."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}" if field else reason)


class SchemaNotFoundError(SchemaError):
    """A schema id that no registry we read from knows (HTTP 404, or not one of ours)."""


class SchemaRegistryUnavailableError(AgentstreamError, ConnectionError):
    """The schema registry did not answer (after retries) or refused our credentials."""
