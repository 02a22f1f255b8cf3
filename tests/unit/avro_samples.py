"""Sample records generated from a schema, for codec and evolution tests."""

from __future__ import annotations

from typing import Any


def sample(schema: Any, seed: int = 0) -> Any:
    """A value that fits ``schema``, filling every field (unions take their last branch)."""
    if isinstance(schema, list):
        return sample(schema[-1], seed)
    if isinstance(schema, dict):
        kind = schema["type"]
        if isinstance(kind, dict | list):
            return sample(kind, seed)
        if kind == "record":
            return {f["name"]: sample(f["type"], seed + i) for i, f in enumerate(schema["fields"])}
        if kind == "array":
            return [sample(schema["items"], seed + 1), sample(schema["items"], seed + 2)]
        if kind == "map":
            return {f"k{seed}": sample(schema["values"], seed)}
        return sample(kind, seed)
    return {
        "string": f"text-{seed}-é",
        "long": 10_000_000_000 + seed,
        "int": 7 + seed,
        "boolean": seed % 2 == 0,
        "double": 0.5 + seed,
        "float": 1.5,
        "bytes": b"\x00\x01",
        "null": None,
    }[schema]
