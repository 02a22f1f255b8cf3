"""Schema evolution: can the current schema read everything ever written?

Backward compatibility (Avro schema resolution, reader = current, writer = any
past version) is checked two ways:

* statically, by ``backward_problems``, which names the schema and the field
  that breaks (a field added without a default, a type changed to one the old
  type does not promote to);
* dynamically, by the test matrix in ``tests/unit/test_schema_evolution.py``,
  which writes a sample record with every past version and decodes it with the
  current codec.

Adding a version: copy the new ``.avsc`` to ``avsc/history/<Name>/v<N+1>.avsc``.
"""

from __future__ import annotations

from typing import Any

from schemas.records import history, record_types

_PROMOTIONS = {
    ("int", "long"),
    ("int", "float"),
    ("int", "double"),
    ("long", "float"),
    ("long", "double"),
    ("float", "double"),
    ("string", "bytes"),
    ("bytes", "string"),
}


def _kind(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, dict):
        return (
            _kind(schema["type"])
            if isinstance(schema["type"], dict | list)
            else str(schema["type"])
        )
    return str(schema)


def _name(schema: Any) -> str:
    return str(schema.get("name", "")).rsplit(".", 1)[-1] if isinstance(schema, dict) else ""


def _type_problems(where: str, writer: Any, reader: Any) -> list[str]:
    """Why data of type ``writer`` cannot be read as ``reader`` (empty when it can)."""
    if isinstance(writer, dict) and isinstance(writer.get("type"), dict | list):
        writer = writer["type"]
    if isinstance(reader, dict) and isinstance(reader.get("type"), dict | list):
        reader = reader["type"]
    w_kind, r_kind = _kind(writer), _kind(reader)
    if w_kind == "union":
        problems: list[str] = []
        for branch in writer:
            problems.extend(_type_problems(where, branch, reader))
        return problems
    if r_kind == "union":
        for branch in reader:
            if not _type_problems(where, writer, branch):
                return []
        return [f"{where}: old type {w_kind} fits no branch of the new union"]
    if w_kind != r_kind and (w_kind, r_kind) not in _PROMOTIONS:
        return [f"{where}: type changed from {w_kind} to {r_kind}"]
    if r_kind == "record":
        return _record_problems(where, writer, reader)
    if r_kind == "array":
        return _type_problems(f"{where}[]", writer["items"], reader["items"])
    if r_kind == "map":
        return _type_problems(f"{where}{{}}", writer["values"], reader["values"])
    return []


def _record_problems(where: str, writer: dict[str, Any], reader: dict[str, Any]) -> list[str]:
    if _name(writer) != _name(reader):
        return [f"{where}: record renamed from {_name(writer)} to {_name(reader)}"]
    old_fields = {field["name"]: field for field in writer["fields"]}
    problems: list[str] = []
    for field in reader["fields"]:
        path = f"{where}.{field['name']}"
        old = old_fields.get(field["name"])
        if old is None:
            aliases = [old_fields[a] for a in field.get("aliases", []) if a in old_fields]
            if aliases:
                old = aliases[0]
            elif "default" not in field:
                problems.append(f"{path}: field added without a default")
                continue
            else:
                continue
        problems.extend(_type_problems(path, old["type"], field["type"]))
    return problems


def backward_problems(writer: dict[str, Any], reader: dict[str, Any]) -> list[str]:
    """Why ``reader`` cannot read data written with ``writer``; each names schema.field."""
    return _record_problems(_name(reader), writer, reader)


def check_all() -> list[str]:
    """Problems of every current schema against every past version of it."""
    problems: list[str] = []
    for name, rtype in record_types().items():
        for version, old in enumerate(history(name), start=1):
            problems.extend(
                f"v{version}→current: {p}" for p in backward_problems(old, rtype.schema)
            )
    return problems
