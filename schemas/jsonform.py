"""The JSON form of our records, for the CLI and the HTTP API.

A record's JSON form is its schema's fields plus ``"type"`` (the record name):
``{"type": "StartSession", "session_id": "s1", "tenant_id": "acme",
"agent": "demo", "input": "hi"}``. ``event_id`` and ``time_ms`` may be left out
(they are filled in), and so may any field with a default. Unknown fields are
refused, because a misspelt optional field would otherwise vanish silently.

Validation errors name the field and the reason (``RecordValidationError``), so
``agentstream produce`` can say "line 7: input: missing required field".
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from typing import Any

from schemas.errors import RecordValidationError
from schemas.records import COMMAND_NAMES, RECORD_NAMES, record_type

_GENERATED: dict[str, Callable[[], Any]] = {
    "event_id": lambda: str(uuid.uuid4()),
    "time_ms": lambda: int(time.time() * 1000),
}
_MISSING = object()


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _check(path: str, schema: Any, value: Any) -> Any:
    """Return ``value`` checked against ``schema`` (records get their defaults)."""
    if isinstance(schema, list):  # union: the first branch that fits
        problems = []
        for branch in schema:
            try:
                return _check(path, branch, value)
            except RecordValidationError as error:
                problems.append(error.reason)
        expected = " or ".join(_branch_name(b) for b in schema)
        raise RecordValidationError(path, f"expected {expected}, got {_type_name(value)}")
    kind = schema["type"] if isinstance(schema, dict) else schema
    if isinstance(kind, dict | list):
        return _check(path, kind, value)
    if kind == "null":
        if value is not None:
            raise RecordValidationError(path, f"expected null, got {_type_name(value)}")
        return None
    if kind == "string":
        if not isinstance(value, str):
            raise RecordValidationError(path, f"expected a string, got {_type_name(value)}")
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise RecordValidationError(path, f"expected true or false, got {_type_name(value)}")
        return value
    if kind in ("int", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecordValidationError(path, f"expected an integer, got {_type_name(value)}")
        limit = 2**31 if kind == "int" else 2**63
        if not -limit <= value < limit:
            raise RecordValidationError(path, f"integer {value} out of range for {kind}")
        return value
    if kind in ("double", "float"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RecordValidationError(path, f"expected a number, got {_type_name(value)}")
        return float(value)
    if kind == "array":
        if not isinstance(value, list):
            raise RecordValidationError(path, f"expected a list, got {_type_name(value)}")
        return [_check(f"{path}[{i}]", schema["items"], item) for i, item in enumerate(value)]
    if kind == "map":
        if not isinstance(value, dict):
            raise RecordValidationError(path, f"expected an object, got {_type_name(value)}")
        return {
            str(key): _check(f"{path}.{key}", schema["values"], item) for key, item in value.items()
        }
    if kind == "record":
        if not isinstance(value, dict):
            raise RecordValidationError(path, f"expected an object, got {_type_name(value)}")
        return _check_fields(path, schema, value)
    raise RecordValidationError(path, f"unsupported schema type {kind!r}")


def _branch_name(schema: Any) -> str:
    kind = schema["type"] if isinstance(schema, dict) else schema
    return str(kind)


def _check_fields(path: str, schema: Mapping[str, Any], obj: Mapping[str, Any]) -> dict[str, Any]:
    prefix = f"{path}." if path else ""
    fields = schema["fields"]
    known = {field["name"] for field in fields}
    unknown = sorted(set(obj) - known)
    if unknown:
        raise RecordValidationError(f"{prefix}{unknown[0]}", "unknown field")
    record: dict[str, Any] = {}
    for field in fields:
        name = field["name"]
        value = obj.get(name, _MISSING)
        if value is _MISSING:
            if not path and name in _GENERATED:
                value = _GENERATED[name]()
            elif "default" in field:
                value = copy.deepcopy(field["default"])
            else:
                raise RecordValidationError(f"{prefix}{name}", "missing required field")
        record[name] = _check(f"{prefix}{name}", field["type"], value)
    return record


def record_from_json(
    obj: object, allowed: Collection[str] = RECORD_NAMES
) -> tuple[str, dict[str, Any]]:
    """Validate a JSON object and return ``(record name, Avro-ready record)``.

    Raises RecordValidationError naming the field and reason; nothing else.
    """
    if not isinstance(obj, dict):
        raise RecordValidationError("", f"expected a JSON object, got {_type_name(obj)}")
    name = obj.get("type")
    if not isinstance(name, str) or not name:
        raise RecordValidationError("type", "missing record type")
    if name not in allowed:
        raise RecordValidationError("type", f"{name!r} is not one of {', '.join(sorted(allowed))}")
    body = {key: value for key, value in obj.items() if key != "type"}
    for key in ("session_id", "tenant_id"):
        if isinstance(body.get(key), str) and not body[key]:
            raise RecordValidationError(key, "must not be empty")
    return name, _check_fields("", record_type(name).schema, body)


def command_from_json(obj: object) -> tuple[str, dict[str, Any]]:
    """``record_from_json`` limited to inbox commands."""
    return record_from_json(obj, COMMAND_NAMES)


def record_to_json(name: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON form of a record: its fields plus ``"type"`` first."""
    return {"type": name, **record}
