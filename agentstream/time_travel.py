"""A session as it was: its state at a seq or a moment, the difference between two such
points, its events in order. Pure: the caller reads the session's events (replay_log).

A point is a seq (``42``: the state once event 42 was applied) or an ISO-8601 moment
(the state once every event whose ``time_ms`` is at or before it was applied; without
a zone, local time). The fold is the engine's own ``evolve``, so the state is exactly
what the engine held then.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from agentstream.errors import AgentstreamError
from processors.core import EventOrderError, SessionState, evolve_private
from processors.engine.log_audit import LoggedEvent
from streams.offsets import OffsetResetError, parse_datetime_ms


class PointError(AgentstreamError, ValueError):
    """A point that is neither a seq nor an ISO-8601 moment."""


@dataclass(frozen=True, slots=True)
class Point:
    """Where to stop folding: after seq ``seq``, or after the events up to ``time_ms``."""

    text: str
    seq: int | None = None
    time_ms: int | None = None

    @classmethod
    def parse(cls, text: str) -> Point:
        if text.strip().isdigit():
            return cls(text, seq=int(text))
        try:
            return cls(text, time_ms=parse_datetime_ms(text))
        except OffsetResetError:
            raise PointError(
                f"not a point: {text!r} (a seq such as 12, or an ISO-8601 moment such as "
                "2025-01-31T12:00:00Z)"
            ) from None

    def includes(self, event: Any) -> bool:
        if self.seq is not None:
            return int(event["seq"]) <= self.seq
        return self.time_ms is None or int(event["time_ms"]) <= self.time_ms


@dataclass
class Moment:
    """The state at a point and the events folded to reach it."""

    point: Point
    state: SessionState | None
    events: list[LoggedEvent]
    problem: str | None = None
    """Why the fold stopped early (a broken log), if it did."""


def fold_to(events: Iterable[LoggedEvent], point: Point) -> Moment:
    """Fold ``events`` (one session's, in log order) up to ``point``."""
    moment = Moment(point, None, [])
    for offset, name, event in events:
        if not point.includes(event):
            break
        try:
            moment.state = evolve_private(moment.state, name, event)
        except EventOrderError as error:
            moment.problem = f"offset {offset}: {error}"
            break
        moment.events.append((offset, name, event))
    return moment


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, frozenset | set):
        return sorted(_jsonable(v) for v in value)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value


def iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds")


def state_json(state: SessionState | None) -> dict[str, Any] | None:
    """Every field of the state, as JSON values (sets sorted, times also as ISO-8601)."""
    if state is None:
        return None
    found: dict[str, Any] = _jsonable(state)
    found["started"] = iso(state.started_ms)
    found["updated"] = iso(state.updated_ms)
    return found


def moment_json(session_id: str, moment: Moment) -> dict[str, Any]:
    last = moment.events[-1] if moment.events else None
    return {
        "session_id": session_id,
        "at": moment.point.text,
        "seq": moment.state.seq if moment.state else 0,
        "time": iso(int(last[2]["time_ms"])) if last else None,
        "events_applied": len(moment.events),
        "problem": moment.problem,
        "state": state_json(moment.state),
    }


def diff(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    """Field -> {"from", "to"}; a list that only grew gives {"added": [...]} instead."""
    a, b = before or {}, after or {}
    changed: dict[str, Any] = {}
    for key in sorted(set(a) | set(b)):
        old, new = a.get(key), b.get(key)
        if old == new:
            continue
        if isinstance(old, list) and isinstance(new, list) and new[: len(old)] == old:
            changed[key] = {"added": new[len(old) :]}
        else:
            changed[key] = {"from": old, "to": new}
    return changed


def diff_json(session_id: str, first: Moment, second: Moment) -> dict[str, Any]:
    """What changed from ``first`` to ``second``, and the events in between."""
    seen = {offset for offset, _, _ in first.events}
    between = [event_json(e) for e in second.events if e[0] not in seen]
    return {
        "session_id": session_id,
        "from": {"at": first.point.text, "seq": first.state.seq if first.state else 0},
        "to": {"at": second.point.text, "seq": second.state.seq if second.state else 0},
        "changed": diff(state_json(first.state), state_json(second.state)),
        "events": between,
    }


def event_json(logged: LoggedEvent) -> dict[str, Any]:
    """One event for ``--events``: seq, type, offset, time first, then its fields."""
    offset, name, event = logged
    head = {"seq": event.get("seq"), "type": name, "offset": offset}
    if "time_ms" in event:
        head["time"] = iso(int(event["time_ms"]))
    return {**head, "event": _jsonable(dict(event))}


def up_to(events: Sequence[LoggedEvent], point: Point | None) -> list[LoggedEvent]:
    """The events at or before ``point`` (all without one)."""
    if point is None:
        return list(events)
    return [e for e in events if point.includes(e[2])]
