"""The committable offset never passes a record that is not done."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.executors.commit_offsets import PartitionProgress


def test_commits_only_up_to_the_lowest_unfinished() -> None:
    progress = PartitionProgress()
    assert progress.committable() is None
    for offset in (10, 11, 12, 13):
        progress.started(offset)
    assert progress.committable() == 10
    progress.finished(12)
    progress.finished(11)
    assert progress.committable() == 10 and progress.in_flight == 2
    progress.finished(10)
    assert progress.committable() == 13
    progress.finished(13)
    assert progress.committable() == 14 and progress.in_flight == 0


def test_offsets_must_increase() -> None:
    progress = PartitionProgress()
    progress.started(5)
    with pytest.raises(ValueError, match="out of order"):
        progress.started(5)


@given(st.lists(st.integers(min_value=1, max_value=3), min_size=1, max_size=200), st.randoms())
def test_random_completion_order(gaps: list[int], rnd: random.Random) -> None:
    progress = PartitionProgress()
    offsets, offset = [], 0
    for gap in gaps:
        offset += gap
        offsets.append(offset)
        progress.started(offset)
    pending = list(offsets)
    rnd.shuffle(pending)
    done: set[int] = set()
    for offset in pending:
        progress.finished(offset)
        done.add(offset)
        commit = progress.committable()
        assert commit is not None
        # every record below the commit point is done; the one at it is not (unless all are)
        assert all(o in done for o in offsets if o < commit)
        if len(done) < len(offsets):
            assert commit in offsets and commit not in done
    assert progress.committable() == offsets[-1] + 1
