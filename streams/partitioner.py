"""Kafka's default partitioner for keyed records, bit for bit.

A session lands on partition ``toPositive(murmur2(key)) % n``, exactly what
the Java producer's built-in partitioner computes
(``BuiltInPartitioner.partitionForKey``), so any Kafka client, Kafka Connect
or ksqlDB writing a session id lands on the same shard as we do. The contract
is pinned by ``tests/unit/data/murmur2_java_vectors.json``, produced by the
real Java client (``tests/java/Murmur2Vectors.java``).

aiokafka's ``DefaultPartitioner`` computes the same function (it is checked
against the same vectors), but its ``murmur2`` masks after every operation and
indexes bytes one at a time; here the 4-byte words come from one
``struct.unpack_from``, about twice as fast for a UUID key. At a producer's
rate that difference is a real share of the per-record budget, so the
producers use :func:`partitioner`.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF

# Precompiled unpackers for keys up to 256 bytes (session ids are ~36).
_WORDS = tuple(struct.Struct(f"<{n}I").unpack_from for n in range(65))


def _murmur2_unsigned(data: bytes) -> int:
    length = len(data)
    h = _SEED ^ length
    nwords = length >> 2
    if nwords:
        words = _WORDS[nwords](data) if nwords < 65 else struct.unpack_from(f"<{nwords}I", data)
        for k in words:
            k = (k * _M) & _MASK
            h = ((h * _M) & _MASK) ^ (((k ^ (k >> 24)) * _M) & _MASK)
    tail = length & 3
    if tail:
        base = length & ~3
        if tail == 3:
            h ^= data[base + 2] << 16
        if tail >= 2:
            h ^= data[base + 1] << 8
        h = ((h ^ data[base]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


def murmur2(data: bytes) -> int:
    """Java's ``Utils.murmur2(data)``: a signed 32-bit int, as Java returns it."""
    h = _murmur2_unsigned(data)
    return h - 0x100000000 if h & 0x80000000 else h


def partition_for_key(key: bytes, num_partitions: int) -> int:
    """``Utils.toPositive(Utils.murmur2(key)) % num_partitions``, the Java default."""
    if num_partitions < 1:
        raise ValueError(f"num_partitions must be >= 1, got {num_partitions}")
    return (_murmur2_unsigned(key) & 0x7FFFFFFF) % num_partitions


def session_partition(session_id: str, num_partitions: int) -> int:
    """The partition (agent shard) of a session: its id as UTF-8 through murmur2."""
    return partition_for_key(session_id.encode("utf-8"), num_partitions)


def murmur2_partitioner(
    key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]
) -> int:
    """Drop-in for aiokafka's ``partitioner=`` argument, murmur2 for keyed records.

    Keyed records go where Java puts them. An unkeyed record (only the DLQ
    may carry one, when the failed record had no key) goes to a random
    available partition, as in aiokafka's default.
    """
    if key is None:
        return random.choice(available or all_partitions)
    idx = (_murmur2_unsigned(key) & 0x7FFFFFFF) % len(all_partitions)
    return all_partitions[idx]
