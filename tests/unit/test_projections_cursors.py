"""Keyset cursors: round trip, and refusal of anything that is not ours."""

from __future__ import annotations

import pytest

from projections.cursors import CursorError, decode_cursor, encode_cursor


def test_round_trip() -> None:
    token = encode_cursor("sessions", [1_700_000_000_123_456, "s-1"])
    assert "=" not in token
    assert decode_cursor("sessions", token, (int, str)) == [1_700_000_000_123_456, "s-1"]


@pytest.mark.parametrize("token", ["", "!!!", "bm90IGpzb24", encode_cursor("events", [3])])
def test_foreign_or_garbage_cursors_are_refused(token: str) -> None:
    with pytest.raises(CursorError):
        decode_cursor("sessions", token, (int, str))


def test_types_are_checked() -> None:
    with pytest.raises(CursorError):
        decode_cursor("events", encode_cursor("events", ["3"]), (int,))
    with pytest.raises(CursorError):
        decode_cursor("events", encode_cursor("events", [True]), (int,))


def test_positions_out_of_range_are_refused() -> None:
    for value in (-1, 2**62, 2**70):
        with pytest.raises(CursorError):
            decode_cursor("events", encode_cursor("events", [value]), (int,))
