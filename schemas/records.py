"""The record types agentstream puts on Kafka, loaded from the ``.avsc`` files.

The ``.avsc`` files under ``schemas/avsc/`` are the source of truth; this module
reads them once and says which records are inbox commands, which are events on
the log, and which are work items. ``avsc/history/<Name>/vN.avsc`` keeps every
past version of a schema so the evolution check can prove old data still reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

NAMESPACE = "dev.agentstream"

RecordKind = Literal["command", "event", "work"]

COMMAND_NAMES: tuple[str, ...] = (
    "StartSession",
    "UserMessage",
    "Approval",
    "Cancel",
    "LLMCallResult",
    "ToolCallResult",
    "TimerFired",
)
EVENT_NAMES: tuple[str, ...] = (
    "SessionStarted",
    "UserMessageAdded",
    "LLMCallRequested",
    "LLMCallCompleted",
    "LLMCallFailed",
    "ToolCallRequested",
    "ToolCallCompleted",
    "ToolCallFailed",
    "ApprovalRequested",
    "ApprovalResolved",
    "AssistantMessageAdded",
    "SessionCompleted",
    "SessionFailed",
    "SessionCancelled",
    "BudgetExceeded",
)
WORK_NAMES: tuple[str, ...] = ("LLMCallWork", "ToolCallWork", "TokenDelta")
RECORD_NAMES: tuple[str, ...] = COMMAND_NAMES + EVENT_NAMES + WORK_NAMES
TERMINAL_EVENT_NAMES: frozenset[str] = frozenset(
    {"SessionCompleted", "SessionFailed", "SessionCancelled"}
)


@dataclass(frozen=True, slots=True)
class RecordType:
    """One Avro record type of ours."""

    name: str
    """Simple record name, e.g. ``StartSession``; also the Kafka ``type`` header."""
    kind: RecordKind
    """Whether it is an inbox command, an event on the log or a work item."""
    schema: dict[str, Any]
    """The schema as JSON (not yet parsed by fastavro)."""

    @property
    def full_name(self) -> str:
        """Namespace-qualified name; the schema registry subject (RecordNameStrategy)."""
        return f"{NAMESPACE}.{self.name}"


def _kind_of(name: str) -> RecordKind:
    if name in COMMAND_NAMES:
        return "command"
    if name in EVENT_NAMES:
        return "event"
    return "work"


def _read_json(*parts: str) -> dict[str, Any]:
    path = resources.files("schemas").joinpath("avsc", *parts)
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


@cache
def record_types() -> dict[str, RecordType]:
    """Every current record type by simple name."""
    return {
        name: RecordType(name, _kind_of(name), _read_json(f"{name}.avsc")) for name in RECORD_NAMES
    }


def record_type(name: str) -> RecordType:
    """The current record type called ``name``; KeyError names the unknown type."""
    try:
        return record_types()[name]
    except KeyError:
        raise KeyError(f"unknown record type {name!r}") from None


@cache
def history(name: str) -> tuple[dict[str, Any], ...]:
    """Every past version of ``name``'s schema, oldest first (v1, v2, ...)."""
    folder = resources.files("schemas").joinpath("avsc", "history", name)
    if not folder.is_dir():
        return ()
    versions = sorted(
        (entry.name for entry in folder.iterdir() if entry.name.endswith(".avsc")),
        key=lambda file: int(file[1:-5]),
    )
    return tuple(_read_json("history", name, version) for version in versions)
