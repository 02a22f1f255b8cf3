"""The log audit behind ``agentstream replay``: a clean log folds to the live state with no
problem; each broken invariant is reported with the offset where it shows."""

from __future__ import annotations

from typing import Any

import pytest

from processors.agents.loader import load_agents
from processors.engine.log_audit import LoggedEvent, audit_sessions
from processors.testing.inline_runtime import InlineRuntime


async def _logs(count: int) -> tuple[list[LoggedEvent], InlineRuntime]:
    runtime = InlineRuntime(load_agents(None))
    for i in range(count):
        await runtime.start(f"s{i}", "demo", f"What is {i}*7 and the weather in Oslo?")
    # Interleave the sessions as a partition would hold them.
    rows: list[tuple[str, dict[str, Any]]] = []
    logs = [list(runtime.logs[f"s{i}"]) for i in range(count)]
    while any(logs):
        for log in logs:
            if log:
                rows.append(log.pop(0))
    return [(offset, name, event) for offset, (name, event) in enumerate(rows)], runtime


async def test_a_clean_log_folds_to_the_live_state() -> None:
    events, runtime = await _logs(3)
    audits = audit_sessions(events)
    assert set(audits) == {"s0", "s1", "s2"}
    for session_id, audit in audits.items():
        assert audit.ok, audit.problems
        assert audit.state == runtime.states[session_id]
        assert audit.events == len(runtime.logs[session_id])


def _session(events: list[LoggedEvent], session_id: str) -> list[LoggedEvent]:
    return [e for e in events if e[2]["session_id"] == session_id]


@pytest.mark.parametrize("breakage", ["repeat", "gap", "after_terminal", "second_result"])
async def test_each_broken_invariant_is_named_with_its_offset(breakage: str) -> None:
    events, _ = await _logs(1)
    log = _session(events, "s0")
    end = log[-1][0] + 1
    if breakage == "repeat":
        offset, name, event = log[2]
        log.insert(3, (end, name, event))  # the same event again (an applied-twice record)
        expected = [f"offset {end}: event id {event['event_id']} appears twice"]
    elif breakage == "gap":
        dropped = log.pop(2)
        expected = [f"offset {log[2][0]}: session s0: {log[2][1]} has seq {dropped[2]['seq'] + 1}"]
    elif breakage == "after_terminal":
        offset, name, event = log[-1]
        extra = dict(event, event_id="late", seq=event["seq"] + 1)
        log.append((end, "SessionCompleted", extra))
        expected = [f"offset {end}: SessionCompleted after the terminal event at offset {offset}"]
    else:
        offset, name, event = next(e for e in log if e[1] == "LLMCallCompleted")
        log.append((end, name, dict(event, event_id="again")))
        expected = [f"offset {end}: call {event['call_id']} has a second result"]
    audit = audit_sessions(log)["s0"]
    assert not audit.ok
    for text in expected:
        assert any(problem.startswith(text) for problem in audit.problems), audit.problems
