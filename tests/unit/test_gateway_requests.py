"""Bodies -> commands: the fast path agrees with the schema, errors name the field."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentstream.gateway.errors import ApiError
from agentstream.gateway.idempotency import check_key, fingerprint
from agentstream.gateway.requests import (
    batch_items,
    new_ids,
    parse_json,
    session_command,
    start_record,
)
from schemas import Codec, command_from_json

AGENTS = frozenset({"demo"})
ENVELOPE = {"tenant": "acme", "event_id": "e1", "session_id": "s1", "time_ms": 1}


def start(obj: Any, **kw: Any) -> dict[str, Any]:
    return start_record(obj, **{**ENVELOPE, **kw}, agents=AGENTS)


def refusal(obj: Any, **kw: Any) -> ApiError:
    with pytest.raises(ApiError) as refused:
        start(obj, **kw)
    return refused.value


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=6,
)


@given(
    body=st.fixed_dictionaries(
        {"agent": st.just("demo"), "input": st.text()},
        optional={
            "keep_open": JSONISH,
            "idle_timeout_ms": st.integers(min_value=0, max_value=2**63 - 1) | JSONISH,
            "metadata": st.dictionaries(st.text(), st.text(), max_size=3) | JSONISH,
        },
    )
)
def test_fast_path_accepts_exactly_what_the_schema_accepts(body: dict[str, Any]) -> None:
    try:
        _, expected = command_from_json(
            {"type": "StartSession", **body, "event_id": "e1", "session_id": "s1",
             "tenant_id": "acme", "time_ms": 1}
        )  # fmt: skip
    except Exception:
        with pytest.raises(ApiError) as refused:
            start(body)
        assert refused.value.status == 422
        return
    if expected["idle_timeout_ms"] < 0:
        return
    assert start(body) == expected
    Codec().encode("StartSession", start(body))


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"agent": "demo"}, "input", "invalid_field"),
        ({"agent": "demo", "input": 1}, "input", "invalid_field"),
        ({"agent": "demo", "input": "x", "tenant_id": "evil"}, "tenant_id", "invalid_field"),
        ({"agent": "demo", "input": "x", "type": "Cancel"}, "type", "invalid_field"),
        ({"agent": "demo", "input": "x", "event_id": "e"}, "event_id", "invalid_field"),
        ({"agent": "demo", "input": "x", "keep_open": "yes"}, "keep_open", "invalid_field"),
        ({"agent": "demo", "input": "x", "metadata": {"k": 2}}, "metadata.k", "invalid_field"),
        (
            {"agent": "demo", "input": "x", "idle_timeout_ms": -1},
            "idle_timeout_ms",
            "invalid_field",
        ),
        ({"agent": "demo", "input": "x", "session_id": ""}, "session_id", "invalid_field"),
        ({"agent": "demo", "input": "x", "session_id": None}, "session_id", "invalid_field"),
        ({"agent": "demo", "input": "x", "session_id": 7}, "session_id", "invalid_field"),
        ({"agent": "demo", "input": "x", "metadata": None}, "metadata", "invalid_field"),
        ({"agent": "other", "input": "x"}, "agent", "unknown_agent"),
    ],
)
def test_errors_name_the_field(body: dict[str, Any], field: str, code: str) -> None:
    error = refusal(body)
    assert (error.status, error.field, error.code) == (422, field, code)


def test_ids_are_filled_later_and_a_chosen_session_id_wins() -> None:
    record = start({"agent": "demo", "input": "x"}, event_id="", session_id="")
    assert record["session_id"] == "" and record["event_id"] == ""
    chosen = start({"agent": "demo", "input": "x", "session_id": "mine-1"}, session_id="")
    assert chosen["session_id"] == "mine-1"


def test_batches_and_session_commands() -> None:
    assert batch_items({"sessions": [{}, {}]}, 5) == [{}, {}]
    for bad, field in (({"sessions": []}, "sessions"), ({"x": 1}, "x"), ([], None)):
        with pytest.raises(ApiError) as refused:
            batch_items(bad, 5)
        assert refused.value.field == field
    kw: dict[str, Any] = {"tenant": "acme", "session_id": "s1", "event_id": "e", "time_ms": 1}
    assert session_command("Cancel", None, **kw)["reason"] is None
    approval = session_command("Approval", {"call_id": "c", "approved": False}, **kw)
    assert approval["approved"] is False and approval["tenant_id"] == "acme"
    with pytest.raises(ApiError) as refused:
        session_command("UserMessage", {"text": "hi", "tenant_id": "x"}, **kw)
    assert refused.value.field == "tenant_id"


def test_json_ids_and_idempotency_helpers() -> None:
    with pytest.raises(ApiError) as refused:
        parse_json(b"{")
    assert refused.value.status == 400
    ids = new_ids(50)
    assert len(set(ids)) == 50
    assert all(
        re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", i)
        for i in ids
    )
    assert fingerprint("POST /x", {"a": 1, "b": 2}) == fingerprint("POST /x", {"b": 2, "a": 1})
    assert fingerprint("POST /x", {"a": 1}) != fingerprint("POST /y", {"a": 1})
    for bad in ("", "x" * 256, "tab\there"):
        with pytest.raises(ApiError):
            check_key(bad)
