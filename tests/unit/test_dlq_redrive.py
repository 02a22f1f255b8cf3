"""Which dead letters `agentstream dlq redrive` may send back, and which it refuses."""

from __future__ import annotations

from agentstream.commands.dlq import unsendable
from streams.dlq import StoredDeadLetter, dead_letter

EVENTS = "agentstream.events"


def _stored(origin: str, offset: int = 7) -> StoredDeadLetter:
    letter = dead_letter(
        topic=origin,
        partition=1,
        offset=offset,
        key=b"s1",
        value=b"\x00",
        headers=(("type", b"SessionStarted"),),
        reason="rejected",
        error="boom",
        source="projector",
    )
    return StoredDeadLetter(0, offset, letter.key, letter.value, tuple(letter.headers))


def test_commands_and_work_items_may_go_back() -> None:
    letters = [_stored("agentstream.inbox"), _stored("agentstream.llm-calls")]
    assert unsendable(letters, EVENTS) is None


def test_a_dead_letter_of_the_event_log_is_refused_naming_it_and_what_to_do() -> None:
    reason = unsendable([_stored("agentstream.inbox"), _stored(EVENTS, offset=42)], EVENTS)
    assert reason is not None
    assert "0:42" in reason and "backfill" in reason and EVENTS in reason


def test_a_dead_letter_without_origin_is_refused() -> None:
    bare = StoredDeadLetter(0, 3, b"k", b"v", (("type", b"X"),))
    assert unsendable([bare], EVENTS) == "1 dead letters name no origin topic"
