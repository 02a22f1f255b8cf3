"""JSON schemas of tool arguments, built from a function's type hints, and their check.

A user declares a tool as a plain (async) function with type hints; the model
is shown a JSON schema derived from them, and the tool runner checks the
model's arguments against the same schema before calling the function, so a
tool never sees arguments of the wrong shape.

Supported hints: ``str``, ``int``, ``float``, ``bool``, ``list[X]`` /
``tuple[X, ...]``, ``dict[str, X]``, ``Literal[...]``, ``X | None`` (optional),
``Annotated[X, "description"]``. A parameter with a default is optional.
Parameters named in :data:`INJECTED` are filled by the runner, not the model.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, Union, get_args, get_origin

from agentstream.errors import AgentstreamError

INJECTED = frozenset({"call_id"})
"""Keyword parameters the runner passes itself (``call_id``: the idempotency key)."""

_SCALARS: dict[type, str] = {str: "string", bool: "boolean", int: "integer", float: "number"}


class ToolSchemaError(AgentstreamError, TypeError):
    """A tool function's signature cannot be described as a JSON schema."""


def _first_line(doc: str | None) -> str:
    for line in (doc or "").strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


def _hint_schema(hint: Any, where: str) -> dict[str, Any]:
    origin = get_origin(hint)
    if origin is typing.Annotated:
        base, *extra = get_args(hint)
        schema = _hint_schema(base, where)
        notes = [e for e in extra if isinstance(e, str)]
        if notes:
            schema["description"] = notes[0]
        return schema
    if hint in _SCALARS:
        return {"type": _SCALARS[hint]}
    if origin is Literal:
        values = list(get_args(hint))
        kinds = {type(v) for v in values}
        if len(kinds) == 1 and next(iter(kinds)) in _SCALARS:
            return {"type": _SCALARS[next(iter(kinds))], "enum": values}
        return {"enum": values}
    if origin in (list, tuple) or hint in (list, tuple):
        args = get_args(hint)
        if origin is tuple and args and (len(args) != 2 or args[1] is not Ellipsis):
            raise ToolSchemaError(f"{where}: only tuple[X, ...] is supported, not {hint!r}")
        array: dict[str, Any] = {"type": "array"}
        if args:
            array["items"] = _hint_schema(args[0], where)
        return array
    if origin is dict or hint is dict:
        args = get_args(hint)
        mapping: dict[str, Any] = {"type": "object"}
        if args:
            if args[0] is not str:
                raise ToolSchemaError(f"{where}: dict keys must be str, not {args[0]!r}")
            mapping["additionalProperties"] = _hint_schema(args[1], where)
        return mapping
    if origin in (Union, types.UnionType):
        members = [a for a in get_args(hint) if a is not type(None)]
        if len(members) == 1:
            return _hint_schema(members[0], where)
        return {"anyOf": [_hint_schema(m, where) for m in members]}
    if hint is Any:
        return {}
    raise ToolSchemaError(f"{where}: unsupported type hint {hint!r}")


def tool_schema(func: Callable[..., Any]) -> dict[str, Any]:
    """The JSON schema (an ``object``) of ``func``'s arguments, from its type hints.

    The docstring's first line becomes the schema's ``description``. Every
    parameter needs a hint; ``*args``/``**kwargs`` are refused (a model can
    only pass named JSON fields). Raises :class:`ToolSchemaError` naming the
    parameter that cannot be described.
    """
    name = getattr(func, "__qualname__", repr(func))
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception as error:  # NameError etc. from unresolved annotations
        raise ToolSchemaError(f"{name}: cannot resolve type hints: {error}") from error
    properties: dict[str, Any] = {}
    required: list[str] = []
    for param in inspect.signature(func).parameters.values():
        if param.name in INJECTED:
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ToolSchemaError(f"{name}: *args/**kwargs cannot be described to a model")
        if param.name not in hints:
            raise ToolSchemaError(f"{name}: parameter {param.name!r} has no type hint")
        hint = hints[param.name]
        schema = _hint_schema(hint, f"{name}({param.name})")
        if param.default is not inspect.Parameter.empty:
            if param.default is None or isinstance(param.default, str | int | float | bool):
                schema["default"] = param.default
        else:
            required.append(param.name)
        properties[param.name] = schema
    result: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
    description = _first_line(func.__doc__)
    if description:
        result["description"] = description
    return result


def _type_ok(value: Any, kind: str) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "array":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    if kind == "null":
        return value is None
    return True


def _check(value: Any, schema: Mapping[str, Any], where: str) -> str | None:
    if "anyOf" in schema:
        if all(_check(value, s, where) is not None for s in schema["anyOf"]):
            return f"{where}: does not match any allowed type"
        return None
    kind = schema.get("type")
    if isinstance(kind, str) and not _type_ok(value, kind):
        return f"{where}: expected {kind}, got {type(value).__name__}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{where}: must be one of {schema['enum']!r}"
    if kind == "array" and "items" in schema:
        for index, item in enumerate(value):
            problem = _check(item, schema["items"], f"{where}[{index}]")
            if problem:
                return problem
    if kind == "object":
        properties: Mapping[str, Any] = schema.get("properties", {})
        for key in schema.get("required", ()):
            if key not in value:
                return f"{where}.{key}: missing" if where else f"{key}: missing"
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            path = f"{where}.{key}" if where else key
            if key in properties:
                problem = _check(item, properties[key], path)
            elif extra is False:
                problem = f"{path}: unexpected argument"
            elif isinstance(extra, Mapping):
                problem = _check(item, extra, path)
            else:
                problem = None
            if problem:
                return problem
    return None


def check_arguments(arguments: Any, schema: Mapping[str, Any]) -> str | None:
    """Why ``arguments`` (parsed JSON) do not fit ``schema``, or None when they do."""
    if not isinstance(arguments, dict):
        return f"arguments must be a JSON object, got {type(arguments).__name__}"
    return _check(arguments, schema, "")
