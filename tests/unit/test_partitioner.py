"""murmur2 partitioning is the Java client's, bit for bit.

The vectors in ``data/murmur2_java_vectors.json`` were printed by the real
kafka-clients 4.1.1 (``tests/java/Murmur2Vectors.java``): ``Utils.murmur2`` and
``BuiltInPartitioner.partitionForKey`` for ASCII, multibyte UTF-8, empty, long
and raw high-bit keys at twelve partition counts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from streams.partitioner import (
    murmur2,
    murmur2_partitioner,
    partition_for_key,
    session_partition,
)

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "data" / "murmur2_java_vectors.json").read_text(encoding="utf-8")
)
COUNTS: list[int] = VECTORS["partition_counts"]
CASES: list[dict[str, Any]] = VECTORS["vectors"]


def _id(case: dict[str, Any]) -> str:
    text = case["key"]
    label = repr(text[:12]) if text is not None else "raw"
    return f"{label}-{case['key_hex'][:16]}"


def test_vectors_come_from_the_java_client() -> None:
    assert VECTORS["kafka_clients_version"] == "4.1.1"
    assert len(CASES) > 150
    texts = [c["key"] for c in CASES if c["key"] is not None]
    assert "" in texts  # empty key
    assert any(len(t.encode()) != len(t) for t in texts)  # multibyte UTF-8
    assert any(len(t) >= 1000 for t in texts)  # long keys
    assert any(c["key"] is None for c in CASES)  # raw high-bit bytes


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_murmur2_matches_java(case: dict[str, Any]) -> None:
    key = bytes.fromhex(case["key_hex"])
    if case["key"] is not None:
        assert case["key"].encode("utf-8") == key
    assert murmur2(key) == case["murmur2"]
    for count, expected in zip(COUNTS, case["partitions"], strict=True):
        assert partition_for_key(key, count) == expected
        if case["key"] is not None:
            assert session_partition(case["key"], count) == expected


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_aiokafka_default_partitioner_matches_java_too(case: dict[str, Any]) -> None:
    """aiokafka's DefaultPartitioner is the same function (ours is just faster)."""
    key = bytes.fromhex(case["key_hex"])
    assert aiokafka_murmur2(key) == case["murmur2"] & 0xFFFFFFFF
    for count, expected in zip(COUNTS, case["partitions"], strict=True):
        assert DefaultPartitioner()(key, list(range(count)), list(range(count))) == expected


@given(st.binary(max_size=300), st.integers(min_value=1, max_value=5000))
def test_same_as_aiokafka_on_any_bytes(key: bytes, count: int) -> None:
    assert murmur2(key) & 0xFFFFFFFF == aiokafka_murmur2(key)
    assert partition_for_key(key, count) == (aiokafka_murmur2(key) & 0x7FFFFFFF) % count


@given(st.binary(max_size=100), st.integers(min_value=1, max_value=64))
def test_drop_in_partitioner_uses_the_partition_list(key: bytes, count: int) -> None:
    partitions = list(range(count))
    assert murmur2_partitioner(key, partitions, partitions) == partition_for_key(key, count)
    assert -(2**31) <= murmur2(key) < 2**31


def test_unkeyed_records_go_to_an_available_partition() -> None:
    assert murmur2_partitioner(None, [0, 1, 2, 3], [2]) == 2
    assert murmur2_partitioner(None, [0, 1, 2, 3], []) in {0, 1, 2, 3}


def test_partition_count_must_be_positive() -> None:
    with pytest.raises(ValueError, match="num_partitions"):
        partition_for_key(b"s1", 0)
