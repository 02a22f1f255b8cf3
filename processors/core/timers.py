"""Durable timers: which ones a state needs, and the command a due timer becomes.

Timers are not stored anywhere of their own: they are a function of the
state, so after a rebuild the runtime asks :func:`timers_of` again and
(re)schedules them. A due timer is produced to the inbox as a ``TimerFired``
command, which ``decide`` judges like any other: one that no longer matches the
state (the call was answered meanwhile, the user spoke again) is a duplicate.
That makes firing a timer late, twice, or after a restart harmless.
"""

from __future__ import annotations

from typing import Any

from processors.core.loop import derive_id
from processors.core.state import Record, SessionState, Timer, TimerKind


def timers_of(state: SessionState) -> tuple[Timer, ...]:
    """Every durable timer pending for ``state``, earliest first; none once it has ended."""
    if state.terminal:
        return ()
    timers: list[Timer] = []
    if state.pending_llm is not None:
        call_id = state.pending_llm.call_id
        timers.append(
            Timer(state.pending_llm.deadline_ms, "llm_timeout", call_id, f"llm_timeout:{call_id}")
        )
    for tool in state.pending_tools:
        kind: TimerKind = "tool_timeout" if tool.status == "running" else "approval_timeout"
        timers.append(Timer(tool.deadline_ms, kind, tool.call_id, f"{kind}:{tool.call_id}"))
    idle = state.idle_deadline_ms
    if idle is not None:
        timers.append(Timer(idle, "idle_timeout", None, f"idle_timeout:{state.session_id}"))
    return tuple(sorted(timers))


def timer_command(state: SessionState, timer: Timer, now_ms: int) -> Record:
    """The ``TimerFired`` command to produce to the inbox when ``timer`` is due at ``now_ms``.

    Its event id is derived from the timer and its deadline, so firing the
    same timer twice (e.g. before and after a crash) gives the same record. Its
    ``time_ms`` is never before the deadline, so a timer wheel that fires a few
    milliseconds early is not mistaken for a stale timer.
    """
    record: dict[str, Any] = {
        "event_id": derive_id(state.session_id, "timer", timer.timer_id, timer.deadline_ms),
        "session_id": state.session_id,
        "tenant_id": state.tenant_id,
        "time_ms": max(now_ms, timer.deadline_ms),
        "causation_id": None,
        "correlation_id": state.correlation_id,
        "timer_id": timer.timer_id,
        "kind": timer.kind,
        "call_id": timer.call_id,
    }
    return ("TimerFired", record)
