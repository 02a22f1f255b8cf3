"""A hand-written Avro encoder for the gateway's StartSession records (the hot path).

``schemas.Codec.encode`` (fastavro) spends about half of each StartSession
on per-call setup; writing the few fields directly halves the encoding cost,
which matters on the batch endpoint's per-session budget
(``benchmarks/bench_gateway.py``; figures in docs/benchmarks.md). The bytes are
identical to the Codec's (Confluent wire format, the same schema id): a
property test checks it (``tests/unit/test_gateway_encoding.py``), and any
record this encoder does not cover (causation or correlation ids set) goes
through the Codec.

Avro binary, as the spec has it: longs are zigzag varints; a string is its
UTF-8 length (a long) then the bytes; a union is the branch index (a long)
then the value; a map is blocks of (count, key/value pairs) ended by a 0
count; a boolean is one byte.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

from schemas import Codec

_NULL_NULL = b"\x00\x00"  # causation_id and correlation_id: union branch 0 (null)


def _long(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)
    if z < 0x80:
        return bytes((z,))
    out = bytearray()
    while z & ~0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def _string(text: str) -> bytes:
    data = text.encode("utf-8")
    n = len(data)
    return (bytes((n << 1,)) if n < 64 else _long(n)) + data


class StartSessionEncoder:
    """Encodes StartSession records exactly as ``codec.encode("StartSession", ...)`` does."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.prefix = struct.pack(">bI", 0, codec.schema_id("StartSession"))

    def encode(self, r: Mapping[str, Any]) -> bytes:
        if r["causation_id"] is not None or r["correlation_id"] is not None:
            return self.codec.encode("StartSession", dict(r))
        metadata = r["metadata"]
        if metadata:
            pairs = b"".join(_string(k) + _string(v) for k, v in metadata.items())
            encoded_map = _long(len(metadata)) + pairs + b"\x00"
        else:
            encoded_map = b"\x00"
        return b"".join(
            (
                self.prefix,
                _string(r["event_id"]),
                _string(r["session_id"]),
                _string(r["tenant_id"]),
                _long(r["time_ms"]),
                _NULL_NULL,
                _string(r["agent"]),
                _string(r["input"]),
                b"\x01" if r["keep_open"] else b"\x00",
                _long(r["idle_timeout_ms"]),
                encoded_map,
            )
        )
