"""Time travel over one session's log: the state at a seq or a moment is the engine's
state then, a diff names what changed and the events in between, points parse."""

from __future__ import annotations

import datetime as dt

import pytest

from agentstream.time_travel import (
    Point,
    PointError,
    diff,
    diff_json,
    event_json,
    fold_to,
    moment_json,
    state_json,
)
from processors.agents.loader import load_agents
from processors.core import rebuild
from processors.engine.log_audit import LoggedEvent
from processors.testing.inline_runtime import InlineRuntime


async def _session() -> list[LoggedEvent]:
    runtime = InlineRuntime(load_agents(None))
    await runtime.start("s", "demo", "What is 6*7 and the weather in Oslo?")
    return [(10 + i, name, event) for i, (name, event) in enumerate(runtime.logs["s"])]


async def test_the_state_at_a_seq_is_the_fold_of_the_events_up_to_it() -> None:
    events = await _session()
    for seq in (1, 3, len(events)):
        moment = fold_to(events, Point.parse(str(seq)))
        assert moment.state == rebuild([(n, e) for _, n, e in events[:seq]])
        assert moment.state is not None and moment.state.seq == seq
        assert moment_json("s", moment)["state"] == state_json(moment.state)
    assert fold_to(events, Point.parse("0")).state is None


async def test_the_state_at_a_moment_holds_the_events_at_or_before_it() -> None:
    events = await _session()
    at = events[4][2]["time_ms"]
    moment = fold_to(events, Point(str(at), time_ms=at))
    expected = [e for e in events if e[2]["time_ms"] <= at]
    assert [e[0] for e in moment.events] == [e[0] for e in expected]
    stamp = dt.datetime.fromtimestamp(at / 1000, dt.UTC).isoformat()
    assert Point.parse(stamp).time_ms == at


async def test_a_diff_names_the_changes_and_the_events_between() -> None:
    events = await _session()
    first, second = fold_to(events, Point.parse("2")), fold_to(events, Point.parse("5"))
    report = diff_json("s", first, second)
    assert [e["seq"] for e in report["events"]] == [3, 4, 5]
    assert report["changed"]["seq"] == {"from": 2, "to": 5}
    assert (
        "status" not in report["changed"]
        or report["changed"]["status"]["from"] != (report["changed"]["status"]["to"])
    )
    assert diff({"m": [1]}, {"m": [1, 2], "k": 1}) == {"k": {"from": None, "to": 1},
                                                       "m": {"added": [2]}}  # fmt: skip
    line = event_json(events[0])
    assert (line["seq"], line["type"], line["offset"]) == (1, "SessionStarted", 10)


def test_a_point_is_a_seq_or_a_moment() -> None:
    assert Point.parse("12").seq == 12
    assert Point.parse("2025-01-31T12:00:00Z").time_ms == 1_738_324_800_000
    with pytest.raises(PointError):
        Point.parse("yesterday")
