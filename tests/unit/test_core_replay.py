"""Replay: folding a log (live, from a snapshot, or in place) and refusing a broken one.

A broken log must stop a replay with a reason an operator can act on, never
build a wrong state. Partition replay folds in place (``evolve_private``) and
must give exactly what ``evolve`` gives, without touching a state it was not
handed.
"""

from __future__ import annotations

import pytest

from processors.core import (
    EventOrderError,
    SessionState,
    evolve,
    evolve_private,
    private_copy,
    rebuild,
)
from tests.unit.test_core_kit import Script, Session


def a_session() -> Session:
    """A gated session with a tool round, an approval and a second turn: every kind of event."""
    session, script = Session(), Script()
    session.apply(script.start("gated", keep_open=True))
    tools = [("w1", "weather", {"city": "Rome"}), ("c1", "calculator", {"expression": "2"})]
    session.apply(script.llm_ok(_llm(session.now), content=None, tools=tools))
    session.apply(script.approval("w1", True))
    session.apply(script.tool("c1"))
    session.apply(script.tool("w1", ok=False))
    session.apply(script.llm_ok(_llm(session.now), content="done"))
    session.apply(script.user("thanks"))
    session.apply(script.llm_fail(_llm(session.now)))
    return session


def _llm(state: SessionState) -> str:
    assert state.pending_llm is not None
    return state.pending_llm.call_id


def test_the_in_place_fold_gives_every_state_evolve_gives() -> None:
    log = a_session().log
    state = None
    expected = None
    for name, event in log:
        expected = evolve(expected, name, event)
        state = evolve_private(state, name, event)
        assert state == expected
    assert state is not None and state.end_reason == "llm_failed: boom"


def test_the_in_place_fold_from_a_snapshot_leaves_the_snapshot_alone() -> None:
    session = a_session()
    for cut in range(1, len(session.log)):
        shared = rebuild(session.log[:cut])
        assert shared is not None
        before = rebuild(session.log[:cut])
        copy = private_copy(shared)
        assert copy == shared and copy is not shared
        state = copy
        for name, event in session.log[cut:]:
            state = evolve_private(state, name, event)
        assert state is copy  # folded in place
        assert state == session.state
        assert shared == before


def test_the_in_place_fold_refuses_what_evolve_refuses() -> None:
    log = a_session().log
    with pytest.raises(EventOrderError, match=r"^UserMessageAdded before SessionStarted$"):
        evolve_private(None, *log[1])
    state = evolve_private(None, *log[0])
    with pytest.raises(EventOrderError):
        evolve_private(state, log[2][0], log[2][1])


def test_a_gap_or_a_repeat_in_the_log_is_refused_naming_both_seqs() -> None:
    log = a_session().log
    after_two = rebuild(log[:2])
    name, event = log[3]
    with pytest.raises(EventOrderError) as gap:
        evolve(after_two, name, event)
    assert str(gap.value) == f"session s-1: {name} has seq 4, expected 3"
    with pytest.raises(EventOrderError) as repeat:
        evolve(after_two, *log[1])
    assert str(repeat.value) == "session s-1: UserMessageAdded has seq 2, expected 3"


def test_an_event_that_cannot_follow_the_start_is_refused() -> None:
    log = a_session().log
    state = rebuild(log[:1])
    with pytest.raises(EventOrderError) as second_start:
        evolve(state, "SessionStarted", {**log[0][1], "seq": 2})
    assert str(second_start.value) == "session s-1: SessionStarted cannot follow SessionStarted"
    with pytest.raises(EventOrderError, match=r"^LLMCallRequested before SessionStarted$"):
        evolve(None, *log[2])


def test_replay_from_a_snapshot_skips_what_the_snapshot_holds() -> None:
    session = a_session()
    middle = rebuild(session.log[:5])
    assert rebuild(session.log, middle) == session.state  # the first five are skipped
    assert rebuild(session.log[5:], middle) == session.state
    assert rebuild([], middle) == middle
