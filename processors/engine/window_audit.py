"""Audit a window of a partition's log: its events from some offset on, read once, in order.

:class:`ShapeAuditor` checks what the log's shape shows (seq runs on by one, no event
id twice, nothing after a terminal event, no call with two results) from each event's
envelope alone (schemas.envelope): the fast path. :class:`WindowAuditor` also folds.
A window cuts through sessions. One whose ``SessionStarted`` lies in the window is
audited in full (:class:`~processors.engine.log_audit.SessionAuditor`: folded,
every invariant, its snapshot). One that started before it cannot be folded without
the events before the window, so its tail is checked for what the tail alone shows:
seq runs on by one from the first seq seen, no event id twice, nothing after a
terminal event, no call with two results. That keeps a window audit as cheap as
reading the window, however old its sessions are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from processors.core import SessionState
from processors.engine.log_audit import RESULT_EVENTS, LogAuditor, SessionAudit
from schemas import TERMINAL_EVENT_NAMES


@dataclass(slots=True)
class TailAudit:
    """A session's events inside the window, checked for their shape only (no fold)."""

    session_id: str
    first_seq: int
    last_seq: int
    started: bool = False
    """Its SessionStarted is in the window (else it started before)."""
    events: int = 0
    problems: list[str] = field(default_factory=list)
    event_ids: set[bytes] = field(default_factory=set)
    results: set[bytes] = field(default_factory=set)
    terminal_at: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, offset: int, name: str, event_id: bytes, seq: int, call_id: bytes | None) -> None:
        """One event; the ids as their UTF-8 bytes (what schemas.envelope reads)."""
        self.events += 1
        problems = self.problems
        if self.events > 1:
            if seq != self.last_seq + 1:
                problems.append(f"offset {offset}: seq {seq} follows seq {self.last_seq}")
            if name == "SessionStarted":
                problems.append(f"offset {offset}: a second SessionStarted")
        self.last_seq = seq
        if event_id in self.event_ids:
            problems.append(f"offset {offset}: event id {event_id.decode()} appears twice")
        self.event_ids.add(event_id)
        if self.terminal_at is not None:
            problems.append(
                f"offset {offset}: {name} after the terminal event at offset {self.terminal_at}"
            )
        elif name in TERMINAL_EVENT_NAMES:
            self.terminal_at = offset
        if call_id is not None and name in RESULT_EVENTS:
            if call_id in self.results:
                problems.append(f"offset {offset}: call {call_id.decode()} has a second result")
            self.results.add(call_id)


class ShapeAuditor:
    """The shape of every session in a window, from envelopes only (schemas.envelope):
    seq, ids, terminal events, results. From the log start (``whole_log``), a session
    whose first event is not SessionStarted at seq 1 is missing its beginning."""

    def __init__(self, *, whole_log: bool = False) -> None:
        self.sessions: dict[bytes, TailAudit] = {}
        self.whole_log = whole_log
        self.events = 0

    def add(
        self, offset: int, name: str, event_id: bytes, session_id: bytes, seq: int,
        call_id: bytes | None,
    ) -> None:  # fmt: skip
        self.events += 1
        audit = self.sessions.get(session_id)
        if audit is None:
            started = name == "SessionStarted"
            audit = TailAudit(session_id.decode(errors="replace"), seq, seq, started)
            self.sessions[session_id] = audit
            if started and seq != 1:
                audit.problems.append(f"offset {offset}: SessionStarted at seq {seq}")
            elif not started and self.whole_log:
                audit.problems.append(
                    f"offset {offset}: the session's first event is {name} at seq {seq}"
                )
        audit.add(offset, name, event_id, seq, call_id)


class WindowAuditor:
    """Audits a window of one partition's log; see the module docstring."""

    def __init__(
        self, snapshots: Mapping[str, SessionState] | None = None, *, whole_log: bool = False
    ) -> None:
        self._full = LogAuditor(snapshots)
        self._whole = whole_log
        """From the log start: every session in full (one without SessionStarted is broken)."""
        self._started: set[str] = set()
        self.tails: dict[str, TailAudit] = {}
        self.events = 0

    def add(self, offset: int, name: str, event: Mapping[str, Any]) -> None:
        self.events += 1
        session_id = str(event["session_id"])
        tail = self.tails.get(session_id)
        if tail is None and not self._whole and session_id not in self._started:
            if name == "SessionStarted":
                self._started.add(session_id)
            else:
                seq = int(event["seq"])
                tail = self.tails[session_id] = TailAudit(session_id, seq, seq)
        if tail is not None:
            call_id = event.get("call_id") if name in RESULT_EVENTS else None
            tail.add(
                offset, name, str(event.get("event_id")).encode(), int(event["seq"]),
                None if call_id is None else str(call_id).encode(),
            )  # fmt: skip
        else:
            self._full.add(offset, name, event)

    def finish(self) -> tuple[dict[str, SessionAudit], dict[str, TailAudit]]:
        """(sessions started in the window, audited in full; tails of older sessions)."""
        return self._full.finish(), self.tails
