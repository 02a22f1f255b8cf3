"""kafka-consumer-groups' reset arithmetic: durations as Java parses them, date-times
(local without a zone), offsets and shifts clamped to [earliest, latest], datetime
resets falling back to the end when no record is that recent."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from aiokafka import TopicPartition

from streams.offsets import (
    Bounds,
    OffsetResetError,
    ResetSpec,
    duration_spec,
    parse_datetime_ms,
    parse_duration,
    plan_targets,
)

TP = [TopicPartition("t", 0), TopicPartition("t", 1)]
BOUNDS = {TP[0]: Bounds(5, 20), TP[1]: Bounds(0, 0)}


class _Times:
    """offsets_for_times of a partition whose records 5..19 have timestamps 1000 + offset."""

    async def offsets_for_times(self, wanted: dict[TopicPartition, int]) -> dict[Any, Any]:
        found: dict[Any, Any] = {}
        for tp, ms in wanted.items():
            hit = next((o for o in range(5, 20) if 1000 + o >= ms), None) if tp == TP[0] else None
            found[tp] = None if hit is None else type("Hit", (), {"offset": hit})()
        return found


@pytest.mark.parametrize(
    ("text", "expected"),
    [("PT15M", dt.timedelta(minutes=15)), ("P1DT2H", dt.timedelta(days=1, hours=2)),
     ("PT0.5S", dt.timedelta(milliseconds=500)), ("-PT1H", dt.timedelta(hours=-1)),
     ("P2D", dt.timedelta(days=2)), ("pt1m30s", dt.timedelta(seconds=90))],
)  # fmt: skip
def test_durations_parse_as_java_does(text: str, expected: dt.timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["15m", "P", "PT", "P1H", "yesterday"])
def test_a_bad_duration_is_refused(text: str) -> None:
    with pytest.raises(OffsetResetError):
        parse_duration(text)


def test_datetimes_with_and_without_a_zone() -> None:
    assert parse_datetime_ms("2025-01-31T12:00:00Z") == 1_738_324_800_000
    assert parse_datetime_ms("2025-01-31T13:00:00.000+01:00") == 1_738_324_800_000
    local = dt.datetime(2025, 1, 31, 12, 0).astimezone()
    assert parse_datetime_ms("2025-01-31T12:00:00.000") == round(local.timestamp() * 1000)
    with pytest.raises(OffsetResetError):
        parse_datetime_ms("31/01/2025")


async def test_each_kind_lands_where_kafka_consumer_groups_puts_it() -> None:
    now = {TP[0]: 12, TP[1]: 0}
    consumer: Any = _Times()

    async def plan(spec: ResetSpec) -> dict[int, tuple[int, str]]:
        found = await plan_targets(consumer, BOUNDS, spec, dict(now))
        return {tp.partition: (t.offset, t.note) for tp, t in found.items()}

    assert await plan(ResetSpec("earliest")) == {0: (5, ""), 1: (0, "")}
    assert await plan(ResetSpec("latest")) == {0: (20, ""), 1: (0, "")}
    clamped = await plan(ResetSpec("offset", 99))
    assert clamped[0][0] == 20 and "past the end" in clamped[0][1]
    assert (await plan(ResetSpec("offset", 2)))[0][0] == 5
    assert (await plan(ResetSpec("shift", -3)))[0] == (9, "")
    assert (await plan(ResetSpec("shift", -30)))[0][0] == 5
    assert (await plan(ResetSpec("shift", 30)))[0][0] == 20
    assert (await plan(ResetSpec("datetime", 1010)))[0] == (10, "")
    late = await plan(ResetSpec("datetime", 5000))
    assert late[0][0] == 20 and "no record" in late[0][1] and late[1][0] == 0
    with pytest.raises(OffsetResetError, match="no current position"):
        await plan_targets(consumer, BOUNDS, ResetSpec("shift", 1), {TP[0]: None, TP[1]: 0})


def test_by_duration_is_now_minus_the_duration() -> None:
    now = dt.datetime(2025, 1, 31, 12, 0, tzinfo=dt.UTC)
    assert duration_spec("PT1H", now).value == 1_738_321_200_000
