"""Comparing an existing topic with its catalogue spec (pure; the cluster side is
in tests/integration/test_streams_topics.py)."""

from __future__ import annotations

import pytest

from streams.admin import Mismatch, TopicDescription, TopicsReport, compare, require_ok
from streams.catalogue import Catalogue
from streams.errors import TopicMismatchError

CAT = Catalogue("unit", 4)


def described(partitions: int = 4, replication: int = 1, **configs: str) -> TopicDescription:
    base = {"cleanup.policy": "delete", "retention.ms": "-1", "segment.bytes": "1073741824"}
    base.update({k.replace("_", "."): v for k, v in configs.items()})
    return TopicDescription("unit.events", partitions, replication, base)


def test_an_identical_topic_has_no_mismatch() -> None:
    assert compare(CAT.events, described()) == []


def test_every_difference_is_reported() -> None:
    found = compare(
        CAT.events,
        described(partitions=2, replication=3, retention_ms="604800000", cleanup_policy="compact"),
    )
    assert found == [
        Mismatch("unit.events", "partitions", "4", "2"),
        Mismatch("unit.events", "replication", "1", "3"),
        Mismatch("unit.events", "cleanup.policy", "delete", "compact"),
        Mismatch("unit.events", "retention.ms", "-1", "604800000"),
    ]
    assert str(found[0]) == "unit.events: partitions is 2, the catalogue says 4"


def test_a_missing_config_is_a_mismatch() -> None:
    description = TopicDescription("unit.events", 4, 1, {"cleanup.policy": "delete"})
    assert compare(CAT.events, description) == [
        Mismatch("unit.events", "retention.ms", "-1", "unset")
    ]


def test_require_ok_lists_every_problem() -> None:
    require_ok(TopicsReport(created=("unit.inbox",)))
    report = TopicsReport(
        missing=("unit.dlq",), mismatches=(Mismatch("unit.events", "partitions", "4", "2"),)
    )
    assert not report.ok
    with pytest.raises(TopicMismatchError) as raised:
        require_ok(report)
    assert "unit.dlq: missing" in str(raised.value)
    assert "unit.events: partitions is 2, the catalogue says 4" in str(raised.value)
    assert "set AGENTSTREAM_PARTITIONS=2" in str(raised.value)


def test_require_ok_names_no_partition_count_when_the_topics_disagree() -> None:
    report = TopicsReport(
        mismatches=(
            Mismatch("unit.events", "partitions", "4", "2"),
            Mismatch("unit.inbox", "partitions", "4", "8"),
        )
    )
    with pytest.raises(TopicMismatchError) as raised:
        require_ok(report)
    assert "AGENTSTREAM_PARTITIONS" not in str(raised.value)
