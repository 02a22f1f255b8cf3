"""A JSON-lines input is validated whole: every bad line is named by number and
nothing is kept to send; a good input becomes encoded, keyed, typed records in order."""

from __future__ import annotations

import json
from typing import Any

import pytest

import streams.jsonlines as jsonlines
from schemas import Codec, command_from_json
from streams.catalogue import Catalogue
from streams.jsonlines import (
    LineError,
    split_lines,
    validate_lines,
    validate_lines_parallel,
)
from streams.partitioner import session_partition

CAT = Catalogue("unit", 4)
CODEC = Codec()


def start(i: int, **extra: Any) -> bytes:
    obj = {
        "type": "StartSession",
        "session_id": f"s{i}",
        "tenant_id": "acme",
        "agent": "demo",
        "input": f"question {i}",
        **extra,
    }
    return json.dumps(obj).encode()


def test_good_lines_become_records_in_order() -> None:
    lines = [start(i) for i in range(50)]
    lines.insert(10, b"")
    lines.insert(20, b"   ")
    result = validate_lines(lines, CAT.inbox, codec=CODEC)
    assert result.ok and result.error_count == 0 and result.line_count == 50
    assert [r.key for r in result.records] == [f"s{i}".encode() for i in range(50)]
    for record in result.records:
        assert record.topic == "unit.inbox"
        assert list(record.headers) == [("type", b"StartSession")]
        name, value = CODEC.decode(record.value)
        assert name == "StartSession"
        assert value["session_id"].encode() == record.key
    # Exactly what command_from_json makes of the line (generated ids aside).
    name, expected = command_from_json(json.loads(start(3)))
    got = CODEC.decode(result.records[3].value)[1]
    for generated in ("event_id", "time_ms"):
        expected.pop(generated)
        got.pop(generated)
    assert got == expected


def test_every_bad_line_is_reported_with_its_number_and_nothing_is_kept() -> None:
    lines = [start(i) for i in range(10)]
    lines[2] = b'{"type": "StartSession", "session_id": "s2"'  # truncated JSON
    lines[4] = start(4, tenant_id=7)
    lines[5] = b""  # blank lines are skipped but still numbered
    lines[6] = json.dumps({"type": "StartSession", "session_id": "s6", "tenant_id": "a"}).encode()
    lines[7] = start(7, colour="red")
    lines[8] = b"[1, 2]"
    lines[9] = json.dumps({"type": "SessionStarted", "session_id": "s9"}).encode()
    result = validate_lines(lines, CAT.inbox, codec=CODEC)
    assert not result.ok
    assert result.records == []
    assert result.error_count == 6
    assert [e.line for e in result.errors] == [3, 5, 7, 8, 9, 10]
    messages = [str(e) for e in result.errors]
    assert messages[0].startswith("line 3: invalid JSON:")
    assert messages[1] == "line 5: tenant_id: expected a string, got int"
    assert messages[2] == "line 7: agent: missing required field"
    assert messages[3] == "line 8: colour: unknown field"
    assert messages[4] == "line 9: expected a JSON object, got list"
    assert messages[5].startswith("line 10: type: 'SessionStarted' is not one of")


def test_invalid_utf8_is_a_line_error() -> None:
    result = validate_lines([start(0), b'{"type": "\xff"}'], CAT.inbox, codec=CODEC)
    assert [e.line for e in result.errors] == [2]


def test_listed_errors_are_capped_but_all_counted() -> None:
    lines = [b"not json"] * 30 + [start(0)]
    result = validate_lines(lines, CAT.inbox, codec=CODEC)
    assert result.error_count == 30
    assert len(result.errors) == jsonlines.MAX_LISTED_ERRORS == 20
    assert result.errors[-1] == LineError(20, result.errors[-1].reason)


def test_topic_decides_which_records_are_allowed() -> None:
    line = start(1)
    assert validate_lines([line], CAT.inbox, codec=CODEC).ok
    events = validate_lines([line], CAT.events, codec=CODEC)
    assert "'StartSession' is not one of" in events.errors[0].reason
    with pytest.raises(ValueError, match="raw records"):
        validate_lines([line], CAT.dlq, codec=CODEC)


def test_parallel_validation_equals_serial(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jsonlines, "PARALLEL_MIN_LINES", 10)
    lines = [start(i) for i in range(400)]
    serial = validate_lines(lines, CAT.inbox, codec=CODEC)
    parallel = validate_lines_parallel(lines, CAT.inbox, codec=CODEC, workers=3)
    assert [r.key for r in parallel.records] == [r.key for r in serial.records]
    assert [CODEC.decode(r.value)[1]["input"] for r in parallel.records] == [
        f"question {i}" for i in range(400)
    ]
    lines[0] = lines[399] = lines[250] = b"{}"
    bad = validate_lines_parallel(lines, CAT.inbox, codec=CODEC, workers=3)
    assert [e.line for e in bad.errors] == [1, 251, 400]
    assert bad.records == []


def test_split_lines_numbers_like_an_editor() -> None:
    assert split_lines(b"a\r\nb\n\nc") == [b"a", b"b", b"", b"c"]
    assert split_lines(b"a\n") == [b"a"]
    assert split_lines(b"") == []


def test_keys_pick_the_session_partition() -> None:
    result = validate_lines([start(i) for i in range(20)], CAT.inbox, codec=CODEC)
    for i, record in enumerate(result.records):
        assert record.key == f"s{i}".encode()
        assert record.partition == session_partition(f"s{i}", 4)  # precomputed for 4
    wide = Catalogue("unit", 12)
    assert [r.partition for r in validate_lines([start(7)], wide.inbox, codec=CODEC).records] == [
        session_partition("s7", 12)
    ]


def test_a_record_too_large_to_send_is_a_line_error() -> None:
    huge = start(1, input="x" * 1_100_000)
    result = validate_lines([start(0), huge], CAT.inbox, codec=CODEC)
    assert [e.line for e in result.errors] == [2]
    assert "bytes encoded; the limit is 1,047,552" in result.errors[0].reason
