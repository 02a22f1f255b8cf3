"""The catalogue spells every topic, co-partitions the session-keyed ones, and
settings come from AGENTSTREAM_* variables."""

from __future__ import annotations

import dataclasses

import pytest

import streams
from schemas import COMMAND_NAMES, EVENT_NAMES, RECORD_NAMES
from streams.catalogue import DAY_MS, FOREVER, HOUR_MS, Catalogue
from streams.settings import KafkaSettings


def test_names_follow_the_prefix() -> None:
    cat = Catalogue("agentstream", 12, 1)
    assert [s.name for s in cat.all()] == [
        "agentstream.inbox",
        "agentstream.events",
        "agentstream.llm-calls",
        "agentstream.tool-calls",
        "agentstream.deltas",
        "agentstream.dlq",
        "agentstream.engine-progress",
    ]
    assert cat.inbox.name == "agentstream.inbox"
    assert cat.llm_calls.name == "agentstream.llm-calls"
    assert cat.tool_calls.name == "agentstream.tool-calls"
    assert next(iter(Catalogue("t1234abcd"))).name == "t1234abcd.inbox"


def test_session_keyed_topics_are_co_partitioned() -> None:
    cat = Catalogue("x", partitions=7, replication=3)
    keyed = [s for s in cat.all() if s.session_keyed]
    assert {s.role for s in keyed} == {"inbox", "events", "llm-calls", "tool-calls", "deltas"}
    assert {s.partitions for s in cat.all()} == {7}
    assert {s.replication for s in cat.all()} == {3}
    assert not cat.dlq.session_keyed
    assert not cat.engine_progress.session_keyed


def test_retention() -> None:
    cat = Catalogue()
    assert cat.events.retention_ms == FOREVER == -1
    assert cat.events.config == {"cleanup.policy": "delete", "retention.ms": "-1"}
    assert cat.llm_calls.retention_ms == cat.tool_calls.retention_ms == DAY_MS
    assert cat.deltas.retention_ms == HOUR_MS
    assert cat.dlq.retention_ms == 30 * DAY_MS
    short = [cat.llm_calls, cat.tool_calls, cat.deltas]
    assert all(0 < s.retention_ms < cat.inbox.retention_ms for s in short)
    # Only the newest progress record per inbox partition matters, and it must never
    # age out: compacted, kept forever.
    assert cat.engine_progress.config == {"cleanup.policy": "compact", "retention.ms": "-1"}


def test_value_types_cover_every_record_once() -> None:
    cat = Catalogue()
    assert cat.inbox.value_types == COMMAND_NAMES
    assert cat.events.value_types == EVENT_NAMES
    carried = [name for spec in cat.all() for name in spec.value_types]
    assert sorted(carried) == sorted(RECORD_NAMES)
    assert cat.dlq.value_types == ()


def test_lookup_by_full_and_short_name() -> None:
    cat = Catalogue("p")
    assert cat.by_name("p.events") is cat.events
    assert cat.resolve("events") is cat.events
    assert cat.resolve("p.llm-calls") is cat.llm_calls
    with pytest.raises(KeyError, match="not a topic"):
        cat.by_name("events")
    with pytest.raises(KeyError, match="use one of inbox, events"):
        cat.resolve("outbox")
    with pytest.raises(KeyError):
        cat.resolve("agentstream.inbox")  # another prefix's topic


def test_specs_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Catalogue().inbox.partitions = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("prefix", "partitions", "replication"),
    [("", 1, 1), ("has space", 1, 1), ("a/b", 1, 1), ("ok", 0, 1), ("ok", 1, 0)],
)
def test_invalid_catalogue_is_refused(prefix: str, partitions: int, replication: int) -> None:
    with pytest.raises(ValueError):
        Catalogue(prefix, partitions, replication)


def test_settings_defaults_and_environment() -> None:
    assert KafkaSettings.from_env({}) == KafkaSettings(
        bootstrap="127.0.0.1:9092", topic_prefix="agentstream", partitions=4, replication_factor=1
    )
    env = {
        "AGENTSTREAM_KAFKA_BOOTSTRAP": "k1:9092,k2:9092",
        "AGENTSTREAM_TOPIC_PREFIX": "prod",
        "AGENTSTREAM_PARTITIONS": "48",
        "AGENTSTREAM_REPLICATION_FACTOR": "3",
    }
    settings = KafkaSettings.from_env(env)
    assert settings == KafkaSettings("k1:9092,k2:9092", "prod", 48, 3)
    cat = Catalogue.from_settings(settings)
    assert (cat.prefix, cat.partitions, cat.replication) == ("prod", 48, 3)


def test_settings_name_the_bad_variable() -> None:
    with pytest.raises(ValueError, match="AGENTSTREAM_PARTITIONS='twelve'"):
        KafkaSettings.from_env({"AGENTSTREAM_PARTITIONS": "twelve"})
    with pytest.raises(ValueError, match="partitions must be >= 1"):
        KafkaSettings.from_env({"AGENTSTREAM_PARTITIONS": "0"})


def test_the_package_map_names_every_module() -> None:
    """``streams`` re-exports nothing; its docstring is the map, and it must stay whole."""
    from pathlib import Path

    modules = {p.stem for p in Path(streams.__file__).parent.glob("*.py")} - {"__init__"}
    listed = {
        line.split()[0] for line in (streams.__doc__ or "").splitlines() if line[:4] == "    "
    }
    assert modules <= listed, f"not on the map: {sorted(modules - listed)}"
    assert (
        not [name for name in vars(streams) if not name.startswith("_")]
        or set(name for name in vars(streams) if not name.startswith("_")) <= modules
    ), "streams re-exports names"
