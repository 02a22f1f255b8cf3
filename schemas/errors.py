"""Errors of the schemas package.

AgentstreamError (agentstream.errors)
 └── SchemaError             anything about schemas, ids or the wire format
      └── RecordValidationError   a record (e.g. a JSON command) does not fit its schema
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
