"""The window audit: by shape (envelopes) and folded, a clean window has no problem,
each broken invariant is named, sessions that started before the window are checked
for their tail only, and a whole log names a session whose start is missing."""

from __future__ import annotations

from typing import Any

import pytest

from processors.agents.loader import load_agents
from processors.engine.log_audit import LoggedEvent
from processors.engine.window_audit import ShapeAuditor, WindowAuditor
from processors.testing.inline_runtime import InlineRuntime


async def _log(count: int) -> list[LoggedEvent]:
    runtime = InlineRuntime(load_agents(None))
    for i in range(count):
        await runtime.start(f"s{i}", "demo", f"What is {i}*7 and the weather in Oslo?")
    logs = [list(runtime.logs[f"s{i}"]) for i in range(count)]
    rows: list[tuple[str, dict[str, Any]]] = []
    while any(logs):
        for log in logs:
            if log:
                rows.append(log.pop(0))
    return [(offset, name, event) for offset, (name, event) in enumerate(rows)]


def _shape(events: list[LoggedEvent], *, whole_log: bool) -> dict[str, list[str]]:
    auditor = ShapeAuditor(whole_log=whole_log)
    for offset, name, event in events:
        call = event.get("call_id") if name.endswith(("Completed", "Failed")) else None
        auditor.add(
            offset, name, event["event_id"].encode(), event["session_id"].encode(),
            event["seq"], None if call is None else call.encode(),
        )  # fmt: skip
    return {audit.session_id: audit.problems for audit in auditor.sessions.values()}


def _folded(events: list[LoggedEvent], *, whole_log: bool) -> dict[str, list[str]]:
    auditor = WindowAuditor(whole_log=whole_log)
    for offset, name, event in events:
        auditor.add(offset, name, event)
    full, tails = auditor.finish()
    found = {a.session_id: a.problems for a in full.values()}
    found.update({t.session_id: t.problems for t in tails.values()})
    return found


@pytest.mark.parametrize("audit", [_shape, _folded])
async def test_a_clean_window_and_a_clean_log_have_no_problem(audit: Any) -> None:
    events = await _log(4)
    assert all(not p for p in audit(events, whole_log=True).values())
    window = events[len(events) // 2 :]
    found = audit(window, whole_log=False)
    assert set(found) == {e[2]["session_id"] for e in window}
    assert all(not p for p in found.values()), found


@pytest.mark.parametrize("audit", [_shape, _folded])
@pytest.mark.parametrize("breakage", ["repeat", "gap", "after_terminal", "second_result"])
async def test_each_broken_invariant_is_named_in_a_window(audit: Any, breakage: str) -> None:
    events = await _log(2)
    cut = len(events) // 3  # both sessions started before the window
    log = events[cut:]
    mine = [i for i, e in enumerate(log) if e[2]["session_id"] == "s0"]
    end = events[-1][0] + 1
    if breakage == "repeat":
        offset, name, event = log[mine[1]]
        log.append((end, name, event))
        expected = f"offset {end}: event id {event['event_id']} appears twice"
    elif breakage == "gap":
        dropped = log.pop(mine[1])
        expected = f"seq {dropped[2]['seq'] + 1} follows seq {dropped[2]['seq'] - 1}"
    elif breakage == "after_terminal":
        offset, name, event = log[mine[-1]]
        log.append((end, "SessionCompleted", dict(event, event_id="late", seq=event["seq"] + 1)))
        expected = f"offset {end}: SessionCompleted after the terminal event at offset {offset}"
    else:
        index = next(i for i in mine if log[i][1] == "ToolCallCompleted")
        offset, name, event = log[index]
        log.append((end, name, dict(event, event_id="again", seq=log[mine[-1]][2]["seq"] + 1)))
        expected = f"offset {end}: call {event['call_id']} has a second result"
    found = audit(log, whole_log=False)
    assert any(expected in p for p in found["s0"]), found["s0"]
    assert found["s1"] == []


async def test_a_whole_log_names_a_session_without_its_start() -> None:
    events = await _log(2)
    without = [e for e in events if not (e[2]["session_id"] == "s1" and e[2]["seq"] == 1)]
    shape = _shape(without, whole_log=True)
    assert shape["s0"] == [] and "first event is UserMessageAdded" in shape["s1"][0]
    folded = _folded(without, whole_log=True)
    assert folded["s0"] == [] and "before SessionStarted" in folded["s1"][0]
