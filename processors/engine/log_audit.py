"""Audit a session's event log: fold it and check the invariants the engine promises.

Used by ``agentstream replay``. Pure: it takes the events (with their offsets)
and returns the rebuilt state and every problem found, each naming the offset
where it shows. The checks are the engine's invariants (docs/architecture.md) as seen in the log:

* seq runs 1, 2, 3... with no gap or repeat, SessionStarted first (``evolve``
  refuses anything else, so the fold stops at the first break);
* no event id appears twice;
* at most one terminal event, and nothing after it;
* no LLM or tool call has two results;
* a session's snapshot in Postgres equals the fold of its log up to the
  snapshot's seq (what recovery would start from is what the log says).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from processors.core import EventOrderError, SessionState, evolve_private
from schemas import TERMINAL_EVENT_NAMES

RESULT_EVENTS: frozenset[str] = frozenset(
    {"LLMCallCompleted", "LLMCallFailed", "ToolCallCompleted", "ToolCallFailed"}
)

LoggedEvent = tuple[int, str, Mapping[str, Any]]
"""(events topic offset, record name, the event's Avro dict)."""


@dataclass
class SessionAudit:
    """One session's log, folded and checked."""

    session_id: str
    events: int = 0
    state: SessionState | None = None
    """The state the log folds to (up to the first break, if any)."""
    problems: list[str] = field(default_factory=list)
    """Each broken invariant, with the offset where it shows; empty for a clean log."""
    snapshot_agrees: bool | None = None
    """Whether the snapshot equals the fold at its seq; None without a snapshot to check."""

    @property
    def ok(self) -> bool:
        return not self.problems


class SessionAuditor:
    """Folds one session's events as they come (a partition is read once, in order)."""

    def __init__(self, session_id: str, snapshot: SessionState | None = None) -> None:
        self.audit = SessionAudit(session_id)
        self._snapshot = snapshot
        self._event_ids: set[str] = set()
        self._results: set[str] = set()
        self._terminal_at: int | None = None
        self._broken = False

    def add(self, offset: int, name: str, event: Mapping[str, Any]) -> None:
        audit = self.audit
        audit.events += 1
        event_id = str(event.get("event_id"))
        if event_id in self._event_ids:
            audit.problems.append(f"offset {offset}: event id {event_id} appears twice")
        self._event_ids.add(event_id)
        if self._terminal_at is not None:
            audit.problems.append(
                f"offset {offset}: {name} after the terminal event at offset {self._terminal_at}"
            )
        if name in TERMINAL_EVENT_NAMES and self._terminal_at is None:
            self._terminal_at = offset
        if name in RESULT_EVENTS:
            call_id = str(event.get("call_id"))
            if call_id in self._results:
                audit.problems.append(f"offset {offset}: call {call_id} has a second result")
            self._results.add(call_id)
        if self._broken:
            return
        try:
            # The auditor alone holds the state it folds (fresh from SessionStarted).
            audit.state = evolve_private(audit.state, name, event)
        except EventOrderError as error:
            self._broken = True
            audit.problems.append(f"offset {offset}: {error}")
            return
        snapshot = self._snapshot
        if snapshot is not None and audit.state.seq == snapshot.seq:
            audit.snapshot_agrees = audit.state == snapshot
            if not audit.snapshot_agrees:
                audit.problems.append(
                    f"offset {offset}: the snapshot at seq {snapshot.seq} differs from the log"
                )

    def finish(self) -> SessionAudit:
        """The audit; a snapshot the log never reached is a problem too."""
        snapshot, audit = self._snapshot, self.audit
        if snapshot is not None and audit.snapshot_agrees is None and not self._broken:
            audit.snapshot_agrees = False
            audit.problems.append(
                f"the snapshot is at seq {snapshot.seq}, the log ends at seq "
                f"{audit.state.seq if audit.state else 0}"
            )
        return audit


class LogAuditor:
    """Audits the sessions of a log read once, in order, without keeping its events."""

    def __init__(self, snapshots: Mapping[str, SessionState] | None = None) -> None:
        self._snapshots = snapshots or {}
        self._auditors: dict[str, SessionAuditor] = {}
        self.events = 0

    def add(self, offset: int, name: str, event: Mapping[str, Any]) -> None:
        self.events += 1
        session_id = str(event["session_id"])
        auditor = self._auditors.get(session_id)
        if auditor is None:
            auditor = SessionAuditor(session_id, self._snapshots.get(session_id))
            self._auditors[session_id] = auditor
        auditor.add(offset, name, event)

    def finish(self) -> dict[str, SessionAudit]:
        """Every session's audit, by session id."""
        return {session_id: auditor.finish() for session_id, auditor in self._auditors.items()}


def audit_sessions(
    events: Iterable[LoggedEvent], snapshots: Mapping[str, SessionState] | None = None
) -> dict[str, SessionAudit]:
    """Audit every session in ``events`` (in log order), by session id, checking each
    against its snapshot in ``snapshots`` when it has one."""
    auditor = LogAuditor(snapshots)
    for offset, name, event in events:
        auditor.add(offset, name, event)
    return auditor.finish()
