"""Read an event's envelope (its ids, seq and time) without decoding the rest of it.

Every event schema, in every version, starts with the same fields: ``event_id``,
``session_id``, ``tenant_id`` (strings), ``time_ms`` (long), ``causation_id`` and
``correlation_id`` (null or string), ``seq`` (long); a result event's next field is
``call_id`` (string). Avro writes fields in schema order with no framing, so those
come first in every body and can be read with a few varints, several times faster
than decoding the whole record. Log audits that check the log's shape (seq, ids,
terminal events, results) need nothing more.

Which schemas have the envelope is checked per writer schema id, from the schema
itself (not assumed): for any other id :meth:`EnvelopeReader.read` returns None and
the caller decodes the record in full.
"""

from __future__ import annotations

import struct
from typing import Any

from schemas.codec import MAGIC_BYTE, Codec
from schemas.errors import SchemaError

Envelope = tuple[str, bytes, bytes, int, int, bytes | None]
"""(record name, event_id, session_id, seq, time_ms, call_id or None); the ids are
their UTF-8 bytes, as written (decoding them costs as much as reading them)."""

_ENVELOPE: tuple[tuple[str, Any], ...] = (
    ("event_id", "string"),
    ("session_id", "string"),
    ("tenant_id", "string"),
    ("time_ms", "long"),
    ("causation_id", ["null", "string"]),
    ("correlation_id", ["null", "string"]),
    ("seq", "long"),
)
_HEADER = struct.Struct(">bI")


def _layout(schema: dict[str, Any]) -> tuple[str, bool] | None:
    """(record name, whether call_id follows seq) if ``schema`` starts with the envelope."""
    fields = schema.get("fields") or []
    if len(fields) < len(_ENVELOPE):
        return None
    for (name, kind), field in zip(_ENVELOPE, fields, strict=False):
        if field.get("name") != name or field.get("type") != kind:
            return None
    following = fields[len(_ENVELOPE)] if len(fields) > len(_ENVELOPE) else {}
    has_call = following.get("name") == "call_id" and following.get("type") == "string"
    return str(schema["name"]).rsplit(".", 1)[-1], has_call


def _long(buf: bytes, pos: int) -> tuple[int, int]:
    """An Avro long (zigzag varint) at ``pos``: (value, next position)."""
    b = buf[pos]
    pos += 1
    n = b & 0x7F
    shift = 7
    while b & 0x80:
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
    return (n >> 1) ^ -(n & 1), pos


class EnvelopeReader:
    """Reads envelopes of records in the Confluent wire format (see the module docstring)."""

    def __init__(self, codec: Codec) -> None:
        self._codec = codec
        self._layouts: dict[bytes, tuple[str, bool] | None] = {}

    def _layout_of(self, value: bytes) -> tuple[str, bool] | None:
        if len(value) < 5 or value[0] != MAGIC_BYTE:
            raise SchemaError("not in the Confluent wire format (magic byte 0 + schema id)")
        schema_id = _HEADER.unpack_from(value)[1]
        layout = self._layouts[value[:5]] = _layout(self._codec.registry.get(schema_id))
        return layout

    def read(self, value: bytes) -> Envelope | None:
        """The envelope of ``value``; None when its schema has none (decode it in full).

        Raises SchemaError for bytes that are not a record of ours or end too soon.
        """
        # The 5-byte prefix (magic byte, schema id) names the layout: one dict lookup.
        try:
            layout = self._layouts[value[:5]]
        except KeyError:
            layout = self._layout_of(value)
        if layout is None:
            return None
        try:
            # Most lengths fit one varint byte (strings under 64 bytes): read those inline.
            b = value[5]
            size, pos = (b >> 1, 6) if b < 0x80 else _long(value, 5)
            event_id = value[pos : pos + size]
            pos += size
            b = value[pos]
            size, pos = (b >> 1, pos + 1) if b < 0x80 else _long(value, pos)
            session_id = value[pos : pos + size]
            pos += size
            b = value[pos]
            size, pos = (b >> 1, pos + 1) if b < 0x80 else _long(value, pos)
            time_ms, pos = _long(value, pos + size)
            # causation_id, correlation_id: the union's index (0: null), then a string
            if value[pos]:
                b = value[pos + 1]
                size, pos = (b >> 1, pos + 2) if b < 0x80 else _long(value, pos + 1)
                pos += size
            else:
                pos += 1
            if value[pos]:
                b = value[pos + 1]
                size, pos = (b >> 1, pos + 2) if b < 0x80 else _long(value, pos + 1)
                pos += size
            else:
                pos += 1
            b = value[pos]
            seq, pos = ((b >> 1) ^ -(b & 1), pos + 1) if b < 0x80 else _long(value, pos)
            call_id = None
            if layout[1]:
                b = value[pos]
                size, pos = (b >> 1, pos + 1) if b < 0x80 else _long(value, pos)
                call_id = value[pos : pos + size]
                pos += size
        except IndexError as error:
            raise SchemaError(f"cannot read the envelope of a {layout[0]}: {error}") from error
        if pos > len(value):
            raise SchemaError(f"a {layout[0]} ends inside its envelope")
        return layout[0], event_id, session_id, seq, time_ms, call_id
