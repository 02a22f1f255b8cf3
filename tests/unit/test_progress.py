"""The engine's progress records: what one transaction says about its inbox partition."""

from __future__ import annotations

import pytest

from processors.engine.inbox_progress import Progress, ProgressError


def test_a_progress_record_round_trips_and_is_keyed_by_partition() -> None:
    progress = Progress(inbox_partition=3, next_offset=1234)
    assert Progress.parse(progress.value()) == progress
    assert progress.key() == b"3"
    # readable in Kafka UI as it is
    assert progress.value() == b'{"inbox_partition":3,"next_offset":1234}'


@pytest.mark.parametrize(
    "value", [None, b"", b"not json", b"[]", b'{"inbox_partition": 1}', b'{"inbox_partition":"x"}']
)
def test_anything_else_is_refused_with_the_value_named(value: bytes | None) -> None:
    with pytest.raises(ProgressError, match="not a progress record"):
        Progress.parse(value)
