"""Opaque pagination cursors: keyset positions, base64url-encoded JSON.

A list answers ``{"items": [...], "next": cursor-or-null}``; the client passes
``next`` back as ``?cursor=``. The cursor holds the sort key of the last item
(keyset pagination: stable under inserts, no OFFSET scans) and the kind of list
it belongs to, so a cursor from one endpoint is refused by another. Cursors
carry no authority: every query is scoped to the caller's tenant anyway.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from agentstream.errors import AgentstreamError


class CursorError(AgentstreamError, ValueError):
    """A cursor that is not one of ours (or not for this list)."""


def encode_cursor(kind: str, position: list[Any]) -> str:
    """The cursor for ``position`` (the last item's sort key) in list ``kind``."""
    raw = json.dumps([kind, *position], separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(kind: str, token: str, types: tuple[type, ...]) -> list[Any]:
    """The position in ``token``; CursorError unless it is a ``kind`` cursor of ``types``."""
    try:
        padded = token + "=" * (-len(token) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error) as error:
        raise CursorError("malformed cursor") from error
    if not isinstance(value, list) or not value or value[0] != kind:
        raise CursorError(f"not a cursor of this list ({kind})")
    position = value[1:]
    if len(position) != len(types) or not all(
        _fits(v, t) for v, t in zip(position, types, strict=True)
    ):
        raise CursorError("malformed cursor")
    return position


def _fits(value: Any, kind: type) -> bool:
    """``value`` is a ``kind``; integers are non-negative and fit a Postgres bigint."""
    if kind is int:
        return type(value) is int and 0 <= value < 2**62
    return isinstance(value, kind)
